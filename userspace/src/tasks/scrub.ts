/**
 * Scrub: reads back every shard of a pool (or of all pools) in full, verifies it, and with
 * `repair` rewrites blocks that lost shards onto healthy buckets.
 *
 * Invariants:
 * - A repair never loses data: the block is read (rebuilt if needed) and verified, written as
 *   new shards, committed only if the block did not change meanwhile, and only then are the
 *   old shards deleted.
 * - Progress is saved after every batch (a cursor in the metadata store), so a scrub that is
 *   stopped resumes where it was; a finished scrub clears its cursor.
 * - Its pace is bounded by `bytesPerSecondMax`, so it does not starve the filesystem.
 */
import { assert } from '../assert.js';
import { FsError } from '../errno.js';
import type { BlockStore, ShardError } from '../block/index.js';
import type { BlockRecord, MetaStore } from '../meta/index.js';
import { canSpread, isDoubledUp, type Pools } from '../pool/index.js';

const BATCH_BLOCKS = 64;
/** A block replaced this often while it was checked is reported as found, not chased further. */
const CHECK_ATTEMPTS_MAX = 3;

export interface ScrubOptions {
  readonly pool?: string | undefined;
  readonly repair: boolean;
  /** Start from the beginning instead of the saved cursor. */
  readonly restart?: boolean;
  readonly bytesPerSecondMax?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: ScrubProgress) => void;
}

export interface ScrubProgress {
  blocksDone: number;
  blocksTotal: number;
  bytesDone: number;
}

/** What a scrub found and did. */
export interface ScrubReport {
  pool: string;
  complete: boolean;
  blocksChecked: number;
  shardsChecked: number;
  bytesChecked: number;
  shardsMissing: number;
  shardsCorrupt: number;
  shardsUnreadable: number;
  blocksRepaired: number;
  blocksUnrecoverable: number;
  /**
   * Blocks with two shards in one bucket although the pool has enough writable buckets now
   * (written while a bucket was out, which came back by itself): one lost drive takes two of
   * their shards. With repair they are written again, spread out (blocksRespread).
   */
  blocksDoubledUp: number;
  blocksRespread: number;
  /** Paths of files with at least one bad shard. */
  affectedFiles: string[];
  /** One line per problem: file, block, shard, what. */
  problems: string[];
}

export interface ScrubTarget {
  readonly meta: MetaStore;
  readonly blocks: BlockStore;
  readonly pools: Pools;
}

/** Runs a scrub to the end (or until `signal` aborts it). */
export async function scrub(target: ScrubTarget, options: ScrubOptions): Promise<ScrubReport> {
  if (options.pool !== undefined) target.pools.pool(options.pool);
  const cursorKey = `scrub_cursor:${options.pool ?? '*'}`;
  const saved = options.restart === true ? undefined : target.meta.getSetting(cursorKey);
  let cursor = saved === undefined ? { ino: 0, blockIndex: -1 } : (JSON.parse(saved) as { ino: number; blockIndex: number });
  const report = emptyReport(options.pool ?? '*');
  const affected = new Set<number>();
  const progress = { blocksDone: 0, blocksTotal: totalBlocks(target.meta, options.pool), bytesDone: 0 };
  const startedMs = Date.now();
  for (;;) {
    if (options.signal?.aborted === true) return finish(target, report, affected, false);
    const batch = target.meta.blocksAfter(cursor, BATCH_BLOCKS);
    if (batch.length === 0) break;
    for (const block of batch) {
      if (options.pool !== undefined && block.pool !== options.pool) continue;
      await scrubBlock(target, block, { report, affected, repair: options.repair });
      progress.blocksDone += 1;
      progress.bytesDone += block.dataBytes;
      options.onProgress?.(progress);
      await pace(options.bytesPerSecondMax, progress.bytesDone, startedMs);
    }
    const last = batch[batch.length - 1];
    assert(last !== undefined);
    cursor = { ino: last.ino, blockIndex: last.blockIndex };
    target.meta.setSetting(cursorKey, JSON.stringify(cursor));
  }
  target.meta.setSetting(cursorKey, undefined);
  return finish(target, report, affected, true);
}

async function scrubBlock(
  target: ScrubTarget,
  listed: BlockRecord,
  context: { report: ScrubReport; affected: Set<number>; repair: boolean },
): Promise<void> {
  const { report } = context;
  const checked = await checkCurrent(target, listed);
  if (checked === undefined) return; // deleted or truncated away meanwhile
  const { block, failures } = checked;
  report.blocksChecked += 1;
  report.shardsChecked += block.buckets.length;
  report.bytesChecked += block.dataBytes;
  if (failures.length === 0) {
    await spreadIfDoubledUp(target, block, context);
    return;
  }
  context.affected.add(block.ino);
  for (const failure of failures) countFailure(report, failure, block, target.meta);
  if (!context.repair) return;
  try {
    // False: replaced meanwhile by a newer version of the block, written whole.
    if (await repairBlock(target, block)) report.blocksRepaired += 1;
  } catch (error) {
    if (!(error instanceof FsError)) throw error;
    report.blocksUnrecoverable += 1;
    report.problems.push(`${target.meta.pathOf(block.ino)} block ${block.blockIndex}: not repaired: ${error.message}`);
  }
}

