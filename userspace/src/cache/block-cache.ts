/**
 * BlockCache: whole blocks of files held in memory, dirty (written, not yet stored) or clean
 * (identical to what is stored), in least-recently-used order. It does no I/O: the file layer
 * loads, flushes and evicts through it.
 *
 * Invariants:
 * - `bytes` is the sum of the buffer sizes of all entries.
 * - Only clean, idle entries are evicted; a dirty or flushing entry stays until stored.
 * - A buffer is owned by exactly one entry or idle on the shelf. Buffers of removed entries
 *   stay on the shelf while entries and idle buffers together fit `memoryLimitBytes` (and idle
 *   ones IDLE_BYTES_MAX), so
 *   steady-state writing does not allocate (see BufferShelf for what a fresh buffer costs).
 * - A borrowed entry (`insertBorrowed`) shows a caller's buffer while that caller stores it:
 *   it is always 'flushing', counts in neither `bytes` nor `dirtyBytes`, and its buffer never
 *   reaches the shelf.
 * - `onChange` hears of every entry before it is added, and of every clean entry as it turns
 *   dirty (in the same turn as the change of its bytes): whoever reads a block's stored bytes
 *   without asking the cache must stop before the entry's bytes can differ from them.
 * - A partial entry (`ranges` set) holds valid bytes only in `ranges`; the rest of
 *   [0, dataBytes) is the stored block below `baseBytes` and zeros above. It is never
 *   'flushing': the file layer completes it (fills the gaps) before storing or reading it.
 */
import { assert } from '../assert.js';
import { BufferShelf } from '../buffer-shelf.js';

export type CachedBlockState = 'clean' | 'dirty' | 'flushing';

/**
 * One cached block. `buffer` holds the block's bytes [0, dataBytes), or for a partial entry
 * the bytes in `ranges`. Only `replaceBuffer` changes `buffer`.
 */
export interface CachedBlock {
  readonly ino: number;
  readonly blockIndex: number;
  readonly blockBytes: number;
  buffer: Buffer;
  dataBytes: number;
  state: CachedBlockState;
  /**
   * Written byte ranges of a partial entry (see byte-ranges.ts); undefined once `buffer`
   * holds all of [0, dataBytes).
   */
  ranges: number[] | undefined;
  /** Of a partial entry: bytes of the stored block under its gaps (gaps above are zeros). */
  baseBytes: number;
  /** Settles when the running completion of a partial entry ends (file layer). */
  completing: Promise<void> | undefined;
  /** When the entry last went from clean to dirty, for age-based flushing. */
  dirtySinceMs: number;
  /** Settles when the current load or flush ends. */
  settled: Promise<void> | undefined;
  /** The buffer is the caller's (see `insertBorrowed`), not the cache's. */
  readonly isBorrowed: boolean;
}

/**
 * Idle buffers kept at most, whatever the memory limit: enough for the blocks a large write
 * cycles through (a 256 MiB cache of 32 MiB blocks), without a daemon whose cache may take an
 * eighth of RAM holding gigabytes of idle buffers after one burst.
 */
const IDLE_BYTES_MAX = 256 * 1024 * 1024;

export class BlockCache {
  readonly #entries = new Map<string, CachedBlock>();
  readonly #byInode = new Map<number, Set<CachedBlock>>();
  readonly #shelf: BufferShelf;
  readonly #paddingBytes: number;
  readonly #memoryLimitBytes: number;
  bytes = 0;
  dirtyBytes = 0;
  /** Lookups by readers that found their block or not, and clean blocks evicted (metrics). */
  readonly stats = { hits: 0, misses: 0, evictions: 0 };
  /** Told before an entry of block `blockIndex` of `ino` is added or turns dirty (fuse/chunk-reads.ts). */
  onChange: ((ino: number, blockIndex: number) => void) | undefined;

  /**
   * `memoryLimitBytes`: what the buffers of entries and idle ones may hold together.
   * `allocate`: makes fresh buffers (the file store's are page-aligned, see allocPageAligned).
   */
  constructor(options: { paddingBytes: number; memoryLimitBytes: number; allocate?: (bytes: number) => Buffer }) {
    this.#paddingBytes = options.paddingBytes;
    this.#memoryLimitBytes = options.memoryLimitBytes;
    this.#shelf = new BufferShelf(Math.min(options.memoryLimitBytes, IDLE_BYTES_MAX), options.allocate);
  }

