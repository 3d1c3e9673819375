/**
 * ReadBuffers: reply buffers for READ, reused once the binding has sent their bytes
 * (`releaseReadBuffer`). A fresh 128 KiB-1 MiB buffer per read cost a malloc and its page
 * faults on every request of a sequential read.
 *
 * Replies of up to IO_REQUEST_BYTES_MAX come first from slots of one page-aligned slab on huge
 * pages where the kernel grants them (block/aligned.ts): a cold read of a shard goes straight
 * from the drive into such a buffer with O_DIRECT (block/shard-io.ts), skipping the backing
 * file's page cache and its copy.
 *
 * Invariants:
 * - Only buffers made here come back (slab slots by offset, others tracked by their
 *   ArrayBuffer in one free list per power-of-two size class); reads of SMALL_BYTES_MAX or
 *   less use Node's shared slab (cheap, and not ours to reuse).
 * - At most FREE_BYTES_MAX bytes sit in free lists; what does not fit is left to the GC. The
 *   slab is SLAB_BYTES; when all its slots are out, replies come from the free lists.
 * - A buffer is free only after its reply was sent: handed out again, it is overwritten
 *   before anything reads it. A reply that fails is released too (filesystem.ts), so no slot
 *   is lost.
 */
import { assert } from '../assert.js';
import { allocAlignedSlab } from '../block/index.js';
import { IO_REQUEST_BYTES_MAX } from '../limits.js';

/** Reads up to this size take Buffer.allocUnsafe (Node's pooled slab). */
const SMALL_BYTES_MAX = 4096;
/** Free bytes kept for reuse: 32 one-MiB readahead replies. */
const FREE_BYTES_MAX = 32 * 1024 * 1024;
/** Aligned slots: the 8 MiB kernel readahead keeps about 8-12 replies in flight. */
const SLOT_BYTES = IO_REQUEST_BYTES_MAX;
const SLOT_COUNT = 32;

export class ReadBuffers {
  readonly #free = new Map<number, ArrayBuffer[]>();
  readonly #ours = new WeakSet<ArrayBuffer>();
  #freeBytes = 0;
  /**
   * Made with the pool, not on the first big read: its pages are only touched when used, but
   * V8 counts it as external memory at once and starts a full GC to make room, which the
   * first read of a cold file paid for.
   */
  readonly #slab: ArrayBufferLike = allocAlignedSlab(SLOT_COUNT * SLOT_BYTES).buffer;
  readonly #freeSlots = Array.from({ length: SLOT_COUNT }, (_, index) => SLOT_COUNT - 1 - index);
  readonly #isSlotOut = new Uint8Array(SLOT_COUNT);

  /** A buffer of exactly `bytes` bytes (contents undefined). */
  acquire(bytes: number): Buffer {
    assert(bytes >= 0);
    if (bytes <= SMALL_BYTES_MAX) return Buffer.allocUnsafe(bytes);
    const slot = bytes <= SLOT_BYTES ? this.#freeSlots.pop() : undefined;
    if (slot !== undefined) {
      this.#isSlotOut[slot] = 1;
      return Buffer.from(this.#slab, slot * SLOT_BYTES, bytes);
    }
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

  /** Takes back a buffer (or a view of its start) from `acquire` whose bytes were sent. */
  release(buffer: Uint8Array): void {
    const arrayBuffer = buffer.buffer;
    if (arrayBuffer === this.#slab) {
      const slot = Math.floor(buffer.byteOffset / SLOT_BYTES);
      assert(this.#isSlotOut[slot] === 1, 'read buffer released twice');
      this.#isSlotOut[slot] = 0;
      this.#freeSlots.push(slot);
      return;
    }
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
