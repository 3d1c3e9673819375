/**
 * Tombstones in the metadata store: deleting an inode and replacing a file's block map turn the
 * old blocks into tombstones in the same transaction; a block map that changed meanwhile is not
 * replaced; a version 1 store is upgraded in place.
 * Method: a real SQLite store in a temp folder.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { now, ROOT_INO, type BlockRecord } from './index.js';
import { MetaStore } from './store.js';
import { SCHEMA_VERSION } from './schema.js';

const owner = { uid: 0, gid: 0 };
const folders: string[] = [];

function openStore(): { store: MetaStore; folder: string } {
  const folder = mkdtempSync(join(tmpdir(), 'shmr-meta-'));
  folders.push(folder);
  return { store: MetaStore.open(folder, owner), folder };
}

function block(ino: number, blockIndex: number, generation: number, pool = 'ssd'): BlockRecord {
  return { ino, blockIndex, pool, topology: 'single', generation, dataBytes: 1000, storedBytes: 1000, buckets: ['b0'] };
}

afterEach(() => {
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

describe('tombstones', () => {
  it('replaces a block map in one transaction and tombstones only what it replaced', () => {
    const { store } = openStore();
    const file = store.createInode({ parent: ROOT_INO, name: 'f', mode: 0o100644, uid: 0, gid: 0 });
    const time = now();
    for (const index of [0, 1]) store.commitBlock(block(file.ino, index, 10 + index), { blockBytes: 65536, size: 66536, mtime: time, ctime: time });
    const old = store.listBlocks(file.ino);
    const kept = old[0] as BlockRecord;
    const fresh = { ...block(file.ino, 1, 99, 'hdd'), dataBytes: 1000 };
    expect(store.replaceFileBlocks({ ino: file.ino, expected: [kept], blockBytes: 65536, blocks: [kept, fresh] })).toBe(false);
    expect(store.replaceFileBlocks({ ino: file.ino, expected: old, blockBytes: 65536, blocks: [kept, fresh] })).toBe(true);
    expect(store.listBlocks(file.ino).map((record) => record.generation)).toEqual([10, 99]);
    expect(store.listTombstones().map((stone) => [stone.blockIndex, stone.generation, stone.reason])).toEqual([[1, 11, 'replaced']]);
    expect(store.tombstoneUsage()).toEqual([{ pool: 'ssd', blocks: 1, dataBytes: 1000 }]);
    store.close();
  });

  it('turns the blocks of a deleted inode into tombstones', () => {
    const { store } = openStore();
    const file = store.createInode({ parent: ROOT_INO, name: 'g', mode: 0o100644, uid: 0, gid: 0 });
    const time = now();
    store.commitBlock(block(file.ino, 0, 5), { blockBytes: 65536, size: 1000, mtime: time, ctime: time });
    store.unlink(ROOT_INO, 'g');
    store.deleteInode(file.ino);
    expect(store.listTombstones(file.ino).map((stone) => stone.reason)).toEqual(['deleted']);
    expect(store.tombstonesBefore(Date.now() + 1, 10)).toHaveLength(1);
    expect(store.tombstonesBefore(0, 10)).toHaveLength(0);
    expect(store.maxGeneration()).toBe(5);
    store.close();
  });

  it('upgrades a version 1 store', () => {
    const { store, folder } = openStore();
    store.close();
    const db = new Database(join(folder, 'shmr-meta.sqlite'));
    db.exec("DROP TABLE tombstones; UPDATE settings SET value = '1' WHERE key = 'schema_version'");
    db.close();
    const reopened = MetaStore.open(folder, owner);
    expect(reopened.listTombstones()).toEqual([]);
    expect(reopened.getSetting('schema_version')).toBe(String(SCHEMA_VERSION));
    reopened.close();
  });
});