  get(ino: number, blockIndex: number): CachedBlock | undefined {
    const key = keyOf(ino, blockIndex);
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      this.#entries.delete(key);
      this.#entries.set(key, entry);
    }
    return entry;
  }

  /**
   * Adds a clean partial entry with nothing written yet and a buffer of `blockBytes` +
   * padding: the block is its first `baseBytes` stored bytes, followed by zeros.
   */
  insert(ino: number, blockIndex: number, blockBytes: number, baseBytes: number): CachedBlock {
    const key = keyOf(ino, blockIndex);
    assert(!this.#entries.has(key));
    assert(baseBytes <= blockBytes);
    const entry: CachedBlock = {
      ino, blockIndex, blockBytes, buffer: this.#allocate(blockBytes + this.#paddingBytes),
      dataBytes: baseBytes, state: 'clean', ranges: [], baseBytes, completing: undefined,
      dirtySinceMs: 0, settled: undefined, isBorrowed: false,
    };
    this.#add(entry);
    this.bytes += entry.buffer.byteLength;
    return entry;
  }

  /**
   * Adds an entry in state 'flushing' over `buffer`, a whole block the caller is storing
   * right now without copying it here: readers see its bytes and writers wait for `settled`,
   * as for any flush (the caller sets `settled`). The caller removes it with `removeBorrowed`
   * once the store ended.
   */
  insertBorrowed(ino: number, blockIndex: number, buffer: Buffer): CachedBlock {
    assert(!this.#entries.has(keyOf(ino, blockIndex)));
    const entry: CachedBlock = {
      ino, blockIndex, blockBytes: buffer.byteLength, buffer, dataBytes: buffer.byteLength,
      state: 'flushing', ranges: undefined, baseBytes: 0, completing: undefined,
      dirtySinceMs: 0, settled: undefined, isBorrowed: true,
    };
    this.#add(entry);
    return entry;
  }

  /** Removes a borrowed entry; its buffer goes back to nobody (it is the caller's). */
  removeBorrowed(entry: CachedBlock): void {
    assert(entry.isBorrowed);
    assert.equal(entry.state, 'flushing');
    this.#delete(entry);
  }

  #add(entry: CachedBlock): void {
    this.onChange?.(entry.ino, entry.blockIndex);
    this.#entries.set(keyOf(entry.ino, entry.blockIndex), entry);
    let set = this.#byInode.get(entry.ino);
    if (set === undefined) {
      set = new Set();
      this.#byInode.set(entry.ino, set);
    }
    set.add(entry);
  }

  #delete(entry: CachedBlock): void {
    const key = keyOf(entry.ino, entry.blockIndex);
    assert(this.#entries.get(key) === entry);
    this.#entries.delete(key);
    this.#byInode.get(entry.ino)?.delete(entry);
    if (this.#byInode.get(entry.ino)?.size === 0) this.#byInode.delete(entry.ino);
  }

  /** True while `entry` is the cached entry of its block (not removed). Leaves the LRU order. */
  isCached(entry: CachedBlock): boolean {
    return this.#entries.get(keyOf(entry.ino, entry.blockIndex)) === entry;
  }

  /**
   * A buffer for a block of `blockBytes` that no entry owns: it goes to an entry through
   * `replaceBuffer`, or back through `returnSpare`.
   */
  spareBuffer(blockBytes: number): Buffer {
    return this.#allocate(blockBytes + this.#paddingBytes);
  }

  returnSpare(buffer: Buffer): void {
    this.#recycle(buffer);
  }

  /** Gives a cached, non-flushing entry a spare buffer of the same size; its old one is recycled. */
  replaceBuffer(entry: CachedBlock, buffer: Buffer): void {
    assert(!entry.isBorrowed);
    assert(entry.state !== 'flushing');
    assert.equal(buffer.byteLength, entry.buffer.byteLength);
    assert(this.isCached(entry));
    this.#recycle(entry.buffer);
    entry.buffer = buffer;
  }

  /** Marks an entry dirty (accounting for dirty bytes once). */
  markDirty(entry: CachedBlock, nowMs: number): void {
    assert(entry.state === 'clean' || entry.state === 'dirty');
    if (entry.state !== 'dirty') {
      this.onChange?.(entry.ino, entry.blockIndex);
      entry.state = 'dirty';
      entry.dirtySinceMs = nowMs;
      this.dirtyBytes += entry.buffer.byteLength;
    }
  }

  /** Moves a dirty entry to flushing; its buffer must not change until `finishFlush`. */
  startFlush(entry: CachedBlock): void {
    assert.equal(entry.state, 'dirty');
    assert(entry.ranges === undefined);
    entry.state = 'flushing';
  }

  /** Ends a flush: clean when stored, dirty again when it failed. */
  finishFlush(entry: CachedBlock, isStored: boolean): void {
    assert(!entry.isBorrowed);
    assert.equal(entry.state, 'flushing');
    if (isStored) {
      entry.state = 'clean';
      this.dirtyBytes -= entry.buffer.byteLength;
      assert(this.dirtyBytes >= 0);
    } else {
      entry.state = 'dirty';
    }
  }

  /** Removes an entry that is not flushing; its buffer is recycled. */
  remove(entry: CachedBlock): void {
    assert(entry.state !== 'flushing');
    assert(!entry.isBorrowed);
    this.#delete(entry);
    if (entry.state === 'dirty') this.dirtyBytes -= entry.buffer.byteLength;
    this.bytes -= entry.buffer.byteLength;
    this.#recycle(entry.buffer);
  }

  /** Entries of one inode. */
  /** True when some block of `ino` is cached: a cheap test before get() on a hot path. */
  hasEntries(ino: number): boolean {
    return this.#byInode.has(ino);
  }

  entriesOf(ino: number): CachedBlock[] {
    return [...(this.#byInode.get(ino) ?? [])];
  }

  /** Dirty entries, least recently used first. */
  dirtyEntries(): CachedBlock[] {
    return [...this.#entries.values()].filter((entry) => entry.state === 'dirty');
  }

  /** Evicts clean entries, least recently used first, until `bytes` <= `bytesMax`. */
  evictClean(bytesMax: number): void {
    for (const entry of this.#entries.values()) {
      if (this.bytes <= bytesMax) return;
      if (entry.state !== 'clean') continue;
      this.remove(entry);
      this.stats.evictions++;
    }
  }

  #allocate(bufferBytes: number): Buffer {
    return this.#shelf.take(bufferBytes);
  }

  #recycle(buffer: Buffer): void {
    this.#shelf.put(buffer, Math.min(this.#shelf.idleBytesMax, Math.max(0, this.#memoryLimitBytes - this.bytes)));
  }
}

function keyOf(ino: number, blockIndex: number): string {
  return `${ino}:${blockIndex}`;
}
