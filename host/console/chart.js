// A bar chart as inline SVG: no chart library, nothing fetched. Values are integers
// (minor units); bar heights are proportions, only for drawing.

import { h } from './ui.js';

/** Bars of `data` ([{label, value, text}]) with `title` as the accessible name. */
export function barChart(data, title) {
  const width = 560;
  const height = 260;
  const top = 24;
  const bottom = 40;
  const left = 10;
  const max = Math.max(1, ...data.map(d => d.value));
  const slot = (width - left * 2) / Math.max(1, data.length);
  const bar = Math.min(80, slot * 0.6);
  const plot = height - top - bottom;
  const svg = h('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title, width, height },
    h('title', {}, title),
    h('line', { x1: left, x2: width - left, y1: top + plot, y2: top + plot }),
    data.map((d, i) => {
      const bh = Math.max(0, Math.round((d.value / max) * plot));
      const x = left + i * slot + (slot - bar) / 2;
      return h('g', {},
        h('rect', { class: 'bar', x, y: top + plot - bh, width: bar, height: bh }, h('title', {}, `${d.label}: ${d.text}`)),
        h('text', { x: x + bar / 2, y: top + plot - bh - 6, 'text-anchor': 'middle' }, d.text),
        h('text', { x: x + bar / 2, y: height - bottom + 18, 'text-anchor': 'middle' }, d.label));
    }));
  return h('figure', { class: 'chart' }, svg, h('figcaption', { class: 'muted' }, title));
}
