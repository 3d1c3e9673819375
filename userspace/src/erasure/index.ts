/**
 * erasure/: checksums and Reed-Solomon erasure coding (pure compute), plus the one read that
 * is verified as it is made (preadVerifyChunksNow, the read fast path, and readShardVerify, the
 * cold read), the one write that is checksummed as it is made (writeShardFileAsync),
 * allocHugePages and allocPages for their buffers, and setThreadSlice for the thread that waits
 * for them: they share the addon.
 *
 * The public surface of the module; nothing outside erasure/ imports its other files.
 */
export {
  allocHugePages,
  allocPages,
  crc32c,
  crc32cAsync,
  crc32cChunks,
  crc32cChunksAsync,
  crc32cVerifyChunks,
  crc32cVerifyChunksAsync,
  PREAD_NOT_CACHED,
  preadVerifyChunksNow,
  READ_SHORT,
  readShardVerify,
  ReedSolomon,
  setThreadSlice,
  SHARD_COUNT_MAX,
} from './codec.js';
export { startWriteback, writeShardFileAsync, type PrefixChecksumOffsets, type ShardFileWrite } from './shard-file.js';
