/**
 * Creating and unlinking entries with the fewest statements: create finds a taken name through
 * the entries' key (parent, name), unlink finds and removes its entry in one statement, and deleting
 * an inode skips the block and xattr queries when it has neither. Each shortcut must still
 * fail without a trace (the transaction rolls back) and delete everything an inode owns.
 * Method: a real SQLite store in a temporary folder, reopened to see what was committed.
 */
import { describe, expect, it } from 'vitest';
import { folderPerTest } from '../../test/helpers/temp-folder.js';
import { Errno } from '../errno.js';
import { MetaStore, now, type BlockRecord } from './index.js';

const OWNER = { uid: 0, gid: 0 };
const FILE_MODE = 0o100644;
const DIR_MODE = 0o040755;
const testFolder = folderPerTest('shmr-entries-');

function newFile(meta: MetaStore, parent: number, name: string): number {
  return meta.createInode({ parent, name, mode: FILE_MODE, uid: 0, gid: 0 }).ino;
}

function block(ino: number, blockIndex: number): BlockRecord {
  return { ino, blockIndex, pool: 'p', topology: 'single', generation: 1, dataBytes: 4096, storedBytes: 4096, buckets: ['b0'] };
}

/** Runs `body` on the store, closes it, and returns a fresh view of what it committed. */
function committedAfter(body: (meta: MetaStore) => void): MetaStore {
  const meta = MetaStore.open(testFolder(), OWNER);
  try {
    body(meta);
  } finally {
    meta.close();
  }
  return MetaStore.open(testFolder(), OWNER);
}

describe('create', () => {
  it('of a taken name fails with EEXIST and leaves no inode and an unchanged directory', () => {
    let firstIno = 0;
    let inodesBefore = 0;
    let directoryBefore = { nlink: 0, mtimeSec: 0, mtimeNsec: 0 };
    const reopened = committedAfter((meta) => {
      const dir = meta.createInode({ parent: 1, name: 'd', mode: DIR_MODE, uid: 0, gid: 0 });
      firstIno = newFile(meta, dir.ino, 'f');
      inodesBefore = meta.countInodes();
      const current = meta.requireInode(dir.ino, 'test');
      directoryBefore = { nlink: current.nlink, mtimeSec: current.mtime.sec, mtimeNsec: current.mtime.nsec };
      for (const mode of [FILE_MODE, DIR_MODE]) {
        expect(() => meta.createInode({ parent: dir.ino, name: 'f', mode, uid: 0, gid: 0 }))
          .toThrow(expect.objectContaining({ errno: Errno.EEXIST }) as Error);
      }
      expect(meta.countInodes()).toBe(inodesBefore);
      const after = meta.requireInode(dir.ino, 'test');
      expect({ nlink: after.nlink, mtimeSec: after.mtime.sec, mtimeNsec: after.mtime.nsec }).toEqual(directoryBefore);
    });
    try {
      const dir = reopened.lookup(1, 'd') ?? 0;
      expect(reopened.lookup(dir, 'f')).toBe(firstIno);
      expect(reopened.countInodes()).toBe(inodesBefore);
      expect(reopened.requireInode(dir, 'test').nlink).toBe(directoryBefore.nlink);
      // The numbers the two failed creates took are skipped, never handed out again.
      expect(newFile(reopened, dir, 'g')).toBeGreaterThan(firstIno + 2);
    } finally {
      reopened.close();
    }
  });
});

describe('unlink', () => {
  it('of a missing name is ENOENT and of a directory EISDIR, removing nothing', () => {
    const reopened = committedAfter((meta) => {
      const dir = meta.createInode({ parent: 1, name: 'd', mode: DIR_MODE, uid: 0, gid: 0 });
      expect(() => meta.unlink(1, 'absent')).toThrow(expect.objectContaining({ errno: Errno.ENOENT }) as Error);
      expect(() => meta.unlinkAndDeleteUnused(1, 'd', () => true))
        .toThrow(expect.objectContaining({ errno: Errno.EISDIR }) as Error);
      expect(meta.lookup(1, 'd')).toBe(dir.ino);
      expect(meta.requireInode(dir.ino, 'test').nlink).toBe(2);
    });
    try {
      const dir = reopened.lookup(1, 'd');
      expect(dir).toBeDefined();
      expect(reopened.requireInode(dir ?? 0, 'test').nlink).toBe(2);
      expect(reopened.requireInode(1, 'test').nlink).toBe(3);
    } finally {
      reopened.close();
    }
  });

  it('deletes the blocks (as tombstones) and xattrs of a file, also of a store reopened with them', () => {
    let withData = 0;
    let withXattr = 0;
    const reopened = committedAfter((meta) => {
      withData = newFile(meta, 1, 'data');
      withXattr = newFile(meta, 1, 'xattr');
      const time = now();
      meta.commitBlock(block(withData, 0), { blockBytes: 1 << 20, size: 4096, mtime: time, ctime: time });
      meta.setXattr(withXattr, 'user.k', Buffer.from('v'), 0);
    });
    try {
      // The reopened store learns from the table that xattrs exist.
      expect(reopened.hasXattrNamed('user.k')).toBe(true);
      expect(reopened.unlinkAndDeleteUnused(1, 'xattr', () => true).isDeleted).toBe(true);
      expect(reopened.getXattr(withXattr, 'user.k')).toBeUndefined();
      expect(reopened.hasXattrNamed('user.k')).toBe(false);
      expect(reopened.unlinkAndDeleteUnused(1, 'data', () => true).isDeleted).toBe(true);
      expect(reopened.listBlocks(withData)).toEqual([]);
      expect(reopened.listTombstones(withData).map((tombstone) => tombstone.reason)).toEqual(['deleted']);
      expect(reopened.getInode(withData)).toBeUndefined();
    } finally {
      reopened.close();
    }
  });

  it('of a file whose xattr came after the store opened deletes the xattr', () => {
    const meta = MetaStore.open(testFolder(), OWNER);
    try {
      const ino = newFile(meta, 1, 'f');
      meta.setXattr(ino, 'user.late', Buffer.from('v'), 0);
      expect(meta.unlinkAndDeleteUnused(1, 'f', () => true).isDeleted).toBe(true);
      expect(meta.getXattr(ino, 'user.late')).toBeUndefined();
      expect(meta.hasXattrNamed('user.late')).toBe(false);
    } finally {
      meta.close();
    }
  });
});
