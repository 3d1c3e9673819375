/**
 * FUSE binding: a thin typed layer over the shmr_fuse3 N-API addon (libfuse3 low-level API).
 *
 * The addon serves /dev/fuse from the JS thread itself (no libfuse worker threads): a uv_poll
 * on the event loop drains requests and calls the handlers below directly; replies go back
 * from the JS thread, immediately or when a handler's promise settles.
 *
 * Rules for handlers:
 * - Return a value or a Promise. A thrown/rejected value whose `errno` is an integer in
 *   1..511 is an expected failure and becomes that errno. Anything else is a bug: one line
 *   with the op and stack goes to stderr, the request gets EIO, and serving continues.
 * - There is no per-request timeout: a handler may take as long as it needs.
 * - NEVER touch the mounted filesystem synchronously from this process's JS thread
 *   (fs.*Sync, execFileSync on a command that does): the thread that would answer the
 *   request is the one blocked waiting for it, and the process deadlocks. The same holds
 *   for notifyInvalInode/notifyInvalEntry while the kernel may be waiting on us for the
 *   same inode or directory (see their comments).
 * - Do not keep files of the mount open in this process while starting child processes:
 *   libuv blocks the JS thread until the child has exec'ed, and the child's exec closes its
 *   copies of those files, which may need a reply from us (FLUSH, or writeback with
 *   writebackCache). Without a flush handler FLUSH is switched off (see putOpen). The same
 *   goes for a process exit while such files are open: the exit can hang in the kernel. A
 *   daemon should simply never open files on its own mount.
 * - `RequestContext` objects are fresh per request; handlers may keep them across awaits.
 *
 * Invariant: every request gets exactly one reply (forget: none). The addon hands out a
 * request handle that a reply consumes; duplicate or late replies (e.g. a promise settling
 * after the session closed) are detected and dropped there.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface RequestContext { readonly uid: number; readonly gid: number; readonly pid: number; readonly umask: number }
export interface Timespec { sec: number; nsec: number }
export interface Attr {
  ino: number; mode: number; nlink: number; uid: number; gid: number; rdev: number;
  size: number; blocks: number;
  blksize: number;
  atime: Timespec; mtime: Timespec; ctime: Timespec;
}
export interface Entry {
  ino: number; generation: number; attr: Attr; entryTimeoutSec: number; attrTimeoutSec: number;
  /** See AttrReply. */
  isAttrReusable?: boolean;
}
export interface AttrReply {
  attr: Attr; attrTimeoutSec: number;
  /**
   * True: the binding keeps these attributes and answers later GETATTRs of `attr.ino` with them
   * itself, until FuseSession.dropAttributes or clearAttributes. Only for attributes that are
   * what getattr would return until then: the handler drops them in the same synchronous turn
   * as anything that changes them (attr-cache.ts). Ignored on a reply that settles later.
   */
  isAttrReusable?: boolean;
}
export interface OpenReply {
  fh: number; directIo?: boolean; keepCache?: boolean; nonSeekable?: boolean; cacheReaddir?: boolean;
  /** FOPEN_NOFLUSH: no FLUSH on close. Always set when the filesystem has no flush handler. */
  noFlush?: boolean;
}
export interface SetattrChanges {
  mode?: number; uid?: number; gid?: number; size?: number;
  atime?: Timespec | 'now'; mtime?: Timespec | 'now'; ctime?: Timespec;
  /** The kernel asks the filesystem to clear setuid/setgid (FATTR_KILL_SUIDGID: a truncate). */
  killSuidgid?: boolean;
}
export interface DirEntry { name: string; ino: number; mode: number; nextOffset: number }
export interface Statfs { bsize: number; frsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number; favail: number; namemax: number }
export type Result<T> = T | Promise<T>;
/**
 * A getxattr answer meaning "no such attribute" (ENODATA). The kernel asks for
 * security.capability before writes; a thrown error there costs V8 a stack walk per request.
 */
export const XATTR_ABSENT: unique symbol = Symbol('xattr absent');
/**
 * A lookup answer meaning "no such name" (ENOENT). A miss precedes every create; a throw there
 * cost V8 an unwind through each wrapper (2-5 us per miss measured).
 */
export const ENTRY_ABSENT: unique symbol = Symbol('entry absent');
export interface ConnInfo { protoMajor: number; protoMinor: number; capable: number; want: number }

