/**
 * AttrCache: keeps the binding's copies of inode attributes, with which it answers GETATTR in C
 * (native/fuse3/attr_cache.c), in step with the file system. With the writeback cache the
 * kernel drops a file's cached st_blocks at every close, so each stat(2) after a close is a
 * GETATTR; and every change of a directory's entries makes the next permission check in it one.
 *
 * A copy is handed over by filesystem.ts with a synchronous reply (isAttrReusable) or, for a
 * directory it just changed, on its own (register). It is dropped in the same synchronous turn
 * as anything that changes what filesystem.ts's getattr would reply for the inode:
 * - every write of the inode's row in the metadata store (MetaStore.onInodeRowChange: setattr,
 *   links, directory times and link counts, xattr ctime, atime, killpriv mode clears, block
 *   commits and truncation, rewrites and the mover changing stored bytes, fsck, deletion);
 * - the file store starting to hold the file's state (FileStore.onFileStateMade): size, times
 *   and cached bytes then come from memory (FileStore.overlay), and filesystem.ts hands over no
 *   copy while that state exists;
 * - the kernel forgetting the inode.
 * An inode deleted at its unlink but still known to the kernel is handed over for good
 * (registerUnlinked): nothing changes its row any more, and the binding answers its GETATTRs
 * and the SETATTR of times the kernel sends at every unlink with the writeback cache (one round
 * trip through JS less per unlink; meta bench, 3 alternating pairs: 9.7-9.9k -> 10.5-11.5k
 * unlinks/s). filesystem.ts's #unlinked answers anything else.
 *
 * Why no record here of which inodes the binding holds: every drop goes to the binding (a
 * hash lookup in C). A JS Set of them cost far more: a directory's number is dropped and held
 * again at each entry made or removed in it, and V8 chains each deleted slot of a Set or Map
 * to its key's bucket until the table is rehashed, so with 10,000 inodes held, deleting and
 * adding one key again cost 20-90 us (Node 20).
 */
import type { FileStore } from '../file/index.js';
import type { MetaStore } from '../meta/index.js';
import type { Attr } from './binding.js';

/** The binding's side (FuseSession). */
export interface AttrTable {
  registerAttributes(attr: Attr, attrTimeoutSec: number, ownsTimes?: boolean): void;
  dropAttributes(ino: number): void;
}

export class AttrCache {
  readonly #table: AttrTable;

  constructor(table: AttrTable) {
    this.#table = table;
  }

  /** Wires `cache` to what changes attributes: the metadata store's inode rows, the file store's states. */
  static attach(parts: { meta: MetaStore; files: FileStore }, table: AttrTable): AttrCache {
    const cache = new AttrCache(table);
    parts.meta.onInodeRowChange = (ino) => cache.drop(ino);
    parts.files.onFileStateMade = (ino) => cache.drop(ino);
    return cache;
  }

  /** Hands the binding `attr`, what getattr would reply now, without a request asking. */
  register(attr: Attr, attrTimeoutSec: number): void {
    this.#table.registerAttributes(attr, attrTimeoutSec);
  }

  /** Hands over an inode deleted at its unlink, until the kernel forgets it (see above). */
  registerUnlinked(attr: Attr, attrTimeoutSec: number): void {
    this.#table.registerAttributes(attr, attrTimeoutSec, true);
  }

  /** GETATTRs of `ino` go to JS again. */
  drop(ino: number): void {
    this.#table.dropAttributes(ino);
  }
}
