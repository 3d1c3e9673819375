/**
 * allocPageAligned: page-aligned cache block buffers on memory of their own.
 *
 * Method: buffers are made and dropped by the gigabyte, each written through, as a cache under
 * its memory limit drops and makes block buffers, with event loop turns between them as in the
 * daemon; the process must not grow with them (their memory is counted for V8, so it collects
 * them and the loop unmaps them), and each buffer holds what was written.
 */
import { describe, expect, it } from 'vitest';
import { allocPageAligned } from './aligned.js';

const MiB = 1024 * 1024;

describe('allocPageAligned', () => {
  it('holds its bytes, and buffers dropped by the gigabyte do not pile up', async () => {
    const first = allocPageAligned(MiB + 64);
    expect(first.byteLength).toBe(MiB + 64);
    expect(first.every((byte) => byte === 0)).toBe(true);
    first.fill(7);
    expect(first[MiB + 63]).toBe(7);
    const startRss = process.memoryUsage().rss;
    let peakRss = startRss;
    for (let index = 0; index < 3072; index++) {
      allocPageAligned(MiB).fill(index & 0xff);
      if (index % 64 === 0) {
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        // The daemon's event loop turns: collected buffers are unmapped by a task of the loop.
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    // 3 GiB went through; what V8 lets pile up before it collects is a few hundred MiB.
    expect(peakRss - startRss).toBeLessThan(1024 * MiB);
  });

  it('refuses an empty buffer', () => {
    expect(() => allocPageAligned(0)).toThrow(/bytes must be positive/);
  });
});
