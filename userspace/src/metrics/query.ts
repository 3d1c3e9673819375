/**
 * Queries over series histories: label matchers and the reductions of a window of intervals
 * (`avg`, `min`, `max`, `sum`, `rate`, `count`, `percentile`, `last`).
 *
 * A window of `n` intervals is the current, unfinished interval plus the `n - 1` newest stored
 * ones. How a reduction reads each kind is documented on `Selection`.
 */
import { HISTOGRAM_BUCKETS, LATENCY_BOUNDS_SEC, type MetricKind } from './registry.js';
import type { History, PointRecord } from './history.js';

export type MatchOp = '=' | '!=' | '=~' | '!~';
export const MATCH_OPS: readonly MatchOp[] = ['=', '!=', '=~', '!~'];

/** A label condition, as in PromQL: equality, inequality, regex match or non-match. */
export interface Matcher {
  readonly label: string;
  readonly op: MatchOp;
  readonly value: string;
  /** The anchored regex of `=~` and `!~`. */
  readonly regex?: RegExp;
}

/** `label` equals `value` (`op` '=' by default). Regexes are anchored, as in PromQL. */
export function match(label: string, value: string, op: MatchOp = '='): Matcher {
  if (!MATCH_OPS.includes(op)) throw new Error(`unknown label match "${op}" (one of ${MATCH_OPS.join(' ')})`);
  if (op === '=' || op === '!=') return { label, op, value };
  let regex: RegExp;
  try {
    regex = new RegExp(`^(?:${value})$`);
  } catch (error) {
    throw new Error(`label ${label}: bad regex "${value}": ${(error as Error).message}`);
  }
  return { label, op, value, regex };
}

