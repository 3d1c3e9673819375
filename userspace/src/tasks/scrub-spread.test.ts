/**
 * Scrub and blocks whose shards doubled up: a block written while one of the pool's drives
 * was out keeps two shards on one drive; once that drive comes back by itself (the
 * housekeeping probe, not a bucket replacement), one more lost drive would take two of its
 * shards. Scrub reports such a block as a finding (sound shards, reduced redundancy) and,
 * with repair, writes it again spread over all drives; a block the pool cannot spread (too
 * few writable drives) is no finding. Method: a real filesystem on temporary bucket folders
 * (no mount), one erasure 4+2 pool of six drives, the drive taken out with markFailed and
 * brought back with the probe the daemon runs.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import {
  expectContent, openBlockFixture, storedFile, type BlockFixture,
} from '../../test/helpers/block-fixture.js';
import { scrub } from './scrub.js';

const BLOCK_BYTES = 1024 * 1024;

let fixture: BlockFixture;

beforeEach(() => {
  fixture = openBlockFixture('scrub-spread', { archive: { topology: 'erasure:4+2', buckets: 6 } });
});

afterEach(() => fixture.close());

/** A one-block file written while bucket archive1 was out: five drives for six shards. */
async function doubledUpFile(): Promise<{ ino: number; model: Buffer }> {
  const { filesystem } = fixture;
  const bucket = filesystem.pools.bucket('archive1');
  if (bucket === undefined) throw new Error('bucket archive1 missing');
  bucket.markFailed('unplugged');
  const file = await storedFile(filesystem, 'f', BLOCK_BYTES);
  expect(new Set(filesystem.meta.getBlock(file.ino, 0)?.buckets).size).toBe(5);
  return file;
}

it('reports a doubled-up block once its pool can spread it, and spreads it with repair', async () => {
  const { filesystem } = fixture;
  const { ino, model } = await doubledUpFile();

  // While the drive is still out, there is nowhere to spread to: no finding.
  expect(await scrub(filesystem, { repair: false, restart: true })).toMatchObject({ blocksDoubledUp: 0, problems: [] });

  expect(filesystem.pools.probe(filesystem.meta.filesystemUuid).map((bucket) => bucket.name)).toEqual(['archive1']);
  const found = await scrub(filesystem, { repair: false, restart: true });
  expect(found).toMatchObject({ blocksChecked: 1, blocksDoubledUp: 1, blocksRespread: 0, shardsMissing: 0 });
  expect(found.problems).toHaveLength(1);
  expect(found.problems[0]).toMatch(/^\/f block 0: two shards in one bucket .*scrub --repair$/);
  expect(new Set(filesystem.meta.getBlock(ino, 0)?.buckets).size).toBe(5);

  const repaired = await scrub(filesystem, { repair: true, restart: true });
  expect(repaired).toMatchObject({ blocksDoubledUp: 1, blocksRespread: 1, problems: [] });
  expect(new Set(filesystem.meta.getBlock(ino, 0)?.buckets).size).toBe(6);
  await expectContent(filesystem, ino, model);

  expect(await scrub(filesystem, { repair: false, restart: true })).toMatchObject({ blocksDoubledUp: 0, problems: [] });
});
