/**
 * Inode attribute helpers shared by the metadata store and its users: file type bits and
 * timestamps.
 */

export const ROOT_INO = 1;
export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

export interface Timespec {
  sec: number;
  nsec: number;
}

/** The current time as a Timespec. */
export function now(): Timespec {
  const milliseconds = Date.now();
  return { sec: Math.floor(milliseconds / 1000), nsec: (milliseconds % 1000) * 1_000_000 };
}

/** True for a directory mode. */
export function isDirectory(mode: number): boolean {
  return (mode & S_IFMT) === S_IFDIR;
}

/** True for a regular file mode. */
export function isRegular(mode: number): boolean {
  return (mode & S_IFMT) === S_IFREG;
}

