// Operator pages: tenants and their keys, plugins, dead letters, cluster hosts.

import { get, post, patch, put, del, call, seg, query } from './api.js';
import { h, field, table, facts, form, button, notice, flash, when, badge, copyable, lines } from './ui.js';

const TENANT_FIELDS = ['name', 'timezone', 'country'];

/** `#/tenants`: every tenant, and the create form. */
export async function tenants(root) {
  const { tenants: list } = await get('/admin/tenants');
  const slug = h('input', { name: 'slug', required: true, pattern: '[a-z0-9\\-]{1,63}', spellcheck: 'false' });
  const name = h('input', { name: 'name', required: true });
  const currency = h('input', { name: 'currency', required: true, value: 'USD', maxlength: 3, size: 5 });
  const timezone = h('input', { name: 'timezone', required: true, value: 'UTC' });
  const country = h('input', { name: 'country', value: 'US', maxlength: 2, size: 4 });
  root.append(
    h('h1', {}, 'Tenants'),
    form({ id: 'create-tenant', 'aria-label': 'Create a tenant' }, async () => {
      const created = await post('/admin/tenants', {
        slug: slug.value.trim(), name: name.value.trim(), currency: currency.value.trim().toUpperCase(),
        timezone: timezone.value.trim(), country: country.value.trim().toUpperCase() || undefined,
      });
      flash(`Tenant ${created.slug} created.`);
      location.hash = `#/tenants/${seg(created.slug)}`;
    },
    h('h2', {}, 'New tenant'),
    h('div', { class: 'row' },
      field('Slug', slug, 'a-z, 0-9 and -'), field('Name', name), field('Currency', currency, 'ISO 4217'),
      field('Time zone', timezone, 'IANA, e.g. America/New_York'), field('Country', country, 'for phone numbers'),
      h('button', { type: 'submit' }, 'Create tenant'))),
    h('h2', {}, `All tenants (${list.length})`),
    table([
      { label: 'Slug', value: t => h('a', { href: `#/tenants/${seg(t.slug)}` }, t.slug) },
      { label: 'Name', value: t => t.name },
      { label: 'Currency', value: t => t.currency },
      { label: 'Time zone', value: t => t.timezone },
      { label: 'Country', value: t => t.country },
      { label: 'State', value: t => t.suspended_at ? badge('suspended', 'bad') : badge('active', 'ok') },
      { label: 'Created', value: t => when(t.created_at) },
    ], list, 'No tenants yet.'));
}

