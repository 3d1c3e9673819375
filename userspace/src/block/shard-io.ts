/**
 * Shard I/O: writing shard files and reading verified ranges of their payloads.
 *
 * Invariants:
 * - A shard file is created with O_EXCL and written completely (prefix, then payload) before
 *   anything refers to it; a failed write removes the partial file.
 * - No payload byte is returned before the checksum of every chunk it lies in has matched the
 *   shard's verified chunk table, and the header names the expected inode, block, generation
 *   and shard (a misdirected or stale file is corrupt, not data).
 */
import { close, constants, fsync, open, read, unlink, writev } from 'node:fs';
import { promisify } from 'node:util';
import { assert } from '../assert.js';
import { Slots } from '../slots.js';
import { crc32c, preadVerifyChunksNow, READ_SHORT, readShardVerify, writeShardFileAsync } from '../erasure/index.js';
import { CHUNK_BYTES, CHUNK_TABLES_MAX, IO_REQUEST_BYTES_MAX, SECTOR_BYTES } from '../limits.js';
import {
  decodeShardPrefix, findBadChunk, findBadChunkAsync, SHARD_PREFIX_CHECKSUMS, ShardHeader, shardGeometry,
  type ShardPrefix, u64ToNumber,
} from '../layout/index.js';
import type { FdCache, ShardName } from '../pool/index.js';
import { directBytes, isWholePages } from './aligned.js';
import { ScratchPool } from './scratch.js';
import { ShardError } from './shard-error.js';

const openAsync = promisify(open);
const closeAsync = promisify(close);
const fsyncAsync = promisify(fsync);
const unlinkAsync = promisify(unlink);

/**
 * Largest single write call to a shard file through the page cache, beyond its prefix (a 1 MiB
 * block: one call).
 */
const WRITE_PIECE_BYTES = 1024 * 1024;
/**
 * Largest single O_DIRECT write: a whole shard of a 32 MiB erasure block in one call. Such a
 * write holds its thread until the drive has the bytes, a few milliseconds; fewer, bigger calls
 * keep more bytes in flight per write slot and cost less CPU per byte.
 */
const DIRECT_PIECE_BYTES = 8 * 1024 * 1024;
/**
 * Shard writes in the thread pool at once. The pool has more threads (bin/shmr.js), so reads
 * always find one free instead of queueing behind writes that the kernel is throttling.
 */
const WRITE_JOBS_MAX = 6;

const writeSlots = new Slots(WRITE_JOBS_MAX);

/** Reads at least this large are verified on the libuv thread pool, off the event loop. */
const VERIFY_OFF_THREAD_BYTES_MIN = 512 * 1024;

/**
 * Largest range readRangeNow tries. A bigger one goes through the thread pool, which copies
 * and verifies it beside the JS thread (sequential reads keep both cores busy), and an
 * uncached one would make the JS thread start the disk readahead before giving up.
 */
const READ_NOW_BYTES_MAX = 256 * 1024;

/**
 * Reads of at least this many bytes are one thread-pool job each (readShardVerify: open, read,
 * close, verify), past the page cache when the target is page aligned (fuse/read-buffers hands
 * out such buffers) and the bytes are not cached. The descriptor cache's way took up to four
 * round trips for a shard not read before (open, prefix, payload, checksums). Smaller reads
 * (random 4 KiB ones) keep the cached descriptor: an open per read would cost them more.
 */
const ONE_JOB_BYTES_MIN = 128 * 1024;

const NO_PREFIX = Buffer.alloc(0);

/** Bytes read for a prefix on first access; a longer chunk table is read in a second call. */
const PREFIX_PROBE_BYTES = 4096;

/** A shard to read: where it is, and what its header must say. */
export interface ShardLocation {
  readonly bucket: string;
  readonly path: string;
  readonly name: ShardName;
}

