/**
 * FileStore: the bytes of regular files, between the byte ranges of read/write and the blocks
 * of the block store. Writes land in cached block buffers (write-back) and are stored as whole
 * blocks: when a block fills, when its file is flushed or fsynced, when it has been dirty for
 * `dirtyAgeMs`, and when cached blocks exceed the memory limit. A write to part of a block
 * that is not cached does not wait for the block to load: the entry notes the written ranges,
 * and the stored bytes around them are loaded (once) when the block is read or stored.
 *
 * Invariants:
 * - A block buffer is never changed while it is being stored (writers wait for the flush).
 * - A partial entry is never stored or read as it is: its gaps are filled first (#complete),
 *   from the block as stored then (only this layer changes a file's stored bytes).
 * - The persisted size of a file never exceeds the bytes its committed blocks and holes
 *   describe: after a crash a file reads back what was stored, never stale bytes.
 * - fsync returns only when the file's shard files, their directories and the metadata are
 *   durable.
 * - A failed store keeps the block dirty in memory (nothing acknowledged is lost) and reports
 *   the error to the next write, flush or fsync of the file.
 * - While a file is held by `exclusive` (a rewrite changing its block size), no read, write,
 *   truncate or hole punch of it runs: they wait at the gate and then see the new layout.
 * - Deleting a file never deletes shards: the metadata store turned them into tombstones.
 */
import { assert } from '../assert.js';
import { Slots } from '../slots.js';
import { Errno, FsError, fromSystemError } from '../errno.js';
import { allocPageAligned, BLOCK_PADDING_BYTES, type BlockStore, type SyncFailure } from '../block/index.js';
import { addRange, BlockCache, coversRange, forEachGap, type CachedBlock } from '../cache/index.js';
import { now, type BlockRecord, type MetaStore, type Timespec } from '../meta/index.js';
import type { TopologySpec } from '../config/index.js';
import type { Pool, Pools } from '../pool/index.js';
import { Mutex } from './mutex.js';

/**
 * Numbers in the range list of a partial block beyond which its stored bytes are loaded (each
 * write scans the list). 256 ranges: every other 4 KiB page of a 1 MiB block still fits.
 */
const RANGE_BOUNDS_MAX = 512;

/**
 * Blocks of one file stored at once by a flush: enough to keep the thread pool busy, few
 * enough that the buffers of partial blocks' loads are reused instead of made fresh.
 */
const FLUSH_JOBS_MAX = 16;

/** Blocks stored but not yet fsynced beyond which a background sync pass runs. */
const UNSYNCED_BLOCKS_MAX = 65536;

/** In-memory state of a file with cached blocks or open handles. */
interface FileState {
  readonly ino: number;
  size: number;
  blockBytes: number;
  mtime: Timespec;
  ctime: Timespec;
  /** Size as committed in the metadata store. */
  persistedSize: number;
  /** Error of the last failed store, reported once to the next flush/fsync/write. */
  error: FsError | undefined;
  readonly lock: Mutex;
  /** Reads, writes, truncates and hole punches of this file in progress. */
  activeCount: number;
  /** Set while `exclusive` holds the file; resolves when it lets go. */
  gate: Promise<void> | undefined;
  /** Called when `activeCount` drops to 0 (the holder waiting for the file to go quiet). */
  onIdle: (() => void) | undefined;
}

/** Where new blocks of a file go: its policy (xattrs) or the write pool. */
export interface WriteTarget {
  readonly pool: Pool;
  /** Topology when not the pool's own. */
  readonly topology?: TopologySpec | undefined;
  /** Block size a file starts with (an existing file keeps its own). */
  readonly blockBytes: number;
  /** Opaque compression option passed to block writes. */
  readonly compression?: string | undefined;
}

export interface FileStoreOptions {
  readonly memoryLimitBytes: number;
  readonly dirtyAgeMs: number;
  /** How long a block stored through the page cache waits before its write-back is started. */
  readonly writebackDelayMs: number;
  /** The write target of a file; default: the write pool with its topology and block size. */
  readonly writeTarget?: ((ino: number) => WriteTarget) | undefined;
}

/** See FileStore.shardReadListener. */
export interface ShardReadListener {
  /** Reads longer than this are not offered. */
  readonly readBytesMax: number;
  /**
   * readNow just served a read (of at most readBytesMax bytes) of the block, which reads as
   * `record` says: from the record, or from a clean, complete cache entry.
   */
  servedFromRecord(ino: number, blockIndex: number, blockBytes: number, record: BlockRecord): void;
  /** A cache entry of the block is about to be made or turn dirty: its bytes may differ from its record's. */
  blockChanging(ino: number, blockIndex: number): void;
}

export class FileStore {
  readonly #meta: MetaStore;
  readonly #blocks: BlockStore;
  readonly #pools: Pools;
  readonly #cache: BlockCache;
  readonly #states = new Map<number, FileState>();
  /** Inodes of markVolume, until their deletion. */
  readonly #volumes = new Set<number>();
  /** Committed blocks whose shard files are not known to be durable yet, per inode. */
  readonly #unsynced = new Map<number, Map<number, BlockRecord>>();
  #unsyncedCount = 0;
  /** Committed blocks whose shard files failed to sync: not durable until stored again (#storeAgain). */
  readonly #undurable = new Map<number, Map<number, SyncFailure>>();
  /**
   * Blocks stored through the page cache, oldest first from #writebackHead on, with when
   * (performance.now(): a wall clock set back would hold them all) (see startAgedWriteback).
   */
  readonly #writebackQueue: { record: BlockRecord; storedAtMs: number }[] = [];
  #writebackHead = 0;
  /** The batch of write-back starts running, if any: one at a time. */
  #startingWriteback: Promise<void> | undefined;
  /** The sync of each inode in progress: a later one waits for it (see #syncStored). */
  readonly #syncing = new Map<number, Promise<void>>();
  readonly #options: FileStoreOptions;
  #shardReads: ShardReadListener | undefined;
  /**
   * Told when the store starts holding a file's state in memory (overlay() turns defined), before
   * anything can change it (fuse/attr-cache.ts).
   */
  onFileStateMade: ((ino: number) => void) | undefined;

