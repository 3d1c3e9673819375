/**
 * Tests of the libfuse3 binding: each mounts a small in-memory filesystem (MemFs, below) in
 * its own temp dir and drives it with real syscalls.
 *
 * Everything that touches the mount is asynchronous (fs.promises, execFile): this process's
 * JS thread serves the filesystem, so a synchronous call into the mount would deadlock.
 * Needs root and /dev/fuse; without them the tests fail (never skip) and say what is missing.
 */
import { execFile } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm, rmdir } from 'node:fs/promises';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { crc32cChunks } from '../erasure/index.js';
import { Errno, FsError } from '../errno.js';
import {
  ENTRY_ABSENT, FuseSession, type Attr, type AttrReply, type DirEntry, type Entry, type LowLevelOps, type MountOptions,
  type OpenReply, type RequestContext, type Result, type SetattrChanges, type Statfs, type Timespec,
} from './binding.js';

const run = promisify(execFile);
const S_IFMT = 0o170000, S_IFDIR = 0o040000, S_IFREG = 0o100000, S_IFLNK = 0o120000, S_IFIFO = 0o010000;
const MiB = 1024 * 1024;
const XATTR_CREATE = 1, XATTR_REPLACE = 2, RENAME_NOREPLACE = 1, O_ACCMODE = 3; // fs.constants lacks O_ACCMODE

/* ------------------------------------------------------------------ MemFs */

interface Node {
  ino: number; mode: number; nlink: number; uid: number; gid: number; rdev: number;
  data: Buffer; size: number; target?: string | Buffer;
  children?: Map<string, number>;
  xattrs: Map<string, Buffer>;
  atime: Timespec; mtime: Timespec; ctime: Timespec;
}

type Hook = (op: string, args: unknown[]) => void | Promise<void>;

function now(): Timespec {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}

function fail(errno: number, op: string): never {
  throw new FsError(errno as Errno, op);
}

/** A tiny in-memory filesystem that records what reached it. Timeouts 0: every call is seen. */
class MemFs implements LowLevelOps {
  readonly nodes = new Map<number, Node>();
  /** Marks attribute and entry replies reusable (the binding answers later GETATTRs itself). */
  isAttrReusable = false;
  /** Entry timeout of lookups and creations: with 0 every path walk is a LOOKUP. */
  entryTimeoutSec = 0;
  private nextIno = 2;
  private nextFh = 100;
  hook: Hook | undefined;
  readonly seen = {
    createFlags: [] as number[], getattrFh: [] as (number | undefined)[], maxWrite: 0, reads: 0,
    setattr: [] as { changes: SetattrChanges; fh: number | undefined }[], readdirCalls: 0,
    renameFlags: [] as number[], fallocate: [] as number[][], mknod: [] as number[][], forgets: 0,
    initConn: undefined as { protoMajor: number } | undefined, destroyed: false,
  };
  statfsResult: Statfs = {
    bsize: 4096, frsize: 4096, blocks: 2 ** 40 + 7, bfree: 2 ** 36 + 3, bavail: 2 ** 35 + 1,
    files: 2 ** 33 + 5, ffree: 2 ** 32 + 9, favail: 2 ** 32 + 9, namemax: 255,
  };

  constructor() {
    this.nodes.set(1, this.makeNode(1, S_IFDIR | 0o755));
    this.node(1).children = new Map();
    this.node(1).nlink = 2;
  }

  private makeNode(ino: number, mode: number): Node {
    const t = now();
    return { ino, mode, nlink: 1, uid: 0, gid: 0, rdev: 0, data: Buffer.alloc(0), size: 0, xattrs: new Map(), atime: t, mtime: t, ctime: t };
  }

  node(ino: number): Node {
    return this.nodes.get(ino) ?? fail(Errno.ENOENT, 'node');
  }

  private dir(ino: number): Map<string, number> {
    return this.node(ino).children ?? fail(Errno.ENOTDIR, 'dir');
  }

  /** Adds a node directly (test setup, no syscalls). */
  add(parent: number, name: string, mode: number): Node {
    const n = this.makeNode(this.nextIno++, mode);
    if ((mode & S_IFMT) === S_IFDIR) { n.children = new Map(); n.nlink = 2; this.node(parent).nlink++; }
    this.nodes.set(n.ino, n);
    this.dir(parent).set(name, n.ino);
    return n;
  }

  private attr(n: Node): Attr {
    return {
      ino: n.ino, mode: n.mode, nlink: n.nlink, uid: n.uid, gid: n.gid, rdev: n.rdev, size: n.size,
      blocks: Math.ceil(n.size / 512), blksize: 4096, atime: n.atime, mtime: n.mtime, ctime: n.ctime,
    };
  }

  private entry(n: Node): Entry {
    return {
      ino: n.ino, generation: 1, attr: this.attr(n), entryTimeoutSec: this.entryTimeoutSec, attrTimeoutSec: 0,
      isAttrReusable: this.isAttrReusable,
    };
  }

  /** Runs the test's hook first (it may throw or delay), then the operation. */
  private via<T>(op: string, args: unknown[], body: () => T): Result<T> {
    const pending = this.hook?.(op, args);
    return pending instanceof Promise ? pending.then(body) : body();
  }

  init(conn: { protoMajor: number }): void { this.seen.initConn = conn; }
  destroy(): void { this.seen.destroyed = true; }
  forget(): void { this.seen.forgets++; }

  lookup(_req: RequestContext, parent: number, name: string): Result<Entry> {
    return this.via('lookup', [parent, name], () => {
      const ino = this.dir(parent).get(name) ?? fail(Errno.ENOENT, 'lookup');
      return this.entry(this.node(ino));
    });
  }

  getattr(_req: RequestContext, ino: number, fh: number | undefined): Result<AttrReply> {
    return this.via('getattr', [ino, fh], () => {
      this.seen.getattrFh.push(fh);
      return { attr: this.attr(this.node(ino)), attrTimeoutSec: 0, isAttrReusable: this.isAttrReusable };
    });
  }

  setattr(_req: RequestContext, ino: number, changes: SetattrChanges, fh: number | undefined): Result<AttrReply> {
    return this.via('setattr', [ino, changes, fh], () => {
      this.seen.setattr.push({ changes, fh });
      const n = this.node(ino);
      if (changes.mode !== undefined) n.mode = (n.mode & S_IFMT) | (changes.mode & ~S_IFMT);
      if (changes.uid !== undefined) n.uid = changes.uid;
      if (changes.gid !== undefined) n.gid = changes.gid;
      if (changes.size !== undefined) this.resize(n, changes.size);
      if (changes.atime !== undefined) n.atime = changes.atime === 'now' ? now() : changes.atime;
      if (changes.mtime !== undefined) n.mtime = changes.mtime === 'now' ? now() : changes.mtime;
      n.ctime = changes.ctime ?? now();
      return { attr: this.attr(n), attrTimeoutSec: 0 };
    });
  }

  private resize(n: Node, size: number): void {
    if (size > n.data.length) {
      const grown = Buffer.alloc(Math.max(size, n.data.length * 2));
      n.data.copy(grown, 0, 0, n.size);
      n.data = grown;
    } else if (size < n.size) {
      n.data.fill(0, size, n.size);
    }
    n.size = size;
  }