function writevAsync(fd: number, buffers: readonly NodeJS.ArrayBufferView[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    writev(fd, buffers, position, (error, bytesWritten) => {
      if (error !== null) reject(error);
      else resolve(bytesWritten);
    });
  });
}

function readAsync(fd: number, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buffer, offset, length, position, (error, bytesRead) => {
      if (error !== null) reject(error);
      else resolve(bytesRead);
    });
  });
}

/**
 * Writes a whole shard file; removes it again if any step fails. A payload in a buffer from
 * allocAligned goes past the page cache (O_DIRECT) but for its unaligned tail.
 */
export async function writeShardFile(
  path: string,
  parts: { prefix: Buffer; payload: Uint8Array; sync: boolean },
): Promise<void> {
  const fd = await openAsync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  try {
    const { prefix, payload } = parts;
    const direct = prefix.byteLength % SECTOR_BYTES === 0 ? directBytes(payload) : 0;
    if (direct > 0 && await writeDirect(path, payload.subarray(0, direct), prefix.byteLength)) {
      await writeAll(fd, [prefix], 0);
      await writeAll(fd, [payload.subarray(direct)], prefix.byteLength + direct);
    } else {
      await writeAll(fd, [prefix, payload], 0);
    }
    if (parts.sync) await fsyncAsync(fd);
  } catch (error) {
    await closeAsync(fd).catch(() => undefined);
    await unlinkAsync(path).catch(() => undefined);
    throw error;
  }
  await closeAsync(fd);
}

/**
 * True when a shard with this payload can be stored by writeShardFileAtOnce: one write call
 * (past the page cache when its sizes are whole pages, see SHARD_WRITE_DIRECT), and not an
 * allocAligned payload, whose bigger writes writeShardFile makes O_DIRECT on its own. Beyond
 * WRITE_PIECE_BYTES only whole pages of allocPageAligned memory (4 MiB volume blocks, NBD
 * payloads): one job writes them where they are, a few milliseconds of one of the
 * WRITE_JOBS_MAX slots, instead of 1 MiB buffered pieces each copied into the page cache and
 * written back later (NBD bench, nbdcopy in of 1 GiB: daemon CPU 1.13-1.20 -> 0.89-0.99 s).
 */
export function canWriteAtOnce(payload: Uint8Array): boolean {
  if (directBytes(payload) !== 0) return false;
  if (payload.byteLength <= WRITE_PIECE_BYTES) return true;
  return payload.byteLength <= DIRECT_PIECE_BYTES && isWholePages(payload);
}

/**
 * writeShardFile in one thread-pool job (see canWriteAtOnce): with `checksum`, the job also
 * fills the chunk table and checksums of a prefix from encodeShardHeader (and does so before
 * anything can fail, so a retry elsewhere passes `checksum: false`). The file's directory and
 * the one above it are created when missing. Whole pages go past the page cache: the job copies
 * them into its thread's aligned buffer, or writes a page-aligned payload (allocPageAligned,
 * lent FUSE write buffers) where it is. With `keepCached` they go through it instead (see
 * BlockWrite.keepCached).
 */
export async function writeShardFileAtOnce(
  path: string,
  parts: { prefix: Buffer; payload: Uint8Array; sync: boolean; checksum: boolean; keepCached?: boolean | undefined },
): Promise<void> {
  assert(canWriteAtOnce(parts.payload));
  const { keepCached, ...write } = parts;
  const direct = keepCached !== true;
  await writeSlots.run(() => writeShardFileAsync(path, { ...write, direct, offsets: SHARD_PREFIX_CHECKSUMS, makeDirectories: true }));
}

/**
 * Writes from file offset `start` in pieces of at most `pieceBytes`: one thread-pool job per
 * piece, so that a big shard does not hold a pool thread for long while small reads wait.
 */
