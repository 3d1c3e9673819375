/**
 * Cached data of a file unlinked while open is never stored once its last handle closes:
 * nothing can read it again. The kernel sends RELEASE after close(2) returns, so an unlink right
 * after a close may reach the daemon first, and the FORGET that deletes the inode may come
 * after the unmount: storing the data then spent writes, and on a full pool failed the unmount.
 * Method: a real metadata and file store in a temp folder, the filesystem's ops called in the
 * order the kernel may send them, shard files counted in the bucket.
 */
import { rmSync } from 'node:fs';
import { basename } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openBlockFixture } from '../../test/helpers/block-fixture.js';
import { shutDown } from '../daemon/mount.js';
import { ROOT_INO } from '../meta/index.js';
import { shardFilesOf } from '../tasks/fsck.js';
import { ShmrFilesystem } from './filesystem.js';

const REQUEST = { uid: 0, gid: 0, pid: 1, umask: 0 };
const S_IFREG = 0o100000;
const O_WRONLY = 0o1;

describe('data of an unlinked file', () => {
  it('is dropped, not stored, at the last release and at unmount; a linked file is stored', async () => {
    const fixture = openBlockFixture('unlinked-data', { ssd: { topology: 'single', buckets: 1 } });
    try {
      const fs = fixture.filesystem;
      const filesystem = new ShmrFilesystem({
        meta: fs.meta, files: fs.files, pools: fs.pools, options: { entryTimeoutSec: 60, attrTimeoutSec: 60 },
      });
      const bucket = `${fixture.root}/ssd0`;
      const shardsOf = (ino: number) => shardFilesOf(bucket).filter((path) => basename(path).startsWith(`${ino}-`));
      // Less than a block: it stays cached until a flush, a release or the unmount stores it.
      const bytes = Buffer.alloc(100_000, 0x42);

      const gone = filesystem.create(REQUEST, ROOT_INO, 'gone', S_IFREG | 0o644, O_WRONLY);
      await filesystem.write(REQUEST, gone.ino, bytes, 0, gone.fh);
      await filesystem.unlink(REQUEST, ROOT_INO, 'gone');
      await filesystem.release(REQUEST, gone.ino, gone.fh);
      expect(shardsOf(gone.ino)).toEqual([]);
      // The kernel still holds the inode (no FORGET yet): its row waits, with nlink 0.
      expect(fs.meta.listOrphans()).toEqual([gone.ino]);

      const kept = filesystem.create(REQUEST, ROOT_INO, 'kept', S_IFREG | 0o644, O_WRONLY);
      await filesystem.write(REQUEST, kept.ino, bytes, 0, kept.fh);
      expect(shardsOf(kept.ino)).toEqual([]);

      expect(await shutDown(fs, fs.config)).toBe(0);
      expect(shardsOf(gone.ino)).toEqual([]);
      expect(shardsOf(kept.ino)).toHaveLength(1);
    } finally {
      rmSync(fixture.root, { recursive: true, force: true });
    }
  });
});
