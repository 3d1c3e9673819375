/**
 * Scratch buffers for shard reads that are not chunk aligned: a free list of equal buffers
 * that is reused across requests, so the read path does not allocate per call.
 *
 * The free list holds at most FREE_MAX buffers; a request beyond that (many reads in flight)
 * gets a fresh buffer that is dropped on release.
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

  /** A buffer of `bufferBytes`; the caller releases it after its last use. */
  acquire(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.bufferBytes);
  }

  release(buffer: Buffer): void {
    assert.equal(buffer.byteLength, this.bufferBytes);
    if (this.#free.length < FREE_MAX) this.#free.push(buffer);
  }
}