async function writeAll(fd: number, buffers: Uint8Array[], start: number, pieceBytes = WRITE_PIECE_BYTES): Promise<void> {
  let pending = buffers.filter((buffer) => buffer.byteLength > 0);
  let position = start;
  while (pending.length > 0) {
    // The prefix rides along with the first piece: a 1 MiB block's shard is one call.
    const limit = pieceBytes + (position === 0 ? buffers[0]?.byteLength ?? 0 : 0);
    const written = await writeSlots.run(() => writevAsync(fd, firstPiece(pending, limit), position));
    assert(written > 0);
    position += written;
    pending = advance(pending, written);
  }
}

/**
 * Writes `view` (aligned: see allocAligned) at `position` of the file through a second, O_DIRECT
 * descriptor. False when the filesystem refuses O_DIRECT (EINVAL): the caller then writes the
 * whole file through the page cache.
 */
async function writeDirect(path: string, view: Uint8Array, position: number): Promise<boolean> {
  let fd: number;
  try {
    fd = await openAsync(path, constants.O_WRONLY | constants.O_DIRECT);
  } catch (error) {
    if ((error as { code?: string }).code === 'EINVAL') return false;
    throw error;
  }
  try {
    await writeAll(fd, [view], position, DIRECT_PIECE_BYTES);
    return true;
  } catch (error) {
    // An alignment the filesystem does not accept: the caller writes the whole file buffered.
    if ((error as { code?: string }).code === 'EINVAL') return false;
    throw error;
  } finally {
    await closeAsync(fd);
  }
}

/**
 * Reads into `view` (aligned: see allocAligned) from `position` of the shard past the page cache
 * (a rewrite reads data it moves away: caching it only costs a copy). Returns the bytes read:
 * fewer at the end of the file, 0 when the filesystem refuses O_DIRECT. Throws ShardError.
 */
