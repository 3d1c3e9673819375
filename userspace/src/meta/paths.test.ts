/**
 * Parents and paths of inodes (readdir's "..", rename's loop check, paths in log messages)
 * come from each inode's entry hint, checked against the entries: they follow creates, links,
 * renames (moves, replacing moves, exchanges across directories) and a reopen, and a
 * hard-linked file whose hinted link was unlinked is still found through its other link.
 * Method: a real SQLite store in a temporary folder.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Errno } from '../errno.js';
import { MetaStore, ROOT_INO } from './index.js';
import { entryHintsOf } from '../../test/helpers/meta-file.js';

const OWNER = { uid: 0, gid: 0 };
const FILE_MODE = 0o100644;
const DIR_MODE = 0o040755;
const RENAME_EXCHANGE = 2;
let directory: string;
let meta: MetaStore;

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), 'shmr-meta-paths-'));
  meta = MetaStore.open(directory, OWNER);
});
afterEach(() => {
  meta.close();
  rmSync(directory, { recursive: true, force: true });
});

function make(parent: number, name: string, mode = FILE_MODE): number {
  return meta.createInode({ parent, name, mode, uid: 0, gid: 0 }).ino;
}

/**
 * The stored hints of `inodes` (closing and reopening the store to read them): a stale hint
 * would still give right answers, by a search of all entries, so the tests look at them.
 */
function hintsOf(inodes: number[]): unknown[] {
  meta.close();
  try {
    return entryHintsOf(directory, inodes);
  } finally {
    meta = MetaStore.open(directory, OWNER);
  }
}

function rename(parent: number, name: string, newParent: number, newName: string, flags = 0): void {
  meta.rename({ parent, name, newParent, newName, flags });
}

describe('parents and paths', () => {
  it('follow creates and renames of directories and files, also through a reopen', () => {
    const a = make(ROOT_INO, 'a', DIR_MODE);
    const b = make(a, 'b', DIR_MODE);
    const file = make(b, 'f');
    expect(meta.parentOf(b)).toBe(a);
    expect(meta.pathOf(file)).toBe('/a/b/f');

    const c = make(ROOT_INO, 'c', DIR_MODE);
    rename(a, 'b', c, 'b2');
    expect(meta.parentOf(b)).toBe(c);
    expect(meta.pathOf(file)).toBe('/c/b2/f');
    // The loop check walks the new parents: moving c into its own subtree fails.
    expect(() => rename(ROOT_INO, 'c', b, 'c')).toThrow(expect.objectContaining({ errno: Errno.EINVAL }) as Error);

    // A replacing move: the replaced file has no entry left.
    const victim = make(ROOT_INO, 'victim');
    rename(b, 'f', ROOT_INO, 'victim');
    expect(meta.pathOf(file)).toBe('/victim');
    expect(meta.pathOf(victim)).toBe(`<inode ${victim}>`);
    expect(hintsOf([a, b, file])).toEqual([[ROOT_INO, 'a'], [c, 'b2'], [ROOT_INO, 'victim']]);

    meta.close();
    meta = MetaStore.open(directory, OWNER);
    expect(meta.parentOf(b)).toBe(c);
    expect(meta.pathOf(file)).toBe('/victim');
    expect(meta.parentOf(ROOT_INO)).toBe(ROOT_INO);
  });

  it('follow an exchange of a directory and a file across directories', () => {
    const left = make(ROOT_INO, 'left', DIR_MODE);
    const right = make(ROOT_INO, 'right', DIR_MODE);
    const sub = make(left, 'sub', DIR_MODE);
    const file = make(right, 'file');
    rename(left, 'sub', right, 'file', RENAME_EXCHANGE);
    expect(meta.parentOf(sub)).toBe(right);
    expect(meta.pathOf(sub)).toBe('/right/file');
    expect(meta.pathOf(file)).toBe('/left/sub');
    expect(hintsOf([sub, file])).toEqual([[right, 'file'], [left, 'sub']]);
  });

  it('of a hard-linked file find its other link once the hinted one is unlinked', () => {
    const dir = make(ROOT_INO, 'd', DIR_MODE);
    const file = make(dir, 'first');
    meta.link(file, ROOT_INO, 'second', 100);
    meta.link(file, dir, 'third', 100);
    expect(hintsOf([file])).toEqual([[dir, 'third']]);
    // The newest link is the hint; unlinking it leaves the hint stale.
    meta.unlink(dir, 'third');
    expect(meta.pathOf(file)).toMatch(/^\/(d\/first|second)$/);
    meta.unlink(dir, 'first');
    expect(meta.pathOf(file)).toBe('/second');
    meta.unlink(ROOT_INO, 'second');
    expect(meta.pathOf(file)).toBe(`<inode ${file}>`);
  });

  it('of a file reattached by fsck are where it was put', () => {
    const file = make(ROOT_INO, 'f');
    meta.removeDirent(ROOT_INO, 'f');
    expect(meta.pathOf(file)).toBe(`<inode ${file}>`);
    const found = make(ROOT_INO, 'lost+found', DIR_MODE);
    meta.addDirent(found, `#${file}`, file);
    expect(meta.pathOf(file)).toBe(`/lost+found/#${file}`);
    expect(hintsOf([file])).toEqual([[found, `#${file}`]]);
  });
});
