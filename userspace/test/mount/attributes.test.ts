/**
 * GETATTRs answered by the binding from attributes the daemon handed over (fuse/attr-cache.ts,
 * native/fuse3/attr_cache.c). What must hold: a stat never shows attributes older than the last
 * change, whatever made it: chmod, chown, utimens, truncation, writes and appends, O_TRUNC,
 * fallocate, hard links made and removed, renames, xattrs, entries made and removed in a
 * directory, the access time a read moves, setuid cleared by another user's write, and a
 * background rewrite that changes a file's stored bytes (st_blocks).
 * Method: a real mount with an attribute timeout of 0, so every stat is a GETATTR that reaches
 * the daemon; before each change the path is stat'ed twice (the binding then holds its
 * attributes: the served counter moves), after it the stat must show the change; at the end
 * every path's attributes must equal what a freshly mounted daemon (nothing held) reports.
 */
import { execFileSync } from 'node:child_process';
import {
  appendFileSync, chmodSync, chownSync, closeSync, constants, linkSync, mkdirSync, openSync, renameSync, rmdirSync,
  statSync, truncateSync, unlinkSync, utimesSync, writeFileSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { callControl } from '../../src/daemon/control.js';
import type { TaskInfo } from '../../src/tasks/task-manager.js';
import { sleep, statSeries, withMount, type Mount } from '../helpers/mount.js';

const MIB = 1024 * 1024;
/** Every stat reaches the daemon. */
const FUSE_YAML = 'fuse: { attr_timeout: 0 }\n';

interface Attributes {
  mode: number; nlink: number; uid: number; gid: number; size: number; blocks: number;
  atimeNs: bigint; mtimeNs: bigint; ctimeNs: bigint;
}

function attributesOf(path: string): Attributes {
  const stat = statSync(path, { bigint: true });
  return {
    mode: Number(stat.mode), nlink: Number(stat.nlink), uid: Number(stat.uid), gid: Number(stat.gid),
    size: Number(stat.size), blocks: Number(stat.blocks), atimeNs: stat.atimeNs, mtimeNs: stat.mtimeNs,
    ctimeNs: stat.ctimeNs,
  };
}

function python(code: string, ...args: string[]): void {
  execFileSync('python3', ['-c', code, ...args]);
}

/** Appends a byte as user nobody (without CAP_FSETID, so the daemon clears setuid/setgid). */
function appendAsNobody(path: string): void {
  execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-c',
    'import sys; open(sys.argv[1], "a").write("x")', path]);
}

/** GETATTRs the binding answered, after a fresh metrics sweep. */
async function attrReplies(mount: Mount): Promise<number> {
  await sleep(1200);
  return statSeries(mount.mountpoint, 'fuse_attr_replies_total', 'op="getattr"');
}

/** One kind of change: what it starts from, the change, what the stat after it must show. */
interface Change {
  readonly setup?: (path: string) => void;
  readonly change: (path: string) => void;
  readonly check: (before: Attributes, after: Attributes) => void;
  /** A directory instead of a file. */
  readonly isDirectory?: boolean;
  /** Runs after the check (closes what the change left open). */
  readonly finish?: () => void;
}

const moved = (before: Attributes, after: Attributes, fields: readonly ('mtimeNs' | 'ctimeNs' | 'atimeNs')[]): void => {
  for (const field of fields) expect(after[field], field).toBeGreaterThan(before[field]);
};

