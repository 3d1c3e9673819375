/**
 * What keeps small reads quick during a large write: a write pool of large blocks limits the
 * kernel's write-back for the mount (fewer WRITE requests queued ahead of a READ), one of small
 * blocks leaves the kernel's default; and large writes, which wait for their own event-loop
 * turn in the daemon, still land in the order they were written, small writes among them.
 * Method: real mounts; the bdi's max_bytes read from sysfs; a file written in 4 MiB and 4 KiB
 * writes with overlaps, read back after a remount (from the stored shards).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FUSE_WRITEBACK_BYTES_MAX } from '../../src/limits.js';
import { withMount } from '../helpers/mount.js';

const MIB = 1024 * 1024;

/** The kernel keeps max_bytes as a fraction of its dirty limit: what it reads back is rounded. */
function isWritebackLimited(mountpoint: string): boolean {
  return Math.abs(maxBytesOf(mountpoint) - FUSE_WRITEBACK_BYTES_MAX) < FUSE_WRITEBACK_BYTES_MAX / 100;
}

function maxBytesOf(mountpoint: string): number {
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((entry) => entry.split(' ')[4] === mountpoint);
  const device = line?.split(' ')[2];
  expect(device).toBeDefined();
  return Number(readFileSync(`/sys/class/bdi/${device ?? ''}/max_bytes`, 'utf8'));
}

describe('large writes and small reads', () => {
  it('limits write-back for a pool of large blocks; writes land in order', async () => {
    const pools = { archive: { topology: 'erasure:4+2', blockSize: '16MiB', buckets: 6 } };
    await withMount({ pools, writePool: 'archive' }, async (mount) => {
      // A request answered by the daemon: it set the limit before serving.
      statSync(mount.mountpoint);
      expect(isWritebackLimited(mount.mountpoint)).toBe(true);
      const path = join(mount.mountpoint, 'big');
      const expected = Buffer.alloc(40 * MIB);
      const fd = openSync(path, 'w');
      for (let offset = 0; offset < expected.byteLength; offset += 4 * MIB) {
        const chunk = randomBytes(4 * MIB);
        writeSync(fd, chunk, 0, chunk.byteLength, offset);
        chunk.copy(expected, offset);
        // A small write over the bytes just written, then a large one over both.
        const patchAt = offset + 12_345;
        const patch = randomBytes(4096);
        writeSync(fd, patch, 0, patch.byteLength, patchAt);
        patch.copy(expected, patchAt);
        if (offset >= 4 * MIB) {
          const again = randomBytes(MIB);
          writeSync(fd, again, 0, again.byteLength, offset - MIB / 2);
          again.copy(expected, offset - MIB / 2);
        }
      }
      fsyncSync(fd);
      closeSync(fd);
      await mount.remount();
      expect(readFileSync(path).equals(expected)).toBe(true);
    });
  }, 120_000);

  it('leaves the kernel default for a pool of small blocks', async () => {
    await withMount({}, async (mount) => {
      statSync(mount.mountpoint);
      expect(isWritebackLimited(mount.mountpoint)).toBe(false);
    });
  }, 60_000);
});