export interface LowLevelOps {
  init?(conn: ConnInfo): void;
  destroy?(): void;
  /** ENTRY_ABSENT answers ENOENT without a throw. */
  lookup?(req: RequestContext, parent: number, name: string): Result<Entry | typeof ENTRY_ABSENT>;
  forget?(ino: number, nlookup: number): void;
  getattr?(req: RequestContext, ino: number, fh: number | undefined): Result<AttrReply>;
  setattr?(req: RequestContext, ino: number, changes: SetattrChanges, fh: number | undefined): Result<AttrReply>;
  readlink?(req: RequestContext, ino: number): Result<string | Buffer>;
  mknod?(req: RequestContext, parent: number, name: string, mode: number, rdev: number): Result<Entry>;
  mkdir?(req: RequestContext, parent: number, name: string, mode: number): Result<Entry>;
  unlink?(req: RequestContext, parent: number, name: string): Result<void>;
  rmdir?(req: RequestContext, parent: number, name: string): Result<void>;
  symlink?(req: RequestContext, target: string | Buffer, parent: number, name: string): Result<Entry>;
  rename?(req: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number): Result<void>;
  link?(req: RequestContext, ino: number, newParent: number, newName: string): Result<Entry>;
  /**
   * `killSuidgid`, on `write`, `create` and `setattr` too: the kernel asks the filesystem to
   * clear setuid/setgid (the caller lacks CAP_FSETID; the mount handles killpriv v2).
   */
  open?(req: RequestContext, ino: number, flags: number, killSuidgid: boolean): Result<OpenReply>;
  read?(req: RequestContext, ino: number, size: number, offset: number, fh: number): Result<Buffer | Uint8Array>;
  /** Called with a read's result once its bytes were sent to the kernel: it may be reused. */
  releaseReadBuffer?(data: Buffer | Uint8Array): void;
  /**
   * `data` is lent: its bytes stay valid until the returned value settles, then the buffer is
   * reused for another write. Copy what must outlive the call.
   */
  write?(req: RequestContext, ino: number, data: Buffer, offset: number, fh: number, flags: number, killSuidgid: boolean): Result<number>;
  flush?(req: RequestContext, ino: number, fh: number, lockOwner: bigint): Result<void>;
  release?(req: RequestContext, ino: number, fh: number, flags: number): Result<void>;
  fsync?(req: RequestContext, ino: number, datasync: boolean, fh: number): Result<void>;
  opendir?(req: RequestContext, ino: number, flags: number): Result<OpenReply>;
  readdir?(req: RequestContext, ino: number, size: number, offset: number, fh: number): Result<DirEntry[]>;
  releasedir?(req: RequestContext, ino: number, fh: number): Result<void>;
  fsyncdir?(req: RequestContext, ino: number, datasync: boolean, fh: number): Result<void>;
  statfs?(req: RequestContext, ino: number): Result<Statfs>;
  setxattr?(req: RequestContext, ino: number, name: string, value: Buffer, flags: number): Result<void>;
  /** XATTR_ABSENT answers ENODATA without a throw (the hot security.capability probe). */
  getxattr?(req: RequestContext, ino: number, name: string): Result<Buffer | typeof XATTR_ABSENT>;
  listxattr?(req: RequestContext, ino: number): Result<string[]>;
  removexattr?(req: RequestContext, ino: number, name: string): Result<void>;
  access?(req: RequestContext, ino: number, mask: number): Result<void>;
  create?(req: RequestContext, parent: number, name: string, mode: number, flags: number, killSuidgid: boolean): Result<Entry & OpenReply>;
  fallocate?(req: RequestContext, ino: number, mode: number, offset: number, length: number, fh: number): Result<void>;
}

export interface MountOptions {
  mountpoint: string;
  fsName?: string; subtype?: string;
  allowOther?: boolean; defaultPermissions?: boolean;
  /** Raw -o options passed through unfiltered. A `max_read=N` here also sets conn->max_read. */
  extraOptions?: string[];
  /** conn->max_write; default 1 MiB (libfuse derives max_pages from it). */
  maxWriteBytes?: number;
  /** Both the max_read mount option and conn->max_read (they must agree); default 1 MiB. */
  maxReadBytes?: number;
  maxReadaheadBytes?: number;
  writebackCache?: boolean; asyncRead?: boolean; parallelDirops?: boolean;
  /** conn->time_gran; default 1. */
  timeGranularityNs?: number;
  /** conn->max_background (readahead/writeback requests in flight); default: kernel's (12). */
  maxBackground?: number;
  debug?: boolean;
}

export interface SessionStats { requests: number; replies: number; exceptions: number }

/* ---------------------------------------------------------------- the addon */

type Handle = object;
/** Called by the addon as (handle, ...strings/Buffers); numbers travel in the IN frame. */
type Dispatcher = (...args: never[]) => void;

interface NativeAddon {
  readonly inFrame: Float64Array;
  readonly outFrame: Float64Array;
  readonly layout: Readonly<Record<string, number>>;
  createSession(dispatchers: Partial<Record<OpName, Dispatcher>>, config: NativeConfig, onClosed: () => void): Handle;
  mount(s: Handle): void;
  unmount(s: Handle): void;
  notifyInvalInode(s: Handle, ino: number, offset: number, length: number): number;
  notifyInvalEntry(s: Handle, parent: number, name: string): number;
  stats(s: Handle): [number, number];
  // Reads answered in C from page-cached shard chunks (chunk_read.c, chunk-reads.ts).
  chunkRegister(
    s: Handle, ino: number, blockIndex: number, blockBytes: number, fd: number, payloadOffset: number,
    dataBytes: number, chunkBytes: number, crcs: Buffer,
  ): boolean;
  chunkDrop(s: Handle, ino: number, blockIndex: number): number;
  chunkStats(s: Handle): [number, number, number, number, number];
  // GETATTRs answered in C from attributes handed over (attr_cache.c, attr-cache.ts).
  attrRegister(s: Handle, ownsTimes: boolean): void;
  attrDrop(s: Handle, ino: number): void;
  attrClear(s: Handle): void;
  attrStats(s: Handle): [number, number, number, number];
  // Each returns 1 if the handle was stale (nothing sent), else fuse_reply_*'s 0 / -errno.
  replyErr(h: number, errno: number): number;
  replyEntry(h: number): number;
  replyCreate(h: number): number;
  replyAttr(h: number): number;
  replyOpen(h: number): number;
  replyBuf(h: number, data: Uint8Array): number;
  replyXattr(h: number, data: Uint8Array): number;
  replyWrite(h: number, count: number): number;
  /** Gives back a lent write buffer once its write handler settled (see ops.c op_write). */
  releaseWriteBuffer(slot: number): void;
  replyReadlink(h: number, target: string | Uint8Array): number;
  replyStatfs(h: number): number;
  replyDir(h: number, names: string[], count: number): number;
}

interface NativeConfig {
  argv: string[]; mountpoint: string;
  maxWrite: number; maxRead: number; maxReadahead: number; timeGran: number; maxBackground: number;
  writebackCache: boolean; asyncRead: boolean; parallelDirops: boolean;
}