  constructor(parts: { meta: MetaStore; blocks: BlockStore; pools: Pools; options: FileStoreOptions }) {
    this.#meta = parts.meta;
    this.#blocks = parts.blocks;
    this.#pools = parts.pools;
    this.#options = parts.options;
    // Page-aligned block buffers: their shards are written with O_DIRECT without a copy.
    this.#cache = new BlockCache({
      paddingBytes: BLOCK_PADDING_BYTES, memoryLimitBytes: parts.options.memoryLimitBytes, allocate: allocPageAligned,
    });
  }

  /** Size and times of a file as the store sees them now (cached writes included). */
  overlay(ino: number): { size: number; mtime: Timespec; ctime: Timespec; cachedBytes: number } | undefined {
    const state = this.#states.get(ino);
    if (state === undefined) return undefined;
    let cachedBytes = 0;
    for (const entry of this.#cache.entriesOf(ino)) if (entry.state !== 'clean') cachedBytes += entry.dataBytes;
    return { size: state.size, mtime: state.mtime, ctime: state.ctime, cachedBytes };
  }

  /**
   * Who hears of reads of blocks that read as their stored record, and (before) of every cache
   * entry made for a block or turning dirty (fuse/chunk-reads.ts).
   */
  set shardReadListener(listener: ShardReadListener | undefined) {
    this.#shardReads = listener;
    this.#cache.onChange = listener === undefined ? undefined : (ino, blockIndex) => listener.blockChanging(ino, blockIndex);
  }

  get cacheBytes(): number {
    return this.#cache.bytes;
  }

  get dirtyBytes(): number {
    return this.#cache.dirtyBytes;
  }

  /** Where new blocks of `ino` are written. */
  writeTarget(ino: number): WriteTarget {
    const pool = this.#pools.writePool;
    return this.#options.writeTarget?.(ino) ?? { pool, blockBytes: pool.blockBytes };
  }

  /** Cache hits and misses of reads, and evictions, since the store was made. */
  get cacheStats(): { readonly hits: number; readonly misses: number; readonly evictions: number } {
    return this.#cache.stats;
  }

  #state(ino: number): FileState {
    let state = this.#states.get(ino);
    if (state === undefined) {
      const inode = this.#meta.requireInode(ino, 'file');
      state = {
        ino, size: inode.size,
        blockBytes: inode.blockBytes !== 0 ? inode.blockBytes : this.writeTarget(ino).blockBytes,
        mtime: inode.mtime, ctime: inode.ctime, persistedSize: inode.size,
        error: undefined, lock: new Mutex(), activeCount: 0, gate: undefined, onIdle: undefined,
      };
      this.#states.set(ino, state);
      this.onFileStateMade?.(ino);
    }
    return state;
  }

  /** Waits while the file is held, then counts one more operation in progress on it. */
  async #enter(ino: number): Promise<FileState> {
    let state = this.#state(ino);
    while (state.gate !== undefined) {
      await state.gate;
      state = this.#state(ino);
    }
    state.activeCount += 1;
    return state;
  }

  #leave(state: FileState): void {
    assert(state.activeCount > 0);
    state.activeCount -= 1;
    if (state.activeCount === 0) state.onIdle?.();
  }

  async #gated<T>(ino: number, body: (state: FileState) => Promise<T>): Promise<T> {
    const state = await this.#enter(ino);
    try {
      return await body(state);
    } finally {
      this.#leave(state);
    }
  }

  /**
   * Holds a file: waits for its operations in progress to end, keeps new ones waiting, stores
   * its dirty blocks, runs `body`, then drops its cached blocks and reloads its block size (the
   * layout may have changed under them). Used to commit a rewrite.
   */
  async exclusive<T>(ino: number, body: () => Promise<T>): Promise<T> {
    let state = this.#state(ino);
    while (state.gate !== undefined) {
      await state.gate;
      state = this.#state(ino);
    }
    let open!: () => void;
    state.gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    try {
      if (state.activeCount > 0) {
        await new Promise<void>((resolve) => {
          state.onIdle = resolve;
        });
        state.onIdle = undefined;
      }
      assert.equal(state.activeCount, 0);
      await this.flush(ino, { sync: false });
      await this.#settleAll(ino);
      return await body();
    } finally {
      for (const entry of this.#cache.entriesOf(ino)) if (entry.state === 'clean') this.#cache.remove(entry);
      const inode = this.#meta.getInode(ino);
      if (inode !== undefined && inode.blockBytes !== 0) state.blockBytes = inode.blockBytes;
      state.gate = undefined;
      open();
    }
  }

  /** True when the file has blocks cached that are not stored yet. */
  hasDirtyBlocks(ino: number): boolean {
    return this.#cache.entriesOf(ino).some((entry) => entry.state !== 'clean');
  }

  /** Drops the in-memory state of a file that has nothing cached (called on last release). */
  release(ino: number): void {
    const state = this.#states.get(ino);
    if (state === undefined) return;
    if (state.gate !== undefined || state.activeCount > 0) return;
    const entries = this.#cache.entriesOf(ino);
    if (entries.some((entry) => entry.state !== 'clean')) return;
    for (const entry of entries) this.#cache.remove(entry);
    this.#states.delete(ino);
  }

  /** Reads up to `length` bytes at `offset` into `target`; returns the bytes read. */
  async read(ino: number, offset: number, length: number, target: Buffer): Promise<number> {
    assert(offset >= 0);
    assert(target.byteLength >= length);
    return this.#gated(ino, (state) => this.#read(state, offset, length, target));
  }

  /**
   * read()'s fast path, synchronous: the bytes read when every block of the range is cached
   * here or its shards are in the page cache (each verified against its checksums); undefined
   * when that is not so or anything needs waiting or a closer look: then call read(). Runs to
   * the end without yielding, so no write, truncate or rewrite can interleave with it.
   */
  readNow(ino: number, offset: number, length: number, target: Buffer): number | undefined {
    assert(offset >= 0);
    assert(target.byteLength >= length);
    const state = this.#states.get(ino) ?? this.#state(ino);
    if (state.gate !== undefined) return undefined;
    const end = Math.min(offset + length, state.size);
    if (end <= offset) return 0;
    const blockBytes = state.blockBytes;
    const hasCached = this.#cache.hasEntries(ino);
    // Who hears of blocks served as their record reads (only reads it may answer itself).
    const reads = this.#shardReads !== undefined && length <= this.#shardReads.readBytesMax ? this.#shardReads : undefined;
    let hits = 0;
    for (let position = offset; position < end;) {
      const blockIndex = Math.floor(position / blockBytes);
      const blockStart = blockIndex * blockBytes;
      const stop = Math.min(end, blockStart + blockBytes);
      const range = { start: position - blockStart, end: stop - blockStart };
      const entry = hasCached ? this.#cache.get(ino, blockIndex) : undefined;
      // A partial entry without the requested bytes needs a load: read() does it.
      if (entry?.ranges !== undefined && !coversRange(entry.ranges, range.start, range.end)) return undefined;
      if (entry !== undefined) {
        copyFromBlock(entry, range, target, position - offset);
        hits += 1;
        if (reads !== undefined && entry.state === 'clean' && entry.ranges === undefined && !entry.isBorrowed) {
          const record = this.#meta.getBlock(ino, blockIndex);
          if (record !== undefined) reads.servedFromRecord(ino, blockIndex, blockBytes, record);
        }
      } else {
        const record = this.#meta.getBlock(ino, blockIndex);
        if (record === undefined) target.fill(0, position - offset, stop - offset);
        else if (!this.#blocks.readNow(record, range, target, position - offset)) return undefined;
        else reads?.servedFromRecord(ino, blockIndex, blockBytes, record);
      }
      position = stop;
    }
    // Counted once the whole read is served here: a fallback to read() counts it there.
    this.#cache.stats.hits += hits;
    this.#cache.stats.misses += Math.ceil(end / blockBytes) - Math.floor(offset / blockBytes) - hits;
    return end - offset;
  }

  async #read(state: FileState, offset: number, length: number, target: Buffer): Promise<number> {
    const ino = state.ino;
    const end = Math.min(offset + length, state.size);
    if (end <= offset) return 0;
    const blockBytes = state.blockBytes;
    const reads: Promise<void>[] = [];
    for (let position = offset; position < end;) {
      const blockIndex = Math.floor(position / blockBytes);
      const blockStart = blockIndex * blockBytes;
      const stop = Math.min(end, blockStart + blockBytes);
      const range = { start: position - blockStart, end: stop - blockStart };
      reads.push(this.#readBlock(ino, blockIndex, range, target, position - offset));
      position = stop;
    }
    await settleAll(reads);
    return end - offset;
  }

  async #readBlock(
    ino: number,
    blockIndex: number,
    range: { start: number; end: number },
    target: Buffer,
    targetOffset: number,
  ): Promise<void> {
    let entry = this.#cache.get(ino, blockIndex);
    while (entry?.ranges !== undefined && !coversRange(entry.ranges, range.start, range.end)) {
      await this.#complete(entry);
      entry = this.#cache.get(ino, blockIndex);
    }
    if (entry !== undefined) {
      this.#cache.stats.hits++;
      copyFromBlock(entry, range, target, targetOffset);
      return;
    }
    this.#cache.stats.misses++;
    const record = this.#meta.getBlock(ino, blockIndex);
    if (record === undefined) {
      target.fill(0, targetOffset, targetOffset + range.end - range.start);
      return;
    }
    await this.#blocks.read(record, range, target, targetOffset);
  }

  /**
   * Writes `data` at `offset`; returns the bytes written. `data` must stay unchanged until
   * the returned promise settles: whole blocks are stored straight from it.
   */
  write(ino: number, offset: number, data: Buffer): number | Promise<number> {
    assert(offset >= 0);
    const state = this.#states.get(ino);
    if (state !== undefined && state.gate === undefined && state.error === undefined) {
      const written = this.#writeAtOnce(state, offset, data);
      if (written !== undefined) return written;
    }
    return this.#gated(ino, (held) => this.#write(held, offset, data, undefined));
  }

  /**
   * write() without an await or a promise, for the common small write (writeback of a few
   * pages): one block, not a whole one, not being stored. Undefined (nothing done) otherwise.
   */
  #writeAtOnce(state: FileState, offset: number, data: Buffer): number | Promise<number> | undefined {
    const blockBytes = state.blockBytes;
    const end = offset + data.byteLength;
    const blockIndex = Math.floor(offset / blockBytes);
    const blockStart = blockIndex * blockBytes;
    const isOneBlockPart = end <= blockStart + blockBytes && data.byteLength < blockBytes;
    if (!isOneBlockPart || data.byteLength === 0 || end > Number.MAX_SAFE_INTEGER) return undefined;
    const range = { start: offset - blockStart, end: end - blockStart };
    const entry = this.#writableBlock(state, blockIndex, range);
    if (entry === undefined) return undefined;
    const fill = this.#copyIn(entry, range, data, 0);
    noteWrittenUpTo(state, end);
    if (fill === 'none' && this.#cache.bytes <= this.#options.memoryLimitBytes) return data.byteLength;
    return this.#gated(state.ino, async (held) => {
      if (fill !== 'none') await this.#storeFilled(held, entry, fill);
      if (this.#cache.bytes > this.#options.memoryLimitBytes) await this.#relieveMemory();
      return data.byteLength;
    });
  }

  /**
   * Copies `data` from `dataOffset` into block bytes `range` of a writable entry; says whether
   * the block is filled (to be stored now). Nothing awaits: the copy is atomic.
   */
  #copyIn(entry: CachedBlock, range: { start: number; end: number }, data: Buffer, dataOffset: number): Fill {
    data.copy(entry.buffer, range.start, dataOffset, dataOffset + range.end - range.start);
    const fill = noteWritten(entry, range.start, range.end);
    this.#cache.markDirty(entry, Date.now());
    if (fill === 'none' && entry.ranges !== undefined && entry.ranges.length > RANGE_BOUNDS_MAX) {
      // Many scattered writes: load the rest now rather than track more ranges.
      this.#complete(entry)?.catch(() => undefined);
    }
    return fill;
  }

  /**
   * From now on the blocks of `ino` are stored with BlockWrite.keepCached: a volume, whose NBD
   * clients read straight from the daemon, with no page cache of their own on this machine.
   * Kept with the inode, not its in-memory state, which goes when the file is idle.
   */
  markVolume(ino: number): void {
    this.#volumes.add(ino);
  }

  /**
   * write() for callers that ask for durability separately (NBD: FLUSH and FUA flush the
   * file): resolves once reads and later writes see the bytes, while whole blocks stored
   * straight from `data` may still be in progress. `data` must stay unchanged until `stored`
   * settles. `stored` never rejects: a whole block that fails to store is kept dirty in the
   * cache (a copy of its bytes) and the error goes to the next write, flush or fsync.
   */
  async writeBehind(ino: number, offset: number, data: Buffer): Promise<{ stored: Promise<void> }> {
    assert(offset >= 0);
    const stores: Promise<void>[] = [];
    try {
      await this.#gated(ino, (state) => this.#write(state, offset, data, stores));
    } catch (error) {
      // The caller reuses `data` once this rejects: no store may still be reading it.
      await Promise.allSettled(stores);
      throw error;
    }
    // Settled, not all: `stored` only tells when `data` is free (failures are kept, see above).
    return { stored: Promise.allSettled(stores).then(() => undefined) };
  }

  /** With `behind`, whole-block stores go there and are not waited for (see writeBehind). */
  async #write(state: FileState, offset: number, data: Buffer, behind: Promise<void>[] | undefined): Promise<number> {
    if (state.error !== undefined) throw takeError(state);
    const end = offset + data.byteLength;
    if (end > Number.MAX_SAFE_INTEGER) throw new FsError(Errno.EFBIG, 'write', `offset ${offset}`);
    const stores = behind ?? [];
    try {
      await this.#writeBlocks(state, { offset, end, data, isBehind: behind !== undefined }, stores);
    } finally {
      if (behind === undefined) {
        // Every store is waited for, so none can fail unobserved after an earlier error.
        await settleAll(stores).catch((error: unknown) => {
          throw fromSystemError(error, 'store block');
        });
      }
    }
    noteWrittenUpTo(state, end);
    if (this.#cache.bytes > this.#options.memoryLimitBytes) await this.#relieveMemory();
    return data.byteLength;
  }

  /**
   * The block loop of write(). A whole block with nothing cached is stored straight from
   * `data` (its store goes into `stores`): no copy into a cache buffer, whose fresh pages
   * cost more than the copy itself. Other ranges are copied into cached blocks, where a range
   * of a block that is not cached is only noted (a partial entry): the stored bytes around it
   * are loaded when the block is stored or read, if nothing has written them by then.
   */
  async #writeBlocks(
    state: FileState,
    write: { offset: number; end: number; data: Buffer; isBehind: boolean },
    stores: Promise<void>[],
  ): Promise<void> {
    const { offset, end, data, isBehind } = write;
    const blockBytes = state.blockBytes;
    for (let position = offset; position < end;) {
      const blockIndex = Math.floor(position / blockBytes);
      const blockStart = blockIndex * blockBytes;
      const stop = Math.min(end, blockStart + blockBytes);
      const isWhole = position === blockStart && stop === blockStart + blockBytes;
      if (isWhole && this.#mayStoreDirectly(state, blockIndex)) {
        // The committed size and times include this block (see #storeEntry).
        noteWrittenUpTo(state, stop);
        const block = data.subarray(position - offset, stop - offset);
        stores.push(this.#storeWhole(state, blockIndex, block, { keepOnFailure: isBehind }));
        position = stop;
        continue;
      }
      const range = { start: position - blockStart, end: stop - blockStart };
      const entry = this.#writableBlock(state, blockIndex, range);
      if (entry === undefined) {
        // Being stored: the buffer must not change until the store ends.
        await this.#storeOf(state.ino, blockIndex);
        continue;
      }
      const fill = this.#copyIn(entry, range, data, position - offset);
      if (fill !== 'none') stores.push(this.#storeFilled(state, entry, fill));
      position = stop;
    }
  }

  /** Settles when the store of a block that is being stored ends (however it ends). */
  async #storeOf(ino: number, blockIndex: number): Promise<void> {
    await this.#cache.get(ino, blockIndex)?.settled?.catch(() => undefined);
  }

  /** A whole block may skip the cache: nothing of it is cached and it needs no padding room. */
  #mayStoreDirectly(state: FileState, blockIndex: number): boolean {
    if (this.#cache.get(state.ino, blockIndex) !== undefined) return false;
    const target = this.writeTarget(state.ino);
    const topology = target.topology ?? target.pool.topology;
    // Erasure shards of a block that d does not divide are padded inside the block buffer.
    return topology.kind !== 'erasure' || state.blockBytes % topology.data === 0;
  }

  /**
   * Stores a whole block from the caller's buffer. While it runs, a borrowed cache entry
   * shows the new bytes to readers and makes writers of the block wait, as a flush does.
   * With `keepOnFailure` a failed store does not reject: the block stays cached, dirty.
   */
  #storeWhole(state: FileState, blockIndex: number, block: Buffer, options: { keepOnFailure: boolean }): Promise<void> {
    const entry = this.#cache.insertBorrowed(state.ino, blockIndex, block);
    // The borrowed entry goes (and a kept copy comes) before waiters on `settled` resume.
    const stored = this.#storeEntry(state, entry, { sync: false }).then(() => {
      this.#cache.removeBorrowed(entry);
    }, (error: unknown) => {
      this.#cache.removeBorrowed(entry);
      if (!options.keepOnFailure) throw error;
      this.#keepDirty(state, blockIndex, block);
      state.error = fromSystemError(error, 'store block');
    });
    entry.settled = stored.then(() => undefined, () => undefined);
    return stored;
  }

  /** Caches a copy of a whole block whose store failed, dirty: nothing acknowledged is lost. */
  #keepDirty(state: FileState, blockIndex: number, block: Buffer): void {
    const entry = this.#cache.insert(state.ino, blockIndex, state.blockBytes, 0);
    block.copy(entry.buffer, 0);
    entry.dataBytes = block.byteLength;
    entry.ranges = undefined;
    this.#cache.markDirty(entry, Date.now());
  }

  /**
   * The cached entry of a block to write block bytes `range` into; a new (partial) entry when
   * none is cached. Undefined while the block is being stored.
   */
  #writableBlock(state: FileState, blockIndex: number, range: { start: number; end: number }): CachedBlock | undefined {
    const cached = this.#cache.get(state.ino, blockIndex);
    if (cached !== undefined) return cached.state === 'flushing' ? undefined : cached;
    const record = this.#meta.getBlock(state.ino, blockIndex);
    // Stored bytes the write does not cover are needed later; none when it covers them all.
    const isReplacedWhole = record === undefined || (range.start === 0 && range.end >= record.dataBytes);
    return this.#cache.insert(state.ino, blockIndex, state.blockBytes, isReplacedWhole ? 0 : record.dataBytes);
  }

  /**
   * Fills the gaps of a partial entry so that its buffer holds the whole block: at once when
   * they are all zeros, else after loading the stored bytes (into a spare buffer, so writers
   * never wait for the load: their ranges are copied over when it ends). Undefined when the
   * entry is complete now; else settles when this attempt ended (the caller checks again).
   */
  #complete(entry: CachedBlock): Promise<void> | undefined {
    const ranges = entry.ranges;
    if (ranges === undefined) return undefined;
    if (entry.baseBytes === 0) {
      forEachGap(ranges, entry.dataBytes, (start, end) => entry.buffer.fill(0, start, end));
      entry.ranges = undefined;
      return undefined;
    }
    entry.completing ??= this.#loadGaps(entry).finally(() => {
      entry.completing = undefined;
    });
    return entry.completing;
  }

  async #loadGaps(entry: CachedBlock): Promise<void> {
    const { baseBytes } = entry;
    const span = gapSpan(entry.ranges ?? [], baseBytes);
    const record = this.#meta.getBlock(entry.ino, entry.blockIndex);
    const buffer = this.#cache.spareBuffer(entry.blockBytes);
    try {
      if (record === undefined) buffer.fill(0, span.start, span.end);
      else await this.#blocks.read(record, span, buffer, span.start);
    } catch (error) {
      this.#cache.returnSpare(buffer);
      // A block dropped while loading (truncate, hole, delete): nothing is left to complete.
      if (!this.#cache.isCached(entry)) return;
      throw error;
    }
    const ranges = entry.ranges;
    // Completed or dropped meanwhile, or complete and partial again (then without a base).
    if (ranges === undefined || entry.baseBytes !== baseBytes || !this.#cache.isCached(entry)) {
      this.#cache.returnSpare(buffer);
      return;
    }
    // No gap lies below the span's start or between its end and the base; above: zeros.
    buffer.fill(0, span.end, entry.dataBytes);
    for (let index = 0; index < ranges.length; index += 2) {
      entry.buffer.copy(buffer, ranges[index], ranges[index], ranges[index + 1]);
    }
    this.#cache.replaceBuffer(entry, buffer);
    entry.ranges = undefined;
    entry.baseBytes = 0;
  }

  /** True when `entry` is still the cached block and may be changed now (no await until done). */
  #isWritable(entry: CachedBlock): boolean {
    if (entry.state !== 'clean' && entry.state !== 'dirty') return false;
    return this.#cache.get(entry.ino, entry.blockIndex) === entry;
  }

  /**
   * Stores a block that a write filled to its end. One that the write completed is then let go
   * unless written again meanwhile: a sequential writer does not come back, and reusing the
   * buffer spares the fresh pages of a new one (whole blocks stored from the writer's buffer
   * are not cached either). The write waits for the store, as for a whole block, so that
   * writers cannot run ahead of the stores; a failure is not the write's (its bytes are
   * cached) but the file's, reported by the next flush, fsync or write.
   */
  async #storeFilled(state: FileState, entry: CachedBlock, fill: Fill): Promise<void> {
    try {
      await this.#flushEntry(state, entry, { sync: false });
    } catch {
      return;
    }
    if (fill === 'completed' && entry.state === 'clean' && this.#cache.isCached(entry)) this.#cache.remove(entry);
  }

  /**
   * Stores one dirty block and commits it. Ordering: shards written (and fsynced when `sync`)
   * -> metadata commit -> old shards deleted.
   */
  async #flushEntry(state: FileState, entry: CachedBlock, options: { sync: boolean }): Promise<void> {
    for (;;) {
      if (entry.state === 'flushing') {
        await entry.settled;
        return;
      }
      if (entry.state !== 'dirty' || !this.#cache.isCached(entry)) return;
      const completing = this.#complete(entry);
      if (completing === undefined) break;
      try {
        await completing;
      } catch (error) {
        state.error = fromSystemError(error, 'load block');
        throw state.error;
      }
    }
    this.#cache.startFlush(entry);
    const work = this.#storeEntry(state, entry, options);
    entry.settled = work;
    try {
      await work;
      this.#cache.finishFlush(entry, true);
    } catch (error) {
      this.#cache.finishFlush(entry, false);
      state.error = fromSystemError(error, 'store block');
      throw state.error;
    } finally {
      entry.settled = undefined;
    }
  }

  async #storeEntry(state: FileState, entry: CachedBlock, options: { sync: boolean }): Promise<void> {
    if (entry.dataBytes === 0) {
      const dropped = this.#meta.dropBlock(state.ino, entry.blockIndex, state.mtime);
      if (dropped !== undefined) await this.#blocks.delete(dropped);
      return;
    }
    const target = this.writeTarget(state.ino);
    const keepCached = this.#volumes.has(state.ino);
    const record = await this.#blocks.write({
      ino: state.ino, blockIndex: entry.blockIndex, blockBytes: entry.blockBytes,
      dataBytes: entry.dataBytes, data: entry.buffer, pool: target.pool,
      topology: target.topology, compression: target.compression, sync: options.sync, keepCached,
    });
    const blockEnd = entry.blockIndex * entry.blockBytes + entry.dataBytes;
    const size = Math.min(state.size, Math.max(state.persistedSize, blockEnd));
    const previous = this.#meta.commitBlock(record, {
      blockBytes: state.blockBytes, size, mtime: state.mtime, ctime: state.ctime,
    });
    state.persistedSize = size;
    // The replaced record leaves the unsynced set before the new one enters it (same index).
    if (previous !== undefined && this.#unsynced.get(state.ino)?.delete(previous.blockIndex) === true) {
      this.#unsyncedCount -= 1;
    }
    if (!options.sync) this.#noteUnsynced(record);
    if (!options.sync && keepCached) this.#queueWriteback(record);
    if (previous !== undefined) await this.#blocks.delete(previous);
  }

  /** Queues a block stored through the page cache; starts the due ones (see startAgedWriteback). */
  #queueWriteback(record: BlockRecord): void {
    const now = performance.now();
    this.#writebackQueue.push({ record, storedAtMs: now });
    const oldest = this.#writebackQueue[this.#writebackHead];
    if (oldest !== undefined && oldest.storedAtMs <= now - this.#options.writebackDelayMs) {
      this.startAgedWriteback(now).catch(() => undefined);
    }
  }

  /**
   * Starts the write-back of the blocks stored through the page cache writebackDelayMs or
   * longer before `now` (performance.now()) and not synced since (a sync, a replacement or a
   * deletion took them out of the unsynced set), one batch at a time: a call while a batch
   * runs returns it, and the next call takes what came due meanwhile. Called by each such
   * store, and by the daemon's timer for the blocks of a burst that ended. Never waits for
   * the write-back itself.
   */
  startAgedWriteback(now = performance.now()): Promise<void> {
    this.#startingWriteback ??= this.#startDueWriteback(now).finally(() => {
      this.#startingWriteback = undefined;
    });
    return this.#startingWriteback;
  }

  async #startDueWriteback(now: number): Promise<void> {
    const queue = this.#writebackQueue;
    const due: BlockRecord[] = [];
    for (; this.#writebackHead < queue.length; this.#writebackHead++) {
      const queued = queue[this.#writebackHead];
      assert(queued !== undefined);
      if (queued.storedAtMs > now - this.#options.writebackDelayMs) break;
      const { record } = queued;
      if (this.#unsynced.get(record.ino)?.get(record.blockIndex) === record) due.push(record);
    }
    if (this.#writebackHead * 2 >= queue.length) {
      queue.splice(0, this.#writebackHead);
      this.#writebackHead = 0;
    }
    if (due.length > 0) await this.#blocks.startWriteback(due);
  }

  #noteUnsynced(record: BlockRecord): void {
    if (addToInodeMap(this.#unsynced, record, record)) this.#unsyncedCount += 1;
    if (this.#unsyncedCount > UNSYNCED_BLOCKS_MAX) this.syncAll().catch(() => undefined);
  }

  /** Stores every dirty block of a file; with `sync`, makes the file durable (fsync). */
  async flush(ino: number, options: { sync: boolean }): Promise<void> {
    const state = this.#states.get(ino);
    if (state !== undefined) {
      const entries = this.#cache.entriesOf(ino).filter((entry) => entry.state === 'dirty' || entry.state === 'flushing');
      const slots = new Slots(FLUSH_JOBS_MAX);
      const results = await Promise.allSettled(entries.map((entry) => slots.run(() => this.#flushEntry(state, entry, options))));
      const failed = results.some((result) => result.status === 'rejected');
      if (failed || state.error !== undefined) throw takeError(state);
      this.#persistAttributes(state);
    }
    if (options.sync) {
      await this.#syncStored(ino);
      this.#meta.syncDurable();
    }
  }

  /** Persists size and times that changed without a block store (e.g. a write of zeros). */
  #persistAttributes(state: FileState): void {
    const inode = this.#meta.getInode(state.ino);
    if (inode === undefined) return;
    const isSame = inode.size === state.size && inode.mtime.sec === state.mtime.sec &&
      inode.mtime.nsec === state.mtime.nsec;
    if (isSame) return;
    this.#meta.setAttributes(state.ino, { size: state.size, mtime: state.mtime, ctime: state.ctime });
    state.persistedSize = state.size;
  }

  /**
   * fsyncs the shard files (and directories) of blocks of `ino` stored without sync. A block
   * whose sync fails (the drive did not take its write-back) is stored again, durably, out of
   * the buckets that failed when others can take it; until that succeeds it stays undurable
   * and every sync of the file fails (EIO). Syncs of one file run one after the other: one
   * that found nothing to do while another was still storing the same blocks again would
   * succeed without them.
   */
  async #syncStored(ino: number): Promise<void> {
    const previous = this.#syncing.get(ino);
    const run = (previous ?? Promise.resolve()).catch(() => undefined).then(() => this.#syncStoredNow(ino));
    this.#syncing.set(ino, run);
    try {
      await run;
    } finally {
      if (this.#syncing.get(ino) === run) this.#syncing.delete(ino);
    }
  }

  async #syncStoredNow(ino: number): Promise<void> {
    const perInode = this.#unsynced.get(ino);
    let newFailures: SyncFailure[] = [];
    if (perInode !== undefined) {
      this.#unsynced.delete(ino);
      this.#unsyncedCount -= perInode.size;
      newFailures = await this.#blocks.syncEach([...perInode.values()]);
      for (const failure of newFailures) addToInodeMap(this.#undurable, failure.block, failure);
    }
    const undurable = this.#undurable.get(ino);
    if (undurable === undefined) return;
    this.#undurable.delete(ino);
    let lastError: unknown;
    for (const failure of undurable.values()) {
      try {
        await this.#storeAgain(failure);
      } catch (error) {
        // A block replaced or dropped meanwhile needs nothing more: its successor syncs on its own.
        if (!this.#isCurrent(failure.block)) continue;
        lastError = error;
        addToInodeMap(this.#undurable, failure.block, failure);
      }
    }
    // Counted once the blocks were read back: taking the bucket out of service first would
    // have kept them from being read (only a rescue reads failed buckets).
    for (const failure of newFailures) {
      for (const bucket of failure.buckets) this.#pools.bucket(bucket)?.noteError(failure.message);
    }
    if (lastError !== undefined) {
      throw new FsError(Errno.EIO, 'sync', `a block's write-back failed and it cannot be stored again: ${String(lastError)}`);
    }
  }

  /**
   * Stores a committed block again from its bytes as they read now (checksummed; after a
   * failed write-back they are still in the page cache, even if the bucket went out of
   * service meanwhile), durably, and commits the copy unless the block changed meanwhile (a
   * newer record is synced on its own).
   */
  async #storeAgain(failure: SyncFailure): Promise<void> {
    const record = failure.block;
    const inode = this.#meta.getInode(record.ino);
    if (inode === undefined || !this.#isCurrent(record)) return;
    const target = this.writeTarget(record.ino);
    const blockBytes = this.#states.get(record.ino)?.blockBytes ?? inode.blockBytes;
    const next = await this.#blocks.rewrite(record, target.pool, blockBytes, {
      compression: target.compression, topology: target.topology, avoid: failure.buckets, evenFromFailedBuckets: true,
    });
    if (!this.#meta.replaceBlock(record, next)) {
      await this.#blocks.delete(next);
      return;
    }
    await this.#blocks.delete(record);
  }

  /** True while `record` is its block's committed record. */
  #isCurrent(record: BlockRecord): boolean {
    return this.#meta.getBlock(record.ino, record.blockIndex)?.generation === record.generation;
  }

  /** Stores every dirty block of every file (unmount, timer with `olderThanMs`). */
  async flushAll(options: { sync: boolean; olderThanMs?: number }): Promise<void> {
    const cutoff = Date.now() - (options.olderThanMs ?? 0);
    const inodes = new Set<number>();
    for (const entry of this.#cache.dirtyEntries()) {
      if (options.olderThanMs === undefined || entry.dirtySinceMs <= cutoff) inodes.add(entry.ino);
    }
    const results = await Promise.allSettled([...inodes].map((ino) => this.flush(ino, { sync: false })));
    if (options.sync) await this.syncAll();
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /** Makes every stored block and the metadata durable. */
  async syncAll(): Promise<void> {
    let failure: unknown;
    for (const ino of new Set([...this.#unsynced.keys(), ...this.#undurable.keys()])) {
      await this.#syncStored(ino).catch((error: unknown) => {
        failure ??= error;
      });
    }
    this.#meta.syncDurable();
    if (failure !== undefined) throw failure;
  }

  /** Dirty blocks older than the configured age are stored (the periodic timer). */
  async flushAged(): Promise<void> {
    await this.flushAll({ sync: false, olderThanMs: this.#options.dirtyAgeMs });
  }

  async #relieveMemory(): Promise<void> {
    const limit = this.#options.memoryLimitBytes;
    if (this.#cache.bytes <= limit) return;
    this.#cache.evictClean(limit);
    while (this.#cache.bytes > limit) {
      const oldest = this.#cache.dirtyEntries()[0];
      if (oldest === undefined) return;
      const state = this.#states.get(oldest.ino);
      assert(state !== undefined);
      await this.#flushEntry(state, oldest, { sync: false });
      this.#cache.evictClean(limit);
    }
  }

  /**
   * Sets the size of a file. Shrinking stores the cut block first (so no stale byte past the
   * new end can ever come back), then drops later blocks in one metadata transaction.
   */
  async truncate(ino: number, size: number): Promise<void> {
    await this.#gated(ino, (state) => this.#truncate(state, size));
  }

  async #truncate(state: FileState, size: number): Promise<void> {
    const ino = state.ino;
    await state.lock.run(async () => {
      await this.#settleAll(ino);
      const time = now();
      if (size < state.size) await this.#shrink(state, size, time);
      else this.#meta.setAttributes(ino, { size, mtime: time, ctime: time });
      state.size = size;
      state.persistedSize = size;
      state.mtime = time;
      state.ctime = time;
      if (size === 0) state.blockBytes = this.writeTarget(ino).blockBytes;
    });
  }

  async #shrink(state: FileState, size: number, time: Timespec): Promise<void> {
    const blockBytes = state.blockBytes;
    const cutIndex = Math.floor(size / blockBytes);
    const cutOffset = size % blockBytes;
    for (const entry of this.#cache.entriesOf(state.ino)) {
      if (entry.blockIndex > cutIndex || (entry.blockIndex === cutIndex && cutOffset === 0)) {
        this.#cache.remove(entry);
      }
    }
    if (cutOffset > 0) {
      const entry = await this.#completeWritable(state, cutIndex, { start: cutOffset, end: blockBytes });
      if (entry.dataBytes > cutOffset) {
        entry.dataBytes = cutOffset;
        this.#cache.markDirty(entry, Date.now());
        state.size = size;
        state.mtime = time;
        state.ctime = time;
        await this.#flushEntry(state, entry, { sync: false });
      }
    }
    const firstDropped = cutOffset === 0 ? cutIndex : cutIndex + 1;
    const dropped = this.#meta.truncateBlocks(state.ino, size, firstDropped, time);
    const unsynced = this.#unsynced.get(state.ino);
    for (const block of dropped) {
      if (unsynced?.delete(block.blockIndex) === true) this.#unsyncedCount -= 1;
      await this.#blocks.delete(block);
    }
  }

  /** The complete cached entry of a block, ready to be changed without an await. */
  async #completeWritable(state: FileState, blockIndex: number, range: { start: number; end: number }): Promise<CachedBlock> {
    for (;;) {
      const entry = this.#writableBlock(state, blockIndex, range);
      if (entry === undefined) {
        await this.#storeOf(state.ino, blockIndex);
        continue;
      }
      const completing = this.#complete(entry);
      if (completing === undefined && this.#isWritable(entry)) return entry;
      await completing;
    }
  }

  /** Waits until no block of `ino` is being stored. */
  async #settleAll(ino: number): Promise<void> {
    for (;;) {
      const busy = this.#cache.entriesOf(ino).find((entry) => entry.settled !== undefined);
      if (busy === undefined) return;
      await busy.settled?.catch(() => undefined);
    }
  }

  /** Zeroes [offset, offset + length) without changing the size: whole blocks are dropped. */
  async punchHole(ino: number, offset: number, length: number): Promise<void> {
    await this.#gated(ino, (state) => this.#punchHole(state, offset, length));
  }

  async #punchHole(state: FileState, offset: number, length: number): Promise<void> {
    const end = Math.min(offset + length, state.size);
    const blockBytes = state.blockBytes;
    for (let position = offset; position < end;) {
      const blockIndex = Math.floor(position / blockBytes);
      const blockStart = blockIndex * blockBytes;
      const stop = Math.min(end, blockStart + blockBytes);
      if (position === blockStart && stop === blockStart + blockBytes) {
        await this.#dropBlock(state, blockIndex);
      } else {
        await this.#write(state, position, Buffer.alloc(stop - position), undefined);
      }
      position = stop;
    }
  }

  async #dropBlock(state: FileState, blockIndex: number): Promise<void> {
    await state.lock.run(async () => {
      await this.#settleAll(state.ino);
      const entry = this.#cache.get(state.ino, blockIndex);
      if (entry !== undefined) this.#cache.remove(entry);
      const time = now();
      const dropped = this.#meta.dropBlock(state.ino, blockIndex, time);
      if (dropped !== undefined) {
        if (this.#unsynced.get(state.ino)?.delete(blockIndex) === true) this.#unsyncedCount -= 1;
        await this.#blocks.delete(dropped);
      }
      state.mtime = time;
      state.ctime = time;
    });
  }

  /**
   * Forgets a deleted file: cached blocks are discarded. Its stored blocks are tombstones now
   * (MetaStore.deleteInode), purged after their grace period.
   */
  deleteFile(ino: number): Promise<void> | undefined {
    this.#volumes.delete(ino);
    this.#undurable.delete(ino);
    // Nothing of the file in memory (an unlink after the last close): no promise to make.
    if (!this.#states.has(ino) && !this.#cache.hasEntries(ino) && !this.#unsynced.has(ino)) return undefined;
    return this.#deleteFileLater(ino);
  }

  async #deleteFileLater(ino: number): Promise<void> {
    await this.#settleAll(ino);
    for (const entry of this.#cache.entriesOf(ino)) this.#cache.remove(entry);
    this.#states.delete(ino);
    const unsynced = this.#unsynced.get(ino);
    if (unsynced !== undefined) {
      this.#unsyncedCount -= unsynced.size;
      this.#unsynced.delete(ino);
    }
  }

  /** Applies a size/time change made through setattr to the cached state. */
  noteAttributes(ino: number, times: { mtime?: Timespec; ctime?: Timespec }): void {
    const state = this.#states.get(ino);
    if (state === undefined) return;
    if (times.mtime !== undefined) state.mtime = times.mtime;
    if (times.ctime !== undefined) state.ctime = times.ctime;
  }
}

/**
 * What a write did to its block: 'completed' it (all of it is written now, as a sequential
 * writer leaves a block), wrote 'again' up to the end of a full block, or 'none' of these.
 */
type Fill = 'none' | 'again' | 'completed';

/** A write reached byte `end` of the file: its size and times follow. */
function noteWrittenUpTo(state: FileState, end: number): void {
  state.size = Math.max(state.size, end);
  state.mtime = now();
  state.ctime = state.mtime;
}

/** Notes that block bytes [start, end) of `entry` were just written into its buffer. */
function noteWritten(entry: CachedBlock, start: number, end: number): Fill {
  let ranges = entry.ranges;
  if (ranges === undefined) {
    if (start <= entry.dataBytes) {
      const wasFull = entry.dataBytes === entry.blockBytes;
      entry.dataBytes = Math.max(entry.dataBytes, end);
      if (end !== entry.blockBytes) return 'none';
      return wasFull ? 'again' : 'completed';
    }
    // A gap past the data: zeros, unless another write (arriving out of order) fills it.
    ranges = entry.dataBytes > 0 ? [0, entry.dataBytes] : [];
    entry.ranges = ranges;
    entry.baseBytes = 0;
  }
  addRange(ranges, start, end);
  entry.dataBytes = Math.max(entry.dataBytes, end);
  if (ranges.length !== 2 || ranges[0] !== 0 || (ranges[1] as number) < entry.baseBytes) return 'none';
  // Written from 0 over all stored bytes: complete without them.
  entry.ranges = undefined;
  entry.baseBytes = 0;
  return entry.dataBytes === entry.blockBytes ? 'completed' : 'none';
}

/**
 * Waits for every promise and then throws the first failure. Reads: the caller reuses the
 * target of a read that failed (fuse/read-buffers), so no read may still be writing into it.
 * Stores: none may fail unobserved after an earlier one failed.
 */
async function settleAll(promises: readonly Promise<void>[]): Promise<void> {
  if (promises.length === 1) return promises[0];
  const results = await Promise.allSettled(promises);
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** The smallest range holding every gap of `ranges` below `baseBytes` (what a load must read). */
function gapSpan(ranges: readonly number[], baseBytes: number): { start: number; end: number } {
  let start = baseBytes;
  let end = 0;
  forEachGap(ranges, baseBytes, (gapStart, gapEnd) => {
    start = Math.min(start, gapStart);
    end = gapEnd;
  });
  return start < end ? { start, end } : { start: 0, end: 0 };
}

function copyFromBlock(entry: CachedBlock, range: { start: number; end: number }, target: Buffer, targetOffset: number): void {
  const dataEnd = Math.min(range.end, entry.dataBytes);
  if (dataEnd > range.start) entry.buffer.copy(target, targetOffset, range.start, dataEnd);
  const zeroFrom = Math.max(range.start, dataEnd);
  if (zeroFrom < range.end) {
    target.fill(0, targetOffset + zeroFrom - range.start, targetOffset + range.end - range.start);
  }
}

function takeError(state: FileState): FsError {
  const error = state.error ?? new FsError(Errno.EIO, 'store block', 'unknown failure');
  state.error = undefined;
  return error;
}

/** Puts `value` in the map of `record`'s inode under its block index; true when that index is new there. */
function addToInodeMap<T>(map: Map<number, Map<number, T>>, record: BlockRecord, value: T): boolean {
  let perInode = map.get(record.ino);
  if (perInode === undefined) {
    perInode = new Map();
    map.set(record.ino, perInode);
  }
  const isNew = !perInode.has(record.blockIndex);
  perInode.set(record.blockIndex, value);
  return isNew;
}
