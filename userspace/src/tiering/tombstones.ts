/**
 * Tombstones: shards of deleted files and of blocks a rewrite replaced stay on disk, recorded in
 * the metadata store, until their grace period ends (config `tombstones.grace`) or an explicit
 * purge removes them.
 *
 * Invariants:
 * - A tombstone row is removed only after every one of its shard files is gone; a shard that
 *   cannot be removed (bucket unreachable) keeps the row for a later purge.
 * - A 'pending' tombstone of a rewrite still running is never purged (its copies are in use).
 * - Purging never touches a generation the block map or another tombstone still references.
 */
import type { BlockStore } from '../block/index.js';
import type { MetaStore, TombstoneRecord } from '../meta/index.js';

/** Tombstones purged per metadata query; a purge loops until none is left. */
const PURGE_BATCH_MAX = 256;
/** Stray shard files younger than this may belong to a write in flight: never purged. */
const STRAY_AGE_MS_MIN = 60_000;

/** What a purge removed. */
export interface PurgeResult {
  purgedShards: number;
  purgedBytes: number;
  /** Tombstones kept because a shard could not be removed, with the reason. */
  errors: string[];
}

/** A tombstone as listed over the control socket. */
export interface TombstoneInfo {
  id: number;
  ino: number;
  block?: number;
  pool: string;
  topology: string;
  bytes: number;
  buckets: string[];
  reason: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
}

/** Lists, purges and ages out the tombstones of one filesystem. */
export class Tombstones {
  readonly #meta: MetaStore;
  readonly #blocks: BlockStore;
  /** Inodes with a rewrite in progress: their pending tombstones are live. */
  readonly rewritesInProgress = new Set<number>();

  constructor(parts: { meta: MetaStore; blocks: BlockStore }) {
    this.#meta = parts.meta;
    this.#blocks = parts.blocks;
  }

  /** Tombstones of one inode, or all. */
  list(ino?: number): TombstoneInfo[] {
    return this.#meta.listTombstones(ino).map((record) => ({
      id: record.id, ino: record.ino, block: record.blockIndex, pool: record.pool,
      topology: record.topology, bytes: record.dataBytes, buckets: [...record.buckets],
      reason: record.reason, createdAt: record.createdMs,
    }));
  }

  /** Purges every tombstone of `ino` now, whatever its age. */
  async purgeInode(ino: number, signal?: AbortSignal): Promise<PurgeResult> {
    const { keptIds: _, ...result } = await this.#purgeRecords(this.#meta.listTombstones(ino), signal);
    return result;
  }

  /** Purges every tombstone created more than `olderThanMs` ago. */
  async purgeOlderThan(olderThanMs: number, signal?: AbortSignal): Promise<PurgeResult> {
    const result: PurgeResult = { purgedShards: 0, purgedBytes: 0, errors: [] };
    const cutoffMs = Date.now() - olderThanMs;
    // Rows kept by one pass (errors, running rewrites, young strays) are not retried in this purge.
    const kept = new Set<number>();
    for (;;) {
      const batch = this.#meta.tombstonesBefore(cutoffMs, PURGE_BATCH_MAX + kept.size)
        .filter((record) => !kept.has(record.id));
      if (batch.length === 0 || signal?.aborted === true) return result;
      const part = await this.#purgeRecords(batch, signal);
      result.purgedShards += part.purgedShards;
      result.purgedBytes += part.purgedBytes;
      result.errors.push(...part.errors);
      for (const id of part.keptIds) kept.add(id);
    }
  }

  /**
   * Removes what rewrites of an earlier process left half done. Only at startup, before the
   * filesystem serves anything: no write can be in flight, so no stray is too young.
   */
  async purgeInterruptedRewrites(): Promise<PurgeResult> {
    const pending = this.#meta.listTombstones().filter((record) => record.reason === 'pending');
    const { keptIds: _, ...result } = await this.#purgeRecords(pending, undefined, 0);
    return result;
  }

  async #purgeRecords(
    records: readonly TombstoneRecord[],
    signal?: AbortSignal,
    strayAgeMs = STRAY_AGE_MS_MIN,
  ): Promise<PurgeResult & { keptIds: number[] }> {
    const result = { purgedShards: 0, purgedBytes: 0, errors: [] as string[], keptIds: [] as number[] };
    for (const record of records) {
      if (signal?.aborted === true) break;
      if (record.reason === 'pending' && this.rewritesInProgress.has(record.ino)) {
        result.keptIds.push(record.id);
        continue;
      }
      try {
        const removed = record.reason === 'pending'
          ? await this.#blocks.purgeStrays(record.ino, record.blockIndex, {
            keep: this.#referencedGenerations(record), youngMs: strayAgeMs,
          })
          : { ...(await this.#blocks.purge(record)), young: 0 };
        if (removed.young === 0) this.#meta.removeTombstone(record.id);
        else result.keptIds.push(record.id);
        result.purgedShards += removed.shards;
        result.purgedBytes += removed.bytes;
      } catch (error) {
        result.keptIds.push(record.id);
        result.errors.push(`inode ${record.ino} block ${record.blockIndex}: ${(error as Error).message}`);
      }
    }
    return result;
  }

  /** Generations of a block that something still names: the live block and other tombstones. */
  #referencedGenerations(pending: TombstoneRecord): Set<number> {
    const keep = new Set<number>();
    const live = this.#meta.getBlock(pending.ino, pending.blockIndex);
    if (live !== undefined) keep.add(live.generation);
    for (const other of this.#meta.listTombstones(pending.ino)) {
      if (other.blockIndex === pending.blockIndex && other.reason !== 'pending') keep.add(other.generation);
    }
    return keep;
  }
}
