/**
 * Bucket replacement works from each block's record as it is at its turn: a block that a read
 * repair (or a write, or the mover) replaced after the listing is rebuilt from its new shards,
 * not from the deleted old ones. Method: a real filesystem opened on temporary bucket folders
 * (no mount), one drive removed, its replacement run in process; the test repairs the next
 * block from the progress callback, as a background read repair would.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { BlockStore } from '../block/index.js';
import { openBlockFixture, withMethod, type BlockFixture } from '../../test/helpers/block-fixture.js';
import { repairBlock } from './scrub.js';
import { replaceBucket } from './replace-bucket.js';

const BLOCK_BYTES = 1024 * 1024;
const BLOCK_COUNT = 4;

let fixture: BlockFixture;

beforeEach(() => {
  fixture = openBlockFixture('replace-bucket', { archive: { topology: 'erasure:4+2', buckets: 6 } });
});

afterEach(() => fixture.close());

function filesUnder(path: string): string[] {
  return readdirSync(path, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
}

/**
 * The filesystem's block store, with a hook around its first shard rebuild: the listing's next
 * block is repaired before it, the block being rebuilt right after it.
 */
function repairingAroundFirstRebuild(ino: number): BlockStore {
  const { filesystem } = fixture;
  const target = { meta: filesystem.meta, blocks: filesystem.blocks, pools: filesystem.pools };
  let isFirst = true;
  const repair = async (blockIndex: number): Promise<void> => {
    const block = filesystem.meta.getBlock(ino, blockIndex);
    if (block === undefined) throw new Error(`block ${blockIndex} missing`);
    expect(await repairBlock(target, block)).toBe(true);
  };
  const rebuildShard: BlockStore['rebuildShard'] = async (block, ...rest) => {
    if (!isFirst) return filesystem.blocks.rebuildShard(block, ...rest);
    isFirst = false;
    expect(block.blockIndex).toBe(0);
    await repair(1);
    await filesystem.blocks.rebuildShard(block, ...rest);
    await repair(0);
  };
  return withMethod(filesystem.blocks, 'rebuildShard', rebuildShard);
}

it('rebuilds each block from its record at its turn, not from the listing', async () => {
  const { filesystem } = fixture;
  const ino = filesystem.meta.createInode({ parent: 1, name: 'f', mode: 0o100644, uid: 0, gid: 0 }).ino;
  const model = randomBytes(BLOCK_COUNT * BLOCK_BYTES);
  await filesystem.files.write(ino, 0, model);
  await filesystem.files.flush(ino, { sync: true });
  rmSync(join(fixture.root, 'archive1'), { recursive: true });
  const fresh = join(fixture.root, 'new-drive');
  mkdirSync(fresh);

  const blocks = repairingAroundFirstRebuild(ino);
  const report = await replaceBucket({ ...filesystem, blocks }, { bucket: 'archive1', newPath: fresh });

  expect(report.problems).toEqual([]);
  // Blocks 0 and 1 were repaired onto the five other drives (doubled up): nothing to rebuild.
  const onDrive = filesystem.meta.listBlocks(ino).filter((block) => block.buckets.includes('archive1'));
  expect(onDrive.map((block) => block.blockIndex)).toEqual([2, 3]);
  expect(report.shardsRebuilt).toBe(2);
  // The shards of blocks 2 and 3 beside the bucket's identity file; none of block 0's old generation.
  const bucket = filesystem.pools.bucket('archive1');
  const expected = onDrive.map((block) => bucket?.shardPath({ ...block, shardIndex: block.buckets.indexOf('archive1') }));
  expect(filesUnder(fresh).sort()).toEqual([...expected, join(fresh, 'shmr-bucket')].sort());
  const target = Buffer.alloc(model.byteLength);
  expect(await filesystem.files.read(ino, 0, model.byteLength, target)).toBe(model.byteLength);
  expect(target.equals(model)).toBe(true);
});
