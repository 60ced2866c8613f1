// Live: the tenant's event stream over the WebSocket. A browser cannot set headers, so the
// key travels as the subprotocol `key.<key>` next to `posbridge.v1`. After a drop the page
// reconnects with `?since=<last seq seen>`, so no event is missed or shown twice.

import { session, seg } from './api.js';
import { h, field, button } from './ui.js';

const KEEP = 500;

/** `#/live`: the stream, filterable by event type. Answers a cleanup for navigation. */
export function page(root) {
  const s = session();
  const state = h('p', { id: 'live-state', role: 'status' }, 'Connecting…');
  const filter = h('select', { name: 'type' }, h('option', { value: '' }, 'all types'));
  const list = h('ol', { class: 'events', id: 'events', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  const types = new Set();
  const events = [];
  let lastSeq = null;
  let socket = null;
  let stopped = false;
  let paused = false;
  let delay = 500;
  let timer = null;

  const visible = e => !filter.value || e.type === filter.value;
  const item = e => h('li', { 'data-type': e.type, 'data-seq': e.seq },
    h('strong', {}, `#${e.seq} ${e.type}`), ' ', h('span', { class: 'muted' }, e.at || ''),
    h('pre', {}, JSON.stringify(e.data, null, 2)));
  const redraw = () => list.replaceChildren(...events.filter(visible).map(item));
  filter.addEventListener('change', redraw);

  const connect = () => {
    if (stopped || paused) return;
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    const since = lastSeq === null ? '' : `?since=${lastSeq}`;
    state.textContent = lastSeq === null ? 'Connecting…' : `Reconnecting from #${lastSeq}…`;
    socket = new WebSocket(`${scheme}://${window.location.host}/ws/pos/${seg(s.tenant)}${since}`, ['posbridge.v1', `key.${s.key}`]);
    socket.addEventListener('open', () => { delay = 500; });
    socket.addEventListener('message', ev => {
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (frame.type === 'hello') {
        if (lastSeq === null) lastSeq = frame.last_seq;
        state.textContent = `Live: connected, events after #${lastSeq}.`;
        return;
      }
      if (frame.type === 'reset') {
        state.textContent = `History before #${frame.last_seq} is gone; continuing from there.`;
        lastSeq = frame.last_seq;
        return;
      }
      if (typeof frame.seq !== 'number') return;
      if (lastSeq !== null && frame.seq <= lastSeq) return;
      lastSeq = frame.seq;
      events.unshift(frame);
      if (events.length > KEEP) events.length = KEEP;
      if (!types.has(frame.type)) {
        types.add(frame.type);
        filter.append(h('option', { value: frame.type }, frame.type));
      }
      if (visible(frame)) {
        list.prepend(item(frame));
        while (list.children.length > KEEP) list.lastChild.remove();
      }
    });
    socket.addEventListener('close', ev => {
      socket = null;
      if (stopped || paused) return;
      if (ev.code === 4003) {
        state.textContent = 'Closed by the server: the key was revoked or the tenant suspended (4003).';
        return;
      }
      state.textContent = `Disconnected (${ev.code}${ev.reason ? `: ${ev.reason}` : ''}); reconnecting…`;
      timer = setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    });
  };

  const pause = button('Pause', () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    if (paused) {
      clearTimeout(timer);
      if (socket) socket.close(1000);
      state.textContent = `Paused at #${lastSeq ?? '—'}.`;
    } else {
      connect();
    }
  }, { class: 'secondary', id: 'live-pause' });

  root.append(h('h1', {}, 'Live events'),
    h('p', { class: 'muted' }, `The event stream of ${s.tenant}, newest first (the last ${KEEP} kept here).`),
    h('div', { class: 'row' }, field('Event type', filter), pause, button('Clear', () => { events.length = 0; redraw(); }, { class: 'secondary' })),
    state, list);
  connect();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (socket) socket.close(1000);
  };
}
