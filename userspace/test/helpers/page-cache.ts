/**
 * What the kernel holds of a file, for tests of which writes and reads go through the page
 * cache: fincore (util-linux) for the cached bytes, filefrag (e2fsprogs) for delayed
 * allocation, which ext4 and XFS end when a page's write-back starts.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, fsyncSync, openSync } from 'node:fs';

/** Bytes of `path` in the page cache. */
export function cachedBytes(path: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--raw', '--output', 'RES', path], { encoding: 'utf8' }).trim());
}

/** True while some of the file's data waits for its write-back to start (delayed allocation). */
export function isWaitingForWriteback(path: string): boolean {
  return /delalloc/.test(execFileSync('filefrag', ['-v', path], { encoding: 'utf8' }));
}

/** Drops tried before dropPages gives up; they are DROP_WAIT_MS apart. */
const DROP_TRIES_MAX = 100;
const DROP_WAIT_MS = 10;

/**
 * Writes a file's dirty pages, then drops its pages from the page cache (dd iflag=nocache),
 * again until none is left: pages that an earlier read's readahead still has locked for I/O
 * are skipped by the drop and arrive cached after it (a test failed that way under load).
 */
export function dropPages(path: string): void {
  const fd = openSync(path, 'r');
  fsyncSync(fd);
  closeSync(fd);
  for (let tries = 1; ; tries++) {
    execFileSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0'], { stdio: 'ignore' });
    if (cachedBytes(path) === 0) return;
    if (tries === DROP_TRIES_MAX) throw new Error(`${path} keeps ${cachedBytes(path)} bytes in the page cache`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, DROP_WAIT_MS);
  }
}

/** The message for a check that needs delayed allocation where the test's files are. */
export const NEEDS_DELAYED_ALLOCATION = 'this test needs a filesystem with delayed allocation (ext4, XFS)';
