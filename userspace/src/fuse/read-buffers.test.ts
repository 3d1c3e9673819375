/**
 * ReadBuffers: reply buffers come back for reuse only when they are the pool's own, and
 * small reads stay on Node's slab. Method: acquire, release, acquire again, and compare the
 * underlying ArrayBuffers.
 */
import { describe, expect, it } from 'vitest';
import { ReadBuffers } from './read-buffers.js';

describe('ReadBuffers', () => {
  it('hands a released buffer out again, also when a view of it was released', () => {
    const buffers = new ReadBuffers();
    const first = buffers.acquire(128 * 1024);
    expect(first.byteLength).toBe(128 * 1024);
    buffers.release(first.subarray(0, 1000));
    const second = buffers.acquire(100 * 1024);
    expect(second.buffer).toBe(first.buffer);
    expect(second.byteLength).toBe(100 * 1024);
  });

  it('never keeps buffers it did not make, nor small slab buffers', () => {
    const buffers = new ReadBuffers();
    const foreign = Buffer.allocUnsafeSlow(128 * 1024);
    buffers.release(foreign);
    expect(buffers.acquire(128 * 1024).buffer).not.toBe(foreign.buffer);
    const small = buffers.acquire(4096);
    buffers.release(small);
    expect(buffers.acquire(4096).buffer).not.toBe(small.buffer);
  });

  it('refuses a second release of the same buffer', () => {
    const buffers = new ReadBuffers();
    const buffer = buffers.acquire(64 * 1024);
    buffers.release(buffer);
    expect(() => buffers.release(buffer)).toThrow(/released twice/);
  });
});
