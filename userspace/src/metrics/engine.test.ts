import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MetricsEngine } from './engine.js';
import { JournalWriter, readJournal, restoreHistory } from './journal.js';
import { match } from './query.js';
import { Registry } from './registry.js';
import { queryMetric } from './control.js';
import { lineChart } from './svg.js';

const OPTIONS = { collectIntervalMs: 100, flushIntervalMs: 1000, retentionIntervals: 5, highResolutionIntervals: 2 };

function setup() {
  const registry = new Registry();
  const ops = registry.counter('disk_io_operations_total', 'ops', ['pool', 'bucket']);
  const latency = registry.histogram('disk_io_operation_duration', 'latency', ['pool']);
  const cache = registry.gauge('cache_bytes', 'cache');
  const engine = new MetricsEngine(registry, OPTIONS);
  return { registry, ops, latency, cache, engine };
}

describe('query engine', () => {
  it('sums, averages and rates counters over windows that include the current interval', () => {
    const { ops, engine } = setup();
    const abc = ops.series('abc', 'hdd0');
    const xyz = ops.series('xyz', 'hdd1');
    const start = engine.intervalStartMs;
    abc.inc(10);
    xyz.inc(1);
    engine.flush(start + 1000);
    abc.inc(30);
    engine.flush(start + 2000);
    abc.inc(5); // the current interval
    const selection = engine.get('disk_io_operations_total', [match('pool', 'abc')]);
    expect(selection.sum(1)).toBe(5);
    expect(selection.sum(3)).toBe(45);
    expect(selection.avg(3)).toBe(15);
    expect(selection.max(3)).toBe(30);
    expect(selection.min(2)).toBe(5);
    expect(selection.last()).toBe(45);
    expect(engine.get('disk_io_operations_total', [match('pool', 'abc', '!=')]).sum(3)).toBe(1);
    expect(engine.get('disk_io_operations_total', [match('bucket', 'hdd[01]', '=~')]).sum(3)).toBe(46);
    expect(engine.get('disk_io_operations_total', [match('bucket', 'hdd', '=~')]).sum(3)).toBe(0);
    expect(engine.get('disk_io_operations_total', [match('bucket', 'hdd0', '!~')]).sum(3)).toBe(1);
    // Two whole seconds plus however long the current interval has run.
    const rate = selection.rate(3);
    expect(rate).toBeGreaterThan(0);
    expect(rate).toBeLessThanOrEqual(45 / 2);
  });

  it('answers histogram count, mean, extremes and percentiles', () => {
    const { latency, engine } = setup();
    const series = latency.series('abc');
    for (let index = 0; index < 99; index++) series.observe(0.001);
    series.observe(2);
    engine.flush(engine.intervalStartMs + 1000);
    const selection = engine.get('disk_io_operation_duration', [match('pool', 'abc')]);
    expect(selection.count(2)).toBe(100);
    expect(selection.avg(2)).toBeCloseTo((99 * 0.001 + 2) / 100, 9);
    expect(selection.min(2)).toBe(0.001);
    expect(selection.max(2)).toBe(2);
    expect(selection.percentile(0.5, 2)).toBeGreaterThan(0.0005);
    expect(selection.percentile(0.5, 2)).toBeLessThanOrEqual(0.001);
    expect(selection.percentile(1, 2)).toBeGreaterThan(1);
    expect(selection.percentile(1, 2)).toBeLessThanOrEqual(2.5);
    expect(() => engine.get('disk_io_operation_duration').rate(1)).not.toThrow();
  });

  it('samples gauges at every sweep and keeps raw samples of the recent intervals', () => {
    const { cache, engine } = setup();
    const series = cache.series();
    const start = engine.intervalStartMs;
    for (const [index, value] of [10, 30, 20].entries()) {
      series.set(value);
      engine.sweep(start + 100 * (index + 1));
    }
    engine.flush(start + 1000);
    series.set(50);
    const selection = engine.get('cache_bytes');
    expect(selection.avg(2)).toBe((10 + 30 + 20 + 50) / 4);
    expect(selection.min(2)).toBe(10);
    expect(selection.max(2)).toBe(50);
    expect(selection.sum(2)).toBe(50);
    expect(() => selection.rate(2)).toThrow(/gauge has no rate/);
    expect(selection.samples()[0]?.samples.map((sample) => sample.value)).toEqual([10, 30, 20]);
  });

  it('keeps only `retention` intervals', () => {
    const { ops, engine } = setup();
    const series = ops.series('abc', 'hdd0');
    for (let index = 1; index <= 8; index++) {
      series.inc(index);
      engine.flush(engine.intervalStartMs + 1000);
    }
    // Points 4..8 are kept (5 of them); with the empty current interval, 6 covers them all.
    expect(engine.get('disk_io_operations_total').sum(6)).toBe(4 + 5 + 6 + 7 + 8);
    expect(engine.get('disk_io_operations_total').sum(100)).toBe(4 + 5 + 6 + 7 + 8);
  });

  it('refuses bad queries with a message naming the problem', () => {
    const { engine } = setup();
    expect(() => queryMetric(engine, { name: 'nope' })).toThrow(/unknown metric "nope"/);
    expect(() => queryMetric(engine, { name: 'cache_bytes', fn: 'median' })).toThrow(/fn: "median"/);
    expect(() => queryMetric(engine, { name: 'cache_bytes', intervals: 0 })).toThrow(/intervals: 0/);
    expect(() => queryMetric(engine, { name: 'cache_bytes', matchers: [['a', '<>', 'b']] })).toThrow(/op "<>"/);
    expect(() => queryMetric(engine, { name: 'cache_bytes', matchers: [['a', '=~', '(']] })).toThrow(/bad regex/);
    expect(() => queryMetric(undefined, { name: 'cache_bytes' })).toThrow(/metrics are disabled/);
    expect(queryMetric(engine, { name: 'cache_bytes', fn: 'sum', matchers: [['x', '=', 'y']] })).toEqual({ value: 0, series: 0 });
  });
});

