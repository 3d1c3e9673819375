/**
 * RecordCache: block records recently read from the metadata store, so that a read of cached
 * data does not pay an SQLite query for its block record.
 *
 * Invariants:
 * - Only MetaStore uses it, and MetaStore forgets a block's entry before every statement that
 *   changes the block's row (forgetBlock) or rows (forgetFile): a cached record is the
 *   committed row. Entries are added only outside transactions, so a record written by a
 *   transaction that is later rolled back is never cached.
 * - Records are immutable (BlockRecord is readonly): callers share the cached object.
 * - `onForget` hears of every forgetBlock and forgetFile, so it hears of every change of a
 *   block row before it happens (fuse/chunk-reads.ts drops what it registered for the block).
 * - At most RECORDS_MAX records; past that, the cache starts over empty (cheap, and rare: it
 *   takes that many blocks read without a write in between).
 */
import { assert } from '../assert.js';
import type { BlockRecord } from './store.js';

/** Cached block records: 64 Ki records of 1 MiB blocks cover 64 GiB of file data. */
const RECORDS_MAX = 65536;

export class RecordCache {
  readonly #files = new Map<number, Map<number, BlockRecord>>();
  #count = 0;
  /** Told before a block's row (blockIndex) or a file's rows (blockIndex -1) change or go. */
  onForget: ((ino: number, blockIndex: number) => void) | undefined;

  get(ino: number, blockIndex: number): BlockRecord | undefined {
    return this.#files.get(ino)?.get(blockIndex);
  }

  add(record: BlockRecord): void {
    if (this.#count >= RECORDS_MAX) this.clear();
    let blocks = this.#files.get(record.ino);
    if (blocks === undefined) {
      blocks = new Map();
      this.#files.set(record.ino, blocks);
    }
    if (!blocks.has(record.blockIndex)) this.#count += 1;
    blocks.set(record.blockIndex, record);
  }

  /** Called before the row of block `blockIndex` of `ino` changes or goes. */
  forgetBlock(ino: number, blockIndex: number): void {
    this.onForget?.(ino, blockIndex);
    const blocks = this.#files.get(ino);
    if (blocks?.delete(blockIndex) === true) this.#count -= 1;
    assert(this.#count >= 0);
  }

  /** Called before several rows of `ino` change or go. */
  forgetFile(ino: number): void {
    this.onForget?.(ino, -1);
    const blocks = this.#files.get(ino);
    if (blocks === undefined) return;
    this.#count -= blocks.size;
    this.#files.delete(ino);
    assert(this.#count >= 0);
  }

  clear(): void {
    this.#files.clear();
    this.#count = 0;
  }
}
