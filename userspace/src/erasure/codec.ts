/**
 * Erasure codec: CRC32C (whole buffers, or per-chunk tables) and systematic Reed-Solomon over
 * GF(2^8), computed by ISA-L.
 *
 * Owns the typed API over the native addon (native.ts). All output goes into caller-owned
 * buffers; nothing here allocates a shard.
 *
 * Invariants:
 * - The code is pinned: shard i < k is data i; parity r is row k + r of ISA-L's
 *   gf_gen_cauchy1_matrix, whose coefficient j is 1 / ((k + r) xor j) in GF(2^8) modulo
 *   0x11d. Parity already on disk depends on it, so codec.test.ts checks it against an
 *   independent reference.
 * - Every shard of one call has the same length (at least 1 byte), checked by the addon.
 * - Async calls run off the JS thread: encodeAsync and crc32cChunksAsync (the write path's) on
 *   the addon's bulk pool, niced below the JS thread so that reads go first; the others on the
 *   libuv pool. The addon pins the buffers until the promise settles, and the caller must not
 *   read or write them before that.
 * - Async calls report bad arguments as a rejected promise, never by throwing.
 */
import { assert } from '../assert.js';
import { isal } from './native.js';

/** The addon's chunked CRC32C functions (shmr_isal.c validates every argument). */
const chunkedCrc = isal;

/** Largest dataCount + parityCount the codec accepts (the addon enforces it too). */
export const SHARD_COUNT_MAX = 32;

/**
 * CRC32C (Castagnoli), as an unsigned 32-bit number: crc32c(Buffer.from('123456789')) is
 * 0xe3069283. Pass a previous result as `previous` to continue it over more bytes:
 * crc32c(b, crc32c(a)) equals crc32c of a followed by b.
 */
export function crc32c(data: Uint8Array, previous?: number): number {
  return isal.crc32c(data, previous);
}

