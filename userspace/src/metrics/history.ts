/**
 * History: the retained past of one series, a ring of per-interval points in typed arrays (no
 * object per point), plus what the current, unfinished interval has seen so far.
 *
 * A point summarizes one flush interval:
 * - counter: `sum` and `count` are the increase, `last` the running total at its end;
 * - gauge: `last` is the value at its end, `sum`, `count`, `min`, `max` are over the samples
 *   the collect sweeps took during it;
 * - histogram: `sum` and `count` are the observations' sum and number, `min` and `max` the
 *   extremes, `buckets` the observations per bucket.
 *
 * The high-resolution ring keeps every collect sample (time, value) of the most recent
 * intervals, for queries that want more than one value per interval.
 */
import { assert } from '../assert.js';
import { HISTOGRAM_BUCKETS, type Series } from './registry.js';

/** One interval as a plain object: for the journal and restoring, never per recording. */
export interface PointRecord {
  readonly endMs: number;
  readonly durationMs: number;
  readonly last: number;
  readonly sum: number;
  readonly count: number;
  readonly min: number;
  readonly max: number;
  readonly buckets?: readonly number[];
}

export class History {
  readonly series: Series;
  readonly capacity: number;
  readonly #endMs: Float64Array;
  readonly #durationMs: Float64Array;
  readonly #last: Float64Array;
  readonly #sum: Float64Array;
  readonly #count: Float64Array;
  readonly #min: Float64Array;
  readonly #max: Float64Array;
  /** Float32 halves the memory; bucket counts of one interval stay far below 2^24. */
  readonly #buckets: Float32Array | undefined;
  /** Index the next point goes to; `size` points end just before it. */
  #head = 0;
  size = 0;
  /** What the series had at the last flush (deltas are taken against it). */
  #baseValue = 0;
  #baseCount = 0;
  readonly #baseBuckets: Float64Array | undefined;
  /** Gauge samples of the current interval. */
  #sampleSum = 0;
  #sampleCount = 0;
  #sampleMin = Infinity;
  #sampleMax = -Infinity;
  readonly #rawTimeMs: Float64Array;
  readonly #rawValue: Float64Array;
  #rawHead = 0;
  #rawSize = 0;

  constructor(series: Series, options: { capacity: number; rawCapacity: number }) {
    assert(options.capacity >= 1);
    assert(options.rawCapacity >= 1);
    this.series = series;
    this.capacity = options.capacity;
    const make = () => new Float64Array(options.capacity);
    this.#endMs = make(); this.#durationMs = make(); this.#last = make(); this.#sum = make();
    this.#count = make(); this.#min = make(); this.#max = make();
    const isHistogram = series.buckets !== undefined;
    this.#buckets = isHistogram ? new Float32Array(options.capacity * HISTOGRAM_BUCKETS) : undefined;
    this.#baseBuckets = isHistogram ? new Float64Array(HISTOGRAM_BUCKETS) : undefined;
    this.#rawTimeMs = new Float64Array(options.rawCapacity);
    this.#rawValue = new Float64Array(options.rawCapacity);
  }

  /** A collect sweep: keeps the raw sample, and for gauges feeds the interval's statistics. */
  sample(nowMs: number): void {
    const value = this.series.value;
    this.#rawTimeMs[this.#rawHead] = nowMs;
    this.#rawValue[this.#rawHead] = value;
    this.#rawHead = (this.#rawHead + 1) % this.#rawTimeMs.length;
    this.#rawSize = Math.min(this.#rawSize + 1, this.#rawTimeMs.length);
    if (this.series.family.kind !== 'gauge') return;
    this.#sampleSum += value;
    this.#sampleCount++;
    if (value < this.#sampleMin) this.#sampleMin = value;
    if (value > this.#sampleMax) this.#sampleMax = value;
  }

  /** The current interval so far, as a point ending at `nowMs`. */
  current(nowMs: number, startMs: number): PointRecord {
    // A clock step back must not give a negative length (rates would flip sign).
    const durationMs = Math.max(0, nowMs - startMs);
    const series = this.series;
    const kind = series.family.kind;
    if (kind === 'counter') {
      const delta = series.value - this.#baseValue;
      return { endMs: nowMs, durationMs, last: series.value, sum: delta, count: delta, min: delta, max: delta };
    }
    if (kind === 'gauge') {
      const hasSamples = this.#sampleCount > 0;
      return {
        endMs: nowMs, durationMs, last: series.value,
        sum: hasSamples ? this.#sampleSum : series.value, count: hasSamples ? this.#sampleCount : 1,
        min: hasSamples ? this.#sampleMin : series.value, max: hasSamples ? this.#sampleMax : series.value,
      };
    }
    const buckets = series.buckets as Float64Array;
    const base = this.#baseBuckets as Float64Array;
    return {
      endMs: nowMs, durationMs, last: series.count,
      sum: series.value - this.#baseValue, count: series.count - this.#baseCount,
      min: series.min, max: series.max, buckets: Array.from(buckets, (count, index) => count - (base[index] as number)),
    };
  }

  /** Ends the current interval: stores it as a point and starts the next one. */
  flush(nowMs: number, startMs: number): void {
    this.push(this.current(nowMs, startMs));
    const series = this.series;
    this.#baseValue = series.value;
    this.#baseCount = series.count;
    if (series.buckets !== undefined) (this.#baseBuckets as Float64Array).set(series.buckets);
    series.min = Infinity;
    series.max = -Infinity;
    this.#sampleSum = 0;
    this.#sampleCount = 0;
    this.#sampleMin = Infinity;
    this.#sampleMax = -Infinity;
  }

  /** Appends a point (a flush, or history read back from the journal). */
  push(point: PointRecord): void {
    const index = this.#head;
    this.#endMs[index] = point.endMs;
    this.#durationMs[index] = point.durationMs;
    this.#last[index] = point.last;
    this.#sum[index] = point.sum;
    this.#count[index] = point.count;
    this.#min[index] = point.min;
    this.#max[index] = point.max;
    if (this.#buckets !== undefined) {
      const offset = index * HISTOGRAM_BUCKETS;
      for (let bucket = 0; bucket < HISTOGRAM_BUCKETS; bucket++) {
        this.#buckets[offset + bucket] = point.buckets?.[bucket] ?? 0;
      }
    }
    this.#head = (index + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
  }

  /** The point `age` intervals back (0: the newest stored). */
  point(age: number): PointRecord {
    assert(age >= 0);
    assert(age < this.size);
    const index = (this.#head - 1 - age + this.capacity) % this.capacity;
    const buckets = this.#buckets === undefined ? undefined
      : Array.from(this.#buckets.subarray(index * HISTOGRAM_BUCKETS, (index + 1) * HISTOGRAM_BUCKETS));
    return {
      endMs: this.#endMs[index] as number, durationMs: this.#durationMs[index] as number,
      last: this.#last[index] as number, sum: this.#sum[index] as number, count: this.#count[index] as number,
      min: this.#min[index] as number, max: this.#max[index] as number, ...(buckets === undefined ? {} : { buckets }),
    };
  }

  /** Every raw collect sample still held, oldest first. */
  samples(): { timeMs: number; value: number }[] {
    const out: { timeMs: number; value: number }[] = [];
    const length = this.#rawTimeMs.length;
    for (let age = this.#rawSize - 1; age >= 0; age--) {
      const index = (this.#rawHead - 1 - age + length) % length;
      out.push({ timeMs: this.#rawTimeMs[index] as number, value: this.#rawValue[index] as number });
    }
    return out;
  }
}