type OpName = Exclude<keyof LowLevelOps, 'releaseReadBuffer'>;

const ADDON_RELATIVE = join('userspace', 'native', 'fuse3', 'build', 'Release', 'shmr_fuse3.node');

/** The built addon: the first folder upwards from this file that holds it (source or dist). */
export function addonPath(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, ADDON_RELATIVE);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) break;
  }
  throw new Error(
    `shmr FUSE addon not built: no ${ADDON_RELATIVE} in any parent of ${start}; run npm run build:native`,
  );
}

// Frame layout, mirrored from shmr_fuse3.h (checked against the addon's `layout` at load).
const IN_UID = 0, IN_GID = 1, IN_PID = 2, IN_UMASK = 3, A0 = 4;
const OUT_ATTR_TIMEOUT = 15, OUT_ENTRY_INO = 16, OUT_GENERATION = 17, OUT_ENTRY_TIMEOUT = 18;
const OUT_FH = 19, OUT_OPEN_FLAGS = 20, OUT_ATTR_REUSE = 21, OUT_DIR_STRIDE = 3, OUT_DIR_MAX = 2048;
const OPEN_DIRECT_IO = 1, OPEN_KEEP_CACHE = 2, OPEN_NONSEEKABLE = 4, OPEN_CACHE_READDIR = 8, OPEN_NOFLUSH = 16;
const EXPECTED_LAYOUT: Record<string, number> = {
  IN_UID, IN_A0: A0, IN_LEN: 24, OUT_CTIME_NS: 14, OUT_ATTR_TIMEOUT, OUT_ENTRY_INO, OUT_GENERATION,
  OUT_ENTRY_TIMEOUT, OUT_FH, OUT_OPEN_FLAGS, OUT_ATTR_REUSE, OUT_DIR_STRIDE, OUT_DIR_MAX, OUT_LEN: OUT_DIR_STRIDE * OUT_DIR_MAX,
};

// libfuse's FUSE_SET_ATTR_* bits.
const SET_MODE = 1 << 0, SET_UID = 1 << 1, SET_GID = 1 << 2, SET_SIZE = 1 << 3;
const SET_ATIME = 1 << 4, SET_MTIME = 1 << 5, SET_ATIME_NOW = 1 << 7, SET_MTIME_NOW = 1 << 8, SET_CTIME = 1 << 10;

const EIO = 5, ENOENT = 2, ENODATA = 61, MAX_ERRNO = 511;

let addon: NativeAddon | undefined;

/** Loads the addon once (per thread) and checks that its frame layout matches ours. */
export function loadAddon(): NativeAddon {
  if (addon !== undefined) return addon;
  const loaded = createRequire(import.meta.url)(addonPath()) as NativeAddon;
  for (const [key, value] of Object.entries(EXPECTED_LAYOUT)) {
    if (loaded.layout[key] !== value) {
      throw new Error(`shmr FUSE addon layout mismatch on ${key} (${loaded.layout[key]} != ${value}): rebuild with npm run build:native`);
    }
  }
  addon = loaded;
  return addon;
}

/* ---------------------------------------------------------------- dispatchers */

/**
 * Handlers return a value or a native Promise (every async function does). An instanceof check
 * instead of a `.then` lookup: that property load meets every result shape of every op and
 * went megamorphic (a hash lookup per request).
 */
function isPromise<T>(value: Result<T>): value is Promise<T> {
  return value instanceof Promise;
}

/** The errno of an expected failure, or 0 if `error` is a bug. */
function expectedErrno(error: unknown): number {
  if (typeof error !== 'object' || error === null) return 0;
  const errno = (error as { errno?: unknown }).errno;
  return typeof errno === 'number' && Number.isInteger(errno) && errno > 0 && errno <= MAX_ERRNO ? errno : 0;
}

function describe(error: unknown): string {
  const text = error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error);
  return text.replace(/\n\s*/g, ' | ');
}

/** A reply: writes `value` into the OUT frame and calls the addon. `x` is per-op context. */
type Ok<T> = (h: number, value: T, x: number) => void;

/**
 * Builds the per-op functions the addon calls. Each reads its numeric arguments from the
 * IN frame synchronously (the frame is rewritten by the next request), calls the handler,
 * and routes the result to a reply.
 */
