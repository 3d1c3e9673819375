/**
 * Topologies through a real mount: Mirror(2) and Erasure(4+2) store and return every byte,
 * spread shards over distinct buckets, and survive the loss of shards up to their tolerance.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { withMount } from '../helpers/mount.js';

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function shardCount(bucket: string): number {
  let count = 0;
  for (const level1 of readdirSync(bucket)) {
    if (level1 === 'shmr-bucket') continue;
    for (const level2 of readdirSync(join(bucket, level1))) count += readdirSync(join(bucket, level1, level2)).length;
  }
  return count;
}

const CASES = [
  { topology: 'mirror:2', buckets: 3, tolerance: 1 },
  { topology: 'erasure:4+2', buckets: 6, tolerance: 2 },
];

describe.each(CASES)('$topology', ({ topology, buckets, tolerance }) => {
  it('round-trips files, spreads shards and survives lost buckets', async () => {
    const pools = { ssd: { topology, blockSize: '64KiB', buckets } };
    await withMount({ pools }, async (mount) => {
      const files = new Map<string, string>();
      for (const size of [1, 1000, 65536, 65537, 1_000_003]) {
        const data = Buffer.alloc(size);
        for (let index = 0; index < size; index++) data[index] = (index * 7 + size) & 0xff;
        writeFileSync(join(mount.mountpoint, `f${size}`), data);
        files.set(`f${size}`, sha256(data));
      }
      await mount.remount();
      for (const [name, digest] of files) expect(sha256(readFileSync(join(mount.mountpoint, name)))).toBe(digest);
      const counts = Object.values(mount.buckets).map(shardCount);
      expect(counts.filter((count) => count > 0).length).toBeGreaterThanOrEqual(Math.min(buckets, topology === 'mirror:2' ? 2 : 6));
      // Lose `tolerance` whole buckets' contents: every file still reads back exactly.
      for (const bucket of Object.values(mount.buckets).slice(0, tolerance)) {
        for (const entry of readdirSync(bucket)) if (entry !== 'shmr-bucket') rmSync(join(bucket, entry), { recursive: true });
      }
      await mount.remount();
      for (const [name, digest] of files) expect(sha256(readFileSync(join(mount.mountpoint, name)))).toBe(digest);
    });
  }, 120_000);
});
