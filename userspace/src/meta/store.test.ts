/**
 * Stored bytes of compressed blocks: a file's stored_bytes adds up what its blocks take once
 * stored (compressed length when compressed), through commit, rewrite, drop and truncate; a
 * store made before the blocks.stored_bytes column gains it and reads its old rows as raw.
 * Method: a real SQLite store in a temporary folder; the old shape made by dropping the column.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MetaStore, now, type BlockRecord } from './index.js';

const OWNER = { uid: 0, gid: 0 };
let directory: string;

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'shmr-meta-'));
});
afterEach(() => rmSync(directory, { recursive: true, force: true }));

function block(ino: number, blockIndex: number, sizes: { dataBytes: number; storedBytes: number }, generation = 1): BlockRecord {
  return { ino, blockIndex, pool: 'p', topology: 'single', generation, buckets: ['b0'], ...sizes };
}

function fileData(size: number) {
  const time = now();
  return { blockBytes: 1 << 20, size, mtime: time, ctime: time };
}

describe('stored bytes', () => {
  it('follow the compressed length of each block', () => {
    const meta = MetaStore.open(directory, OWNER);
    try {
      const { ino } = meta.createInode({ parent: 1, name: 'f', mode: 0o100644, uid: 0, gid: 0 });
      meta.commitBlock(block(ino, 0, { dataBytes: 1 << 20, storedBytes: 1000 }), fileData(1 << 20));
      meta.commitBlock(block(ino, 1, { dataBytes: 1 << 20, storedBytes: 1 << 20 }), fileData(2 << 20));
      expect(meta.requireInode(ino, 'test').storedBytes).toBe(1000 + (1 << 20));
      const first = meta.getBlock(ino, 0);
      expect(first?.storedBytes).toBe(1000);
      // A rewrite (repair, tiering) that stores the block in another size.
      expect(meta.replaceBlock(first ?? block(ino, 0, { dataBytes: 0, storedBytes: 0 }),
        block(ino, 0, { dataBytes: 1 << 20, storedBytes: 3000 }, 2))).toBe(true);
      expect(meta.requireInode(ino, 'test').storedBytes).toBe(3000 + (1 << 20));
      meta.dropBlock(ino, 1, now());
      expect(meta.requireInode(ino, 'test').storedBytes).toBe(3000);
      meta.truncateBlocks(ino, 0, 0, now());
      expect(meta.requireInode(ino, 'test').storedBytes).toBe(0);
    } finally {
      meta.close();
    }
  });

  it('read as raw in a store made before the column', () => {
    const created = MetaStore.open(directory, OWNER);
    const { ino } = created.createInode({ parent: 1, name: 'f', mode: 0o100644, uid: 0, gid: 0 });
    created.commitBlock(block(ino, 0, { dataBytes: 5000, storedBytes: 5000 }), fileData(5000));
    created.close();
    const db = new Database(join(directory, 'shmr-meta.sqlite'));
    db.exec('ALTER TABLE blocks DROP COLUMN stored_bytes');
    db.close();
    const reopened = MetaStore.open(directory, OWNER);
    try {
      expect(reopened.getBlock(ino, 0)?.storedBytes).toBe(5000);
      reopened.commitBlock(block(ino, 1, { dataBytes: 1 << 20, storedBytes: 70 }, 2), fileData((1 << 20) * 2));
      expect(reopened.getBlock(ino, 1)?.storedBytes).toBe(70);
      expect(reopened.requireInode(ino, 'test').storedBytes).toBe(5070);
    } finally {
      reopened.close();
    }
  });
});