  readlink(_req: RequestContext, ino: number): Result<string | Buffer> {
    return this.via('readlink', [ino], () => this.node(ino).target ?? fail(Errno.EINVAL, 'readlink'));
  }

  private make(parent: number, name: string, mode: number): Entry {
    if (this.dir(parent).has(name)) fail(Errno.EEXIST, 'create');
    return this.entry(this.add(parent, name, mode));
  }

  mknod(_req: RequestContext, parent: number, name: string, mode: number, rdev: number): Result<Entry> {
    return this.via('mknod', [parent, name, mode, rdev], () => {
      this.seen.mknod.push([mode, rdev]);
      return this.make(parent, name, mode);
    });
  }

  mkdir(req: RequestContext, parent: number, name: string, mode: number): Result<Entry> {
    return this.via('mkdir', [parent, name, mode], () => this.make(parent, name, S_IFDIR | (mode & ~req.umask & 0o7777)));
  }

  unlink(_req: RequestContext, parent: number, name: string): Result<void> {
    return this.via('unlink', [parent, name], () => {
      const d = this.dir(parent);
      const ino = d.get(name) ?? fail(Errno.ENOENT, 'unlink');
      d.delete(name);
      this.node(ino).nlink--;
    });
  }

  rmdir(_req: RequestContext, parent: number, name: string): Result<void> {
    return this.via('rmdir', [parent, name], () => {
      const d = this.dir(parent);
      const ino = d.get(name) ?? fail(Errno.ENOENT, 'rmdir');
      if (this.dir(ino).size > 0) fail(Errno.ENOTEMPTY, 'rmdir');
      d.delete(name);
      this.node(parent).nlink--;
    });
  }

  symlink(_req: RequestContext, target: string | Buffer, parent: number, name: string): Result<Entry> {
    return this.via('symlink', [target, parent, name], () => {
      const e = this.make(parent, name, S_IFLNK | 0o777);
      const n = this.node(e.ino);
      n.target = target;
      n.size = Buffer.byteLength(target);
      return this.entry(n);
    });
  }

  rename(_req: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number): Result<void> {
    return this.via('rename', [parent, name, newParent, newName, flags], () => {
      this.seen.renameFlags.push(flags);
      const from = this.dir(parent), to = this.dir(newParent);
      const ino = from.get(name) ?? fail(Errno.ENOENT, 'rename');
      if ((flags & RENAME_NOREPLACE) !== 0 && to.has(newName)) fail(Errno.EEXIST, 'rename');
      if ((flags & ~RENAME_NOREPLACE) !== 0) fail(Errno.EINVAL, 'rename');
      const replaced = to.get(newName);
      if (replaced !== undefined) this.node(replaced).nlink--;
      from.delete(name);
      to.set(newName, ino);
    });
  }

  link(_req: RequestContext, ino: number, newParent: number, newName: string): Result<Entry> {
    return this.via('link', [ino, newParent, newName], () => {
      const d = this.dir(newParent);
      if (d.has(newName)) fail(Errno.EEXIST, 'link');
      const n = this.node(ino);
      n.nlink++;
      d.set(newName, ino);
      return this.entry(n);
    });
  }

  open(_req: RequestContext, ino: number, flags: number): Result<OpenReply> {
    return this.via('open', [ino, flags], () => {
      const n = this.node(ino);
      if ((flags & constants.O_TRUNC) !== 0) this.resize(n, 0);
      return { fh: this.nextFh++ };
    });
  }

  read(_req: RequestContext, ino: number, size: number, offset: number): Result<Buffer> {
    return this.via('read', [ino, size, offset], () => {
      this.seen.reads++;
      const n = this.node(ino);
      return n.data.subarray(Math.min(offset, n.size), Math.min(offset + size, n.size));
    });
  }

  write(_req: RequestContext, ino: number, data: Buffer, offset: number): Result<number> {
    return this.via('write', [ino, data.length, offset], async () => {
      await Promise.resolve(); // exercise the asynchronous reply path
      this.seen.maxWrite = Math.max(this.seen.maxWrite, data.length);
      const n = this.node(ino);
      if (offset + data.length > n.size) this.resize(n, offset + data.length);
      data.copy(n.data, offset);
      n.mtime = now();
      return data.length;
    }) as Result<number>;
  }

  release(): void {}

  opendir(_req: RequestContext, ino: number): Result<OpenReply> {
    return this.via('opendir', [ino], () => {
      this.dir(ino);
      return { fh: this.nextFh++ };
    });
  }

  readdir(_req: RequestContext, ino: number, _size: number, offset: number): Result<DirEntry[]> {
    return this.via('readdir', [ino, offset], () => {
      this.seen.readdirCalls++;
      const all: DirEntry[] = [
        { name: '.', ino, mode: S_IFDIR, nextOffset: 1 },
        { name: '..', ino: 1, mode: S_IFDIR, nextOffset: 2 },
      ];
      let i = 2;
      for (const [name, child] of this.dir(ino)) {
        i++;
        all.push({ name, ino: child, mode: this.node(child).mode, nextOffset: i });
      }
      return all.slice(offset);
    });
  }

  statfs(): Result<Statfs> {
    return this.via('statfs', [], () => this.statfsResult);
  }

  setxattr(_req: RequestContext, ino: number, name: string, value: Buffer, flags: number): Result<void> {
    return this.via('setxattr', [ino, name], () => {
      const x = this.node(ino).xattrs;
      if ((flags & XATTR_CREATE) !== 0 && x.has(name)) fail(Errno.EEXIST, 'setxattr');
      if ((flags & XATTR_REPLACE) !== 0 && !x.has(name)) fail(Errno.ENODATA, 'setxattr');
      x.set(name, value);
    });
  }

  getxattr(_req: RequestContext, ino: number, name: string): Result<Buffer> {
    return this.via('getxattr', [ino, name], () => this.node(ino).xattrs.get(name) ?? fail(Errno.ENODATA, 'getxattr'));
  }

  listxattr(_req: RequestContext, ino: number): Result<string[]> {
    return this.via('listxattr', [ino], () => [...this.node(ino).xattrs.keys()]);
  }

  removexattr(_req: RequestContext, ino: number, name: string): Result<void> {
    return this.via('removexattr', [ino, name], () => {
      if (!this.node(ino).xattrs.delete(name)) fail(Errno.ENODATA, 'removexattr');
    });
  }

  create(req: RequestContext, parent: number, name: string, mode: number, flags: number): Result<Entry & OpenReply> {
    return this.via('create', [parent, name, mode, flags], () => {
      this.seen.createFlags.push(flags);
      return { ...this.make(parent, name, S_IFREG | (mode & ~req.umask & 0o7777)), fh: this.nextFh++ };
    });
  }

  fallocate(_req: RequestContext, ino: number, mode: number, offset: number, length: number, fh: number): Result<void> {
    return this.via('fallocate', [ino, mode, offset, length, fh], () => {
      this.seen.fallocate.push([mode, offset, length, fh]);
      const n = this.node(ino);
      if (mode === 0 && offset + length > n.size) this.resize(n, offset + length);
    });
  }
}

/* ------------------------------------------------------------------ helpers */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function mounted(mnt: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((line) => line.split(' ')[4] === mnt);
}

async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); });
  try { return await Promise.race([p, timeout]); } finally { clearTimeout(timer); }
}

