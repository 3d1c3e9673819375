/**
 * svg: a self-contained SVG line chart (axes, grid, one line per series, legend), so that the
 * graphs of the _stat directory open in any browser or image viewer without scripts or fonts
 * beyond the generic families.
 */

export interface ChartLine {
  readonly label: string;
  readonly points: readonly { readonly timeMs: number; readonly value: number }[];
}

const WIDTH = 800;
const HEIGHT = 320;
const MARGIN = { left: 80, right: 20, top: 36, bottom: 64 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const GRID_LINES = 4;

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** One text element in the generic sans-serif family; `content` is escaped here. */
function text(at: { x: number | string; y: number | string }, content: string, style: string): string {
  return `<text x="${at.x}" y="${at.y}" font-family="sans-serif" ${style}>${escapeXml(content)}</text>`;
}

/** A short number for an axis label: 1.5k, 12M, 0.25m (milli). */
export function formatAxis(value: number): string {
  const magnitude = Math.abs(value);
  if (magnitude === 0) return '0';
  const units: [number, string][] = [[1e9, 'G'], [1e6, 'M'], [1e3, 'k'], [1, ''], [1e-3, 'm'], [1e-6, 'u']];
  for (const [scale, suffix] of units) {
    if (magnitude >= scale) return `${Number((value / scale).toPrecision(3))}${suffix}`;
  }
  return value.toExponential(1);
}

/** Renders the chart; an empty chart still has its axes and a "no data" note. */
export function lineChart(options: { title: string; unit: string; lines: readonly ChartLine[] }): string {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const all = options.lines.flatMap((line) => line.points);
  const minMs = Math.min(...all.map((point) => point.timeMs), Date.now());
  const maxMs = Math.max(...all.map((point) => point.timeMs), minMs + 1000);
  const maxValue = Math.max(...all.map((point) => (Number.isFinite(point.value) ? point.value : 0)), 0) || 1;
  const x = (timeMs: number) => MARGIN.left + ((timeMs - minMs) / (maxMs - minMs)) * plotWidth;
  const y = (value: number) => MARGIN.top + plotHeight - (Math.max(0, value) / maxValue) * plotHeight;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    text({ x: WIDTH / 2, y: 22 }, options.title, 'text-anchor="middle" font-size="15"'),
  ];
  for (let step = 0; step <= GRID_LINES; step++) {
    const value = (maxValue * step) / GRID_LINES;
    const at = y(value).toFixed(1);
    parts.push(`<line x1="${MARGIN.left}" y1="${at}" x2="${WIDTH - MARGIN.right}" y2="${at}" stroke="#dddddd"/>`);
    const label = `${formatAxis(value)}${options.unit}`;
    parts.push(text({ x: MARGIN.left - 6, y: at }, label, 'text-anchor="end" dominant-baseline="middle" font-size="11"'));
  }
  const axisY = MARGIN.top + plotHeight;
  parts.push(`<line x1="${MARGIN.left}" y1="${axisY}" x2="${WIDTH - MARGIN.right}" y2="${axisY}" stroke="#333333"/>`);
  parts.push(`<line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${axisY}" stroke="#333333"/>`);
  const spanSec = Math.round((maxMs - minMs) / 1000);
  parts.push(text({ x: MARGIN.left, y: axisY + 16 }, `-${spanSec}s`, 'font-size="11"'));
  parts.push(text({ x: WIDTH - MARGIN.right, y: axisY + 16 }, 'now', 'text-anchor="end" font-size="11"'));
  options.lines.forEach((line, index) => {
    const color = COLORS[index % COLORS.length] as string;
    const path = line.points.map((point) => `${x(point.timeMs).toFixed(1)},${y(point.value).toFixed(1)}`).join(' ');
    if (line.points.length > 0) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${path}"/>`);
    const legendX = MARGIN.left + index * 150;
    parts.push(`<rect x="${legendX}" y="${HEIGHT - 22}" width="12" height="12" fill="${color}"/>`);
    parts.push(text({ x: legendX + 16, y: HEIGHT - 12 }, line.label, 'font-size="12"'));
  });
  if (all.length === 0) {
    const at = { x: WIDTH / 2, y: MARGIN.top + plotHeight / 2 };
    parts.push(text(at, 'no data yet', 'text-anchor="middle" font-size="13" fill="#888888"'));
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
