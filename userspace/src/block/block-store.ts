/**
 * BlockStore: a block of a file <-> its shards in the buckets of a pool.
 *
 * Write ordering (crash safety): a block is written as shard files under a fresh generation,
 * never over the previous ones; only after every shard is written (and, when asked, fsynced
 * together with its directory) does the caller commit the new block record, and only after
 * that commit are the old generation's files deleted. A crash at any point leaves the old or
 * the new block complete and referenced; stray files of an uncommitted generation are
 * harmless orphans (fsck lists them).
 *
 * Compression: a block is compressed (pool setting, or the write's own) before it is split
 * into shards, so copies and parity are made of the compressed stream and checksums cover what
 * is on disk. A block that does not shrink is stored raw. A record whose `storedBytes` is less
 * than its `dataBytes` is compressed; the algorithm is in its shard headers.
 *
 * Invariants:
 * - Erasure shards are all `shardBytes` = ceil(storedBytes / dataShards) long; the last data
 *   shard is padded with zeros, which are part of its payload and checksums.
 * - A read returns only verified bytes, or throws: EIO is better than garbage. A compressed
 *   block is decompressed from verified shards and must come out exactly `dataBytes` long.
 */
import { fsync, open, close, constants } from 'node:fs';
import { readdir, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { assert } from '../assert.js';
import { Slots } from '../slots.js';
import { BufferShelf } from '../buffer-shelf.js';
import { Errno, FsError, fromSystemError } from '../errno.js';
import {
  formatTopology, parseCompression, parseTopology, shardCount, type CompressionSpec, type TopologySpec,
} from '../config/index.js';
import { compressBlock, decompressBlock, type CompressedAlgorithm } from '../compress/index.js';
import {
  Compression, encodeShardHeader, encodeShardPrefix, encodeShardPrefixAsync, shardGeometry, Topology,
  type ShardHeaderInput, type ShardPrefix,
} from '../layout/index.js';
import { ReedSolomon, startWriteback } from '../erasure/index.js';
import type { BlockRecord } from '../meta/index.js';
import { placeShards, type Bucket, type Placement, type Pool, type Pools } from '../pool/index.js';
import { DecompressedCache } from './decompressed-cache.js';
import {
  canWriteAtOnce, checkWrittenShard, deleteShardFile, writeShardFile, writeShardFileAtOnce, type ShardLocation,
  type ShardReader,
} from './shard-io.js';
import { ShardError } from './shard-error.js';
import { NO_BLOCK_OBSERVER, type BlockObserver } from './observer.js';

/** fsyncs syncEach runs at once: each holds a descriptor while it waits for its drive. */
const SYNC_JOBS_MAX = 64;
/** Write-back starts run at once (startWriteback): few, as they run beside the reads. */
const WRITEBACK_START_JOBS_MAX = 2;
const openAsync = promisify(open);
const closeAsync = promisify(close);
const fsyncAsync = promisify(fsync);

/** Encoding and checksumming at least this many bytes run on the libuv thread pool. */
const OFF_THREAD_BYTES_MIN = 256 * 1024;

/**
 * Idle parity buffers kept for the next blocks (see BufferShelf): the parity of two 32 MiB
 * 4+2 blocks, as many as a sequential write through the mount has stored at once.
 */
const PARITY_IDLE_BYTES_MAX = 32 * 1024 * 1024;

/** A block to write. `data` holds the block's bytes [0, dataBytes) and room for padding. */
export interface BlockWrite {
  readonly ino: number;
  readonly blockIndex: number;
  readonly blockBytes: number;
  readonly dataBytes: number;
  readonly data: Buffer;
  readonly pool: Pool;
  /** Topology of the new shards when not the pool's own (a rewrite to another layout). */
  readonly topology?: TopologySpec | undefined;
  /** fsync shard files and their directories before returning. */
  readonly sync: boolean;
  /**
   * Check each shard's written buffers against its header again after the write (a read-back
   * without the read: see checkWrittenShard); a mismatch is EIO and leaves no files.
   */
  readonly recheck?: boolean | undefined;
  /**
   * Room for the parity shards of an erasure block, each at least a shard long, that the caller
   * reuses from block to block (a rewrite): fresh 16 MiB buffers per block make the garbage
   * collector run often. Untouched by the caller until the write settles.
   */
  readonly parity?: readonly Buffer[] | undefined;
  /**
   * Compression of this block ("zstd:3", "lz4", "none"), as a per-file policy gives it;
   * the pool's setting when absent. A setting that does not parse is EINVAL.
   */
  readonly compression?: string | undefined;
  /**
   * Leave the shards in the page cache for the reads that follow: written through it instead
   * of past it, their write-back started later (startWriteback) or by the kernel. For files
   * with no cache of their own above them: NBD volumes, whose clients read straight from the
   * daemon, while a file read through the mount has the kernel's page cache of the FUSE inode.
   * NBD bench, 1 GiB nbdcopy, alternating runs against past the cache: copy-out 1187-1238 vs
   * 679-755 MB/s, copy-in 1322-1358 vs 1038-1123 (with the write-back started by each write).
   */
  readonly keepCached?: boolean | undefined;
  /**
   * Buckets to keep the shards out of while the pool has other usable ones with room: a block
   * stored again because its write-back failed in them.
   */
  readonly avoid?: ReadonlySet<string> | undefined;
}

/** A block whose shard files failed to sync (BlockStore.syncEach). */
export interface SyncFailure {
  readonly block: BlockRecord;
  /** Buckets of the shards that failed. */
  readonly buckets: Set<string>;
  /** The first failure, with its path. */
  readonly message: string;
}

/** placeShards, out of `avoid` while other buckets can take the block. */
function placeAvoiding(buckets: readonly Bucket[], shardCount: number, shardBytes: number, avoid: ReadonlySet<string> | undefined): Placement {
  if (avoid !== undefined && avoid.size > 0) {
    try {
      return placeShards(buckets, shardCount, { shardBytes, excluded: avoid });
    } catch {
      // Nowhere else: the avoided buckets may take it after all (a failure that passed).
    }
  }
  return placeShards(buckets, shardCount, { shardBytes });
}

/** The bytes a block is stored as: its data, or its compressed stream. */
interface StoredStream {
  /** Holds `bytes` and BLOCK_PADDING_BYTES of room for erasure padding. */
  readonly data: Buffer;
  readonly bytes: number;
  /** A `Compression` code for the shard headers. */
  readonly compression: number;
}

/** The algorithm of each `Compression` code that has one. */
const ALGORITHM_OF_CODE: ReadonlyMap<number, CompressedAlgorithm> = new Map([
  [Compression.zstd, 'zstd'],
  [Compression.lz4, 'lz4'],
]);

/** Something went wrong with a shard that the store worked around or gave up on. */
export interface ShardEvent {
  readonly error: ShardError;
  readonly block: BlockRecord;
}

/** Where a fast-path read puts its bytes, and the time marks of its shard reads. */
interface NowOutput {
  readonly target: Buffer;
  readonly targetOffset: number;
  readonly clock: { readonly startMs: number; lastMs: number };
}

/** Bytes of padding room a block buffer needs beyond `blockBytes` for erasure shards. */
export const BLOCK_PADDING_BYTES = 64;

export class BlockStore {
  readonly #pools: Pools;
  /** Blocks being read by a rescue (readWhole with evenFromFailedBuckets). */
  readonly #rescued = new Set<BlockRecord>();
  readonly #reader: ShardReader;
  /** Shared by every startWriteback call: the limit holds across calls. */
  readonly #writebackSlots = new Slots(WRITEBACK_START_JOBS_MAX);
  readonly #codecs = new Map<string, ReedSolomon>();
  readonly #topologies = new Map<string, TopologySpec>();
  readonly #decompressed = new DecompressedCache();
  readonly #parityShelf = new BufferShelf(PARITY_IDLE_BYTES_MAX);
  /** Shard locations of records read through the fast path (see #knownLocation). */
  readonly #locations = new WeakMap<BlockRecord, ({ bucketPath: string; location: ShardLocation } | undefined)[]>();
  /** Shard paths whose prefix warmFirstCopy is reading. */
  readonly #warming = new Set<string>();
  #generation: number;
  /** Called for every shard failure, with the block it belongs to (logging, counters). */
  onShardError: (event: ShardEvent) => void = () => undefined;
  /** Called once per pool the first time a block has to double up shards in one bucket. */
  onDoubledUp: (pool: string) => void = () => undefined;
  /** Told about every block and shard I/O and codec run (metrics). */
  observer: BlockObserver = NO_BLOCK_OBSERVER;

  constructor(pools: Pools, reader: ShardReader, generationFloor: number) {
    this.#pools = pools;
    this.#reader = reader;
    // Microseconds of wall time: above every generation a previous process could have used.
    this.#generation = Math.max(generationFloor + 1, Date.now() * 1000);
  }

  /**
   * Writes the shards of a block and returns its (not yet committed) record. Throws ENOSPC when
   * no bucket has room after trying the others, EIO when no bucket is usable.
   */
  async write(input: BlockWrite): Promise<BlockRecord> {
    assert(input.dataBytes > 0);
    assert(input.dataBytes <= input.blockBytes);
    const topology = input.topology ?? input.pool.topology;
    const startMs = performance.now();
    const stream = await this.#compress(input);
    const shelved: Buffer[] = [];
    const payloads = await this.#payloads(stream, topology, { pool: input.pool.name, parity: input.parity, shelved });
    for (let attempt = 0; ; attempt++) {
      const generation = this.#generation++;
      try {
        const record = await this.#writeShards(input, { payloads, topology, generation, stream });
        this.observer.blockWritten(input.pool.name, input.dataBytes, (performance.now() - startMs) / 1000);
        // Only after a success: a failed write may leave shard writes reading them.
        for (const buffer of shelved) this.#parityShelf.put(buffer);
        return record;
      } catch (error) {
        // A name taken by a stray file of an earlier process: retry under a new generation.
        if ((error as { code?: string }).code !== 'EEXIST' || attempt >= 3) throw error;
      }
    }
  }

  /** The block's data, or its compressed stream when compression shrinks it. */
  async #compress(input: BlockWrite): Promise<StoredStream> {
    const raw = { data: input.data, bytes: input.dataBytes, compression: Compression.none };
    const spec = this.#compressionSpec(input);
    if (spec.algorithm === 'none') return raw;
    // Per block, like the parity buffers: it lives until the shard files are written.
    const target = Buffer.allocUnsafeSlow(input.dataBytes + BLOCK_PADDING_BYTES);
    const bytes = await compressBlock(spec, input.data.subarray(0, input.dataBytes), target);
    if (bytes === 0) return raw;
    assert(bytes < input.dataBytes);
    return { data: target, bytes, compression: Compression[spec.algorithm] };
  }

  #compressionSpec(input: BlockWrite): CompressionSpec {
    if (input.compression === undefined) return input.pool.compression;
    // Parsed per block: a short string, next to compressing a whole block.
    const parsed = parseCompression(input.compression);
    if (typeof parsed === 'string') throw new FsError(Errno.EINVAL, 'write block', `compression: ${parsed}`);
    return parsed;
  }

  async #payloads(
    stream: { data: Buffer; bytes: number },
    topology: TopologySpec,
    context: { pool: string; parity?: readonly Buffer[] | undefined; shelved: Buffer[] },
  ): Promise<Buffer[]> {
    const data = stream.data.subarray(0, stream.bytes);
    if (topology.kind === 'single') return [data];
    if (topology.kind === 'mirror') return Array.from({ length: topology.copies }, () => data);
    const shardBytes = Math.ceil(stream.bytes / topology.data);
    const paddedBytes = shardBytes * topology.data;
    assert(stream.data.byteLength >= paddedBytes);
    stream.data.fill(0, stream.bytes, paddedBytes);
    const dataShards = Array.from({ length: topology.data }, (_, index) =>
      stream.data.subarray(index * shardBytes, (index + 1) * shardBytes));
    // Parity buffers are the caller's or from the shelf (back in `shelved` once written).
    const parityShards = Array.from({ length: topology.parity }, (_, index) => {
      const room = context.parity?.[index];
      if (room !== undefined && room.byteLength >= shardBytes) return room.subarray(0, shardBytes);
      const buffer = this.#parityShelf.take(shardBytes);
      context.shelved.push(buffer);
      return buffer;
    });
    const codec = this.#codec(topology.data, topology.parity);
    const startMs = performance.now();
    if (paddedBytes >= OFF_THREAD_BYTES_MIN) await codec.encodeAsync(dataShards, parityShards);
    else codec.encode(dataShards, parityShards);
    this.observer.encoded(context.pool, (performance.now() - startMs) / 1000);
    return [...dataShards, ...parityShards];
  }

  async #writeShards(
    input: BlockWrite,
    plan: { payloads: Buffer[]; topology: TopologySpec; generation: number; stream: StoredStream },
  ): Promise<BlockRecord> {
    const { payloads, topology, generation, stream } = plan;
    const shardBytes = payloads[0]?.byteLength ?? 0;
    const placement = placeAvoiding(input.pool.buckets, payloads.length, shardBytes, input.avoid);
    if (placement.isDoubledUp) this.onDoubledUp(input.pool.name);
    const chosen = [...placement.buckets];
    const written: string[] = [];
    // At once: each shard's checksums are computed by the job that writes its file.
    const isAtOnce = payloads.every((payload) => canWriteAtOnce(payload));
    const block = { ...input, stream };
    const prefixes = isAtOnce
      ? payloads.map((payload, shardIndex) => shardHeader(block, { topology, generation, shardIndex, payload }))
      : await Promise.all(payloads.map((payload, shardIndex) =>
        shardPrefix(block, { topology, generation, shardIndex, payload })));
    try {
      await Promise.all(payloads.map(async (payload, shardIndex) => {
        const prefix = prefixes[shardIndex];
        assert(prefix !== undefined);
        chosen[shardIndex] = await this.#writeOneShard(input, {
          generation, shardIndex, prefix, payload, chosen, written, isAtOnce,
        });
      }));
      if (input.recheck === true) await this.#recheck(input, { generation, prefixes, payloads, chosen });
      if (input.sync) await syncDirectories(written);
    } catch (error) {
      await Promise.all(written.map((path) => deleteShardFile(path).catch(() => undefined)));
      throw error;
    }
    return {
      ino: input.ino, blockIndex: input.blockIndex, pool: input.pool.name,
      topology: formatTopology(topology), generation, dataBytes: input.dataBytes,
      storedBytes: stream.bytes, buckets: chosen.map((bucket) => bucket.name),
    };
  }

  /** BlockWrite.recheck: every written shard against its header, as a read-back would. */
  async #recheck(
    input: BlockWrite,
    shards: { generation: number; prefixes: Buffer[]; payloads: Buffer[]; chosen: Bucket[] },
  ): Promise<void> {
    await Promise.all(shards.payloads.map(async (payload, shardIndex) => {
      const name = { ino: input.ino, blockIndex: input.blockIndex, generation: shards.generation, shardIndex };
      const bucket = shards.chosen[shardIndex];
      const prefix = shards.prefixes[shardIndex];
      assert(bucket !== undefined && prefix !== undefined);
      const location = { bucket: bucket.name, path: bucket.shardPath(name), name };
      try {
        await checkWrittenShard(location, prefix, payload);
      } catch (error) {
        if (!(error instanceof ShardError)) throw error;
        throw new FsError(Errno.EIO, 'write block', `block ${input.blockIndex} of inode ${input.ino}: ${error.message}`);
      }
    }));
  }

  /**
   * Writes one shard, moving to another bucket when one is full or failing. `isAtOnce`: the
   * prefix is encodeShardHeader's, completed by the first writeShardFileAtOnce that runs.
   */
  async #writeOneShard(
    input: BlockWrite,
    shard: {
      generation: number; shardIndex: number; prefix: Buffer; payload: Buffer; chosen: Bucket[]; written: string[];
      isAtOnce: boolean;
    },
  ): Promise<Bucket> {
    const excluded = new Set<string>();
    let bucket = shard.chosen[shard.shardIndex];
    assert(bucket !== undefined);
    const name = { ino: input.ino, blockIndex: input.blockIndex, generation: shard.generation, shardIndex: shard.shardIndex };
    const { prefix } = shard;
    let hasRetriedDirectory = false;
    let needsChecksum = shard.isAtOnce;
    for (;;) {
      const path = bucket.shardPath(name);
      try {
        const startMs = performance.now();
        if (shard.isAtOnce) {
          const parts = { prefix, payload: shard.payload, sync: input.sync, checksum: needsChecksum, keepCached: input.keepCached };
          needsChecksum = false;
          await writeShardFileAtOnce(path, parts);
        } else {
          await bucket.ensureDirectory(name);
          await writeShardFile(path, { prefix, payload: shard.payload, sync: input.sync });
        }
        this.observer.shardWritten(bucket.name, prefix.byteLength + shard.payload.byteLength, (performance.now() - startMs) / 1000);
        shard.written.push(path);
        bucket.consume(prefix.byteLength + shard.payload.byteLength);
        return bucket;
      } catch (error) {
        const code = (error as { code?: string }).code;
        // Not a system call's failure (a bug, or a job that never ran): no bucket's fault, and
        // an at-once prefix may be left without its checksums.
        if (code === undefined || code === 'EEXIST') throw error;
        if (code === 'ENOENT' && !hasRetriedDirectory) {
          // The hashed directory was removed under us: create it again, once.
          hasRetriedDirectory = true;
          bucket.forgetDirectory(name);
          continue;
        }
        if (code === 'ENOSPC' || code === 'EDQUOT') bucket.consume(Number.MAX_SAFE_INTEGER);
        else bucket.markFailed(`write ${path}: ${(error as Error).message}`);
        excluded.add(bucket.name);
        bucket = this.#alternative(input.pool, shard.chosen, excluded, shard.payload.byteLength, error);
      }
    }
  }

  #alternative(pool: Pool, chosen: Bucket[], excluded: Set<string>, shardBytes: number, cause: unknown): Bucket {
    const inUse = new Set(chosen.map((bucket) => bucket.name));
    const candidates = pool.buckets.filter((bucket) => !inUse.has(bucket.name));
    try {
      const [next] = placeShards(candidates.length > 0 ? candidates : pool.buckets, 1, { shardBytes, excluded }).buckets;
      assert(next !== undefined);
      return next;
    } catch (error) {
      // The failure that took the last bucket out is more telling than "no bucket left".
      throw fromSystemError(cause, 'write shard', `no other bucket in pool ${pool.name} (${String(error)})`);
    }
  }

  /**
   * Copies block bytes [start, end) of `block` into `target` at `targetOffset`: bytes past
   * `dataBytes` read as zeros. Reads another copy or rebuilds from parity when a shard fails;
   * throws FsError EIO when the block cannot be read correctly.
   */
  async read(
    block: BlockRecord,
    range: { start: number; end: number },
    target: Buffer,
    targetOffset: number,
  ): Promise<void> {
    const dataEnd = zeroPastData(block, range, target, targetOffset);
    if (dataEnd <= range.start) return;
    const dataRange = { start: range.start, end: dataEnd };
    const startMs = performance.now();
    if (block.storedBytes === block.dataBytes) {
      await this.#readStream(block, dataRange, target, targetOffset);
    } else {
      const data = await this.#decompressed.load(block, () => this.#decompress(block));
      data.copy(target, targetOffset, dataRange.start, dataRange.end);
    }
    this.observer.blockRead(block.pool, dataEnd - range.start, (performance.now() - startMs) / 1000);
  }

  /**
   * read()'s fast path, synchronous: true when the bytes were copied from shards already in
   * the page cache (or a decompressed block in memory), each verified against its checksums.
   * False when that is not possible without waiting or anything looks wrong (a failed bucket,
   * a bad chunk): call read(), which waits, falls back to other copies and reports. The
   * target range may then hold partial bytes.
   */
  readNow(block: BlockRecord, range: { start: number; end: number }, target: Buffer, targetOffset: number): boolean {
    const dataEnd = zeroPastData(block, range, target, targetOffset);
    if (dataEnd <= range.start) return true;
    const clock = { startMs: performance.now(), lastMs: 0 };
    clock.lastMs = clock.startMs;
    if (block.storedBytes === block.dataBytes) {
      if (!this.#readStreamNow(block, { start: range.start, end: dataEnd }, { target, targetOffset, clock })) return false;
    } else {
      const data = this.#decompressed.peek(block);
      if (data === undefined) return false;
      data.copy(target, targetOffset, range.start, dataEnd);
      clock.lastMs = performance.now();
    }
    this.observer.blockRead(block.pool, dataEnd - range.start, (clock.lastMs - clock.startMs) / 1000);
    return true;
  }

  /** #readStream without waiting: the first copy, or the data shards of an erasure block. */
  #readStreamNow(block: BlockRecord, range: { start: number; end: number }, output: NowOutput): boolean {
    const topology = this.#topology(block.topology);
    if (topology.kind !== 'erasure') return this.#readShardNow(block, 0, range, output);
    const shardBytes = Math.ceil(block.storedBytes / topology.data);
    const first = Math.floor(range.start / shardBytes);
    const last = Math.floor((range.end - 1) / shardBytes);
    for (let shardIndex = first; shardIndex <= last; shardIndex++) {
      const shardStart = shardIndex * shardBytes;
      const start = Math.max(range.start, shardStart) - shardStart;
      const end = Math.min(range.end, shardStart + shardBytes) - shardStart;
      const targetOffset = output.targetOffset + shardStart + start - range.start;
      if (!this.#readShardNow(block, shardIndex, { start, end }, { ...output, targetOffset })) return false;
    }
    return true;
  }

  /** #readShard without waiting; false for a bucket not 'ok' or anything not cached. */
  #readShardNow(block: BlockRecord, shardIndex: number, range: { start: number; end: number }, output: NowOutput): boolean {
    const bucketName = block.buckets[shardIndex];
    assert(bucketName !== undefined);
    const bucket = this.#pools.bucket(bucketName);
    if (bucket?.state !== 'ok') return false;
    const location = this.#knownLocation(block, shardIndex, bucket);
    if (!this.#reader.readRangeNow(location, range, output.target, output.targetOffset)) return false;
    const nowMs = performance.now();
    this.observer.shardRead(bucketName, range.end - range.start, (nowMs - output.clock.lastMs) / 1000);
    output.clock.lastMs = nowMs;
    return true;
  }

  /**
   * Where the bytes of an uncompressed Single or Mirror block can be read from the page cache
   * without JS (fuse/chunk-reads.ts): its first copy's descriptor (borrowed) and verified
   * prefix, when both are cached and its bucket is 'ok'; else undefined. A record names its
   * bytes for good (records are immutable), so this stays true until the record changes.
   */
  cachedFirstCopy(block: BlockRecord): { fd: number; prefix: ShardPrefix } | undefined {
    const location = this.#firstCopy(block);
    return location === undefined ? undefined : this.#reader.cachedShard(location);
  }

  /**
   * Has the descriptor and verified prefix of the block's first copy cached (see
   * cachedFirstCopy) in the background: for a block read from the block cache so far. Errors
   * are left to the reads that meet them.
   */
  warmFirstCopy(block: BlockRecord): void {
    const location = this.#firstCopy(block);
    if (location === undefined || this.#warming.has(location.path)) return;
    this.#warming.add(location.path);
    this.#reader.prefix(location).catch(() => undefined).finally(() => this.#warming.delete(location.path));
  }

  /** Where the first copy of an uncompressed Single or Mirror block in an 'ok' bucket lives. */
  #firstCopy(block: BlockRecord): ShardLocation | undefined {
    if (block.storedBytes !== block.dataBytes || this.#topology(block.topology).kind === 'erasure') return undefined;
    const bucketName = block.buckets[0];
    const bucket = bucketName === undefined ? undefined : this.#pools.bucket(bucketName);
    return bucket?.state === 'ok' ? this.#knownLocation(block, 0, bucket) : undefined;
  }

  /**
   * location(), remembered per record (records are immutable and the metadata store hands
   * out the same object while the block is unchanged), so a read of a cached block builds no
   * path. Made again when the bucket was pointed at another directory.
   */
  #knownLocation(block: BlockRecord, shardIndex: number, bucket: Bucket): ShardLocation {
    let known = this.#locations.get(block);
    if (known === undefined) {
      known = [];
      this.#locations.set(block, known);
    }
    let entry = known[shardIndex];
    if (entry === undefined || entry.bucketPath !== bucket.path) {
      entry = { bucketPath: bucket.path, location: this.location(block, shardIndex) };
      known[shardIndex] = entry;
    }
    return entry.location;
  }

  /** Copies bytes [start, end) of what the block is stored as (its stream) into `target`. */
  async #readStream(block: BlockRecord, range: { start: number; end: number }, target: Buffer, targetOffset: number): Promise<void> {
    assert(range.end <= block.storedBytes);
    const topology = this.#topology(block.topology);
    if (topology.kind === 'erasure') {
      await this.#readErasure(block, topology, range, { target, targetOffset });
    } else {
      await this.#readCopies(block, range, target, targetOffset);
    }
  }

  /** The whole stored stream of a block, verified (rebuilt from copies or parity if needed). */
  async #readWholeStream(block: BlockRecord): Promise<Buffer> {
    const stream = Buffer.allocUnsafeSlow(block.storedBytes + BLOCK_PADDING_BYTES);
    await this.#readStream(block, { start: 0, end: block.storedBytes }, stream, 0);
    return stream;
  }

  /** The data of a compressed block: its verified stream, decompressed and length-checked. */
  async #decompress(block: BlockRecord): Promise<Buffer> {
    assert(block.storedBytes < block.dataBytes);
    const stream = await this.#readWholeStream(block);
    const algorithm = await this.#algorithmOf(block);
    const data = Buffer.allocUnsafeSlow(block.dataBytes);
    try {
      await decompressBlock(algorithm, stream.subarray(0, block.storedBytes), { target: data, expectedBytes: block.dataBytes });
    } catch (error) {
      if (!(error instanceof FsError)) throw error;
      throw new FsError(Errno.EIO, 'read block', `block ${block.blockIndex} of inode ${block.ino}: ${error.message}`);
    }
    return data;
  }

  /**
   * The compression algorithm of a compressed block, from the first shard header that can be
   * read and agrees with the record (headers are cached by the reader, so this rarely reads).
   */
  async #algorithmOf(block: BlockRecord): Promise<CompressedAlgorithm> {
    let problem = 'no shard header is readable';
    for (let shardIndex = 0; shardIndex < block.buckets.length; shardIndex++) {
      const location = this.location(block, shardIndex);
      if (!this.#isReadable(block, this.#pools.bucket(location.bucket))) continue;
      try {
        const { header } = await this.#reader.prefix(location);
        const algorithm = ALGORITHM_OF_CODE.get(header.compression);
        if (algorithm !== undefined && header.compressed_bytes === block.storedBytes && header.data_bytes === block.dataBytes) {
          return algorithm;
        }
        problem = `shard ${shardIndex} header says compression ${header.compression} of ` +
          `${header.compressed_bytes} to ${header.data_bytes} bytes`;
      } catch (error) {
        if (!(error instanceof ShardError)) throw error;
        problem = error.message;
      }
    }
    throw new FsError(Errno.EIO, 'read block',
      `compressed block ${block.blockIndex} of inode ${block.ino} (${block.storedBytes} of ${block.dataBytes} bytes): ${problem}`);
  }

  async #readCopies(block: BlockRecord, range: { start: number; end: number }, target: Buffer, targetOffset: number): Promise<void> {
    let lastError: ShardError | undefined;
    for (let shardIndex = 0; shardIndex < block.buckets.length; shardIndex++) {
      try {
        await this.#readShard(block, shardIndex, range, target, targetOffset);
        return;
      } catch (error) {
        if (!(error instanceof ShardError)) throw error;
        lastError = error;
        this.onShardError({ error, block });
      }
    }
    throw new FsError(Errno.EIO, 'read block',
      `no readable copy of block ${block.blockIndex} of inode ${block.ino}: ${lastError?.message ?? ''}`);
  }

  async #readErasure(
    block: BlockRecord,
    topology: { data: number; parity: number },
    range: { start: number; end: number },
    output: { target: Buffer; targetOffset: number },
  ): Promise<void> {
    const shardBytes = Math.ceil(block.storedBytes / topology.data);
    const first = Math.floor(range.start / shardBytes);
    const last = Math.floor((range.end - 1) / shardBytes);
    // Settled, not all: no read of the first try may still write into the target afterwards.
    const results = await Promise.allSettled(Array.from({ length: last - first + 1 }, (_, offset) => {
      const shardIndex = first + offset;
      const shardStart = shardIndex * shardBytes;
      const start = Math.max(range.start, shardStart) - shardStart;
      const end = Math.min(range.end, shardStart + shardBytes) - shardStart;
      const targetAt = output.targetOffset + shardStart + start - range.start;
      return this.#readShard(block, shardIndex, { start, end }, output.target, targetAt);
    }));
    const failures = results.flatMap((result) => (result.status === 'rejected' ? [result.reason as unknown] : []));
    if (failures.length === 0) return;
    // The rebuild below reads every shard again and reports each failure once.
    const other = failures.find((error) => !(error instanceof ShardError));
    if (other !== undefined) throw other;
    const whole = await this.#reconstruct(block, topology, shardBytes);
    whole.copy(output.target, output.targetOffset, range.start, range.end);
  }

  /** Reads every shard it can and rebuilds the block's data; throws EIO beyond tolerance. */
  async #reconstruct(block: BlockRecord, topology: { data: number; parity: number }, shardBytes: number): Promise<Buffer> {
    const shardTotal = topology.data + topology.parity;
    const shards = Array.from({ length: shardTotal }, () => Buffer.allocUnsafeSlow(shardBytes));
    const present = await Promise.all(shards.map(async (shard, shardIndex) => {
      try {
        await this.#readShard(block, shardIndex, { start: 0, end: shardBytes }, shard, 0);
        return true;
      } catch (error) {
        if (!(error instanceof ShardError)) throw error;
        this.onShardError({ error, block });
        return false;
      }
    }));
    const presentCount = present.filter(Boolean).length;
    if (presentCount < topology.data) {
      const missing = present.flatMap((isPresent, index) => (isPresent ? [] : [index]));
      throw new FsError(Errno.EIO, 'read block',
        `block ${block.blockIndex} of inode ${block.ino}: ${missing.length} of ${shardTotal} shards ` +
          `lost (${missing.join(',')}), at most ${topology.parity} can be rebuilt`);
    }
    const startMs = performance.now();
    await this.#codec(topology.data, topology.parity).reconstructAsync(shards, present);
    this.observer.decoded(block.pool, (performance.now() - startMs) / 1000);
    const whole = Buffer.allocUnsafeSlow(shardBytes * topology.data);
    for (let index = 0; index < topology.data; index++) shards[index]?.copy(whole, index * shardBytes);
    return whole;
  }

  /**
   * The block's bytes [0, dataBytes), rebuilt from copies or parity when needed. With
   * `evenFromFailedBuckets`, shards in buckets out of service are read too (their checksums
   * still verify them): a rescue of bytes that may exist nowhere else, such as a block whose
   * write-back the drive refused, still in the page cache.
   */
  async readWhole(block: BlockRecord, options: { evenFromFailedBuckets?: boolean | undefined } = {}): Promise<Buffer> {
    const data = Buffer.allocUnsafeSlow(block.dataBytes + BLOCK_PADDING_BYTES);
    const isRescue = options.evenFromFailedBuckets === true;
    if (isRescue) this.#rescued.add(block);
    try {
      await this.read(block, { start: 0, end: block.dataBytes }, data, 0);
    } finally {
      if (isRescue) this.#rescued.delete(block);
    }
    return data;
  }

  /** True when a shard of `block` in `bucket` may be read (see readWhole's rescue). */
  #isReadable(block: BlockRecord, bucket: Bucket | undefined): boolean {
    return bucket !== undefined && (bucket.state !== 'failed' || this.#rescued.has(block));
  }

  /**
   * Checks every shard of a block in full. Returns the failures (empty when all is well);
   * `scratch` must hold a whole shard.
   */
  async verify(block: BlockRecord, scratch: Buffer): Promise<ShardError[]> {
    const failures: ShardError[] = [];
    for (let shardIndex = 0; shardIndex < block.buckets.length; shardIndex++) {
      try {
        await this.#reader.verify(this.location(block, shardIndex), scratch);
      } catch (error) {
        if (!(error instanceof ShardError)) throw error;
        failures.push(error);
      }
    }
    return failures;
  }

  /** The verified header of one shard, read from disk (not the cache). Throws ShardError. */
  async header(block: BlockRecord, shardIndex: number): Promise<ShardPrefix> {
    const location = this.location(block, shardIndex);
    this.#reader.forget(location.path);
    return this.#reader.prefix(location);
  }

  /** The parsed topology of a block record. */
  topologyOf(block: BlockRecord): TopologySpec {
    return this.#topology(block.topology);
  }

  /** Bytes of the largest shard of a block: what `verify` needs as scratch. */
  shardBytesOf(block: BlockRecord): number {
    const topology = this.#topology(block.topology);
    return topology.kind === 'erasure' ? Math.ceil(block.storedBytes / topology.data) : block.storedBytes;
  }

  /**
   * Writes a block's data again as new shards in `pool` (placement avoids failed buckets) and
   * returns the new, uncommitted record. Used by repair, by rewrites between pools and by a
   * block stored again after its write-back failed (which reads even failed buckets, see
   * readWhole, and keeps out of `avoid`, see BlockWrite).
   */
  async rewrite(
    block: BlockRecord,
    pool: Pool,
    blockBytes: number,
    options: {
      compression?: string | undefined;
      topology?: TopologySpec | undefined;
      avoid?: ReadonlySet<string> | undefined;
      evenFromFailedBuckets?: boolean | undefined;
    } = {},
  ): Promise<BlockRecord> {
    const data = await this.readWhole(block, { evenFromFailedBuckets: options.evenFromFailedBuckets });
    return this.write({
      ino: block.ino, blockIndex: block.blockIndex, blockBytes, dataBytes: block.dataBytes,
      data, pool, sync: true, compression: options.compression, topology: options.topology, avoid: options.avoid,
    });
  }

  /**
   * Reads one shard range, skipping a failed bucket without touching it and counting the
   * failures that point at the bucket rather than at one file.
   */
  async #readShard(block: BlockRecord, shardIndex: number, range: { start: number; end: number }, target: Buffer, targetOffset: number): Promise<void> {
    const bucketName = block.buckets[shardIndex];
    assert(bucketName !== undefined);
    const bucket = this.#pools.bucket(bucketName);
    if (bucket === undefined || !this.#isReadable(block, bucket)) {
      const { path } = this.location(block, shardIndex);
      throw new ShardError({ kind: 'missing', bucket: bucketName, path, detail: 'bucket is failed or unknown' });
    }
    const location = this.#knownLocation(block, shardIndex, bucket);
    const startMs = performance.now();
    try {
      await this.#reader.readRange(location, range, target, targetOffset, this.shardBytesOf(block));
      this.observer.shardRead(location.bucket, range.end - range.start, (performance.now() - startMs) / 1000);
    } catch (error) {
      if (error instanceof ShardError && error.kind !== 'corrupt') {
        // A drive that vanished (directory or label gone) fails at once; others after repeats.
        if (!bucket.isPresent()) bucket.markFailed('directory or label is gone');
        else if (error.kind === 'io') bucket.noteError(error.message);
      }
      throw error;
    }
  }

  /**
   * Recreates shard `shardIndex` of `block` (same name and generation) in `bucket`, from the
   * other shards: how a replaced drive is refilled. The block record does not change.
   */
  async rebuildShard(block: BlockRecord, shardIndex: number, bucket: Bucket, blockBytes: number): Promise<void> {
    const topology = this.#topology(block.topology);
    // The same stream as the other shards (never compressed anew: another zstd build could
    // produce other bytes), so the rebuilt shard matches their parity.
    const data = await this.#readWholeStream(block);
    const isCompressed = block.storedBytes < block.dataBytes;
    const compression = isCompressed ? Compression[await this.#algorithmOf(block)] : Compression.none;
    const stream = { data, bytes: block.storedBytes, compression };
    const payloads = await this.#payloads(stream, topology, { pool: block.pool, shelved: [] });
    const payload = payloads[shardIndex];
    assert(payload !== undefined);
    const name = { ino: block.ino, blockIndex: block.blockIndex, generation: block.generation, shardIndex };
    const prefix = await shardPrefix({ ...block, blockBytes, stream }, { topology, generation: block.generation, shardIndex, payload });
    await bucket.ensureDirectory(name);
    const path = bucket.shardPath(name);
    await deleteShardFile(path);
    await writeShardFile(path, { prefix, payload, sync: true });
  }

  /** Where shard `shardIndex` of `block` lives. */
  location(block: BlockRecord, shardIndex: number): ShardLocation {
    const bucketName = block.buckets[shardIndex];
    assert(bucketName !== undefined);
    const bucket = this.#pools.bucket(bucketName);
    const name = { ino: block.ino, blockIndex: block.blockIndex, generation: block.generation, shardIndex };
    if (bucket === undefined) {
      return { bucket: bucketName, path: `<bucket ${bucketName} not in config>`, name };
    }
    return { bucket: bucketName, path: bucket.shardPath(name), name };
  }

  /** Deletes the shard files of a block that is no longer referenced. */
  async delete(block: BlockRecord): Promise<void> {
    this.#decompressed.forget(block);
    await Promise.all(block.buckets.map(async (_, shardIndex) => {
      const location = this.location(block, shardIndex);
      this.#reader.forget(location.path);
      await deleteShardFile(location.path).catch(() => undefined);
    }));
  }

  /**
   * Makes the shard files of blocks written with `sync: false` durable, with their directories:
   * one batch instead of an fsync per shard (a rewrite syncs each round's copies together).
   */
  async syncBlocks(blocks: readonly BlockRecord[]): Promise<void> {
    const paths = this.#shardsOf(blocks).map((shard) => shard.path);
    await syncFiles(paths, constants.O_RDONLY);
    await syncDirectories(paths);
  }

  /**
   * Starts the write-back of the shard files of blocks stored through the page cache
   * (keepCached), without waiting for it, a few files at a time so that reads still find pool
   * threads. A hint: a file gone or refused is skipped, as the fsync that makes it durable
   * tells every failure.
   */
  async startWriteback(blocks: readonly BlockRecord[]): Promise<void> {
    await Promise.all(this.#shardsOf(blocks).map(({ path }) => this.#writebackSlots.run(() => startWriteback(path))));
  }

  /**
   * syncBlocks for blocks stored through the page cache, told block by block: returns the
   * blocks whose shard files (or their directories) failed to sync, with the buckets that
   * failed. A shard file that is gone is no failure: its block was replaced or deleted
   * meanwhile, or its bucket lost it, which reads and scrub find and repair from the other
   * shards. Linux reports a failed write-back to one fsync only, so a block returned here is
   * not durable and must be stored again: syncing it again would succeed without the bytes.
   * The failures are not counted against the buckets here: the caller reads the blocks back
   * first (see readWhole's rescue).
   */
  async syncEach(blocks: readonly BlockRecord[]): Promise<SyncFailure[]> {
    const shards = this.#shardsOf(blocks);
    const failures = new Map<string, string>();
    const slots = new Slots(SYNC_JOBS_MAX);
    const trySync = (path: string, flags: number) => slots.run(async () => {
      try {
        await syncFiles([path], flags);
      } catch (error) {
        if ((error as { code?: string }).code !== 'ENOENT') failures.set(path, (error as Error).message);
      }
    });
    await Promise.all(shards.map((shard) => trySync(shard.path, constants.O_RDONLY)));
    const directories = new Set(shards.map((shard) => dirname(shard.path)));
    await Promise.all([...directories].map((path) => trySync(path, constants.O_RDONLY | constants.O_DIRECTORY)));
    const failed = new Map<BlockRecord, SyncFailure>();
    for (const shard of shards) {
      const problem = failures.get(shard.path) ?? failures.get(dirname(shard.path));
      if (problem === undefined) continue;
      const failure = failed.get(shard.block) ?? { block: shard.block, buckets: new Set<string>(), message: `sync ${shard.path}: ${problem}` };
      failure.buckets.add(shard.bucket);
      failed.set(shard.block, failure);
    }
    return [...failed.values()];
  }

  /** Every shard file of `blocks`, with its block and bucket. */
  #shardsOf(blocks: readonly BlockRecord[]): { block: BlockRecord; bucket: string; path: string }[] {
    return blocks.flatMap((block) => block.buckets.map((bucket, shardIndex) => (
      { block, bucket, path: this.location(block, shardIndex).path }
    )));
  }

  /**
   * Deletes the shard files of a block for good (a tombstone's purge). Unlike `delete`, a file
   * that cannot be removed (bucket unreachable) is an error, so the caller keeps the tombstone
   * and tries again later. Returns the shards and bytes removed.
   */
  async purge(block: BlockRecord): Promise<{ shards: number; bytes: number }> {
    const paths = block.buckets.map((_, shardIndex) => this.location(block, shardIndex).path);
    return this.#unlinkAll(paths);
  }

  /**
   * Deletes shard files of block `blockIndex` of `ino`, in every bucket, whose generation is
   * not in `keep`: what an interrupted rewrite left. Files modified in the last `youngMs` may
   * belong to a write in flight and stay; `young` counts them.
   */
  async purgeStrays(
    ino: number,
    blockIndex: number,
    options: { keep: ReadonlySet<number>; youngMs: number },
  ): Promise<{ shards: number; bytes: number; young: number }> {
    const { keep } = options;
    const cutoffMs = Date.now() - options.youngMs;
    let young = 0;
    const prefix = `${ino}-${blockIndex}-`;
    const paths: string[] = [];
    for (const bucket of this.#pools.buckets) {
      const directory = dirname(bucket.shardPath({ ino, blockIndex, generation: 0, shardIndex: 0 }));
      let names: string[];
      try {
        names = await readdir(directory);
      } catch (error) {
        if ((error as { code?: string }).code === 'ENOENT') continue;
        throw fromSystemError(error, 'purge strays', directory);
      }
      for (const name of names) {
        if (!name.startsWith(prefix)) continue;
        const generation = Number(name.slice(prefix.length).split('-')[0]);
        if (!Number.isSafeInteger(generation) || keep.has(generation)) continue;
        const path = join(directory, name);
        const modifiedMs = (await stat(path).catch(() => undefined))?.mtimeMs ?? 0;
        if (modifiedMs > cutoffMs) young += 1;
        else paths.push(path);
      }
    }
    return { ...(await this.#unlinkAll(paths)), young };
  }

  async #unlinkAll(paths: readonly string[]): Promise<{ shards: number; bytes: number }> {
    const totals = { shards: 0, bytes: 0 };
    for (const path of paths) {
      this.#reader.forget(path);
      try {
        const { size } = await stat(path);
        await unlink(path);
        totals.shards += 1;
        totals.bytes += size;
      } catch (error) {
        if ((error as { code?: string }).code !== 'ENOENT') throw fromSystemError(error, 'purge shard', path);
      }
    }
    return totals;
  }

  #codec(dataCount: number, parityCount: number): ReedSolomon {
    const key = `${dataCount}+${parityCount}`;
    let codec = this.#codecs.get(key);
    if (codec === undefined) {
      codec = new ReedSolomon(dataCount, parityCount);
      this.#codecs.set(key, codec);
    }
    return codec;
  }

  #topology(text: string): TopologySpec {
    let topology = this.#topologies.get(text);
    if (topology === undefined) {
      const parsed = parseTopology(text);
      if (typeof parsed === 'string') throw new FsError(Errno.EIO, 'read block', `bad topology in metadata: ${parsed}`);
      topology = parsed;
      this.#topologies.set(text, topology);
    }
    return topology;
  }
}

