// Manager pages: venues and integrations, transactions, revenue, spend rules and the
// tier ladder, performances, customers, hook bindings. Every path is relative to the
// signed-in tenant (see api.js).

import { get, post, patch, put, del, seg, query, session } from './api.js';
import { h, field, check, table, facts, form, button, notice, flash, when, badge, money, copyable, dayStart, localInstant, lines } from './ui.js';
import { barChart } from './chart.js';

const VENUE = 'posbridge.venue';

function statusBadge(status) {
  return badge(status, status === 'CONNECTED' ? 'ok' : status === 'ERROR' ? 'bad' : 'warn');
}

/** A venue `<select>` of the tenant's integrations, remembering the last choice in the tab. */
async function venuePicker(onchange) {
  const { items } = await get('/pos/integrations');
  const select = h('select', { name: 'venue', required: true },
    items.length ? items.map(i => h('option', { value: i.venue }, `${i.venue} (${i.provider})`)) : h('option', { value: '' }, 'no venue connected'));
  const saved = sessionStorage.getItem(VENUE);
  if (saved && items.some(i => i.venue === saved)) select.value = saved;
  select.addEventListener('change', () => { sessionStorage.setItem(VENUE, select.value); if (onchange) onchange(select.value); });
  return { select, items, field: field('Venue', select) };
}

/** `#/venues`: the tenant's integrations and the connect form. */
export async function venues(root) {
  const [{ items }, { providers }] = await Promise.all([get('/pos/integrations'), get('/pos/providers')]);
  const provider = h('select', { name: 'provider', required: true }, providers.map(p => h('option', { value: p.id }, `${p.name} (${p.id} ${p.version})`)));
  const venue = h('input', { name: 'venue', required: true, spellcheck: 'false' });
  const locationId = h('input', { name: 'location_id', spellcheck: 'false' });
  const environment = h('select', { name: 'environment' }, h('option', { value: 'production' }, 'production'), h('option', { value: 'sandbox' }, 'sandbox'));
  const baseUrl = h('input', { name: 'base_url', type: 'url', placeholder: 'provider default' });
  const signing = h('input', { name: 'webhook_signature_key', type: 'password', autocomplete: 'off' });
  const webhookUrl = h('input', { name: 'webhook_url', type: 'url', placeholder: 'derived from the server address' });
  const interval = h('input', { name: 'sync_interval_s', type: 'number', min: 1, placeholder: '300' });
  const credentialBox = h('div', { class: 'row' });
  let credentialInputs = [];
  const fillCredentials = () => {
    const p = providers.find(x => x.id === provider.value);
    credentialInputs = (p ? p.credential_fields : []).map(f => ({
      f, input: h('input', { name: `credential-${f.name}`, type: f.secret ? 'password' : 'text', required: f.required, autocomplete: 'off', spellcheck: 'false' }),
    }));
    credentialBox.replaceChildren(...(credentialInputs.length
      ? credentialInputs.map(({ f, input }) => field(`${f.label}${f.required ? '' : ' (optional)'}`, input, f.secret ? 'secret: stored sealed, never shown again' : null))
      : [h('p', { class: 'muted' }, 'This provider needs no credentials.')]));
    const caps = p ? p.capabilities : [];
    for (const el of [locationId, environment, baseUrl]) el.closest('label').hidden = !caps.includes('validate') && !caps.includes('fetch-transactions');
    for (const el of [signing, webhookUrl]) el.closest('label').hidden = !caps.includes('webhooks');
  };
  provider.addEventListener('change', fillCredentials);
  const connectForm = form({ id: 'connect-venue', 'aria-label': 'Connect a venue' }, async () => {
    const body = { venue: venue.value.trim(), provider: provider.value };
    const credentials = {};
    for (const { f, input } of credentialInputs) if (input.value) credentials[f.name] = input.value;
    if (credentialInputs.length) body.credentials = credentials;
    const optional = { location_id: locationId, base_url: baseUrl, webhook_signature_key: signing, webhook_url: webhookUrl };
    for (const [k, el] of Object.entries(optional)) if (!el.closest('label').hidden && el.value.trim()) body[k] = el.value.trim();
    if (!environment.closest('label').hidden) body.environment = environment.value;
    if (interval.value) body.sync_interval_s = Number(interval.value);
    const created = await post('/pos/connect', body);
    sessionStorage.setItem(VENUE, created.venue);
    flash(`Venue ${created.venue} connected.`);
    location.hash = `#/venues/${seg(created.venue)}`;
  },
  h('h2', {}, 'Connect a venue'),
  h('div', { class: 'row' }, field('Venue name', venue), field('Provider', provider)),
  credentialBox,
  h('div', { class: 'row' }, field('Location id', locationId), field('Environment', environment), field('Base URL', baseUrl),
    field('Webhook signature key', signing), field('Webhook URL', webhookUrl), field('Sync every (s)', interval)),
  h('p', {}, h('button', { type: 'submit' }, 'Connect')));
  root.append(h('h1', {}, 'Venues'),
    table([
      { label: 'Venue', value: i => h('a', { href: `#/venues/${seg(i.venue)}` }, i.venue) },
      { label: 'Provider', value: i => i.provider },
      { label: 'Status', value: i => statusBadge(i.status) },
      { label: 'Last sync', value: i => when(i.last_sync_at) },
      { label: 'Last error', value: i => i.last_error || '—' },
    ], items, 'No venue connected yet.'),
    connectForm);
  fillCredentials();
}

