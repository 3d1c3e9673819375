/**
 * ReadAheadWindow: notices when one connection reads a volume sequentially and says which
 * bytes beyond its reads to have read ahead (FileStore.readAhead), so the disk works on the
 * blocks the client will ask for next while it is still waiting for the current ones.
 *
 * Why here: an NBD client keeps few requests in flight (nbdcopy: 16 MiB per connection, four
 * reads of a volume's 4 MiB blocks), and each block read that misses the page cache waits for
 * the disk; with nothing read ahead the disk idles between them (copy-out after copy-in, whose
 * blocks were written past the page cache, ran at about half the rate of nbdkit serving a file
 * from the page cache).
 *
 * Invariants:
 * - A read is sequential when it starts where the previous read of the connection ended; only
 *   sequential reads ask for read-ahead, and never for the same bytes twice in one run.
 * - The window runs at most `windowBytes` past the end of the latest read: a client that stops
 *   costs at most that much reading it did not ask for.
 */
import { assert } from '../assert.js';

export class ReadAheadWindow {
  readonly #windowBytes: number;
  /** Where a sequential read would start: the end of the previous read. */
  #nextOffset = -1;
  /** Bytes before this offset were asked for already in the current run. */
  #aheadEnd = 0;

  constructor(windowBytes: number) {
    assert(Number.isSafeInteger(windowBytes) && windowBytes > 0);
    this.#windowBytes = windowBytes;
  }

  /**
   * Notes a read of [offset, offset + length); returns the bytes to read ahead now (none
   * when the read is not sequential or the window is already asked for).
   */
  next(offset: number, length: number): { offset: number; length: number } | undefined {
    assert(offset >= 0 && length >= 0);
    const end = offset + length;
    const isSequential = offset === this.#nextOffset && length > 0;
    this.#nextOffset = end;
    if (!isSequential) {
      this.#aheadEnd = end;
      return undefined;
    }
    const start = Math.max(this.#aheadEnd, end);
    const stop = end + this.#windowBytes;
    if (stop <= start) return undefined;
    this.#aheadEnd = stop;
    return { offset: start, length: stop - start };
  }
}