describe('journal', () => {
  const folders: string[] = [];
  afterEach(async () => {
    await Promise.all(folders.splice(0).map((folder) => rm(folder, { recursive: true, force: true })));
  });

  it('writes documented JSON lines and restores them into a new engine', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'metrics-journal-'));
    folders.push(directory);
    const first = setup();
    const writer = new JournalWriter({ directory, totalBytesMax: 1024 * 1024 });
    writer.attach(first.engine, (error) => { throw error; });
    const nowMs = Date.now();
    first.ops.series('abc', 'hdd0').inc(7);
    first.latency.series('abc').observe(0.003);
    first.cache.series().set(42);
    first.engine.flush(nowMs - 1000);
    first.ops.series('abc', 'hdd0').inc(3);
    first.engine.flush(nowMs);
    await writer.drain();
    const lines = (await readFile(join(directory, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line));
    expect(lines[0]).toMatchObject({ format: 'shmr-metrics', version: 1 });
    expect(lines[1].series).toContainEqual(expect.objectContaining({
      name: 'disk_io_operations_total', kind: 'counter', labels: { pool: 'abc', bucket: 'hdd0' }, sum: 7,
    }));
    // The unchanged gauge and the idle histogram are left out of the second line.
    expect(lines[2].series.map((entry: { name: string }) => entry.name)).toEqual(['disk_io_operations_total']);
    expect((await readJournal(directory, { sinceMs: nowMs })).length).toBe(1);

    const second = setup();
    expect(await restoreHistory(second.engine, directory)).toBe(2);
    expect(second.engine.get('disk_io_operations_total', [match('pool', 'abc')]).sum(5)).toBe(10);
    expect(second.engine.get('disk_io_operation_duration').count(5)).toBe(1);
    expect(second.engine.get('cache_bytes').max(5)).toBe(42);
  });

  it('rotates files and stays within its size bound', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'metrics-journal-'));
    folders.push(directory);
    const { ops, engine } = setup();
    const totalBytesMax = 64 * 1024;
    const writer = new JournalWriter({ directory, totalBytesMax });
    writer.attach(engine, (error) => { throw error; });
    const buckets = Array.from({ length: 40 }, (_, index) => ops.series('pool', `bucket-${index}`));
    for (let round = 0; round < 200; round++) {
      for (const series of buckets) series.inc();
      engine.flush(Date.now());
    }
    await writer.drain();
    const names = await readdir(directory);
    expect(names.some((name) => /^metrics\.\d+\.jsonl$/.test(name))).toBe(true);
    let totalBytes = 0;
    for (const name of names) totalBytes += (await readFile(join(directory, name))).byteLength;
    expect(totalBytes).toBeLessThanOrEqual(totalBytesMax + totalBytesMax / 8);
  });
});

describe('svg', () => {
  it('escapes labels and draws one polyline per line with points', () => {
    const svg = lineChart({
      title: 'a <b>', unit: 's',
      lines: [{ label: 'p&q', points: [{ timeMs: 1000, value: 1 }, { timeMs: 2000, value: 3 }] }, { label: 'empty', points: [] }],
    });
    expect(svg).toContain('a &#60;b&#62;');
    expect(svg).toContain('p&#38;q');
    expect(svg.match(/<polyline/g)?.length).toBe(1);
  });
});
