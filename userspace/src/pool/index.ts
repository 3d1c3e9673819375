/** pool: tiers of buckets (directories on drives), shard placement and descriptor caching. */
export * from './bucket.js';
export * from './fd-cache.js';
export * from './placement.js';
export * from './pool.js';