/** `#/venues/{venue}`: status, sync now, disconnect, webhook URL. */
export async function venue(root, name) {
  const st = await get(`/pos/status/${seg(name)}`);
  sessionStorage.setItem(VENUE, name);
  const rerender = () => { root.replaceChildren(); return venue(root, name); };
  const pushUrl = `${window.location.origin}/api/${seg(session().tenant)}/transactions`;
  root.append(
    h('p', {}, h('a', { href: '#/venues' }, '← Venues')),
    h('h1', {}, `Venue ${st.venue}`),
    facts([
      ['Status', statusBadge(st.status)], ['Provider', st.provider], ['Location', st.location_id || '—'],
      ['Environment', st.environment], ['Time zone', st.timezone], ['Currency', st.currency],
      st.location ? ['Location name', st.location.name || '—'] : null,
      ['Last sync', when(st.last_sync_at)], ['Synced until', when(st.synced_until)],
      ['Last error', st.last_error || '—'], ['Failed syncs in a row', String(st.consecutive_failures)],
      ['Transactions', String(st.transaction_count)],
      ['Revenue today', money(st.revenue.today.total, st.revenue.today.currency)],
      ['Revenue all time', money(st.revenue.all.total, st.revenue.all.currency)],
      ['Webhook signature key', st.webhook_signature_key_set ? 'set (never shown)' : 'not set'],
    ]),
    st.webhook_url ? h('section', { class: 'panel' }, h('h2', {}, 'Webhook URL'),
      h('p', { class: 'muted' }, 'Register this URL with the provider so it posts sales here.'), copyable('Webhook URL', st.webhook_url)) : '',
    st.provider === 'local-pos' ? h('section', { class: 'panel' }, h('h2', {}, 'Push URL'),
      h('p', { class: 'muted' }, 'The till POSTs its sales here with a key of this tenant.'), copyable('Push URL', pushUrl)) : '',
    h('div', { class: 'actions' },
      button('Sync now', async () => {
        const r = await post(`/pos/sync/${seg(name)}`);
        await rerender();
        notice(`Synced: ${r.fetched} fetched, ${r.created} new, ${r.updated} updated, ${r.duplicates} duplicates, ${r.pages} pages.`);
      }, { disabled: st.status === 'DISCONNECTED' }),
      h('a', { href: '#/transactions' }, 'Transactions'),
      button('Disconnect', async () => {
        if (!confirm(`Disconnect ${name}? Syncing and webhooks stop; its data stays.`)) return;
        await post(`/pos/disconnect/${seg(name)}`);
        await rerender();
        notice(`${name} disconnected.`);
      }, { class: 'danger', disabled: st.status === 'DISCONNECTED' })),
    h('h2', {}, 'Recent sync errors'),
    table([
      { label: 'Started', value: r => when(r.started_at) },
      { label: 'Error', value: r => r.error || '—' },
    ], st.recent_sync_errors || [], 'No sync errors.'));
}

