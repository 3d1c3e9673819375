/**
 * Inode numbers and directory entry cookies are never handed out twice: not after the highest
 * is deleted, not after a close and reopen, not after a crash, and not when a failed
 * transaction had raised the stored mark (its rollback takes the mark back, so the next number
 * must store it again). SQLite finds every store sound afterwards.
 * Method: real SQLite stores in a temporary folder; a crash is a copy of the store's files
 * taken while it is open (what a killed process leaves: committed transactions are in the
 * WAL, not yet in the database file); a failing transaction is made by a trigger added with
 * better-sqlite3 while the store is closed.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MetaStore } from './index.js';
import { RESERVED_NUMBERS } from './number-source.js';
import { integrityOf } from '../../test/helpers/meta-file.js';

const OWNER = { uid: 0, gid: 0 };
const FILE_MODE = 0o100644;
const DB_FILE = 'shmr-meta.sqlite';
let directory: string;

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'shmr-meta-numbers-'));
});
afterEach(() => rmSync(directory, { recursive: true, force: true }));

function create(meta: MetaStore, name: string): number {
  return meta.createInode({ parent: 1, name, mode: FILE_MODE, uid: 0, gid: 0 }).ino;
}

/** The cookie of root's entry `name`. */
function cookieOf(meta: MetaStore, name: string): number {
  const row = meta.readDirectory(1, 0, 1 << 20).find((entry) => entry.name === name);
  expect(row).toBeDefined();
  return row?.id ?? 0;
}

/** The files of the open store in `folder` as a crash would leave them, in a new folder. */
function crashCopy(folder: string): string {
  const copy = join(folder, 'crashed');
  mkdirSync(copy);
  for (const suffix of ['', '-wal']) copyFileSync(join(folder, DB_FILE + suffix), join(copy, DB_FILE + suffix));
  return copy;
}

describe('inode numbers and entry cookies', () => {
  it('are not handed out again after the highest is deleted, nor after a reopen', () => {
    let meta = MetaStore.open(directory, OWNER);
    const seen = ['a', 'b', 'c'].map((name) => ({ ino: create(meta, name), cookie: cookieOf(meta, name) }));
    meta.unlinkAndDeleteUnused(1, 'c', () => true);
    const after = { ino: create(meta, 'd'), cookie: cookieOf(meta, 'd') };
    expect(after.ino).toBeGreaterThan(Math.max(...seen.map((entry) => entry.ino)));
    expect(after.cookie).toBeGreaterThan(Math.max(...seen.map((entry) => entry.cookie)));
    meta.unlinkAndDeleteUnused(1, 'd', () => true);
    meta.close();

    meta = MetaStore.open(directory, OWNER);
    try {
      expect(create(meta, 'e')).toBeGreaterThan(after.ino);
      expect(cookieOf(meta, 'e')).toBeGreaterThan(after.cookie);
      expect(meta.readDirectory(1, 0, 10).map((entry) => entry.name)).toEqual(['a', 'b', 'e']);
    } finally {
      meta.close();
    }
    expect(integrityOf(directory)).toBe('ok');
  });

  it('are not handed out again after a crash, past reserved ranges and a rolled-back mark', () => {
    let meta = MetaStore.open(directory, OWNER);
    // Enough creates to use up the first reserved range: the mark is raised on the way.
    for (let index = 0; index < RESERVED_NUMBERS + 10; index++) create(meta, `f${index}`);
    meta.close();
    const raw = new Database(join(directory, DB_FILE));
    raw.exec(`CREATE TRIGGER fail_insert BEFORE INSERT ON dirents WHEN NEW.name = 'boom'
                BEGIN SELECT RAISE(ABORT, 'injected'); END;`);
    raw.close();

    // A reopened store starts at its stored mark: its first create raises the mark, and
    // this one fails after that, so the raise rolls back with it.
    meta = MetaStore.open(directory, OWNER);
    let highest = 0;
    try {
      expect(() => create(meta, 'boom')).toThrow(/injected/);
      highest = create(meta, 'kept');
      expect(highest).toBeGreaterThan(RESERVED_NUMBERS + 11);
      const crashed = crashCopy(directory);
      // The copy opens only if every inode it holds is below its stored mark.
      const recovered = MetaStore.open(crashed, OWNER);
      try {
        expect(recovered.lookup(1, 'kept')).toBe(highest);
        expect(create(recovered, 'next')).toBeGreaterThan(highest);
        expect(cookieOf(recovered, 'next')).toBeGreaterThan(cookieOf(recovered, 'kept'));
      } finally {
        recovered.close();
      }
      expect(integrityOf(crashed)).toBe('ok');
    } finally {
      meta.close();
    }
    expect(integrityOf(directory)).toBe('ok');
  });
});
