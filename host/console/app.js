// Entry point: sign-in, navigation (URL fragments, so the server serves one page) and
// the page registry of both roles.

import { session, signIn, signOut, get } from './api.js';
import { h, field, form, clearStatus, showError } from './ui.js';
import * as operator from './operator.js';
import * as manager from './manager.js';
import * as live from './live.js';

const PAGES = {
  operator: [
    ['tenants', 'Tenants', operator.tenants],
    ['plugins', 'Plugins', operator.plugins],
    ['dead-letters', 'Dead letters', operator.deadLetters],
    ['cluster', 'Cluster hosts', operator.cluster],
  ],
  manager: [
    ['venues', 'Venues', manager.venues],
    ['transactions', 'Transactions', manager.transactions],
    ['revenue', 'Revenue', manager.revenue],
    ['rules', 'Spend rules', manager.rules],
    ['tiers', 'Tier ladder', manager.tiers],
    ['performances', 'Performances', manager.performances],
    ['customers', 'Customers', manager.customers],
    ['hooks', 'Hooks', manager.hooks],
    ['live', 'Live events', live.page],
  ],
};

/** Detail pages reached from a list: `#/tenants/{slug}` and so on. */
const DETAILS = {
  tenants: operator.tenant,
  plugins: operator.plugin,
  venues: manager.venue,
};

let cleanup = null;

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  return { page: parts[0] || '', arg: parts[1] };
}

async function render() {
  if (cleanup) { cleanup(); cleanup = null; }
  clearStatus();
  const s = session();
  const view = document.getElementById('view');
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  const out = document.getElementById('signout');
  if (!s) {
    nav.replaceChildren();
    who.textContent = '';
    out.hidden = true;
    view.replaceChildren(signInView());
    return;
  }
  out.hidden = false;
  who.textContent = s.role === 'operator' ? 'Operator' : `Manager of ${s.tenant}`;
  const pages = PAGES[s.role];
  let { page, arg } = route();
  if (!pages.some(p => p[0] === page)) page = pages[0][0];
  nav.replaceChildren(h('ul', {},
    pages.map(([id, label]) => h('li', {}, h('a', { href: `#/${id}`, 'aria-current': id === page ? 'page' : null }, label))),
    s.role === 'operator' ? h('li', {}, h('a', { href: '/metrics', target: '_blank', rel: 'noopener' }, 'Metrics ↗')) : null));
  const entry = pages.find(p => p[0] === page);
  const show = arg !== undefined && DETAILS[page] ? DETAILS[page] : entry[2];
  const container = h('div', { 'data-page': page });
  view.replaceChildren(container);
  try {
    cleanup = (await show(container, arg)) || null;
  } catch (err) {
    showError(err);
  }
}

function signInView() {
  const role = h('select', { name: 'role' },
    h('option', { value: 'operator' }, 'Operator (operator token)'),
    h('option', { value: 'manager' }, 'Manager (a manager key of one tenant)'));
  const tenant = h('input', { name: 'tenant', autocomplete: 'username', spellcheck: 'false' });
  const secret = h('input', { name: 'secret', type: 'password', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const tenantField = field('Tenant (slug)', tenant);
  const sync = () => { tenantField.hidden = role.value !== 'manager'; tenant.required = role.value === 'manager'; };
  role.addEventListener('change', sync);
  sync();
  return h('div', { class: 'signin' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'The token or key stays in this tab only (session storage) and is sent to this server alone.'),
    form({ id: 'signin', 'aria-label': 'Sign in' }, async () => {
      const value = role.value === 'operator'
        ? { role: 'operator', token: secret.value.trim() }
        : { role: 'manager', tenant: tenant.value.trim(), key: secret.value.trim() };
      signIn(value);
      try {
        // A request only this role may make: a wrong token or a terminal key is refused here.
        await get(value.role === 'operator' ? '/admin/tenants' : '/pos/integrations');
      } catch (err) {
        signOut();
        throw err;
      }
      location.hash = value.role === 'operator' ? '#/tenants' : '#/venues';
      render();
    },
    h('div', { class: 'row' }, field('Role', role), tenantField, field('Token or key', secret)),
    h('p', {}, h('button', { type: 'submit' }, 'Sign in'))));
}

document.getElementById('signout').addEventListener('click', () => {
  signOut();
  location.hash = '';
  render();
});
// The skip link moves focus into the page; as a plain `#main` link it would change the
// hash, which this console routes on, and leave the page.
document.querySelector('a.skip').addEventListener('click', event => {
  event.preventDefault();
  document.getElementById('main').focus();
});
window.addEventListener('hashchange', () => {
  render();
  document.getElementById('main').focus();
});
render();