const MATCHER_TEXT_PATTERN = /^([A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)(.*)$/;

/**
 * A matcher as written on a command line (`pool=fast`, `op!=read`, `bucket=~b[12]`,
 * `pool!~arc.*`) as a [label, op, value] triple; undefined when it is not one.
 */
export function parseMatcherText(text: string): [string, MatchOp, string] | undefined {
  const found = MATCHER_TEXT_PATTERN.exec(text);
  if (found === null) return undefined;
  return [found[1] as string, found[2] as MatchOp, found[3] as string];
}

/** What a command line says about a matcher it could not read. */
export const MATCHER_TEXT_HELP = 'write LABEL=VALUE, LABEL!=VALUE, LABEL=~REGEX or LABEL!~REGEX';

export function matches(labels: Readonly<Record<string, string>>, matcher: Matcher): boolean {
  const actual = labels[matcher.label] ?? '';
  if (matcher.op === '=') return actual === matcher.value;
  if (matcher.op === '!=') return actual !== matcher.value;
  const isMatch = (matcher.regex as RegExp).test(actual);
  return matcher.op === '=~' ? isMatch : !isMatch;
}

/** The reductions a control call may name. */
export const QUERY_FUNCTIONS = ['avg', 'min', 'max', 'sum', 'rate', 'count', 'last', 'p50', 'p90', 'p99'] as const;
export type QueryFunction = (typeof QUERY_FUNCTIONS)[number];

interface Window {
  readonly points: PointRecord[];
  readonly seconds: number;
}

/**
 * The series of one family that matched, over which windows are reduced. With no series the
 * reductions return 0. Per kind:
 * - counter: sum and count = increase; avg = increase per interval; rate = per second;
 *   min/max = smallest/largest increase of one interval (summed over series); last = total.
 * - gauge: avg/min/max over every sample of every series; sum = sum of the series' latest
 *   values; count = samples; last = sum of current values; rate is refused.
 * - histogram: sum and count of observations; avg = mean observation; min/max observed;
 *   rate = observations per second; percentile from the buckets; last = observations ever.
 */
export class Selection {
  readonly name: string;
  readonly kind: MetricKind;
  readonly histories: readonly History[];
  readonly #window: (history: History, intervals: number) => Window;

  constructor(parts: {
    name: string; kind: MetricKind; histories: readonly History[];
    window: (history: History, intervals: number) => Window;
  }) {
    this.name = parts.name;
    this.kind = parts.kind;
    this.histories = parts.histories;
    this.#window = parts.window;
  }

  sum(intervals = 1): number {
    if (this.kind === 'gauge') return this.#total((w) => w.points[0]?.last ?? 0, intervals);
    return this.#total((w) => sumOf(w.points, (p) => p.sum), intervals);
  }

  count(intervals = 1): number {
    return this.#total((w) => sumOf(w.points, (p) => p.count), intervals);
  }

  avg(intervals = 1): number {
    if (this.kind === 'counter') return this.sum(intervals) / intervals;
    const count = this.count(intervals);
    return count === 0 ? 0 : this.#total((w) => sumOf(w.points, (p) => p.sum), intervals) / count;
  }

  min(intervals = 1): number {
    return this.#extreme(intervals, (p) => p.min, Math.min);
  }

  max(intervals = 1): number {
    return this.#extreme(intervals, (p) => p.max, Math.max);
  }

  rate(intervals = 1): number {
    if (this.kind === 'gauge') throw new Error(`rate of ${this.name}: a gauge has no rate (use avg)`);
    const seconds = Math.max(...this.histories.map((history) => this.#window(history, intervals).seconds), 0);
    if (seconds === 0) return 0;
    return (this.kind === 'counter' ? this.sum(intervals) : this.count(intervals)) / seconds;
  }

  last(): number {
    return this.#total((w) => w.points[0]?.last ?? 0, 1);
  }

  /** The `fraction` quantile (0.99: p99) of a histogram's observations in the window. */
  percentile(fraction: number, intervals = 1): number {
    if (this.kind !== 'histogram') throw new Error(`percentile of ${this.name}: only histograms have them`);
    if (!(fraction >= 0 && fraction <= 1)) throw new Error(`percentile ${fraction}: must be within 0..1`);
    const merged = new Float64Array(HISTOGRAM_BUCKETS);
    let observedMax = 0;
    for (const history of this.histories) {
      for (const point of this.#window(history, intervals).points) {
        point.buckets?.forEach((count, index) => { merged[index] = (merged[index] as number) + count; });
        if (point.count > 0) observedMax = Math.max(observedMax, point.max);
      }
    }
    return quantileOf(merged, fraction, observedMax);
  }

  /**
   * Per interval, oldest first: the end time, length, and `sum` and `count` added over the
   * series (graphs). Covers the current interval and up to `intervals - 1` stored ones.
   */
  timeline(intervals: number): { endMs: number; durationMs: number; sum: number; count: number }[] {
    const windows = this.histories.map((history) => this.#window(history, intervals).points);
    const length = Math.max(0, ...windows.map((points) => points.length));
    const out: { endMs: number; durationMs: number; sum: number; count: number }[] = [];
    for (let age = length - 1; age >= 0; age--) {
      const first = windows.find((points) => points[age] !== undefined)?.[age];
      if (first === undefined) continue;
      out.push({
        endMs: first.endMs, durationMs: first.durationMs,
        sum: sumOf(windows, (points) => points[age]?.sum ?? 0), count: sumOf(windows, (points) => points[age]?.count ?? 0),
      });
    }
    return out;
  }

  /** The raw collect samples of the high-resolution window, oldest first, per series. */
  samples(): { labels: Readonly<Record<string, string>>; samples: { timeMs: number; value: number }[] }[] {
    return this.histories.map((history) => ({ labels: history.series.labels, samples: history.samples() }));
  }

  /** Runs a reduction by name (control calls, the CLI). */
  run(fn: QueryFunction, intervals: number): number {
    if (fn === 'p50') return this.percentile(0.5, intervals);
    if (fn === 'p90') return this.percentile(0.9, intervals);
    if (fn === 'p99') return this.percentile(0.99, intervals);
    if (fn === 'last') return this.last();
    return this[fn](intervals);
  }

  #total(read: (window: Window) => number, intervals: number): number {
    return sumOf(this.histories, (history) => read(this.#window(history, intervals)));
  }

  #extreme(intervals: number, read: (point: PointRecord) => number, pick: (a: number, b: number) => number): number {
    let result: number | undefined;
    if (this.kind === 'counter') {
      // The increase of each interval, summed over the series, then the extreme of those.
      const windows = this.histories.map((history) => this.#window(history, intervals).points);
      for (let age = 0; age < intervals; age++) {
        if (!windows.some((points) => age < points.length)) break;
        const total = sumOf(windows, (points) => points[age]?.sum ?? 0);
        result = result === undefined ? total : pick(result, total);
      }
      return result ?? 0;
    }
    for (const history of this.histories) {
      for (const point of this.#window(history, intervals).points) {
        if (point.count === 0) continue;
        result = result === undefined ? read(point) : pick(result, read(point));
      }
    }
    return result ?? 0;
  }
}

function sumOf<T>(items: readonly T[], read: (item: T) => number): number {
  let total = 0;
  for (const item of items) total += read(item);
  return total;
}

/** Linear interpolation inside the bucket holding the rank; the last bucket ends at the max. */
function quantileOf(buckets: Float64Array, fraction: number, observedMax: number): number {
  let total = 0;
  for (const count of buckets) total += count;
  if (total === 0) return 0;
  const rank = fraction * total;
  let seen = 0;
  for (let index = 0; index < buckets.length; index++) {
    const count = buckets[index] as number;
    if (count > 0 && seen + count >= rank) {
      const lower = index === 0 ? 0 : (LATENCY_BOUNDS_SEC[index - 1] as number);
      const upper = index < LATENCY_BOUNDS_SEC.length ? (LATENCY_BOUNDS_SEC[index] as number) : Math.max(observedMax, lower);
      return Math.min(lower + ((upper - lower) * (rank - seen)) / count, Math.max(upper, lower));
    }
    seen += count;
  }
  return observedMax;
}
