/**
 * A small SVG chart of a timeline: admitted and denied requests per second (top)
 * and p99 latency per second (bottom), optionally with a second system's p99 for
 * comparison. Written by hand: two polylines per panel do not need a plotting
 * library, and the output is a plain file GitHub renders.
 */
import type { Second } from './timeline.js';

type Series = { name: string; color: string; values: number[] };

function panel(x0: number, y0: number, w: number, h: number, series: Series[], unit: string, n: number): string {
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const top = niceCeil(max);
  const px = (i: number) => x0 + (n <= 1 ? 0 : (i * w) / (n - 1));
  const py = (v: number) => y0 + h - (v / top) * h;
  const grid = [0, 0.25, 0.5, 0.75, 1]
    .map((f) => {
      const y = py(top * f);
      return `<line x1="${x0}" y1="${y}" x2="${x0 + w}" y2="${y}" stroke="#ddd"/><text x="${x0 - 6}" y="${y + 4}" text-anchor="end">${fmt(top * f)}</text>`;
    })
    .join('');
  const lines = series
    .map(
      (s) =>
        `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.values.map((v, i) => `${px(i).toFixed(1)},${py(v).toFixed(1)}`).join(' ')}"/>`,
    )
    .join('');
  const legend = series
    .map((s, i) => `<rect x="${x0 + 10 + i * 170}" y="${y0 - 16}" width="12" height="4" fill="${s.color}"/><text x="${x0 + 26 + i * 170}" y="${y0 - 11}">${s.name}</text>`)
    .join('');
  return `${grid}<text x="${x0 - 40}" y="${y0 + h / 2}" transform="rotate(-90 ${x0 - 40} ${y0 + h / 2})" text-anchor="middle">${unit}</text>${lines}${legend}`;
}

function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(0) : v.toFixed(1));

export function timelineSvg(
  title: string,
  seconds: Second[],
  compare?: { name: string; seconds: Second[] },
  events: { t: number; label: string }[] = [],
): string {
  const n = seconds.length;
  const W = 760;
  const x0 = 70;
  const w = W - x0 - 20;
  const top = panel(
    x0,
    50,
    w,
    170,
    [
      { name: 'admitted / s', color: '#2a9d3a', values: seconds.map((s) => s.admitted) },
      { name: 'denied (429) / s', color: '#d1495b', values: seconds.map((s) => s.denied) },
      { name: 'errors / s', color: '#222', values: seconds.map((s) => s.errors) },
    ],
    'requests / s',
    n,
  );
  const p99: Series[] = [{ name: 'p99 ms', color: '#1f6feb', values: seconds.map((s) => s.p99Ms) }];
  if (compare) p99.push({ name: `p99 ms, ${compare.name}`, color: '#999', values: seconds.map((s) => compare.seconds.find((c) => c.t === s.t)?.p99Ms ?? 0) });
  const bottom = panel(x0, 280, w, 120, p99, 'p99 ms', n);
  const ticks = seconds
    .filter((_, i) => i % 5 === 0)
    .map((s) => `<text x="${(x0 + (n <= 1 ? 0 : (seconds.indexOf(s) * w) / (n - 1))).toFixed(1)}" y="420" text-anchor="middle">${s.t}</text>`)
    .join('');
  const marks = events
    .map((e) => {
      const x = (x0 + (n <= 1 ? 0 : (e.t * w) / (n - 1))).toFixed(1);
      return `<line x1="${x}" y1="45" x2="${x}" y2="400" stroke="#888" stroke-dasharray="4 3"/><text x="${Number(x) + 4}" y="${240}" fill="#555">${escapeXml(e.label)}</text>`;
    })
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="445" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="#fff"/>
<text x="${x0}" y="20" font-size="14" font-weight="bold">${escapeXml(title)}</text>
${top}${bottom}${marks}${ticks}<text x="${x0 + w / 2}" y="438" text-anchor="middle">seconds</text>
</svg>
`;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c] as string);
}
