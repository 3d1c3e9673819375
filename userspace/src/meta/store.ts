/**
 * MetaStore: inodes, directory entries, extended attributes and block maps in SQLite.
 *
 * Invariants:
 * - Every metadata change is one transaction: a crash leaves the state before or after it.
 * - The store is opened by one process at a time: the database is held with an exclusive
 *   lock for as long as it is open (SQLite's locking_mode=EXCLUSIVE on a WAL database),
 *   which the kernel releases if the process dies.
 * - nlink of a directory is 2 + its subdirectories; of anything else, its directory entries.
 * - An inode with nlink 0 exists only while the filesystem still has it open; at open of the
 *   store it is an orphan of a crash and is reported by `listOrphans` for deletion.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { assert } from '../assert.js';
import { Errno, FsError } from '../errno.js';
import { SCHEMA_SQL, SCHEMA_VERSION, SCHEMA_VERSIONS_UPGRADABLE } from './schema.js';
import { NEXT_DIRENT_ID_KEY, NEXT_INO_KEY, upgradeSchema } from './schema-upgrade.js';
import { NumberSource } from './number-source.js';
import { RecordCache } from './record-cache.js';
import { renameInTransaction } from './rename.js';
import { InodeCache } from './inode-cache.js';
import { INODE_CACHE_ENTRIES_MAX, SHARD_DIRECTORY_BLOCKS } from '../limits.js';
import { isDirectory, now, ROOT_INO, S_IFDIR, type Timespec } from './attributes.js';

/** One inode as stored. */
export interface InodeRecord {
  readonly ino: number;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev: number;
  readonly size: number;
  /** Block size of a regular file's block map; 0 until the file has data. */
  readonly blockBytes: number;
  /** Logical bytes held in blocks (holes excluded), for st_blocks. */
  readonly storedBytes: number;
  readonly atime: Timespec;
  readonly mtime: Timespec;
  readonly ctime: Timespec;
  readonly target: Buffer | null;
}

/** Where one block of a file is stored. */
export interface BlockRecord {
  readonly ino: number;
  readonly blockIndex: number;
  readonly pool: string;
  readonly topology: string;
  readonly generation: number;
  readonly dataBytes: number;
  /**
   * Bytes stored for the block: its compressed length when compressed, else `dataBytes`.
   * Shards are cut from this many bytes; the file's stored bytes add these up.
   */
  readonly storedBytes: number;
  /** Bucket name of each shard, in shard order. */
  readonly buckets: readonly string[];
}

/** Why a block's shards became a tombstone. */
export type TombstoneReason = 'deleted' | 'replaced' | 'pending';

/**
 * Shards of a block that nothing references any more, waiting for their purge. A 'pending'
 * tombstone marks a block a rewrite is writing (generation 0, no buckets): if the rewrite never
 * commits, every shard file of that block with an unreferenced generation is a stray.
 */
export interface TombstoneRecord extends BlockRecord {
  readonly id: number;
  readonly reason: TombstoneReason;
  /** Milliseconds since the epoch when the block lost its last reference. */
  readonly createdMs: number;
}

/** Changes of setattr; only present keys change. */
export interface InodeChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: Timespec;
  mtime?: Timespec;
  ctime?: Timespec;
}

/** What a new inode is made of. */
export interface NewInode {
  parent: number;
  name: string;
  mode: number;
  uid: number;
  gid: number;
  rdev?: number;
  target?: Buffer;
}

interface InodeRow {
  ino: number; mode: number; nlink: number; uid: number; gid: number; rdev: number;
  size: number; block_bytes: number; stored_bytes: number;
  atime_sec: number; atime_nsec: number; mtime_sec: number; mtime_nsec: number;
  ctime_sec: number; ctime_nsec: number; target: Buffer | null;
}

interface BlockRow {
  ino: number; block_index: number; pool: string; topology: string;
  generation: number; data_bytes: number; stored_bytes: number | null; buckets: string;
}

interface TombstoneRow extends BlockRow {
  id: number; reason: TombstoneReason; created_ms: number;
}

/**
 * SQLite page size of stores made from now on. Every metadata change is a transaction that
 * appends each page it dirtied to the WAL (copy, checksum, two writes per page), and a create
 * or unlink dirties six or seven pages (inode rows, the dirent row and its three indexes):
 * 1 KiB pages cut that CPU by a fifth against SQLite's 4 KiB default (MetaStore alone, median
 * of 9 rounds: create 55 -> 42 us, unlink 45 -> 37 us).
 */
const NEW_STORE_PAGE_BYTES = 1024;

/**
 * WAL bytes after which a commit copies the WAL back into the database (a checkpoint: two
 * fsyncs on the request thread). 4 MiB is what SQLite's default of 1000 pages meant with 4 KiB
 * pages; in bytes, 1 KiB pages checkpoint a quarter as often per transaction, not as often.
 */
const WAL_CHECKPOINT_BYTES = 4 * 1024 * 1024;

function toInode(row: InodeRow): InodeRecord {
  return {
    ino: row.ino, mode: row.mode, nlink: row.nlink, uid: row.uid, gid: row.gid, rdev: row.rdev,
    size: row.size, blockBytes: row.block_bytes, storedBytes: row.stored_bytes,
    atime: { sec: row.atime_sec, nsec: row.atime_nsec },
    mtime: { sec: row.mtime_sec, nsec: row.mtime_nsec },
    ctime: { sec: row.ctime_sec, nsec: row.ctime_nsec },
    target: row.target,
  };
}

function toBlock(row: BlockRow): BlockRecord {
  return {
    ino: row.ino, blockIndex: row.block_index, pool: row.pool, topology: row.topology,
    generation: row.generation, dataBytes: row.data_bytes,
    // NULL in rows from before compression, which were all stored raw.
    storedBytes: row.stored_bytes ?? row.data_bytes,
    buckets: row.buckets === '' ? [] : row.buckets.split(','),
  };
}

function toTombstone(row: TombstoneRow): TombstoneRecord {
  return { ...toBlock(row), id: row.id, reason: row.reason, createdMs: row.created_ms };
}

