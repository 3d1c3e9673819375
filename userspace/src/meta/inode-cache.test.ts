/**
 * The inode cache of the metadata store stays exactly in step with SQLite: after creates,
 * links, renames (plain, replacing, exchanging, across directories), unlinks, setattr, xattr
 * changes, block commits, truncation and deletion, every record the store answers from memory
 * equals the row a freshly opened store reads; a transaction that fails after writing leaves
 * no uncommitted record behind; the cache never grows past its bound.
 * Method: a real SQLite store in a temp folder; failures injected with SQLite triggers added
 * through a second connection while the store is closed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { InodeCache } from './inode-cache.js';
import { now, ROOT_INO, S_IFDIR, S_IFREG, type BlockRecord, type InodeRecord } from './index.js';
import { MetaStore } from './store.js';

const owner = { uid: 0, gid: 0 };
const folders: string[] = [];
const FILE = S_IFREG | 0o644;
const DIRECTORY = S_IFDIR | 0o755;

afterEach(() => {
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

function newFolder(): string {
  const folder = mkdtempSync(join(tmpdir(), 'shmr-inode-cache-'));
  folders.push(folder);
  return folder;
}

function block(ino: number, blockIndex: number, generation: number): BlockRecord {
  return { ino, blockIndex, pool: 'ssd', topology: 'single', generation, dataBytes: 4096, storedBytes: 1000, buckets: ['b0'] };
}

/** Every inode the store answers for, read through its cache. */
function cachedRecords(store: MetaStore): Map<number, InodeRecord> {
  const records = new Map<number, InodeRecord>();
  for (const { ino } of [...store.allInodes()]) {
    const record = store.getInode(ino);
    expect(record).toBeDefined();
    records.set(ino, record as InodeRecord);
  }
  return records;
}

/** Closes `store`, reopens the folder with an empty cache and compares every row. */
function expectSameAsReopened(store: MetaStore, folder: string): MetaStore {
  const cached = cachedRecords(store);
  store.close();
  const reopened = MetaStore.open(folder, owner);
  const fromDisk = new Map([...reopened.allInodes()].map(({ ino }) => [ino, reopened.getInode(ino)]));
  expect(fromDisk).toEqual(cached);
  return reopened;
}