/** The same as crc32c, computed on the libuv thread pool: for big buffers. */
export function crc32cAsync(data: Uint8Array, previous?: number): Promise<number> {
  try {
    return isal.crc32cAsync(data, previous);
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Fills `table` with the little-endian u32 CRC32C of each `chunkBytes` chunk of `data` (the
 * last chunk may be short; table.byteLength must be >= 4 * ceil(data.byteLength / chunkBytes))
 * and returns the CRC32C of the whole of `data`. Same CRC32C convention as crc32c().
 *
 * One pass over `data`: the whole CRC is combined from the chunk CRCs. Extra table bytes are
 * left untouched. Throws TypeError/RangeError (naming the argument) if chunkBytes is not an
 * integer from 1 to 2^31 - 1, the table is too short, or the entries written overlap `data`.
 */
export function crc32cChunks(data: Uint8Array, chunkBytes: number, table: Uint8Array): number {
  return chunkedCrc.crc32cChunks(data, chunkBytes, table);
}

/** crc32cChunks on the addon's bulk pool; do not touch data or table until it resolves. */
export function crc32cChunksAsync(
  data: Uint8Array,
  chunkBytes: number,
  table: Uint8Array,
): Promise<number> {
  try {
    return chunkedCrc.crc32cChunksAsync(data, chunkBytes, table);
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Verifies `data` (starting at chunk `firstChunk` of a payload) against `table` (the payload's
 * table from crc32cChunks): returns the index of the first chunk whose CRC32C differs, or -1.
 *
 * Chunk i of `data` is checked against table entry firstChunk + i, and the index returned
 * counts from the payload's start. `data` must begin on a chunk boundary and end on one or at
 * the payload's end (only the payload's last chunk may be short). Throws if
 * table.byteLength < 4 * (firstChunk + ceil(data.byteLength / chunkBytes)) or if the entries
 * read overlap `data`; empty data verifies as -1.
 */
export function crc32cVerifyChunks(
  data: Uint8Array,
  chunkBytes: number,
  table: Uint8Array,
  firstChunk: number,
): number {
  return chunkedCrc.crc32cVerifyChunks(data, chunkBytes, table, firstChunk);
}

/** crc32cVerifyChunks on the libuv thread pool; do not write data or table until it resolves. */
export function crc32cVerifyChunksAsync(
  data: Uint8Array,
  chunkBytes: number,
  table: Uint8Array,
  firstChunk: number,
): Promise<number> {
  try {
    return chunkedCrc.crc32cVerifyChunksAsync(data, chunkBytes, table, firstChunk);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** preadVerifyChunksNow's answer when the bytes were not all in the page cache. */
export const PREAD_NOT_CACHED = -2;

/**
 * The read fast path, on the calling thread: fills all of `data` from descriptor `fd` at byte
 * `position` with preadv2(RWF_NOWAIT), which copies from the page cache and never waits for
 * the disk, then verifies it as crc32cVerifyChunks does. Returns -1 when every byte was read
 * and matched, the index of the first bad chunk, or PREAD_NOT_CACHED when the bytes could not
 * all be read without waiting (not cached, file too short, any I/O error): the caller's
 * ordinary read path then reads, waits and reports. The argument checks of crc32cVerifyChunks
 * apply.
 */
export function preadVerifyChunksNow(
  data: Uint8Array,
  check: { chunkBytes: number; table: Uint8Array; firstChunk: number },
  fd: number,
  position: number,
): number {
  return isal.preadVerifyChunksNow(data, check.chunkBytes, check.table, check.firstChunk, fd, position);
}

/** readShardVerify's answer when the file ended before the bytes asked for. */
export const READ_SHORT = -2;

/**
 * A shard read that waits for the disk, as one thread-pool job: opens `path`, reads file bytes
 * [0, prefix.length) into `prefix` (none when empty) and `data` from byte `position`, closes,
 * then verifies `data` as crc32cVerifyChunks does with `check` (whose table may lie in `prefix`:
 * then the caller must check the prefix's own checksums before trusting the answer). A page
 * aligned `data` and `position` whose range is not in the page cache is read with O_DIRECT.
 * Resolves to -1 when all was read and matched, the first bad chunk's index, or READ_SHORT;
 * rejects with an Error whose `code` is the errno name (ENOENT, EIO, ...) when open or read fails.
 */
export function readShardVerify(
  path: string,
  parts: { prefix: Uint8Array; data: Uint8Array; position: number },
  check: { chunkBytes: number; table: Uint8Array; firstChunk: number },
): Promise<number> {
  try {
    return isal.readShardVerifyAsync(
      path, parts.prefix, parts.data, parts.position, check.chunkBytes, check.table, check.firstChunk,
    );
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * `bytes` (a multiple of 2 MiB) of zeroed memory starting on a 2 MiB boundary and advised for
 * transparent huge pages: long-lived I/O buffers whose pages O_DIRECT reads and FUSE replies
 * pin one by one (a huge page is pinned once). Freed when collected. Throws RangeError for a
 * size that is not a positive multiple of 2 MiB, an Error when the memory cannot be mapped.
 */
export function allocHugePages(bytes: number): ArrayBuffer {
  return isal.allocHugePages(bytes);
}

/**
 * Sets the calling thread's time slice under the fair scheduler to `nanoseconds` (100 us to
 * 100 ms): a thread with a short slice preempts a busy one when it wakes (Linux 6.12+), its CPU
 * share unchanged. True when the kernel took it; false when it ignores slices (older kernels)
 * or the thread is not under the fair scheduler. Throws RangeError outside the range, an Error
 * naming the system call when one fails.
 */
export function setThreadSlice(nanoseconds: number): boolean {
  return isal.setThreadSlice(nanoseconds);
}

/**
 * `bytes` of zeroed memory on pages of its own (page-aligned start): buffers whose shard
 * payloads writeShardFileAsync writes with O_DIRECT where they are. Freed when collected.
 */
export function allocPages(bytes: number): ArrayBuffer {
  return isal.allocPages(bytes);
}

/**
 * Systematic Reed-Solomon over GF(2^8) with a Cauchy encode matrix: any dataCount of the
 * dataCount + parityCount shards recover the rest.
 *
 * Coding tables are built once per (dataCount, parityCount) and per erasure pattern, and kept
 * in the addon's bounded cache, so repeated calls only pay for the arithmetic.
 */
export class ReedSolomon {
  readonly dataCount: number;
  readonly parityCount: number;

  /** Throws RangeError unless dataCount >= 1, parityCount >= 0 and their sum <= 32. */
  constructor(dataCount: number, parityCount: number) {
    isal.rsPrepare(dataCount, parityCount);
    assert(dataCount + parityCount <= SHARD_COUNT_MAX);
    this.dataCount = dataCount;
    this.parityCount = parityCount;
  }

  /**
   * Computes parity[i] from data. Every buffer has the same length; parity buffers are the
   * caller's and must not overlap any other shard.
   */
  encode(data: readonly Uint8Array[], parity: readonly Uint8Array[]): void {
    isal.rsEncode(this.dataCount, this.parityCount, data, parity);
  }

  /** encode on the addon's bulk pool; do not touch the buffers until it resolves. */
  encodeAsync(data: readonly Uint8Array[], parity: readonly Uint8Array[]): Promise<void> {
    try {
      return isal.rsEncodeAsync(this.dataCount, this.parityCount, data, parity);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Recomputes, in place, every shard i with present[i] false (data and parity alike) from
   * the present ones. `shards` holds dataCount + parityCount equal-length buffers. Throws
   * RangeError if fewer than dataCount are present.
   */
  reconstruct(shards: readonly Uint8Array[], present: readonly boolean[]): void {
    isal.rsReconstruct(this.dataCount, this.parityCount, shards, present);
  }

  /** reconstruct on the libuv thread pool; do not touch the buffers until it resolves. */
  reconstructAsync(shards: readonly Uint8Array[], present: readonly boolean[]): Promise<void> {
    try {
      return isal.rsReconstructAsync(this.dataCount, this.parityCount, shards, present);
    } catch (error) {
      return Promise.reject(error);
    }
  }
}