/** `#/transactions`: a venue's sales filtered by date and customer. */
export async function transactions(root) {
  const results = h('div', { id: 'transactions' });
  const from = h('input', { type: 'date', name: 'from' });
  const to = h('input', { type: 'date', name: 'to' });
  const customer = h('input', { type: 'tel', name: 'customer', placeholder: '+1 555 010 0199' });
  const picker = await venuePicker(() => load(false));
  let cursor = null;
  const load = async more => {
    if (!picker.select.value) return;
    const end = to.value ? new Date(new Date(`${to.value}T00:00:00`).getTime() + 86400000).toISOString() : null;
    const page = await get(`/pos/transactions/${seg(picker.select.value)}${query({
      from: dayStart(from.value), to: end, customer: customer.value.trim(), limit: 50, cursor: more ? cursor : null,
    })}`);
    cursor = page.next_cursor;
    const rows = table([
      { label: 'When', value: t => when(t.occurred_at) },
      { label: 'Sale', value: t => t.external_id },
      { label: 'Status', value: t => t.status },
      { label: 'Total', value: t => money(t.total, t.currency), num: true },
      { label: 'Refunded', value: t => t.refunded ? money(t.refunded, t.currency) : '—', num: true },
      { label: 'Tender', value: t => t.card ? `${t.tender} ${t.card.brand || ''} ${t.card.last4 || ''}` : t.tender },
      { label: 'Customer', value: t => (t.customer && t.customer.phone) || '—' },
      { label: 'Source', value: t => t.source },
      { label: 'Tags', value: t => (t.tags || []).join(', ') || '—' },
    ], page.items, 'No sales match.');
    if (more) results.append(rows); else results.replaceChildren(rows);
    if (cursor) results.append(button('Next page', () => load(true), { class: 'secondary' }));
  };
  root.append(h('h1', {}, 'Transactions'),
    form({ id: 'filter-transactions', 'aria-label': 'Filter transactions' }, () => load(false),
      h('div', { class: 'row' }, picker.field, field('From', from), field('To (inclusive)', to), field('Customer phone', customer),
        h('button', { type: 'submit' }, 'Show'))),
    results);
  await load(false);
}

const PERIODS = ['day', 'week', 'month', 'year', 'all'];

/** A series point's label under the chart: `12-06` for a day, `wk 11-30`, `2026-12`. */
function pointLabel(by, start) {
  if (by === 'month') return start.slice(0, 7);
  return by === 'week' ? `wk ${start.slice(5)}` : start.slice(5);
}

/**
 * `#/revenue`: a venue's revenue per day, week or month over a range (a chart, then the
 * same numbers as a table), and its totals for this day, week, month, year and all time.
 */