interface Mounted { fs: MemFs; session: FuseSession; mnt: string; path: (...parts: string[]) => string }

const tempDirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'shmr-fuse3-test-'));
  tempDirs.push(dir);
  return dir;
}

/** Unmounts by every means, in order, until the mountpoint is gone; then removes it. */
async function cleanupMount(session: FuseSession | undefined, mnt: string): Promise<void> {
  try { session?.unmount(); } catch { /* fall through to the external tools */ }
  if (mounted(mnt)) await run('fusermount3', ['-u', '-q', mnt]).catch(() => undefined);
  if (mounted(mnt)) await run('umount', ['-l', mnt]).catch(() => undefined);
  await rmdir(mnt).catch(() => undefined);
}

async function withMount(body: (m: Mounted) => Promise<void>, options: Partial<MountOptions> = {}, fs = new MemFs()): Promise<void> {
  const mnt = await tempDir();
  let session: FuseSession | undefined;
  try {
    session = new FuseSession(fs, { mountpoint: mnt, fsName: 'memtest', subtype: 'memtest', ...options });
    session.mount();
    await body({ fs, session, mnt, path: (...parts) => join(mnt, ...parts) });
  } finally {
    await cleanupMount(session, mnt);
  }
  expect(mounted(mnt)).toBe(false);
}

/** Runs a python3 snippet; `out(x)` prints JSON, `err(e)` prints {"errno": n}. */
async function py(code: string, ...args: string[]): Promise<unknown> {
  const prelude = [
    'import ctypes, json, os, sys',
    'libc = ctypes.CDLL(None, use_errno=True)',
    'def out(x): print(json.dumps(x))',
    'def check(r):',
    '    if r < 0: raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))',
    '    return r',
    'libc.getxattr.restype = ctypes.c_ssize_t',
    'libc.listxattr.restype = ctypes.c_ssize_t',
    'try:',
  ].join('\n');
  const body = code.trim().split('\n').map((l) => `    ${l}`).join('\n');
  const script = `${prelude}\n${body}\nexcept OSError as e:\n    out({"errno": e.errno})\n`;
  const { stdout } = await run('python3', ['-c', script, ...args], { timeout: 20_000 });
  return JSON.parse(stdout.trim().split('\n').pop() ?? 'null');
}

async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'no error';
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? String(error);
  }
}

/* ------------------------------------------------------------------ tests */

beforeAll(() => {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push(`root (running as uid ${process.getuid?.()})`);
  if (!existsSync('/dev/fuse')) missing.push('/dev/fuse');
  if (missing.length > 0) throw new Error(`FUSE binding tests need ${missing.join(' and ')}; they cannot run without`);
});

afterEach(async () => {
  for (const dir of tempDirs.splice(0)) {
    if (!mounted(dir)) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
});

describe('FuseSession mount lifecycle', () => {
  it('mounts, serves, and resolves closed when unmounted from outside with fusermount3 -u', async () => {
    const fs = new MemFs();
    const mnt = await tempDir();
    const session = new FuseSession(fs, { mountpoint: mnt, fsName: 'memtest' });
    try {
      session.mount();
      expect(mounted(mnt)).toBe(true);
      expect(fs.seen.initConn?.protoMajor).toBe(7);
      const st = await fsp.stat(mnt);
      expect(st.isDirectory()).toBe(true);
      expect(st.ino).toBe(1);
      await run('fusermount3', ['-u', mnt]);
      await within(5000, 'closed after fusermount3 -u', session.closed);
      expect(mounted(mnt)).toBe(false);
      expect(session.stats().requests).toBeGreaterThan(0);
      session.unmount(); // idempotent after the kernel ended the session
    } finally {
      await cleanupMount(session, mnt);
    }
  }, 15_000);

  it('unmount() ends the session, resolves closed and calls destroy', async () => {
    const fs = new MemFs();
    await withMount(async ({ session, mnt }) => {
      await fsp.stat(mnt);
      session.unmount();
      await within(5000, 'closed after unmount()', session.closed);
      expect(mounted(mnt)).toBe(false);
      expect(fs.seen.destroyed).toBe(true);
      expect(session.notifyInvalInode(1, -1, 0)).toBeLessThan(0); // -ENOTCONN once closed
    }, {}, fs);
  }, 15_000);

  it('rejects an unknown -o option with a clear error and leaves no mount', async () => {
    const mnt = await tempDir();
    const session = new FuseSession(new MemFs(), { mountpoint: mnt, extraOptions: ['no_such_option_xyz'] });
    try {
      expect(() => session.mount()).toThrow(/cannot mount FUSE filesystem at '.*shmr-fuse3-test-.*'.*unknown option.*no_such_option_xyz/);
      expect(mounted(mnt)).toBe(false);
      await within(2000, 'closed after a failed mount', session.closed);
    } finally {
      await cleanupMount(session, mnt);
    }
  }, 15_000);

  it('rejects a missing mountpoint with a clear error', async () => {
    const mnt = join(await tempDir(), 'does', 'not', 'exist');
    const session = new FuseSession(new MemFs(), { mountpoint: mnt });
    try {
      expect(() => session.mount()).toThrow(new RegExp(`cannot mount FUSE filesystem at '${mnt}'.*No such file or directory`));
      expect(mounted(mnt)).toBe(false);
    } finally {
      await cleanupMount(session, mnt);
    }
  }, 15_000);

  it('an init handler that throws fails mount() with that error and leaves no mount', async () => {
    const mnt = await tempDir();
    const fs = new MemFs();
    fs.init = () => { throw new Error('init refused'); };
    const session = new FuseSession(fs, { mountpoint: mnt });
    try {
      expect(() => session.mount()).toThrow('init refused');
      expect(mounted(mnt)).toBe(false);
      await within(2000, 'closed after a failed init', session.closed);
      expect(() => session.mount()).toThrow(/mounts only once/);
    } finally {
      await cleanupMount(session, mnt);
    }
  }, 15_000);

  it('passes fsname and subtype (with commas) to the mount table', async () => {
    await withMount(async ({ mnt }) => {
      const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === mnt);
      expect(line).toMatch(/ - fuse\.sub,type my,fs /);
    }, { fsName: 'my,fs', subtype: 'sub,type' });
  }, 15_000);

  it('rejects a dead FUSE mount as mountpoint with a clear error', async () => {
    const mnt = await tempDir();
    // A FUSE mount whose daemon is gone: python mounts with its /dev/fuse fd, then exits.
    const dead = `
fd = os.open("/dev/fuse", os.O_RDWR)
opts = f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()
check(libc.mount(b"deadfuse", sys.argv[1].encode(), b"fuse.deadtest", 0, opts))
out("ok")`;
    const session = new FuseSession(new MemFs(), { mountpoint: mnt });
    try {
      expect(await py(dead, mnt)).toBe('ok');
      expect(mounted(mnt)).toBe(true);
      expect(() => session.mount()).toThrow(new RegExp(`cannot mount FUSE filesystem at '${mnt}'.*Transport endpoint is not connected`));
    } finally {
      await cleanupMount(session, mnt);
    }
  }, 15_000);

  it('takes max_read from extraOptions for conn->max_read too, so INIT succeeds', async () => {
    await withMount(async ({ path }) => {
      expect((await fsp.stat(path())).isDirectory()).toBe(true);
    }, { extraOptions: ['max_read=131072'] });
  }, 15_000);
});

