/**
 * The shard file writer of the shmr_isal addon: a whole shard file (checksums, directories,
 * create, allocation, write, fsync, close) in one libuv pool job. It lives in the addon that computes the
 * checksums, so the job reads the payload once for them and once for the write.
 *
 * Invariant: a failure rejects with an Error like Node's own fs errors (`code`, `errno`,
 * `syscall`, `path`), so callers tell EEXIST, ENOENT or ENOSPC apart as they do for fs calls.
 */
import { getSystemErrorName } from 'node:util';
import {
  isal, SHARD_WRITE_CHECKSUM, SHARD_WRITE_DIRECT, SHARD_WRITE_MAKE_DIRECTORIES, SHARD_WRITE_SYNC,
} from './native.js';

/** Where the checksums of a prefix lie (the shard header's layout). */
export interface PrefixChecksumOffsets {
  readonly chunkBytes: number;
  /** The chunk table: one little-endian u32 CRC32C per chunk of the payload. */
  readonly tableStart: number;
  readonly payloadChecksumAt: number;
  readonly tableChecksumAt: number;
  /** CRC32C of the prefix bytes before it, computed after the other two. */
  readonly headerChecksumAt: number;
}

export interface ShardFileWrite {
  readonly prefix: Buffer;
  readonly payload: Uint8Array;
  /** fsync the file before it is closed. */
  readonly sync: boolean;
  /** Where the checksums of `prefix` lie. */
  readonly offsets: PrefixChecksumOffsets;
  /** Fill the chunk table and checksums of `prefix` first (else it is written as it is). */
  readonly checksum: boolean;
  /** Create the file's directory (and the one above it) when missing. */
  readonly makeDirectories: boolean;
  /**
   * Write past the page cache (O_DIRECT, through an aligned buffer of the pool thread) when
   * the sizes are whole pages and the filesystem allows it; else buffered, as without.
   */
  readonly direct?: boolean | undefined;
}

/**
 * Creates `path` (O_EXCL) holding prefix + payload. Neither buffer may change until the
 * promise settles; a failure leaves no file (but the prefix checksums filled, if asked).
 */
export async function writeShardFileAsync(path: string, write: ShardFileWrite): Promise<void> {
  const { offsets } = write;
  let flags = write.sync ? SHARD_WRITE_SYNC : 0;
  if (write.checksum) flags |= SHARD_WRITE_CHECKSUM;
  if (write.makeDirectories) flags |= SHARD_WRITE_MAKE_DIRECTORIES;
  if (write.direct === true) flags |= SHARD_WRITE_DIRECT;
  try {
    await isal.writeShardFileAsync(
      path, write.prefix, write.payload, offsets.chunkBytes, offsets.tableStart,
      offsets.payloadChecksumAt, offsets.tableChecksumAt, offsets.headerChecksumAt, flags,
    );
  } catch (error) {
    throw systemError(error, path);
  }
}

/**
 * Starts the write-back of the dirty pages of the file at `path` (sync_file_range), not
 * waiting for it. False when it could not (the file is gone, say): a hint only.
 */
export function startWriteback(path: string): Promise<boolean> {
  return isal.startWritebackAsync(path);
}

/** The addon's rejection as a Node-style system error; other errors unchanged. */
function systemError(error: unknown, path: string): unknown {
  const { errno, syscall } = error as { errno?: unknown; syscall?: unknown };
  if (typeof errno !== 'number' || typeof syscall !== 'string') return error;
  const code = getSystemErrorName(errno);
  return Object.assign(new Error(`${code}: ${syscall} '${path}'`), { code, errno, syscall, path });
}
