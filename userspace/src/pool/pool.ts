/**
 * Pools: the tiers of a filesystem, each a set of buckets with one topology and block size.
 *
 * Invariants:
 * - Bucket names are unique across all pools (the block map stores shards by bucket name).
 * - A pool's buckets are opened (labels checked) before any shard is written.
 */
import { assert } from '../assert.js';
import { Errno, FsError } from '../errno.js';
import type { CompressionSpec, Config, PoolConfig, TopologySpec } from '../config/index.js';
import { Bucket } from './bucket.js';

/** One tier. */
export class Pool {
  readonly name: string;
  readonly topology: TopologySpec;
  readonly blockBytes: number;
  /** Compression of blocks written here unless a write asks for another. */
  readonly compression: CompressionSpec;
  /** Files rewritten into this pool keep their first `headBytes` on the write pool. */
  readonly headBytes: number;
  readonly buckets: readonly Bucket[];

  constructor(config: PoolConfig) {
    this.name = config.name;
    this.topology = config.topology;
    this.blockBytes = config.blockBytes;
    this.compression = config.compression;
    this.headBytes = config.headBytes;
    this.buckets = config.buckets.map((bucket) => new Bucket(bucket));
    assert(this.buckets.length > 0);
  }
}

/** Space of the pools, counting each device once. */
export interface SpaceTotals {
  totalBytes: number;
  freeBytes: number;
}

/** Every pool of a filesystem. */
export class Pools {
  readonly #pools = new Map<string, Pool>();
  readonly #buckets = new Map<string, Bucket>();
  readonly writePool: Pool;

  constructor(config: Config) {
    for (const poolConfig of config.pools.values()) {
      const pool = new Pool(poolConfig);
      this.#pools.set(pool.name, pool);
      for (const bucket of pool.buckets) {
        assert(!this.#buckets.has(bucket.name));
        this.#buckets.set(bucket.name, bucket);
      }
    }
    const writePool = this.#pools.get(config.writePool);
    assert(writePool !== undefined);
    this.writePool = writePool;
  }

  /**
   * Opens every bucket: checks or writes labels. Throws on a bucket that is not ours.
   * `directoryBlocks`: see MetaStore.shardDirectoryBlocks.
   */
  open(filesystemUuid: string, directoryBlocks: number): void {
    for (const bucket of this.#buckets.values()) bucket.open(filesystemUuid, directoryBlocks);
  }

  /** Tries to bring failed buckets back; returns those that came back. */
  probe(filesystemUuid: string): Bucket[] {
    return [...this.#buckets.values()].filter((bucket) => bucket.probe(filesystemUuid));
  }

  pool(name: string): Pool {
    const pool = this.#pools.get(name);
    if (pool === undefined) throw new FsError(Errno.EINVAL, 'pool', `unknown pool "${name}"`);
    return pool;
  }

  /** The bucket of that name, or undefined when the config no longer has it. */
  bucket(name: string): Bucket | undefined {
    return this.#buckets.get(name);
  }

  get all(): readonly Pool[] {
    return [...this.#pools.values()];
  }

  get buckets(): readonly Bucket[] {
    return [...this.#buckets.values()];
  }

  /** Total and free bytes over all buckets, each device counted once. */
  space(): SpaceTotals {
    const seen = new Set<number>();
    const totals = { totalBytes: 0, freeBytes: 0 };
    for (const bucket of this.#buckets.values()) {
      if (bucket.state !== 'ok' || seen.has(bucket.deviceId)) continue;
      seen.add(bucket.deviceId);
      totals.totalBytes += bucket.totalBytes;
      totals.freeBytes += bucket.freeBytes;
    }
    return totals;
  }
}
