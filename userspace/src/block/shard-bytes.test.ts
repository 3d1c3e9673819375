/** shardFileBytes against shard files as the block store writes them (sizes on disk). */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { openBlockFixture, TOPOLOGY_POOLS, writeTestBlock, type BlockFixture } from '../../test/helpers/block-fixture.js';
import { shardFileBytes } from './index.js';

let fixture: BlockFixture;

beforeEach(() => {
  fixture = openBlockFixture('shard-bytes', TOPOLOGY_POOLS);
});

afterEach(() => fixture.close());

function shardBytesUnder(folder: string): number {
  return readdirSync(folder, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name !== 'shmr-bucket')
    .reduce((sum, entry) => sum + statSync(join(entry.parentPath, entry.name)).size, 0);
}

it.each([
  ['plain', 'single', 1],
  ['mirrored', 'mirror:2', 2],
  ['archive', 'erasure:4+2', 6],
])('matches the shard files of %s blocks (%s)', async (pool, topology, buckets) => {
  const sizes = [1048576, 1048576, 700_001];
  for (const [blockIndex, size] of sizes.entries()) {
    await writeTestBlock(fixture.filesystem, pool, Buffer.alloc(size, blockIndex + 1), { ino: 5, blockIndex });
  }
  let onDisk = 0;
  for (let index = 0; index < buckets; index++) onDisk += shardBytesUnder(join(fixture.root, `${pool}${index}`));
  const estimate = shardFileBytes(topology, sizes.length, sizes.reduce((sum, size) => sum + size, 0));
  // Payloads are averaged over the blocks: off by a rounding per shard at most.
  expect(Math.abs(estimate - onDisk)).toBeLessThanOrEqual(sizes.length * buckets * 4);
});

it('counts nothing for blocks without a topology (pending tombstones)', () => {
  expect(shardFileBytes('', 3, 0)).toBe(0);
});
