// DOM helpers. Everything from the API is inserted as text (never as HTML), so data
// cannot inject markup, and the Content-Security-Policy forbids inline script anyway.

let ids = 0;

/** Builds an element: `h('button', {class: 'x', onclick: f}, 'text', child, [more])`. */
export function h(tag, props = {}, ...children) {
  const svg = ['svg', 'rect', 'text', 'line', 'g', 'title'].includes(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.setAttribute('class', value);
    else if (name === 'value' && !svg) el.value = value;
    else if (name === 'checked' && !svg) el.checked = !!value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** A labelled control; `input` is an element, the label is tied to it by id. */
export function field(label, input, hint) {
  if (!input.id) input.id = `f${++ids}`;
  const hintEl = hint ? h('span', { class: 'muted', id: `${input.id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('label', { for: input.id }, label, input, hintEl);
}

/** A labelled checkbox. */
export function check(label, input) {
  if (!input.id) input.id = `f${++ids}`;
  return h('label', { class: 'check', for: input.id }, input, label);
}

/** A table of `rows` with `columns`: [{label, value: row => text|Node, num?}]. */
export function table(columns, rows, empty = 'Nothing yet.') {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, columns.map(c => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    h('tbody', {}, rows.map(r => h('tr', {}, columns.map(c => h('td', { class: c.num ? 'num' : null, 'data-col': c.label || null }, c.value(r))))))));
}

/** A definition list of [term, value] pairs. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

const statusEl = () => document.getElementById('status');

/** Shows an API error as the API words it: its code and message. */
export function showError(err) {
  const box = statusEl();
  box.replaceChildren();
  const msg = err && err.code
    ? h('div', { class: 'msg error', role: 'alert' }, h('strong', {}, `${err.status} `), h('code', {}, err.code), ': ', err.message)
    : h('div', { class: 'msg error', role: 'alert' }, String(err && err.message || err));
  box.appendChild(msg);
}

/** Shows a short confirmation. */
export function notice(text) {
  statusEl().replaceChildren(h('div', { class: 'msg info' }, text));
}

let pending = null;

/** A confirmation to show on the page about to open (navigation clears the message area). */
export function flash(text) {
  pending = text;
}

/** Clears the message area on navigation, showing a pending [flash] message. */
export function clearStatus() {
  statusEl().replaceChildren();
  if (pending) {
    notice(pending);
    pending = null;
  }
}

/** Runs an async action from a button or form, showing its error if it fails. */
export async function run(action) {
  try {
    return await action();
  } catch (err) {
    showError(err);
    return undefined;
  }
}

/** A form whose submit runs `onsubmit(form)` with the button disabled meanwhile. */
export function form(props, onsubmit, ...children) {
  const el = h('form', { class: 'panel', ...props }, ...children);
  el.addEventListener('submit', async ev => {
    ev.preventDefault();
    const buttons = el.querySelectorAll('button');
    buttons.forEach(b => { b.disabled = true; });
    try { await run(() => onsubmit(el)); } finally { buttons.forEach(b => { b.disabled = false; }); }
  });
  return el;
}

/** A button running `action` (errors shown), disabled while it runs. */
export function button(label, action, props = {}) {
  const b = h('button', { type: 'button', ...props }, label);
  b.addEventListener('click', async () => {
    b.disabled = true;
    try { await run(action); } finally { b.disabled = false; }
  });
  return b;
}

/** Integer minor units as text, without floating point: 2500 USD → "USD 25.00". */
export function money(amount, currency) {
  if (amount === null || amount === undefined) return '—';
  let digits = 2;
  try {
    digits = new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
  } catch { /* unknown currency: two digits */ }
  const negative = amount < 0;
  const text = String(Math.abs(amount)).padStart(digits + 1, '0');
  const whole = digits ? text.slice(0, -digits) : text;
  const frac = digits ? `.${text.slice(-digits)}` : '';
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${negative ? '−' : ''}${currency || ''} ${grouped}${frac}`.trim();
}

/** An RFC 3339 time in the browser's locale, with the exact value as a tooltip. */
export function when(text) {
  if (!text) return '—';
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) return text;
  return h('time', { datetime: text, title: text }, d.toLocaleString());
}

/** A coloured state badge. */
export function badge(text, kind) {
  return h('span', { class: `badge ${kind || ''}` }, text);
}

/** Copies text, answering whether it worked (the Clipboard API needs a secure context). */
export async function copy(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (input) { input.focus(); input.select(); }
    return document.execCommand && document.execCommand('copy');
  }
}

/** A read-only value with a Copy button. */
export function copyable(label, value) {
  const input = h('input', { readonly: true, value, spellcheck: 'false', autocomplete: 'off' });
  const status = h('span', { role: 'status', class: 'muted' });
  return h('div', {}, field(label, input),
    h('div', { class: 'actions' }, button('Copy', async () => {
      status.textContent = (await copy(value, input)) ? 'Copied.' : 'Select the text and copy it.';
    }, { class: 'secondary' }), status));
}

/** A date input's day as an RFC 3339 instant at the browser's local midnight. */
export function dayStart(value) {
  if (!value) return null;
  const d = new Date(`${value}T00:00:00`);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** A datetime-local input's value as RFC 3339 in UTC. */
export function localInstant(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** The non-empty lines of a textarea. */
export function lines(text) {
  return text.split(/[\n,]/).map(s => s.trim()).filter(Boolean);
}
