/**
 * BlockObserver: what the block store reports about its I/O (metrics subscribe). The default
 * does nothing, so the store never needs to know whether anyone listens. Calls happen on the
 * data path: implementations must not allocate or build strings.
 */
export interface BlockObserver {
  /** A block read (or part of one) of `bytes` from `pool` finished in `seconds`. */
  blockRead(pool: string, bytes: number, seconds: number): void;
  /** A block of `bytes` was written to `pool` in `seconds` (all its shards). */
  blockWritten(pool: string, bytes: number, seconds: number): void;
  /** One shard range of `bytes` was read from `bucket` in `seconds` (failures go to onShardError). */
  shardRead(bucket: string, bytes: number, seconds: number): void;
  /** One shard file of `bytes` was written to `bucket` in `seconds`. */
  shardWritten(bucket: string, bytes: number, seconds: number): void;
  /** Parity of one block of `pool` was computed in `seconds`. */
  encoded(pool: string, seconds: number): void;
  /** Lost shards of one block of `pool` were rebuilt in `seconds`. */
  decoded(pool: string, seconds: number): void;
}

/** The observer of a store nobody watches. */
export const NO_BLOCK_OBSERVER: BlockObserver = Object.freeze({
  blockRead: () => undefined,
  blockWritten: () => undefined,
  shardRead: () => undefined,
  shardWritten: () => undefined,
  encoded: () => undefined,
  decoded: () => undefined,
});