function makeDispatchers(ops: LowLevelOps, n: NativeAddon, counters: { exceptions: number }): Partial<Record<OpName, Dispatcher>> {
  const IN = n.inFrame;
  const OUT = n.outFrame;
  const arg = (i: number): number => IN[A0 + i] as number;
  const fhArg = (i: number): number | undefined => {
    const v = IN[A0 + i] as number;
    return v < 0 ? undefined : v;
  };
  const context = (): RequestContext => ({
    uid: IN[IN_UID] as number, gid: IN[IN_GID] as number, pid: IN[IN_PID] as number, umask: IN[IN_UMASK] as number,
  });
  const SYSTEM: RequestContext = Object.freeze({ uid: 0, gid: 0, pid: 0, umask: 0 });

  /** Never throws: it runs in promise callbacks, where a throw would be an unhandled rejection. */
  function fail(h: number, op: OpName, error: unknown): void {
    let errno = expectedErrno(error);
    if (errno === 0) {
      counters.exceptions++;
      errno = EIO;
      try {
        process.stderr.write(`shmr-fuse3: ${op} handler failed, replying EIO: ${describe(error)}\n`);
      } catch { /* a value whose stack or toString throws: the reply matters more */ }
    }
    n.replyErr(h, errno);
  }

  function finish<T>(h: number, op: OpName, value: T, ok: Ok<T>, x: number): void {
    try {
      ok(h, value, x);
    } catch (error) {
      fail(h, op, error); // a malformed result: the reply threw before sending anything
    }
  }

  /**
   * True while a reply of a settled promise is written: its attributes were made in an earlier
   * turn, and something may have changed them since, so the binding must not keep them.
   */
  let isReplyLate = false;

  function finishLate<T>(h: number, op: OpName, value: T, ok: Ok<T>, x: number): void {
    isReplyLate = true;
    try {
      finish(h, op, value, ok, x);
    } finally {
      isReplyLate = false;
    }
  }

  function settle<T>(h: number, op: OpName, result: Result<T>, ok: Ok<T>, x = 0): void {
    if (!isPromise(result)) {
      finish(h, op, result, ok, x);
      return;
    }
    try {
      result.then((value) => finishLate(h, op, value, ok, x), (error: unknown) => fail(h, op, error));
    } catch (error) {
      fail(h, op, error); // a Promise subclass whose then() throws
    }
  }

  /* ---- replies ---- */

  /** Every attribute reply writes OUT_ATTR_REUSE: the slot holds a readdir triplet otherwise. */
  function putAttr(a: Attr, attrTimeoutSec: number, isReusable: boolean | undefined): void {
    putAttrFrame(OUT, a, attrTimeoutSec);
    OUT[OUT_ATTR_REUSE] = isReusable === true && !isReplyLate ? 1 : 0;
  }

  function putEntry(e: Entry): void {
    putAttr(e.attr, e.attrTimeoutSec, e.isAttrReusable);
    OUT[OUT_ENTRY_INO] = e.ino;
    OUT[OUT_GENERATION] = e.generation;
    OUT[OUT_ENTRY_TIMEOUT] = e.entryTimeoutSec;
  }

  /*
   * Without a flush handler libfuse would answer ENOSYS to the first FLUSH anyway; saying
   * "no flush" up front also keeps a close() from ever waiting on this thread. That matters
   * when this process forks (child_process) while it has files open on its own mount: the
   * child closes its copies at exec (O_CLOEXEC) while libuv blocks the JS thread until the
   * exec is done, and a FLUSH there could never be answered.
   */
  const alwaysNoFlush = ops.flush === undefined ? OPEN_NOFLUSH : 0;

  function putOpen(o: OpenReply): void {
    OUT[OUT_FH] = o.fh;
    OUT[OUT_OPEN_FLAGS] = (o.directIo === true ? OPEN_DIRECT_IO : 0) | (o.keepCache === true ? OPEN_KEEP_CACHE : 0)
      | (o.nonSeekable === true ? OPEN_NONSEEKABLE : 0) | (o.cacheReaddir === true ? OPEN_CACHE_READDIR : 0)
      | (o.noFlush === true ? OPEN_NOFLUSH : alwaysNoFlush);
  }

  /*
   * -ENOENT from a reply means the kernel had already given up on the (interrupted)
   * request: it never saw the new lookup reference or file handle, so give them back.
   */
  function undoLookup(ino: number): void {
    if (ino === 0 || ops.forget === undefined) return;
    try { ops.forget(ino, 1); } catch (error) { process.stderr.write(`shmr-fuse3: forget failed: ${describe(error)}\n`); }
  }

  function undoOpen(release: ((req: RequestContext, ino: number, fh: number, flags: number) => Result<void>) | undefined, ino: number, fh: number): void {
    if (release === undefined) return;
    Promise.resolve()
      .then(() => release.call(ops, SYSTEM, ino, fh, 0))
      .catch((error: unknown) => process.stderr.write(`shmr-fuse3: release of an unused handle failed: ${describe(error)}\n`));
  }

  const entryOk: Ok<Entry> = (h, e) => {
    putEntry(e);
    if (n.replyEntry(h) === -ENOENT) undoLookup(e.ino);
  };
  const attrOk: Ok<AttrReply> = (h, r) => {
    putAttr(r.attr, r.attrTimeoutSec, r.isAttrReusable);
    n.replyAttr(h);
  };
  const voidOk: Ok<void> = (h: number) => { n.replyErr(h, 0); };
  const openOk: Ok<OpenReply> = (h, o, ino) => {
    putOpen(o);
    if (n.replyOpen(h) === -ENOENT) undoOpen(ops.release, ino, o.fh);
  };
  const opendirOk: Ok<OpenReply> = (h, o, ino) => {
    putOpen(o);
    if (n.replyOpen(h) === -ENOENT && ops.releasedir !== undefined) {
      const releasedir = ops.releasedir;
      undoOpen((req, i, fh) => releasedir.call(ops, req, i, fh), ino, o.fh);
    }
  };
  const createOk: Ok<Entry & OpenReply> = (h, r) => {
    putEntry(r);
    putOpen(r);
    if (n.replyCreate(h) === -ENOENT) {
      undoLookup(r.ino);
      undoOpen(ops.release, r.ino, r.fh);
    }
  };
  const bufOk: Ok<Buffer | Uint8Array> = (h, data) => { n.replyBuf(h, data); };
  // replyBuf has written the bytes to /dev/fuse by the time it returns.
  const readOk: Ok<Buffer | Uint8Array> = ops.releaseReadBuffer === undefined ? bufOk : (h, data) => {
    n.replyBuf(h, data);
    ops.releaseReadBuffer?.(data);
  };
  const writeOk: Ok<number> = (h, count) => { n.replyWrite(h, count); };
  const readlinkOk: Ok<string | Buffer> = (h, target) => { n.replyReadlink(h, target); };
  const entryOrAbsent: Ok<Entry | typeof ENTRY_ABSENT> = (h, value) => {
    if (value === ENTRY_ABSENT) n.replyErr(h, ENOENT);
    else entryOk(h, value, 0);
  };
  const xattrOrAbsent: Ok<Buffer | typeof XATTR_ABSENT> = (h, value) => {
    if (value === XATTR_ABSENT) n.replyErr(h, ENODATA);
    else n.replyXattr(h, value);
  };
  const listxattrOk: Ok<string[]> = (h, names) => {
    n.replyXattr(h, names.length === 0 ? Buffer.alloc(0) : Buffer.from(`${names.join('\0')}\0`));
  };
  const statfsOk: Ok<Statfs> = (h, s) => {
    OUT[0] = s.bsize; OUT[1] = s.frsize; OUT[2] = s.blocks; OUT[3] = s.bfree; OUT[4] = s.bavail;
    OUT[5] = s.files; OUT[6] = s.ffree; OUT[7] = s.favail; OUT[8] = s.namemax;
    n.replyStatfs(h);
  };
  const dirNames: string[] = []; // reused: the addon reads it synchronously
  const readdirOk: Ok<DirEntry[]> = (h, entries, size) => {
    // Stop once even the smallest possible encoding (24-byte header + 1 byte per UTF-16
    // unit, padded to 8) overflows `size`: the addon packs exactly, this only bounds work.
    let count = 0;
    let estimate = 0;
    const limit = Math.min(entries.length, OUT_DIR_MAX);
    while (count < limit) {
      const e = entries[count] as DirEntry;
      estimate += (24 + e.name.length + 7) & ~7;
      if (estimate > size) break;
      const o = count * OUT_DIR_STRIDE;
      OUT[o] = e.ino; OUT[o + 1] = e.mode; OUT[o + 2] = e.nextOffset;
      dirNames[count] = e.name;
      count++;
    }
    n.replyDir(h, dirNames, count);
  };

  /* ---- dispatchers: one per op the filesystem implements ---- */

  const d: Partial<Record<OpName, Dispatcher>> = {};
  const {
    init, destroy, lookup, forget, getattr, setattr, readlink, mknod, mkdir, unlink, rmdir, symlink, rename, link, open,
    read, write, flush, release, fsync, opendir, readdir, releasedir, fsyncdir, statfs, setxattr, getxattr, listxattr,
    removexattr, access, create, fallocate,
  } = ops;

  if (init) d.init = (conn: ConnInfo) => { init.call(ops, conn); };
  if (destroy) d.destroy = () => { destroy.call(ops); };
  if (forget) {
    d.forget = () => {
      try { forget.call(ops, arg(0), arg(1)); } catch (error) {
        counters.exceptions++;
        process.stderr.write(`shmr-fuse3: forget handler failed: ${describe(error)}\n`);
      }
    };
  }
  if (lookup) {
    d.lookup = (h: number, name: string) => {
      let r: Result<Entry | typeof ENTRY_ABSENT>;
      try { r = lookup.call(ops, context(), arg(0), name); } catch (e) { fail(h, 'lookup', e); return; }
      settle(h, 'lookup', r, entryOrAbsent);
    };
  }
  if (getattr) {
    d.getattr = (h: number) => {
      let r: Result<AttrReply>;
      try { r = getattr.call(ops, context(), arg(0), fhArg(1)); } catch (e) { fail(h, 'getattr', e); return; }
      settle(h, 'getattr', r, attrOk);
    };
  }
  if (setattr) {
    d.setattr = (h: number) => {
      let r: Result<AttrReply>;
      try { r = setattr.call(ops, context(), arg(0), setattrChanges(arg), fhArg(2)); } catch (e) { fail(h, 'setattr', e); return; }
      settle(h, 'setattr', r, attrOk);
    };
  }
  if (readlink) {
    d.readlink = (h: number) => {
      let r: Result<string | Buffer>;
      try { r = readlink.call(ops, context(), arg(0)); } catch (e) { fail(h, 'readlink', e); return; }
      settle(h, 'readlink', r, readlinkOk);
    };
  }
  if (mknod) {
    d.mknod = (h: number, name: string) => {
      let r: Result<Entry>;
      try { r = mknod.call(ops, context(), arg(0), name, arg(1), arg(2)); } catch (e) { fail(h, 'mknod', e); return; }
      settle(h, 'mknod', r, entryOk);
    };
  }
  if (mkdir) {
    d.mkdir = (h: number, name: string) => {
      let r: Result<Entry>;
      try { r = mkdir.call(ops, context(), arg(0), name, arg(1)); } catch (e) { fail(h, 'mkdir', e); return; }
      settle(h, 'mkdir', r, entryOk);
    };
  }
  if (unlink) {
    d.unlink = (h: number, name: string) => {
      let r: Result<void>;
      try { r = unlink.call(ops, context(), arg(0), name); } catch (e) { fail(h, 'unlink', e); return; }
      settle(h, 'unlink', r, voidOk);
    };
  }
  if (rmdir) {
    d.rmdir = (h: number, name: string) => {
      let r: Result<void>;
      try { r = rmdir.call(ops, context(), arg(0), name); } catch (e) { fail(h, 'rmdir', e); return; }
      settle(h, 'rmdir', r, voidOk);
    };
  }
  if (symlink) {
    d.symlink = (h: number, target: string | Buffer, name: string) => {
      let r: Result<Entry>;
      try { r = symlink.call(ops, context(), target, arg(0), name); } catch (e) { fail(h, 'symlink', e); return; }
      settle(h, 'symlink', r, entryOk);
    };
  }
  if (rename) {
    d.rename = (h: number, name: string, newName: string) => {
      let r: Result<void>;
      try { r = rename.call(ops, context(), arg(0), name, arg(1), newName, arg(2)); } catch (e) { fail(h, 'rename', e); return; }
      settle(h, 'rename', r, voidOk);
    };
  }
  if (link) {
    d.link = (h: number, newName: string) => {
      let r: Result<Entry>;
      try { r = link.call(ops, context(), arg(0), arg(1), newName); } catch (e) { fail(h, 'link', e); return; }
      settle(h, 'link', r, entryOk);
    };
  }
  if (open) {
    d.open = (h: number) => {
      const ino = arg(0);
      let r: Result<OpenReply>;
      try { r = open.call(ops, context(), ino, arg(1), arg(2) === 1); } catch (e) { fail(h, 'open', e); return; }
      settle(h, 'open', r, openOk, ino);
    };
  }
  if (read) {
    d.read = (h: number) => {
      let r: Result<Buffer | Uint8Array>;
      try { r = read.call(ops, context(), arg(0), arg(1), arg(2), arg(3)); } catch (e) { fail(h, 'read', e); return; }
      settle(h, 'read', r, readOk);
    };
  }
  if (write) {
    // IN +4: the slot of a lent buffer (-1: `data` is a Buffer of its own), +5: its length.
    d.write = (h: number, data: Buffer | ArrayBuffer) => {
      const slot = arg(4);
      const bytes = slot < 0 ? data as Buffer : Buffer.from(data as ArrayBuffer, 0, arg(5));
      let r: Result<number>;
      try {
        r = write.call(ops, context(), arg(0), bytes, arg(1), arg(2), arg(3), arg(6) === 1);
      } catch (e) {
        if (slot >= 0) n.releaseWriteBuffer(slot);
        fail(h, 'write', e);
        return;
      }
      if (slot < 0 || !isPromise(r)) {
        if (slot >= 0) n.releaseWriteBuffer(slot);
        settle(h, 'write', r, writeOk);
        return;
      }
      const release = () => n.releaseWriteBuffer(slot);
      settle(h, 'write', r.finally(release), writeOk);
    };
  }
  if (flush) {
    d.flush = (h: number, lockOwner: bigint) => {
      let r: Result<void>;
      try { r = flush.call(ops, context(), arg(0), arg(1), lockOwner); } catch (e) { fail(h, 'flush', e); return; }
      settle(h, 'flush', r, voidOk);
    };
  }
  if (release) {
    d.release = (h: number) => {
      let r: Result<void>;
      try { r = release.call(ops, context(), arg(0), arg(1), arg(2)); } catch (e) { fail(h, 'release', e); return; }
      settle(h, 'release', r, voidOk);
    };
  }
  if (fsync) {
    d.fsync = (h: number) => {
      let r: Result<void>;
      try { r = fsync.call(ops, context(), arg(0), arg(1) !== 0, arg(2)); } catch (e) { fail(h, 'fsync', e); return; }
      settle(h, 'fsync', r, voidOk);
    };
  }
  if (opendir) {
    d.opendir = (h: number) => {
      const ino = arg(0);
      let r: Result<OpenReply>;
      try { r = opendir.call(ops, context(), ino, arg(1)); } catch (e) { fail(h, 'opendir', e); return; }
      settle(h, 'opendir', r, opendirOk, ino);
    };
  }
  if (readdir) {
    d.readdir = (h: number) => {
      const size = arg(1);
      let r: Result<DirEntry[]>;
      try { r = readdir.call(ops, context(), arg(0), size, arg(2), arg(3)); } catch (e) { fail(h, 'readdir', e); return; }
      settle(h, 'readdir', r, readdirOk, size);
    };
  }
  if (releasedir) {
    d.releasedir = (h: number) => {
      let r: Result<void>;
      try { r = releasedir.call(ops, context(), arg(0), arg(1)); } catch (e) { fail(h, 'releasedir', e); return; }
      settle(h, 'releasedir', r, voidOk);
    };
  }
  if (fsyncdir) {
    d.fsyncdir = (h: number) => {
      let r: Result<void>;
      try { r = fsyncdir.call(ops, context(), arg(0), arg(1) !== 0, arg(2)); } catch (e) { fail(h, 'fsyncdir', e); return; }
      settle(h, 'fsyncdir', r, voidOk);
    };
  }
  if (statfs) {
    d.statfs = (h: number) => {
      let r: Result<Statfs>;
      try { r = statfs.call(ops, context(), arg(0)); } catch (e) { fail(h, 'statfs', e); return; }
      settle(h, 'statfs', r, statfsOk);
    };
  }
  if (setxattr) {
    d.setxattr = (h: number, name: string, value: Buffer) => {
      let r: Result<void>;
      try { r = setxattr.call(ops, context(), arg(0), name, value, arg(1)); } catch (e) { fail(h, 'setxattr', e); return; }
      settle(h, 'setxattr', r, voidOk);
    };
  }
  if (getxattr) {
    d.getxattr = (h: number, name: string) => {
      let r: Result<Buffer | typeof XATTR_ABSENT>;
      try { r = getxattr.call(ops, context(), arg(0), name); } catch (e) { fail(h, 'getxattr', e); return; }
      settle(h, 'getxattr', r, xattrOrAbsent);
    };
  }
  if (listxattr) {
    d.listxattr = (h: number) => {
      let r: Result<string[]>;
      try { r = listxattr.call(ops, context(), arg(0)); } catch (e) { fail(h, 'listxattr', e); return; }
      settle(h, 'listxattr', r, listxattrOk);
    };
  }
  if (removexattr) {
    d.removexattr = (h: number, name: string) => {
      let r: Result<void>;
      try { r = removexattr.call(ops, context(), arg(0), name); } catch (e) { fail(h, 'removexattr', e); return; }
      settle(h, 'removexattr', r, voidOk);
    };
  }
  if (access) {
    d.access = (h: number) => {
      let r: Result<void>;
      try { r = access.call(ops, context(), arg(0), arg(1)); } catch (e) { fail(h, 'access', e); return; }
      settle(h, 'access', r, voidOk);
    };
  }
  if (create) {
    d.create = (h: number, name: string) => {
      let r: Result<Entry & OpenReply>;
      try { r = create.call(ops, context(), arg(0), name, arg(1), arg(2), arg(3) === 1); } catch (e) { fail(h, 'create', e); return; }
      settle(h, 'create', r, createOk);
    };
  }
  if (fallocate) {
    d.fallocate = (h: number) => {
      let r: Result<void>;
      try { r = fallocate.call(ops, context(), arg(0), arg(1), arg(2), arg(3), arg(4)); } catch (e) { fail(h, 'fallocate', e); return; }
      settle(h, 'fallocate', r, voidOk);
    };
  }
  return d;
}