/** The metadata of one filesystem. */
export class MetaStore {
  readonly #db: Database.Database;
  readonly #statements: ReturnType<typeof prepareStatements>;
  /** Rows per xattr name, for the names asked about; kept in step by every xattr change. */
  readonly #xattrNameCounts = new Map<string, number>();
  /**
   * False while the xattrs table is known empty (checked at open, set by every xattr write,
   * never cleared): an inode's deletion then skips deleting its xattrs.
   */
  #mayHaveXattrs: boolean;
  /** Inode rows in memory, exactly in step with SQLite (see inode-cache.ts). */
  readonly #inodes = new InodeCache(INODE_CACHE_ENTRIES_MAX);
  /**
   * Runs its argument in a transaction. Made once: better-sqlite3 builds a new wrapper (with
   * Object.defineProperties) on every `transaction()` call.
   */
  readonly #runInTransaction: (body: () => unknown) => unknown;
  /** Block records read before, forgotten before every change of their rows. */
  readonly #records = new RecordCache();
  /** Numbers of new inodes and cookies of new directory entries: never handed out twice. */
  readonly #inodeNumbers: NumberSource;
  readonly #direntIds: NumberSource;
  /** Random identifier of this filesystem, written into every bucket label. */
  readonly filesystemUuid: string;
  /**
   * Consecutive blocks whose shards share a bucket directory (see Bucket.shardPath): what the
   * filesystem was made with, 1 when it predates the setting.
   */
  readonly shardDirectoryBlocks: number;
  /**
   * Told after every write of an inode's row (insert, update, delete), in the same synchronous
   * turn, whether or not its transaction commits (fuse/attr-cache.ts). Every such statement is
   * followed by #wroteInode: that is the one place to tell.
   */
  onInodeRowChange: ((ino: number) => void) | undefined;

