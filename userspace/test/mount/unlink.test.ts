/**
 * Unlink and the metadata cache through a real mount: an unopened file's inode goes at its unlink
 * (statfs counts it gone at once) while the kernel, which still holds it through an O_PATH
 * descriptor, keeps getting its attributes; an open file keeps its data until its last close;
 * and after links, renames, chmod, chown, utimes, truncation and unlinks, a kill -9 and a
 * remount show every name with the attributes it had (what the daemon answered from memory
 * was what SQLite held), and fsck finds nothing to repair. An unlinked file still open takes
 * chmod, chown, utimes, writes and truncation through its descriptor (fstat shows them), and
 * a kill -9 while it is open leaves nothing of it after the remount.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync, chownSync, closeSync, constants, fchmodSync, fchownSync, fstatSync, ftruncateSync, futimesSync,
  linkSync, mkdirSync, openSync, readFileSync, readSync, renameSync, statfsSync, statSync, truncateSync,
  unlinkSync, utimesSync, writeFileSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, sleep, statSeries, withMount } from '../helpers/mount.js';

/** Linux O_PATH: a descriptor that holds the inode without opening the file (no FUSE OPEN). */
const O_PATH = 0o10000000;
const RELEASE_WAIT_MS_MAX = 5000;

/** An empty regular file made without opening it (Node has no mknod). */
function mknod(path: string): void {
  execFileSync('python3', ['-c', `import os; os.mknod(${JSON.stringify(path)}, 0o100640)`]);
}

function inodesUsed(root: string): number {
  const stats = statfsSync(root);
  return stats.files - stats.ffree;
}

/** The attributes a remount must keep, per path. */
function attributesOf(root: string, paths: readonly string[]): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const path of paths) {
    const stats = statSync(join(root, path));
    result[path] = {
      ino: stats.ino, mode: stats.mode, nlink: stats.nlink, uid: stats.uid, gid: stats.gid,
      size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs,
    };
  }
  return result;
}