async function readDirect(location: ShardLocation, view: Buffer, position: number): Promise<number> {
  let fd: number;
  try {
    fd = await openAsync(location.path, constants.O_RDONLY | constants.O_DIRECT);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'EINVAL') return 0;
    throw new ShardError({ kind: code === 'ENOENT' ? 'missing' : 'io', bucket: location.bucket, path: location.path, detail: String(code) });
  }
  let done = 0;
  try {
    while (done < view.byteLength) {
      const bytesRead = await readAsync(fd, view, done, view.byteLength - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  } catch (error) {
    if ((error as { code?: string }).code === 'EINVAL' && done === 0) return 0;
    throw new ShardError({ kind: 'io', bucket: location.bucket, path: location.path, detail: (error as Error).message });
  } finally {
    await closeAsync(fd);
  }
}

/** The leading buffers of `buffers` up to `bytesMax` bytes (views, no copies). */
function firstPiece(buffers: Uint8Array[], bytesMax: number): Uint8Array[] {
  const piece: Uint8Array[] = [];
  let bytes = 0;
  for (const buffer of buffers) {
    if (bytes >= bytesMax) break;
    const take = Math.min(buffer.byteLength, bytesMax - bytes);
    piece.push(take === buffer.byteLength ? buffer : buffer.subarray(0, take));
    bytes += take;
  }
  return piece;
}

function advance(buffers: Uint8Array[], bytes: number): Uint8Array[] {
  const rest: Uint8Array[] = [];
  let skip = bytes;
  for (const buffer of buffers) {
    if (skip >= buffer.byteLength) {
      skip -= buffer.byteLength;
      continue;
    }
    rest.push(skip > 0 ? buffer.subarray(skip) : buffer);
    skip = 0;
  }
  return rest;
}

/**
 * Checks a shard just written from `prefix` and `payload` (the very buffers handed to the
 * write) as a read-back would: the prefix decodes and names `location`, and every payload chunk
 * matches its checksum. Nothing is read: after the write the page cache holds these bytes, so
 * what a read-back catches is a buffer that changed between checksumming and writing, and this
 * catches it at the cost of one checksum pass. Throws ShardError.
 */
export async function checkWrittenShard(location: ShardLocation, prefix: Buffer, payload: Uint8Array): Promise<void> {
  const decoded = decodeShardPrefix(prefix);
  if (!decoded.ok) throw corrupt(location, `written header ${decoded.kind} (${decoded.field}: ${decoded.detail})`);
  checkIdentity(location, decoded.value);
  if (decoded.value.header.payload_bytes !== payload.byteLength) throw corrupt(location, 'written header has another payload length');
  const bad = await findBadChunkAsync(decoded.value, payload, 0);
  if (bad >= 0) throw corrupt(location, `written chunk ${bad} does not match its checksum`);
}

/** Removes a shard file; a file already gone is fine. */
export async function deleteShardFile(path: string): Promise<void> {
  try {
    await unlinkAsync(path);
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOENT') throw error;
  }
}

/** Reads verified payload ranges of shard files through a descriptor cache. */
export class ShardReader {
  readonly #fds: FdCache;
  readonly #prefixes = new Map<string, ShardPrefix>();
  readonly #scratch = new ScratchPool(IO_REQUEST_BYTES_MAX + 2 * CHUNK_BYTES);

  constructor(fds: FdCache) {
    this.#fds = fds;
  }

  /** Forgets cached state of a deleted or replaced shard file. */
  forget(path: string): void {
    this.#prefixes.delete(path);
    this.#fds.forget(path);
  }

  /** The verified prefix of a shard (cached). Throws ShardError. */
  async prefix(location: ShardLocation): Promise<ShardPrefix> {
    const held = await this.#acquire(location);
    try {
      return await this.#prefixOf(location, held.fd);
    } finally {
      this.#fds.release(held);
    }
  }

  /**
   * Copies payload bytes [start, end) of the shard into `target` at `targetOffset`, after
   * verifying every chunk they lie in. `payloadBytes`, the payload length the block record
   * implies, lets a big read of a shard whose prefix is not cached fetch prefix and payload in
   * one go. Throws ShardError.
   */
  async readRange(
    location: ShardLocation,
    range: { start: number; end: number },
    target: Buffer,
    targetOffset: number,
    payloadBytes?: number,
  ): Promise<void> {
    assert(range.start >= 0);
    assert(range.end > range.start);
    if (range.end - range.start >= ONE_JOB_BYTES_MIN) {
      const output = { target, targetOffset };
      const prefix = this.#prefixes.get(location.path);
      if (prefix !== undefined) return this.#readKnown(location, prefix, range, output);
      if (payloadBytes !== undefined && await this.#readUnknown(location, payloadBytes, range, output)) return;
    }
    const held = await this.#acquire(location);
    try {
      const prefix = await this.#prefixOf(location, held.fd);
      const span = chunkSpan(prefix.header, range);
      if (span === undefined) throw corrupt(location, `payload has ${prefix.header.payload_bytes} bytes, ${range.end} needed`);
      const { view, scratch } = this.#spanView(span, target, targetOffset);
      try {
        await this.#readExactly(location, held.fd, view, prefix.header.payload_offset + span.start);
        const bad = view.byteLength >= VERIFY_OFF_THREAD_BYTES_MIN
          ? await findBadChunkAsync(prefix, view, span.firstChunk)
          : findBadChunk(prefix, view, span.firstChunk);
        if (bad >= 0) throw corrupt(location, `chunk ${bad} does not match its checksum`);
        scratch?.copy(target, targetOffset, range.start - span.start, range.end - span.start);
      } finally {
        if (scratch !== undefined) this.#scratch.release(scratch);
      }
    } finally {
      this.#fds.release(held);
    }
  }

  /**
   * readRange's fast path, synchronous: succeeds (true) only when the range is at most
   * READ_NOW_BYTES_MAX, the shard's descriptor and verified prefix are cached and every chunk
   * of the range is in the page cache and matches its checksum. False means nothing usable was copied (the target range may hold partial
   * bytes): call readRange, which reads, waits and reports what is wrong.
   */
  readRangeNow(
    location: ShardLocation,
    range: { start: number; end: number },
    target: Buffer,
    targetOffset: number,
  ): boolean {
    assert(range.start >= 0);
    assert(range.end > range.start);
    if (range.end - range.start > READ_NOW_BYTES_MAX) return false;
    const prefix = this.#prefixes.get(location.path);
    if (prefix === undefined) return false;
    const fd = this.#fds.peek(location.path);
    if (fd === undefined) return false;
    const span = chunkSpan(prefix.header, range);
    if (span === undefined) return false;
    const { view, scratch } = this.#spanView(span, target, targetOffset);
    try {
      const check = { chunkBytes: prefix.header.chunk_bytes, table: prefix.chunkTable, firstChunk: span.firstChunk };
      if (preadVerifyChunksNow(view, check, fd, prefix.header.payload_offset + span.start) !== -1) return false;
      scratch?.copy(target, targetOffset, range.start - span.start, range.end - span.start);
      return true;
    } finally {
      if (scratch !== undefined) this.#scratch.release(scratch);
    }
  }

  /**
   * What a reader outside JS needs to read verified payload bytes of the shard from the page
   * cache: its descriptor as cached now (borrowed: dup it to keep it) and its verified prefix.
   * Undefined when either is not cached.
   */
  cachedShard(location: ShardLocation): { fd: number; prefix: ShardPrefix } | undefined {
    const prefix = this.#prefixes.get(location.path);
    if (prefix === undefined) return undefined;
    const fd = this.#fds.peek(location.path);
    return fd === undefined ? undefined : { fd, prefix };
  }

  /** readRange in one job, for a shard whose verified prefix is cached. */
  async #readKnown(
    location: ShardLocation,
    prefix: ShardPrefix,
    range: { start: number; end: number },
    output: { target: Buffer; targetOffset: number },
  ): Promise<void> {
    const { header } = prefix;
    const span = chunkSpan(header, range);
    if (span === undefined) throw corrupt(location, `payload has ${header.payload_bytes} bytes, ${range.end} needed`);
    const { view, scratch } = this.#spanView(span, output.target, output.targetOffset);
    try {
      const parts = { prefix: NO_PREFIX, data: view, position: header.payload_offset + span.start };
      const check = { chunkBytes: header.chunk_bytes, table: prefix.chunkTable, firstChunk: span.firstChunk };
      const outcome = await this.#job(location, parts, check);
      if (outcome === READ_SHORT) throw corrupt(location, `file ends before payload byte ${span.end}`);
      if (outcome >= 0) throw corrupt(location, `chunk ${outcome} does not match its checksum`);
      scratch?.copy(output.target, output.targetOffset, range.start - span.start, range.end - span.start);
    } finally {
      if (scratch !== undefined) this.#scratch.release(scratch);
    }
  }

  /**
   * readRange in one job for a shard whose prefix is not cached: reads the prefix where a
   * payload of `payloadBytes` puts it, together with the payload range, and checks the chunks
   * against the table just read; the answer counts only once the prefix itself verifies. False
   * when the file is not laid out as guessed (shorter, another length in its header): the
   * caller then reads it the general way, which reports precisely.
   */
  async #readUnknown(
    location: ShardLocation,
    payloadBytes: number,
    range: { start: number; end: number },
    output: { target: Buffer; targetOffset: number },
  ): Promise<boolean> {
    const geometry = shardGeometry(payloadBytes);
    const span = chunkSpan({ payload_bytes: payloadBytes, chunk_bytes: CHUNK_BYTES }, range);
    if (span === undefined) return false;
    const prefixBytes = Buffer.allocUnsafeSlow(geometry.payloadOffset);
    const table = prefixBytes.subarray(ShardHeader.sizeBytes, ShardHeader.sizeBytes + geometry.tableBytes);
    const { view, scratch } = this.#spanView(span, output.target, output.targetOffset);
    try {
      const parts = { prefix: prefixBytes, data: view, position: geometry.payloadOffset + span.start };
      const outcome = await this.#job(location, parts, { chunkBytes: CHUNK_BYTES, table, firstChunk: span.firstChunk });
      if (outcome === READ_SHORT) return false;
      const decoded = decodeShardPrefix(prefixBytes);
      if (!decoded.ok && decoded.kind === 'short') return false;
      const prefix = this.#accept(location, decoded);
      const { header } = prefix;
      const isAsGuessed = header.payload_bytes === payloadBytes && header.chunk_bytes === CHUNK_BYTES &&
        header.payload_offset === geometry.payloadOffset;
      if (!isAsGuessed) {
        // Read from where the header says (it was checked; the guess was not).
        await this.#readKnown(location, prefix, range, output);
        return true;
      }
      if (outcome >= 0) throw corrupt(location, `chunk ${outcome} does not match its checksum`);
      scratch?.copy(output.target, output.targetOffset, range.start - span.start, range.end - span.start);
      return true;
    } finally {
      if (scratch !== undefined) this.#scratch.release(scratch);
    }
  }

  /** readShardVerify with its failures as ShardErrors. */
  async #job(
    location: ShardLocation,
    parts: { prefix: Buffer; data: Buffer; position: number },
    check: { chunkBytes: number; table: Buffer; firstChunk: number },
  ): Promise<number> {
    try {
      return await readShardVerify(location.path, parts, check);
    } catch (error) {
      const code = (error as { code?: string }).code;
      const kind = code === 'ENOENT' ? 'missing' : 'io';
      throw new ShardError({ kind, bucket: location.bucket, path: location.path, detail: (error as Error).message });
    }
  }

  /**
   * Where the chunks of a span are read to: straight into the target when the range is chunk
   * aligned, else into a scratch buffer (returned, to copy from and release).
   */
  #spanView(span: ChunkSpan, target: Buffer, targetOffset: number): { view: Buffer; scratch: Buffer | undefined } {
    const length = span.end - span.start;
    if (span.isAligned) return { view: target.subarray(targetOffset, targetOffset + length), scratch: undefined };
    const scratch = this.#scratch.acquire(length);
    return { view: scratch.subarray(0, length), scratch };
  }

  /**
   * Reads a whole shard back from disk (never from the prefix cache) and checks everything:
   * header, chunk table, every chunk and the payload checksum. Throws ShardError.
   */
  async verify(location: ShardLocation, scratch: Buffer): Promise<number> {
    this.forget(location.path);
    const prefix = await this.prefix(location);
    const payloadBytes = prefix.header.payload_bytes;
    assert(scratch.byteLength >= payloadBytes);
    if (payloadBytes > 0) await this.readRange(location, { start: 0, end: payloadBytes }, scratch, 0);
    if (crc32c(scratch.subarray(0, payloadBytes)) !== prefix.header.payload_checksum) {
      throw corrupt(location, 'payload does not match its checksum');
    }
    return payloadBytes;
  }

  async #acquire(location: ShardLocation) {
    try {
      return await this.#fds.acquire(location.path);
    } catch (error) {
      const code = (error as { code?: string }).code;
      const kind = code === 'ENOENT' ? 'missing' : 'io';
      throw new ShardError({ kind, bucket: location.bucket, path: location.path, detail: String(code) });
    }
  }

  async #readExactly(location: ShardLocation, fd: number, view: Buffer, position: number): Promise<void> {
    const direct = position % SECTOR_BYTES === 0 ? directBytes(view) : 0;
    let done = direct > 0 ? await readDirect(location, view.subarray(0, direct), position) : 0;
    while (done < view.byteLength) {
      let bytesRead: number;
      try {
        bytesRead = await readAsync(fd, view, done, view.byteLength - done, position + done);
      } catch (error) {
        throw new ShardError({
          kind: 'io', bucket: location.bucket, path: location.path, detail: (error as Error).message,
        });
      }
      if (bytesRead === 0) throw corrupt(location, `file ends ${view.byteLength - done} bytes early`);
      done += bytesRead;
    }
  }

  async #prefixOf(location: ShardLocation, fd: number): Promise<ShardPrefix> {
    const cached = this.#prefixes.get(location.path);
    if (cached !== undefined) return cached;
    let probe = Buffer.allocUnsafe(PREFIX_PROBE_BYTES);
    let bytesRead = await this.#readPrefixBytes(location, fd, probe);
    let decoded = decodeShardPrefix(probe.subarray(0, bytesRead));
    if (!decoded.ok && decoded.kind === 'short' && decoded.field === 'chunk_table') {
      probe = Buffer.allocUnsafe(Number(decoded.detail));
      bytesRead = await this.#readPrefixBytes(location, fd, probe);
      decoded = decodeShardPrefix(probe.subarray(0, bytesRead));
    }
    return this.#accept(location, decoded);
  }

  /** A decoded prefix that names `location`, now cached; else throws ShardError 'corrupt'. */
  #accept(location: ShardLocation, decoded: ReturnType<typeof decodeShardPrefix>): ShardPrefix {
    if (!decoded.ok) {
      throw corrupt(location, `header ${decoded.kind} (${decoded.field}: ${decoded.detail})`);
    }
    checkIdentity(location, decoded.value);
    if (this.#prefixes.size >= CHUNK_TABLES_MAX) {
      const oldest = this.#prefixes.keys().next().value;
      if (oldest !== undefined) this.#prefixes.delete(oldest);
    }
    this.#prefixes.set(location.path, decoded.value);
    return decoded.value;
  }

  async #readPrefixBytes(location: ShardLocation, fd: number, buffer: Buffer): Promise<number> {
    try {
      let done = 0;
      while (done < buffer.byteLength) {
        const bytesRead = await readAsync(fd, buffer, done, buffer.byteLength - done, done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done;
    } catch (error) {
      throw new ShardError({
        kind: 'io', bucket: location.bucket, path: location.path, detail: (error as Error).message,
      });
    }
  }
}

