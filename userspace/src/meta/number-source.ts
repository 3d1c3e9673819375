/**
 * NumberSource: hands out increasing numbers (inode numbers, directory entry ids) that are never
 * handed out twice, also across a close, a crash and a reopen, without a database write per
 * number.
 *
 * SQLite's AUTOINCREMENT gives the same guarantee by rewriting its sqlite_sequence row in every
 * inserting transaction: one more page per create in the WAL. Here a high-water mark is stored
 * instead, raised by `RESERVED_NUMBERS` at a time in the transaction that takes the first number
 * at or past it; a reopened store starts at the stored mark, so numbers reserved but never used
 * before a close or crash are skipped, not reused.
 *
 * Invariant: every number handed out is below the mark of the last committed transaction, or
 * below the mark written by the transaction that is taking it.
 */
import { assert } from '../assert.js';

/** Numbers reserved per write of the mark (one settings row update per this many creates). */
export const RESERVED_NUMBERS = 1024;

export class NumberSource {
  #next: number;
  /** The committed mark: numbers from here on were never handed out. */
  #committedMark: number;
  /** The mark the open transaction wrote, if it raised it. */
  #pendingMark: number | undefined;
  readonly #writeMark: (mark: number) => void;

  /**
   * `mark` is the stored mark (the first number never handed out); `writeMark` stores a new one
   * in the caller's open transaction.
   */
  constructor(mark: number, writeMark: (mark: number) => void) {
    assert(Number.isSafeInteger(mark) && mark >= 1, `bad number mark ${mark}`);
    this.#next = mark;
    this.#committedMark = mark;
    this.#writeMark = writeMark;
  }

  /** The next number; called inside the transaction that uses it. */
  take(): number {
    const number = this.#next++;
    assert(Number.isSafeInteger(number));
    if (number >= (this.#pendingMark ?? this.#committedMark)) {
      const mark = number + RESERVED_NUMBERS;
      this.#writeMark(mark);
      this.#pendingMark = mark;
    }
    return number;
  }

  /**
   * Told when a transaction (or a savepoint in one) ends. A failed one rolled back the mark it
   * may have written, so the next take writes it again; the numbers it took stay skipped.
   */
  endTransaction(isCommitted: boolean, isOutermost: boolean): void {
    if (!isCommitted) {
      this.#pendingMark = undefined;
    } else if (isOutermost && this.#pendingMark !== undefined) {
      this.#committedMark = this.#pendingMark;
      this.#pendingMark = undefined;
    }
  }
}
