/**
 * A write-back that fails: blocks stored through the page cache (an NBD volume's) whose
 * drive then refuses their write-back are stored again, durably, before a sync succeeds; and
 * while they cannot be, every sync fails. Linux reports a failed write-back to one fsync only,
 * so a second sync of the same shard files would succeed without the bytes on the drive.
 *
 * Method: a real drive that fails writes, no mocks: bucket "bad" is an ext4 filesystem on a
 * loop device whose backing file lies on a tmpfs, which is then shrunk to what it holds: the
 * loop device fails (ENOSPC from the tmpfs) the write-back of all new data while ext4 itself
 * still has room and takes the buffered writes. No room at all, not a little: the loop driver
 * reports a write that the tmpfs took only part of as a success (lo_complete_rq), which would
 * make the drive lose data without an error. Needs root (mount, losetup).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/index.js';
import { openFilesystem, type OpenFilesystem } from '../daemon/open.js';
import { dropPages } from '../../test/helpers/page-cache.js';

const BLOCK_BYTES = 1024 * 1024;
const BLOCKS = 8;

let root: string;
let loopDevice: string | undefined;
let filesystem: OpenFilesystem | undefined;

/** An ext4 filesystem at `root/drive` on a loop device backed by `root/backing/drive.img`. */
function makeDrive(): void {
  const backing = join(root, 'backing');
  const drive = join(root, 'drive');
  mkdirSync(backing);
  mkdirSync(drive);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256m', 'shmr-test', backing]);
  const image = join(backing, 'drive.img');
  closeSync(openSync(image, 'w'));
  truncateSync(image, 256 * 1024 * 1024);
  loopDevice = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
  // No journal (a failed journal write would stop the whole filesystem, not one file's data);
  // inode tables written now, so that later writes to them need no new room on the tmpfs;
  // blocks of a page each (mkfs makes 1 KiB ones this small): new data never shares a tmpfs
  // page with bytes written before, which would let a write start in room it has (see above).
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-O', '^has_journal', '-N', '256', '-E', 'lazy_itable_init=0', loopDevice]);
  execFileSync('mount', [loopDevice, drive]);
  mkdirSync(join(drive, 'bucket'));
}

/** From now on the drive fails the write-back of anything new. */
function failDriveWrites(): void {
  // This filesystem only (syncfs): a global sync would hold up page-cache drops in parallel tests.
  execFileSync('sync', ['-f', join(root, 'drive')]);
  const usedBytes = statSync(join(root, 'backing', 'drive.img')).blocks * 512;
  execFileSync('mount', ['-o', `remount,size=${usedBytes}`, join(root, 'backing')]);
}

function repairDrive(): void {
  execFileSync('mount', ['-o', 'remount,size=256m', join(root, 'backing')]);
}

beforeEach(() => {
  if (process.getuid?.() !== 0) throw new Error('sync-failure tests need root (mount, losetup)');
  root = mkdtempSync(join(tmpdir(), 'shmr-sync-failure-'));
  mkdirSync(join(root, 'good'));
  makeDrive();
});

afterEach(() => {
  filesystem?.close();
  filesystem = undefined;
  // Each step whatever became of the others: a setup that failed halfway leaves less to undo.
  const quietly = (command: string, args: string[]) => {
    try {
      execFileSync(command, args, { stdio: 'ignore' });
    } catch {
      // Not mounted or not attached: nothing to undo.
    }
  };
  // Lazily: a descriptor the store closes asynchronously must not keep the mounts behind.
  quietly('umount', ['-l', join(root, 'drive')]);
  if (loopDevice !== undefined) quietly('losetup', ['-d', loopDevice]);
  loopDevice = undefined;
  quietly('umount', ['-l', join(root, 'backing')]);
  rmSync(root, { recursive: true, force: true });
});

