/**
 * The metrics journal: every closed interval appended to JSON-lines files in
 * `<metadata_dir>/metrics/`, so that history survives remounts and other programs can read it.
 *
 * Format (version 1), one JSON object per line, UTF-8:
 * - Each file begins with a header line:
 *   `{"format":"shmr-metrics","version":1,"histogram_bounds_sec":[...]}`; histogram bucket i
 *   counts observations <= bound i (and > bound i-1); the last bucket has no upper bound.
 * - Every other line is one flush interval:
 *   `{"t":END_MS,"d":DURATION_MS,"series":[{"name":N,"kind":K,"labels":{...},"last":L,
 *   "sum":S,"count":C,"min":m,"max":M,"buckets":[...]}]}`. Times are Unix milliseconds.
 *   Fields mean what a query point means (metrics/history.ts): counter sum/count = increase in
 *   the interval, last = running total; gauge last = value at the end, sum/count/min/max over
 *   the samples; histogram sum/count/min/max over the observations, buckets per bucket (not
 *   cumulative). Series without activity in an interval (counters and histograms that did
 *   not move, gauges unchanged since they were last written) are left out of its line.
 * - Files: `metrics.jsonl` is appended to; past `fileBytesMax` it is renamed
 *   `metrics.<N>.jsonl` (N grows by one each time) and a new one begins. The oldest rotated
 *   files are deleted while all of them together exceed `totalBytesMax`.
 */