const CHANGES: Record<string, Change> = {
  chmod: {
    change: (path) => chmodSync(path, 0o600),
    check: (before, after) => { expect(after.mode & 0o7777).toBe(0o600); moved(before, after, ['ctimeNs']); },
  },
  chown: {
    change: (path) => chownSync(path, 65534, 65533),
    check: (_, after) => expect([after.uid, after.gid]).toEqual([65534, 65533]),
  },
  utimens: {
    change: (path) => utimesSync(path, 1000, 2000),
    check: (before, after) => {
      expect([after.atimeNs, after.mtimeNs]).toEqual([1000_000_000_000n, 2000_000_000_000n]);
      moved(before, after, ['ctimeNs']);
    },
  },
  truncateDown: {
    setup: (path) => writeFileSync(path, Buffer.alloc(300_000, 7)),
    change: (path) => truncateSync(path, 1000),
    check: (before, after) => { expect(after.size).toBe(1000); moved(before, after, ['mtimeNs', 'ctimeNs']); },
  },
  truncateUp: {
    change: (path) => truncateSync(path, 3 * MIB + 5),
    check: (_, after) => expect(after.size).toBe(3 * MIB + 5),
  },
  write: {
    change: (path) => writeFileSync(path, Buffer.alloc(10_000, 1)),
    check: (before, after) => {
      expect(after.size).toBe(10_000);
      expect(after.blocks).toBe(Math.ceil(10_000 / 512));
      moved(before, after, ['mtimeNs', 'ctimeNs']);
    },
  },
  // Cached in the daemon, not stored yet, the file held open: size and blocks come from memory.
  directWriteHeld: (() => {
    let fd = -1;
    return {
      change: (path: string) => {
        fd = openSync(path, constants.O_WRONLY | constants.O_DIRECT);
        writeSync(fd, Buffer.alloc(4096, 5), 0, 4096, 0);
      },
      check: (_: Attributes, after: Attributes) => expect([after.size, after.blocks]).toEqual([4096, 8]),
      finish: () => closeSync(fd),
    };
  })(),
  append: {
    setup: (path) => writeFileSync(path, Buffer.alloc(5000, 1)),
    change: (path) => appendFileSync(path, Buffer.alloc(8000, 2)),
    check: (before, after) => { expect(after.size).toBe(13_000); moved(before, after, ['mtimeNs']); },
  },
  openTruncate: {
    setup: (path) => writeFileSync(path, Buffer.alloc(5000, 1)),
    change: (path) => closeSync(openSync(path, 'w')),
    check: (_, after) => expect([after.size, after.blocks]).toEqual([0, 0]),
  },
  fallocate: {
    change: (path) => python('import os, sys\nfd = os.open(sys.argv[1], os.O_WRONLY)\nos.posix_fallocate(fd, 0, 100000)', path),
    check: (_, after) => expect(after.size).toBe(100_000),
  },
  link: {
    change: (path) => linkSync(path, `${path}.2`),
    check: (before, after) => { expect(after.nlink).toBe(2); moved(before, after, ['ctimeNs']); },
  },
  unlinkLink: {
    setup: (path) => linkSync(path, `${path}.2`),
    change: (path) => unlinkSync(`${path}.2`),
    check: (before, after) => { expect([before.nlink, after.nlink]).toEqual([2, 1]); moved(before, after, ['ctimeNs']); },
  },
  renameWithin: {
    isDirectory: true,
    setup: (path) => writeFileSync(join(path, 'a'), 'a'),
    change: (path) => renameSync(join(path, 'a'), join(path, 'b')),
    check: (before, after) => moved(before, after, ['mtimeNs', 'ctimeNs']),
  },
  renameOut: {
    isDirectory: true,
    setup: (path) => writeFileSync(join(path, 'a'), 'a'),
    change: (path) => renameSync(join(path, 'a'), `${path}.moved`),
    check: (before, after) => moved(before, after, ['mtimeNs', 'ctimeNs']),
  },
  renameDirectoryIn: {
    isDirectory: true,
    setup: (path) => mkdirSync(`${path}.sub`),
    change: (path) => renameSync(`${path}.sub`, join(path, 'sub')),
    check: (before, after) => { expect(after.nlink).toBe(before.nlink + 1); moved(before, after, ['mtimeNs']); },
  },
  setxattr: {
    change: (path) => python('import os, sys\nos.setxattr(sys.argv[1], "user.a", b"1")', path),
    check: (before, after) => moved(before, after, ['ctimeNs']),
  },
  removexattr: {
    setup: (path) => python('import os, sys\nos.setxattr(sys.argv[1], "user.a", b"1")', path),
    change: (path) => python('import os, sys\nos.removexattr(sys.argv[1], "user.a")', path),
    check: (before, after) => moved(before, after, ['ctimeNs']),
  },
  mkdirIn: {
    isDirectory: true,
    change: (path) => mkdirSync(join(path, 'sub')),
    check: (before, after) => { expect(after.nlink).toBe(before.nlink + 1); moved(before, after, ['mtimeNs', 'ctimeNs']); },
  },
  rmdirIn: {
    isDirectory: true,
    setup: (path) => mkdirSync(join(path, 'sub')),
    change: (path) => rmdirSync(join(path, 'sub')),
    check: (before, after) => { expect(after.nlink).toBe(before.nlink - 1); moved(before, after, ['mtimeNs', 'ctimeNs']); },
  },
  createIn: {
    isDirectory: true,
    change: (path) => writeFileSync(join(path, 'new'), ''),
    check: (before, after) => moved(before, after, ['mtimeNs', 'ctimeNs']),
  },
  unlinkIn: {
    isDirectory: true,
    setup: (path) => writeFileSync(join(path, 'old'), ''),
    change: (path) => unlinkSync(join(path, 'old')),
    check: (before, after) => moved(before, after, ['mtimeNs', 'ctimeNs']),
  },
  readAtime: {
    // relatime: a read moves an access time older than the modification time.
    setup: (path) => { writeFileSync(path, Buffer.alloc(8192, 3)); utimesSync(path, 1000, 2000); },
    // O_DIRECT: the read reaches the daemon, whatever the page cache holds.
    change: (path) => python(
      'import mmap, os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)\nos.preadv(fd, [mmap.mmap(-1, 4096)], 0)', path),
    check: (_, after) => expect(after.atimeNs).toBeGreaterThan(2000_000_000_000n),
  },
  setuidCleared: {
    setup: (path) => { writeFileSync(path, 'hello'); chmodSync(path, 0o6777); },
    change: (path) => appendAsNobody(path),
    check: (_, after) => expect([after.mode & 0o7777, after.size]).toEqual([0o777, 6]),
  },
};

