/**
 * The `_stat` directory: a read-only virtual directory at the root of the mount whose files
 * are rendered from the metrics on open (text per metric family, pools, tasks, SVG graphs).
 * It wraps the filesystem's ops: requests about its reserved inodes are answered here, all
 * others go through unchanged.
 *
 * Invariants:
 * - Reserved inode numbers lie in [STAT_INO_BASE, 2^53): the metadata store numbers inodes
 *   upward from 1 (meta/number-source.ts) and its numbers are JS numbers, so they stay below
 *   2^53 and would need 2^53 - 2^20 inodes to reach this range (asserted on every entry).
 * - Nothing here changes: every change request on a reserved inode, or naming `_stat` in the
 *   root, fails with EROFS (or EEXIST for creating the name).
 * - The name shadows a real root entry of the same name while the directory is configured
 *   (choose `metrics.stat_dir` accordingly); creating one gets EEXIST.
 * - A file's content is rendered once per open and served from that snapshot, so a reader
 *   sees one consistent file; direct I/O keeps the kernel from caching stale pages.
 */
import { assert } from '../assert.js';
import { Errno, FsError } from '../errno.js';
import { ROOT_INO } from '../meta/index.js';
import type {
  Attr, AttrReply, DirEntry, Entry, LowLevelOps, OpenReply, RequestContext, Result,
} from './binding.js';
import { ENTRY_ABSENT, XATTR_ABSENT } from './binding.js';

/** First reserved inode: the directory; its files follow. */
export const STAT_INO_BASE = 2 ** 53 - 2 ** 20;
/** Files the directory can hold (reserved inode numbers after the directory's). */
const STAT_FILES_MAX = 2 ** 20 - 2;
/** Snapshots open at once; each holds one rendered file. */
const STAT_SNAPSHOTS_MAX = 1024;
/** How long a rendered file is reused for getattr and open (ms). */
const RENDER_REUSE_MS = 500;
const O_ACCMODE = 0o3;
const W_OK = 2;

/** What the directory shows; names are stable once listed. */
export interface StatContent {
  names(): readonly string[];
  render(name: string): Buffer;
}

type Ops = Required<Omit<LowLevelOps, 'init' | 'destroy'>>;

export class StatDirectory {
  readonly #name: string;
  readonly #isListed: boolean;
  readonly #content: StatContent;
  /** Every name ever shown, index = inode offset - 1 (never reordered: inodes stay stable). */
  readonly #files: string[] = [];
  readonly #snapshots = new Map<number, Buffer>();
  readonly #rendered = new Map<string, { data: Buffer; atMs: number }>();
  #nextFh = 1;

  constructor(options: { name: string; isListed: boolean; content: StatContent }) {
    assert(options.name.length > 0 && !options.name.includes('/'));
    this.#name = options.name;
    this.#isListed = options.isListed;
    this.#content = options.content;
  }

  static isReserved(ino: number): boolean {
    return isMine(ino);
  }

  /**
   * The ops of `inner` with the directory added at its root. `inner` implements every op (the
   * wrapper answers all of them and passes the rest on).
   */
  wrap(inner: LowLevelOps): LowLevelOps {
    const ops = boundOps(inner as Ops);
    const wrapped: LowLevelOps = { ...bindAll(inner), ...this.#nameOps(ops), ...this.#dataOps(ops) };
    for (const [key, op] of Object.entries(wrapped)) {
      assert(typeof op === 'function' && typeof (inner as Record<string, unknown>)[key] === 'function', `inner lacks ${key}`);
    }
    return wrapped;
  }

  #readOnly(op: string): never {
    throw new FsError(Errno.EROFS, op, this.#name);
  }

  #isName(parent: number, name: string): boolean {
    return parent === ROOT_INO && name === this.#name;
  }

  /** Creating in the directory is EROFS; creating its name in the root is EEXIST. */
  #checkCreate(parent: number, name: string, op: string): void {
    if (isMine(parent)) this.#readOnly(op);
    if (this.#isName(parent, name)) throw new FsError(Errno.EEXIST, op, name);
  }

  /** Removing or renaming the directory or anything in it is EROFS. */
  #checkChange(parent: number, name: string, op: string): void {
    if (isMine(parent) || this.#isName(parent, name)) this.#readOnly(op);
  }