export async function revenue(root) {
  const out = h('div', { id: 'revenue' });
  const picker = await venuePicker(() => load());
  const by = h('select', { name: 'by' }, ['day', 'week', 'month'].map(b => h('option', { value: b }, `per ${b}`)));
  const from = h('input', { name: 'from', type: 'date' });
  const to = h('input', { name: 'to', type: 'date' });
  const load = async () => {
    if (!picker.select.value) { out.replaceChildren(h('p', { class: 'muted' }, 'Connect a venue first.')); return; }
    const v = seg(picker.select.value);
    const [series, ...all] = await Promise.all([
      get(`/pos/revenue/${v}/series${query({ by: by.value, from: from.value, to: to.value })}`),
      ...PERIODS.map(p => get(`/pos/revenue/${v}?period=${p}`)),
    ]);
    const currency = series.currency;
    out.replaceChildren(
      barChart(series.points.map(p => ({ label: pointLabel(series.by, p.start), value: p.total, text: money(p.total, currency) })),
        `Revenue of ${picker.select.value} per ${series.by}, ${series.from} to ${series.to} (${currency}, refunds netted, ${series.timezone})`),
      h('p', {}, `${series.count} sales, ${money(series.total, currency)} in total.`),
      h('details', {}, h('summary', {}, `Revenue per ${series.by} as a table`),
        table([
          { label: series.by === 'day' ? 'Day' : `${series.by[0].toUpperCase()}${series.by.slice(1)} from`, value: p => p.start },
          { label: 'Total', value: p => money(p.total, currency), num: true },
          { label: 'Refunds', value: p => money(p.refunds, currency), num: true },
          { label: 'Sales', value: p => p.count, num: true },
        ], series.points.slice().reverse())),
      h('h2', {}, 'This period so far'),
      table([
        { label: 'Period', value: r => r.period },
        { label: 'From', value: r => when(r.from) },
        { label: 'Total', value: r => money(r.total, r.currency), num: true },
        { label: 'Refunds', value: r => money(r.refunds, r.currency), num: true },
        { label: 'Sales', value: r => r.count, num: true },
        { label: 'Average', value: r => money(r.average, r.currency), num: true },
      ], all));
  };
  root.append(h('h1', {}, 'Revenue'),
    form({ id: 'revenue-range', 'aria-label': 'Revenue range' }, load,
      h('div', { class: 'row' }, picker.field, field('Per', by), field('From', from, 'default: 30 days, 12 weeks or 12 months back'), field('To', to, 'default: today'),
        h('button', { type: 'submit' }, 'Show'))),
    out);
  await load();
}

