/**
 * D-Bus errors of the API: every failure a caller sees has a name under `co.volf.shmr.Error.`
 * and a message saying what is wrong. Validation throws them by name; failures of the
 * operation itself (FsError) are mapped by errno, with a few messages refined to a more
 * precise name (an unknown pool reported by the pool layer is UnknownPool, not
 * InvalidArguments).
 */
import dbus from 'dbus-next';
import { Errno, FsError } from '../errno.js';

/** Every error name of the API, with when it is returned (docs/dbus.md lists the same). */
export const ERROR_NAMES = {
  InvalidArguments: 'a value is malformed, negative or out of range, or the call has the wrong D-Bus signature',
  UnknownPool: 'the named pool is not in the config',
  InvalidTopology: 'the topology is not single, mirror:N or erasure:D+P within limits',
  TopologyTooWide: 'the topology needs more buckets than the pool has',
  InvalidBlockSize: 'the block size is not a power of two between 64KiB and 256MiB',
  PathOutsideMount: 'the path is not below the mount point of this filesystem',
  NoSuchFile: 'no file at that path, or no inode with that number',
  IsADirectory: 'the operation needs a regular file and got a directory',
  NotARegularFile: 'the operation needs a regular file and got a symlink, device, fifo or socket',
  NoSuchBlock: 'the file has no stored block with that index',
  NoSuchTask: 'no task with that id',
  NoSuchTombstone: 'no tombstone for that inode',
  NotSupported: 'this daemon does not offer the operation',
  Busy: 'the target is in use (EBUSY)',
  NoSpace: 'the pool has no room (ENOSPC)',
  IOError: 'the drives could not be read or written (EIO)',
  Failed: 'any other failure; the message says what happened',
} as const;

export type ErrorName = keyof typeof ERROR_NAMES;

/** Prefix of every error name. */
export const ERROR_PREFIX = 'co.volf.shmr.Error.';

/** A D-Bus error of our API. */
export function apiError(name: ErrorName, message: string): dbus.DBusError {
  return new dbus.DBusError(`${ERROR_PREFIX}${name}`, message);
}

const BY_ERRNO: ReadonlyMap<number, ErrorName> = new Map<number, ErrorName>([
  [Errno.EINVAL, 'InvalidArguments'], [Errno.ENOENT, 'NoSuchFile'], [Errno.EISDIR, 'IsADirectory'],
  [Errno.EBUSY, 'Busy'], [Errno.ENOSPC, 'NoSpace'], [Errno.EIO, 'IOError'], [Errno.ENOSYS, 'NotSupported'],
  [Errno.EOPNOTSUPP, 'NotSupported'],
]);

/** Messages of lower layers that deserve a more precise name than their errno gives. */
const BY_MESSAGE: ReadonlyArray<readonly [RegExp, ErrorName]> = [
  [/unknown pool/i, 'UnknownPool'],
  [/^task:|\b(no|unknown|no such) task\b/i, 'NoSuchTask'],
  [/no tombstone/i, 'NoSuchTombstone'],
  [/needs \d+ buckets/i, 'TopologyTooWide'],
  [/topology/i, 'InvalidTopology'],
];

/** The D-Bus error for anything a control method threw. */
export function toApiError(error: unknown): dbus.DBusError {
  if (error instanceof dbus.DBusError) return error;
  if (!(error instanceof FsError)) {
    return apiError('Failed', error instanceof Error ? error.message : String(error));
  }
  const byErrno = BY_ERRNO.get(error.errno) ?? 'Failed';
  if (byErrno === 'InvalidArguments' || byErrno === 'NoSuchFile') {
    for (const [pattern, name] of BY_MESSAGE) if (pattern.test(error.message)) return apiError(name, error.message);
  }
  return apiError(byErrno, error.message);
}
