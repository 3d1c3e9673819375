/**
 * What the kernel holds of a file, for tests of which writes and reads go through the page
 * cache: fincore (util-linux) for the cached bytes, filefrag (e2fsprogs) for delayed
 * allocation, which ext4 and XFS end when a page's write-back starts.
 */
import { execFileSync } from 'node:child_process';

/** Bytes of `path` in the page cache. */
export function cachedBytes(path: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--raw', '--output', 'RES', path], { encoding: 'utf8' }).trim());
}

/** True while some of the file's data waits for its write-back to start (delayed allocation). */
export function isWaitingForWriteback(path: string): boolean {
  return /delalloc/.test(execFileSync('filefrag', ['-v', path], { encoding: 'utf8' }));
}

/** The message for a check that needs delayed allocation where the test's files are. */
export const NEEDS_DELAYED_ALLOCATION = 'this test needs a filesystem with delayed allocation (ext4, XFS)';
