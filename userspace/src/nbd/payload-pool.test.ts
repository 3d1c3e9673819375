/**
 * PayloadPool: buffers by size class, reused after release, kept up to the retained limit, and
 * page aligned, so that a WRITE payload read to offset 0 is stored past the page cache where it
 * lies (shard-io canWriteAtOnce).
 */
import { describe, expect, it } from 'vitest';
import { canWriteAtOnce, isWholePages } from '../block/index.js';
import { PAYLOAD_CLASS_BYTES_MIN, PayloadPool } from './payload-pool.js';
import { REPLY_HEADROOM_BYTES } from './protocol.js';

const MiB = 1024 * 1024;

describe('PayloadPool', () => {
  it('hands out page-aligned buffers whose whole-page payloads an at-once shard write takes', () => {
    const pool = new PayloadPool({ retainedBytesMax: 0 });
    const buffer = pool.acquire(4 * MiB);
    expect(buffer.byteLength).toBe(REPLY_HEADROOM_BYTES + 4 * MiB);
    expect(isWholePages(buffer.subarray(0, 4 * MiB))).toBe(true);
    expect(canWriteAtOnce(buffer.subarray(0, 4 * MiB))).toBe(true);
    // A read's payload lies behind its reply header: not whole pages, and not needed to be.
    expect(isWholePages(buffer.subarray(REPLY_HEADROOM_BYTES, REPLY_HEADROOM_BYTES + MiB))).toBe(false);
  });

  it('reuses released buffers of the same class and keeps no more than the limit', () => {
    const pool = new PayloadPool({ retainedBytesMax: REPLY_HEADROOM_BYTES + MiB });
    const first = pool.acquire(MiB);
    const second = pool.acquire(MiB - 1);
    pool.release(first);
    pool.release(second);
    expect(pool.retainedBytes).toBe(REPLY_HEADROOM_BYTES + MiB);
    expect(pool.acquire(700 * 1024)).toBe(first);
    expect(pool.retainedBytes).toBe(0);
    expect(pool.acquire(10).byteLength).toBe(REPLY_HEADROOM_BYTES + PAYLOAD_CLASS_BYTES_MIN);
  });
});