  private constructor(db: Database.Database) {
    this.#db = db;
    this.#statements = prepareStatements(db);
    this.#runInTransaction = db.transaction((body: () => unknown) => body());
    this.#inodeNumbers = this.#numberSource(NEXT_INO_KEY);
    this.#direntIds = this.#numberSource(NEXT_DIRENT_ID_KEY);
    const highestIno = db.prepare('SELECT max(ino) FROM inodes').pluck().get() as number;
    assert(highestIno < Number(this.#setting(NEXT_INO_KEY)), `inode ${highestIno} is past the ${NEXT_INO_KEY} mark`);
    this.#mayHaveXattrs = db.prepare('SELECT 1 FROM xattrs LIMIT 1').get() !== undefined;
    this.filesystemUuid = this.#setting('filesystem_uuid') ?? '';
    assert(this.filesystemUuid !== '');
    this.shardDirectoryBlocks = Number(this.#setting('shard_directory_blocks') ?? '1');
    assert(Number.isSafeInteger(this.shardDirectoryBlocks) && this.shardDirectoryBlocks >= 1);
  }

  /**
   * Opens (creating if needed) the store in `directory` and takes its exclusive lock.
   * Throws FsError EBUSY naming the directory when another process holds it.
   */
  static open(directory: string, owner: { uid: number; gid: number }): MetaStore {
    mkdirSync(directory, { recursive: true });
    const path = join(directory, 'shmr-meta.sqlite');
    const db = new Database(path, { timeout: 0 });
    try {
      // Only a new, empty database takes it; an existing store keeps the page size it has.
      db.pragma(`page_size = ${NEW_STORE_PAGE_BYTES}`);
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      const pageBytes = db.pragma('page_size', { simple: true }) as number;
      db.pragma(`wal_autocheckpoint = ${Math.ceil(WAL_CHECKPOINT_BYTES / pageBytes)}`);
      // Taking a write lock now makes a second instance fail here, not at its first write.
      db.exec('BEGIN EXCLUSIVE; COMMIT');
    } catch (error) {
      db.close();
      if ((error as { code?: string }).code === 'SQLITE_BUSY') {
        throw new FsError(Errno.EBUSY, 'open metadata', `${directory} is in use by another shmr process`);
      }
      throw error;
    }
    initialize(db, owner);
    return new MetaStore(db);
  }

  close(): void {
    this.#db.pragma('wal_checkpoint(TRUNCATE)');
    this.#db.close();
  }

  /**
   * Makes every committed transaction durable (fsync of the WAL): one synchronous commit
   * carries all earlier ones with it.
   */
  syncDurable(): void {
    this.#db.pragma('synchronous = FULL');
    try {
      this.#statements.touchSync.run(String(Date.now()));
    } finally {
      this.#db.pragma('synchronous = NORMAL');
    }
  }

  /**
   * Runs `body` in a transaction (a savepoint when one is open). When it fails, the inodes it
   * wrote leave the cache, as their rows roll back.
   */
  #transact<T>(body: () => T): T {
    const isOutermost = !this.#db.inTransaction;
    let result: T;
    try {
      result = this.#runInTransaction(body) as T;
    } catch (error) {
      if (isOutermost) this.#inodes.endTransaction(false);
      else this.#inodes.dropWritten();
      this.#inodeNumbers.endTransaction(false, isOutermost);
      this.#direntIds.endTransaction(false, isOutermost);
      throw error;
    }
    if (isOutermost) this.#inodes.endTransaction(true);
    this.#inodeNumbers.endTransaction(true, isOutermost);
    this.#direntIds.endTransaction(true, isOutermost);
    return result;
  }

  /** Records a successful write of `ino`'s row: its new state, or undefined to forget it. */
  #wroteInode(ino: number, record: InodeRecord | undefined): void {
    this.#inodes.written(ino, record, this.#db.inTransaction);
    this.onInodeRowChange?.(ino);
  }

  /** A NumberSource whose mark is the setting `key`. */
  #numberSource(key: string): NumberSource {
    return new NumberSource(Number(this.#setting(key)), (mark) => {
      assert(this.#db.inTransaction);
      assert.equal(this.#statements.setSettingValue.run(String(mark), key).changes, 1);
    });
  }

  #setting(key: string): string | undefined {
    const row = this.#db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as
      | { value: string }
      | undefined;
    return row?.value;
  }

  // ---- inodes ----

  getInode(ino: number): InodeRecord | undefined {
    const cached = this.#inodes.get(ino);
    if (cached !== undefined) return cached;
    const row = this.#statements.getInode.get(ino) as InodeRow | undefined;
    if (row === undefined) return undefined;
    const record = toInode(row);
    this.#inodes.remember(record);
    return record;
  }

  /** The inode, or FsError ENOENT. */
  requireInode(ino: number, operation: string): InodeRecord {
    const inode = this.getInode(ino);
    if (inode === undefined) throw new FsError(Errno.ENOENT, operation, `inode ${ino}`);
    return inode;
  }

  lookup(parent: number, name: string): number | undefined {
    return this.#statements.lookup.get(parent, name) as number | undefined;
  }

  /** Creates an inode and its directory entry. Throws EEXIST, ENOENT, ENOTDIR, EMLINK. */
  createInode(input: NewInode): InodeRecord {
    return this.#transact(() => {
      const parent = this.#requireDirectory(input.parent, 'create');
      if (parent.nlink === 0) throw new FsError(Errno.ENOENT, 'create', 'directory was removed');
      const time = now();
      const isDir = isDirectory(input.mode);
      const ino = this.#inodeNumbers.take();
      // Positional parameters: binding named ones from an object cost a property lookup each.
      this.#statements.insertInode.run(
        ino, input.mode, isDir ? 2 : 1, input.uid, input.gid, input.rdev ?? 0, input.target?.byteLength ?? 0,
        time.sec, time.nsec, time.sec, time.nsec, time.sec, time.nsec, input.target ?? null,
        input.parent, input.name,
      );
      const record: InodeRecord = {
        ino, mode: input.mode, nlink: isDir ? 2 : 1, uid: input.uid, gid: input.gid,
        rdev: input.rdev ?? 0, size: input.target?.byteLength ?? 0, blockBytes: 0, storedBytes: 0,
        atime: time, mtime: time, ctime: time,
        // A copy: the caller's buffer may be reused, the cached record must not change.
        target: input.target === undefined ? null : Buffer.from(input.target),
      };
      this.#wroteInode(ino, record);
      // No lookup first: the entries' key (parent, name) finds a taken name in the same
      // search as the insert, and the throw rolls the inode back.
      this.#insertDirentOrExists(input.parent, input.name, ino, 'create');
      this.#touchDirectory(parent, time, isDir ? 1 : 0);
      return record;
    });
  }

  /** Adds a hard link. Throws EEXIST, EPERM (directory), EMLINK. */
  link(ino: number, parent: number, name: string, linksMax: number): InodeRecord {
    return this.#transact(() => {
      const inode = this.requireInode(ino, 'link');
      if (isDirectory(inode.mode)) throw new FsError(Errno.EPERM, 'link', 'directory');
      if (inode.nlink >= linksMax) throw new FsError(Errno.EMLINK, 'link', `inode ${ino}`);
      const directory = this.#requireDirectory(parent, 'link');
      if (this.lookup(parent, name) !== undefined) throw new FsError(Errno.EEXIST, 'link', name);
      const time = now();
      this.#insertDirent(parent, name, ino);
      // The newest link becomes the hint: a move by link and unlink of the old name keeps it true.
      this.#statements.setEntryHint.run(parent, name, ino);
      this.#touchDirectory(directory, time, 0);
      return this.#setLinks(ino, inode.nlink + 1, time);
    });
  }

  /** Removes a non-directory entry; returns the inode as it is afterwards. */
  unlink(parent: number, name: string): InodeRecord {
    return this.#transact(() => this.#unlinkEntry(parent, name, () => false).inode);
  }

  /**
   * unlink, and when that removed the inode's last link and `isUnused(ino)` says nothing holds
   * it, the inode's deletion (deleteInode) in the same transaction: one commit instead of two.
   */
  unlinkAndDeleteUnused(
    parent: number, name: string, isUnused: (ino: number) => boolean,
  ): { inode: InodeRecord; isDeleted: boolean } {
    return this.#transact(() => this.#unlinkEntry(parent, name, isUnused));
  }

  #unlinkEntry(
    parent: number, name: string, isUnused: (ino: number) => boolean,
  ): { inode: InodeRecord; isDeleted: boolean } {
    const directory = this.#requireDirectory(parent, 'unlink');
    assert(this.#db.inTransaction);
    // Found and removed in one index search; a throw below rolls the removal back.
    const ino = this.#statements.takeDirent.get(parent, name) as number | undefined;
    if (ino === undefined) throw new FsError(Errno.ENOENT, 'unlink', name);
    const inode = this.requireInode(ino, 'unlink');
    if (isDirectory(inode.mode)) throw new FsError(Errno.EISDIR, 'unlink', name);
    const time = now();
    this.#touchDirectory(directory, time, 0);
    if (inode.nlink === 1 && isUnused(ino)) {
      // The row goes now: no point in storing its last nlink and ctime first.
      const unlinked: InodeRecord = { ...inode, nlink: 0, ctime: time };
      this.#deleteInodeRows(unlinked);
      return { inode: unlinked, isDeleted: true };
    }
    return { inode: this.#setLinks(ino, inode.nlink - 1, time), isDeleted: false };
  }

  /** Removes an empty directory. Throws ENOTDIR, ENOTEMPTY. */
  rmdir(parent: number, name: string): InodeRecord {
    return this.#transact(() => {
      const directory = this.#requireDirectory(parent, 'rmdir');
      const ino = this.lookup(parent, name);
      if (ino === undefined) throw new FsError(Errno.ENOENT, 'rmdir', name);
      const inode = this.requireInode(ino, 'rmdir');
      if (!isDirectory(inode.mode)) throw new FsError(Errno.ENOTDIR, 'rmdir', name);
      if (this.#statements.anyChild.get(ino) !== undefined) {
        throw new FsError(Errno.ENOTEMPTY, 'rmdir', name);
      }
      const time = now();
      this.#statements.deleteDirent.run(parent, name);
      this.#touchDirectory(directory, time, -1);
      return this.#setLinks(ino, 0, time);
    });
  }

  /**
   * Renames with POSIX semantics and the Linux flags RENAME_NOREPLACE (1) and
   * RENAME_EXCHANGE (2). Returns the inode that lost its entry (replaced target), if any.
   */
  rename(input: {
    parent: number; name: string; newParent: number; newName: string; flags: number;
  }): InodeRecord | undefined {
    return this.#transact(() => renameInTransaction(this, input));
  }

  /** @internal Used by rename.ts inside its transaction. */
  renameSteps() {
    return {
      requireDirectory: (ino: number, operation: string) => this.#requireDirectory(ino, operation),
      moveDirent: (id: { parent: number; name: string }, to: { parent: number; name: string }) => {
        const ino = this.#statements.moveDirent.get(to.parent, to.name, id.parent, id.name) as number | undefined;
        assert(ino !== undefined);
        this.#statements.setEntryHint.run(to.parent, to.name, ino);
      },
      setDirentIno: (parent: number, name: string, ino: number) => {
        this.#statements.setDirentIno.run(ino, parent, name);
        this.#statements.setEntryHint.run(parent, name, ino);
      },
      deleteDirent: (parent: number, name: string) => this.#statements.deleteDirent.run(parent, name),
      setLinks: (ino: number, nlink: number, time: Timespec) => this.#setLinks(ino, nlink, time),
      touchDirectory: (directory: InodeRecord, time: Timespec, linkDelta: number) =>
        this.#touchDirectory(directory, time, linkDelta),
      hasChildren: (ino: number) => this.#statements.anyChild.get(ino) !== undefined,
      parentOf: (ino: number) => this.parentOf(ino),
    };
  }

  /**
   * One entry of `ino` (a directory has exactly one), or undefined when it has none: the
   * inode's entry hint when the entry still names it, else any entry, found by a search of
   * all entries (only a hard-linked file whose hinted link was unlinked gets there).
   */
  #entryOf(ino: number): { parent: number; name: string } | undefined {
    const hint = this.#statements.entryHint.get(ino) as
      | { nlink: number; parent: number | null; name: string | null }
      | undefined;
    if (hint === undefined || hint.nlink === 0) return undefined;
    if (hint.parent !== null && hint.name !== null && this.lookup(hint.parent, hint.name) === ino) {
      return { parent: hint.parent, name: hint.name };
    }
    return this.#statements.direntOf.get(ino) as { parent: number; name: string } | undefined;
  }

  /** The directory holding an entry of `ino` (a directory has exactly one). */
  parentOf(ino: number): number | undefined {
    if (ino === ROOT_INO) return ROOT_INO;
    return this.#entryOf(ino)?.parent;
  }

  /** A path of `ino` for log messages, or `<inode N>` when it has no entry any more. */
  pathOf(ino: number): string {
    const parts: string[] = [];
    let current = ino;
    for (let depth = 0; current !== ROOT_INO && depth < 4096; depth++) {
      const row = this.#entryOf(current);
      if (row === undefined) return `<inode ${ino}>`;
      parts.push(row.name);
      current = row.parent;
    }
    return `/${parts.reverse().join('/')}`;
  }

  /** Applies setattr changes; ctime moves with every change unless given. */
  setAttributes(ino: number, changes: InodeChanges): InodeRecord {
    return this.#transact(() => {
      const inode = this.requireInode(ino, 'setattr');
      const ctime = changes.ctime ?? now();
      const next = {
        mode: changes.mode ?? inode.mode, uid: changes.uid ?? inode.uid,
        gid: changes.gid ?? inode.gid, size: changes.size ?? inode.size,
        atime: changes.atime ?? inode.atime, mtime: changes.mtime ?? inode.mtime,
      };
      this.#statements.setAttributes.run({
        ino, mode: next.mode, uid: next.uid, gid: next.gid, size: next.size,
        atime_sec: next.atime.sec, atime_nsec: next.atime.nsec,
        mtime_sec: next.mtime.sec, mtime_nsec: next.mtime.nsec,
        ctime_sec: ctime.sec, ctime_nsec: ctime.nsec,
      });
      const record: InodeRecord = { ...inode, ...next, ctime };
      this.#wroteInode(ino, record);
      return record;
    });
  }

  /** Sets only the access time (reads), without touching ctime. */
  setAccessTime(ino: number, atime: Timespec): void {
    const inode = this.getInode(ino);
    this.#statements.setAtime.run(atime.sec, atime.nsec, ino);
    this.#wroteInode(ino, inode === undefined ? undefined : { ...inode, atime });
  }

  /** Deletes an inode with nlink 0 and everything it owns; returns its blocks. */
  deleteInode(ino: number): BlockRecord[] {
    return this.#transact(() => this.#deleteInodeRows(this.requireInode(ino, 'delete')));
  }

  #deleteInodeRows(inode: InodeRecord): BlockRecord[] {
    const ino = inode.ino;
    assert.equal(inode.nlink, 0);
    assert(this.#db.inTransaction);
    // A file without a block size has no blocks (commitBlock and truncateBlocks assert it):
    // an empty file's deletion skips the query.
    const blocks = inode.blockBytes === 0 ? [] : this.listBlocks(ino);
    const createdMs = Date.now();
    for (const block of blocks) this.#insertTombstone(block, 'deleted', createdMs);
    this.#records.forgetFile(ino);
    if (blocks.length > 0) this.#statements.deleteBlocksFrom.run(ino, 0);
    // Counts stay right when the inode had no xattrs: the common case keeps them.
    if (this.#mayHaveXattrs && this.#statements.deleteXattrs.run(ino).changes > 0) this.#xattrNameCounts.clear();
    this.#statements.deleteInode.run(ino);
    this.#wroteInode(ino, undefined);
    return blocks;
  }

  // ---- tombstones ----

  #insertTombstone(block: BlockRecord, reason: TombstoneReason, createdMs: number): void {
    this.#statements.insertTombstone.run({
      ino: block.ino, block_index: block.blockIndex, pool: block.pool, topology: block.topology,
      generation: block.generation, data_bytes: block.dataBytes, stored_bytes: block.storedBytes,
      buckets: block.buckets.join(','), reason, created_ms: createdMs,
    });
  }

  /** Tombstones of one inode, or all, oldest first. */
  listTombstones(ino?: number): TombstoneRecord[] {
    const rows = ino === undefined ? this.#statements.allTombstones.all() : this.#statements.tombstonesOf.all(ino);
    return (rows as TombstoneRow[]).map(toTombstone);
  }

  /** At most `countMax` tombstones created before `createdBeforeMs`, oldest first. */
  tombstonesBefore(createdBeforeMs: number, countMax: number): TombstoneRecord[] {
    return (this.#statements.tombstonesBefore.all(createdBeforeMs, countMax) as TombstoneRow[]).map(toTombstone);
  }

  /** Forgets a tombstone whose shards are gone. */
  removeTombstone(id: number): void {
    this.#statements.deleteTombstone.run(id);
  }

  /** Tombstoned blocks and their data bytes per pool. */
  tombstoneUsage(): { pool: string; blocks: number; dataBytes: number }[] {
    return this.#statements.tombstoneUsage.all() as { pool: string; blocks: number; dataBytes: number }[];
  }

  /** Tombstoned blocks and their stored (compressed) bytes per topology: what their shards hold. */
  tombstoneFootprint(): { topology: string; blocks: number; storedBytes: number }[] {
    return this.#statements.tombstoneFootprint.all() as { topology: string; blocks: number; storedBytes: number }[];
  }

  /**
   * Replaces the whole block map of a file (a rewrite to another layout) in one transaction, if
   * it still is `expected` (same blocks, same generations); the old blocks become tombstones.
   * Returns false, changing nothing, when the file changed or vanished meanwhile.
   */
  replaceFileBlocks(input: {
    ino: number; expected: readonly BlockRecord[]; blockBytes: number; blocks: readonly BlockRecord[];
  }): boolean {
    for (const block of input.blocks) assert.equal(block.ino, input.ino);
    assert(input.blockBytes > 0);
    return this.#transact(() => {
      const inode = this.getInode(input.ino);
      if (inode === undefined || inode.nlink === 0) return false;
      const current = this.listBlocks(input.ino);
      if (!isSameBlockMap(current, input.expected)) return false;
      const createdMs = Date.now();
      const kept = new Set(input.blocks.map((block) => `${block.blockIndex}:${block.generation}`));
      for (const block of current) {
        if (!kept.has(`${block.blockIndex}:${block.generation}`)) this.#insertTombstone(block, 'replaced', createdMs);
      }
      this.#statements.deletePending.run(input.ino);
      this.#records.forgetFile(input.ino);
      this.#statements.deleteBlocksFrom.run(input.ino, 0);
      for (const block of input.blocks) this.#putBlock(block);
      const storedBytes = input.blocks.reduce((sum, block) => sum + block.storedBytes, 0);
      this.#statements.setLayout.run(input.blockBytes, storedBytes, input.ino);
      this.#wroteInode(input.ino, { ...inode, blockBytes: input.blockBytes, storedBytes });
      return true;
    });
  }

  /** Records that a rewrite is about to write these blocks of `ino` (see TombstoneRecord). */
  notePendingBlocks(ino: number, blockIndexes: readonly number[], pool: string): void {
    this.#transact(() => {
      const createdMs = Date.now();
      for (const blockIndex of blockIndexes) {
        this.#insertTombstone({ ino, blockIndex, pool, topology: '', generation: 0, dataBytes: 0, storedBytes: 0, buckets: [] }, 'pending', createdMs);
      }
    });
  }

  /** Forgets the pending marks of `ino` (its rewrite cleaned up after itself). */
  clearPendingBlocks(ino: number): void {
    this.#statements.deletePending.run(ino);
  }

  #putBlock(block: BlockRecord): void {
    this.#records.forgetBlock(block.ino, block.blockIndex);
    this.#statements.putBlock.run({
      ino: block.ino, block_index: block.blockIndex, pool: block.pool, topology: block.topology,
      generation: block.generation, data_bytes: block.dataBytes, stored_bytes: block.storedBytes,
      buckets: block.buckets.join(','),
    });
  }

  /**
   * Files with a block in `pool` whose mtime and ctime are before `idleBeforeSec`, oldest first by
   * mtime: the mover's candidates.
   */
  idleFilesInPool(pool: string, idleBeforeSec: number, countMax: number): number[] {
    return (this.#statements.idleFilesInPool.all({ pool, before: idleBeforeSec, limit: countMax }) as { ino: number }[])
      .map((row) => row.ino);
  }

  /** Inodes with nlink 0: unlinked while open when the previous process died. */
  listOrphans(): number[] {
    return (this.#statements.orphans.all() as { ino: number }[]).map((row) => row.ino);
  }

  /** Inode count, for statfs. */
  countInodes(): number {
    return (this.#statements.countInodes.get() as { count: number }).count;
  }

  // ---- directories ----

  /** Entries of `parent` whose cookie is greater than `afterId`, in cookie order. */
  readDirectory(parent: number, afterId: number, countMax: number): { id: number; name: string; ino: number; mode: number }[] {
    return this.#statements.readDirectory.all(parent, afterId, countMax) as {
      id: number; name: string; ino: number; mode: number;
    }[];
  }

  #requireDirectory(ino: number, operation: string): InodeRecord {
    const inode = this.requireInode(ino, operation);
    if (!isDirectory(inode.mode)) throw new FsError(Errno.ENOTDIR, operation, `inode ${ino}`);
    return inode;
  }

  /** Adds a directory entry with a new cookie. */
  #insertDirent(parent: number, name: string, ino: number): void {
    this.#statements.insertDirent.run(parent, name, this.#direntIds.take(), ino);
  }

  /** Adds a directory entry; FsError EEXIST when the name is taken. */
  #insertDirentOrExists(parent: number, name: string, ino: number, operation: string): void {
    try {
      this.#insertDirent(parent, name, ino);
    } catch (error) {
      // The key (parent, name) is the only constraint an entry can break.
      if ((error as { code?: unknown }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new FsError(Errno.EEXIST, operation, name);
      throw error;
    }
  }

  /** Moves a directory's mtime and ctime, and its nlink by `linkDelta`. */
  #touchDirectory(directory: InodeRecord, time: Timespec, linkDelta: number): void {
    // The current row, not `directory`: an earlier step of the transaction may have changed it.
    const current = this.getInode(directory.ino);
    this.#statements.touchDirectory.run(linkDelta, time.sec, time.nsec, time.sec, time.nsec, directory.ino);
    this.#wroteInode(directory.ino, current === undefined ? undefined
      : { ...current, nlink: current.nlink + linkDelta, mtime: time, ctime: time });
  }

  /** Sets nlink and ctime; returns the inode as it is afterwards. */
  #setLinks(ino: number, nlink: number, time: Timespec): InodeRecord {
    const current = this.requireInode(ino, 'set links');
    this.#statements.setLinks.run(nlink, time.sec, time.nsec, ino);
    const record: InodeRecord = { ...current, nlink, ctime: time };
    this.#wroteInode(ino, record);
    return record;
  }

  /** Sets a file's block size, size, stored bytes and times; `inode` is its current row. */
  #setFileData(inode: InodeRecord, data: {
    blockBytes: number; size: number; storedBytes: number; mtime: Timespec; ctime: Timespec;
  }): void {
    this.#statements.setFileData.run({
      ino: inode.ino, block_bytes: data.blockBytes, size: data.size, stored_bytes: data.storedBytes,
      mtime_sec: data.mtime.sec, mtime_nsec: data.mtime.nsec,
      ctime_sec: data.ctime.sec, ctime_nsec: data.ctime.nsec,
    });
    this.#wroteInode(inode.ino, { ...inode, ...data });
  }

  /** Moves ctime only (xattr changes). */
  #touchCtime(ino: number, time: Timespec): void {
    const current = this.getInode(ino);
    this.#statements.touchCtime.run(time.sec, time.nsec, ino);
    this.#wroteInode(ino, current === undefined ? undefined : { ...current, ctime: time });
  }

  // ---- extended attributes ----

  /** True when some inode has an xattr of this name (answered from memory). */
  hasXattrNamed(name: string): boolean {
    let count = this.#xattrNameCounts.get(name);
    if (count === undefined) {
      count = (this.#db.prepare('SELECT count(*) AS count FROM xattrs WHERE name = ?').get(name) as { count: number }).count;
      this.#xattrNameCounts.set(name, count);
    }
    return count > 0;
  }

  getXattr(ino: number, name: string): Buffer | undefined {
    const row = this.#statements.getXattr.get(ino, name) as { value: Buffer } | undefined;
    return row?.value;
  }

  listXattrs(ino: number): string[] {
    return (this.#statements.listXattrs.all(ino) as { name: string }[]).map((row) => row.name);
  }

  /** Sets an xattr; flags XATTR_CREATE (1) and XATTR_REPLACE (2) as setxattr(2). */
  setXattr(ino: number, name: string, value: Buffer, flags: number): void {
    this.#transact(() => {
      this.requireInode(ino, 'setxattr');
      const exists = this.getXattr(ino, name) !== undefined;
      if ((flags & 1) !== 0 && exists) throw new FsError(Errno.EEXIST, 'setxattr', name);
      if ((flags & 2) !== 0 && !exists) throw new FsError(Errno.ENODATA, 'setxattr', name);
      this.#statements.putXattr.run(ino, name, value);
      this.#mayHaveXattrs = true;
      if (!exists) this.#adjustXattrCount(name, 1);
      this.#touchCtime(ino, now());
    });
  }

  #adjustXattrCount(name: string, delta: number): void {
    const count = this.#xattrNameCounts.get(name);
    if (count !== undefined) this.#xattrNameCounts.set(name, count + delta);
  }

  removeXattr(ino: number, name: string): void {
    this.#transact(() => {
      if (this.#statements.deleteXattr.run(ino, name).changes === 0) {
        throw new FsError(Errno.ENODATA, 'removexattr', name);
      }
      this.#adjustXattrCount(name, -1);
      this.#touchCtime(ino, now());
    });
  }

  // ---- block maps ----

  /**
   * Told before the row of block `blockIndex` of `ino` (or, with -1, any row of `ino`) changes
   * or goes, in the same synchronous turn (fuse/chunk-reads.ts).
   */
  set onBlockRowChange(listener: ((ino: number, blockIndex: number) => void) | undefined) {
    this.#records.onForget = listener;
  }

  /** A block's record; served from memory when read before and unchanged since. */
  getBlock(ino: number, blockIndex: number): BlockRecord | undefined {
    const cached = this.#records.get(ino, blockIndex);
    if (cached !== undefined) return cached;
    const row = this.#statements.getBlock.get(ino, blockIndex) as BlockRow | undefined;
    if (row === undefined) return undefined;
    const record = toBlock(row);
    // Inside a transaction the row may not be committed yet (see RecordCache).
    if (!this.#db.inTransaction) this.#records.add(record);
    return record;
  }

  listBlocks(ino: number): BlockRecord[] {
    return (this.#statements.listBlocks.all(ino) as BlockRow[]).map(toBlock);
  }

  /** Blocks after (ino, blockIndex) in key order, at most `countMax`: a resumable scan. */
  blocksAfter(cursor: { ino: number; blockIndex: number }, countMax: number): BlockRecord[] {
    return (this.#statements.blocksAfter.all({ ino: cursor.ino, block_index: cursor.blockIndex, limit: countMax }) as BlockRow[])
      .map(toBlock);
  }

  /** Block count and stored bytes per pool. */
  poolUsage(): { pool: string; blocks: number; dataBytes: number }[] {
    return this.#statements.poolUsage.all() as { pool: string; blocks: number; dataBytes: number }[];
  }

  /**
   * Points a block at rewritten shards if it still is `expected` (same generation), in one
   * transaction; returns false when the block changed or vanished meanwhile (the caller then
   * deletes the shards it wrote).
   */
  replaceBlock(expected: BlockRecord, next: BlockRecord, options: { tombstone: boolean } = { tombstone: false }): boolean {
    assert.equal(expected.ino, next.ino);
    assert.equal(expected.blockIndex, next.blockIndex);
    assert.equal(expected.dataBytes, next.dataBytes);
    return this.#transact(() => {
      const current = this.getBlock(expected.ino, expected.blockIndex);
      if (current === undefined || current.generation !== expected.generation) return false;
      if (options.tombstone) this.#insertTombstone(current, 'replaced', Date.now());
      this.#putBlock(next);
      // A rewrite may store the same data in another size (compressed or not).
      if (next.storedBytes !== current.storedBytes) {
        const inode = this.getInode(next.ino);
        this.#statements.addStoredBytes.run(next.storedBytes - current.storedBytes, next.ino);
        this.#wroteInode(next.ino, inode === undefined ? undefined
          : { ...inode, storedBytes: inode.storedBytes + next.storedBytes - current.storedBytes });
      }
      return true;
    });
  }

  // ---- consistency checks (fsck) ----

  /** Every inode's number, mode and nlink. */
  *allInodes(): IterableIterator<{ ino: number; mode: number; nlink: number }> {
    yield* this.#db.prepare('SELECT ino, mode, nlink FROM inodes ORDER BY ino').iterate() as IterableIterator<{
      ino: number; mode: number; nlink: number;
    }>;
  }

  /** Every directory entry. */
  *allDirents(): IterableIterator<{ parent: number; name: string; ino: number }> {
    yield* this.#db.prepare('SELECT parent, name, ino FROM dirents ORDER BY id').iterate() as IterableIterator<{
      parent: number; name: string; ino: number;
    }>;
  }

  /** Every block record, in key order. */
  *allBlocks(): IterableIterator<BlockRecord> {
    for (const row of this.#db.prepare('SELECT * FROM blocks ORDER BY ino, block_index').iterate()) {
      yield toBlock(row as BlockRow);
    }
  }

  /** Sets nlink without touching times (fsck repair). */
  setLinkCount(ino: number, nlink: number): void {
    this.#db.prepare('UPDATE inodes SET nlink = ? WHERE ino = ?').run(nlink, ino);
    this.#wroteInode(ino, undefined);
  }

  /** Removes one directory entry (fsck repair of an entry to a missing inode). */
  removeDirent(parent: number, name: string): void {
    this.#statements.deleteDirent.run(parent, name);
  }

  /** Adds a directory entry for an existing inode (fsck: reattach to lost+found). */
  addDirent(parent: number, name: string, ino: number): void {
    this.#transact(() => {
      this.#insertDirent(parent, name, ino);
      this.#statements.setEntryHint.run(parent, name, ino);
    });
  }

  /** Removes one block record (fsck: a block of an inode that no longer exists). */
  removeBlockRecord(ino: number, blockIndex: number): void {
    this.#records.forgetBlock(ino, blockIndex);
    this.#statements.deleteBlock.run(ino, blockIndex);
  }

  /** A persistent setting (scrub cursors and the like). */
  getSetting(key: string): string | undefined {
    return this.#setting(key);
  }

  setSetting(key: string, value: string | undefined): void {
    if (value === undefined) this.#db.prepare('DELETE FROM settings WHERE key = ?').run(key);
    else this.#db.prepare('INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)').run(key, value);
  }

  /** Highest block generation in use, so new shard files get fresh names. */
  maxGeneration(): number {
    const row = this.#statements.maxGeneration.get() as { generation: number | null };
    return row.generation ?? 0;
  }

  /**
   * Points a block at freshly written shards and updates the file's size, block size and
   * times, in one transaction. Returns the block record it replaced, whose shards the caller
   * deletes after this commit (never before: until then they are the durable copy).
   */
  commitBlock(
    block: BlockRecord,
    file: { blockBytes: number; size: number; mtime: Timespec; ctime: Timespec },
  ): BlockRecord | undefined {
    // A file with blocks has a block size (#deleteInodeRows relies on it).
    assert(file.blockBytes > 0);
    return this.#transact(() => {
      const inode = this.requireInode(block.ino, 'commit block');
      const previous = this.getBlock(block.ino, block.blockIndex);
      this.#putBlock(block);
      const storedDelta = block.storedBytes - (previous?.storedBytes ?? 0);
      this.#setFileData(inode, {
        blockBytes: file.blockBytes, size: file.size, storedBytes: inode.storedBytes + storedDelta,
        mtime: file.mtime, ctime: file.ctime,
      });
      return previous;
    });
  }

  /**
   * Sets a file's size and drops the blocks at and after `firstBlockDropped`, in one
   * transaction. Returns the dropped blocks, whose shards the caller deletes afterwards.
   */
  truncateBlocks(ino: number, size: number, firstBlockDropped: number, time: Timespec): BlockRecord[] {
    // Size 0 drops the block size, so it must drop every block (#deleteInodeRows relies on it).
    assert(size > 0 || firstBlockDropped === 0);
    return this.#transact(() => {
      const inode = this.requireInode(ino, 'truncate');
      const dropped = (this.#statements.blocksFrom.all(ino, firstBlockDropped) as BlockRow[]).map(toBlock);
      this.#records.forgetFile(ino);
      this.#statements.deleteBlocksFrom.run(ino, firstBlockDropped);
      const droppedBytes = dropped.reduce((sum, block) => sum + block.storedBytes, 0);
      const blockBytes = size === 0 ? 0 : inode.blockBytes;
      this.#setFileData(inode, {
        blockBytes, size, storedBytes: inode.storedBytes - droppedBytes, mtime: time, ctime: time,
      });
      return dropped;
    });
  }

  /** Drops one block (a hole punched over all of it). Returns it, if there was one. */
  dropBlock(ino: number, blockIndex: number, time: Timespec): BlockRecord | undefined {
    return this.#transact(() => {
      const inode = this.requireInode(ino, 'drop block');
      const block = this.getBlock(ino, blockIndex);
      if (block === undefined) return undefined;
      this.#records.forgetBlock(ino, blockIndex);
      this.#statements.deleteBlock.run(ino, blockIndex);
      this.#setFileData(inode, {
        blockBytes: inode.blockBytes, size: inode.size,
        storedBytes: inode.storedBytes - block.storedBytes, mtime: time, ctime: time,
      });
      return block;
    });
  }
}