describe('FuseSession operations', () => {
  it('lookup, getattr and readdir of 2000 entries (several readdir buffers)', async () => {
    const fs = new MemFs();
    const big = fs.add(1, 'big', S_IFDIR | 0o755);
    const names: string[] = [];
    for (let i = 0; i < 2000; i++) {
      const name = `file-with-a-longish-name-${String(i).padStart(5, '0')}`;
      names.push(name);
      fs.add(big.ino, name, S_IFREG | 0o644).size = i;
    }
    await withMount(async ({ path }) => {
      const listed = await fsp.readdir(path('big'));
      expect(listed.sort()).toEqual([...names].sort());
      expect(fs.seen.readdirCalls).toBeGreaterThan(2);
      const st = await fsp.stat(path('big', names[1234] as string), { bigint: true });
      expect(st.size).toBe(1234n);
      expect(Number(st.mode) & S_IFMT).toBe(S_IFREG);
      const node = fs.node(Number(st.ino));
      expect(st.mtimeNs).toBe(BigInt(node.mtime.sec) * 1_000_000_000n + BigInt(node.mtime.nsec));
      expect(await errnoOf(fsp.stat(path('big', 'absent')))).toBe('ENOENT');
      const typed = await fsp.readdir(path('big'), { withFileTypes: true });
      expect(typed.every((d) => d.isFile())).toBe(true);
    }, {}, fs);
  }, 30_000);

  it('create receives the real open flags (O_EXCL, O_TRUNC) and the mode', async () => {
    const fs = new MemFs();
    await withMount(async ({ path }) => {
      // The VFS drops O_TRUNC when O_EXCL is set (a new file is empty anyway): test separately.
      await (await fsp.open(path('new'), constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o640)).close();
      await (await fsp.open(path('new2'), constants.O_CREAT | constants.O_TRUNC | constants.O_RDWR | constants.O_APPEND, 0o600)).close();
      const [excl, trunc] = fs.seen.createFlags as [number, number];
      expect(excl & constants.O_EXCL).toBe(constants.O_EXCL);
      expect(excl & O_ACCMODE).toBe(constants.O_WRONLY);
      expect(trunc & constants.O_TRUNC).toBe(constants.O_TRUNC);
      expect(trunc & constants.O_APPEND).toBe(constants.O_APPEND);
      expect(trunc & O_ACCMODE).toBe(constants.O_RDWR);
      expect((await fsp.stat(path('new'))).mode & 0o7777).toBe(0o640 & ~process.umask());
      expect(await errnoOf(fsp.open(path('new'), constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY))).toBe('EEXIST');
    }, {}, fs);
  }, 15_000);

  it('writes and reads at offsets, past EOF, with 1 MiB requests', async () => {
    const fs = new MemFs();
    await withMount(async ({ path }) => {
      const chunk = (seed: number): Buffer => Buffer.from(Array.from({ length: MiB }, (_, i) => (i * 7 + seed) & 0xff));
      const f = await fsp.open(path('data'), 'w+');
      await f.write(chunk(1), 0, MiB, 0);
      await f.write(chunk(2), 0, MiB, MiB);
      await f.write(chunk(3), 0, MiB, 5 * MiB); // leaves a 3 MiB hole
      await f.write(Buffer.from('tail'), 0, 4, 6 * MiB + 100); // unaligned, past EOF
      await f.close();
      expect(fs.seen.maxWrite).toBeGreaterThanOrEqual(512 * 1024);

      const expected = Buffer.alloc(6 * MiB + 104);
      chunk(1).copy(expected, 0);
      chunk(2).copy(expected, MiB);
      chunk(3).copy(expected, 5 * MiB);
      expected.write('tail', 6 * MiB + 100);
      const readsBefore = fs.seen.reads;
      const back = await fsp.readFile(path('data'));
      expect(back.length).toBe(expected.length);
      expect(back.equals(expected)).toBe(true);
      expect(fs.seen.reads).toBeGreaterThan(readsBefore);

      const g = await fsp.open(path('data'), 'r');
      const buf = Buffer.alloc(64 * 1024);
      const mid = await g.read(buf, 0, buf.length, MiB + 12345);
      expect(buf.subarray(0, mid.bytesRead).equals(expected.subarray(MiB + 12345, MiB + 12345 + buf.length))).toBe(true);
      expect((await g.read(buf, 0, buf.length, 10 * MiB)).bytesRead).toBe(0);
      await g.close();
    }, {}, fs);
  }, 30_000);

  it('utimensat: separate atime and mtime, UTIME_NOW and UTIME_OMIT', async () => {
    const fs = new MemFs();
    fs.add(1, 'f', S_IFREG | 0o644);
    await withMount(async ({ path }) => {
      const p = path('f');
      const utimens = `
class TS(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]
NOW, OMIT = (1 << 30) - 1, (1 << 30) - 2
a = [int(x) for x in sys.argv[2:6]]
times = (TS * 2)(TS(a[0], a[1]), TS(a[2], a[3]))
check(libc.utimensat(-100, sys.argv[1].encode(), times, 0))
out("ok")`;
      const OMIT = String((1 << 30) - 2), NOW = String((1 << 30) - 1);
      const last = (): SetattrChanges => (fs.seen.setattr.at(-1) as { changes: SetattrChanges }).changes;

      await py('os.utime(sys.argv[1], ns=(1000000000123456789, 1500000000987654321)); out("ok")', p);
      expect(last().atime).toEqual({ sec: 1000000000, nsec: 123456789 });
      expect(last().mtime).toEqual({ sec: 1500000000, nsec: 987654321 });
      const st = await fsp.stat(p, { bigint: true });
      expect(st.atimeNs).toBe(1000000000123456789n);
      expect(st.mtimeNs).toBe(1500000000987654321n);

      expect(await py(utimens, p, '1200000000', '5', '0', OMIT)).toBe('ok');
      expect(last().atime).toEqual({ sec: 1200000000, nsec: 5 });
      expect('mtime' in last()).toBe(false);
      expect((await fsp.stat(p, { bigint: true })).mtimeNs).toBe(1500000000987654321n);

      expect(await py(utimens, p, '0', OMIT, '1300000000', '7')).toBe('ok');
      expect('atime' in last()).toBe(false);
      expect(last().mtime).toEqual({ sec: 1300000000, nsec: 7 });

      expect(await py(utimens, p, '0', NOW, '0', OMIT)).toBe('ok');
      expect(last().atime).toBe('now');
      expect('mtime' in last()).toBe(false);

      await run('touch', [p]);
      expect(last().atime).toBe('now');
      expect(last().mtime).toBe('now');
    }, {}, fs);
  }, 30_000);

  it('passes the file handle to getattr (attribute refresh of an open file) and setattr (ftruncate)', async () => {
    const fs = new MemFs();
    fs.add(1, 'f', S_IFREG | 0o644);
    await withMount(async ({ path }) => {
      // No child process may be started while this process holds a file open on its own
      // mount (see binding.ts), so the JS-side handle is closed before python runs.
      const f = await fsp.open(path('f'), 'r+');
      try {
        fs.seen.getattrFh.length = 0;
        await f.stat();
        await f.truncate(4321);
        const t = fs.seen.setattr.at(-1);
        expect(t?.changes.size).toBe(4321);
        expect(t?.fh).toBeGreaterThanOrEqual(100);
      } finally {
        await f.close();
      }
      // fstat goes through vfs_getattr, which has no file (kernel 6.18 sends no handle); the
      // kernel sends it when refreshing attributes of an open file, e.g. lseek(SEEK_END).
      if (!fs.seen.getattrFh.some((fh) => fh !== undefined)) {
        expect(await py('fd = os.open(sys.argv[1], os.O_RDONLY); out(os.lseek(fd, 0, os.SEEK_END)); os.close(fd)', path('f'))).toBe(4321);
      }
      expect(fs.seen.getattrFh.some((fh) => fh !== undefined && fh >= 100)).toBe(true);
      expect(await py('os.truncate(sys.argv[1], 10); out("ok")', path('f'))).toBe('ok'); // by path: no handle
      expect(fs.seen.setattr.at(-1)?.changes.size).toBe(10);
      expect(fs.seen.setattr.at(-1)?.fh).toBeUndefined();
    }, {}, fs);
  }, 15_000);

  it('statfs carries 64-bit counts', async () => {
    const fs = new MemFs();
    await withMount(async ({ mnt }) => {
      const s = await fsp.statfs(mnt, { bigint: true });
      expect(s.blocks).toBe(BigInt(2 ** 40 + 7));
      expect(s.bfree).toBe(BigInt(2 ** 36 + 3));
      expect(s.bavail).toBe(BigInt(2 ** 35 + 1));
      expect(s.files).toBe(BigInt(2 ** 33 + 5));
      expect(s.ffree).toBe(BigInt(2 ** 32 + 9));
      expect(s.bsize).toBe(4096n);
    }, {}, fs);
  }, 15_000);

  it('rename passes the renameat2 flags (RENAME_NOREPLACE, RENAME_EXCHANGE) to the handler', async () => {
    const fs = new MemFs();
    fs.add(1, 'a', S_IFREG | 0o644);
    fs.add(1, 'b', S_IFREG | 0o644);
    await withMount(async ({ path }) => {
      const renameat2 = 'check(libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), int(sys.argv[3]))); out("ok")';
      expect(await py(renameat2, path('a'), path('c'), '1')).toBe('ok');
      expect(fs.seen.renameFlags).toEqual([RENAME_NOREPLACE]);
      // The VFS itself refuses NOREPLACE onto a name it knows exists; hide 'b' from lookup
      // so the request reaches the handler, which must refuse it.
      fs.hook = (op, args) => { if (op === 'lookup' && args[1] === 'b') fail(Errno.ENOENT, 'lookup'); };
      expect(await py(renameat2, path('c'), path('b'), '1')).toEqual({ errno: Errno.EEXIST });
      fs.hook = undefined;
      expect(await py(renameat2, path('c'), path('b'), '2')).toEqual({ errno: Errno.EINVAL }); // MemFs has no EXCHANGE
      await fsp.rename(path('c'), path('b'));
      expect(fs.seen.renameFlags).toEqual([RENAME_NOREPLACE, RENAME_NOREPLACE, 2, 0]);
      expect((await fsp.readdir(path())).sort()).toEqual(['b']);
    }, {}, fs);
  }, 15_000);

  it('fallocate reaches the handler (posix_fallocate)', async () => {
    const fs = new MemFs();
    fs.add(1, 'f', S_IFREG | 0o644);
    await withMount(async ({ path }) => {
      expect(await py('fd = os.open(sys.argv[1], os.O_RDWR); os.posix_fallocate(fd, 4096, 40960); os.close(fd); out("ok")', path('f'))).toBe('ok');
      const [mode, offset, length, fh] = fs.seen.fallocate[0] as number[];
      expect({ mode, offset, length }).toEqual({ mode: 0, offset: 4096, length: 40960 });
      expect(fh).toBeGreaterThanOrEqual(100);
      expect((await fsp.stat(path('f'))).size).toBe(4096 + 40960);
    }, {}, fs);
  }, 15_000);

  it('xattrs: set, size-0 probes, ERANGE, list, remove', async () => {
    const fs = new MemFs();
    fs.add(1, 'f', S_IFREG | 0o644);
    await withMount(async ({ path }) => {
      const p = path('f');
      expect(await py('os.setxattr(sys.argv[1], "user.greeting", b"hello world"); os.setxattr(sys.argv[1], "user.b", b""); out("ok")', p)).toBe('ok');
      expect(await py('out(check(libc.getxattr(sys.argv[1].encode(), b"user.greeting", None, 0)))', p)).toBe(11);
      expect(await py('buf = ctypes.create_string_buffer(4); out(check(libc.getxattr(sys.argv[1].encode(), b"user.greeting", buf, 4)))', p)).toEqual({ errno: Errno.ERANGE });
      expect(await py('out(os.getxattr(sys.argv[1], "user.greeting").decode())', p)).toBe('hello world');
      expect(await py('out(os.getxattr(sys.argv[1], "user.b").decode())', p)).toBe('');
      expect(await py('out(sorted(os.listxattr(sys.argv[1])))', p)).toEqual(['user.b', 'user.greeting']);
      const listLen = 'user.greeting\0user.b\0'.length;
      expect(await py('out(check(libc.listxattr(sys.argv[1].encode(), None, 0)))', p)).toBe(listLen);
      expect(await py('buf = ctypes.create_string_buffer(5); out(check(libc.listxattr(sys.argv[1].encode(), buf, 5)))', p)).toEqual({ errno: Errno.ERANGE });
      expect(await py('os.setxattr(sys.argv[1], "user.b", b"x", os.XATTR_CREATE); out("ok")', p)).toEqual({ errno: Errno.EEXIST });
      expect(await py('os.removexattr(sys.argv[1], "user.greeting"); out(os.listxattr(sys.argv[1]))', p)).toEqual(['user.b']);
      expect(await py('out(os.getxattr(sys.argv[1], "user.greeting").decode())', p)).toEqual({ errno: Errno.ENODATA });
    }, {}, fs);
  }, 30_000);

  it('symlink and readlink, link, mkdir/rmdir, unlink, mknod of a fifo', async () => {
    const fs = new MemFs();
    await withMount(async ({ path }) => {
      await fsp.symlink('some/target/ü', path('sym'));
      expect(await fsp.readlink(path('sym'))).toBe('some/target/ü');
      expect((await fsp.lstat(path('sym'))).isSymbolicLink()).toBe(true);

      await fsp.writeFile(path('orig'), 'content');
      await fsp.link(path('orig'), path('hard'));
      const [a, b] = await Promise.all([fsp.stat(path('orig')), fsp.stat(path('hard'))]);
      expect(b.ino).toBe(a.ino);
      expect(b.nlink).toBe(2);
      expect(await fsp.readFile(path('hard'), 'utf8')).toBe('content');
      await fsp.unlink(path('orig'));
      expect((await fsp.stat(path('hard'))).nlink).toBe(1);

      await fsp.mkdir(path('d'), 0o750);
      expect((await fsp.stat(path('d'))).isDirectory()).toBe(true);
      await fsp.writeFile(path('d', 'x'), '');
      expect(await errnoOf(fsp.rmdir(path('d')))).toBe('ENOTEMPTY');
      await fsp.unlink(path('d', 'x'));
      await fsp.rmdir(path('d'));

      expect(await py('os.mkfifo(sys.argv[1], 0o600); out("ok")', path('fifo'))).toBe('ok');
      expect((await fsp.lstat(path('fifo'))).isFIFO()).toBe(true);
      expect(((fs.seen.mknod[0] as number[])[0] as number) & S_IFMT).toBe(S_IFIFO);
    }, {}, fs);
  }, 15_000);

  it('a handler throwing a plain Error gives EIO, is logged, and the mount keeps working', async () => {
    const fs = new MemFs();
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await withMount(async ({ session, path }) => {
        fs.hook = (op, args) => {
          if (op === 'lookup' && args[1] === 'boom') throw new Error('simulated bug');
          if (op === 'lookup' && args[1] === 'boom-async') return Promise.reject(new TypeError('async bug'));
          if (op === 'getattr' && args[0] === 999) throw new Error('unreachable');
        };
        expect(await errnoOf(fsp.stat(path('boom')))).toBe('EIO');
        expect(await errnoOf(fsp.stat(path('boom-async')))).toBe('EIO');
        expect((await fsp.stat(path())).isDirectory()).toBe(true);
        await fsp.writeFile(path('still-works'), 'yes');
        expect(await fsp.readFile(path('still-works'), 'utf8')).toBe('yes');
        expect(session.stats().exceptions).toBe(2);
        const lines = stderr.mock.calls.map((c) => String(c[0])).filter((l) => l.startsWith('shmr-fuse3:'));
        expect(lines).toHaveLength(2);
        expect(lines[0]).toMatch(/^shmr-fuse3: lookup handler failed, replying EIO: Error: simulated bug \| +at /);
        expect(lines[0]?.trimEnd().includes('\n')).toBe(false);
      }, {}, fs);
    } finally {
      stderr.mockRestore();
    }
  }, 15_000);

  it('a malformed handler result is a bug: EIO, and the mount keeps working', async () => {
    const fs = new MemFs();
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      // Handlers are bound when the session is created, so the override comes first.
      const f = fs.add(1, 'f', S_IFREG | 0o644);
      const real = fs.lookup.bind(fs);
      fs.lookup = (req, parent, name) => (name === 'f' ? { ino: f.ino, generation: 1, attr: { ino: f.ino } as Attr, entryTimeoutSec: 0, attrTimeoutSec: 0 } : real(req, parent, name));
      await withMount(async ({ session, path }) => {
        expect(await errnoOf(fsp.stat(path('f')))).toBe('EIO');
        expect(String(stderr.mock.calls.at(-1)?.[0])).toMatch(/^shmr-fuse3: lookup handler failed, replying EIO: TypeError: Cannot read properties of undefined/);
        expect((await fsp.stat(path())).isDirectory()).toBe(true);
        expect(session.stats().exceptions).toBe(1);
      }, {}, fs);
    } finally {
      stderr.mockRestore();
    }
  }, 15_000);

  it('a thrown or rejected errno becomes that errno', async () => {
    const fs = new MemFs();
    await withMount(async ({ session, path }) => {
      fs.hook = (op, args) => {
        if (op === 'lookup' && args[1] === 'denied') throw new FsError(Errno.EACCES, 'lookup');
        if (op === 'lookup' && args[1] === 'later') return Promise.reject(Object.assign(new Error('x'), { errno: Errno.ENOTDIR }));
        if (op === 'lookup' && args[1] === 'plain') throw { errno: Errno.EROFS };
      };
      expect(await errnoOf(fsp.stat(path('denied')))).toBe('EACCES');
      expect(await errnoOf(fsp.stat(path('later')))).toBe('ENOTDIR');
      expect(await errnoOf(fsp.stat(path('plain')))).toBe('EROFS');
      expect(session.stats().exceptions).toBe(0);
    }, {}, fs);
  }, 15_000);

  it('a lookup answering ENTRY_ABSENT, now or later, is ENOENT without an exception', async () => {
    const fs = new MemFs();
    // Handlers are bound when the session is created, so the override comes first.
    fs.add(1, 'there', S_IFREG | 0o644);
    const real = fs.lookup.bind(fs);
    const lookups: string[] = [];
    (fs as LowLevelOps).lookup = (req, parent, name) => {
      lookups.push(name);
      if (name === 'absent') return ENTRY_ABSENT;
      if (name === 'absent-later') return sleep(10).then(() => ENTRY_ABSENT);
      return real(req, parent, name);
    };
    await withMount(async ({ session, path }) => {
      expect(await errnoOf(fsp.stat(path('absent')))).toBe('ENOENT');
      expect(await errnoOf(fsp.stat(path('absent-later')))).toBe('ENOENT');
      expect((await fsp.stat(path('there'))).isFile()).toBe(true);
      expect(lookups).toEqual(expect.arrayContaining(['absent', 'absent-later', 'there']));
      expect(session.stats().exceptions).toBe(0);
    }, {}, fs);
  }, 15_000);

  it('an op without a handler gets ENOSYS', async () => {
    const fs = new MemFs();
    (fs as LowLevelOps).mkdir = undefined; // before the session binds the handlers
    await withMount(async ({ path }) => {
      expect(await errnoOf(fsp.mkdir(path('d')))).toBe('ENOSYS');
      expect((await fsp.stat(path())).isDirectory()).toBe(true);
    }, {}, fs);
  }, 15_000);

  it('a handler taking 16 s still succeeds (no watchdog)', async () => {
    const fs = new MemFs();
    fs.add(1, 'slow', S_IFREG | 0o644).size = 16;
    await withMount(async ({ path }) => {
      fs.hook = (op, args) => (op === 'lookup' && args[1] === 'slow' ? sleep(16_000) : undefined);
      const started = Date.now();
      const st = await fsp.stat(path('slow'));
      expect(Date.now() - started).toBeGreaterThanOrEqual(15_900);
      expect(st.size).toBe(16);
    }, {}, fs);
  }, 30_000);

  it('lookups in one directory run in parallel unless parallelDirops is false', async () => {
    for (const parallelDirops of [true, false]) {
      const fs = new MemFs();
      fs.add(1, 'slow', S_IFREG | 0o644);
      fs.add(1, 'quick', S_IFREG | 0o644);
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      fs.hook = (op, args) => (op === 'lookup' && args[1] === 'slow' ? gate : undefined);
      await withMount(async ({ path }) => {
        try {
          const slow = fsp.stat(path('slow'));
          await sleep(100);
          const quick = fsp.stat(path('quick')).then(() => 'done');
          const outcome = await Promise.race([quick, sleep(1000).then(() => 'blocked')]);
          // libfuse 3.14 drops this flag from INIT; the binding adds it back (io_writev).
          expect(outcome).toBe(parallelDirops ? 'done' : 'blocked');
          release();
          await slow;
          expect(await quick).toBe('done');
        } finally {
          release();
        }
      }, { parallelDirops }, fs);
    }
  }, 15_000);

  it('a reply after the session is gone is dropped safely', async () => {
    const fs = new MemFs();
    fs.add(1, 'hang', S_IFREG | 0o644);
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    await withMount(async ({ session, path }) => {
      fs.hook = (op, args) => (op === 'lookup' && args[1] === 'hang' ? gate : undefined);
      const pending = errnoOf(fsp.stat(path('hang')));
      await sleep(200);
      session.unmount();
      await within(5000, 'closed', session.closed);
      release(); // the handler now resolves into a finished session
      expect(await within(5000, 'stat of an unmounted fs', pending)).not.toBe('no error');
      await sleep(50);
    }, {}, fs);
  }, 15_000);

  it('notifyInvalInode / notifyInvalEntry return a number', async () => {
    const fs = new MemFs();
    const f = fs.add(1, 'f', S_IFREG | 0o644);
    await withMount(async ({ session, path }) => {
      await fsp.stat(path('f'));
      const inode = session.notifyInvalInode(f.ino, 0, 0);
      const entry = session.notifyInvalEntry(1, 'f');
      const unknown = session.notifyInvalEntry(1, 'never-looked-up');
      for (const rc of [inode, entry, unknown]) {
        expect(Number.isInteger(rc)).toBe(true);
        expect(rc).toBeLessThanOrEqual(0);
      }
      expect((await fsp.stat(path('f'))).ino).toBe(f.ino);
    }, {}, fs);
  }, 15_000);
});

