/**
 * Cached data of a file unlinked while open is never stored once its last handle closes:
 * nothing can read it again. The kernel sends RELEASE after close(2) returns, so an unlink right
 * after a close may reach the daemon before it or after it, and the FORGET that deletes the
 * inode may come after the unmount: storing the data then spent writes, and on a full pool
 * failed the unmount. A volume unlinked through the mount is still readable and writable by
 * the NBD connection serving it, until that connection closes.
 * Method: a real metadata and file store in a temp folder, the filesystem's ops called in the
 * orders the kernel may send them, shard files counted in the bucket; a failing store is a
 * bucket folder replaced by a plain file.
 */
import { randomBytes } from 'node:crypto';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openBlockFixture, type BlockFixture } from '../../test/helpers/block-fixture.js';
import { assert } from '../assert.js';
import { shutDown } from '../daemon/mount.js';
import { ROOT_INO } from '../meta/index.js';
import { createVolume, VolumeCatalog, VOLUMES_DIRECTORY } from '../nbd/index.js';
import { shardFilesOf } from '../tasks/fsck.js';
import { ENTRY_ABSENT } from './binding.js';
import { ShmrFilesystem } from './filesystem.js';

const REQUEST = { uid: 0, gid: 0, pid: 1, umask: 0 };
const S_IFREG = 0o100000;
const O_WRONLY = 0o1;
const MIB = 1024 * 1024;
/** Less than a block: it stays cached until a flush, a release or the unmount stores it. */
const BYTES = Buffer.alloc(100_000, 0x42);

let fixture: BlockFixture;
let filesystem: ShmrFilesystem;

beforeEach(() => {
  fixture = openBlockFixture('unlinked-data', { ssd: { topology: 'single', buckets: 1 } });
  const fs = fixture.filesystem;
  filesystem = new ShmrFilesystem({
    meta: fs.meta, files: fs.files, pools: fs.pools, options: { entryTimeoutSec: 60, attrTimeoutSec: 60 },
  });
});

afterEach(() => {
  // Each test closed the store (shutDown).
  rmSync(fixture.root, { recursive: true, force: true });
});

function shardsOf(ino: number): string[] {
  return shardFilesOf(join(fixture.root, 'ssd0')).filter((path) => basename(path).startsWith(`${ino}-`));
}

/** A new file `name` holding BYTES in the cache, open for writing. */
async function writtenFile(name: string): Promise<{ ino: number; fh: number }> {
  const file = filesystem.create(REQUEST, ROOT_INO, name, S_IFREG | 0o644, O_WRONLY);
  await filesystem.write(REQUEST, file.ino, BYTES, 0, file.fh);
  return file;
}

describe('data of an unlinked file', () => {
  it('is dropped, not stored, at the last release after the unlink; a linked file is stored at unmount', async () => {
    const fs = fixture.filesystem;
    const gone = await writtenFile('gone');
    await filesystem.unlink(REQUEST, ROOT_INO, 'gone');
    await filesystem.release(REQUEST, gone.ino, gone.fh);
    expect(fs.files.overlay(gone.ino)).toBeUndefined();
    expect(shardsOf(gone.ino)).toEqual([]);
    // The kernel still holds the inode (no FORGET yet): its row waits, with nlink 0.
    expect(fs.meta.listOrphans()).toEqual([gone.ino]);
    const kept = await writtenFile('kept');
    expect(shardsOf(kept.ino)).toEqual([]);
    expect(await shutDown(fs, fs.config)).toBe(0);
    expect(shardsOf(gone.ino)).toEqual([]);
    expect(shardsOf(kept.ino)).toHaveLength(1);
  });

  it('is dropped at unmount when its store at release failed and the unlink came after', async () => {
    const fs = fixture.filesystem;
    const gone = await writtenFile('gone');
    const bucket = join(fixture.root, 'ssd0');
    renameSync(bucket, `${bucket}.away`);
    writeFileSync(bucket, 'not a folder');
    // The store fails and is logged; the data stays cached for a retry.
    await filesystem.release(REQUEST, gone.ino, gone.fh);
    expect(fs.files.overlay(gone.ino)).toBeDefined();
    await filesystem.unlink(REQUEST, ROOT_INO, 'gone');
    rmSync(bucket);
    renameSync(`${bucket}.away`, bucket);
    expect(fs.pools.probe(fs.meta.filesystemUuid)).toHaveLength(1);
    expect(await shutDown(fs, fs.config)).toBe(0);
    expect(shardsOf(gone.ino)).toEqual([]);
  });

  it('of a volume unlinked through the mount while NBD serves it lives until the connection closes', async () => {
    const fs = fixture.filesystem;
    const volume = await createVolume(fs, { name: 'disk', sizeBytes: 4 * MIB, blockBytes: MIB });
    // Wired as the mount does.
    let deleted: Promise<void> | undefined;
    const catalog = new VolumeCatalog(fs, { onIdle: (ino) => { deleted = filesystem.releasedElsewhere(ino); } });
    filesystem.isUsedElsewhere = (ino) => catalog.exportCount(ino) > 0;
    const target = catalog.open('disk');
    assert(target !== undefined);
    const data = randomBytes(MIB);
    await (await target.write(0, data)).released;
    const directory = filesystem.lookup(REQUEST, ROOT_INO, VOLUMES_DIRECTORY);
    assert(directory !== ENTRY_ABSENT);
    await filesystem.unlink(REQUEST, directory.ino, 'disk');
    expect(fs.meta.getInode(volume.ino)?.nlink).toBe(0);
    await (await target.write(MIB, data)).released;
    await target.flush();
    const readBack = Buffer.alloc(2 * MIB);
    await target.read(0, 2 * MIB, readBack);
    expect(readBack.equals(Buffer.concat([data, data]))).toBe(true);
    target.release();
    await deleted;
    expect(fs.meta.getInode(volume.ino)).toBeUndefined();
    expect(fs.meta.listOrphans()).toEqual([]);
    fs.close();
  });
});