/** `#/tenants/{slug}`: edit, suspend, resume, delete; keys. */
export async function tenant(root, slug) {
  const path = `/admin/tenants/${seg(slug)}`;
  const [t, { keys }] = await Promise.all([get(path), get(`${path}/keys`)]);
  const inputs = Object.fromEntries(TENANT_FIELDS.map(f => [f, h('input', { name: f, value: t[f] })]));
  const role = h('select', { name: 'role' }, h('option', { value: 'manager' }, 'manager'), h('option', { value: 'terminal' }, 'terminal'));
  const label = h('input', { name: 'label', placeholder: 'back office' });
  const secretSlot = h('div', { id: 'new-key' });
  const rerender = () => { root.replaceChildren(); return tenant(root, slug); };
  root.append(
    h('p', {}, h('a', { href: '#/tenants' }, '← Tenants')),
    h('h1', {}, `Tenant ${t.slug}`),
    facts([['Id', t.id], ['Currency', t.currency], ['Created', when(t.created_at)],
      ['State', t.suspended_at ? h('span', {}, badge('suspended', 'bad'), ' since ', when(t.suspended_at)) : badge('active', 'ok')]]),
    form({ id: 'edit-tenant', 'aria-label': 'Edit the tenant' }, async () => {
      const changes = {};
      for (const f of TENANT_FIELDS) if (inputs[f].value.trim() !== t[f]) changes[f] = inputs[f].value.trim();
      if (!Object.keys(changes).length) { notice('Nothing changed.'); return; }
      await patch(path, changes);
      await rerender();
      notice('Tenant saved.');
    },
    h('h2', {}, 'Edit'),
    h('div', { class: 'row' }, field('Name', inputs.name), field('Time zone', inputs.timezone), field('Country', inputs.country),
      h('button', { type: 'submit' }, 'Save'))),
    h('section', { class: 'panel', 'aria-label': 'Lifecycle' },
      h('h2', {}, 'Lifecycle'),
      h('p', { class: 'muted' }, 'Suspending refuses every key of the tenant and closes its sockets; its data stays. Only a suspended tenant can be deleted, with all its data.'),
      h('div', { class: 'actions' },
        t.suspended_at
          ? button('Resume', async () => { await post(`${path}/resume`); await rerender(); notice('Tenant resumed.'); })
          : button('Suspend', async () => { await post(`${path}/suspend`); await rerender(); notice('Tenant suspended.'); }, { class: 'danger' }),
        button('Delete tenant and all its data', async () => {
          if (!confirm(`Delete tenant ${t.slug} and every row of it? This cannot be undone.`)) return;
          await del(path);
          flash(`Tenant ${t.slug} deleted.`);
          location.hash = '#/tenants';
        }, { class: 'danger', disabled: !t.suspended_at, title: t.suspended_at ? null : 'suspend it first' }))),
    h('h2', {}, 'API keys'),
    form({ id: 'create-key', 'aria-label': 'Create an API key' }, async () => {
      const created = await post(`${path}/keys`, { role: role.value, label: label.value.trim() });
      await rerender();
      // Shown once, from this answer only; it is not kept anywhere.
      root.querySelector('#new-key').replaceChildren(h('div', { class: 'secret', role: 'alert' },
        h('strong', {}, `New ${created.role} key "${created.label}". Copy it now: it is not shown again.`),
        copyable('Key', created.key)));
      root.querySelector('#new-key input').focus();
    },
    h('div', { class: 'row' }, field('Role', role), field('Label', label), h('button', { type: 'submit' }, 'Create key'))),
    secretSlot,
    table([
      { label: 'Label', value: k => k.label || '—' },
      { label: 'Role', value: k => k.role },
      { label: 'Starts with', value: k => h('code', {}, k.prefix) },
      { label: 'Created', value: k => when(k.created_at) },
      { label: 'Last used', value: k => k.last_used_at ? when(k.last_used_at) : 'never' },
      { label: 'State', value: k => k.revoked_at ? h('span', {}, badge('revoked', 'bad'), ' ', when(k.revoked_at)) : badge('active', 'ok') },
      { label: '', value: k => k.revoked_at ? '' : button('Revoke', async () => {
        if (!confirm(`Revoke key "${k.label}"? It stops working at once.`)) return;
        await del(`${path}/keys/${seg(k.id)}`);
        await rerender();
        notice('Key revoked.');
      }, { class: 'danger', 'aria-label': `Revoke key ${k.label || k.prefix}` }) },
    ], keys, 'No keys yet.'));
}

const us = v => (v >= 1000 ? `${(v / 1000).toFixed(1)} ms` : `${v} µs`);

function stateBadge(state) {
  return badge(state, state === 'active' ? 'ok' : state === 'quarantined' ? 'bad' : 'warn');
}

/** `#/plugins`: installed plugins with health, and the upload form. */
export async function plugins(root) {
  const { plugins: list } = await get('/admin/plugins');
  const file = h('input', { type: 'file', name: 'wasm', accept: '.wasm,application/wasm', required: true });
  root.append(
    h('h1', {}, 'Plugins'),
    form({ id: 'upload-plugin', 'aria-label': 'Upload a plugin' }, async () => {
      const chosen = file.files[0];
      if (!chosen) return;
      const status = await call('POST', '/admin/plugins', undefined, { raw: await chosen.arrayBuffer(), contentType: 'application/wasm' });
      flash(`Installed ${status.id} ${status.active_version}; it is active now.`);
      location.hash = `#/plugins/${seg(status.id)}`;
    },
    h('h2', {}, 'Upload a version'),
    h('p', { class: 'muted' }, 'A component (.wasm) is validated, compiled and activated; a new version of an installed plugin replaces the serving one atomically.'),
    h('div', { class: 'row' }, field('Component', file), h('button', { type: 'submit' }, 'Upload and activate'))),
    table([
      { label: 'Plugin', value: p => h('a', { href: `#/plugins/${seg(p.id)}` }, p.id) },
      { label: 'Kind', value: p => p.kind },
      { label: 'State', value: p => stateBadge(p.state) },
      { label: 'Version', value: p => p.active_version || '—' },
      { label: 'Calls', value: p => p.stats.calls, num: true },
      { label: 'Failures', value: p => p.stats.failures, num: true },
      { label: 'p50', value: p => us(p.stats.p50_us), num: true },
      { label: 'p99', value: p => us(p.stats.p99_us), num: true },
      { label: 'Denied requests', value: p => p.stats.http_denied, num: true },
    ], list, 'No plugins installed.'));
}