/**
 * Zeroes the part of block range [start, end) past the block's data (it reads as zeros) in
 * `target`; returns where the data part ends.
 */
function zeroPastData(block: BlockRecord, range: { start: number; end: number }, target: Buffer, targetOffset: number): number {
  assert(range.start >= 0);
  assert(range.end >= range.start);
  const dataEnd = Math.min(range.end, block.dataBytes);
  if (dataEnd < range.end) {
    const zeroFrom = Math.max(range.start, block.dataBytes);
    target.fill(0, targetOffset + zeroFrom - range.start, targetOffset + range.end - range.start);
  }
  return dataEnd;
}

/** What a shard's header says. */
interface ShardOfBlock {
  readonly block: { ino: number; blockIndex: number; blockBytes: number; dataBytes: number; stream: StoredStream };
  readonly shard: { topology: TopologySpec; generation: number; shardIndex: number; payload: Buffer };
}

function shardHeaderInput({ block, shard }: ShardOfBlock): ShardHeaderInput {
  const isCompressed = block.stream.compression !== Compression.none;
  return {
    topology: topologyCode(shard.topology), shard_index: shard.shardIndex,
    data_shards: shard.topology.kind === 'erasure' ? shard.topology.data : shardCount(shard.topology),
    parity_shards: shard.topology.kind === 'erasure' ? shard.topology.parity : 0,
    ino: BigInt(block.ino), block_index: BigInt(block.blockIndex),
    generation: BigInt(shard.generation), block_bytes: block.blockBytes,
    data_bytes: block.dataBytes, payload_bytes: shard.payload.byteLength,
    compression: block.stream.compression, compressed_bytes: isCompressed ? block.stream.bytes : 0,
  };
}

