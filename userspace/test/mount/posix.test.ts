/**
 * POSIX operations through a real mount, each compared with what Linux's own filesystems do:
 * names, links, renames, permissions, timestamps, xattrs, statfs, fallocate, and access by
 * another user under the kernel's permission checks (allow_other + default_permissions).
 */
import { execFileSync } from 'node:child_process';
import {
  appendFileSync, chmodSync, chownSync, closeSync, ftruncateSync, fstatSync, linkSync, lstatSync, mkdirSync,
  openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmdirSync, statSync, statfsSync,
  symlinkSync, truncateSync, unlinkSync, utimesSync, writeFileSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { withMount, sleep } from '../helpers/mount.js';

/** Runs a Python snippet (for syscalls Node lacks: xattrs, mknod, renameat2, fallocate). */
function python(code: string): string {
  return execFileSync('python3', ['-c', code], { encoding: 'utf8' });
}

function errnoOf(body: () => unknown): string | undefined {
  try {
    body();
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code;
  }
}

describe('posix operations', () => {
  it('creates, lists, links, renames and removes like ext4', async () => {
    await withMount({}, async ({ mountpoint: root }) => {
      mkdirSync(join(root, 'a/b/c'), { recursive: true });
      writeFileSync(join(root, 'a/f'), 'one');
      expect(errnoOf(() => mkdirSync(join(root, 'a')))).toBe('EEXIST');
      expect(errnoOf(() => rmdirSync(join(root, 'a')))).toBe('ENOTEMPTY');
      expect(errnoOf(() => unlinkSync(join(root, 'a/b')))).toBe('EISDIR');
      expect(errnoOf(() => readFileSync(join(root, 'nope')))).toBe('ENOENT');
      expect(errnoOf(() => writeFileSync(join(root, 'x'.repeat(256)), ''))).toBe('ENAMETOOLONG');
      expect(statSync(join(root, 'a')).nlink).toBe(3);
      expect(readdirSync(join(root, 'a')).sort()).toEqual(['b', 'f']);

      linkSync(join(root, 'a/f'), join(root, 'a/g'));
      expect(statSync(join(root, 'a/f')).nlink).toBe(2);
      expect(statSync(join(root, 'a/g')).ino).toBe(statSync(join(root, 'a/f')).ino);
      expect(errnoOf(() => linkSync(join(root, 'a/b'), join(root, 'a/bb')))).toBe('EPERM');
      unlinkSync(join(root, 'a/f'));
      expect(readFileSync(join(root, 'a/g'), 'utf8')).toBe('one');
      expect(statSync(join(root, 'a/g')).nlink).toBe(1);

      symlinkSync('../g', join(root, 'a/b/l'));
      expect(readlinkSync(join(root, 'a/b/l'))).toBe('../g');
      expect(readFileSync(join(root, 'a/b/l'), 'utf8')).toBe('one');
      expect(lstatSync(join(root, 'a/b/l')).size).toBe(4);

      // rename: over a file, over an empty directory, across directories, into itself.
      writeFileSync(join(root, 'a/h'), 'two');
      renameSync(join(root, 'a/h'), join(root, 'a/g'));
      expect(readFileSync(join(root, 'a/g'), 'utf8')).toBe('two');
      mkdirSync(join(root, 'empty'));
      renameSync(join(root, 'a/b/c'), join(root, 'empty'));
      expect(statSync(join(root, 'a/b')).nlink).toBe(2);
      expect(errnoOf(() => renameSync(join(root, 'a'), join(root, 'a/b/inside')))).toBe('EINVAL');
      expect(errnoOf(() => renameSync(join(root, 'a'), join(root, 'empty')))).toBeUndefined();
      mkdirSync(join(root, 'full/sub'), { recursive: true });
      expect(errnoOf(() => renameSync(join(root, 'empty'), join(root, 'full')))).toBe('ENOTEMPTY');
      expect(errnoOf(() => renameSync(join(root, 'empty/g'), join(root, 'full')))).toBe('EISDIR');
      expect(errnoOf(() => renameSync(join(root, 'full'), join(root, 'empty/g')))).toBe('ENOTDIR');
      rmdirSync(join(root, 'full/sub'));
      rmdirSync(join(root, 'full'));
      expect(readdirSync(root).sort()).toEqual(['_stat', 'empty']);
    });
  });

  it('honours RENAME_NOREPLACE and RENAME_EXCHANGE', async () => {
    await withMount({}, async ({ mountpoint: root }) => {
      writeFileSync(join(root, 'x'), 'x');
      writeFileSync(join(root, 'y'), 'y');
      const result = python(`
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def renameat2(a, b, flags):
    r = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)
    return 0 if r == 0 else ctypes.get_errno()
print(renameat2('${root}/x', '${root}/y', 1), renameat2('${root}/x', '${root}/y', 2))
`).trim();
      expect(result).toBe('17 0');
      expect(readFileSync(join(root, 'x'), 'utf8')).toBe('y');
      expect(readFileSync(join(root, 'y'), 'utf8')).toBe('x');
    });
  });

  it('keeps mode, owner and timestamps by the POSIX rules', async () => {
    await withMount({}, async ({ mountpoint: root }) => {
      const path = join(root, 'f');
      writeFileSync(path, 'data');
      chmodSync(path, 0o640);
      chownSync(path, 1234, 5678);
      const afterChown = statSync(path);
      expect(afterChown.mode & 0o7777).toBe(0o640);
      expect([afterChown.uid, afterChown.gid]).toEqual([1234, 5678]);
      utimesSync(path, new Date('2001-02-03T04:05:06.789Z'), new Date('2010-01-01T00:00:00.5Z'));
      const times = statSync(path);
      expect(times.atime.toISOString()).toBe('2001-02-03T04:05:06.789Z');
      expect(times.mtime.toISOString()).toBe('2010-01-01T00:00:00.500Z');
      // utimensat with UTIME_OMIT for atime changes only mtime.
      python(`import os; os.utime('${path}', ns=(${times.atimeMs * 1e6}, 1234567890123456789))`);
      expect(statSync(path, { bigint: true }).mtimeNs).toBe(1234567890123456789n);
      const before = statSync(path);
      await sleep(20);
      appendFileSync(path, 'more');
      const after = statSync(path);
      expect(after.mtimeMs).toBeGreaterThan(before.mtimeMs);
      expect(after.ctimeMs).toBeGreaterThanOrEqual(after.mtimeMs);
      expect(after.size).toBe(8);
      const dirBefore = statSync(root).mtimeMs;
      await sleep(20);
      writeFileSync(join(root, 'g'), '');
      expect(statSync(root).mtimeMs).toBeGreaterThan(dirBefore);
      truncateSync(path, 2);
      expect(readFileSync(path, 'utf8')).toBe('da');
      const fd = openSync(path, 'r+');
      ftruncateSync(fd, 10_000);
      expect(fstatSync(fd).size).toBe(10_000);
      closeSync(fd);
      expect(readFileSync(path).subarray(2).every((byte) => byte === 0)).toBe(true);
    });
  });

  it('moves atime by the relatime rule on reads that reach the filesystem', async () => {
    await withMount({}, async (mount) => {
      const path = join(mount.mountpoint, 'f');
      writeFileSync(path, 'data');
      utimesSync(path, new Date('2001-01-01T00:00:00Z'), new Date('2020-01-01T00:00:00Z'));
      // A fresh mount has no page cache, so the read reaches the daemon.
      await mount.remount();
      readFileSync(path);
      expect(statSync(path).atimeMs).toBeGreaterThan(Date.parse('2020-01-01T00:00:00Z'));
      expect(statSync(path).mtime.toISOString()).toBe('2020-01-01T00:00:00.000Z');
    });
  });

  it('stores extended attributes with create/replace semantics', async () => {
    await withMount({}, async ({ mountpoint: root }) => {
      const path = join(root, 'f');
      writeFileSync(path, '');
      const out = python(`
import os
p = '${path}'
os.setxattr(p, 'user.a', b'1')
os.setxattr(p, 'user.b', b'x' * 1000)
r = []
try: os.setxattr(p, 'user.a', b'2', os.XATTR_CREATE)
except OSError as e: r.append(e.errno)
try: os.setxattr(p, 'user.c', b'2', os.XATTR_REPLACE)
except OSError as e: r.append(e.errno)
r.append(sorted(os.listxattr(p)))
r.append(os.getxattr(p, 'user.a'))
os.removexattr(p, 'user.a')
try: os.getxattr(p, 'user.a')
except OSError as e: r.append(e.errno)
try: os.getxattr(p, 'security.capability')
except OSError as e: r.append(e.errno)
print(r)
`).trim();
      expect(out).toBe("[17, 61, ['user.a', 'user.b'], b'1', 61, 61]");
    });
  });

  it('reports the pools real space in statfs and supports fallocate', async () => {
    await withMount({}, async ({ mountpoint: root, buckets }) => {
      const pool = statfsSync(Object.values(buckets)[0] ?? '/');
      const mounted = statfsSync(root);
      expect(mounted.blocks * mounted.bsize).toBe(pool.blocks * pool.bsize);
      expect(Math.abs(mounted.bavail * mounted.bsize - pool.bavail * pool.bsize)).toBeLessThan(256 * 1024 * 1024);
      const path = join(root, 'f');
      writeFileSync(path, Buffer.alloc(300_000, 0x61));
      python(`
import os
fd = os.open('${path}', os.O_RDWR)
os.posix_fallocate(fd, 0, 1000000)
os.close(fd)`);
      expect(statSync(path).size).toBe(1_000_000);
      const content = readFileSync(path);
      expect(content.subarray(0, 300_000).every((byte) => byte === 0x61)).toBe(true);
      expect(content.subarray(300_000).every((byte) => byte === 0)).toBe(true);
      // Punch a hole (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) through ctypes.
      python(`
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open('${path}', os.O_RDWR)
assert libc.fallocate(fd, 3, ctypes.c_long(100), ctypes.c_long(1000)) == 0, ctypes.get_errno()
os.close(fd)`);
      const punched = readFileSync(path);
      expect(punched.subarray(100, 1100).every((byte) => byte === 0)).toBe(true);
      expect(punched[99]).toBe(0x61);
      expect(punched[1100]).toBe(0x61);
    });
  });

  it('supports fifos and device nodes, O_APPEND and O_TRUNC', async () => {
    await withMount({}, async ({ mountpoint: root }) => {
      python(`import os; os.mkfifo('${root}/fifo'); os.mknod('${root}/dev', 0o20644, os.makedev(1, 3))`);
      expect(statSync(join(root, 'fifo')).isFIFO()).toBe(true);
      expect(statSync(join(root, 'dev')).rdev).toBe(259);
      const path = join(root, 'log');
      writeFileSync(path, 'abc');
      const fd = openSync(path, 'a');
      writeSync(fd, 'def', 0);
      closeSync(fd);
      expect(readFileSync(path, 'utf8')).toBe('abcdef');
      writeFileSync(path, 'x');
      expect(readFileSync(path, 'utf8')).toBe('x');
    });
  });

  it('lets other users in under normal permission checks', async () => {
    await withMount({}, async ({ mountpoint: root, root: testRoot }) => {
      chmodSync(testRoot, 0o755);
      writeFileSync(join(root, 'public'), 'hello');
      writeFileSync(join(root, 'secret'), 'no');
      chmodSync(join(root, 'secret'), 0o600);
      chmodSync(root, 0o755);
      const asNobody = (code: string) =>
        execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-c', code], { encoding: 'utf8' }).trim();
      expect(asNobody(`print(open('${root}/public').read())`)).toBe('hello');
      expect(asNobody(`
try: open('${root}/secret').read(); print('read')
except PermissionError: print('EACCES')`)).toBe('EACCES');
      expect(asNobody(`
try: open('${root}/new', 'w'); print('created')
except PermissionError: print('EACCES')`)).toBe('EACCES');
    });
  });

  it('handles 10,000 files open at once and many small files', async () => {
    await withMount({}, async ({ mountpoint: root }) => {
      mkdirSync(join(root, 'many'));
      const fds: number[] = [];
      try {
        for (let index = 0; index < 10_000; index++) {
          const fd = openSync(join(root, 'many', `f${index}`), 'w+');
          fds.push(fd);
          writeSync(fd, `file ${index}`);
        }
      } finally {
        for (const fd of fds) closeSync(fd);
      }
      expect(fds.length).toBe(10_000);
      expect(readdirSync(join(root, 'many')).length).toBe(10_000);
      expect(readFileSync(join(root, 'many', 'f9876'), 'utf8')).toBe('file 9876');
      for (let index = 0; index < 10_000; index++) unlinkSync(join(root, 'many', `f${index}`));
      rmdirSync(join(root, 'many'));
    });
  }, 300_000);
});