/** Orders semver strings well enough to tell a rollback from an upgrade. */
function older(a, b) {
  const parse = v => v.split(/[.+-]/).slice(0, 3).map(n => parseInt(n, 10) || 0);
  const [x, y] = [parse(a), parse(b)];
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] < y[i];
  return false;
}

/** `#/plugins/{id}`: versions, activation and rollback, hosts, limits, health. */
export async function plugin(root, id) {
  const path = `/admin/plugins/${seg(id)}`;
  const p = await get(path);
  const rerender = () => { root.replaceChildren(); return plugin(root, id); };
  const hosts = h('textarea', { name: 'hosts', rows: 3 }, p.approved_hosts.join('\n'));
  const cpu = h('input', { name: 'cpu_ms', type: 'number', min: 1, value: p.cpu_ms });
  const mem = h('input', { name: 'memory_mb', type: 'number', min: 1, value: p.memory_mb });
  const activate = async version => {
    await post(`${path}/activate`, { version });
    await rerender();
    notice(`${id} now serves ${version}.`);
  };
  root.append(
    h('p', {}, h('a', { href: '#/plugins' }, '← Plugins')),
    h('h1', {}, `Plugin ${p.id}`),
    facts([
      ['Kind', p.kind], ['State', stateBadge(p.state)], ['Serving version', p.active_version || '—'],
      p.state_reason ? ['Why', p.state_reason] : null,
      ['Calls', String(p.stats.calls)], ['Failures', `${p.stats.failures} (${p.stats.consecutive_failures} in a row)`],
      ['Call time', `p50 ${us(p.stats.p50_us)}, p99 ${us(p.stats.p99_us)}`],
      ['Denied outbound requests', String(p.stats.http_denied)],
      ['Allowed hosts (effective)', p.allowed_hosts.join(', ') || 'none'],
    ]),
    p.state === 'quarantined' ? h('div', { class: 'msg error' },
      'Quarantined after repeated failed calls. To lift it, fix the cause (the reason above), then activate a version: the serving one again, or roll back to an earlier one below.',
      ' ', p.active_version ? button(`Re-activate ${p.active_version}`, () => activate(p.active_version)) : null) : '',
    h('h2', {}, 'Versions'),
    table([
      { label: 'Version', value: v => v.version === p.active_version ? h('strong', {}, `${v.version} (serving)`) : v.version },
      { label: 'Installed', value: v => when(v.installed_at) },
      { label: 'From', value: v => v.source },
      { label: 'SHA-256', value: v => h('code', { title: v.sha256 }, v.sha256.slice(0, 12)) },
      { label: '', value: v => v.version === p.active_version && p.state === 'active' ? '' : h('div', { class: 'actions' },
        button(p.active_version && older(v.version, p.active_version) ? `Roll back to ${v.version}` : `Activate ${v.version}`, () => activate(v.version)),
        v.version === p.active_version ? null : button('Delete', async () => {
          if (!confirm(`Delete version ${v.version} of ${id}?`)) return;
          await del(`${path}/versions/${seg(v.version)}`);
          await rerender();
          notice(`Version ${v.version} deleted.`);
        }, { class: 'danger', 'aria-label': `Delete version ${v.version}` })) },
    ], p.versions),
    h('div', { class: 'actions' }, p.state === 'disabled' ? null : button('Disable plugin', async () => {
      if (!confirm(`Disable ${id}? The host stops calling it until a version is activated.`)) return;
      await post(`${path}/disable`);
      await rerender();
      notice(`${id} disabled.`);
    }, { class: 'danger' })),
    form({ id: 'plugin-hosts', 'aria-label': 'Approved hosts' }, async () => {
      await put(`${path}/hosts`, { allow: lines(hosts.value) });
      await rerender();
      notice('Approved hosts saved.');
    },
    h('h2', {}, 'Approved hosts'),
    h('p', { class: 'muted' }, `Declared by the plugin: ${(p.manifest && p.manifest.allowed_hosts.join(', ')) || 'none'}. Approve more, one per line: host, host:port, *.domain, [::1]:port.`),
    h('div', { class: 'row' }, field('Hosts', hosts), h('button', { type: 'submit' }, 'Save hosts'))),
    form({ id: 'plugin-limits', 'aria-label': 'Limits' }, async () => {
      await put(`${path}/limits`, { cpu_ms: Number(cpu.value), memory_mb: Number(mem.value) });
      await rerender();
      notice('Limits saved.');
    },
    h('h2', {}, 'Limits'),
    h('div', { class: 'row' }, field('CPU per call (ms)', cpu), field('Memory (MiB)', mem), h('button', { type: 'submit' }, 'Save limits'))));
}