/** `#/rules`: a venue's spend rules with statistics; create, edit, toggle, reorder. */
export async function rules(root) {
  const picker = await venuePicker(() => load());
  const ladder = await get('/pos/tiers');
  const list = h('div', { id: 'rules' });
  const editing = { id: null };
  const name = h('input', { name: 'name', required: true });
  const threshold = h('input', { name: 'threshold', type: 'number', min: 0, step: 1, required: true });
  const tier = h('select', { name: 'tier' }, ladder.tiers.map(t => h('option', { value: t }, t)));
  const access = h('select', { name: 'access_level' }, h('option', { value: '' }, '(none)'), ladder.access_levels.map(t => h('option', { value: t }, t)));
  const priority = h('input', { name: 'priority', type: 'number', step: 1, value: 0 });
  const enabled = h('input', { name: 'enabled', type: 'checkbox', checked: true });
  const liveOnly = h('input', { name: 'live_only', type: 'checkbox' });
  const windows = h('textarea', { name: 'time_windows', rows: 3 }, '[]');
  const performer = h('input', { name: 'performer_id', placeholder: 'any performer' });
  const heading = h('h2', {}, 'New rule');
  const submit = h('button', { type: 'submit' }, 'Create rule');
  const reset = () => {
    editing.id = null;
    name.value = ''; threshold.value = ''; priority.value = 0; enabled.checked = true; liveOnly.checked = false;
    windows.value = '[]'; performer.value = ''; access.value = ''; tier.selectedIndex = 0;
    heading.textContent = 'New rule'; submit.textContent = 'Create rule';
  };
  const edit = r => {
    editing.id = r.id;
    name.value = r.name; threshold.value = r.threshold; tier.value = r.tier; access.value = r.access_level || '';
    priority.value = r.priority; enabled.checked = r.enabled; liveOnly.checked = r.live_only;
    windows.value = JSON.stringify(r.time_windows); performer.value = r.performer_id || '';
    heading.textContent = `Edit rule ${r.name}`; submit.textContent = 'Save rule';
    name.focus();
  };
  const base = () => `/pos/rules/${seg(picker.select.value)}`;
  const load = async () => {
    if (!picker.select.value) { list.replaceChildren(h('p', { class: 'muted' }, 'Connect a venue first.')); return; }
    const { rules: all } = await get(base());
    const move = async (index, delta) => {
      const order = all.slice();
      const [r] = order.splice(index, 1);
      order.splice(index + delta, 0, r);
      // Priorities become the list positions; only rules whose priority changes are sent.
      for (let i = 0; i < order.length; i++) {
        if (order[i].priority !== i + 1) await patch(`${base()}/${seg(order[i].id)}`, { priority: i + 1 });
      }
      await load();
      notice('Order saved.');
    };
    list.replaceChildren(table([
      { label: 'Priority', value: r => r.priority, num: true },
      { label: 'Name', value: r => r.name },
      { label: 'Threshold', value: r => money(r.threshold, picker.items.find(i => i.venue === picker.select.value)?.currency), num: true },
      { label: 'Unlocks', value: r => `${r.tier}${r.access_level ? ` + ${r.access_level}` : ''}` },
      { label: 'Conditions', value: r => [r.live_only ? 'live only' : null, r.performer_id ? `performer ${r.performer_id}` : null,
        r.time_windows.length ? r.time_windows.map(w => `${w.days.join(',')} ${w.start}–${w.end}`).join('; ') : null].filter(Boolean).join('; ') || 'any time' },
      { label: 'Enabled', value: r => r.enabled ? badge('on', 'ok') : badge('off', 'warn') },
      { label: 'Triggered', value: r => r.times_triggered, num: true },
      { label: 'Customers unlocked', value: r => r.customers_unlocked, num: true },
      { label: 'Last triggered', value: r => when(r.last_triggered) },
      { label: '', value: r => {
        const i = all.indexOf(r);
        return h('div', { class: 'actions' },
          button('↑', () => move(i, -1), { class: 'secondary', disabled: i === 0, 'aria-label': `Move ${r.name} up` }),
          button('↓', () => move(i, 1), { class: 'secondary', disabled: i === all.length - 1, 'aria-label': `Move ${r.name} down` }),
          button(r.enabled ? 'Disable' : 'Enable', async () => { await post(`${base()}/${seg(r.id)}/toggle`); await load(); }, { 'aria-label': `${r.enabled ? 'Disable' : 'Enable'} ${r.name}` }),
          button('Edit', () => edit(r), { class: 'secondary', 'aria-label': `Edit ${r.name}` }),
          button('Delete', async () => {
            if (!confirm(`Delete rule ${r.name}? Past unlocks stay.`)) return;
            await del(`${base()}/${seg(r.id)}`);
            await load();
          }, { class: 'danger', 'aria-label': `Delete ${r.name}` }));
      } },
    ], all, 'No rules for this venue.'));
  };
  const ruleForm = form({ id: 'rule-form', 'aria-label': 'Spend rule' }, async () => {
    let parsedWindows;
    try { parsedWindows = JSON.parse(windows.value || '[]'); } catch (e) { throw new Error(`Time windows are not JSON: ${e.message}`); }
    const body = {
      name: name.value.trim(), threshold: Number(threshold.value), tier: tier.value, access_level: access.value || null,
      priority: Number(priority.value || 0), enabled: enabled.checked, live_only: liveOnly.checked,
      time_windows: parsedWindows, performer_id: performer.value.trim() || null,
    };
    if (editing.id) await patch(`${base()}/${seg(editing.id)}`, body);
    else await post(base(), body);
    notice(editing.id ? 'Rule saved.' : 'Rule created.');
    reset();
    await load();
  },
  heading,
  h('div', { class: 'row' }, field('Name', name), field('Threshold (minor units)', threshold, '5000 = 50.00'), field('Tier', tier),
    field('Access level', access), field('Priority', priority, 'lower first'), field('Performer', performer)),
  h('div', { class: 'row' }, check('Enabled', enabled), check('Only during a performance', liveOnly),
    field('Time windows (JSON)', windows, '[{"days":["fri","sat"],"start":"20:00","end":"02:00"}]')),
  h('div', { class: 'actions' }, submit, button('Clear', () => reset(), { class: 'secondary' })));
  root.append(h('h1', {}, 'Spend rules'),
    h('div', { class: 'row' }, picker.field),
    h('p', { class: 'muted' }, 'The first enabled rule (by priority) whose threshold, time windows and performance conditions a sale meets unlocks its tier for the customer, once.'),
    list, ruleForm,
    h('p', {}, h('a', { href: '#/tiers' }, 'Edit the tier ladder')));
  await load();
}

