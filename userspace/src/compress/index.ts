/**
 * compress/: block compression (pure compute, no I/O): zstd and lz4 into caller buffers, with
 * big blocks processed off the event loop.
 *
 * The public surface of the module; nothing outside compress/ imports its other files.
 */
export {
  compressBlock,
  decompressBlock,
  OFF_THREAD_BYTES_MIN,
  type CompressedAlgorithm,
} from './codec.js';