describe('unlink', () => {
  it('deletes a closed file at once and still answers the kernel about it', async () => {
    await withMount({}, async ({ mountpoint: root }) => {
      // Made by mknod: never opened, so no RELEASE can still be on its way at the unlink.
      const path = join(root, 'f');
      mknod(path);
      utimesSync(path, new Date(1_000_000_000_000), new Date(1_000_000_000_000));
      const before = statSync(path);
      const used = inodesUsed(root);
      const held = openSync(path, O_PATH);
      await sleep(1200); // a metrics sweep: the counts below start from here
      const timesAnswered = () => statSeries(root, 'fuse_attr_replies_total', 'op="setattr"');
      const answeredBefore = timesAnswered();
      try {
        unlinkSync(path);
        expect(inodesUsed(root)).toBe(used - 1);
        const after = fstatSync(held);
        expect(after.ino).toBe(before.ino);
        expect(after.nlink).toBe(0);
        expect(after.size).toBe(0);
        expect(after.mode).toBe(before.mode);
        expect(after.mtimeMs).toBe(1_000_000_000_000);
        // The kernel's SETATTR of the unlink's ctime (writeback cache), answered by the binding
        // from the attributes handed over at the unlink.
        await sleep(1200);
        expect(timesAnswered()).toBe(answeredBefore + 1);
        // A change through the held descriptor goes to the daemon, which hands the new
        // attributes over again: the binding's next answer (to a SETATTR of times) shows it.
        const fdPath = `/proc/${process.pid}/fd/${held}`;
        chmodSync(fdPath, 0o600);
        execFileSync('touch', ['-m', '-d', '@2000000000', fdPath]);
        await sleep(1200);
        expect(timesAnswered()).toBe(answeredBefore + 2);
        const changed = fstatSync(held);
        expect(changed.mode & 0o7777).toBe(0o600);
        expect(changed.mtimeMs).toBe(2_000_000_000_000);
      } finally {
        closeSync(held);
      }

      // An open file keeps its inode and data until its last close.
      const open = join(root, 'g');
      writeFileSync(open, 'still here');
      const fd = openSync(open, constants.O_RDONLY);
      unlinkSync(open);
      expect(inodesUsed(root)).toBe(used);
      const buffer = Buffer.alloc(32);
      expect(buffer.subarray(0, readSync(fd, buffer, 0, 32, 0)).toString()).toBe('still here');
      expect(fstatSync(fd).nlink).toBe(0);
      closeSync(fd);
      // RELEASE reaches the daemon after close(2) returns.
      for (let waitedMs = 0; inodesUsed(root) !== used - 1; waitedMs += 50) {
        expect(waitedMs).toBeLessThan(RELEASE_WAIT_MS_MAX);
        await sleep(50);
      }
      writeFileSync(path, 'new');
      expect(statSync(path).ino).toBeGreaterThan(before.ino);
    });
  }, 60_000);

  it('keeps every attribute the daemon answered over a kill -9 and remount', async () => {
    await withMount({}, async (mount) => {
      const root = mount.mountpoint;
      mkdirSync(join(root, 'a/b'), { recursive: true });
      for (const name of ['f', 'g', 'h', 'i']) writeFileSync(join(root, 'a', name), name.repeat(1000));
      linkSync(join(root, 'a/f'), join(root, 'a/b/f2'));
      renameSync(join(root, 'a/g'), join(root, 'a/b/g'));
      renameSync(join(root, 'a/h'), join(root, 'a/b/f2'));
      renameSync(join(root, 'a/b'), join(root, 'c'));
      chmodSync(join(root, 'a/f'), 0o600);
      chownSync(join(root, 'a/i'), 1234, 5678);
      utimesSync(join(root, 'c/g'), new Date(1_000_000_000_000), new Date(1_100_000_000_000));
      truncateSync(join(root, 'a/i'), 10);
      // Never opened (mknod): gone at its unlink, with no RELEASE racing the kill.
      mknod(join(root, 'a/gone'));
      unlinkSync(join(root, 'a/gone'));
      const paths = ['a', 'a/f', 'a/i', 'c', 'c/g', 'c/f2'];
      const before = attributesOf(root, paths);
      const used = inodesUsed(root);

      await mount.killAndRemount();

      expect(attributesOf(root, paths)).toEqual(before);
      expect(inodesUsed(root)).toBe(used);
      expect(readFileSync(join(root, 'c/f2'), 'utf8')).toBe('h'.repeat(1000));
      const fsck = await runCli(['fsck', '--config', mount.configPath, '--json']);
      const report = JSON.parse(fsck.stdout) as { problems: string[] };
      expect(report.problems).toEqual([]);
      expect(fsck.code).toBe(0);
    });
  }, 120_000);

  it('changes an unlinked file that is still open, and a kill -9 then leaves nothing of it', async () => {
    await withMount({}, async (mount) => {
      const root = mount.mountpoint;
      const used = inodesUsed(root);
      const path = join(root, 'open');
      writeFileSync(path, 'first');
      const fd = openSync(path, constants.O_RDWR);
      let isClosed = false;
      try {
        unlinkSync(path);
        // Each call is a SETATTR or WRITE of an inode with nlink 0 that is kept for its descriptor.
        fchmodSync(fd, 0o600);
        fchownSync(fd, 1234, 5678);
        writeSync(fd, 'second', 10);
        ftruncateSync(fd, 12);
        futimesSync(fd, new Date(1_000_000_000_000), new Date(1_100_000_000_000));
        const stats = fstatSync(fd);
        expect({
          mode: stats.mode & 0o7777, uid: stats.uid, gid: stats.gid, nlink: stats.nlink, size: stats.size,
          atimeMs: stats.atimeMs, mtimeMs: stats.mtimeMs,
        }).toEqual({ mode: 0o600, uid: 1234, gid: 5678, nlink: 0, size: 12, atimeMs: 1_000_000_000_000, mtimeMs: 1_100_000_000_000 });
        const buffer = Buffer.alloc(32);
        const expected = Buffer.concat([Buffer.from('first'), Buffer.alloc(5), Buffer.from('se')]);
        expect(buffer.subarray(0, readSync(fd, buffer, 0, 32, 0))).toEqual(expected);
        expect(inodesUsed(root)).toBe(used + 1);

        await mount.killAndRemount(() => {
          // The dead mount answers the close's FLUSH with an error; the descriptor goes anyway.
          try { closeSync(fd); } catch { /* ENOTCONN */ }
          isClosed = true;
          return Promise.resolve();
        });
      } finally {
        if (!isClosed) closeSync(fd);
      }

      // The store kept the inode (nlink 0) for the descriptor; the remount deleted that orphan.
      expect(inodesUsed(root)).toBe(used);
      const fsck = await runCli(['fsck', '--config', mount.configPath, '--json']);
      expect((JSON.parse(fsck.stdout) as { problems: string[] }).problems).toEqual([]);
      expect(fsck.code).toBe(0);
    });
  }, 120_000);
});