/** Writes `a` and its timeout into the OUT frame (OUT_INO..OUT_ATTR_TIMEOUT). */
function putAttrFrame(OUT: Float64Array, a: Attr, attrTimeoutSec: number): void {
  OUT[0] = a.ino; OUT[1] = a.mode; OUT[2] = a.nlink; OUT[3] = a.uid; OUT[4] = a.gid; OUT[5] = a.rdev;
  OUT[6] = a.size; OUT[7] = a.blocks; OUT[8] = a.blksize;
  const { atime, mtime, ctime } = a;
  OUT[9] = atime.sec; OUT[10] = atime.nsec; OUT[11] = mtime.sec; OUT[12] = mtime.nsec;
  OUT[13] = ctime.sec; OUT[14] = ctime.nsec;
  OUT[OUT_ATTR_TIMEOUT] = attrTimeoutSec;
}

/**
 * setattr's IN layout: +1 to_set, +3 mode, +4 uid, +5 gid, +6 size, +7..+12 a/m/ctime s,ns,
 * +13 kill suid/sgid.
 */
function setattrChanges(arg: (i: number) => number): SetattrChanges {
  const valid = arg(1);
  const changes: SetattrChanges = {};
  if (valid & SET_MODE) changes.mode = arg(3);
  if (valid & SET_UID) changes.uid = arg(4);
  if (valid & SET_GID) changes.gid = arg(5);
  if (valid & SET_SIZE) changes.size = arg(6);
  if (valid & SET_ATIME_NOW) changes.atime = 'now';
  else if (valid & SET_ATIME) changes.atime = { sec: arg(7), nsec: arg(8) };
  if (valid & SET_MTIME_NOW) changes.mtime = 'now';
  else if (valid & SET_MTIME) changes.mtime = { sec: arg(9), nsec: arg(10) };
  if (valid & SET_CTIME) changes.ctime = { sec: arg(11), nsec: arg(12) };
  if (arg(13) === 1) changes.killSuidgid = true;
  return changes;
}

