/** block: file blocks <-> shards in buckets, with checksums, copies and parity. */
export * from './aligned.js';
export * from './block-store.js';
export * from './shard-error.js';
export * from './shard-io.js';
export * from './observer.js';
export * from './shard-bytes.js';
