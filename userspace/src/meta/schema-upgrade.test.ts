/**
 * A store of schema version 2 (and 1) as the previous release wrote it (AUTOINCREMENT inode
 * numbers and entry ids, entries in a rowid table with a unique (parent, name) index) opens as
 * version 3: every inode, entry (with its readdir cookie), xattr and block reads back as it was,
 * paths and parents are found without the old index by ino,
 * creates, links, renames and unlinks work on it through a reopen, SQLite finds the file sound,
 * and no inode number or cookie the old store handed out (also deleted ones) comes back.
 * Method: the old store made with better-sqlite3 from the version 2 DDL below (copied from the
 * release that wrote it) and rows inserted the way that release's MetaStore did.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { folderPerTest } from '../../test/helpers/temp-folder.js';
import { Errno } from '../errno.js';
import { MetaStore } from './index.js';
import { SCHEMA_VERSION } from './schema.js';
import { entryHintsOf, integrityOf, readClosedStore } from '../../test/helpers/meta-file.js';

const OWNER = { uid: 0, gid: 0 };
const FILE_MODE = 0o100644;
const DIR_MODE = 0o040755;
const LINK_MODE = 0o120777;
const testFolder = folderPerTest('shmr-meta-upgrade-');

/** The version 2 schema as that release created it. */
const VERSION_2_SQL = `
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inodes (
  ino INTEGER PRIMARY KEY AUTOINCREMENT,
  mode INTEGER NOT NULL, nlink INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
  rdev INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL DEFAULT 0,
  block_bytes INTEGER NOT NULL DEFAULT 0, stored_bytes INTEGER NOT NULL DEFAULT 0,
  atime_sec INTEGER NOT NULL, atime_nsec INTEGER NOT NULL,
  mtime_sec INTEGER NOT NULL, mtime_nsec INTEGER NOT NULL,
  ctime_sec INTEGER NOT NULL, ctime_nsec INTEGER NOT NULL,
  target BLOB
);
CREATE INDEX IF NOT EXISTS inodes_orphans ON inodes(nlink) WHERE nlink = 0;
CREATE TABLE IF NOT EXISTS dirents (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  parent INTEGER NOT NULL, name TEXT NOT NULL, ino INTEGER NOT NULL,
  UNIQUE (parent, name)
);
CREATE INDEX IF NOT EXISTS dirents_by_ino ON dirents(ino);
CREATE INDEX IF NOT EXISTS dirents_by_parent_id ON dirents(parent, id);
CREATE TABLE IF NOT EXISTS xattrs (
  ino INTEGER NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ino, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
  ino INTEGER NOT NULL, block_index INTEGER NOT NULL, pool TEXT NOT NULL, topology TEXT NOT NULL,
  generation INTEGER NOT NULL, data_bytes INTEGER NOT NULL, buckets TEXT NOT NULL,
  stored_bytes INTEGER, PRIMARY KEY (ino, block_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tombstones (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ino INTEGER NOT NULL, block_index INTEGER NOT NULL, pool TEXT NOT NULL, topology TEXT NOT NULL,
  generation INTEGER NOT NULL, data_bytes INTEGER NOT NULL, stored_bytes INTEGER,
  buckets TEXT NOT NULL, reason TEXT NOT NULL, created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_by_ino ON tombstones(ino);
CREATE INDEX IF NOT EXISTS tombstones_by_time ON tombstones(created_ms);
`;

/** What the old store holds, by name. */
interface OldStore {
  dir: number; file: number; symlink: number; orphan: number;
  /** The highest inode number and entry id the old store handed out (both since deleted). */
  inoSequence: number; idSequence: number;
}

/**
 * Writes a version 2 store: /d with files a (hard-linked as a2, with an xattr and a block) and
 * s (a symlink), an orphan (nlink 0), and a file and an entry created and deleted again, so
 * the sequences are past the highest numbers left.
 */