/** True when two block maps of one file list the same blocks at the same generations. */
function isSameBlockMap(current: readonly BlockRecord[], expected: readonly BlockRecord[]): boolean {
  if (current.length !== expected.length) return false;
  return current.every((block, index) => {
    const other = expected[index];
    return other !== undefined && other.blockIndex === block.blockIndex && other.generation === block.generation;
  });
}

function initialize(db: Database.Database, owner: { uid: number; gid: number }): void {
  db.exec(SCHEMA_SQL);
  addMissingColumns(db);
  const version = db.prepare("SELECT value FROM settings WHERE key = 'schema_version'").get() as
    | { value: string }
    | undefined;
  if (version !== undefined && SCHEMA_VERSIONS_UPGRADABLE.includes(Number(version.value))) {
    upgradeSchema(db, Number(version.value));
  } else if (version !== undefined && Number(version.value) !== SCHEMA_VERSION) {
    throw new FsError(Errno.EINVAL, 'open metadata', `schema version ${version.value}, expected ${SCHEMA_VERSION}`);
  }
  if (version !== undefined) return;
  const time = now();
  db.transaction(() => {
    const put = db.prepare('INSERT INTO settings (key, value) VALUES (?, ?)');
    put.run('schema_version', String(SCHEMA_VERSION));
    put.run('filesystem_uuid', randomUUID());
    put.run('sync_marker', '0');
    put.run('shard_directory_blocks', String(SHARD_DIRECTORY_BLOCKS));
    put.run(NEXT_INO_KEY, String(ROOT_INO + 1));
    put.run(NEXT_DIRENT_ID_KEY, '1');
    db.prepare(
      `INSERT INTO inodes (ino, mode, nlink, uid, gid, atime_sec, atime_nsec, mtime_sec,
         mtime_nsec, ctime_sec, ctime_nsec) VALUES (?, ?, 2, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(ROOT_INO, S_IFDIR | 0o755, owner.uid, owner.gid,
      time.sec, time.nsec, time.sec, time.nsec, time.sec, time.nsec);
  })();
}

/**
 * Adds the columns that later versions appended to a table, to a store made before them.
 * Additive only (NULL in old rows, read as the old meaning), so no schema version bump.
 */
function addMissingColumns(db: Database.Database): void {
  const columns = db.prepare('PRAGMA table_info(blocks)').all() as { name: string }[];
  if (!columns.some((column) => column.name === 'stored_bytes')) {
    db.exec('ALTER TABLE blocks ADD COLUMN stored_bytes INTEGER');
  }
}

function prepareStatements(db: Database.Database) {
  return {
    touchSync: db.prepare("UPDATE settings SET value = ? WHERE key = 'sync_marker'"),
    getInode: db.prepare('SELECT * FROM inodes WHERE ino = ?'),
    // Plucked: the one column, without a row object per query.
    lookup: db.prepare('SELECT ino FROM dirents WHERE parent = ? AND name = ?').pluck(),
    setSettingValue: db.prepare('UPDATE settings SET value = ? WHERE key = ?'),
    insertInode: db.prepare(
      `INSERT INTO inodes (ino, mode, nlink, uid, gid, rdev, size, atime_sec, atime_nsec,
         mtime_sec, mtime_nsec, ctime_sec, ctime_nsec, target, entry_parent, entry_name)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    insertDirent: db.prepare('INSERT INTO dirents (parent, name, id, ino) VALUES (?, ?, ?, ?)'),
    deleteDirent: db.prepare('DELETE FROM dirents WHERE parent = ? AND name = ?'),
    takeDirent: db.prepare('DELETE FROM dirents WHERE parent = ? AND name = ? RETURNING ino').pluck(),
    moveDirent: db.prepare('UPDATE dirents SET parent = ?, name = ? WHERE parent = ? AND name = ? RETURNING ino').pluck(),
    setDirentIno: db.prepare('UPDATE dirents SET ino = ? WHERE parent = ? AND name = ?'),
    setLinks: db.prepare('UPDATE inodes SET nlink = ?, ctime_sec = ?, ctime_nsec = ? WHERE ino = ?'),
    touchDirectory: db.prepare(
      `UPDATE inodes SET nlink = nlink + ?, mtime_sec = ?, mtime_nsec = ?, ctime_sec = ?,
         ctime_nsec = ? WHERE ino = ?`,
    ),
    touchCtime: db.prepare('UPDATE inodes SET ctime_sec = ?, ctime_nsec = ? WHERE ino = ?'),
    anyChild: db.prepare('SELECT 1 FROM dirents WHERE parent = ? LIMIT 1'),
    entryHint: db.prepare('SELECT nlink, entry_parent AS parent, entry_name AS name FROM inodes WHERE ino = ?'),
    setEntryHint: db.prepare('UPDATE inodes SET entry_parent = ?, entry_name = ? WHERE ino = ?'),
    // No index by ino: a search of all entries, for stale hints only (see #entryOf).
    direntOf: db.prepare('SELECT parent, name FROM dirents WHERE ino = ? LIMIT 1'),
    setAttributes: db.prepare(
      `UPDATE inodes SET mode = @mode, uid = @uid, gid = @gid, size = @size,
         atime_sec = @atime_sec, atime_nsec = @atime_nsec, mtime_sec = @mtime_sec,
         mtime_nsec = @mtime_nsec, ctime_sec = @ctime_sec, ctime_nsec = @ctime_nsec
       WHERE ino = @ino`,
    ),
    setAtime: db.prepare('UPDATE inodes SET atime_sec = ?, atime_nsec = ? WHERE ino = ?'),
    deleteInode: db.prepare('DELETE FROM inodes WHERE ino = ?'),
    orphans: db.prepare('SELECT ino FROM inodes WHERE nlink = 0'),
    countInodes: db.prepare('SELECT count(*) AS count FROM inodes'),
    readDirectory: db.prepare(
      `SELECT d.id AS id, d.name AS name, d.ino AS ino, i.mode AS mode
       FROM dirents d JOIN inodes i ON i.ino = d.ino
       WHERE d.parent = ? AND d.id > ? ORDER BY d.id LIMIT ?`,
    ),
    getXattr: db.prepare('SELECT value FROM xattrs WHERE ino = ? AND name = ?'),
    listXattrs: db.prepare('SELECT name FROM xattrs WHERE ino = ? ORDER BY name'),
    putXattr: db.prepare('INSERT OR REPLACE INTO xattrs (ino, name, value) VALUES (?, ?, ?)'),
    deleteXattr: db.prepare('DELETE FROM xattrs WHERE ino = ? AND name = ?'),
    deleteXattrs: db.prepare('DELETE FROM xattrs WHERE ino = ?'),
    getBlock: db.prepare('SELECT * FROM blocks WHERE ino = ? AND block_index = ?'),
    listBlocks: db.prepare('SELECT * FROM blocks WHERE ino = ? ORDER BY block_index'),
    blocksFrom: db.prepare('SELECT * FROM blocks WHERE ino = ? AND block_index >= ? ORDER BY block_index'),
    maxGeneration: db.prepare(
      `SELECT max(generation) AS generation FROM (SELECT generation FROM blocks
         UNION ALL SELECT generation FROM tombstones)`,
    ),
    putBlock: db.prepare(
      `INSERT OR REPLACE INTO blocks (ino, block_index, pool, topology, generation, data_bytes,
         stored_bytes, buckets) VALUES (@ino, @block_index, @pool, @topology, @generation,
         @data_bytes, @stored_bytes, @buckets)`,
    ),
    addStoredBytes: db.prepare(
      'UPDATE inodes SET stored_bytes = stored_bytes + ? WHERE ino = ?',
    ),
    blocksAfter: db.prepare(
      `SELECT * FROM blocks WHERE (ino, block_index) > (@ino, @block_index)
       ORDER BY ino, block_index LIMIT @limit`,
    ),
    poolUsage: db.prepare(
      'SELECT pool, count(*) AS blocks, sum(data_bytes) AS dataBytes FROM blocks GROUP BY pool',
    ),
    insertTombstone: db.prepare(
      `INSERT INTO tombstones (ino, block_index, pool, topology, generation, data_bytes,
         stored_bytes, buckets, reason, created_ms) VALUES (@ino, @block_index, @pool, @topology,
         @generation, @data_bytes, @stored_bytes, @buckets, @reason, @created_ms)`,
    ),
    allTombstones: db.prepare('SELECT * FROM tombstones ORDER BY id'),
    tombstonesOf: db.prepare('SELECT * FROM tombstones WHERE ino = ? ORDER BY id'),
    tombstonesBefore: db.prepare('SELECT * FROM tombstones WHERE created_ms < ? ORDER BY created_ms LIMIT ?'),
    deleteTombstone: db.prepare('DELETE FROM tombstones WHERE id = ?'),
    deletePending: db.prepare("DELETE FROM tombstones WHERE ino = ? AND reason = 'pending'"),
    tombstoneUsage: db.prepare(
      'SELECT pool, count(*) AS blocks, sum(data_bytes) AS dataBytes FROM tombstones GROUP BY pool',
    ),
    tombstoneFootprint: db.prepare(
      `SELECT topology, count(*) AS blocks, sum(coalesce(stored_bytes, data_bytes)) AS storedBytes
         FROM tombstones GROUP BY topology`,
    ),
    setLayout: db.prepare('UPDATE inodes SET block_bytes = ?, stored_bytes = ? WHERE ino = ?'),
    idleFilesInPool: db.prepare(
      `SELECT i.ino AS ino FROM inodes i
       WHERE i.nlink > 0 AND i.mtime_sec < @before AND i.ctime_sec < @before
         AND EXISTS (SELECT 1 FROM blocks b WHERE b.ino = i.ino AND b.pool = @pool)
       ORDER BY i.mtime_sec, i.ino LIMIT @limit`,
    ),
    deleteBlock: db.prepare('DELETE FROM blocks WHERE ino = ? AND block_index = ?'),
    deleteBlocksFrom: db.prepare('DELETE FROM blocks WHERE ino = ? AND block_index >= ?'),
    setFileData: db.prepare(
      `UPDATE inodes SET block_bytes = @block_bytes, size = @size, stored_bytes = @stored_bytes,
         mtime_sec = @mtime_sec, mtime_nsec = @mtime_nsec, ctime_sec = @ctime_sec,
         ctime_nsec = @ctime_nsec WHERE ino = @ino`,
    ),
  };
}