describe('inode cache', () => {
  it('matches SQLite after every kind of metadata change', () => {
    const folder = newFolder();
    let store = MetaStore.open(folder, owner);
    const a = store.createInode({ parent: ROOT_INO, name: 'a', mode: DIRECTORY, uid: 1, gid: 2 });
    const b = store.createInode({ parent: ROOT_INO, name: 'b', mode: DIRECTORY, uid: 1, gid: 2 });
    const f = store.createInode({ parent: a.ino, name: 'f', mode: FILE, uid: 1, gid: 2 });
    const g = store.createInode({ parent: a.ino, name: 'g', mode: FILE, uid: 1, gid: 2 });
    store.createInode({ parent: a.ino, name: 'l', mode: 0o120777, uid: 1, gid: 2, target: Buffer.from('f') });
    store = expectSameAsReopened(store, folder);

    store.link(f.ino, b.ino, 'f2', 100);
    store.rename({ parent: a.ino, name: 'g', newParent: b.ino, newName: 'f2', flags: 0 });
    store.rename({ parent: ROOT_INO, name: 'b', newParent: a.ino, newName: 'b', flags: 0 });
    store.createInode({ parent: ROOT_INO, name: 'c', mode: DIRECTORY, uid: 0, gid: 0 });
    store.rename({ parent: ROOT_INO, name: 'c', newParent: a.ino, newName: 'f', flags: 2 });
    store = expectSameAsReopened(store, folder);

    const time = now();
    store.setAttributes(g.ino, { mode: FILE | 0o600, uid: 5, atime: { sec: 1, nsec: 2 }, mtime: time });
    store.setAccessTime(g.ino, { sec: 3, nsec: 4 });
    store.setXattr(g.ino, 'user.x', Buffer.from('1'), 0);
    store.commitBlock(block(g.ino, 0, 7), { blockBytes: 4096, size: 8000, mtime: time, ctime: time });
    store.commitBlock(block(g.ino, 1, 8), { blockBytes: 4096, size: 8192, mtime: time, ctime: time });
    store.replaceBlock(block(g.ino, 1, 8), { ...block(g.ino, 1, 9), storedBytes: 2000 });
    store.dropBlock(g.ino, 0, now());
    store.truncateBlocks(g.ino, 100, 1, now());
    store.removeXattr(g.ino, 'user.x');
    store = expectSameAsReopened(store, folder);

    store.unlink(ROOT_INO, 'c');
    store.unlink(b.ino, 'f2');
    store.deleteInode(g.ino);
    const { isDeleted } = store.unlinkAndDeleteUnused(a.ino, 'l', () => true);
    expect(isDeleted).toBe(true);
    store.rmdir(a.ino, 'b');
    expect(store.getInode(g.ino)).toBeUndefined();
    store = expectSameAsReopened(store, folder);
    store.close();
  });

  it('drops what a failed transaction wrote, also a new inode', () => {
    const folder = newFolder();
    let store = MetaStore.open(folder, owner);
    const kept = store.createInode({ parent: ROOT_INO, name: 'kept', mode: FILE, uid: 0, gid: 0 });
    const target = store.createInode({ parent: ROOT_INO, name: 'target', mode: FILE, uid: 0, gid: 0 });
    store.close();
    const raw = new Database(join(folder, 'shmr-meta.sqlite'));
    raw.exec(`CREATE TRIGGER fail_insert BEFORE INSERT ON dirents WHEN NEW.name = 'boom'
                BEGIN SELECT RAISE(ABORT, 'injected'); END;
              CREATE TRIGGER fail_move BEFORE UPDATE ON dirents WHEN NEW.name = 'target'
                BEGIN SELECT RAISE(ABORT, 'injected'); END;`);
    raw.close();
    store = MetaStore.open(folder, owner);
    const rootBefore = store.getInode(ROOT_INO);

    // The inode row is written (and cached) before the entry insert fails.
    expect(() => store.createInode({ parent: ROOT_INO, name: 'boom', mode: FILE, uid: 0, gid: 0 })).toThrow(/injected/);
    expect(store.getInode(ROOT_INO)).toEqual(rootBefore);
    // The rolled-back number is skipped: the next create takes the one after it.
    const next = store.createInode({ parent: ROOT_INO, name: 'next', mode: FILE | 0o700, uid: 7, gid: 0 });
    expect(store.getInode(next.ino)?.mode).toBe(FILE | 0o700);
    expect(store.getInode(next.ino - 1)).toBeUndefined();

    // A replacing rename unlinks the target before its move fails.
    expect(() => store.rename({ parent: ROOT_INO, name: 'kept', newParent: ROOT_INO, newName: 'target', flags: 0 }))
      .toThrow(/injected/);
    expect(store.getInode(target.ino)?.nlink).toBe(1);
    expect(store.getInode(kept.ino)?.nlink).toBe(1);
    store = expectSameAsReopened(store, folder);
    store.close();
  });

  it('keeps at most its bound, dropping the oldest first', () => {
    const cache = new InodeCache(2);
    const record = (ino: number): InodeRecord => ({
      ino, mode: FILE, nlink: 1, uid: 0, gid: 0, rdev: 0, size: 0, blockBytes: 0, storedBytes: 0,
      atime: { sec: 0, nsec: 0 }, mtime: { sec: 0, nsec: 0 }, ctime: { sec: 0, nsec: 0 }, target: null,
    });
    cache.remember(record(1));
    cache.remember(record(2));
    cache.remember(record(3));
    expect(cache.size).toBe(2);
    expect(cache.get(1)).toBeUndefined();
    expect(cache.get(3)?.ino).toBe(3);
    cache.written(2, undefined, false);
    expect(cache.get(2)).toBeUndefined();
  });
});
