/**
 * Rewrites under kill -9, and archive drives that cannot be reached.
 *
 * Crash: a rewrite runs while the daemon is SIGKILLed at a random moment, several rounds. After
 * each remount the file reads back exactly. At the end one last rewrite to a known layout and a
 * purge of all tombstones must leave exactly the shard files that layout needs: nothing leaked.
 *
 * Sleeping drives: files are moved to an archive pool whose head_size keeps their first 2 MiB on
 * the fast pool; then every archive bucket directory is renamed away and replaced by a regular
 * file, so any access below it fails (ENOTDIR, even for root). ls -lR, stat, find, du, getfattr
 * and reading the head of each file must still work; reading past the head fails with EIO;
 * after the directories come back the whole file reads again.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { callControl } from '../../src/daemon/control.js';
import { shardFilesOf } from '../../src/tasks/fsck.js';
import type { TaskInfo } from '../../src/tasks/task-manager.js';
import { sleep, withMount, type Mount } from '../helpers/mount.js';

const execFileAsync = promisify(execFile);
const ROUNDS = 5;

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function control(mount: Mount, method: string, params: Record<string, unknown> = {}): Promise<unknown> {
  return callControl(join(mount.root, 'meta'), method, params);
}

async function rewriteAndWait(mount: Mount, params: Record<string, unknown>): Promise<TaskInfo> {
  const { taskId } = (await control(mount, 'rewriteFile', params)) as { taskId: number };
  const info = (await control(mount, 'waitTask', { id: taskId })) as TaskInfo;
  expect(info.state, info.errors.join('\n')).toBe('done');
  return info;
}

function readHead(path: string, bytes: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const target = Buffer.alloc(bytes);
    expect(readSync(fd, target, 0, bytes, 0)).toBe(bytes);
    return target;
  } finally {
    closeSync(fd);
  }
}

describe('tiering under failure', () => {
  it(`leaves the old or the new layout complete over ${ROUNDS} kill -9 rounds, and leaks nothing`, async () => {
    const pools = {
      fast: { topology: 'single', blockSize: '1MiB', buckets: 3 },
      slow: { topology: 'erasure:2+1', blockSize: '64KiB', buckets: 3 },
    };
    await withMount({ pools, extraYaml: 'tombstones: { grace: 1h }\n' }, async (mount) => {
      const path = join(mount.mountpoint, 'big');
      const content = randomBytes(24 * 1048576 + 4321);
      writeFileSync(path, content);
      let seed = 4242;
      for (let round = 0; round < ROUNDS; round++) {
        const target = round % 2 === 0
          ? { pool: 'slow', topology: 'erasure:2+1', blockSize: 65536 }
          : { pool: 'fast', topology: 'mirror:2', blockSize: 262144 };
        await control(mount, 'rewriteFile', { path, ...target, parallel: 2 });
        seed = (seed * 1103515245 + 12345) >>> 0;
        await sleep(50 + (seed % 1500));
        await mount.killAndRemount();
        expect(sha256(readFileSync(path)), `round ${round}`).toBe(sha256(content));
      }
      // At least one kill landed mid-copy, and the next start removed what that rewrite wrote.
      expect(await mount.log()).toContain('of rewrites cut short by a crash');
      await rewriteAndWait(mount, { path, pool: 'fast', topology: 'single', blockSize: 1048576 });
      await control(mount, 'purgeTombstones', { olderThanSeconds: 0 });
      expect(((await control(mount, 'tombstones')) as { tombstones: unknown[] }).tombstones).toEqual([]);
      const shards = Object.values(mount.buckets).flatMap(shardFilesOf);
      expect(shards.length).toBe(Math.ceil(content.byteLength / 1048576));
      expect(sha256(readFileSync(path))).toBe(sha256(content));
    });
  }, 300_000);

  it('serves metadata and head bytes while the archive drives are unreachable', async () => {
    const pools = {
      fast: { topology: 'single', blockSize: '1MiB', buckets: 1 },
      archive: { topology: 'erasure:2+1', blockSize: '1MiB', buckets: 3, headSize: '2MiB' },
    };
    await withMount({ pools }, async (mount) => {
      const directory = join(mount.mountpoint, 'photos');
      await execFileAsync('mkdir', ['-p', join(directory, 'deep')]);
      const files = ['a', 'b', 'deep/c'].map((name) => ({ path: join(directory, name), content: randomBytes(5 * 1048576 + 99) }));
      for (const file of files) {
        writeFileSync(file.path, file.content);
        await execFileAsync('setfattr', ['-n', 'user.note', '-v', 'kept', file.path]);
        await rewriteAndWait(mount, { path: file.path, pool: 'archive', topology: 'erasure:2+1' });
      }
      await mount.remount();
      const archive = ['archive0', 'archive1', 'archive2'].map((name) => mount.buckets[name] ?? '');
      for (const bucket of archive) {
        renameSync(bucket, `${bucket}.away`);
        writeFileSync(bucket, 'not a directory\n');
      }
      try {
        const listing = await execFileAsync('ls', ['-lR', directory]);
        expect(listing.stdout).toContain('c');
        const found = await execFileAsync('find', [directory, '-type', 'f']);
        expect(found.stdout.trim().split('\n').sort()).toEqual(files.map((file) => file.path).sort());
        const usage = await execFileAsync('du', ['-sb', directory]);
        expect(Number(usage.stdout.split('\t')[0])).toBeGreaterThanOrEqual(15 * 1048576);
        for (const file of files) {
          expect(statSync(file.path).size).toBe(file.content.byteLength);
          const note = await execFileAsync('getfattr', ['--only-values', '-n', 'user.note', file.path]);
          expect(note.stdout).toBe('kept');
          expect(readHead(file.path, 65536).equals(file.content.subarray(0, 65536))).toBe(true);
        }
        // Past the head the archive is needed: the drive really is unreachable.
        expect(() => readFileSync(files[0]?.path ?? '')).toThrow(/EIO|input\/output/i);
      } finally {
        for (const bucket of archive) {
          rmSync(bucket);
          renameSync(`${bucket}.away`, bucket);
        }
      }
      // The daemon probes failed buckets every few seconds and takes them back.
      let isBack = false;
      for (let attempt = 0; attempt < 40 && !isBack; attempt++) {
        await sleep(500);
        isBack = files.every((file) => {
          try {
            return sha256(readFileSync(file.path)) === sha256(file.content);
          } catch {
            return false;
          }
        });
      }
      expect(isBack).toBe(true);
    });
  }, 180_000);
});
