/**
 * Which shmr filesystem a command is about: --mount DIR, else the shmr mount holding the PATH
 * argument, else the only shmr filesystem mounted (from /proc/self/mountinfo, type fuse.shmr).
 */
import { readFileSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { UsageError } from './exit-codes.js';

/** Mount points of every mounted shmr filesystem. */
export function shmrMounts(): string[] {
  const lines = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  return lines.flatMap((line) => {
    const [before, after] = line.split(' - ');
    if (before === undefined || after === undefined || after.split(' ')[0] !== 'fuse.shmr') return [];
    const mountPoint = before.split(' ')[4];
    return mountPoint === undefined ? [] : [mountPoint.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)))];
  });
}

/** The mount point a command talks to. */
export function chooseMount(options: { mount?: string | undefined; path?: string | undefined }): string {
  if (options.mount !== undefined) return resolve(options.mount);
  const mounts = shmrMounts();
  if (options.path !== undefined) {
    const path = resolve(options.path);
    const holders = mounts.filter((mount) => path === mount || path.startsWith(mount.endsWith(sep) ? mount : mount + sep));
    const holder = holders.sort((a, b) => b.length - a.length)[0];
    if (holder === undefined) throw new UsageError(`${path} is not on a mounted shmr filesystem (give --mount DIR)`);
    return holder;
  }
  if (mounts.length === 1) return mounts[0] as string;
  if (mounts.length === 0) throw new UsageError('no shmr filesystem is mounted here (give --mount DIR)');
  throw new UsageError(`several shmr filesystems are mounted (${mounts.join(', ')}): pick one with --mount DIR`);
}