function writeVersion2Store(folder: string): OldStore {
  const db = new Database(join(folder, 'shmr-meta.sqlite'));
  db.pragma('page_size = 1024');
  db.pragma('journal_mode = WAL');
  db.exec(VERSION_2_SQL);
  const put = db.prepare('INSERT INTO settings (key, value) VALUES (?, ?)');
  for (const [key, value] of [['schema_version', '2'], ['filesystem_uuid', 'old-uuid'], ['sync_marker', '0'], ['shard_directory_blocks', '64']]) {
    put.run(key, value);
  }
  const inode = db.prepare(
    `INSERT INTO inodes (mode, nlink, uid, gid, size, atime_sec, atime_nsec, mtime_sec, mtime_nsec,
       ctime_sec, ctime_nsec, target) VALUES (?, ?, 7, 8, ?, 100, 1, 200, 2, 300, 3, ?)`,
  );
  const entry = db.prepare('INSERT INTO dirents (parent, name, ino) VALUES (?, ?, ?)');
  const add = (mode: number, nlink: number, size = 0, target: Buffer | null = null): number =>
    Number(inode.run(mode, nlink, size, target).lastInsertRowid);
  db.prepare(
    `INSERT INTO inodes (ino, mode, nlink, uid, gid, atime_sec, atime_nsec, mtime_sec, mtime_nsec,
       ctime_sec, ctime_nsec) VALUES (1, ?, 3, 0, 0, 1, 0, 1, 0, 1, 0)`,
  ).run(DIR_MODE);
  const dir = add(DIR_MODE, 2);
  entry.run(1, 'd', dir);
  const file = add(FILE_MODE, 2, 5000);
  entry.run(dir, 'a', file);
  const symlink = add(LINK_MODE, 1, 6, Buffer.from('target'));
  entry.run(dir, 's', symlink);
  entry.run(dir, 'a2', file);
  const orphan = add(FILE_MODE, 0);
  const gone = add(FILE_MODE, 1);
  const goneEntry = Number(entry.run(dir, 'gone', gone).lastInsertRowid);
  db.prepare('DELETE FROM dirents WHERE id = ?').run(goneEntry);
  db.prepare('DELETE FROM inodes WHERE ino = ?').run(gone);
  db.prepare('UPDATE inodes SET block_bytes = 1048576, stored_bytes = 5000 WHERE ino = ?').run(file);
  db.prepare(
    `INSERT INTO blocks (ino, block_index, pool, topology, generation, data_bytes, buckets, stored_bytes)
     VALUES (?, 0, 'ssd', 'single', 9, 5000, 'b0', 5000)`,
  ).run(file);
  db.prepare('INSERT INTO xattrs (ino, name, value) VALUES (?, ?, ?)').run(file, 'user.x', Buffer.from('v'));
  db.close();
  return { dir, file, symlink, orphan, inoSequence: gone, idSequence: goneEntry };
}

