/**
 * Scrub checks each block as its record is now: a block that a read repair replaced while it
 * was checked (its old shards deleted) is no finding. Method: a real filesystem opened on
 * temporary bucket folders (no mount), one shard deleted, and the block repaired from inside
 * the scrub's first shard check, as the background repair queue would.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { BlockStore } from '../block/index.js';
import { openBlockFixture, withMethod, type BlockFixture } from '../../test/helpers/block-fixture.js';
import { repairBlock, scrub } from './scrub.js';

let fixture: BlockFixture;

beforeEach(() => {
  fixture = openBlockFixture('scrub', { archive: { topology: 'erasure:4+2', buckets: 6 } });
});

afterEach(() => fixture.close());

it('checks a block repaired during its check as it is now, and finds nothing', async () => {
  const { filesystem } = fixture;
  const ino = filesystem.meta.createInode({ parent: 1, name: 'f', mode: 0o100644, uid: 0, gid: 0 }).ino;
  const model = randomBytes(1024 * 1024);
  await filesystem.files.write(ino, 0, model);
  await filesystem.files.flush(ino, { sync: true });
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
  const target = Buffer.alloc(model.byteLength);
  await filesystem.files.read(ino, 0, model.byteLength, target);
  expect(target.equals(model)).toBe(true);
});