/**
 * The whole chunks that payload range [start, end) lies in, or undefined when the payload is
 * shorter than `end`.
 */
interface ChunkSpan {
  readonly start: number;
  readonly end: number;
  readonly firstChunk: number;
  /** The span is exactly the range asked for. */
  readonly isAligned: boolean;
}

function chunkSpan(
  header: { readonly payload_bytes: number; readonly chunk_bytes: number },
  range: { start: number; end: number },
): ChunkSpan | undefined {
  const { payload_bytes: payloadBytes, chunk_bytes: chunkBytes } = header;
  if (range.end > payloadBytes) return undefined;
  const start = Math.floor(range.start / chunkBytes) * chunkBytes;
  const end = Math.min(Math.ceil(range.end / chunkBytes) * chunkBytes, payloadBytes);
  return { start, end, firstChunk: start / chunkBytes, isAligned: start === range.start && end === range.end };
}

function checkIdentity(location: ShardLocation, prefix: ShardPrefix): void {
  const { header } = prefix;
  const { name } = location;
  const matches =
    u64ToNumber(header.ino) === name.ino &&
    u64ToNumber(header.block_index) === name.blockIndex &&
    u64ToNumber(header.generation) === name.generation &&
    header.shard_index === name.shardIndex;
  if (!matches) throw corrupt(location, 'header names another shard (misdirected file)');
}

function corrupt(location: ShardLocation, detail: string): ShardError {
  return new ShardError({ kind: 'corrupt', bucket: location.bucket, path: location.path, detail });
}

assert(PREFIX_PROBE_BYTES >= ShardHeader.sizeBytes);