/* ---------------------------------------------------------------- options */

const MiB = 1024 * 1024;

function checkSize(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`MountOptions.${name} must be an integer in 0..2^32-1, got ${v}`);
  return v;
}

/** libfuse splits -o values on unescaped commas; fsname and subtype may contain any text. */
function escapeOption(value: string): string {
  return value.replace(/[\\,]/g, (c) => `\\${c}`);
}

/** The value of the last `max_read=N` among raw options, if any. */
function rawMaxRead(extra: readonly string[]): number | undefined {
  let found: number | undefined;
  for (const group of extra) {
    for (const option of group.split(/(?<!\\),/)) {
      const m = /^max_read=(\d+)$/.exec(option);
      if (m) found = Number(m[1]);
    }
  }
  return found;
}

function nativeConfig(options: MountOptions): NativeConfig {
  if (typeof options.mountpoint !== 'string' || options.mountpoint === '') throw new TypeError('MountOptions.mountpoint is required');
  const extra = options.extraOptions ?? [];
  const opts: string[] = [];
  if (options.fsName !== undefined) opts.push(`fsname=${escapeOption(options.fsName)}`);
  if (options.subtype !== undefined) opts.push(`subtype=${escapeOption(options.subtype)}`);
  if (options.allowOther === true) opts.push('allow_other');
  if (options.defaultPermissions === true) opts.push('default_permissions');
  if (options.debug === true) opts.push('debug');
  // libfuse fails INIT, leaving a dead mount, unless conn->max_read equals the max_read
  // mount option; both come from this one number.
  const raw = rawMaxRead(extra);
  if (raw !== undefined && options.maxReadBytes !== undefined && raw !== options.maxReadBytes) {
    throw new RangeError(`MountOptions.maxReadBytes (${options.maxReadBytes}) disagrees with max_read=${raw} in extraOptions`);
  }
  const maxRead = checkSize('maxReadBytes', raw ?? options.maxReadBytes, MiB);
  if (raw === undefined) opts.push(`max_read=${maxRead}`);
  opts.push(...extra);
  return {
    argv: ['shmr', ...opts.flatMap((o) => ['-o', o])],
    mountpoint: resolve(options.mountpoint),
    maxWrite: checkSize('maxWriteBytes', options.maxWriteBytes, MiB),
    maxRead,
    maxReadahead: checkSize('maxReadaheadBytes', options.maxReadaheadBytes, MiB),
    timeGran: checkSize('timeGranularityNs', options.timeGranularityNs, 1),
    maxBackground: checkSize('maxBackground', options.maxBackground, 0),
    writebackCache: options.writebackCache === true,
    asyncRead: options.asyncRead !== false,
    parallelDirops: options.parallelDirops !== false,
  };
}

