/**
 * Errno: the Linux error numbers shmr returns, and FsError, the one way an expected failure
 * travels up from any module to the front end (FUSE, NBD, D-Bus, CLI).
 *
 * Invariants:
 * - Every value equals the platform's own (checked at import against node:os constants).
 * - Only expected operating errors are FsErrors; bugs are assertion failures.
 */
import { constants } from 'node:os';
import { assert } from './assert.js';

/** Linux errno numbers we return. The values are kernel ABI: never renumber. */
export const Errno = {
  EPERM: 1, ENOENT: 2, EIO: 5, E2BIG: 7, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EBUSY: 16,
  EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, ENFILE: 23,
  EMFILE: 24, EFBIG: 27, ENOSPC: 28, ESPIPE: 29, EROFS: 30, EMLINK: 31, ERANGE: 34,
  ENAMETOOLONG: 36, ENOSYS: 38, ENOTEMPTY: 39, ELOOP: 40, ENODATA: 61, EOVERFLOW: 75,
  EOPNOTSUPP: 95, ESTALE: 116, ECANCELED: 125,
} as const;
export type Errno = (typeof Errno)[keyof typeof Errno];
export type ErrnoName = keyof typeof Errno;

/** An expected failure of a filesystem operation, reported to the caller as `errno`. */
export class FsError extends Error {
  readonly errno: Errno;
  readonly code: ErrnoName;
  constructor(errno: Errno, operation: string, detail = '') {
    const code = errnoName(errno);
    super(`${operation}: ${code}${detail === '' ? '' : `: ${detail}`}`);
    this.name = 'FsError';
    this.errno = errno;
    this.code = code;
  }
}

/** The symbolic name of an errno we use. */
export function errnoName(errno: Errno): ErrnoName {
  for (const [name, value] of Object.entries(Errno)) if (value === errno) return name as ErrnoName;
  assert.fail(`unknown errno ${errno}`);
}

/**
 * Converts a node:fs error (which carries `code`, e.g. 'ENOSPC') into an FsError.
 *
 * Codes we do not list map to EIO: an unknown failure of the disk below is an I/O error for
 * the caller above, never a silent success.
 */
export function fromSystemError(error: unknown, operation: string, detail = ''): FsError {
  if (error instanceof FsError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const errno = typeof code === 'string' && code in Errno ? Errno[code as ErrnoName] : Errno.EIO;
  const message = error instanceof Error ? error.message : String(error);
  return new FsError(errno, operation, detail === '' ? message : `${detail}: ${message}`);
}

/** True when `error` is an FsError with this errno. */
export function isErrno(error: unknown, errno: Errno): boolean {
  return error instanceof FsError && error.errno === errno;
}

// Pair assertion: our table against the platform's.
for (const [name, value] of Object.entries(Errno)) {
  assert.equal(constants.errno[name as keyof typeof constants.errno], value, name);
}
