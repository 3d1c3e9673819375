/**
 * Handles: open file and directory handles (the `fh` of FUSE requests), and the kernel's
 * lookup counts, which together decide when an unlinked inode can be deleted.
 *
 * Invariants:
 * - Lookup and open counts never go negative: an underflow is a bug and aborts.
 * - An inode is deletable only when its nlink is 0, the kernel has forgotten it and no
 *   handle is open on it.
 */
import { assert } from '../assert.js';
import { Errno, FsError } from '../errno.js';
import { OPEN_HANDLES_MAX } from '../limits.js';

/** One open handle. */
export interface Handle {
  readonly ino: number;
  readonly flags: number;
  /** Whether a read through this handle has applied the relatime rule yet. */
  hasReadOnce: boolean;
}

export class Handles {
  readonly #handles = new Map<number, Handle>();
  readonly #openCounts = new Map<number, number>();
  readonly #lookupCounts = new Map<number, number>();
  #nextFh = 1;

  open(ino: number, flags: number): number {
    if (this.#handles.size >= OPEN_HANDLES_MAX) throw new FsError(Errno.ENFILE, 'open', 'too many handles');
    const fh = this.#nextFh++;
    this.#handles.set(fh, { ino, flags, hasReadOnce: false });
    this.#openCounts.set(ino, (this.#openCounts.get(ino) ?? 0) + 1);
    return fh;
  }

  get(fh: number): Handle | undefined {
    return this.#handles.get(fh);
  }

  /** Closes a handle; returns how many handles remain open on its inode. */
  close(fh: number): number {
    const handle = this.#handles.get(fh);
    // Messages are built only on failure: close and forget run on every release and FORGET.
    if (handle === undefined) assert.fail(`close of unknown handle ${fh}`);
    this.#handles.delete(fh);
    const count = (this.#openCounts.get(handle.ino) ?? 0) - 1;
    assert(count >= 0);
    if (count === 0) this.#openCounts.delete(handle.ino);
    else this.#openCounts.set(handle.ino, count);
    return count;
  }

  /** True when a handle open on `ino` allows writing (O_WRONLY or O_RDWR). */
  isOpenForWriting(ino: number): boolean {
    if (!this.#openCounts.has(ino)) return false;
    for (const handle of this.#handles.values()) {
      if (handle.ino === ino && (handle.flags & 0o3) !== 0) return true;
    }
    return false;
  }

  openCount(ino: number): number {
    return this.#openCounts.get(ino) ?? 0;
  }

  get handleCount(): number {
    return this.#handles.size;
  }

  /** The kernel received an entry for `ino` (lookup, create, mkdir ...). */
  addLookup(ino: number): void {
    this.#lookupCounts.set(ino, (this.#lookupCounts.get(ino) ?? 0) + 1);
  }

  /** The kernel dropped `count` references; returns what remains. */
  forget(ino: number, count: number): number {
    const remaining = (this.#lookupCounts.get(ino) ?? 0) - count;
    if (remaining < 0) assert.fail(`negative lookup count for inode ${ino}`);
    if (remaining === 0) this.#lookupCounts.delete(ino);
    else this.#lookupCounts.set(ino, remaining);
    return remaining;
  }

  isReferenced(ino: number): boolean {
    return this.#lookupCounts.has(ino) || this.#openCounts.has(ino);
  }
}
