/**
 * Bucket replacement: every shard that a (failed) bucket held is rebuilt from the other shards
 * of its block into a new, empty directory, which then takes the bucket's place (and its path
 * in the config file).
 *
 * Invariants: the old directory is never written to; a rebuilt shard keeps its name and
 * generation (the block map does not change), so a replacement that stops halfway leaves every
 * block exactly as readable as before, and can be run again. Blocks written or repaired while
 * the bucket was out (the background repair queue rewrites every block a read found short of
 * the dead drive's shard) keep two shards in one bucket; once the bucket is back they are
 * rewritten spread over the pool, so that full redundancy returns for them too.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { directoryProblem, type Config } from '../config/index.js';
import { Errno, FsError } from '../errno.js';
import { deleteShardFile } from '../block/index.js';
import type { BlockRecord } from '../meta/index.js';
import { Bucket, canSpread, isDoubledUp, type Pool } from '../pool/index.js';
import { repairBlock, type ScrubTarget } from './scrub.js';

/** A block replaced this often while its shards were rebuilt is reported, not chased further. */
const REBUILD_ATTEMPTS_MAX = 3;

export interface ReplaceReport {
  bucket: string;
  oldPath: string;
  newPath: string;
  shardsRebuilt: number;
  shardsFailed: number;
  /** Blocks that kept two shards in one bucket, rewritten with one shard per bucket. */
  blocksRespread: number;
  problems: string[];
  configUpdated: boolean;
}

export async function replaceBucket(
  target: ScrubTarget & { config: Config },
  options: { bucket: string; newPath: string; onProgress?: (done: number) => void },
): Promise<ReplaceReport> {
  const bucket = target.pools.bucket(options.bucket);
  if (bucket === undefined) throw new FsError(Errno.EINVAL, 'replace bucket', `unknown bucket "${options.bucket}"`);
  const newPath = resolve(options.newPath);
  checkNewDirectory(newPath);
  const staging = new Bucket({ name: bucket.name, pool: bucket.pool, path: newPath, priority: bucket.priority });
  staging.open(target.meta.filesystemUuid, target.meta.shardDirectoryBlocks);
  const report: ReplaceReport = {
    bucket: bucket.name, oldPath: bucket.path, newPath, shardsRebuilt: 0, shardsFailed: 0, blocksRespread: 0, problems: [],
    configUpdated: false,
  };
  // Reads must come from the other shards, never from the drive being replaced.
  bucket.markFailed('being replaced');
  for (const block of [...target.meta.allBlocks()]) {
    if (!block.buckets.includes(bucket.name)) continue;
    await rebuildCurrentShards(target, { bucket, staging }, block, report);
    options.onProgress?.(report.shardsRebuilt + report.shardsFailed);
  }
  bucket.relocate(newPath);
  report.configUpdated = updateConfigFile(target.config, bucket, newPath);
  await respreadDoubledUp(target, target.pools.pool(bucket.pool), report);
  return report;
}

/**
 * Rewrites the pool's blocks that keep two shards in one bucket, now that every bucket takes
 * shards again. A repair that placed its block before the bucket came back and commits after
 * this pass went by writes it spread out itself (repairBlock).
 */
async function respreadDoubledUp(target: ScrubTarget, pool: Pool, report: ReplaceReport): Promise<void> {
  for (const listed of [...target.meta.allBlocks()]) {
    if (listed.pool !== pool.name || !isDoubledUp(listed.buckets)) continue;
    await respreadCurrent(target, pool, listed, report);
  }
}

/** respreadDoubledUp for one block, from its record as it is now (see rebuildCurrentShards). */
async function respreadCurrent(target: ScrubTarget, pool: Pool, listed: BlockRecord, report: ReplaceReport): Promise<void> {
  for (let attempt = 1; attempt <= REBUILD_ATTEMPTS_MAX; attempt++) {
    const block = target.meta.getBlock(listed.ino, listed.blockIndex);
    if (block === undefined || !isDoubledUp(block.buckets) || !canSpread(pool.buckets, block.buckets.length)) return;
    try {
      // False: replaced meanwhile (a write, the mover, a repair); the new record is checked again.
      if (await repairBlock(target, block)) {
        report.blocksRespread += 1;
        return;
      }
    } catch (error) {
      if (!(error instanceof FsError)) throw error;
      report.problems.push(`${target.meta.pathOf(block.ino)} block ${block.blockIndex}: not spread out: ${error.message}`);
      return;
    }
  }
}

/**
 * Rebuilds the shards that `bucket` held of the block `listed` names, from the block's record
 * as it is now: a read repair, a write or the mover may replace a block (new generation, new
 * shards, old ones deleted) between the listing and its turn, or while its shards are rebuilt.
 * Then the rebuild starts over on the new record; shards staged for the old one are removed.
 */
async function rebuildCurrentShards(
  target: ScrubTarget,
  buckets: { bucket: Bucket; staging: Bucket },
  listed: BlockRecord,
  report: ReplaceReport,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const block = target.meta.getBlock(listed.ino, listed.blockIndex);
    if (block === undefined) return; // deleted or truncated away meanwhile
    const problems: string[] = [];
    const rebuilt: number[] = [];
    for (let shardIndex = 0; shardIndex < block.buckets.length; shardIndex++) {
      if (block.buckets[shardIndex] !== buckets.bucket.name) continue;
      try {
        const inode = target.meta.requireInode(block.ino, 'replace bucket');
        await target.blocks.rebuildShard(block, shardIndex, buckets.staging, inode.blockBytes);
        rebuilt.push(shardIndex);
      } catch (error) {
        if (!(error instanceof FsError)) throw error;
        problems.push(`${target.meta.pathOf(block.ino)} block ${block.blockIndex} shard ${shardIndex}: ${error.message}`);
      }
    }
    const isUnchanged = target.meta.getBlock(block.ino, block.blockIndex)?.generation === block.generation;
    if (isUnchanged || attempt === REBUILD_ATTEMPTS_MAX) {
      report.shardsRebuilt += rebuilt.length;
      report.shardsFailed += problems.length;
      report.problems.push(...problems);
      return;
    }
    for (const shardIndex of rebuilt) {
      const name = { ino: block.ino, blockIndex: block.blockIndex, generation: block.generation, shardIndex };
      await deleteShardFile(buckets.staging.shardPath(name));
    }
  }
}

function checkNewDirectory(path: string): void {
  const problem = directoryProblem(path);
  if (problem !== undefined) throw new FsError(Errno.EINVAL, 'replace bucket', `${path} ${problem}`);
  const entries = readdirSync(path).filter((name) => name !== 'lost+found');
  if (entries.length > 0) throw new FsError(Errno.EINVAL, 'replace bucket', `${path} is not empty`);
}

/** Rewrites the bucket's path in the config file, keeping its comments and layout. */
function updateConfigFile(config: Config, bucket: Bucket, newPath: string): boolean {
  if (config.configPath === undefined) return false;
  const document = parseDocument(readFileSync(config.configPath, 'utf8'));
  document.setIn(['pools', bucket.pool, 'buckets', bucket.name, 'path'], newPath);
  writeFileSync(config.configPath, document.toString());
  return true;
}
