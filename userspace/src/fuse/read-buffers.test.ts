/**
 * ReadBuffers: reply buffers come back for reuse only when they are the pool's own, and
 * small reads stay on Node's slab; big replies come page aligned (O_DIRECT-ready) from a
 * bounded slab, and beyond it from plain buffers. Method: acquire, release, acquire again, and
 * compare the underlying ArrayBuffers and offsets.
 */
import { describe, expect, it } from 'vitest';
import { directBytes } from '../block/index.js';
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

  it('hands out page-aligned slots of one slab, reuses a released slot, and goes beyond it with plain buffers', () => {
    const buffers = new ReadBuffers();
    const held = Array.from({ length: 32 }, () => buffers.acquire(1024 * 1024));
    expect(new Set(held.map((buffer) => buffer.buffer)).size).toBe(1);
    expect(new Set(held.map((buffer) => buffer.byteOffset)).size).toBe(32);
    for (const buffer of held) expect(directBytes(buffer)).toBe(1024 * 1024);
    // The slab is spent: a plain buffer, not aligned for O_DIRECT, still of the asked size.
    const extra = buffers.acquire(1024 * 1024);
    expect(extra.buffer).not.toBe(held[0]?.buffer);
    expect(directBytes(extra)).toBe(0);
    const slot = held[5] ?? Buffer.alloc(0);
    buffers.release(slot.subarray(0, 100));
    const again = buffers.acquire(200 * 1024);
    expect(again.buffer).toBe(slot.buffer);
    expect(again.byteOffset).toBe(slot.byteOffset);
    expect(again.byteLength).toBe(200 * 1024);
    buffers.release(again);
    expect(() => buffers.release(again)).toThrow(/released twice/);
  });
});
