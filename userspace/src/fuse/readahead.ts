/**
 * The kernel's readahead of a FUSE mount. The kernel offers a FUSE filesystem at most 128 KiB
 * of readahead in INIT, so a sequential read reaches the daemon as 128 KiB requests, one at a
 * time: eight requests (and eight shard reads) per 1 MiB block. Raising the mount's
 * read_ahead_kb after INIT lets the kernel send requests up to max_read (1 MiB) and keep
 * several in flight, so the daemon reads the next blocks while the application consumes one.
 *
 * Only root may write sysfs: for anyone else the mount keeps the kernel's default, and the
 * caller is told why.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * Sets the readahead of the mount at `mountDir` (mounted, INIT answered) to `bytes`.
 * Returns undefined when set, else what went wrong. Reads procfs and writes sysfs only: never
 * the mount itself (a synchronous call on our own mount would deadlock this thread).
 */
export function setMountReadahead(mountDir: string, bytes: number): string | undefined {
  const device = mountDevice(resolve(mountDir));
  if (device === undefined) return `${mountDir} is not in /proc/self/mountinfo`;
  const path = `/sys/class/bdi/${device}/read_ahead_kb`;
  try {
    writeFileSync(path, `${Math.floor(bytes / 1024)}\n`);
    return undefined;
  } catch (error) {
    return `${path}: ${(error as Error).message}`;
  }
}

/** "major:minor" of the last mount at `mountPoint` (the one on top): its bdi's name in sysfs. */
export function mountDevice(mountPoint: string): string | undefined {
  let device: string | undefined;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    // id parent major:minor root mount-point options ...
    const fields = line.split(' ');
    if (fields.length > 4 && unescapeMountField(fields[4] ?? '') === mountPoint) device = fields[2];
  }
  return device;
}

/** mountinfo writes space, tab, newline and backslash as octal escapes (\040). */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