/** `#/tiers`: the tenant's tiers and access levels, lowest first. */
export async function tiers(root) {
  const ladder = await get('/pos/tiers');
  const t = h('textarea', { name: 'tiers', rows: 5 }, ladder.tiers.join('\n'));
  const a = h('textarea', { name: 'access_levels', rows: 4 }, ladder.access_levels.join('\n'));
  root.append(h('h1', {}, 'Tier ladder'),
    h('ol', { 'aria-label': 'Tiers, lowest first' }, ladder.tiers.map(x => h('li', {}, x))),
    form({ id: 'ladder', 'aria-label': 'Tier ladder' }, async () => {
      await put('/pos/tiers', { tiers: lines(t.value), access_levels: lines(a.value) });
      root.replaceChildren();
      await tiers(root);
      notice('Ladder saved.');
    },
    h('p', { class: 'muted' }, 'One per line, lowest first. A name a rule unlocks or a customer holds cannot be dropped.'),
    h('div', { class: 'row' }, field('Tiers', t), field('Access levels', a), h('button', { type: 'submit' }, 'Save ladder'))));
}

/** `#/performances`: who performs when at a venue (for live-only and performer rules). */
export async function performances(root) {
  const picker = await venuePicker(() => load());
  const list = h('div');
  const performer = h('input', { name: 'performer_id', required: true });
  const starts = h('input', { name: 'starts_at', type: 'datetime-local', required: true });
  const ends = h('input', { name: 'ends_at', type: 'datetime-local', required: true });
  const base = () => `/pos/performances/${seg(picker.select.value)}`;
  const load = async () => {
    if (!picker.select.value) return;
    const r = await get(base());
    list.replaceChildren(table([
      { label: 'Performer', value: p => p.performer_id },
      { label: 'Starts', value: p => when(p.starts_at) },
      { label: 'Ends', value: p => when(p.ends_at) },
      { label: '', value: p => button('Delete', async () => { await del(`${base()}/${seg(p.id)}`); await load(); }, { class: 'danger', 'aria-label': `Delete performance of ${p.performer_id}` }) },
    ], r.performances, 'No performances.'));
  };
  root.append(h('h1', {}, 'Performances'), h('div', { class: 'row' }, picker.field), list,
    form({ id: 'performance-form', 'aria-label': 'New performance' }, async () => {
      await post(base(), { performer_id: performer.value.trim(), starts_at: localInstant(starts.value), ends_at: localInstant(ends.value) });
      await load();
      notice('Performance added.');
    },
    h('h2', {}, 'New performance'),
    h('div', { class: 'row' }, field('Performer', performer), field('Starts (local time)', starts), field('Ends', ends, 'at most 48 h later'),
      h('button', { type: 'submit' }, 'Add'))));
  await load();
}

/** `#/customers`: look a customer up by phone. */
export async function customers(root) {
  const phone = h('input', { name: 'phone', type: 'tel', required: true, placeholder: '+1 555 010 0199' });
  const out = h('div', { id: 'customer' });
  root.append(h('h1', {}, 'Customers'),
    form({ id: 'customer-lookup', 'aria-label': 'Find a customer' }, async () => {
      const c = await get(`/customers/${seg(phone.value.trim())}`);
      out.replaceChildren(
        h('h2', {}, c.phone),
        facts([['Tier', c.tier], ['Access level', c.access_level], ['Points', `${c.points} (${c.lifetime_points} lifetime)`],
          ['Email', c.email || '—'], ['Tags', c.tags.join(', ') || '—'], ['Enrolled', when(c.created_at)]]),
        h('h2', {}, 'Spend per venue'),
        table([
          { label: 'Venue', value: s => s.venue },
          { label: 'Lifetime spend', value: s => money(s.lifetime_spend, s.currency), num: true },
          { label: 'Sales', value: s => s.transactions, num: true },
          { label: 'Last sale', value: s => when(s.last_sale_at) },
        ], c.spend, 'No sales yet.'),
        h('h2', {}, 'Unlock history'),
        table([
          { label: 'When', value: u => when(u.occurred_at) },
          { label: 'Venue', value: u => u.venue },
          { label: 'Rule', value: u => u.rule_name },
          { label: 'Tier', value: u => `${u.tier}${u.access_level ? ` + ${u.access_level}` : ''}` },
          { label: 'Spend then', value: u => money(u.lifetime_spend, u.currency), num: true },
        ], c.unlocks, 'No unlocks yet.'));
    },
    h('div', { class: 'row' }, field('Phone', phone), h('button', { type: 'submit' }, 'Look up'))),
    out);
}

