/** cache: blocks held in memory (dirty write-back buffers and clean copies). No I/O. */
export * from './block-cache.js';
export * from './byte-ranges.js';
