/**
 * The in-process query engine: sweeps the registry every collect interval (gauges sampled,
 * raw samples kept), closes an interval every flush interval (one point per series into its
 * ring of `retention` points) and answers queries such as
 * `engine.get('disk_io_operation_duration', [match('pool', 'abc')]).avg(30)`.
 *
 * Invariants:
 * - Every series of the registry has a history once a sweep has seen it.
 * - Flush listeners see each closed interval once, in time order.
 */
import { assert } from '../assert.js';
import { History, type PointRecord } from './history.js';
import { matches, Selection, type Matcher } from './query.js';
import type { Registry, Series } from './registry.js';

export interface EngineOptions {
  readonly collectIntervalMs: number;
  readonly flushIntervalMs: number;
  /** Points kept per series. */
  readonly retentionIntervals: number;
  /** Intervals whose every collect sample is kept. */
  readonly highResolutionIntervals: number;
}

/** Called after each flush with the interval's end and every history (newest point: age 0). */
export type FlushListener = (endMs: number, histories: readonly History[]) => void;

export class MetricsEngine {
  readonly registry: Registry;
  readonly options: EngineOptions;
  readonly #histories = new Map<Series, History>();
  readonly #listeners: FlushListener[] = [];
  #intervalStartMs: number;
  #timers: NodeJS.Timeout[] = [];

  constructor(registry: Registry, options: EngineOptions) {
    assert(options.collectIntervalMs > 0);
    assert(options.flushIntervalMs >= options.collectIntervalMs);
    assert(options.retentionIntervals >= 1);
    assert(options.highResolutionIntervals >= 1);
    this.registry = registry;
    this.options = options;
    this.#intervalStartMs = Date.now();
  }

  /** Starts the collect and flush timers (unref'd: they never keep the process alive). */
  start(): void {
    assert(this.#timers.length === 0);
    this.#intervalStartMs = Date.now();
    this.#timers = [
      setInterval(() => this.sweep(Date.now()), this.options.collectIntervalMs),
      setInterval(() => this.flush(Date.now()), this.options.flushIntervalMs),
    ];
    for (const timer of this.#timers) timer.unref();
  }

  stop(): void {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
  }

  onFlush(listener: FlushListener): void {
    this.#listeners.push(listener);
  }

  /** One collect sweep: collectors set gauges, every series keeps a sample. */
  sweep(nowMs: number): void {
    this.registry.collect();
    this.#discover();
    for (const history of this.#histories.values()) history.sample(nowMs);
  }

  /** Closes the current interval at `nowMs`. */
  flush(nowMs: number): void {
    this.#discover();
    for (const history of this.#histories.values()) history.flush(nowMs, this.#intervalStartMs);
    this.#intervalStartMs = nowMs;
    const histories = [...this.#histories.values()];
    for (const listener of this.#listeners) listener(nowMs, histories);
  }

  /** Start of the current, unfinished interval. */
  get intervalStartMs(): number {
    return this.#intervalStartMs;
  }

  /** The series of family `name` whose labels satisfy every matcher. Throws for unknown names. */
  get(name: string, matchers: readonly Matcher[] = []): Selection {
    const family = this.registry.family(name);
    if (family === undefined) {
      const known = [...this.registry.families()].map((entry) => entry.name).sort().join(', ');
      throw new Error(`unknown metric "${name}" (known: ${known})`);
    }
    this.#discover();
    const histories = [...family.allSeries()]
      .filter((series) => matchers.every((matcher) => matches(series.labels, matcher)))
      .map((series) => this.historyOf(series));
    return new Selection({
      name, kind: family.kind, histories,
      window: (history, intervals) => this.#window(history, intervals),
    });
  }

  historyOf(series: Series): History {
    let history = this.#histories.get(series);
    if (history === undefined) {
      const samplesPerInterval = Math.ceil(this.options.flushIntervalMs / this.options.collectIntervalMs);
      history = new History(series, {
        capacity: this.options.retentionIntervals,
        rawCapacity: samplesPerInterval * this.options.highResolutionIntervals,
      });
      this.#histories.set(series, history);
    }
    return history;
  }

  /** Puts a stored interval (read back from the journal) into the series' history. */
  restore(series: Series, point: PointRecord): void {
    this.historyOf(series).push(point);
  }

  /** The current interval and the `intervals - 1` newest stored points, newest first. */
  #window(history: History, intervals: number): { points: PointRecord[]; seconds: number } {
    assert(Number.isInteger(intervals) && intervals >= 1, `intervals ${intervals}: a positive integer`);
    const nowMs = Date.now();
    const points = [history.current(nowMs, this.#intervalStartMs)];
    for (let age = 0; age < Math.min(intervals - 1, history.size); age++) points.push(history.point(age));
    let milliseconds = 0;
    for (const point of points) milliseconds += point.durationMs;
    return { points, seconds: milliseconds / 1000 };
  }

  #discover(): void {
    for (const family of this.registry.families()) {
      for (const series of family.allSeries()) this.historyOf(series);
    }
  }
}
