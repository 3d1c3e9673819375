/**
 * File layout: where a file's stored blocks are (pool, topology, the bucket and path of every
 * shard) and how healthy each is, for Stat over D-Bus and `shmrctl stat`.
 *
 * Read-only: shard headers are read and checked as fsck does (shardProblem), nothing is
 * repaired. Blocks still dirty in the cache are not stored yet and so not listed.
 * Every block is checked; the first STAT_BLOCKS_MAX are listed one by one.
 */
import { assert } from '../assert.js';
import { shardsNeeded } from '../config/index.js';
import { STAT_BLOCKS_MAX } from '../limits.js';
import type { BlockRecord, InodeRecord } from '../meta/index.js';
import { shardProblem } from './fsck.js';
import type { ScrubTarget } from './scrub.js';

/** Health of a shard: readable and consistent, on a failed or unknown bucket, or damaged. */
export type ShardHealth = 'ok' | 'unavailable' | 'damaged';
/** Health of a block: all shards fine, readable with fewer, or unreadable. */
export type BlockHealth = 'ok' | 'degraded' | 'lost';

export interface ShardLayout {
  readonly index: number;
  readonly bucket: string;
  readonly path: string;
  readonly health: ShardHealth;
  readonly problem?: string;
}

export interface BlockLayout {
  readonly index: number;
  readonly pool: string;
  readonly topology: string;
  readonly generation: number;
  readonly dataBytes: number;
  readonly health: BlockHealth;
  readonly shards: readonly ShardLayout[];
}

export interface FileLayout {
  readonly ino: number;
  readonly path: string;
  readonly sizeBytes: number;
  readonly blockBytes: number;
  readonly blockCount: number;
  readonly pools: string[];
  readonly topologies: string[];
  readonly health: BlockHealth;
  readonly blocksOk: number;
  readonly blocksDegraded: number;
  readonly blocksLost: number;
  /** The first STAT_BLOCKS_MAX blocks; `isTruncated` when there are more. */
  readonly blocks: BlockLayout[];
  readonly isTruncated: boolean;
}

async function blockLayout(target: ScrubTarget, block: BlockRecord, blockBytes: number): Promise<BlockLayout> {
  const shards: ShardLayout[] = [];
  for (let index = 0; index < block.buckets.length; index++) {
    const location = target.blocks.location(block, index);
    const bucket = target.pools.bucket(location.bucket);
    if (bucket === undefined || bucket.state === 'failed') {
      shards.push({ index, bucket: location.bucket, path: location.path, health: 'unavailable',
        problem: bucket === undefined ? 'bucket not in the config' : `bucket failed: ${bucket.failure}` });
      continue;
    }
    const problem = await shardProblem(target, block, index, blockBytes);
    shards.push({ index, bucket: location.bucket, path: location.path, health: problem === undefined ? 'ok' : 'damaged',
      ...(problem === undefined ? {} : { problem }) });
  }
  const okCount = shards.filter((shard) => shard.health === 'ok').length;
  const needed = shardsNeeded(target.blocks.topologyOf(block));
  const health: BlockHealth = okCount === shards.length ? 'ok' : okCount >= needed ? 'degraded' : 'lost';
  return {
    index: block.blockIndex, pool: block.pool, topology: block.topology, generation: block.generation,
    dataBytes: block.dataBytes, health, shards,
  };
}

/** The layout of a regular file's stored blocks, each shard checked. */
export async function fileLayout(target: ScrubTarget, inode: InodeRecord): Promise<FileLayout> {
  const records = target.meta.listBlocks(inode.ino);
  const counts = { ok: 0, degraded: 0, lost: 0 };
  const blocks: BlockLayout[] = [];
  for (const record of records) {
    const layout = await blockLayout(target, record, inode.blockBytes);
    counts[layout.health] += 1;
    if (blocks.length < STAT_BLOCKS_MAX) blocks.push(layout);
  }
  assert(counts.ok + counts.degraded + counts.lost === records.length);
  return {
    ino: inode.ino, path: target.meta.pathOf(inode.ino), sizeBytes: inode.size, blockBytes: inode.blockBytes,
    blockCount: records.length,
    pools: [...new Set(records.map((record) => record.pool))],
    topologies: [...new Set(records.map((record) => record.topology))],
    health: counts.lost > 0 ? 'lost' : counts.degraded > 0 ? 'degraded' : 'ok',
    blocksOk: counts.ok, blocksDegraded: counts.degraded, blocksLost: counts.lost,
    blocks, isTruncated: records.length > blocks.length,
  };
}