describe('FuseSession chunk reads (answered in C from page-cached shard chunks)', () => {
  /** O_DIRECT reads through one descriptor (every read reaches the daemon): [offset, size] -> hex. */
  const directReads = (file: string, reads: number[][]): Promise<unknown> => py(`
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
import mmap
buf = mmap.mmap(-1, 1 << 20)
res = []
for off, size in json.loads(sys.argv[2]):
    n = os.preadv(fd, [memoryview(buf)[:size]], off)
    res.append(buf[:n].hex())
os.close(fd)
out(res)
`, file, JSON.stringify(reads));
  const hex = (byte: number, count: number): string => Buffer.alloc(count, byte).toString('hex');

  /** A shard-like file: 4 KiB of prefix, then `payload`; and the payload's chunk checksums. */
  async function shardFile(dir: string, payload: Buffer): Promise<{ path: string; crcs: Buffer }> {
    const path = join(dir, 'shard');
    await fsp.writeFile(path, Buffer.concat([Buffer.alloc(4096, 0xee), payload]));
    const crcs = Buffer.alloc(Math.ceil(payload.length / 4096) * 4);
    crc32cChunks(payload, 4096, crcs);
    return { path, crcs };
  }

  it('answers reads inside a registered block from its shard, verified, through its own descriptor, until dropped', async () => {
    const fs = new MemFs();
    const f = fs.add(1, 'f', S_IFREG | 0o644);
    f.data = Buffer.alloc(2 * MiB + 100, 0x11);
    f.size = f.data.length;
    const dir = await tempDir();
    try {
      // Bytes unlike the handler's prove who answered.
      const { path: shard, crcs } = await shardFile(dir, Buffer.alloc(MiB - 1000, 0x22));
      await withMount(async ({ session, path }) => {
        const fd = openSync(shard, 'r');
        const source = { fd, payloadOffset: 4096, dataBytes: MiB - 1000, chunkBytes: 4096, crcs };
        expect(session.registerChunkBlock(f.ino, 1, MiB, source)).toBe(true);
        // The binding keeps its own descriptor: ours may close (and its number be reused).
        closeSync(fd);
        expect(session.chunkReadStats().blocks).toBe(1);
        const readsBefore = fs.seen.reads;
        const got = await directReads(path('f'), [
          [MiB + 8192, 4096], // the handle's first read goes to the handler (relatime)
          [MiB + 8192, 4096], [MiB + 100, 5000], [MiB, 65536],
          [2 * MiB - 4096, 4096], // past the registered data bytes: the handler
          [MiB - 4096, 8192], // crosses into block 1 from block 0: the handler
        ]) as string[];
        expect(got).toEqual([hex(0x11, 4096), hex(0x22, 4096), hex(0x22, 5000), hex(0x22, 65536), hex(0x11, 4096), hex(0x11, 8192)]);
        expect(fs.seen.reads - readsBefore).toBe(3);
        expect(session.chunkReadStats()).toMatchObject({ reads: 3, bytes: 4096 + 5000 + 65536, mismatches: 0 });

        // A chunk damaged in the page cache is never answered: the handler gets the read.
        const damaged = openSync(shard, 'r+');
        writeSync(damaged, Buffer.from([0x23]), 0, 1, 4096 + 5 * 4096 + 7);
        closeSync(damaged);
        expect(await directReads(path('f'), [[MiB, 4096], [MiB + 5 * 4096, 4096], [MiB + 6 * 4096, 4096]]))
          .toEqual([hex(0x11, 4096), hex(0x11, 4096), hex(0x22, 4096)]);
        expect(session.chunkReadStats()).toMatchObject({ reads: 4, mismatches: 1 });

        expect(session.dropChunkBlocks(f.ino, -1)).toBe(0);
        expect(session.chunkReadStats().blocks).toBe(0);
        expect(await directReads(path('f'), [[MiB, 4096], [MiB, 4096]])).toEqual([hex(0x11, 4096), hex(0x11, 4096)]);
      }, {}, fs);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('keeps at most a quarter of RLIMIT_NOFILE registrations, dropping the least recently used', async () => {
    const fs = new MemFs();
    const f = fs.add(1, 'f', S_IFREG | 0o644);
    f.data = Buffer.alloc(300 * 65536, 0x11);
    f.size = f.data.length;
    const dir = await tempDir();
    // The bound is read at a session's first registration: 1000 descriptors allow 250.
    const limit = (await run('prlimit', ['--pid', String(process.pid), '--nofile', '--output=SOFT', '--noheadings'])).stdout.trim();
    await run('prlimit', ['--pid', String(process.pid), '--nofile=1000:']);
    try {
      const { path: shard, crcs } = await shardFile(dir, Buffer.alloc(65536, 0x22));
      await withMount(async ({ session, path }) => {
        const fd = openSync(shard, 'r');
        try {
          const source = { fd, payloadOffset: 4096, dataBytes: 65536, chunkBytes: 4096, crcs };
          for (let block = 0; block < 260; block++) expect(session.registerChunkBlock(f.ino, block, 65536, source)).toBe(true);
        } finally {
          closeSync(fd);
        }
        expect(session.chunkReadStats().blocks).toBe(250);
        // Blocks 0-9 went first; the others are served from the shard (after the handle's first read).
        expect(await directReads(path('f'), [[259 * 65536, 4096], [0, 4096], [9 * 65536, 4096], [10 * 65536, 4096], [259 * 65536, 4096]]))
          .toEqual([hex(0x11, 4096), hex(0x11, 4096), hex(0x11, 4096), hex(0x22, 4096), hex(0x22, 4096)]);
      }, {}, fs);
    } finally {
      await run('prlimit', ['--pid', String(process.pid), `--nofile=${limit}:`]);
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('rejects a registration whose checksums do not cover its data bytes', async () => {
    await withMount(async ({ session }) => {
      const source = { fd: 0, payloadOffset: 4096, dataBytes: 3 * 4096 + 1, chunkBytes: 4096, crcs: Buffer.alloc(12) };
      expect(() => session.registerChunkBlock(5, 0, MiB, source)).toThrow(/12 checksum bytes for 4 chunks/);
      expect(() => session.registerChunkBlock(5, 0, 4096, source)).toThrow(/out of range/);
      // Chunks larger than the binding serves: declined, not an error.
      expect(session.registerChunkBlock(5, 0, MiB, { ...source, chunkBytes: MiB, crcs: Buffer.alloc(4) })).toBe(false);
      expect(session.chunkReadStats().blocks).toBe(0);
    });
  }, 15_000);
});

describe('FuseSession attribute replies (GETATTR answered in C)', () => {
  /** A MemFs whose replies hand their attributes over, with one file `f`; attribute timeout 0: every stat is a GETATTR. */
  function keepingFs(): { fs: MemFs; f: Node } {
    const fs = new MemFs();
    fs.isAttrReusable = true;
    fs.entryTimeoutSec = 3600;
    return { fs, f: fs.add(1, 'f', S_IFREG | 0o644) };
  }
  const modeOf = async (path: string): Promise<number> => (await fsp.stat(path)).mode & 0o7777;

  it('answers GETATTRs with the attributes of the last reusable reply, until they are dropped', async () => {
    const { fs, f } = keepingFs();
    await withMount(async ({ session, path }) => {
      expect(await modeOf(path('f'))).toBe(0o644); // LOOKUP by the handler, kept; its GETATTR answered in C
      const handled = fs.seen.getattrFh.length;
      const before = session.attributeStats();
      expect(before.inodes).toBeGreaterThanOrEqual(1);
      for (let index = 0; index < 5; index++) expect(await modeOf(path('f'))).toBe(0o644);
      expect(fs.seen.getattrFh.length).toBe(handled);
      expect(session.attributeStats().served - before.served).toBeGreaterThanOrEqual(5);

      // A change the binding is not told of stays unseen: the copy is answered as it is.
      f.mode = S_IFREG | 0o600;
      expect(await modeOf(path('f'))).toBe(0o644);
      session.dropAttributes(f.ino);
      expect(await modeOf(path('f'))).toBe(0o600);
      expect(fs.seen.getattrFh.length).toBe(handled + 1);
      // That reply was reusable too: the next GETATTR is answered in C again.
      expect(await modeOf(path('f'))).toBe(0o600);
      expect(fs.seen.getattrFh.length).toBe(handled + 1);

      session.clearAttributes();
      expect(session.attributeStats().inodes).toBe(0);
      expect(await modeOf(path('f'))).toBe(0o600);
      expect(fs.seen.getattrFh.length).toBe(handled + 2);
    }, {}, fs);
  }, 15_000);

  it('never keeps the attributes of a reply that settles later, nor of one not marked reusable', async () => {
    const { fs, f } = keepingFs();
    await withMount(async ({ session, path }) => {
      expect(await modeOf(path('f'))).toBe(0o644);
      session.dropAttributes(f.ino);
      fs.hook = (op) => (op === 'getattr' ? sleep(5) : undefined);
      const kept = session.attributeStats().kept;
      const handled = fs.seen.getattrFh.length;
      for (let index = 0; index < 3; index++) expect(await modeOf(path('f'))).toBe(0o644);
      expect(fs.seen.getattrFh.length).toBe(handled + 3);
      expect(session.attributeStats().kept).toBe(kept);

      fs.hook = undefined;
      fs.isAttrReusable = false;
      for (let index = 0; index < 3; index++) expect(await modeOf(path('f'))).toBe(0o644);
      expect(fs.seen.getattrFh.length).toBe(handled + 6);
      expect(session.attributeStats()).toMatchObject({ kept, inodes: 0 });
    }, {}, fs);
  }, 15_000);

  it('answers with attributes registered without a request, exactly as given', async () => {
    const { fs, f } = keepingFs();
    fs.isAttrReusable = false;
    await withMount(async ({ session, path }) => {
      await fsp.stat(path('f'));
      const handled = fs.seen.getattrFh.length;
      const attr: Attr = {
        ino: f.ino, mode: S_IFREG | 0o640, nlink: 3, uid: 12, gid: 34, rdev: 0, size: 5 * MiB + 1, blocks: 777,
        blksize: 4096, atime: { sec: 1000, nsec: 1 }, mtime: { sec: 2000, nsec: 2 }, ctime: { sec: 3000, nsec: 3 },
      };
      session.registerAttributes(attr, 0);
      const stat = await fsp.stat(path('f'), { bigint: true });
      expect(fs.seen.getattrFh.length).toBe(handled);
      expect({
        mode: Number(stat.mode), nlink: Number(stat.nlink), uid: Number(stat.uid), gid: Number(stat.gid),
        size: Number(stat.size), blocks: Number(stat.blocks),
        atimeNs: stat.atimeNs, mtimeNs: stat.mtimeNs, ctimeNs: stat.ctimeNs,
      }).toEqual({
        mode: S_IFREG | 0o640, nlink: 3, uid: 12, gid: 34, size: 5 * MiB + 1, blocks: 777,
        atimeNs: 1000_000_000_001n, mtimeNs: 2000_000_000_002n, ctimeNs: 3000_000_000_003n,
      });
      expect(() => session.registerAttributes({ ...attr, mode: -1 }, 0)).toThrow(/mode/);
      expect(() => session.registerAttributes(attr, Number.NaN)).toThrow(/attrTimeoutSec/);
      expect(() => session.dropAttributes(-1)).toThrow(/non-negative integer/);
      session.dropAttributes(f.ino);
      expect(await modeOf(path('f'))).toBe(0o644);
      expect(fs.seen.getattrFh.length).toBe(handled + 1);
    }, {}, fs);
  }, 15_000);

  // With the writeback cache, as the daemon mounts: a utimensat then sends mtime and ctime.
  it('answers SETATTRs that only set ctime and mtime of attributes registered with ownsTimes, keeping the times', async () => {
    const { fs, f } = keepingFs();
    fs.isAttrReusable = false;
    await withMount(async ({ session, path }) => {
      await fsp.stat(path('f'));
      const attr: Attr = {
        ino: f.ino, mode: S_IFREG | 0o640, nlink: 0, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0,
        blksize: 4096, atime: { sec: 1000, nsec: 0 }, mtime: { sec: 2000, nsec: 0 }, ctime: { sec: 3000, nsec: 0 },
      };
      // Not owned: a SETATTR of mtime goes to the handler.
      session.registerAttributes(attr, 0);
      await run('touch', ['-m', '-d', '@5000', path('f')]);
      expect(fs.seen.setattr.length).toBe(1);

      session.registerAttributes(attr, 0, true);
      const served = session.attributeStats().setattrsServed;
      await run('touch', ['-m', '-d', '@6000', path('f')]);
      expect(fs.seen.setattr.length).toBe(1);
      expect(session.attributeStats().setattrsServed).toBe(served + 1);
      const stat = await fsp.stat(path('f'), { bigint: true });
      expect(stat.mtimeNs).toBe(6000_000_000_000n);
      expect(stat.atimeNs).toBe(1000_000_000_000n);
      expect(Number(stat.mode) & 0o7777).toBe(0o640);

      // Anything more than times (here the mode) goes to the handler.
      await fsp.chmod(path('f'), 0o600);
      expect(fs.seen.setattr.length).toBe(2);
      expect((fs.seen.setattr[1]?.changes.mode ?? 0) & 0o7777).toBe(0o600);
    }, { writebackCache: true }, fs);
  }, 15_000);
});