describe('GETATTRs answered from attributes the daemon handed over', () => {
  it('show every kind of change at once, and what a fresh daemon shows', async () => {
    await withMount({ extraYaml: FUSE_YAML }, async (mount) => {
      // Another user writes in setuidCleared.
      chmodSync(mount.root, 0o755);
      chmodSync(mount.mountpoint, 0o777);
      const before = await attrReplies(mount);
      let held = 0;
      const paths: string[] = [];
      // Every kind is tried, and every miss named: which changes a missing drop would hide.
      const misses: string[] = [];
      for (const [name, kind] of Object.entries(CHANGES)) {
        const path = join(mount.mountpoint, name);
        if (kind.isDirectory === true) mkdirSync(path);
        else writeFileSync(path, '');
        kind.setup?.(path);
        attributesOf(path);
        const start = attributesOf(path);
        held += 2;
        // Times move between the steps: the daemon's clock counts milliseconds, and the times
        // the kernel sets itself (writeback cache) come from its coarse clock, which lags by
        // up to a tick (4 ms at HZ=250, 10 ms at HZ=100).
        await sleep(25);
        try {
          kind.change(path);
          const after = attributesOf(path);
          kind.check(start, after);
          expect(attributesOf(path)).toEqual(after);
        } catch (error) {
          misses.push(`${name}: ${(error as Error).message}`);
        } finally {
          kind.finish?.();
        }
        paths.push(path);
      }
      expect(misses).toEqual([]);
      expect(await attrReplies(mount) - before).toBeGreaterThanOrEqual(held);
      const shown = paths.map((path) => [path, attributesOf(path)]);
      await mount.remount();
      expect(paths.map((path) => [path, attributesOf(path)])).toEqual(shown);
    });
  }, 180_000);

  it('show the stored bytes a background rewrite changed (st_blocks)', async () => {
    const pools = {
      fast: { topology: 'single', blockSize: '1MiB', buckets: 1 },
      packed: { topology: 'single', blockSize: '1MiB', buckets: 1, compression: { algorithm: 'zstd', level: 3 } },
    };
    await withMount({ pools, writePool: 'fast', extraYaml: FUSE_YAML }, async (mount) => {
      const path = join(mount.mountpoint, 'zeros');
      writeFileSync(path, Buffer.alloc(2 * MIB, 0));
      await callControl(join(mount.root, 'meta'), 'flush', {});
      const ino = statSync(path).ino;
      const stored = attributesOf(path);
      expect(stored.blocks).toBe(2 * MIB / 512);
      const before = await attrReplies(mount);
      expect(attributesOf(path)).toEqual(stored);
      expect(await attrReplies(mount)).toBeGreaterThan(before);
      const { taskId } = await callControl(join(mount.root, 'meta'), 'rewriteBlock', {
        ino, block: 1, pool: 'packed', topology: 'single',
      }) as { taskId: number };
      const info = await callControl(join(mount.root, 'meta'), 'waitTask', { id: taskId }) as TaskInfo;
      expect(info.state, info.errors.join('\n')).toBe('done');
      const rewritten = attributesOf(path);
      expect(rewritten.blocks).toBeLessThan(stored.blocks);
      expect({ ...rewritten, blocks: stored.blocks }).toEqual(stored);
      await mount.remount();
      expect(attributesOf(path)).toEqual(rewritten);
    });
  }, 120_000);
});
