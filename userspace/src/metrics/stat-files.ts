/**
 * The files of the _stat directory, rendered from the query engine: one text file per metric
 * family (current values and recent averages), `pools` (buckets, space, throughput, latency),
 * `tasks` (what the task manager reports) and SVG graphs over the retention window.
 */
import type { StatContent } from '../fuse/stat-dir.js';
import type { MetricsEngine } from './engine.js';
import type { ShmrMetrics } from './instruments.js';
import { match } from './query.js';
import type { Family } from './registry.js';
import { formatAxis, lineChart, type ChartLine } from './svg.js';

/** Intervals of the short and long averages shown in the text files. */
const SHORT_INTERVALS = 10;
const LONG_INTERVALS = 60;
const GRAPHS = ['throughput.svg', 'latency.svg', 'errors.svg'] as const;

export interface StatSources {
  readonly engine: MetricsEngine;
  readonly metrics: ShmrMetrics;
  /** Pool names with their bucket rows (name, state, free, total). */
  readonly pools: () => { pool: string; buckets: { name: string; state: string; freeBytes: number; totalBytes: number }[] }[];
}

export function statContent(sources: StatSources): StatContent {
  return {
    names: () => [
      ...[...sources.engine.registry.families()].map((family) => family.name), 'pools', 'tasks', ...GRAPHS,
    ],
    render: (name) => Buffer.from(renderFile(sources, name)),
  };
}

function renderFile(sources: StatSources, name: string): string {
  if (name === 'pools') return renderPools(sources);
  if (name === 'tasks') return renderTasks(sources);
  if (name === 'throughput.svg') return throughputGraph(sources);
  if (name === 'latency.svg') return latencyGraph(sources);
  if (name === 'errors.svg') return errorsGraph(sources);
  const family = sources.engine.registry.family(name);
  if (family === undefined) return '';
  return renderFamily(sources.engine, family);
}

function fixed(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toPrecision(6);
}

/** One family as text: a header, then one line per series. */
export function renderFamily(engine: MetricsEngine, family: Family): string {
  const short = SHORT_INTERVALS;
  const long = LONG_INTERVALS;
  const lines = [`# ${family.name} (${family.kind}): ${family.help}`];
  if (family.kind === 'counter') lines.push(`# series  total  rate/s over ${short} and ${long} intervals`);
  if (family.kind === 'gauge') lines.push(`# series  value  avg over ${short} and ${long} intervals  min  max (${long})`);
  if (family.kind === 'histogram') lines.push(`# series  count  avg p50 p99 over ${long} intervals (seconds)`);
  for (const series of family.allSeries()) {
    const selection = engine.get(family.name, family.labelNames.map((label) => match(label, series.labels[label] ?? '')));
    const columns = family.kind === 'counter'
      ? [selection.last(), selection.rate(short), selection.rate(long)]
      : family.kind === 'gauge'
        ? [selection.last(), selection.avg(short), selection.avg(long), selection.min(long), selection.max(long)]
        : [selection.last(), selection.avg(long), selection.percentile(0.5, long), selection.percentile(0.99, long)];
    lines.push(`${series.describe()} ${columns.map(fixed).join(' ')}`);
  }
  return `${lines.join('\n')}\n`;
}

function renderPools(sources: StatSources): string {
  const engine = sources.engine;
  const lines: string[] = [];
  for (const { pool, buckets } of sources.pools()) {
    const byPool = [match('pool', pool)];
    const read = engine.get('block_bytes_total', [...byPool, match('op', 'read')]).rate(SHORT_INTERVALS);
    const written = engine.get('block_bytes_total', [...byPool, match('op', 'write')]).rate(SHORT_INTERVALS);
    const latency = engine.get('block_operation_duration_seconds', byPool).avg(SHORT_INTERVALS);
    const errors = engine.get('shard_errors_total', byPool).last();
    lines.push(`pool ${pool}: read ${formatAxis(read)}B/s, write ${formatAxis(written)}B/s, ` +
      `block latency ${formatAxis(latency)}s (avg of ${SHORT_INTERVALS} intervals), shard errors ${errors}`);
    for (const bucket of buckets) {
      const space = `${formatAxis(bucket.freeBytes)}B free of ${formatAxis(bucket.totalBytes)}B`;
      lines.push(`  bucket ${bucket.name}: ${bucket.state}, ${space}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function renderTasks(sources: StatSources): string {
  const tasks = sources.metrics.tasks();
  if (tasks.length === 0) return 'no tasks\n';
  return `${tasks.map((task) => {
    const percent = task.totalUnits > 0 ? ((100 * task.doneUnits) / task.totalUnits).toFixed(1) : '0.0';
    const detail = task.detail === undefined ? '' : ` ${task.detail}`;
    return `${task.id} ${task.kind} ${task.state} ${task.doneUnits}/${task.totalUnits} (${percent}%)${detail}`;
  }).join('\n')}\n`;
}

/** One line per pool: what `value` makes of each interval of the family's matching series. */
function perPool(
  sources: StatSources,
  family: string,
  value: (interval: { durationMs: number; sum: number; count: number }) => number,
): ChartLine[] {
  const intervals = sources.engine.options.retentionIntervals;
  return sources.pools().map(({ pool }) => ({
    label: pool,
    points: sources.engine.get(family, [match('pool', pool)]).timeline(intervals)
      .map((interval) => ({ timeMs: interval.endMs, value: value(interval) })),
  }));
}

function throughputGraph(sources: StatSources): string {
  const lines = perPool(sources, 'block_bytes_total', (i) => (i.durationMs > 0 ? (i.sum * 1000) / i.durationMs : 0));
  return lineChart({ title: 'Throughput per pool (read + write)', unit: 'B/s', lines });
}

function latencyGraph(sources: StatSources): string {
  const lines = perPool(sources, 'block_operation_duration_seconds', (i) => (i.count > 0 ? i.sum / i.count : 0));
  return lineChart({ title: 'Block latency per pool (mean)', unit: 's', lines });
}

function errorsGraph(sources: StatSources): string {
  const lines = perPool(sources, 'shard_errors_total', (i) => i.sum);
  return lineChart({ title: 'Shard errors per pool (per interval)', unit: '', lines });
}
