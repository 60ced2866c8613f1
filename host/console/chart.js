// A bar chart as inline SVG: no chart library, nothing fetched. Values are integers
// (minor units); bar heights are proportions, only for drawing.

import { h } from './ui.js';

/**
 * Bars of `data` ([{label, value, text}]) with `title` as the accessible name. Every bar
 * carries its label and amount as a tooltip (`<title>`) and in `data-` attributes; with
 * many bars only every few labels are written under the axis and amounts only over the
 * tallest bar, so the text stays legible on a tablet.
 */
export function barChart(data, title) {
  const many = data.length > 12;
  const width = Math.max(560, data.length * 20);
  const height = 260;
  const top = 24;
  const bottom = 40;
  const left = 10;
  const max = Math.max(1, ...data.map(d => d.value));
  const slot = (width - left * 2) / Math.max(1, data.length);
  const bar = Math.min(80, slot * 0.7);
  const plot = height - top - bottom;
  const labelEvery = many ? Math.ceil(data.length / 10) : 1;
  const peak = data.reduce((best, d, i) => (d.value > (data[best]?.value ?? -Infinity) ? i : best), 0);
  const svg = h('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title, width, height, preserveAspectRatio: 'xMinYMin meet' },
    h('title', {}, title),
    h('line', { x1: left, x2: width - left, y1: top + plot, y2: top + plot }),
    data.map((d, i) => {
      const bh = Math.max(0, Math.round((Math.max(0, d.value) / max) * plot));
      const x = left + i * slot + (slot - bar) / 2;
      const showValue = d.value !== 0 && (!many || i === peak);
      const last = i === data.length - 1;
      // The last bar (today, this month) is always labelled; a regular label closer to it
      // than the spacing would run into its text.
      const showLabel = last || (i % labelEvery === 0 && data.length - 1 - i >= labelEvery);
      // An amount over a bar at either edge is anchored inwards so it is not cut off.
      const centre = x + bar / 2;
      const anchor = centre > width - 40 ? 'end' : centre < 40 ? 'start' : 'middle';
      const valueX = anchor === 'end' ? x + bar : anchor === 'start' ? x : centre;
      return h('g', {},
        h('rect', { class: 'bar', x, y: top + plot - bh, width: bar, height: bh, 'data-label': d.label, 'data-text': d.text }, h('title', {}, `${d.label}: ${d.text}`)),
        showValue ? h('text', { x: valueX, y: top + plot - bh - 6, 'text-anchor': anchor }, d.text) : null,
        showLabel ? h('text', { x: x + bar / 2, y: height - bottom + 18, 'text-anchor': 'middle' }, d.label) : null);
    }));
  return h('figure', { class: 'chart' }, svg, h('figcaption', { class: 'muted' }, title));
}