/** A Single pool whose blocks go to "bad" first; "good" only when asked. */
function open(options: { withGoodBucket: boolean }): OpenFilesystem {
  filesystem?.close();
  const good = options.withGoodBucket ? ', good: { path: ./good }' : '';
  const bad = 'bad: { path: ./drive/bucket, priority: prioritize }';
  filesystem = openFilesystem(parseConfig(`
mount_dir: ./mnt
metadata_dir: ./meta
write_pool: plain
pools:
  plain: { topology: single, block_size: 1MiB, buckets: { ${bad}${good} } }
`, { source: 'test', baseDir: root }));
  return filesystem;
}

/** A file written as a volume is (through the page cache). */
async function writeVolumeFile(fs: OpenFilesystem, name: string, model: Buffer): Promise<number> {
  const { ino } = fs.meta.createInode({ parent: 1, name, mode: 0o100600, uid: 0, gid: 0 });
  fs.files.markVolume(ino);
  await fs.files.write(ino, 0, model);
  expect(bucketsOf(fs, ino)).toEqual(Array(BLOCKS).fill('bad'));
  return ino;
}

function bucketsOf(fs: OpenFilesystem, ino: number): string[] {
  return fs.meta.listBlocks(ino).map((block) => block.buckets.join());
}

async function readBack(fs: OpenFilesystem, ino: number): Promise<Buffer> {
  const target = Buffer.alloc(BLOCKS * BLOCK_BYTES);
  expect(await fs.files.read(ino, 0, target.byteLength, target)).toBe(target.byteLength);
  return target;
}

describe('a failed write-back', () => {
  it('stores the blocks of every file again in another bucket before the sync succeeds', async () => {
    const fs = open({ withGoodBucket: true });
    failDriveWrites();
    const models = [randomBytes(BLOCKS * BLOCK_BYTES), randomBytes(BLOCKS * BLOCK_BYTES)];
    const inodes = [await writeVolumeFile(fs, 'a', models[0]!), await writeVolumeFile(fs, 'b', models[1]!)];
    // File by file: the first file's failures take the bucket out of service before the
    // second file's blocks are read back from it (a rescue reads it all the same).
    await fs.files.syncAll();
    // Every write-back failed: every block moved.
    for (const ino of inodes) expect(bucketsOf(fs, ino)).toEqual(Array(BLOCKS).fill('good'));
    expect(fs.pools.bucket('bad')?.state).toBe('failed');
    for (const ino of inodes) fs.files.release(ino);
    // Read from the drives, not from this process's cache.
    const reopened = open({ withGoodBucket: true });
    for (const [index, ino] of inodes.entries()) expect((await readBack(reopened, ino)).equals(models[index]!)).toBe(true);
  });

  it('fails every sync while the blocks cannot be stored again, and succeeds once they can', async () => {
    const fs = open({ withGoodBucket: false });
    failDriveWrites();
    const model = randomBytes(BLOCKS * BLOCK_BYTES);
    const ino = await writeVolumeFile(fs, 'volume', model);
    // Two at once: the second waits for the first's attempts, it does not find nothing to do.
    const syncs = await Promise.allSettled([fs.files.flush(ino, { sync: true }), fs.files.flush(ino, { sync: true })]);
    expect(syncs.map((sync) => sync.status === 'rejected' && (sync.reason as { code?: string }).code)).toEqual(['EIO', 'EIO']);
    // Before: a sync after a failed one found nothing to do and succeeded.
    await expect(fs.files.flush(ino, { sync: true })).rejects.toMatchObject({ code: 'EIO' });
    // Never wrong bytes meanwhile: the bytes, or EIO from a bucket out of service.
    const meanwhile = await readBack(fs, ino).then((bytes) => bytes.equals(model), (error: { code?: string }) => error.code);
    expect([true, 'EIO']).toContain(meanwhile);
    repairDrive();
    fs.pools.probe(fs.meta.filesystemUuid);
    await fs.files.flush(ino, { sync: true });
    expect(fs.pools.bucket('bad')?.state).toBe('ok');
    fs.files.release(ino);
    // The bytes reached the drive: dropped from the page cache, they read back the same.
    for (const block of fs.meta.listBlocks(ino)) dropPages(fs.blocks.location(block, 0).path);
    const reopened = open({ withGoodBucket: false });
    expect((await readBack(reopened, ino)).equals(model)).toBe(true);
  });
});
