/**
 * The read path through a mount: the kernel's readahead of the mount is raised (sequential
 * reads arrive as 1 MiB requests), reads answered from page-cached shards (the synchronous
 * fast path) return exactly the written bytes at any offset and length, and a shard damaged
 * while its header and descriptor are cached in the daemon still gives EIO, never its bytes.
 * A sequential read of a file whose blocks are all cold (read from disk past the page cache,
 * one thread-pool job per shard) returns the written bytes, and EIO at a block whose shard was
 * damaged on disk, the blocks around it still served.
 * Method: a real mount; O_DIRECT reads, so every read reaches the daemon; the shard file is
 * damaged in place (through the page cache) while the daemon runs, or on disk with its pages
 * dropped (dd iflag=nocache) before a remount.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, existsSync, openSync, readdirSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SERVING_THREAD_NICE, SERVING_THREAD_SLICE_NS } from '../../src/daemon/mount.js';
import { setThreadSlice } from '../../src/erasure/index.js';
import { shardGeometry } from '../../src/layout/index.js';
import { FUSE_READAHEAD_BYTES } from '../../src/limits.js';
import { shardFilesOf } from '../../src/tasks/fsck.js';
import { dropPages, flipByte } from '../helpers/block-fixture.js';
import { withMount } from '../helpers/mount.js';

const MIB = 1024 * 1024;

/** Reads `length` bytes at `offset` with O_DIRECT: the answer or the error code. */
function readDirect(path: string, offset: number, length: number): Buffer | string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECT);
  try {
    const buffer = Buffer.alloc(length);
    const bytes = readSync(fd, buffer, 0, length, offset);
    return buffer.subarray(0, bytes);
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  } finally {
    closeSync(fd);
  }
}

/** "major:minor" of the mount at `mountpoint`, from this process's mount table. */
function deviceOf(mountpoint: string): string | undefined {
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((entry) => entry.split(' ')[4] === mountpoint);
  return line?.split(' ')[2];
}

/** Reads a file in 1 MiB requests through the page cache, as fio does: each answer or error code. */
function readSequentially(path: string, bytes: number): (Buffer | string)[] {
  const fd = openSync(path, 'r');
  try {
    const answers: (Buffer | string)[] = [];
    for (let offset = 0; offset < bytes; offset += MIB) {
      const buffer = Buffer.alloc(MIB);
      try {
        answers.push(buffer.subarray(0, readSync(fd, buffer, 0, MIB, offset)));
      } catch (error) {
        answers.push((error as { code?: string }).code ?? String(error));
      }
    }
    return answers;
  } finally {
    closeSync(fd);
  }
}

