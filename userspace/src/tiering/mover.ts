/**
 * The background mover: moves files that are closed and idle from the fast source pool to the
 * archive pool (config `mover`), while the source is above its high watermark, until it is
 * below its low watermark.
 *
 * Invariants:
 * - A file open for writing, or with blocks not stored yet, is never moved.
 * - Files move one at a time with one block in flight, so the archive drives see whole blocks
 *   written one after another; the run's copy rate stays under `bytesPerSecondMax`.
 * - A file is visited at most once per run (its head blocks stay on the source pool).
 * - While foreground writes to the source pool run faster than `yieldAboveBytesPerSecond`
 *   (read from `foregroundWriteLoad`), no block is copied: the run waits before its next block.
 */
import type { MoverConfig, Watermark } from '../config/index.js';
import { isErrno, Errno } from '../errno.js';
import type { Pool, Pools } from '../pool/index.js';
import type { TaskContext } from '../tasks/task-manager.js';
import { rewriteFile, type LayoutTarget, type RewriteParts } from './rewrite.js';
import { yieldWhileBusy, type ForegroundLoad, type YieldPolicy } from './yield.js';

/** Candidates fetched per metadata query. */
const CANDIDATES_BATCH_MAX = 256;

/** What one mover run did. */
export interface MoverReport {
  startedAbove: boolean;
  filesMoved: number;
  bytesMoved: number;
  filesSkipped: number;
  /** Source usage at the end, in the watermark's unit (fraction or bytes). */
  usageAtEnd: number;
  /** Milliseconds spent waiting for foreground writes to the source pool to calm down. */
  yieldedMs: number;
}

export interface MoverParts extends RewriteParts {
  readonly pools: Pools;
  /** True when some handle has the file open for writing. */
  readonly isOpenForWriting: (ino: number) => boolean;
  /** Recent write rate of a pool (bytes per second); undefined: unknown (never yield). */
  readonly foregroundWriteLoad?: ForegroundLoad | undefined;
}

/** Usage of `pool` in the unit of `mark`: used fraction of its buckets, or live data bytes. */
export function poolUsage(parts: MoverParts, pool: Pool, mark: Watermark): number {
  if (mark.kind === 'bytes') {
    return parts.meta.poolUsage().find((usage) => usage.pool === pool.name)?.dataBytes ?? 0;
  }
  let totalBytes = 0;
  let freeBytes = 0;
  for (const bucket of pool.buckets) {
    bucket.refreshFreeSpace(true);
    totalBytes += bucket.totalBytes;
    freeBytes += bucket.freeBytes;
  }
  return totalBytes === 0 ? 0 : 1 - freeBytes / totalBytes;
}

/** Where the mover puts files: the target pool, heads on the source if the target wants them. */
export function moverTarget(pools: Pools, config: MoverConfig): LayoutTarget {
  const source = pools.pool(config.source);
  const target = pools.pool(config.target);
  const head = target.headBytes > 0 ? { bytes: target.headBytes, pool: source, topology: source.topology } : undefined;
  return { pool: target, topology: config.topology, blockBytes: config.blockBytes, head };
}

/** One mover run, as a task job. */
export async function runMover(parts: MoverParts, config: MoverConfig, context: TaskContext): Promise<MoverReport> {
  const source = parts.pools.pool(config.source);
  const target = moverTarget(parts.pools, config);
  const usage = () => poolUsage(parts, source, config.highWatermark);
  const report: MoverReport = {
    startedAbove: usage() > config.highWatermark.value, filesMoved: 0, bytesMoved: 0, filesSkipped: 0, usageAtEnd: 0,
    yieldedMs: 0,
  };
  const policy: YieldPolicy = {
    pool: source.name, load: parts.foregroundWriteLoad, thresholdBytesPerSecond: config.yieldAboveBytesPerSecond,
  };
  const beforeBlock = async () => {
    report.yieldedMs += await yieldWhileBusy(policy, context.signal);
  };
  const startedMs = Date.now();
  const visited = new Set<number>();
  while (report.startedAbove && usage() > config.lowWatermark.value && !context.signal.aborted) {
    const idleBeforeSec = Math.floor((Date.now() - config.idleMs) / 1000);
    const candidates = parts.meta.idleFilesInPool(source.name, idleBeforeSec, CANDIDATES_BATCH_MAX + visited.size)
      .filter((ino) => !visited.has(ino));
    if (candidates.length === 0) break;
    for (const ino of candidates) {
      if (usage() <= config.lowWatermark.value || context.signal.aborted) break;
      visited.add(ino);
      await moveOne(parts, { ino, target, context, report, beforeBlock });
      // Time spent yielding is no credit: after a pause the run resumes at its rate, not above.
      await pace(config.bytesPerSecondMax, report.bytesMoved, startedMs + report.yieldedMs);
    }
  }
  report.usageAtEnd = usage();
  return report;
}

async function moveOne(parts: MoverParts, job: {
  ino: number; target: LayoutTarget; context: TaskContext; report: MoverReport; beforeBlock: () => Promise<void>;
}): Promise<void> {
  const { ino, report } = job;
  if (parts.isOpenForWriting(ino) || parts.files.hasDirtyBlocks(ino)) {
    report.filesSkipped += 1;
    return;
  }
  try {
    const result = await rewriteFile(parts, ino, job.target, { parallel: 1, context: job.context, beforeBlock: job.beforeBlock });
    report.filesMoved += 1;
    report.bytesMoved += result.bytesWritten;
  } catch (error) {
    // A file deleted or rewritten by someone else meanwhile is not the run's failure.
    if (!isErrno(error, Errno.ENOENT) && !isErrno(error, Errno.EBUSY)) throw error;
    report.filesSkipped += 1;
  }
}

async function pace(bytesPerSecondMax: number, bytesDone: number, startedMs: number): Promise<void> {
  if (bytesPerSecondMax <= 0) return;
  const waitMs = startedMs + (bytesDone / bytesPerSecondMax) * 1000 - Date.now();
  if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
}
