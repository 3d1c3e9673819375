/**
 * What the kernel holds of a file, for tests of which writes and reads go through the page
 * cache: fincore (util-linux) for the cached bytes, cachestat(2) (Linux 6.5, called through
 * python3's ctypes: Node has no binding) for the pages still dirty, whose write-back has not
 * started.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, fsyncSync, openSync } from 'node:fs';

/** Bytes of `path` in the page cache. */
export function cachedBytes(path: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--raw', '--output', 'RES', path], { encoding: 'utf8' }).trim());
}

/** cachestat(2) of a whole file, printing its dirty page count. */
const CACHESTAT_SCRIPT = `
import ctypes, os, sys
class Range(ctypes.Structure): _fields_ = [('off', ctypes.c_uint64), ('len', ctypes.c_uint64)]
class Stat(ctypes.Structure): _fields_ = [(name, ctypes.c_uint64) for name in ('cache', 'dirty', 'writeback', 'evicted', 'recently_evicted')]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
fd = os.open(sys.argv[1], os.O_RDONLY)
stat = Stat()
if libc.syscall(451, fd, ctypes.byref(Range(0, 0)), ctypes.byref(stat), 0) != 0:
    sys.exit('cachestat: ' + os.strerror(ctypes.get_errno()) + ' (needs Linux 6.5 or later)')
print(stat.dirty)
`;

/** True while some of the file's written pages wait for their write-back to start. */
export function isWaitingForWriteback(path: string): boolean {
  return Number(execFileSync('python3', ['-c', CACHESTAT_SCRIPT, path], { encoding: 'utf8' }).trim()) > 0;
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