/** Header, chunk table and padding of one shard file; big payloads are summed off-thread. */
async function shardPrefix(block: ShardOfBlock['block'], shard: ShardOfBlock['shard']): Promise<Buffer> {
  const prefix = Buffer.allocUnsafe(shardGeometry(shard.payload.byteLength).payloadOffset);
  const encode = shard.payload.byteLength >= OFF_THREAD_BYTES_MIN ? encodeShardPrefixAsync : encodeShardPrefix;
  await encode(shardHeaderInput({ block, shard }), shard.payload, prefix);
  return prefix;
}

/** shardPrefix without the chunk table and checksums, which writeShardFileAtOnce fills. */
function shardHeader(block: ShardOfBlock['block'], shard: ShardOfBlock['shard']): Buffer {
  const prefix = Buffer.allocUnsafe(shardGeometry(shard.payload.byteLength).payloadOffset);
  encodeShardHeader(shardHeaderInput({ block, shard }), shard.payload.byteLength, prefix);
  return prefix;
}

function topologyCode(topology: TopologySpec): number {
  return Topology[topology.kind];
}

/** fsyncs the given files (all at once: the filesystem batches them into few journal commits). */
async function syncFiles(paths: readonly string[], flags: number): Promise<void> {
  await Promise.all(paths.map(async (path) => {
    const fd = await openAsync(path, flags);
    try {
      await fsyncAsync(fd);
    } finally {
      await closeAsync(fd);
    }
  }));
}

/** fsyncs each distinct directory of the given files, so their entries are durable. */
async function syncDirectories(paths: readonly string[]): Promise<void> {
  await syncFiles([...new Set(paths.map((path) => dirname(path)))], constants.O_RDONLY | constants.O_DIRECTORY);
}
