/**
 * Registry: metric families (counter, gauge, histogram) and their series, one per label
 * combination. The hot path records into a `Series` resolved once ahead of time (a handle),
 * so one recording is a few arithmetic operations: no lookup, no string, no allocation.
 *
 * Invariants:
 * - A family's label names are fixed at registration; a series has one value per name.
 * - Counters only grow; a histogram's bucket counts add up to its count.
 * - Histograms of one registry share `LATENCY_BOUNDS_SEC` (every histogram here is a latency),
 *   which keeps the persisted format and the exporters simple.
 */
import { assert } from '../assert.js';

export type MetricKind = 'counter' | 'gauge' | 'histogram';

/** Upper bounds (seconds) of the histogram buckets; a last, unbounded bucket follows. */
export const LATENCY_BOUNDS_SEC: readonly number[] = Object.freeze([
  0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
  0.25, 0.5, 1, 2.5, 5, 10,
]);
/** Buckets of a histogram: one per bound plus the unbounded one. */
export const HISTOGRAM_BUCKETS = LATENCY_BOUNDS_SEC.length + 1;
/** Series of one family; label values come from a bounded set (ops, pools, buckets). */
const SERIES_PER_FAMILY_MAX = 4096;

/**
 * One label combination of a family and its live values, reset by nothing: the query engine
 * reads deltas against what it saw at the previous flush.
 */
export class Series {
  readonly family: Family;
  readonly labels: Readonly<Record<string, string>>;
  /** Counter: running total. Gauge: current value. Histogram: sum of observations. */
  value = 0;
  /** Histogram: observations so far. */
  count = 0;
  /** Histogram: observations per bucket (not cumulative), `HISTOGRAM_BUCKETS` long. */
  readonly buckets: Float64Array | undefined;
  /** Smallest and largest observation (histogram) since the engine last took them. */
  min = Infinity;
  max = -Infinity;

  constructor(family: Family, labels: Readonly<Record<string, string>>) {
    this.family = family;
    this.labels = labels;
    this.buckets = family.kind === 'histogram' ? new Float64Array(HISTOGRAM_BUCKETS) : undefined;
  }

  /** Counter: adds `amount` (>= 0). */
  inc(amount = 1): void {
    this.value += amount;
  }

  /** Gauge: sets the current value. */
  set(value: number): void {
    this.value = value;
  }

  /** Histogram: records one observation in seconds. */
  observe(valueSec: number): void {
    const buckets = this.buckets as Float64Array;
    let index = 0;
    while (index < LATENCY_BOUNDS_SEC.length && valueSec > (LATENCY_BOUNDS_SEC[index] as number)) index++;
    buckets[index] = (buckets[index] as number) + 1;
    this.value += valueSec;
    this.count++;
    if (valueSec < this.min) this.min = valueSec;
    if (valueSec > this.max) this.max = valueSec;
  }

  /** `name{a="x",b="y"}`: for text output, never on the hot path. */
  describe(): string {
    const pairs = Object.entries(this.labels).map(([key, value]) => `${key}="${value}"`);
    return pairs.length === 0 ? this.family.name : `${this.family.name}{${pairs.join(',')}}`;
  }
}

/** A named metric with fixed label names and one series per label combination. */
export class Family {
  readonly name: string;
  readonly help: string;
  readonly kind: MetricKind;
  readonly labelNames: readonly string[];
  readonly #series = new Map<string, Series>();

  constructor(spec: { name: string; help: string; kind: MetricKind; labelNames: readonly string[] }) {
    assert(/^[a-z_][a-z0-9_]*$/.test(spec.name), `bad metric name ${spec.name}`);
    this.name = spec.name;
    this.help = spec.help;
    this.kind = spec.kind;
    this.labelNames = Object.freeze([...spec.labelNames]);
  }

  /** The series for these label values (in `labelNames` order), created on first use. */
  series(...values: string[]): Series {
    assert(values.length === this.labelNames.length, `${this.name} takes ${this.labelNames.length} labels`);
    const key = values.join('\u0000');
    let series = this.#series.get(key);
    if (series === undefined) {
      assert(this.#series.size < SERIES_PER_FAMILY_MAX, `${this.name}: too many series`);
      const labels: Record<string, string> = {};
      this.labelNames.forEach((name, index) => { labels[name] = values[index] as string; });
      series = new Series(this, Object.freeze(labels));
      this.#series.set(key, series);
    }
    return series;
  }

  /** The series for a label object (restoring history, exporters); labels must match. */
  seriesFor(labels: Readonly<Record<string, string>>): Series {
    return this.series(...this.labelNames.map((name) => labels[name] ?? ''));
  }

  allSeries(): IterableIterator<Series> {
    return this.#series.values();
  }
}

/** All families of one process, and the collectors that sample gauges before each sweep. */
export class Registry {
  readonly #families = new Map<string, Family>();
  readonly #collectors: (() => void)[] = [];

  counter(name: string, help: string, labelNames: readonly string[] = []): Family {
    return this.#register({ name, help, kind: 'counter', labelNames });
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Family {
    return this.#register({ name, help, kind: 'gauge', labelNames });
  }

  histogram(name: string, help: string, labelNames: readonly string[] = []): Family {
    return this.#register({ name, help, kind: 'histogram', labelNames });
  }

  /** Registers a function that sets gauges from their sources; run before every sweep. */
  addCollector(collect: () => void): void {
    this.#collectors.push(collect);
  }

  /** Runs the collectors (gauges read their sources now). */
  collect(): void {
    for (const collect of this.#collectors) collect();
  }

  family(name: string): Family | undefined {
    return this.#families.get(name);
  }

  families(): IterableIterator<Family> {
    return this.#families.values();
  }

  #register(spec: { name: string; help: string; kind: MetricKind; labelNames: readonly string[] }): Family {
    const existing = this.#families.get(spec.name);
    if (existing !== undefined) {
      assert(existing.kind === spec.kind, `${spec.name} registered twice with different kinds`);
      return existing;
    }
    const family = new Family(spec);
    this.#families.set(spec.name, family);
    return family;
  }
}
