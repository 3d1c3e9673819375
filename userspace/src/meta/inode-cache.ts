/**
 * InodeCache: the inode rows of the metadata store kept in memory, so that GETATTR, LOOKUP and
 * the reads inside every metadata transaction cost a Map lookup instead of a SQLite query and
 * a fresh row object.
 *
 * Invariants:
 * - A cached record equals the row SQLite holds for that inode, committed or inside the open
 *   transaction. The store routes every write of the inodes table through `written` (after the
 *   statement succeeded): with the new record when it knows it exactly, else the entry is
 *   dropped and the next read fetches the row.
 * - A transaction that rolls back drops every inode it wrote (`endTransaction(false)`), so no
 *   uncommitted state outlives it. Reads inside a transaction of inodes it did not write see
 *   committed rows, which are safe to keep.
 * - At most `entriesMax` records; past that the oldest inserted goes. Records are immutable:
 *   callers may keep them.
 */
import { assert } from '../assert.js';
import type { InodeRecord } from './store.js';

export class InodeCache {
  readonly #records = new Map<number, InodeRecord>();
  /** Inodes written by the open transaction (may repeat): dropped if it rolls back. */
  readonly #written: number[] = [];
  readonly #entriesMax: number;

  constructor(entriesMax: number) {
    assert(Number.isSafeInteger(entriesMax));
    assert(entriesMax > 0);
    this.#entriesMax = entriesMax;
  }

  get size(): number {
    return this.#records.size;
  }

  get(ino: number): InodeRecord | undefined {
    return this.#records.get(ino);
  }

  /** A record as just read from SQLite. */
  remember(record: InodeRecord): void {
    if (this.#records.size >= this.#entriesMax && !this.#records.has(record.ino)) {
      const oldest = this.#records.keys().next();
      assert(oldest.done !== true);
      this.#records.delete(oldest.value);
    }
    this.#records.set(record.ino, record);
  }

  /**
   * The row of `ino` was written (inserted, updated or deleted): `record` is its new state when
   * the caller knows it exactly, else undefined (the entry is dropped).
   */
  written(ino: number, record: InodeRecord | undefined, isInTransaction: boolean): void {
    if (isInTransaction) this.#written.push(ino);
    if (record === undefined) {
      this.#records.delete(ino);
      return;
    }
    assert.equal(record.ino, ino);
    this.remember(record);
  }

  /** The outermost transaction ended; a rollback drops what it wrote. */
  endTransaction(isCommitted: boolean): void {
    if (!isCommitted) for (const ino of this.#written) this.#records.delete(ino);
    this.#written.length = 0;
  }

  /** An inner transaction (savepoint) rolled back: drop what was written so far. */
  dropWritten(): void {
    for (const ino of this.#written) this.#records.delete(ino);
  }
}
