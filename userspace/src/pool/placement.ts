/**
 * Placement: which buckets receive the shards of a new block.
 *
 * Policy: buckets by priority (prioritize, normal, deprioritize; never ignore or evacuate or
 * failed), then by most free space, one shard per bucket. When the pool has fewer usable
 * buckets than shards, buckets are reused round-robin and the caller is told so it can warn.
 */
import { Errno, FsError } from '../errno.js';
import type { Bucket } from './bucket.js';

const PRIORITY_RANK: Readonly<Record<string, number>> = {
  prioritize: 0,
  normal: 1,
  deprioritize: 2,
};

/** The result of placing one block. */
export interface Placement {
  readonly buckets: Bucket[];
  /** True when some bucket holds more than one shard of the block. */
  readonly isDoubledUp: boolean;
}

/**
 * Chooses `shardCount` buckets for a block of `shardBytes`-sized shards, skipping `excluded`
 * (buckets that just failed for this block). Throws ENOSPC when no bucket has room, EIO when
 * none is usable at all.
 */
export function placeShards(
  buckets: readonly Bucket[],
  shardCount: number,
  options: { shardBytes: number; excluded?: ReadonlySet<string> },
): Placement {
  const usable = buckets.filter(
    (bucket) => bucket.isWritable && !(options.excluded?.has(bucket.name) ?? false),
  );
  if (usable.length === 0) {
    throw new FsError(Errno.EIO, 'place shards', 'no usable bucket in the pool');
  }
  const roomy = usable.filter((bucket) => bucket.freeBytes >= options.shardBytes + 65536);
  if (roomy.length === 0) throw new FsError(Errno.ENOSPC, 'place shards', 'every bucket is full');
  roomy.sort(
    (a, b) => (PRIORITY_RANK[a.priority] ?? 1) - (PRIORITY_RANK[b.priority] ?? 1) || b.freeBytes - a.freeBytes,
  );
  const chosen: Bucket[] = [];
  for (let index = 0; index < shardCount; index++) {
    const bucket = roomy[index % roomy.length];
    if (bucket === undefined) throw new FsError(Errno.ENOSPC, 'place shards', 'no bucket');
    chosen.push(bucket);
  }
  return { buckets: chosen, isDoubledUp: roomy.length < shardCount };
}

/** True when a block's shard buckets (a record's `buckets`) name some bucket more than once. */
export function isDoubledUp(shardBuckets: readonly string[]): boolean {
  return new Set(shardBuckets).size < shardBuckets.length;
}

/** True when `buckets` has a writable bucket for each of `shardCount` shards, one shard each. */
export function canSpread(buckets: readonly Bucket[], shardCount: number): boolean {
  return buckets.filter((bucket) => bucket.isWritable).length >= shardCount;
}
