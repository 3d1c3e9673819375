/**
 * erasure/: checksums and Reed-Solomon erasure coding (pure compute, no I/O).
 *
 * The public surface of the module; nothing outside erasure/ imports its other files.
 */
export {
  crc32c,
  crc32cAsync,
  crc32cChunks,
  crc32cChunksAsync,
  crc32cVerifyChunks,
  crc32cVerifyChunksAsync,
  ReedSolomon,
  SHARD_COUNT_MAX,
} from './codec.js';
