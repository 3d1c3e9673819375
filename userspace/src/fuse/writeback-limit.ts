/**
 * How many bytes the kernel's write-back cache may hold for the mount, dirty or being written
 * back (the bdi's max_bytes).
 *
 * Why: with the write-back cache a large write reaches the daemon as 1 MiB WRITE requests that
 * the kernel queues in arrival order with every other request, and it keeps as many of them
 * going as this limit allows (1 % of the machine's dirty limit by default: 44 MB with 24 GB).
 * A small READ then waits until the daemon has received every WRITE ahead of it, and receiving
 * one costs the request thread the kernel's copy of its MiB (0.1-0.25 ms). With 8 MiB, a READ
 * waits for at most 8 of them. Measured with the bench's latency section on a loaded 2-core
 * machine: p99 of 4 KiB reads during a 2 GiB erasure write 15-22 ms -> 5.8-6.6 ms, the write
 * as fast as before; 2 MiB made the write twice as slow.
 *
 * Only for write pools of large blocks: a WRITE that fills a block is answered when the block is
 * stored, so with small blocks most WRITEs in flight wait for their stores, and the limit would
 * bound how many blocks are stored at once (1 MiB blocks: the bench's sequential write at half
 * the speed with 8 MiB). With blocks of WRITEBACK_LIMIT_BLOCK_BYTES_MIN or more, one WRITE in
 * that many waits for a store; the rest are answered once copied into the block cache.
 *
 * Only root may write sysfs: for anyone else the mount keeps the kernel's default, and the
 * caller is told why.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { FUSE_WRITEBACK_BYTES_MAX } from '../limits.js';
import { mountDevice } from './readahead.js';

/** Smallest block size of the write pool for which the mount's write-back is limited. */
export const WRITEBACK_LIMIT_BLOCK_BYTES_MIN = 8 * 1024 * 1024;

/** The write-back limit for a write pool of `blockBytes` blocks; undefined: the kernel's. */
export function writebackLimitFor(blockBytes: number): number | undefined {
  return blockBytes >= WRITEBACK_LIMIT_BLOCK_BYTES_MIN ? FUSE_WRITEBACK_BYTES_MAX : undefined;
}

/** Sets the write-back limit of the mount at `mountDir` (mounted); undefined, or why not. */
export function setMountWritebackLimit(mountDir: string, bytes: number): string | undefined {
  const device = mountDevice(resolve(mountDir));
  if (device === undefined) return `${mountDir} is not in /proc/self/mountinfo`;
  const path = `/sys/class/bdi/${device}/max_bytes`;
  try {
    writeFileSync(path, `${bytes}\n`);
    return undefined;
  } catch (error) {
    return `${path}: ${(error as Error).message}`;
  }
}