  /** Ops on names (lookups, creation, removal, renames). */
  #nameOps(ops: Ops): LowLevelOps {
    return {
      lookup: (req, parent, name) => {
        if (this.#isName(parent, name)) return this.#entry(STAT_INO_BASE);
        if (parent === STAT_INO_BASE) return this.#entry(this.#inoOf(name, 'lookup'));
        return checked(ops.lookup(req, parent, name));
      },
      forget: (ino, count) => { if (!isMine(ino)) ops.forget(ino, count); },
      mknod: (req, parent, name, mode, rdev) => {
        this.#checkCreate(parent, name, 'mknod');
        return ops.mknod(req, parent, name, mode, rdev);
      },
      mkdir: (req, parent, name, mode) => {
        this.#checkCreate(parent, name, 'mkdir');
        return ops.mkdir(req, parent, name, mode);
      },
      symlink: (req, target, parent, name) => {
        this.#checkCreate(parent, name, 'symlink');
        return ops.symlink(req, target, parent, name);
      },
      create: (req, parent, name, mode, flags, killSuidgid) => {
        this.#checkCreate(parent, name, 'create');
        return ops.create(req, parent, name, mode, flags, killSuidgid);
      },
      link: (req, ino, parent, name) => {
        if (isMine(ino)) this.#readOnly('link');
        this.#checkCreate(parent, name, 'link');
        return ops.link(req, ino, parent, name);
      },
      unlink: (req, parent, name) => { this.#checkChange(parent, name, 'unlink'); return ops.unlink(req, parent, name); },
      rmdir: (req, parent, name) => { this.#checkChange(parent, name, 'rmdir'); return ops.rmdir(req, parent, name); },
      rename: (req, parent, name, newParent, newName, flags) => {
        this.#checkChange(parent, name, 'rename');
        this.#checkChange(newParent, newName, 'rename');
        return ops.rename(req, parent, name, newParent, newName, flags);
      },
      opendir: (req, ino, flags) => {
        if (ino === STAT_INO_BASE) return { fh: 0 };
        if (isMine(ino)) throw new FsError(Errno.ENOTDIR, 'opendir', this.#name);
        return ops.opendir(req, ino, flags);
      },
      readdir: (req, ino, size, offset, fh) => {
        if (ino === STAT_INO_BASE) return this.#readdir(offset);
        if (ino === ROOT_INO && this.#isListed) {
          return this.#readRoot(ops.readdir(req, ino, size, offset <= 2 ? offset : offset - 1, fh), offset);
        }
        return ops.readdir(req, ino, size, offset, fh);
      },
      releasedir: (req, ino, fh) => (isMine(ino) ? undefined : ops.releasedir(req, ino, fh)),
      fsyncdir: (req, ino, datasync, fh) => (isMine(ino) ? undefined : ops.fsyncdir(req, ino, datasync, fh)),
    };
  }

  /** Ops on inodes (attributes, data, extended attributes). */
  #dataOps(ops: Ops): LowLevelOps {
    return {
      getattr: (req, ino, fh) => (isMine(ino) ? this.#attrReply(ino) : ops.getattr(req, ino, fh)),
      setattr: (req, ino, changes, fh) => (isMine(ino) ? this.#readOnly('setattr') : ops.setattr(req, ino, changes, fh)),
      readlink: (req, ino) => {
        if (isMine(ino)) throw new FsError(Errno.EINVAL, 'readlink', this.#name);
        return ops.readlink(req, ino);
      },
      open: (req, ino, flags, killSuidgid) => (isMine(ino) ? this.#open(ino, flags) : ops.open(req, ino, flags, killSuidgid)),
      read: (req, ino, size, offset, fh) => (isMine(ino) ? this.#read(fh, size, offset) : ops.read(req, ino, size, offset, fh)),
      write: (req, ino, data, offset, fh, flags, killSuidgid) =>
        (isMine(ino) ? this.#readOnly('write') : ops.write(req, ino, data, offset, fh, flags, killSuidgid)),
      flush: (req, ino, fh, owner) => (isMine(ino) ? undefined : ops.flush(req, ino, fh, owner)),
      release: (req, ino, fh, flags) => {
        if (!isMine(ino)) return ops.release(req, ino, fh, flags);
        this.#snapshots.delete(fh);
        return undefined;
      },
      fsync: (req, ino, datasync, fh) => (isMine(ino) ? undefined : ops.fsync(req, ino, datasync, fh)),
      fallocate: (req, ino, mode, offset, length, fh) =>
        (isMine(ino) ? this.#readOnly('fallocate') : ops.fallocate(req, ino, mode, offset, length, fh)),
      setxattr: (req, ino, name, value, flags) =>
        (isMine(ino) ? this.#readOnly('setxattr') : ops.setxattr(req, ino, name, value, flags)),
      removexattr: (req, ino, name) => (isMine(ino) ? this.#readOnly('removexattr') : ops.removexattr(req, ino, name)),
      getxattr: (req, ino, name) => {
        if (isMine(ino)) return XATTR_ABSENT;
        return ops.getxattr(req, ino, name);
      },
      listxattr: (req, ino) => (isMine(ino) ? [] : ops.listxattr(req, ino)),
      access: (req, ino, mask) => {
        if (!isMine(ino)) return ops.access(req, ino, mask);
        if ((mask & W_OK) !== 0) this.#readOnly('access');
        return undefined;
      },
    };
  }

  /**
   * The root listing with the directory as the third entry: offsets 1 and 2 are `.` and `..`,
   * 3 is the directory, and the filesystem's own offsets from 3 on move up by one.
   */
  #readRoot(inner: Result<DirEntry[]>, offset: number): Result<DirEntry[]> {
    const shift = (entries: DirEntry[]): DirEntry[] => {
      const out: DirEntry[] = [];
      let isInserted = offset >= 3;
      for (const entry of entries) {
        assert(!StatDirectory.isReserved(entry.ino));
        if (entry.nextOffset <= 2) {
          out.push(entry);
          continue;
        }
        if (!isInserted) out.push(this.#dirEntry());
        isInserted = true;
        out.push({ ...entry, nextOffset: entry.nextOffset + 1 });
      }
      if (!isInserted) out.push(this.#dirEntry());
      return out;
    };
    return inner instanceof Promise ? inner.then(shift) : shift(inner);
  }

  #dirEntry(): DirEntry {
    return { name: this.#name, ino: STAT_INO_BASE, mode: 0o040000, nextOffset: 3 };
  }

  #readdir(offset: number): DirEntry[] {
    const entries: DirEntry[] = [];
    if (offset < 1) entries.push({ name: '.', ino: STAT_INO_BASE, mode: 0o040000, nextOffset: 1 });
    if (offset < 2) entries.push({ name: '..', ino: ROOT_INO, mode: 0o040000, nextOffset: 2 });
    const names = this.#content.names();
    for (const name of names) this.#inoOf(name, 'readdir');
    for (let index = Math.max(0, offset - 2); index < this.#files.length; index++) {
      const name = this.#files[index] as string;
      if (!names.includes(name)) continue;
      entries.push({ name, ino: STAT_INO_BASE + 1 + index, mode: 0o100000, nextOffset: index + 3 });
    }
    return entries;
  }

  /** The inode of file `name`, numbering new names as they appear; ENOENT when unknown. */
  #inoOf(name: string, op: string): number {
    let index = this.#files.indexOf(name);
    if (index < 0) {
      if (!this.#content.names().includes(name)) throw new FsError(Errno.ENOENT, op, name);
      assert(this.#files.length < STAT_FILES_MAX);
      index = this.#files.push(name) - 1;
    }
    return STAT_INO_BASE + 1 + index;
  }

  #nameOf(ino: number): string {
    const name = this.#files[ino - STAT_INO_BASE - 1];
    if (name === undefined) throw new FsError(Errno.ENOENT, 'stat file', `inode ${ino}`);
    return name;
  }

  #render(name: string): Buffer {
    const nowMs = Date.now();
    const cached = this.#rendered.get(name);
    if (cached !== undefined && nowMs - cached.atMs < RENDER_REUSE_MS) return cached.data;
    const data = this.#content.render(name);
    this.#rendered.set(name, { data, atMs: nowMs });
    return data;
  }

  #attr(ino: number): Attr {
    const time = { sec: Math.floor(Date.now() / 1000), nsec: 0 };
    const isDirectory = ino === STAT_INO_BASE;
    const size = isDirectory ? 4096 : this.#render(this.#nameOf(ino)).byteLength;
    return {
      ino, mode: isDirectory ? 0o040555 : 0o100444, nlink: isDirectory ? 2 : 1, uid: 0, gid: 0, rdev: 0,
      size, blocks: Math.ceil(size / 512), blksize: 4096, atime: time, mtime: time, ctime: time,
    };
  }

  #attrReply(ino: number): AttrReply {
    return { attr: this.#attr(ino), attrTimeoutSec: 0 };
  }

  #entry(ino: number): Entry {
    return { ino, generation: 0, attr: this.#attr(ino), entryTimeoutSec: 1, attrTimeoutSec: 0 };
  }

  #open(ino: number, flags: number): OpenReply {
    if (ino === STAT_INO_BASE) throw new FsError(Errno.EISDIR, 'open', this.#name);
    if ((flags & O_ACCMODE) !== 0) throw new FsError(Errno.EROFS, 'open', this.#name);
    if (this.#snapshots.size >= STAT_SNAPSHOTS_MAX) throw new FsError(Errno.ENFILE, 'open', this.#name);
    const fh = this.#nextFh++;
    this.#snapshots.set(fh, this.#render(this.#nameOf(ino)));
    return { fh, directIo: true };
  }

  #read(fh: number, size: number, offset: number): Buffer {
    const data = this.#snapshots.get(fh);
    if (data === undefined) throw new FsError(Errno.EBADF, 'read', this.#name);
    return data.subarray(Math.min(offset, data.byteLength), Math.min(offset + size, data.byteLength));
  }
}

/** Whether `ino` is one of the directory's reserved inodes. */
function isMine(ino: number): boolean {
  return ino >= STAT_INO_BASE;
}

/** Every op of `inner`, bound to it (the ones the wrapper does not replace). */
function bindAll(inner: LowLevelOps): LowLevelOps {
  const out: Record<string, unknown> = {};
  // releaseReadBuffer takes back only the inner store's own buffers (ReadBuffers ignores ours).
  for (const key of ['init', 'destroy', 'statfs', 'releaseReadBuffer'] as const) {
    const op = inner[key];
    if (typeof op === 'function') out[key] = op.bind(inner);
  }
  return out as LowLevelOps;
}

/**
 * The ops of `inner` bound to it, in an object of one fixed shape (a literal). `inner` may be
 * in dictionary mode (instrumentOps adds its ops key by key), where every `ops.x` load of the
 * wrappers here was a hash lookup on each request.
 */
function boundOps(inner: Ops): Ops {
  // An op `inner` lacks stays undefined here: wrap() asserts on the ones it passes on.
  const b = <K extends keyof Ops>(key: K): Ops[K] => {
    const op = inner[key] as ((...args: never[]) => unknown) | undefined;
    return (typeof op === 'function' ? op.bind(inner) : op) as Ops[K];
  };
  return {
    lookup: b('lookup'), forget: b('forget'), getattr: b('getattr'), setattr: b('setattr'),
    readlink: b('readlink'), mknod: b('mknod'), mkdir: b('mkdir'), unlink: b('unlink'), rmdir: b('rmdir'),
    symlink: b('symlink'), rename: b('rename'), link: b('link'), open: b('open'), read: b('read'),
    releaseReadBuffer: b('releaseReadBuffer'), write: b('write'), flush: b('flush'), release: b('release'),
    fsync: b('fsync'), opendir: b('opendir'), readdir: b('readdir'), releasedir: b('releasedir'),
    fsyncdir: b('fsyncdir'), statfs: b('statfs'), setxattr: b('setxattr'), getxattr: b('getxattr'),
    listxattr: b('listxattr'), removexattr: b('removexattr'), access: b('access'), create: b('create'),
    fallocate: b('fallocate'),
  };
}

/** A real entry must never carry a reserved number (the invariant above). */
function checked(entry: Result<Entry | typeof ENTRY_ABSENT>): Result<Entry | typeof ENTRY_ABSENT> {
  const check = (value: Entry | typeof ENTRY_ABSENT): Entry | typeof ENTRY_ABSENT => {
    // The message is built only on failure: this runs on every lookup.
    if (value !== ENTRY_ABSENT && StatDirectory.isReserved(value.ino)) assert.fail(`inode ${value.ino} is in the reserved range`);
    return value;
  };
  return entry instanceof Promise ? entry.then(check) : check(entry);
}
