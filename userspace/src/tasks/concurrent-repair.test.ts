/**
 * Tasks that walk the block records (scrub, fsck, bucket replace) on a mounted filesystem,
 * while the background repair queue, writes or the mover replace blocks (new generation, new
 * shards, the old ones deleted): each works from a block's record as it is at the block's turn.
 * A block replaced during a scrub check is no finding; the new shards of a block replaced during
 * an fsck walk are no orphans, however old they are when the walk ends; a bucket replacement
 * rebuilds a block replaced after its listing from the new record, leaves no shard of the old
 * one, and spreads out the blocks repaired onto fewer buckets while the bucket was out (also
 * when such a repair commits after the bucket came back). Method: a real filesystem opened on temporary bucket folders (no mount), one erasure
 * 4+2 pool; the replacement is injected at an exact point by wrapping one block store method
 * (withMethod), as the repair queue would interleave.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { BlockStore } from '../block/index.js';
import {
  expectContent, openBlockFixture, storedFile, withMethod, type BlockFixture,
} from '../../test/helpers/block-fixture.js';
import { fsck } from './fsck.js';
import { replaceBucket } from './replace-bucket.js';
import { repairBlock, scrub } from './scrub.js';

const BLOCK_BYTES = 1024 * 1024;
const BLOCK_COUNT = 4;

let fixture: BlockFixture;

beforeEach(() => {
  fixture = openBlockFixture('concurrent-repair', { archive: { topology: 'erasure:4+2', buckets: 6 } });
});

afterEach(() => fixture.close());

it('checks a block repaired during its check as it is now, and finds nothing', async () => {
  const { filesystem } = fixture;
  const { ino, model } = await storedFile(filesystem, 'f', BLOCK_BYTES);
  const damaged = filesystem.meta.getBlock(ino, 0);
  if (damaged === undefined) throw new Error('block 0 missing');
  rmSync(filesystem.blocks.location(damaged, 2).path);

  let repairs = 0;
  const verify: BlockStore['verify'] = async (block, scratch) => {
    if (repairs === 0) {
      repairs += 1;
      expect(await repairBlock(filesystem, block)).toBe(true);
    }
    return filesystem.blocks.verify(block, scratch);
  };
  const report = await scrub({ ...filesystem, blocks: withMethod(filesystem.blocks, 'verify', verify) }, { repair: true });

  expect(report).toMatchObject({ blocksChecked: 1, shardsMissing: 0, blocksRepaired: 0, problems: [] });
  expect(filesystem.meta.getBlock(ino, 0)?.generation).not.toBe(damaged.generation);
  await expectContent(filesystem, ino, model);
});

it('leaves the shards of a block replaced during the walk where they are', async () => {
  const { filesystem } = fixture;
  const { ino, model } = await storedFile(filesystem, 'f', BLOCK_BYTES);

  let isRepaired = false;
  const header: BlockStore['header'] = async (block, shardIndex) => {
    if (!isRepaired) {
      isRepaired = true;
      expect(await repairBlock(filesystem, block)).toBe(true);
      const replaced = filesystem.meta.getBlock(ino, 0);
      if (replaced === undefined) throw new Error('block 0 missing');
      const anHourAgo = new Date(Date.now() - 3_600_000);
      for (let index = 0; index < replaced.buckets.length; index++) {
        utimesSync(filesystem.blocks.location(replaced, index).path, anHourAgo, anHourAgo);
      }
    }
    return filesystem.blocks.header(block, shardIndex);
  };
  const report = await fsck({ ...filesystem, blocks: withMethod(filesystem.blocks, 'header', header) }, { repair: true });

  expect(report.problems.filter((problem) => problem.startsWith('orphan'))).toEqual([]);
  for (let index = 0; index < 6; index++) expect(existsSync(join(fixture.root, `archive${index}`, 'quarantine'))).toBe(false);
  await expectContent(filesystem, ino, model);
});

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
  const { ino, model } = await storedFile(filesystem, 'f', BLOCK_COUNT * BLOCK_BYTES);
  rmSync(join(fixture.root, 'archive1'), { recursive: true });
  const fresh = join(fixture.root, 'new-drive');
  mkdirSync(fresh);

  const blocks = repairingAroundFirstRebuild(ino);
  const report = await replaceBucket({ ...filesystem, blocks }, { bucket: 'archive1', newPath: fresh });

  expect(report.problems).toEqual([]);
  // Blocks 0 and 1 were repaired onto the five other drives (doubled up): nothing to rebuild,
  // but spread out over all six once the new drive took the bucket's place.
  expect(report).toMatchObject({ shardsRebuilt: 2, blocksRespread: 2 });
  const records = filesystem.meta.listBlocks(ino);
  for (const record of records) expect(new Set(record.buckets).size).toBe(6);
  // One shard of each block beside the bucket's identity file; none of an old generation.
  const bucket = filesystem.pools.bucket('archive1');
  const expected = records.map((block) => bucket?.shardPath({ ...block, shardIndex: block.buckets.indexOf('archive1') }));
  expect(filesUnder(fresh).sort()).toEqual([...expected, join(fresh, 'shmr-bucket')].sort());
  await expectContent(filesystem, ino, model);
});

it('spreads out a repair placed while a bucket was out that commits after it came back', async () => {
  const { filesystem } = fixture;
  const { ino, model } = await storedFile(filesystem, 'f', BLOCK_BYTES);
  const bucket = filesystem.pools.bucket('archive1');
  if (bucket === undefined) throw new Error('bucket archive1 missing');
  bucket.markFailed('being replaced');
  // The repair's new shards are placed on five drives; the replacement ends before its commit.
  let placed: readonly string[] = [];
  const rewrite: BlockStore['rewrite'] = async (...args) => {
    const next = await filesystem.blocks.rewrite(...args);
    if (placed.length === 0) {
      placed = next.buckets;
      bucket.relocate(bucket.path);
    }
    return next;
  };
  const block = filesystem.meta.getBlock(ino, 0);
  if (block === undefined) throw new Error('block 0 missing');
  const target = { ...filesystem, blocks: withMethod(filesystem.blocks, 'rewrite', rewrite) };
  expect(await repairBlock(target, block)).toBe(true);

  expect(new Set(placed).size).toBe(5);
  expect(new Set(filesystem.meta.getBlock(ino, 0)?.buckets).size).toBe(6);
  const shardFiles = [0, 1, 2, 3, 4, 5].flatMap((index) => filesUnder(join(fixture.root, `archive${index}`)))
    .filter((path) => !path.endsWith('shmr-bucket'));
  expect(shardFiles).toHaveLength(6);
  await expectContent(filesystem, ino, model);
});
