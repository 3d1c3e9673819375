/** file: byte ranges of regular files <-> cached and stored blocks. */
export * from './file-store.js';
export * from './mutex.js';