/** `#/hooks`: hook bindings of the tenant; create, configure, resume, remove. */
export async function hooks(root) {
  const { items } = await get('/hooks?limit=500');
  const rerender = () => { root.replaceChildren(); return hooks(root); };
  const plugin = h('input', { name: 'plugin', required: true, spellcheck: 'false', placeholder: 'big-spender-alert' });
  const config = h('textarea', { name: 'config', rows: 4 }, '{}');
  const events = h('input', { name: 'events', placeholder: 'all the hook declares' });
  const parse = (text, what) => { try { return JSON.parse(text); } catch (e) { throw new Error(`${what} is not JSON: ${e.message}`); } };
  root.append(h('h1', {}, 'Hooks'),
    items.length ? items.map(b => {
      const cfg = h('textarea', { rows: 4, name: `config-${b.id}` }, JSON.stringify(b.config, null, 2));
      const ev = h('input', { name: `events-${b.id}`, value: b.events.join(', ') });
      const on = h('input', { type: 'checkbox', checked: b.status !== 'disabled' });
      return h('section', { class: 'panel', 'aria-label': `Hook ${b.plugin}` },
        h('h2', {}, `${b.plugin} `, badge(b.status, b.status === 'active' ? 'ok' : b.status === 'quarantined' ? 'bad' : 'warn')),
        facts([['Id', b.id], ['Cursor (last event seq delivered)', String(b.cursor)], ['Delivered', String(b.delivered)],
          ['Failures', String(b.failures)], ['Last error', b.last_error || '—'], ['Last delivered', when(b.last_delivered_at)],
          ['Next attempt', when(b.next_attempt_at)]]),
        b.status === 'quarantined' ? h('div', { class: 'msg error' }, 'Quarantined: every recent event failed. Fix the cause, then resume: the held event is retried at once from the same cursor. ',
          button('Resume', async () => { await post(`/hooks/${seg(b.id)}/resume`); await rerender(); notice('Hook resumed.'); })) : null,
        form({ 'aria-label': `Configure ${b.plugin}` }, async () => {
          await patch(`/hooks/${seg(b.id)}`, { config: parse(cfg.value, 'Config'), events: lines(ev.value), enabled: on.checked });
          await rerender();
          notice('Hook saved.');
        },
        h('div', { class: 'row' }, field('Config (JSON)', cfg), field('Events', ev), check('Enabled', on)),
        h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save'),
          button('Delete', async () => {
            if (!confirm(`Delete the ${b.plugin} binding?`)) return;
            await del(`/hooks/${seg(b.id)}`);
            await rerender();
          }, { class: 'danger' }))));
    }) : h('p', { class: 'muted' }, 'No hooks bound.'),
    form({ id: 'create-hook', 'aria-label': 'Bind a hook' }, async () => {
      const body = { plugin: plugin.value.trim(), config: parse(config.value || '{}', 'Config') };
      if (events.value.trim()) body.events = lines(events.value);
      await post('/hooks', body);
      await rerender();
      notice('Hook bound.');
    },
    h('h2', {}, 'Bind a hook'),
    h('div', { class: 'row' }, field('Plugin id', plugin), field('Config (JSON)', config), field('Events', events, 'comma separated'),
      h('button', { type: 'submit' }, 'Bind'))));
}
