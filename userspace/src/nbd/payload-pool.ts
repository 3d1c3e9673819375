/**
 * PayloadPool: reusable buffers for request and reply payloads, in power-of-two size classes
 * from PAYLOAD_CLASS_BYTES_MIN to PAYLOAD_BYTES_MAX, each with REPLY_HEADROOM_BYTES in front
 * of the payload for a reply header (a read is read straight behind its reply header and sent
 * with one socket write).
 *
 * Invariants:
 * - The pool keeps at most `retainedBytesMax` of free buffers; what it cannot keep is left to
 *   the garbage collector. How many buffers are in use at once is bounded by the callers'
 *   in-flight limits (IN_FLIGHT_BYTES_MAX per connection), not here.
 * - A buffer comes back holding the last user's bytes: users overwrite every byte they send.
 * - Buffers are page aligned on pages of their own (allocPageAligned): a WRITE payload read
 *   to offset 0 of one is a whole-pages view, which a whole-block store writes past the page
 *   cache without copying it (shard-io canWriteAtOnce).
 */
import { assert } from '../assert.js';
import { allocPageAligned } from '../block/index.js';
import { PAYLOAD_BYTES_MAX, REPLY_HEADROOM_BYTES } from './protocol.js';

/** Smallest size class: smaller payloads share it. */
export const PAYLOAD_CLASS_BYTES_MIN = 4096;

export class PayloadPool {
  readonly #free = new Map<number, Buffer[]>();
  readonly #retainedBytesMax: number;
  #retainedBytes = 0;

  constructor(options: { retainedBytesMax: number }) {
    assert(options.retainedBytesMax >= 0);
    this.#retainedBytesMax = options.retainedBytesMax;
  }

  /** Bytes held in free buffers. */
  get retainedBytes(): number {
    return this.#retainedBytes;
  }

  /**
   * A buffer with room for `payloadBytes` after REPLY_HEADROOM_BYTES of header room. Release
   * it after the last use (for a reply: in the socket write's callback).
   */
  acquire(payloadBytes: number): Buffer {
    assert(payloadBytes >= 0);
    assert(payloadBytes <= PAYLOAD_BYTES_MAX);
    const classBytes = classOf(payloadBytes);
    const buffer = this.#free.get(classBytes)?.pop();
    if (buffer !== undefined) {
      this.#retainedBytes -= buffer.byteLength;
      return buffer;
    }
    // Memory of its own, never carved from Node's shared slab: it aliases nothing.
    return allocPageAligned(REPLY_HEADROOM_BYTES + classBytes);
  }

  release(buffer: Buffer): void {
    const classBytes = buffer.byteLength - REPLY_HEADROOM_BYTES;
    assert(classBytes === classOf(classBytes), 'not a pool buffer');
    if (this.#retainedBytes + buffer.byteLength > this.#retainedBytesMax) return;
    let list = this.#free.get(classBytes);
    if (list === undefined) {
      list = [];
      this.#free.set(classBytes, list);
    }
    list.push(buffer);
    this.#retainedBytes += buffer.byteLength;
  }
}

/** The size class of a payload: the next power of two, at least PAYLOAD_CLASS_BYTES_MIN. */
function classOf(payloadBytes: number): number {
  if (payloadBytes <= PAYLOAD_CLASS_BYTES_MIN) return PAYLOAD_CLASS_BYTES_MIN;
  return 2 ** Math.ceil(Math.log2(payloadBytes));
}