/** The doubled-up check of a sound block (see ScrubReport.blocksDoubledUp). */
async function spreadIfDoubledUp(
  target: ScrubTarget,
  block: BlockRecord,
  context: { report: ScrubReport; repair: boolean },
): Promise<void> {
  const { report } = context;
  if (!isDoubledUp(block.buckets) || !canSpread(target.pools.pool(block.pool).buckets, block.buckets.length)) return;
  const where = `${target.meta.pathOf(block.ino)} block ${block.blockIndex}`;
  if (!context.repair) {
    report.blocksDoubledUp += 1;
    report.problems.push(`${where}: two shards in one bucket (${block.buckets.join(',')}), spreadable: scrub --repair`);
    return;
  }
  try {
    // False: replaced meanwhile by a newer version of the block, placed afresh: no finding.
    if (await repairBlock(target, block)) {
      report.blocksDoubledUp += 1;
      report.blocksRespread += 1;
    }
  } catch (error) {
    if (!(error instanceof FsError)) throw error;
    report.blocksDoubledUp += 1;
    report.problems.push(`${where}: not spread out: ${error.message}`);
  }
}

/**
 * Verifies the shards of a block as its record is now: a read repair, a write or the mover may
 * replace the block (new shards, the old ones deleted) between the listing and the check or
 * during it, and the old shards' absence is no fault. Undefined when the block is gone.
 */
async function checkCurrent(
  target: ScrubTarget,
  listed: BlockRecord,
): Promise<{ block: BlockRecord; failures: ShardError[] } | undefined> {
  let block: BlockRecord | undefined = target.meta.getBlock(listed.ino, listed.blockIndex);
  for (let attempt = 1; block !== undefined; attempt++) {
    const scratch = Buffer.allocUnsafeSlow(Math.max(1, target.blocks.shardBytesOf(block)));
    const failures = await target.blocks.verify(block, scratch);
    const current = target.meta.getBlock(block.ino, block.blockIndex);
    if (failures.length === 0 || current?.generation === block.generation || attempt === CHECK_ATTEMPTS_MAX) {
      return { block, failures };
    }
    block = current;
  }
  return undefined;
}

/**
 * Rewrites a block from its surviving shards; commits only if it did not change meanwhile.
 * A rewrite placed while a bucket was out doubles up shards; when enough buckets take shards
 * again by the commit (a bucket replacement ended meanwhile, whose pass over doubled-up blocks
 * may be past this one), the block is written once more, spread out. No await separates the
 * check from the commit of a write it lets through, so no bucket comes back in between.
 */
export async function repairBlock(target: ScrubTarget, block: BlockRecord): Promise<boolean> {
  const inode = target.meta.requireInode(block.ino, 'repair');
  const pool = target.pools.pool(block.pool);
  let next = await target.blocks.rewrite(block, pool, inode.blockBytes);
  if (isDoubledUp(next.buckets) && canSpread(pool.buckets, next.buckets.length)) {
    await target.blocks.delete(next);
    next = await target.blocks.rewrite(block, pool, inode.blockBytes);
  }
  if (!target.meta.replaceBlock(block, next)) {
    await target.blocks.delete(next);
    return false;
  }
  await target.blocks.delete(block);
  return true;
}

function countFailure(report: ScrubReport, failure: ShardError, block: BlockRecord, meta: MetaStore): void {
  if (failure.kind === 'missing') report.shardsMissing += 1;
  else if (failure.kind === 'corrupt') report.shardsCorrupt += 1;
  else report.shardsUnreadable += 1;
  report.problems.push(`${meta.pathOf(block.ino)} block ${block.blockIndex} bucket ${failure.bucket}: ${failure.message}`);
}

function totalBlocks(meta: MetaStore, pool: string | undefined): number {
  return meta.poolUsage().filter((usage) => pool === undefined || usage.pool === pool)
    .reduce((sum, usage) => sum + usage.blocks, 0);
}

async function pace(bytesPerSecondMax: number | undefined, bytesDone: number, startedMs: number): Promise<void> {
  if (bytesPerSecondMax === undefined || bytesPerSecondMax <= 0) return;
  const earliestMs = startedMs + (bytesDone / bytesPerSecondMax) * 1000;
  const waitMs = earliestMs - Date.now();
  if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
}

function emptyReport(pool: string): ScrubReport {
  return {
    pool, complete: false, blocksChecked: 0, shardsChecked: 0, bytesChecked: 0, shardsMissing: 0,
    shardsCorrupt: 0, shardsUnreadable: 0, blocksRepaired: 0, blocksUnrecoverable: 0,
    blocksDoubledUp: 0, blocksRespread: 0, affectedFiles: [], problems: [],
  };
}

function finish(target: ScrubTarget, report: ScrubReport, affected: Set<number>, complete: boolean): ScrubReport {
  report.complete = complete;
  report.affectedFiles = [...affected].map((ino) => target.meta.pathOf(ino)).sort();
  return report;
}
