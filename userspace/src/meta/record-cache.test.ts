/**
 * Block records served from memory (RecordCache inside MetaStore) are always the committed
 * rows: after every change of a block map (commit, rewrite, a rewrite that lost its race, hole
 * punch, truncate, whole-file rewrite, fsck removal, delete) getBlock answers what SQLite holds.
 * Method: a real store in a temporary folder; each answer is compared with listBlocks, which
 * always queries SQLite, and a repeated getBlock must hand out the same object (it is cached).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MetaStore, now, type BlockRecord } from './index.js';

let directory: string;
let meta: MetaStore;

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'shmr-record-cache-'));
  meta = MetaStore.open(directory, { uid: 0, gid: 0 });
});
afterEach(() => {
  meta.close();
  rmSync(directory, { recursive: true, force: true });
});

function block(ino: number, blockIndex: number, generation: number): BlockRecord {
  return { ino, blockIndex, pool: 'p', topology: 'single', generation, dataBytes: 4096, storedBytes: 4096, buckets: ['b0'] };
}

function fileData(size: number) {
  const time = now();
  return { blockBytes: 4096, size, mtime: time, ctime: time };
}

/** getBlock of every index below `count`, checked against SQLite (listBlocks). */
function generations(ino: number, count: number): (number | undefined)[] {
  const stored = new Map(meta.listBlocks(ino).map((record) => [record.blockIndex, record]));
  return Array.from({ length: count }, (_, blockIndex) => {
    const record = meta.getBlock(ino, blockIndex);
    expect(record).toEqual(stored.get(blockIndex));
    if (record !== undefined) expect(meta.getBlock(ino, blockIndex)).toBe(record);
    return record?.generation;
  });
}

describe('cached block records', () => {
  it('follow every change of the block map', () => {
    const { ino } = meta.createInode({ parent: 1, name: 'f', mode: 0o100644, uid: 0, gid: 0 });
    for (let index = 0; index < 3; index++) meta.commitBlock(block(ino, index, 1), fileData(4096 * (index + 1)));
    expect(generations(ino, 4)).toEqual([1, 1, 1, undefined]);
    meta.commitBlock(block(ino, 0, 2), fileData(3 * 4096));
    expect(generations(ino, 4)).toEqual([2, 1, 1, undefined]);
    expect(meta.replaceBlock(block(ino, 1, 1), block(ino, 1, 3))).toBe(true);
    expect(generations(ino, 4)).toEqual([2, 3, 1, undefined]);
    // A rewrite that lost the race to a write changes nothing.
    expect(meta.replaceBlock(block(ino, 1, 1), block(ino, 1, 4))).toBe(false);
    expect(generations(ino, 4)).toEqual([2, 3, 1, undefined]);
    meta.dropBlock(ino, 1, now());
    expect(generations(ino, 4)).toEqual([2, undefined, 1, undefined]);
    meta.commitBlock(block(ino, 1, 5), fileData(3 * 4096));
    meta.commitBlock(block(ino, 3, 5), fileData(4 * 4096));
    expect(generations(ino, 4)).toEqual([2, 5, 1, 5]);
    meta.truncateBlocks(ino, 4096 + 10, 2, now());
    expect(generations(ino, 4)).toEqual([2, 5, undefined, undefined]);
    expect(meta.replaceFileBlocks({
      ino, expected: meta.listBlocks(ino), blockBytes: 8192, blocks: [block(ino, 0, 6)],
    })).toBe(true);
    expect(generations(ino, 4)).toEqual([6, undefined, undefined, undefined]);
    meta.commitBlock(block(ino, 1, 7), fileData(2 * 8192));
    expect(generations(ino, 2)).toEqual([6, 7]);
    meta.removeBlockRecord(ino, 1);
    expect(generations(ino, 2)).toEqual([6, undefined]);
    meta.unlink(1, 'f');
    meta.deleteInode(ino);
    expect(meta.getBlock(ino, 0)).toBeUndefined();
  });
});
