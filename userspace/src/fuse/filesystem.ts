/**
 * ShmrFilesystem: the FUSE low-level operations of shmr, on the metadata store and the file
 * store. The only module that knows FUSE request shapes (through binding.ts's types); below
 * it, everything speaks POSIX.
 *
 * Permission checks are the kernel's: the mount uses default_permissions (init options), so
 * ops here enforce only what the kernel cannot (types, emptiness, name limits, link counts).
 */
import { assert } from '../assert.js';
import { Errno, FsError } from '../errno.js';
import {
  FILE_BYTES_MAX, LINKS_MAX, NAME_BYTES_MAX, SYMLINK_BYTES_MAX, XATTR_VALUE_BYTES_MAX,
} from '../limits.js';
import { log } from '../log.js';
import {
  isDirectory, isRegular, now, ROOT_INO, S_IFLNK, type InodeChanges, type InodeRecord, type MetaStore,
  type Timespec,
} from '../meta/index.js';
import { shardFileBytes } from '../block/index.js';
import type { FileStore } from '../file/index.js';
import type { Pools } from '../pool/index.js';
import type {
  Attr, AttrReply, DirEntry, Entry, LowLevelOps, OpenReply, RequestContext, Result, SetattrChanges,
  Statfs,
} from './binding.js';
import { ENTRY_ABSENT, XATTR_ABSENT } from './binding.js';
import type { AttrCache } from './attr-cache.js';
import { Handles } from './handles.js';
import { inheritPolicy, isPolicyXattr, validatePolicyXattr } from '../tiering/policy.js';
import { ReadBuffers } from './read-buffers.js';
import { WriteTurns } from './write-turns.js';

const O_ACCMODE = 0o3;
const O_WRONLY = 0o1;
const O_RDWR = 0o2;
const O_TRUNC = 0o1000;
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_IXGRP = 0o010;
const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
const FALLOC_FL_ZERO_RANGE = 0x10;
const STATFS_BLOCK_BYTES = 4096;
const STATFS_FILES_MAX = 2 ** 48;
const READDIR_BATCH_MAX = 512;
const RELATIME_SEC = 24 * 3600;
const DIRECTORY_BYTES = 4096;
const SECURITY_CAPABILITY = 'security.capability';

/** Settings of the FUSE front end. */
export interface FilesystemOptions {
  readonly entryTimeoutSec: number;
  readonly attrTimeoutSec: number;
}

export class ShmrFilesystem implements LowLevelOps {
  readonly #meta: MetaStore;
  readonly #files: FileStore;
  readonly #pools: Pools;
  readonly #options: FilesystemOptions;
  readonly handles: Handles;
  readonly #readBuffers = new ReadBuffers();
  readonly #writeTurns = new WriteTurns();
  /**
   * Inodes deleted at their unlink (last link, nothing open) that the kernel still knows: it
   * sends a SETATTR of the times it kept and a FORGET when it evicts them. Answered from
   * memory, as an unlinked inode's attributes never outlive the process (a crash deletes it).
   * An entry lives until the FORGET that drops the kernel's last reference.
   */
  readonly #unlinked = new Map<number, InodeRecord>();
  /**
   * Drops the kernel's cached attributes of an inode (the session's notifyInvalInode, without
   * touching cached data): set by the mount. Used where a mode changes without a reply that
   * carries attributes (setuid/setgid cleared on a write or an open).
   */
  invalidateAttributes: ((ino: number) => void) | undefined;
  /** The binding's copies of attributes for GETATTRs it answers itself; set by the mount. */
  attrCache: AttrCache | undefined;
  /**
   * True while something besides the mount uses the inode (an NBD connection serving it as a
   * volume): an unlinked inode lives on until that user lets go (releasedElsewhere), as one
   * open through the mount does until its last close. Set by the mount.
   */
  isUsedElsewhere: (ino: number) => boolean = () => false;

