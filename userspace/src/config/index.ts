/** config: the validated, frozen configuration of one shmr filesystem. */
export * from './compression.js';
export * from './config.js';
export * from './topology.js';
export * from './units.js';
export * from './tiering.js';
