/**
 * ReadBuffers: reply buffers for READ, reused once the binding has sent their bytes
 * (`releaseReadBuffer`). A fresh 128 KiB-1 MiB buffer per read cost a malloc and its page
 * faults on every request of a sequential read.
 *
 * Invariants:
 * - Only buffers made here come back to the free lists (tracked by their ArrayBuffer), one
 *   free list per power-of-two size class; reads of SMALL_BYTES_MAX or less use Node's
 *   shared slab (cheap, and not ours to reuse).
 * - At most FREE_BYTES_MAX bytes sit in free lists; what does not fit is left to the GC.
 * - A buffer is in a free list only after its reply was sent: handed out again, it is
 *   overwritten before anything reads it.
 */
import { assert } from '../assert.js';

/** Reads up to this size take Buffer.allocUnsafe (Node's pooled slab). */
const SMALL_BYTES_MAX = 4096;
/** Free bytes kept for reuse: 32 one-MiB readahead replies. */
const FREE_BYTES_MAX = 32 * 1024 * 1024;

export class ReadBuffers {
  readonly #free = new Map<number, ArrayBuffer[]>();
  readonly #ours = new WeakSet<ArrayBuffer>();
  #freeBytes = 0;

  /** A buffer of exactly `bytes` bytes (contents undefined). */
  acquire(bytes: number): Buffer {
    assert(bytes >= 0);
    if (bytes <= SMALL_BYTES_MAX) return Buffer.allocUnsafe(bytes);
    const classBytes = 2 ** Math.ceil(Math.log2(bytes));
    let arrayBuffer = this.#free.get(classBytes)?.pop();
    if (arrayBuffer === undefined) {
      arrayBuffer = new ArrayBuffer(classBytes);
      this.#ours.add(arrayBuffer);
    } else {
      this.#freeBytes -= classBytes;
    }
    return Buffer.from(arrayBuffer, 0, bytes);
  }

  /** Takes back a buffer (or a view of one) from `acquire` whose bytes were sent. */
  release(buffer: Uint8Array): void {
    const arrayBuffer = buffer.buffer;
    if (!(arrayBuffer instanceof ArrayBuffer) || !this.#ours.has(arrayBuffer)) return;
    const classBytes = arrayBuffer.byteLength;
    if (this.#freeBytes + classBytes > FREE_BYTES_MAX) return;
    let list = this.#free.get(classBytes);
    if (list === undefined) {
      list = [];
      this.#free.set(classBytes, list);
    }
    assert(!list.includes(arrayBuffer), 'read buffer released twice');
    list.push(arrayBuffer);
    this.#freeBytes += classBytes;
  }
}
