/**
 * rename(2) semantics over the metadata store, run inside the store's transaction.
 *
 * POSIX rules enforced here (the kernel has already checked permissions and sticky bits):
 * - renaming an entry onto a link of the same inode does nothing;
 * - a directory may replace only an empty directory (ENOTEMPTY, ENOTDIR), a non-directory only
 *   a non-directory (EISDIR);
 * - a directory cannot move into its own subtree (EINVAL);
 * - RENAME_NOREPLACE fails with EEXIST on an existing target; RENAME_EXCHANGE swaps two
 *   existing entries atomically.
 */
import { Errno, FsError } from '../errno.js';
import { isDirectory, now, ROOT_INO } from './attributes.js';
import type { InodeRecord, MetaStore } from './store.js';

const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;

interface RenameInput {
  parent: number;
  name: string;
  newParent: number;
  newName: string;
  flags: number;
}

/** Performs the rename; returns the inode whose entry was replaced, if any. */
export function renameInTransaction(store: MetaStore, input: RenameInput): InodeRecord | undefined {
  if ((input.flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) !== 0) {
    throw new FsError(Errno.EINVAL, 'rename', `flags ${input.flags}`);
  }
  const steps = store.renameSteps();
  const source = steps.requireDirectory(input.parent, 'rename');
  const target = steps.requireDirectory(input.newParent, 'rename');
  const movingIno = store.lookup(input.parent, input.name);
  if (movingIno === undefined) throw new FsError(Errno.ENOENT, 'rename', input.name);
  const moving = store.requireInode(movingIno, 'rename');
  const replacedIno = store.lookup(input.newParent, input.newName);
  if ((input.flags & RENAME_EXCHANGE) !== 0) {
    if (replacedIno === undefined) throw new FsError(Errno.ENOENT, 'rename', input.newName);
    exchange(store, input, { source, target, moving, other: store.requireInode(replacedIno, 'rename') });
    return undefined;
  }
  if (replacedIno !== undefined && (input.flags & RENAME_NOREPLACE) !== 0) {
    throw new FsError(Errno.EEXIST, 'rename', input.newName);
  }
  if (replacedIno === movingIno) return undefined;
  if (isDirectory(moving.mode)) checkNotIntoItself(store, movingIno, input.newParent);
  const replaced = replacedIno === undefined ? undefined : store.requireInode(replacedIno, 'rename');
  const time = now();
  if (replaced !== undefined) removeReplaced(store, input, { moving, replaced, time });
  steps.moveDirent({ parent: input.parent, name: input.name }, { parent: input.newParent, name: input.newName });
  const movesDirectory = isDirectory(moving.mode) && input.parent !== input.newParent;
  steps.touchDirectory(source, time, movesDirectory ? -1 : 0);
  const targetNow = store.requireInode(input.newParent, 'rename');
  if (input.newParent !== input.parent || replaced !== undefined) {
    steps.touchDirectory(targetNow, time, movesDirectory ? 1 : 0);
  }
  steps.setLinks(movingIno, moving.nlink, time);
  return replaced === undefined ? undefined : store.requireInode(replaced.ino, 'rename');
}

function removeReplaced(
  store: MetaStore,
  input: RenameInput,
  parts: { moving: InodeRecord; replaced: InodeRecord; time: { sec: number; nsec: number } },
): void {
  const steps = store.renameSteps();
  const { moving, replaced, time } = parts;
  if (isDirectory(moving.mode)) {
    if (!isDirectory(replaced.mode)) throw new FsError(Errno.ENOTDIR, 'rename', input.newName);
    if (steps.hasChildren(replaced.ino)) throw new FsError(Errno.ENOTEMPTY, 'rename', input.newName);
  } else if (isDirectory(replaced.mode)) {
    throw new FsError(Errno.EISDIR, 'rename', input.newName);
  }
  steps.deleteDirent(input.newParent, input.newName);
  if (isDirectory(replaced.mode)) {
    steps.setLinks(replaced.ino, 0, time);
    steps.touchDirectory(store.requireInode(input.newParent, 'rename'), time, -1);
  } else {
    steps.setLinks(replaced.ino, replaced.nlink - 1, time);
  }
}

function exchange(
  store: MetaStore,
  input: RenameInput,
  parts: { source: InodeRecord; target: InodeRecord; moving: InodeRecord; other: InodeRecord },
): void {
  const steps = store.renameSteps();
  const { moving, other } = parts;
  if (moving.ino === other.ino) return;
  if (isDirectory(moving.mode)) checkNotIntoItself(store, moving.ino, input.newParent);
  if (isDirectory(other.mode)) checkNotIntoItself(store, other.ino, input.parent);
  const time = now();
  steps.setDirentIno(input.parent, input.name, other.ino);
  steps.setDirentIno(input.newParent, input.newName, moving.ino);
  // A directory changing parent moves one ".." link from its old parent to the new one.
  const delta =
    input.parent === input.newParent
      ? 0
      : (isDirectory(other.mode) ? 1 : 0) - (isDirectory(moving.mode) ? 1 : 0);
  steps.touchDirectory(parts.source, time, delta);
  if (input.parent !== input.newParent) {
    steps.touchDirectory(store.requireInode(input.newParent, 'rename'), time, -delta);
  }
  steps.setLinks(moving.ino, moving.nlink, time);
  steps.setLinks(other.ino, other.nlink, time);
}

/** EINVAL when `directory` is `newParent` or one of its ancestors. */
function checkNotIntoItself(store: MetaStore, directory: number, newParent: number): void {
  let current = newParent;
  for (let depth = 0; depth < 1 << 16; depth++) {
    if (current === directory) throw new FsError(Errno.EINVAL, 'rename', 'into its own subtree');
    if (current === ROOT_INO) return;
    const parent = store.parentOf(current);
    if (parent === undefined) return;
    current = parent;
  }
  throw new FsError(Errno.ELOOP, 'rename', 'directory tree too deep');
}