/* ---------------------------------------------------------------- the session */

/** Reads answered in C since mount, their bytes, declines (not in the page cache, bad checksum), blocks registered now. */
export interface ChunkReadStats {
  readonly reads: number;
  readonly bytes: number;
  readonly notCached: number;
  readonly mismatches: number;
  readonly blocks: number;
}

/** GETATTRs answered in C since mount, attributes handed over for them, inodes held now. */
export interface AttributeStats {
  /** GETATTRs the addon answered. */
  readonly served: number;
  readonly kept: number;
  readonly inodes: number;
  /** Time-only SETATTRs of inodes handed over with ownsTimes that the addon answered. */
  readonly setattrsServed: number;
}

/** A shard region the binding may read and verify itself (see registerChunkBlock). */
export interface ChunkSource {
  /** A descriptor of the shard file; the binding keeps its own duplicate. */
  readonly fd: number;
  readonly payloadOffset: number;
  /** Bytes of the block answered from the shard: [0, dataBytes). */
  readonly dataBytes: number;
  readonly chunkBytes: number;
  /** The shard's chunk checksums from chunk 0, CRC32C little endian. */
  readonly crcs: Buffer;
}

export class FuseSession {
  /** Resolves when the session ends (unmounted from outside, unmount(), or a failed mount). */
  readonly closed: Promise<void>;
  readonly #native: NativeAddon;
  readonly #handle: Handle;
  readonly #counters = { exceptions: 0 };

