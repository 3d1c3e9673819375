/**
 * Exit codes of shmrctl, for scripts (docs/dbus.md lists the same table). Each D-Bus error
 * name maps to one code; codes never change meaning once released.
 */
import dbus from 'dbus-next';
import { UnreachableError } from '../../dbus/index.js';

export const EXIT_CODES = {
  /** Done; for stat, the file is healthy; for --wait, the task is done. */
  ok: 0,
  /** The operation failed (I/O error, no space, a task that failed or was cancelled ...). */
  failed: 1,
  /** Bad command line. */
  usage: 2,
  /** Done, but problems were found: stat of a degraded or lost file. */
  problems: 3,
  /** The daemon rejected an argument (unknown pool, bad topology or size, path outside the mount ...). */
  invalidArgument: 4,
  /** No such file, inode, block, task or tombstone. */
  notFound: 5,
  /** The bus policy refused the call (not root, not in group shmr). */
  permissionDenied: 6,
  /** No bus, or no daemon serving that mount point. */
  unreachable: 7,
  /** The daemon does not offer the operation. */
  notSupported: 8,
} as const;

const BY_ERROR_NAME: Readonly<Record<string, number>> = {
  'co.volf.shmr.Error.InvalidArguments': EXIT_CODES.invalidArgument,
  'co.volf.shmr.Error.UnknownPool': EXIT_CODES.invalidArgument,
  'co.volf.shmr.Error.InvalidTopology': EXIT_CODES.invalidArgument,
  'co.volf.shmr.Error.TopologyTooWide': EXIT_CODES.invalidArgument,
  'co.volf.shmr.Error.InvalidBlockSize': EXIT_CODES.invalidArgument,
  'co.volf.shmr.Error.PathOutsideMount': EXIT_CODES.invalidArgument,
  'co.volf.shmr.Error.IsADirectory': EXIT_CODES.invalidArgument,
  'co.volf.shmr.Error.NotARegularFile': EXIT_CODES.invalidArgument,
  'co.volf.shmr.Error.NoSuchFile': EXIT_CODES.notFound,
  'co.volf.shmr.Error.NoSuchBlock': EXIT_CODES.notFound,
  'co.volf.shmr.Error.NoSuchTask': EXIT_CODES.notFound,
  'co.volf.shmr.Error.NoSuchTombstone': EXIT_CODES.notFound,
  'co.volf.shmr.Error.NotSupported': EXIT_CODES.notSupported,
  'org.freedesktop.DBus.Error.UnknownMethod': EXIT_CODES.notSupported,
  'org.freedesktop.DBus.Error.AccessDenied': EXIT_CODES.permissionDenied,
  'org.freedesktop.DBus.Error.ServiceUnknown': EXIT_CODES.unreachable,
  'org.freedesktop.DBus.Error.NoReply': EXIT_CODES.unreachable,
  'org.freedesktop.DBus.Error.Disconnected': EXIT_CODES.unreachable,
};

/** A failure shmrctl reports: its D-Bus error name (or a local one), message and exit code. */
export interface Failure {
  readonly name: string;
  readonly message: string;
  readonly code: number;
}

/** What went wrong, for the message and the exit code. */
export function failureOf(error: unknown): Failure {
  if (error instanceof dbus.DBusError) {
    return { name: error.type, message: error.text, code: BY_ERROR_NAME[error.type] ?? EXIT_CODES.failed };
  }
  if (error instanceof UnreachableError) return { name: 'Unreachable', message: error.message, code: EXIT_CODES.unreachable };
  if (error instanceof UsageError) return { name: 'Usage', message: error.message, code: EXIT_CODES.usage };
  const code = (error as { code?: string }).code;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
    return { name: 'Usage', message: (error as Error).message, code: EXIT_CODES.usage };
  }
  return { name: 'Failed', message: error instanceof Error ? error.message : String(error), code: EXIT_CODES.failed };
}

/** A mistake on the command line (exit 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
