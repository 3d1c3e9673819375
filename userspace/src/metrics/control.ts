/**
 * The metrics methods of the control socket (and of the D-Bus helper that maps `QueryMetric`
 * onto `queryMetric`): parameter checking with messages that name the bad field.
 */
import { Errno, FsError } from '../errno.js';
import type { MetricsEngine } from './engine.js';
import { match, MATCH_OPS, QUERY_FUNCTIONS, type Matcher, type MatchOp, type QueryFunction } from './query.js';
import { renderFamily } from './stat-files.js';

function invalid(detail: string): FsError {
  return new FsError(Errno.EINVAL, 'queryMetric', detail);
}

function requireEngine(engine: MetricsEngine | undefined): MetricsEngine {
  if (engine === undefined) throw new FsError(Errno.EOPNOTSUPP, 'metrics', 'metrics are disabled (metrics.enabled: false)');
  return engine;
}

/** `[label, op, value]` triples into matchers. */
export function parseMatchers(value: unknown): Matcher[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalid('matchers: must be a list of [label, op, value]');
  return value.map((item: unknown, index) => {
    const isTriple = Array.isArray(item) && item.length === 3 && item.every((part) => typeof part === 'string');
    if (!isTriple) throw invalid(`matchers[${index}]: must be [label, op, value] strings`);
    const [label, op, text] = item as [string, string, string];
    if (!(MATCH_OPS as readonly string[]).includes(op)) {
      throw invalid(`matchers[${index}]: op "${op}" is not one of ${MATCH_OPS.join(' ')}`);
    }
    try {
      return match(label, text, op as MatchOp);
    } catch (error) {
      throw invalid(`matchers[${index}]: ${(error as Error).message}`);
    }
  });
}

/** {name, matchers, fn, intervals} -> {value}: `value` is 0 when nothing matched. */
export function queryMetric(
  engine: MetricsEngine | undefined,
  params: Record<string, unknown>,
): { value: number; series: number } {
  const ready = requireEngine(engine);
  const name = params['name'];
  if (typeof name !== 'string' || name === '') throw invalid('name: a metric name is required');
  const fn = params['fn'] ?? 'avg';
  if (typeof fn !== 'string' || !(QUERY_FUNCTIONS as readonly string[]).includes(fn)) {
    throw invalid(`fn: "${String(fn)}" is not one of ${QUERY_FUNCTIONS.join(', ')}`);
  }
  const intervals = params['intervals'] ?? 1;
  if (typeof intervals !== 'number' || !Number.isInteger(intervals) || intervals < 1) {
    throw invalid(`intervals: ${JSON.stringify(intervals)} is not a positive integer`);
  }
  let selection;
  try {
    selection = ready.get(name, parseMatchers(params['matchers']));
    const value = selection.run(fn as QueryFunction, Math.min(intervals, ready.options.retentionIntervals));
    return { value, series: selection.histories.length };
  } catch (error) {
    if (error instanceof FsError) throw error;
    throw invalid((error as Error).message);
  }
}

/** Every family's series with current values and recent averages, as in the _stat files. */
export function metricsText(engine: MetricsEngine | undefined): string {
  const ready = requireEngine(engine);
  return [...ready.registry.families()].map((family) => renderFamily(ready, family)).join('\n');
}