  constructor(ops: LowLevelOps, options: MountOptions) {
    const config = nativeConfig(options);
    this.#native = loadAddon();
    let onClosed!: () => void;
    this.closed = new Promise<void>((resolveClosed) => { onClosed = resolveClosed; });
    this.#handle = this.#native.createSession(makeDispatchers(ops, this.#native, this.#counters), config, () => onClosed());
  }

  /**
   * Creates the libfuse session, mounts, and answers the kernel's INIT before returning.
   * Throws an Error naming the mountpoint and libfuse's reason, leaving no mount behind.
   * A session mounts once.
   */
  mount(): void {
    this.#native.mount(this.#handle);
  }

  /** Unmounts and tears the session down; in-flight requests get EIO. Idempotent. */
  unmount(): void {
    this.#native.unmount(this.#handle);
  }

  /**
   * Drops the kernel's cached attributes (and, for offset >= 0, cached data in
   * [offset, offset+length), length 0 = to the end) of `ino`. Returns 0 or -errno (-ENOENT:
   * the kernel does not know the inode, which is normal).
   * Runs synchronously on this thread: with offset >= 0 the kernel waits for pages that are
   * being read, so do not call it while a read of `ino` may be outstanding (deadlock).
   */
  notifyInvalInode(ino: number, offset: number, length: number): number {
    return this.#native.notifyInvalInode(this.#handle, ino, offset, length);
  }

  /**
   * Drops the kernel's cached lookup of `name` in `parent`. Returns 0 or -errno.
   * The kernel takes the directory's lock: do not call it while a request on `parent`
   * (lookup, create, ...) may be outstanding, or the process deadlocks.
   */
  notifyInvalEntry(parent: number, name: string): number {
    return this.#native.notifyInvalEntry(this.#handle, parent, name);
  }

  /**
   * Lets the addon answer READs inside block `blockIndex` of `ino` from `source` (verified
   * against its checksums, from the page cache only) until dropped; a block registered already
   * stays as it is. The caller drops it before anything changes what the block reads as or
   * where it lives (chunk-reads.ts). False when not mounted or out of resources.
   */
  registerChunkBlock(ino: number, blockIndex: number, blockBytes: number, source: ChunkSource): boolean {
    return this.#native.chunkRegister(
      this.#handle, ino, blockIndex, blockBytes, source.fd, source.payloadOffset, source.dataBytes,
      source.chunkBytes, source.crcs,
    );
  }

  /** Drops one block, or every block of `ino` with index -1; returns the blocks of `ino` left. */
  dropChunkBlocks(ino: number, blockIndex: number): number {
    return this.#native.chunkDrop(this.#handle, ino, blockIndex);
  }

  /**
   * Lets the addon answer GETATTRs of `attr.ino` with `attr` and `attrTimeoutSec` until
   * dropped, as if a reply had carried them with isAttrReusable (see AttrReply). For attributes
   * getattr would return now, when no request is asking for them. With `ownsTimes` (an inode
   * deleted at its unlink, which nothing in JS changes any more) the addon also answers the
   * SETATTRs that only set mtime and ctime, keeping what they set (attr_cache.c).
   */
  registerAttributes(attr: Attr, attrTimeoutSec: number, ownsTimes = false): void {
    putAttrFrame(this.#native.outFrame, attr, attrTimeoutSec);
    this.#native.attrRegister(this.#handle, ownsTimes);
  }

  /** Makes GETATTRs of `ino` go to the getattr handler again. */
  dropAttributes(ino: number): void {
    this.#native.attrDrop(this.#handle, ino);
  }

  /** Makes every GETATTR go to the getattr handler again. */
  clearAttributes(): void {
    this.#native.attrClear(this.#handle);
  }

  attributeStats(): AttributeStats {
    const [served, kept, inodes, setattrsServed] = this.#native.attrStats(this.#handle);
    return { served, kept, inodes, setattrsServed };
  }

  chunkReadStats(): ChunkReadStats {
    const [reads, bytes, notCached, mismatches, blocks] = this.#native.chunkStats(this.#handle);
    return { reads, bytes, notCached, mismatches, blocks };
  }

  /** Requests received, replies sent (both from the addon), handler exceptions (bugs). */
  stats(): SessionStats {
    const [requests, replies] = this.#native.stats(this.#handle);
    return { requests, replies, exceptions: this.#counters.exceptions };
  }
}