describe('read path', () => {
  it('raises the readahead and returns exactly the written bytes, warm or cold', async () => {
    await withMount({}, async (mount) => {
      // The mount shows up before the daemon raises the readahead; a request it answers does not.
      statSync(mount.mountpoint);
      const device = deviceOf(mount.mountpoint);
      expect(device).toBeDefined();
      const readaheadKib = Number(readFileSync(`/sys/class/bdi/${device ?? ''}/read_ahead_kb`, 'utf8'));
      expect(readaheadKib).toBe(FUSE_READAHEAD_BYTES / 1024);
      // The request thread (the main thread: its id is the pid) runs at a raised priority.
      const stat = readFileSync(`/proc/${mount.daemon.pid ?? 0}/task/${mount.daemon.pid ?? 0}/stat`, 'utf8');
      expect(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])).toBe(SERVING_THREAD_NICE);
      // ... with the short time slice, where the kernel takes slices (6.12+) and shows them.
      const schedPath = `/proc/${mount.daemon.pid ?? 0}/task/${mount.daemon.pid ?? 0}/sched`;
      const slice = /^se\.slice\s*:\s*(\d+)/m.exec(existsSync(schedPath) ? readFileSync(schedPath, 'utf8') : '')?.[1];
      if (setThreadSlice(SERVING_THREAD_SLICE_NS) && slice !== undefined) expect(Number(slice)).toBe(SERVING_THREAD_SLICE_NS);
      // bin/shmr.js sizes libuv's thread pool (16) before Node starts it: more threads than the
      // default pool of 4 plus Node's own, so cold reads and shard writes find free threads.
      expect(readdirSync(`/proc/${mount.daemon.pid ?? 0}/task`).length).toBeGreaterThan(16);
      const path = join(mount.mountpoint, 'data');
      const data = randomBytes(3 * MIB + 1234);
      writeFileSync(path, data);
      await mount.remount();
      expect(readFileSync(path).equals(data)).toBe(true);
      const reads: [number, number][] = [
        [0, 4096], [MIB - 4096, 8192], [MIB - 1000, 2000], [5, 3], [3 * MIB, 4096], [3 * MIB + 1000, 4096],
        [2 * MIB + 12_345, 200_000], [0, 2 * MIB],
      ];
      // Twice: the first read of a shard goes through the thread pool, later ones are served
      // from the page cache on the daemon's thread.
      for (let round = 0; round < 2; round++) {
        for (const [offset, length] of reads) {
          const answer = readDirect(path, offset, length);
          expect(answer, `round ${round}, ${length} at ${offset}`).toEqual(data.subarray(offset, offset + length));
        }
      }
    });
  }, 120_000);

  it('answers EIO for a shard damaged while the daemon has it cached', async () => {
    await withMount({}, async (mount) => {
      const path = join(mount.mountpoint, 'victim');
      const data = randomBytes(2 * MIB);
      writeFileSync(path, data);
      const lastPage = 2 * MIB - 4096;
      expect(readDirect(path, lastPage, 4096)).toEqual(data.subarray(lastPage));
      const ino = statSync(path).ino;
      const shard = shardFilesOf(Object.values(mount.buckets)[0] ?? '').find((file) => file.includes(`/${ino}-1-`));
      expect(shard).toBeDefined();
      // In place, through the page cache: the daemon's cached header and descriptor stay valid.
      flipByte(shard ?? '', statSync(shard ?? '').size - 10);
      expect(readDirect(path, lastPage, 4096)).toBe('EIO');
      expect(readDirect(path, lastPage - 4096, 4096)).toEqual(data.subarray(lastPage - 4096, lastPage));
      expect(readDirect(path, 0, 4096)).toEqual(data.subarray(0, 4096));
      expect(await mount.log()).toMatch(/corrupt shard .* \(file \/victim, block 1\)/);
    });
  }, 120_000);

  it('reads a file of cold blocks sequentially, with EIO at a block damaged on disk', async () => {
    await withMount({}, async (mount) => {
      const path = join(mount.mountpoint, 'long');
      const blockCount = 24;
      const damaged = 13;
      const data = randomBytes(blockCount * MIB);
      writeFileSync(path, data);
      const ino = statSync(path).ino;
      const shards = shardFilesOf(Object.values(mount.buckets)[0] ?? '').filter((file) => file.includes(`/${ino}-`));
      expect(shards).toHaveLength(blockCount);
      // A new daemon knows nothing of the shards (no descriptor, no header) and the disk has them.
      await mount.remount();
      for (const shard of shards) dropPages(shard);
      const answers = readSequentially(path, data.byteLength);
      answers.forEach((answer, block) => {
        expect(Buffer.isBuffer(answer) && answer.equals(data.subarray(block * MIB, (block + 1) * MIB)), `block ${block}`).toBe(true);
      });
      const victim = shards.find((file) => file.includes(`/${ino}-${damaged}-`)) ?? '';
      flipByte(victim, statSync(victim).size - 300_000);
      await mount.remount();
      for (const shard of shards) dropPages(shard);
      const damagedAt = damaged * MIB + statSync(victim).size - 300_000 - shardGeometry(MIB).payloadOffset;
      const again = readSequentially(path, data.byteLength);
      again.forEach((answer, block) => {
        const start = block * MIB;
        if (block !== damaged) {
          expect(Buffer.isBuffer(answer) && answer.equals(data.subarray(start, start + MIB)), `block ${block}`).toBe(true);
        } else if (Buffer.isBuffer(answer)) {
          // The kernel may retry page by page and return the verified bytes before the bad chunk.
          expect(start + answer.byteLength, 'short read').toBeLessThanOrEqual(damagedAt);
          expect(answer.equals(data.subarray(start, start + answer.byteLength))).toBe(true);
          expect(readDirect(path, start + answer.byteLength, 4096)).toBe('EIO');
        } else {
          expect(answer).toBe('EIO');
        }
      });
      expect(await mount.log()).toMatch(new RegExp(`corrupt shard .* \\(file /long, block ${damaged}\\)`));
    });
  }, 120_000);
});
