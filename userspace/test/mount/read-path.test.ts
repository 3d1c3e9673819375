/**
 * The read path through a mount: the kernel's readahead of the mount is raised (sequential
 * reads arrive as 1 MiB requests), reads answered from page-cached shards (the synchronous
 * fast path) return exactly the written bytes at any offset and length, and a shard damaged
 * while its header and descriptor are cached in the daemon still gives EIO, never its bytes.
 * Method: a real mount; O_DIRECT reads, so every read reaches the daemon; the shard file is
 * damaged in place (through the page cache) while the daemon runs.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, readFileSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SERVING_THREAD_NICE } from '../../src/daemon/mount.js';
import { FUSE_READAHEAD_BYTES } from '../../src/limits.js';
import { shardFilesOf } from '../../src/tasks/fsck.js';
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
      const fd = openSync(shard ?? '', 'r+');
      const size = statSync(shard ?? '').size;
      const byte = Buffer.alloc(1);
      readSync(fd, byte, 0, 1, size - 10);
      byte[0] = (byte[0] ?? 0) ^ 0x01;
      writeSync(fd, byte, 0, 1, size - 10);
      closeSync(fd);
      expect(readDirect(path, lastPage, 4096)).toBe('EIO');
      expect(readDirect(path, lastPage - 4096, 4096)).toEqual(data.subarray(lastPage - 4096, lastPage));
      expect(readDirect(path, 0, 4096)).toEqual(data.subarray(0, 4096));
      expect(await mount.log()).toMatch(/corrupt shard .* \(file \/victim, block 1\)/);
    });
  }, 120_000);
});
