/**
 * SQLite page size of the metadata store: a new store is made with 1 KiB pages (each
 * transaction writes fewer WAL bytes), while a store made before that with SQLite's 4 KiB
 * default keeps its pages and works as before: what it held reads back, and creates, unlinks,
 * renames and block commits go on through a close and reopen. Either way the WAL is copied
 * back (checkpointed) once it holds about 4 MiB, not after a fixed count of pages.
 * Method: real SQLite stores in a temporary folder; the old store's file made by better-sqlite3
 * with 4 KiB pages before MetaStore ever opens it; page sizes read back with PRAGMA page_size;
 * the WAL's size read from its file while the store is open (a checkpoint rewinds the WAL but
 * leaves the file as long as it grew).
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { folderPerTest } from '../../test/helpers/temp-folder.js';
import { MetaStore, now } from './index.js';

const OWNER = { uid: 0, gid: 0 };
const FILE_MODE = 0o100644;
const DIR_MODE = 0o040755;
const testFolder = folderPerTest('shmr-meta-page-');

/** The page size of the closed store in `testFolder()`. */
function pageSizeOf(folder: string): number {
  const db = new Database(join(folder, 'shmr-meta.sqlite'), { readonly: true });
  try {
    return db.pragma('page_size', { simple: true }) as number;
  } finally {
    db.close();
  }
}

const MIB = 1024 * 1024;

/** Bytes of the open store's WAL file. */
function walBytes(folder: string): number {
  return statSync(join(folder, 'shmr-meta.sqlite-wal')).size;
}

/** Creates, renames and unlinks enough entries to split and merge B-tree pages. */
function churn(meta: MetaStore, parent: number, count: number): void {
  for (let index = 0; index < count; index++) {
    meta.createInode({ parent, name: `f${index}`, mode: FILE_MODE, uid: 0, gid: 0 });
  }
  for (let index = 0; index < count; index += 2) {
    meta.rename({ parent, name: `f${index}`, newParent: parent, newName: `r${index}`, flags: 0 });
  }
  for (let index = 1; index < count; index += 2) {
    expect(meta.unlinkAndDeleteUnused(parent, `f${index}`, () => true).isDeleted).toBe(true);
  }
}

describe('metadata page size', () => {
  it('is 1 KiB in a new store', () => {
    const meta = MetaStore.open(testFolder(), OWNER);
    const folder = meta.createInode({ parent: 1, name: 'd', mode: DIR_MODE, uid: 0, gid: 0 });
    churn(meta, folder.ino, 2000);
    // Some 20,000 one-KiB frames were written: the WAL grew past 1000 pages, checkpointed at 4 MiB.
    expect(walBytes(testFolder())).toBeGreaterThan(2 * MIB);
    expect(walBytes(testFolder())).toBeLessThan(4.5 * MIB);
    meta.close();
    expect(pageSizeOf(testFolder())).toBe(1024);
    const reopened = MetaStore.open(testFolder(), OWNER);
    try {
      expect(reopened.lookup(folder.ino, 'r1998')).toBeDefined();
      expect(reopened.lookup(folder.ino, 'f1999')).toBeUndefined();
    } finally {
      reopened.close();
    }
  });

  it('stays 4 KiB in a store made with 4 KiB pages, which keeps working', () => {
    // A store as older versions made it: SQLite's 4 KiB default, fixed by its first table.
    const old = new Database(join(testFolder(), 'shmr-meta.sqlite'));
    old.pragma('page_size = 4096');
    old.pragma('journal_mode = WAL');
    old.exec('CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
    old.close();

    const meta = MetaStore.open(testFolder(), OWNER);
    const folder = meta.createInode({ parent: 1, name: 'd', mode: DIR_MODE, uid: 0, gid: 0 });
    churn(meta, folder.ino, 400);
    const kept = meta.requireInode(meta.lookup(folder.ino, 'r0') ?? 0, 'test');
    const time = now();
    meta.commitBlock(
      { ino: kept.ino, blockIndex: 0, pool: 'p', topology: 'single', generation: 1, dataBytes: 100, storedBytes: 100, buckets: ['b0'] },
      { blockBytes: 1 << 20, size: 100, mtime: time, ctime: time },
    );
    expect(walBytes(testFolder())).toBeLessThan(4.5 * MIB);
    meta.close();
    expect(pageSizeOf(testFolder())).toBe(4096);

    const reopened = MetaStore.open(testFolder(), OWNER);
    try {
      expect(reopened.lookup(folder.ino, 'r0')).toBe(kept.ino);
      expect(reopened.requireInode(kept.ino, 'test').size).toBe(100);
      expect(reopened.listBlocks(kept.ino).map((block) => block.generation)).toEqual([1]);
      expect(reopened.lookup(folder.ino, 'f1')).toBeUndefined();
      churn(reopened, reopened.createInode({ parent: 1, name: 'e', mode: DIR_MODE, uid: 0, gid: 0 }).ino, 100);
    } finally {
      reopened.close();
    }
    expect(pageSizeOf(testFolder())).toBe(4096);
  });
});