  constructor(parts: { meta: MetaStore; files: FileStore; pools: Pools; options: FilesystemOptions }) {
    this.#meta = parts.meta;
    this.#files = parts.files;
    this.#pools = parts.pools;
    this.#options = parts.options;
    this.handles = new Handles();
  }

  // ---- attributes ----

  #attr(inode: InodeRecord): Attr {
    const overlay = this.#files.overlay(inode.ino);
    // Directories report a nominal size, as ext4 does: some tools take 0 for "empty".
    const size = isDirectory(inode.mode) ? DIRECTORY_BYTES : (overlay?.size ?? inode.size);
    // Cached blocks not stored yet count too, but never more than the size: holes stay holes.
    const allocatedBytes = Math.min(inode.storedBytes + (overlay?.cachedBytes ?? 0), Math.max(size, inode.storedBytes));
    return {
      ino: inode.ino, mode: inode.mode, nlink: inode.nlink, uid: inode.uid, gid: inode.gid,
      rdev: inode.rdev, size, blocks: Math.ceil(allocatedBytes / 512), blksize: 4096,
      atime: inode.atime, mtime: overlay?.mtime ?? inode.mtime, ctime: overlay?.ctime ?? inode.ctime,
    };
  }

  #entry(inode: InodeRecord): Entry {
    this.handles.addLookup(inode.ino);
    return {
      ino: inode.ino, generation: 0, attr: this.#attr(inode),
      entryTimeoutSec: this.#options.entryTimeoutSec, attrTimeoutSec: this.#options.attrTimeoutSec,
      isAttrReusable: this.#mayReuse(inode),
    };
  }

  #attrReply(inode: InodeRecord): AttrReply {
    return { attr: this.#attr(inode), attrTimeoutSec: this.#options.attrTimeoutSec, isAttrReusable: this.#mayReuse(inode) };
  }

  /**
   * Whether the binding may keep `inode`'s attributes for GETATTRs (attr-cache.ts): only when
   * they come from its stored row alone, as it is now (the cached record itself: a record read
   * before a later change of the row is another object), with nothing held in memory over
   * them (the file store's state). An inode deleted at its unlink has no row: never kept.
   */
  #mayReuse(inode: InodeRecord): boolean {
    return this.attrCache !== undefined && this.#isRowAlone(inode);
  }

  #isRowAlone(inode: InodeRecord): boolean {
    // The unlinked first: their rows are gone, and looking for one would cost a query.
    return !this.#unlinked.has(inode.ino) && this.#files.overlay(inode.ino) === undefined &&
      this.#meta.getInode(inode.ino) === inode;
  }

  /**
   * Hands the binding the attributes of a directory whose entries just changed (committed):
   * the kernel asks for them at the next permission check in it.
   */
  #registerDirectory(ino: number): void {
    const cache = this.attrCache;
    const inode = cache === undefined ? undefined : this.#meta.getInode(ino);
    if (inode === undefined || !this.#isRowAlone(inode)) return;
    cache?.register(this.#attr(inode), this.#options.attrTimeoutSec);
  }

  // ---- names ----

  lookup(_req: RequestContext, parent: number, name: string): Entry | typeof ENTRY_ABSENT {
    checkName(name, 'lookup');
    const ino = this.#meta.lookup(parent, name);
    // No throw: a miss precedes every create.
    if (ino === undefined) return ENTRY_ABSENT;
    return this.#entry(this.#meta.requireInode(ino, 'lookup'));
  }

  forget(ino: number, nlookup: number): void {
    if (this.handles.forget(ino, nlookup) > 0) return;
    this.attrCache?.drop(ino);
    // Deleted already: nothing left to do.
    if (this.#unlinked.delete(ino)) return;
    void this.#deleteIfUnused(ino);
  }

  /**
   * The inode, or one deleted at its unlink that the kernel still refers to. That one first:
   * its row is gone for good (inode numbers are never reused), so no query can find it.
   */
  #requireKnownInode(ino: number, operation: string): InodeRecord {
    const inode = this.#unlinked.get(ino) ?? this.#meta.getInode(ino);
    if (inode === undefined) throw new FsError(Errno.ENOENT, operation, `inode ${ino}`);
    return inode;
  }

  getattr(_req: RequestContext, ino: number): AttrReply {
    return this.#attrReply(this.#requireKnownInode(ino, 'getattr'));
  }

  /** Synchronous unless the size changes: no promise for the common change of times. */
  setattr(_req: RequestContext, ino: number, requested: SetattrChanges): Result<AttrReply> {
    const unlinked = this.#unlinked.get(ino);
    if (unlinked !== undefined) {
      return this.#attrReply(this.#setUnlinkedAttributes(unlinked, withPrivilegesDropped(unlinked, requested)));
    }
    const inode = this.#meta.requireInode(ino, 'setattr');
    const changes = withPrivilegesDropped(inode, requested);
    const isChown = changes.uid !== undefined || changes.gid !== undefined;
    if (changes.size !== undefined || isChown) this.#dropCapability(ino);
    if (changes.size !== undefined) return this.#truncateAndSet(inode, changes.size, changes);
    return this.#attrReply(this.#setAttributes(inode, changes));
  }

  /**
   * What killpriv v2 leaves to the filesystem on a write or an open(O_TRUNC) (the kernel's
   * `killSuidgid`, see binding.ts): with it setuid, and setgid of a group-executable file, are
   * cleared; a security.capability is dropped either way, as Linux's own filesystems do.
   */
  #dropPrivileges(ino: number, killSuidgid: boolean): void {
    this.#dropCapability(ino);
    if (!killSuidgid) return;
    const unlinked = this.#unlinked.get(ino);
    const inode = unlinked ?? this.#meta.getInode(ino);
    if (inode === undefined || withoutSuidgid(inode.mode) === inode.mode) return;
    const changes = { mode: withoutSuidgid(inode.mode) };
    if (unlinked !== undefined) this.#setUnlinkedAttributes(unlinked, changes);
    else this.#setAttributes(inode, changes);
    // Attributes only (offset -1): no page lock, so safe while the kernel waits for this request.
    this.invalidateAttributes?.(ino);
  }

  /** Drops the file's security.capability, if any (a cheap test while no file has one). */
  #dropCapability(ino: number): void {
    if (!this.#meta.hasXattrNamed(SECURITY_CAPABILITY)) return;
    if (this.#meta.getXattr(ino, SECURITY_CAPABILITY) !== undefined) this.#meta.removeXattr(ino, SECURITY_CAPABILITY);
  }

  async #truncateAndSet(
    inode: InodeRecord, size: number, changes: SetattrChanges,
  ): Promise<AttrReply> {
    const ino = inode.ino;
    if (isDirectory(inode.mode)) throw new FsError(Errno.EISDIR, 'truncate', `inode ${ino}`);
    if (size > FILE_BYTES_MAX) throw new FsError(Errno.EFBIG, 'truncate', `${size} bytes`);
    if (!isRegular(inode.mode)) throw new FsError(Errno.EINVAL, 'truncate', `inode ${ino}`);
    await this.#files.truncate(ino, size);
    if (this.handles.openCount(ino) === 0) this.#files.release(ino);
    return this.#attrReply(this.#setAttributes(inode, changes));
  }

  /** Stores the changes other than size, and tells the file store's cached times. */
  #setAttributes(inode: InodeRecord, changes: SetattrChanges): InodeRecord {
    const time = now();
    const mtime = resolveTime(changes.mtime, time);
    const updated = this.#meta.setAttributes(inode.ino, inodeChanges(inode, changes, time));
    this.#files.noteAttributes(inode.ino, {
      ...(mtime === undefined ? {} : { mtime }), ctime: changes.ctime ?? time,
    });
    return updated;
  }

  /** setattr of an inode deleted at its unlink: in memory only (see #unlinked). */
  #setUnlinkedAttributes(inode: InodeRecord, changes: SetattrChanges): InodeRecord {
    // A size change needs an open file, and an open file keeps its inode stored.
    if (changes.size !== undefined) {
      throw new FsError(Errno.ENOENT, 'truncate', `inode ${inode.ino}`);
    }
    const updated: InodeRecord = { ...inode, ...inodeChanges(inode, changes, now()) };
    this.#keepUnlinked(updated);
    return updated;
  }

  /**
   * Keeps the record of an inode deleted at its unlink, which the kernel still holds, and for
   * a regular file hands the binding what getattr answers for it (attr-cache.ts
   * registerUnlinked), again after every change of it here: the binding answers the kernel's
   * SETATTR of times from it. Other inodes never get that SETATTR (the kernel keeps no times
   * of its own for them).
   */
  #keepUnlinked(inode: InodeRecord): void {
    this.#unlinked.set(inode.ino, inode);
    if (isRegular(inode.mode)) this.attrCache?.registerUnlinked(this.#attr(inode), this.#options.attrTimeoutSec);
  }

  readlink(_req: RequestContext, ino: number): Buffer {
    const inode = this.#meta.requireInode(ino, 'readlink');
    if (inode.target === null) throw new FsError(Errno.EINVAL, 'readlink', `inode ${ino}`);
    return inode.target;
  }

  #create(req: RequestContext, parent: number, name: string, mode: number, extra: { rdev?: number; target?: Buffer }): InodeRecord {
    checkName(name, 'create');
    const directory = this.#meta.requireInode(parent, 'create');
    // BSD group semantics under a setgid directory, as Linux does.
    const inheritsGroup = (directory.mode & S_ISGID) !== 0;
    const gid = inheritsGroup ? directory.gid : req.gid;
    const finalMode = inheritsGroup && isDirectory(mode) ? mode | S_ISGID : mode;
    const inode = this.#meta.createInode({ parent, name, mode: finalMode, uid: req.uid, gid, ...extra });
    inheritPolicy(this.#meta, parent, inode.ino);
    this.#registerDirectory(parent);
    return inode;
  }

  mknod(req: RequestContext, parent: number, name: string, mode: number, rdev: number): Entry {
    return this.#entry(this.#create(req, parent, name, mode, { rdev }));
  }

  mkdir(req: RequestContext, parent: number, name: string, mode: number): Entry {
    return this.#entry(this.#create(req, parent, name, 0o040000 | (mode & 0o7777), {}));
  }

  symlink(req: RequestContext, target: string | Buffer, parent: number, name: string): Entry {
    const bytes = typeof target === 'string' ? Buffer.from(target) : target;
    if (bytes.byteLength > SYMLINK_BYTES_MAX) throw new FsError(Errno.ENAMETOOLONG, 'symlink', name);
    return this.#entry(this.#create(req, parent, name, S_IFLNK | 0o777, { target: bytes }));
  }

  link(_req: RequestContext, ino: number, newParent: number, newName: string): Entry {
    checkName(newName, 'link');
    const inode = this.#meta.link(ino, newParent, newName, LINKS_MAX);
    this.#registerDirectory(newParent);
    return this.#entry(inode);
  }

  /** Synchronous unless the file store holds something of the inode: no promise per unlink. */
  unlink(_req: RequestContext, parent: number, name: string): Result<void> {
    // Nothing open and nothing cached: the inode goes in the unlink's own transaction.
    const { inode, isDeleted } = this.#meta.unlinkAndDeleteUnused(parent, name, (ino) =>
      this.handles.openCount(ino) === 0 && this.#files.overlay(ino) === undefined && !this.isUsedElsewhere(ino));
    this.#registerDirectory(parent);
    if (!isDeleted) return inode.nlink === 0 ? this.#deleteIfUnused(inode.ino) : undefined;
    // Its row is committed gone (isDeleted), so this record is the only one left.
    if (this.handles.isReferenced(inode.ino)) this.#keepUnlinked(inode);
    return this.#files.deleteFile(inode.ino);
  }

  async rmdir(_req: RequestContext, parent: number, name: string): Promise<void> {
    const inode = this.#meta.rmdir(parent, name);
    this.#registerDirectory(parent);
    await this.#deleteIfUnused(inode.ino);
  }

  async rename(_req: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number): Promise<void> {
    checkName(newName, 'rename');
    const replaced = this.#meta.rename({ parent, name, newParent, newName, flags });
    this.#registerDirectory(parent);
    if (newParent !== parent) this.#registerDirectory(newParent);
    if (replaced !== undefined && replaced.nlink === 0) await this.#deleteIfUnused(replaced.ino);
  }

  /**
   * Deletes an inode's data once nothing refers to it any more. A promise only when it
   * deletes: the common case (still linked or referenced) allocates nothing.
   */
  #deleteIfUnused(ino: number): Promise<void> | undefined {
    if (ino === ROOT_INO || this.handles.isReferenced(ino) || this.isUsedElsewhere(ino)) return undefined;
    const inode = this.#meta.getInode(ino);
    if (inode === undefined || inode.nlink > 0) return undefined;
    this.#meta.deleteInode(ino);
    return this.#files.deleteFile(ino);
  }

  /** The last user besides the mount (see isUsedElsewhere) let go of `ino`. */
  releasedElsewhere(ino: number): Promise<void> | undefined {
    return this.#deleteIfUnused(ino);
  }

  // ---- files ----

  async open(_req: RequestContext, ino: number, flags: number, killSuidgid = false): Promise<OpenReply> {
    const inode = this.#meta.requireInode(ino, 'open');
    if (isDirectory(inode.mode)) throw new FsError(Errno.EISDIR, 'open', `inode ${ino}`);
    const isWritable = (flags & O_ACCMODE) === O_WRONLY || (flags & O_ACCMODE) === O_RDWR;
    if (isWritable && (flags & O_TRUNC) !== 0 && isRegular(inode.mode)) this.#dropPrivileges(ino, killSuidgid);
    if (isWritable && (flags & O_TRUNC) !== 0 && isRegular(inode.mode) && inode.size > 0) {
      await this.#files.truncate(ino, 0);
    }
    return { fh: this.handles.open(ino, flags), keepCache: true };
  }

  /** Always a new file: no setuid/setgid to clear, whatever the kernel's `killSuidgid`. */
  create(
    req: RequestContext, parent: number, name: string, mode: number, flags: number,
  ): Entry & OpenReply {
    const inode = this.#create(req, parent, name, mode, {});
    const entry = this.#entry(inode);
    // A literal, not a spread of `entry`: a spread that adds keys is a slow clone and gave the
    // reply's property loads a new shape each time.
    return {
      ino: entry.ino, generation: entry.generation, attr: entry.attr, entryTimeoutSec: entry.entryTimeoutSec,
      attrTimeoutSec: entry.attrTimeoutSec, isAttrReusable: entry.isAttrReusable,
      fh: this.handles.open(inode.ino, flags), keepCache: true,
    };
  }

  /** Answered synchronously when the data is in memory (FileStore.readNow), else later. */
  read(_req: RequestContext, ino: number, size: number, offset: number, fh: number): Buffer | Promise<Buffer> {
    const handle = this.handles.get(fh);
    if (handle !== undefined && !handle.hasReadOnce) {
      handle.hasReadOnce = true;
      this.#touchAccessTime(ino);
    }
    const target = this.#readBuffers.acquire(size);
    let bytesNow: number | undefined;
    try {
      bytesNow = this.#files.readNow(ino, offset, size, target);
    } catch {
      // The read below meets the same problem and reports it (and logs an EIO).
      bytesNow = undefined;
    }
    if (bytesNow !== undefined) return bytesNow === size ? target : target.subarray(0, bytesNow);
    return this.#readLater(ino, size, offset, target);
  }

  async #readLater(ino: number, size: number, offset: number, target: Buffer): Promise<Buffer> {
    let bytesRead: number;
    try {
      bytesRead = await this.#files.read(ino, offset, size, target);
    } catch (error) {
      this.#readBuffers.release(target);
      if (error instanceof FsError && error.errno === Errno.EIO) {
        log.error(`read of ${this.#meta.pathOf(ino)} at ${offset} failed: ${error.message}`);
      }
      throw error;
    }
    return bytesRead === size ? target : target.subarray(0, bytesRead);
  }

  releaseReadBuffer(data: Buffer | Uint8Array): void {
    this.#readBuffers.release(data);
  }

  /**
   * relatime, as Linux mounts by default: atime moves on a read when it is older than mtime or
   * ctime, or more than a day old. Checked once per open handle, to keep reads cheap.
   */
  #touchAccessTime(ino: number): void {
    const inode = this.#meta.getInode(ino);
    if (inode === undefined) return;
    const time = now();
    const isStale = compareTime(inode.atime, inode.mtime) <= 0 || compareTime(inode.atime, inode.ctime) <= 0 ||
      time.sec - inode.atime.sec > RELATIME_SEC;
    if (isStale) this.#meta.setAccessTime(ino, time);
  }

  /** Large writes wait for their own event-loop turn, so small reads are not queued behind them. */
  write(
    _req: RequestContext, ino: number, data: Buffer, offset: number, _fh = -1, _flags = 0, killSuidgid = false,
  ): number | Promise<number> {
    // Only flagged writes (write(2) past the page cache by a caller without CAP_FSETID): a
    // write-back of cached pages may follow a setcap made after the write(2), whose
    // capability the kernel already checked then.
    if (killSuidgid) this.#dropPrivileges(ino, true);
    if (!this.#writeTurns.mustWait(data.byteLength)) return this.#files.write(ino, offset, data);
    return this.#writeTurns.run(() => this.#files.write(ino, offset, data));
  }

  flush(_req: RequestContext, ino: number): Result<void> {
    // Nothing cached, nothing to store: answered without a promise (every close sends FLUSH).
    if (this.#files.overlay(ino) === undefined) return undefined;
    return this.#files.flush(ino, { sync: false });
  }

  release(_req: RequestContext, ino: number, fh: number): Result<void> {
    const remaining = this.handles.close(fh);
    if (remaining > 0) return undefined;
    // Nothing cached: nothing to store or release, so no promise unless the inode goes.
    if (this.#files.overlay(ino) === undefined) return this.#deleteIfUnused(ino);
    if (this.#meta.getInode(ino)?.nlink === 0 && !this.isUsedElsewhere(ino)) return this.#dropNameless(ino);
    return this.#storeAndRelease(ino);
  }

  /**
   * The last close of a file unlinked while open: its cached data can never be read again, so
   * it is dropped rather than stored (storing would spend writes, or fail on a full pool). The
   * inode goes now, or at the FORGET if the kernel still holds it.
   */
  async #dropNameless(ino: number): Promise<void> {
    await this.#files.deleteFile(ino);
    await this.#deleteIfUnused(ino);
  }

  async #storeAndRelease(ino: number): Promise<void> {
    try {
      await this.#files.flush(ino, { sync: false });
    } catch (error) {
      // close(2) already reported it through flush; the data stays cached for a retry.
      log.error(`storing ${this.#meta.pathOf(ino)} on release: ${(error as Error).message}`);
      return;
    }
    this.#files.release(ino);
    await this.#deleteIfUnused(ino);
  }

  async fsync(_req: RequestContext, ino: number): Promise<void> {
    await this.#files.flush(ino, { sync: true });
  }

  async fallocate(_req: RequestContext, ino: number, mode: number, offset: number, length: number): Promise<void> {
    const inode = this.#meta.requireInode(ino, 'fallocate');
    if (!isRegular(inode.mode)) throw new FsError(Errno.ENODEV, 'fallocate', `inode ${ino}`);
    const known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
    if ((mode & ~known) !== 0) throw new FsError(Errno.EOPNOTSUPP, 'fallocate', `mode ${mode}`);
    const end = offset + length;
    if ((mode & FALLOC_FL_PUNCH_HOLE) !== 0) {
      if ((mode & FALLOC_FL_KEEP_SIZE) === 0) throw new FsError(Errno.EOPNOTSUPP, 'fallocate', 'punch without keep size');
      await this.#files.punchHole(ino, offset, length);
      return;
    }
    if ((mode & FALLOC_FL_ZERO_RANGE) !== 0) await this.#files.punchHole(ino, offset, length);
    // Space is not reserved ahead (shards are written whole); only the size moves.
    const size = this.#files.overlay(ino)?.size ?? inode.size;
    if ((mode & FALLOC_FL_KEEP_SIZE) === 0 && end > size) await this.#files.truncate(ino, end);
  }

  // ---- directories ----

  opendir(_req: RequestContext, ino: number): OpenReply {
    const inode = this.#meta.requireInode(ino, 'opendir');
    if (!isDirectory(inode.mode)) throw new FsError(Errno.ENOTDIR, 'opendir', `inode ${ino}`);
    return { fh: 0 };
  }

  readdir(_req: RequestContext, ino: number, size: number, offset: number): DirEntry[] {
    const entries: DirEntry[] = [];
    if (offset < 1) entries.push({ name: '.', ino, mode: 0o040000, nextOffset: 1 });
    if (offset < 2) {
      const parent = this.#meta.parentOf(ino) ?? ino;
      entries.push({ name: '..', ino: parent, mode: 0o040000, nextOffset: 2 });
    }
    const countMax = Math.min(READDIR_BATCH_MAX, Math.ceil(size / 24));
    const afterId = Math.max(0, offset - 2);
    for (const row of this.#meta.readDirectory(ino, afterId, countMax)) {
      entries.push({ name: row.name, ino: row.ino, mode: row.mode, nextOffset: row.id + 2 });
    }
    return entries;
  }

  releasedir(): void {
    return undefined;
  }

  fsyncdir(): void {
    this.#meta.syncDurable();
  }

  statfs(): Statfs {
    const space = this.#pools.space();
    const files = STATFS_FILES_MAX;
    const used = this.#meta.countInodes();
    // Tombstoned shards come back at their purge: free for root's view (bfree), not for bavail.
    const tombstonedBytes = this.#meta.tombstoneFootprint()
      .reduce((sum, usage) => sum + shardFileBytes(usage.topology, usage.blocks, usage.storedBytes), 0);
    const reclaimableBytes = Math.min(tombstonedBytes, space.totalBytes - space.freeBytes);
    return {
      bsize: STATFS_BLOCK_BYTES, frsize: STATFS_BLOCK_BYTES,
      blocks: Math.floor(space.totalBytes / STATFS_BLOCK_BYTES),
      bfree: Math.floor((space.freeBytes + reclaimableBytes) / STATFS_BLOCK_BYTES),
      bavail: Math.floor(space.freeBytes / STATFS_BLOCK_BYTES),
      files, ffree: files - used, favail: files - used, namemax: NAME_BYTES_MAX,
    };
  }

  // ---- extended attributes ----

  setxattr(_req: RequestContext, ino: number, name: string, value: Buffer, flags: number): void {
    checkXattrName(name);
    if (value.byteLength > XATTR_VALUE_BYTES_MAX) throw new FsError(Errno.E2BIG, 'setxattr', name);
    if (isPolicyXattr(name)) validatePolicyXattr({ meta: this.#meta, pools: this.#pools }, ino, name, value);
    this.#meta.setXattr(ino, name, value, flags);
  }

  getxattr(_req: RequestContext, ino: number, name: string): Buffer | typeof XATTR_ABSENT {
    // The kernel asks for security.capability before every write (to drop privileges);
    // while no file has one, answer at once: no SQL, no error object, no throw.
    if (name === SECURITY_CAPABILITY && !this.#meta.hasXattrNamed(SECURITY_CAPABILITY)) return XATTR_ABSENT;
    checkXattrName(name);
    const value = this.#meta.getXattr(ino, name);
    if (value !== undefined) return value;
    this.#meta.requireInode(ino, 'getxattr');
    return XATTR_ABSENT;
  }

  listxattr(_req: RequestContext, ino: number): string[] {
    this.#meta.requireInode(ino, 'listxattr');
    return this.#meta.listXattrs(ino);
  }

  removexattr(_req: RequestContext, ino: number, name: string): void {
    checkXattrName(name);
    this.#meta.removeXattr(ino, name);
  }

  access(req: RequestContext, ino: number, mask: number): void {
    const inode = this.#meta.requireInode(ino, 'access');
    if (req.uid === 0 || mask === 0) return;
    const shift = req.uid === inode.uid ? 6 : req.gid === inode.gid ? 3 : 0;
    const granted = (inode.mode >> shift) & 0o7;
    if ((granted & mask) !== mask) throw new FsError(Errno.EACCES, 'access', `inode ${ino}`);
  }
}


/**
 * A setattr's changes with setuid/setgid cleared where killpriv v2 leaves it to the
 * filesystem: on a truncate the kernel flags (`killSuidgid`) and on every chown of a
 * non-directory (as the kernel's own chown does, whoever asks).
 */
function withPrivilegesDropped(inode: InodeRecord, changes: SetattrChanges): SetattrChanges {
  const isChown = changes.uid !== undefined || changes.gid !== undefined;
  const kills = (changes.killSuidgid === true && changes.size !== undefined) || (isChown && !isDirectory(inode.mode));
  if (!kills) return changes;
  const mode = withoutSuidgid(changes.mode ?? inode.mode);
  return mode === (changes.mode ?? inode.mode) ? changes : { ...changes, mode };
}

/** `mode` without setuid, and without setgid when group-executable (else it marks locking). */
function withoutSuidgid(mode: number): number {
  const cleared = mode & ~S_ISUID;
  return (mode & S_IXGRP) !== 0 ? cleared & ~S_ISGID : cleared;
}

/** The stored changes of a setattr request, applied to `inode` at `time`. */
function inodeChanges(inode: InodeRecord, changes: SetattrChanges, time: Timespec): InodeChanges {
  const mtime = resolveTime(changes.mtime, time);
  return {
    ...(changes.mode === undefined ? {} : { mode: withPermissions(inode.mode, changes.mode) }),
    ...(changes.uid === undefined ? {} : { uid: changes.uid }),
    ...(changes.gid === undefined ? {} : { gid: changes.gid }),
    ...(changes.atime === undefined ? {} : { atime: resolveTime(changes.atime, time) }),
    ...(mtime === undefined ? {} : { mtime }),
    ctime: changes.ctime ?? time,
  };
}

/** `mode` with the permission bits of `permissions`: the type bits stay. */
function withPermissions(mode: number, permissions: number): number {
  return (mode & ~0o7777) | (permissions & 0o7777);
}

function compareTime(a: Timespec, b: Timespec): number {
  return a.sec === b.sec ? a.nsec - b.nsec : a.sec - b.sec;
}

function resolveTime(value: Timespec | 'now' | undefined, time: Timespec): Timespec | undefined {
  if (value === undefined) return undefined;
  return value === 'now' ? time : value;
}

function checkName(name: string, operation: string): void {
  if (Buffer.byteLength(name) > NAME_BYTES_MAX) throw new FsError(Errno.ENAMETOOLONG, operation, name);
  assert(name.length > 0);
}

function checkXattrName(name: string): void {
  if (name.length === 0 || Buffer.byteLength(name) > 255) throw new FsError(Errno.ERANGE, 'xattr', name);
  if (name.startsWith('system.')) throw new FsError(Errno.EOPNOTSUPP, 'xattr', name);
  const isKnownNamespace = ['user.', 'trusted.', 'security.'].some((prefix) => name.startsWith(prefix));
  if (!isKnownNamespace) throw new FsError(Errno.EOPNOTSUPP, 'xattr', name);
}
