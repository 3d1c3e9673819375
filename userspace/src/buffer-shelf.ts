/**
 * BufferShelf: idle buffers kept for reuse, by size, up to a bound on their bytes.
 *
 * Why: a fresh buffer of a block (megabytes) costs a page fault and a zeroed page per 4 KiB when
 * first written, on whichever thread writes it, and dropping it makes V8's garbage collector
 * run: V8 counts the memory of buffers and starts a collection after every few dozen MB of new
 * ones. Measured on a 2 GiB erasure-coded write through the mount (32 MiB blocks): 34 fresh
 * cache buffers and 132 fresh parity buffers, a full collection every 100-200 ms pausing the
 * request thread 2-14 ms each, and copies into fresh cache buffers at a third of the speed of
 * copies into reused ones.
 *
 * Invariant: `idleBytes` is the sum of the sizes of the idle buffers; a `put` never leaves it
 * above the bound it was given.
 */
import { assert } from './assert.js';

export class BufferShelf {
  readonly #idle = new Map<number, Buffer[]>();
  #idleBytes = 0;

  /**
   * `idleBytesMax`: bytes of idle buffers kept when `put` is given no other bound. `allocate`
   * makes fresh buffers (default: never from Node's shared pool).
   */
  constructor(readonly idleBytesMax: number, readonly allocate: (bytes: number) => Buffer = (bytes) => Buffer.allocUnsafeSlow(bytes)) {
    assert(idleBytesMax >= 0);
  }

  get idleBytes(): number {
    return this.#idleBytes;
  }

  /** A buffer of exactly `bytes`: an idle one, else a fresh one from `allocate`. */
  take(bytes: number): Buffer {
    const buffer = this.#idle.get(bytes)?.pop();
    if (buffer === undefined) return this.allocate(bytes);
    this.#idleBytes -= bytes;
    return buffer;
  }

  /**
   * Keeps `buffer` for a later `take` if idle buffers stay within `idleBytesMax`; idle buffers
   * of other sizes are dropped first to make room (the sizes in use changed). Else drops it.
   */
  put(buffer: Buffer, idleBytesMax = this.idleBytesMax): void {
    const bytes = buffer.byteLength;
    for (const [size, list] of this.#idle) {
      if (this.#idleBytes + bytes <= idleBytesMax) break;
      if (size === bytes) continue;
      this.#idleBytes -= size * list.length;
      this.#idle.delete(size);
    }
    if (this.#idleBytes + bytes > idleBytesMax) return;
    let list = this.#idle.get(bytes);
    if (list === undefined) {
      list = [];
      this.#idle.set(bytes, list);
    }
    list.push(buffer);
    this.#idleBytes += bytes;
  }
}