/** `#/dead-letters`: items queues gave up on; retry or discard. */
export async function deadLetters(root) {
  const kind = h('select', { name: 'kind' }, ['', 'webhook', 'sync', 'hook'].map(k => h('option', { value: k }, k || 'any kind')));
  const tenantInput = h('input', { name: 'tenant', placeholder: 'any tenant', spellcheck: 'false' });
  const results = h('div');
  const detail = h('div');
  let cursor = null;
  const load = async more => {
    const page = await get(`/admin/dead-letters${query({ kind: kind.value, tenant: tenantInput.value.trim(), limit: 50, cursor: more ? cursor : null })}`);
    cursor = page.next_cursor;
    const rows = table([
      { label: 'Kind', value: d => d.kind },
      { label: 'Tenant', value: d => d.tenant },
      { label: 'Item', value: d => d.item || '—' },
      { label: 'Status', value: d => d.status },
      { label: 'Reason', value: d => d.reason },
      { label: 'Attempts', value: d => d.attempts, num: true },
      { label: 'Retries', value: d => d.retries, num: true },
      { label: 'Created', value: d => when(d.created_at) },
      { label: '', value: d => h('div', { class: 'actions' },
        button('Payload', async () => {
          const full = await get(`/admin/dead-letters/${seg(d.id)}`);
          detail.replaceChildren(h('h2', {}, `Dead letter ${d.id}`), h('pre', {}, JSON.stringify(full.payload, null, 2)));
        }, { class: 'secondary' }),
        button('Retry', async () => {
          const r = await post(`/admin/dead-letters/${seg(d.id)}/retry`);
          await load(false);
          notice(`Retry: ${r.outcome}${r.error ? ` (${r.error})` : ''}`);
        }),
        button('Discard', async () => {
          if (!confirm('Discard this dead letter?')) return;
          await del(`/admin/dead-letters/${seg(d.id)}`);
          await load(false);
          notice('Discarded.');
        }, { class: 'danger' })) },
    ], page.items, 'No dead letters.');
    if (more) results.append(rows); else results.replaceChildren(rows);
    results.append(cursor ? button('Next page', () => load(true), { class: 'secondary' }) : '');
  };
  root.append(h('h1', {}, 'Dead letters'),
    form({ 'aria-label': 'Filter dead letters' }, () => load(false),
      h('div', { class: 'row' }, field('Kind', kind), field('Tenant', tenantInput), h('button', { type: 'submit' }, 'Show'))),
    results, detail);
  await load(false);
}

/** `#/cluster`: the live hosts sharing the database. */
export async function cluster(root) {
  const c = await get('/admin/cluster');
  root.append(h('h1', {}, 'Cluster hosts'),
    h('p', { class: 'muted' }, `Answered by ${c.answered_by}. A host is live while its heartbeat is under 6 s old.`),
    table([
      { label: 'Host', value: x => x.this_host ? h('strong', {}, `${x.id} (this)`) : x.id },
      { label: 'Address', value: x => x.address },
      { label: 'Version', value: x => x.version },
      { label: 'Terminals', value: x => x.terminals, num: true },
      { label: 'Started', value: x => when(x.started_at) },
      { label: 'Last seen', value: x => when(x.last_seen) },
    ], c.hosts),
    h('p', {}, h('a', { href: '/metrics', target: '_blank', rel: 'noopener' }, 'Prometheus metrics (/metrics) ↗')));
}

