/**
 * Scratch buffers for shard reads that are not chunk aligned: a free list of equal buffers
 * that is reused across requests, so the read path does not allocate per call.
 *
 * The free list holds at most FREE_MAX buffers; a request beyond that (many reads in flight)
 * gets a fresh buffer that is dropped on release, and so does one for more than `bufferBytes`
 * (an unaligned read of a block larger than a FUSE request: an NBD read, a partial block's load).
 */
import { assert } from '../assert.js';

const FREE_MAX = 64;

export class ScratchPool {
  readonly #free: Buffer[] = [];
  readonly bufferBytes: number;

  constructor(bufferBytes: number) {
    assert(bufferBytes > 0);
    this.bufferBytes = bufferBytes;
  }

  /** A buffer of at least `bytes`; the caller releases it after its last use. */
  acquire(bytes: number): Buffer {
    assert(bytes >= 0);
    if (bytes > this.bufferBytes) return Buffer.allocUnsafeSlow(bytes);
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.bufferBytes);
  }

  release(buffer: Buffer): void {
    assert(buffer.byteLength >= this.bufferBytes);
    if (buffer.byteLength > this.bufferBytes) return; // one of acquire's own: not kept
    if (this.#free.length < FREE_MAX) this.#free.push(buffer);
  }
}