function tableSql(folder: string, table: string): string {
  return readClosedStore(folder, (db) =>
    db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?").pluck().get(table) as string);
}

/** Checks that the store holds what writeVersion2Store wrote. */
function expectOldContents(meta: MetaStore, old: OldStore): void {
  expect(meta.filesystemUuid).toBe('old-uuid');
  expect(meta.lookup(1, 'd')).toBe(old.dir);
  expect(meta.lookup(old.dir, 'a')).toBe(old.file);
  expect(meta.lookup(old.dir, 'a2')).toBe(old.file);
  expect(meta.lookup(old.dir, 'gone')).toBeUndefined();
  const file = meta.requireInode(old.file, 'test');
  expect(file).toMatchObject({
    mode: FILE_MODE, nlink: 2, uid: 7, gid: 8, size: 5000, blockBytes: 1048576, storedBytes: 5000,
    atime: { sec: 100, nsec: 1 }, mtime: { sec: 200, nsec: 2 }, ctime: { sec: 300, nsec: 3 },
  });
  expect(meta.requireInode(old.symlink, 'test').target?.toString()).toBe('target');
  expect(meta.getXattr(old.file, 'user.x')?.toString()).toBe('v');
  expect(meta.listBlocks(old.file).map((block) => [block.generation, block.buckets])).toEqual([[9, ['b0']]]);
  expect(meta.listOrphans()).toEqual([old.orphan]);
  expect(meta.pathOf(old.symlink)).toBe('/d/s');
  // The hint of a hard-linked file is its first entry.
  expect(meta.pathOf(old.file)).toBe('/d/a');
  expect(meta.parentOf(old.dir)).toBe(1);
}

describe('a version 2 store', () => {
  it('opens as version 3 with all it held, cookies kept, and works through a reopen', () => {
    const old = writeVersion2Store(testFolder());
    let meta = MetaStore.open(testFolder(), OWNER);
    try {
      expect(meta.getSetting('schema_version')).toBe(String(SCHEMA_VERSION));
      expectOldContents(meta, old);
      const listed = meta.readDirectory(old.dir, 0, 100);
      // Entry ids (readdir cookies) as the old store numbered them: a, s, a2.
      expect(listed.map((row) => [row.name, row.id])).toEqual([['a', 2], ['s', 3], ['a2', 4]]);
      expect(listed.map((row) => row.ino)).toEqual([old.file, old.symlink, old.file]);

      // Numbers the old store handed out, the deleted ones too, are not handed out again.
      const created = meta.createInode({ parent: old.dir, name: 'new', mode: FILE_MODE, uid: 0, gid: 0 });
      expect(created.ino).toBeGreaterThan(old.inoSequence);
      expect(meta.readDirectory(old.dir, 4, 100).map((row) => row.name)).toEqual(['new']);
      expect(meta.readDirectory(old.dir, 0, 100).at(-1)?.id).toBeGreaterThan(old.idSequence);
      expect(() => meta.createInode({ parent: old.dir, name: 'a', mode: FILE_MODE, uid: 0, gid: 0 }))
        .toThrow(expect.objectContaining({ errno: Errno.EEXIST }) as Error);
      meta.link(created.ino, 1, 'hard', 100);
      meta.rename({ parent: old.dir, name: 's', newParent: 1, newName: 's', flags: 0 });
      expect(meta.unlinkAndDeleteUnused(old.dir, 'a2', () => true).isDeleted).toBe(false);
      meta.close();

      expect(integrityOf(testFolder())).toBe('ok');
      expect(tableSql(testFolder(), 'dirents')).toMatch(/WITHOUT ROWID/);
      expect(tableSql(testFolder(), 'inodes')).not.toMatch(/AUTOINCREMENT/);
      // Hints from the old entries (the first of a hard-linked file's), then from the rename.
      expect(entryHintsOf(testFolder(), [1, old.dir, old.file, old.symlink, old.orphan]))
        .toEqual([[null, null], [1, 'd'], [old.dir, 'a'], [1, 's'], [null, null]]);

      meta = MetaStore.open(testFolder(), OWNER);
      expect(meta.lookup(1, 'hard')).toBe(created.ino);
      expect(meta.lookup(1, 's')).toBe(old.symlink);
      expect(meta.pathOf(old.symlink)).toBe('/s');
      expect(meta.pathOf(created.ino)).toBe('/hard');
      expect(meta.lookup(old.dir, 'a2')).toBeUndefined();
      expect(meta.requireInode(old.file, 'test').nlink).toBe(1);
      expect(meta.readDirectory(old.dir, 0, 100).map((row) => row.name)).toEqual(['a', 'new']);
      expect(meta.createInode({ parent: 1, name: 'later', mode: FILE_MODE, uid: 0, gid: 0 }).ino).toBeGreaterThan(created.ino);
    } finally {
      meta.close();
    }
    expect(integrityOf(testFolder())).toBe('ok');
  });
});

describe('a version 1 store', () => {
  it('(no tombstones table) opens as version 3 with all it held', () => {
    const old = writeVersion2Store(testFolder());
    const db = new Database(join(testFolder(), 'shmr-meta.sqlite'));
    db.exec("DROP TABLE tombstones; UPDATE settings SET value = '1' WHERE key = 'schema_version'");
    db.close();
    const meta = MetaStore.open(testFolder(), OWNER);
    try {
      expect(meta.getSetting('schema_version')).toBe(String(SCHEMA_VERSION));
      expectOldContents(meta, old);
      expect(meta.listTombstones()).toEqual([]);
      expect(meta.deleteInode(old.orphan)).toEqual([]);
    } finally {
      meta.close();
    }
    expect(integrityOf(testFolder())).toBe('ok');
  });
});
