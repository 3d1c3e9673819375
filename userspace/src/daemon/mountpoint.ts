/**
 * Mount point checks made before anything is opened, so a bad mount point changes nothing.
 */
import { readFileSync, statSync } from 'node:fs';
import { Errno, FsError } from '../errno.js';

/** Mount points of this process's namespace, unescaped, from /proc/self/mountinfo. */
export function mountPoints(): Set<string> {
  const points = new Set<string>();
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const field = line.split(' ')[4];
    if (field !== undefined) points.add(field.replace(/\\(\d{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
  }
  return points;
}

/** Throws FsError naming the problem when `path` cannot be mounted on. */
export function checkMountPoint(path: string): void {
  let stats;
  try {
    stats = statSync(path);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ENOENT') throw new FsError(Errno.ENOENT, 'mount', `mount point ${path} does not exist`);
    if (code === 'ENOTCONN') {
      throw new FsError(Errno.EBUSY, 'mount', `mount point ${path} is a dead FUSE mount: run fusermount3 -u ${path}`);
    }
    throw new FsError(Errno.EIO, 'mount', `mount point ${path}: ${(error as Error).message}`);
  }
  if (!stats.isDirectory()) throw new FsError(Errno.ENOTDIR, 'mount', `mount point ${path} is not a directory`);
  if (mountPoints().has(path)) throw new FsError(Errno.EBUSY, 'mount', `mount point ${path} is already mounted`);
}