import { appendFile, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { assert } from '../assert.js';
import type { MetricsEngine } from './engine.js';
import type { History, PointRecord } from './history.js';
import { LATENCY_BOUNDS_SEC, type MetricKind } from './registry.js';

export const JOURNAL_VERSION = 1;
const CURRENT_FILE = 'metrics.jsonl';
const ROTATED_PATTERN = /^metrics\.(\d+)\.jsonl$/;

/** One series of one interval, as written (times are the interval's). */
export interface JournalSeries extends Omit<PointRecord, 'endMs' | 'durationMs'> {
  readonly name: string;
  readonly kind: MetricKind;
  readonly labels: Readonly<Record<string, string>>;
}

/** One interval, as written. */
export interface JournalRecord {
  readonly t: number;
  readonly d: number;
  readonly series: readonly JournalSeries[];
}

/** The journal folder of a metadata folder. */
export function journalDirectory(metadataDir: string): string {
  return join(metadataDir, 'metrics');
}

function headerLine(): string {
  return `${JSON.stringify({ format: 'shmr-metrics', version: JOURNAL_VERSION, histogram_bounds_sec: LATENCY_BOUNDS_SEC })}\n`;
}

export class JournalWriter {
  readonly #directory: string;
  readonly #fileBytesMax: number;
  readonly #totalBytesMax: number;
  /** Last gauge value written per history, to skip unchanged gauges. */
  readonly #writtenGauges = new WeakMap<History, number>();
  #fileBytes = -1;
  /** Appends run one after another (each waits for the previous). */
  #queue: Promise<void> = Promise.resolve();
  #lastError: Error | undefined;

  constructor(options: { directory: string; totalBytesMax: number }) {
    assert(options.totalBytesMax >= 64 * 1024);
    this.#directory = options.directory;
    this.#totalBytesMax = options.totalBytesMax;
    this.#fileBytesMax = Math.floor(options.totalBytesMax / 8);
    mkdirSync(this.#directory, { recursive: true });
  }

  /** Subscribes to the engine's flushes. */
  attach(engine: MetricsEngine, onError: (error: Error) => void): void {
    engine.onFlush((endMs, histories) => {
      const line = this.#line(endMs, histories);
      this.#queue = this.#queue.then(() => this.#append(line)).catch((error: Error) => {
        // One message per kind of failure, not one per second.
        if (this.#lastError?.message !== error.message) onError(error);
        this.#lastError = error;
      });
    });
  }

  /** Resolves when everything queued is on disk (at unmount). */
  async drain(): Promise<void> {
    await this.#queue;
  }

  #line(endMs: number, histories: readonly History[]): string {
    const series: JournalSeries[] = [];
    let durationMs = 0;
    for (const history of histories) {
      if (history.size === 0) continue;
      const point = history.point(0);
      durationMs = point.durationMs;
      const kind = history.series.family.kind;
      if (kind === 'gauge') {
        if (this.#writtenGauges.get(history) === point.last) continue;
        this.#writtenGauges.set(history, point.last);
      } else if (point.count === 0) {
        continue;
      }
      const { endMs: _end, durationMs: _duration, ...values } = finite(point);
      series.push({ name: history.series.family.name, kind, labels: history.series.labels, ...values });
    }
    return `${JSON.stringify({ t: endMs, d: durationMs, series })}\n`;
  }

  async #append(line: string): Promise<void> {
    const path = join(this.#directory, CURRENT_FILE);
    if (this.#fileBytes < 0) this.#fileBytes = await stat(path).then((info) => info.size, () => 0);
    if (this.#fileBytes > 0 && this.#fileBytes + line.length > this.#fileBytesMax) await this.#rotate(path);
    const text = this.#fileBytes === 0 ? headerLine() + line : line;
    await appendFile(path, text);
    this.#fileBytes += Buffer.byteLength(text);
  }

  async #rotate(path: string): Promise<void> {
    const rotated = await rotatedFiles(this.#directory);
    const next = (rotated.at(-1)?.sequence ?? 0) + 1;
    await rename(path, join(this.#directory, `metrics.${next}.jsonl`));
    this.#fileBytes = 0;
    let totalBytes = 0;
    const sizes = await Promise.all(rotated.map((file) => stat(file.path).then((info) => info.size, () => 0)));
    for (const size of sizes) totalBytes += size;
    totalBytes += this.#fileBytesMax;
    for (const [index, file] of rotated.entries()) {
      if (totalBytes <= this.#totalBytesMax) break;
      await rm(file.path, { force: true });
      totalBytes -= sizes[index] ?? 0;
    }
  }
}

/** JSON has no Infinity: an interval without observations writes min and max as 0. */
function finite(point: PointRecord): PointRecord {
  const isEmpty = !Number.isFinite(point.min) || !Number.isFinite(point.max);
  return isEmpty ? { ...point, min: 0, max: 0 } : point;
}

async function rotatedFiles(directory: string): Promise<{ sequence: number; path: string }[]> {
  const names = await readdir(directory).catch(() => [] as string[]);
  return names.flatMap((name) => {
    const found = ROTATED_PATTERN.exec(name);
    return found === null ? [] : [{ sequence: Number(found[1]), path: join(directory, name) }];
  }).sort((a, b) => a.sequence - b.sequence);
}

/** How much earlier than its newest record a file's mtime may read (FAT keeps 2 s steps). */
const MTIME_SLACK_MS = 2000;

/**
 * Reads every interval that ended at or after `sinceMs`, oldest first. Works without the
 * daemon (the files are only ever appended to or renamed). Bad lines are reported, not fatal.
 */
export async function readJournal(
  directory: string,
  options: { sinceMs: number; onBadLine?: (where: string) => void },
): Promise<JournalRecord[]> {
  const files = [...(await rotatedFiles(directory)).map((file) => file.path), join(directory, CURRENT_FILE)];
  const records: JournalRecord[] = [];
  for (const path of files) {
    const info = await stat(path).catch(() => undefined);
    // A file's mtime comes from the kernel's coarse clock (and some filesystems keep only
    // seconds): it may be earlier than the last record in it. Records are filtered by time below.
    if (info === undefined || info.mtimeMs < options.sinceMs - MTIME_SLACK_MS) continue;
    const text = await readFile(path, 'utf8');
    text.split('\n').forEach((line, index) => {
      if (line.trim() === '') return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        options.onBadLine?.(`${path}:${index + 1}`);
        return;
      }
      const record = value as Partial<JournalRecord> & { format?: string; version?: number };
      if (record.format === 'shmr-metrics') {
        if (record.version !== JOURNAL_VERSION) {
          throw new Error(`${path}: journal version ${record.version}, this shmr reads ${JOURNAL_VERSION}`);
        }
        return;
      }
      if (typeof record.t === 'number' && Array.isArray(record.series) && record.t >= options.sinceMs) {
        records.push(record as JournalRecord);
      }
    });
  }
  return records;
}

/**
 * Puts the journal's newest `retention` intervals back into the engine's histories. A series
 * left out of an interval's line (no activity) gets an empty point there, so every series'
 * ring stays aligned with the intervals.
 */
export async function restoreHistory(engine: MetricsEngine, directory: string): Promise<number> {
  const spanMs = engine.options.retentionIntervals * engine.options.flushIntervalMs;
  const records = (await readJournal(directory, { sinceMs: Date.now() - spanMs })).slice(-engine.options.retentionIntervals);
  const lastPoints = new Map<History, PointRecord>();
  for (const record of records) {
    const seen = new Set<History>();
    for (const entry of record.series) {
      const family = engine.registry.family(entry.name);
      if (family === undefined || family.kind !== entry.kind) continue;
      const history = engine.historyOf(family.seriesFor(entry.labels));
      const point = { ...entry, endMs: record.t, durationMs: record.d };
      engine.restore(history.series, point);
      lastPoints.set(history, point);
      seen.add(history);
    }
    for (const [history, last] of lastPoints) {
      if (seen.has(history)) continue;
      const isGauge = history.series.family.kind === 'gauge';
      engine.restore(history.series, {
        endMs: record.t, durationMs: record.d, last: last.last, sum: isGauge ? last.last : 0,
        count: isGauge ? 1 : 0, min: isGauge ? last.last : 0, max: isGauge ? last.last : 0,
      });
    }
  }
  return records.length;
}
