/**
 * The background mover, the housekeeping process and policy xattrs, end to end on a mount.
 *
 * Mover: a write pool above its high watermark (live bytes) moves idle closed files, oldest
 * first, to the archive pool until it is at or below the low watermark; a file open for writing
 * stays, even when it is the oldest. Where a file lives is read from the shard file names
 * (`<ino>-<block>-<generation>-<shard>`) in each pool's bucket directories.
 *
 * Yielding: with `mover.yield_above`, a run copies nothing while a writer streams to the source
 * pool faster than that (the rate read from the metrics engine), and finishes once it stops.
 *
 * crond: `shmr crond` runs the mover and the purge through the daemon on its schedule.
 *
 * Policy: user.shmr.* xattrs on a directory are validated (EINVAL for bad values) and inherited
 * by new files, whose blocks then go to the named pool, topology and block size.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { callControl } from '../../src/daemon/control.js';
import { shardFilesOf } from '../../src/tasks/fsck.js';
import type { TaskInfo } from '../../src/tasks/task-manager.js';
import { REPO_ROOT, sleep, withMount, type Mount } from '../helpers/mount.js';

const execFileAsync = promisify(execFile);
const MiB = 1048576;
const POOLS = {
  fast: { topology: 'single', blockSize: '1MiB', buckets: 1 },
  slow: { topology: 'erasure:2+1', blockSize: '256KiB', buckets: 3 },
};
const MOVER_YAML = `mover:
  target: slow
  idle: 1s
  high_watermark: 5MiB
  low_watermark: 5MiB
  rate: 1GiB
tombstones: { grace: 0s }
`;

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function control(mount: Mount, method: string, params: Record<string, unknown> = {}): Promise<unknown> {
  return callControl(join(mount.root, 'meta'), method, params);
}

/** Inodes with at least one shard file in the buckets of `pool`. */
function inodesIn(mount: Mount, pool: string): Set<number> {
  const buckets = Object.entries(mount.buckets).filter(([name]) => name.startsWith(pool)).map(([, path]) => path);
  return new Set(buckets.flatMap(shardFilesOf).map((path) => Number(basename(path).split('-')[0])));
}

async function writeAged(mount: Mount, names: string[]): Promise<Map<string, Buffer>> {
  const contents = new Map<string, Buffer>();
  for (const name of names) {
    const content = randomBytes(2 * MiB);
    writeFileSync(join(mount.mountpoint, name), content);
    contents.set(name, content);
    await sleep(1100); // Distinct mtime seconds: the mover takes the oldest first.
  }
  return contents;
}

describe('mover and housekeeping', () => {
  it('moves idle closed files until the low watermark, never one open for writing', async () => {
    await withMount({ pools: POOLS, extraYaml: MOVER_YAML }, async (mount) => {
      const openPath = join(mount.mountpoint, 'open');
      const openContent = randomBytes(2 * MiB);
      writeFileSync(openPath, openContent);
      const writer = openSync(openPath, 'r+');
      try {
        await sleep(1100);
        const contents = await writeAged(mount, ['f1', 'f2', 'f3', 'f4', 'f5', 'f6']);
        await sleep(1500);
        const { taskId } = (await control(mount, 'runMover')) as { taskId: number };
        const info = (await control(mount, 'waitTask', { id: taskId })) as TaskInfo;
        expect(info.state, info.errors.join('\n')).toBe('done');
        // 14 MiB live on fast, low watermark 5 MiB: five closed files move, the newest stays.
        const report = info.result as { filesMoved: number; usageAtEnd: number };
        expect(report.filesMoved).toBe(5);
        expect(report.usageAtEnd).toBeLessThanOrEqual(5 * MiB);
        const ino = (name: string) => statSync(join(mount.mountpoint, name)).ino;
        await control(mount, 'purgeTombstones', { olderThanSeconds: 0 });
        const slow = inodesIn(mount, 'slow');
        const fast = inodesIn(mount, 'fast');
        for (const name of ['f1', 'f2', 'f3', 'f4', 'f5']) {
          expect(slow.has(ino(name)), name).toBe(true);
          expect(fast.has(ino(name)), name).toBe(false);
        }
        expect(fast.has(ino('f6'))).toBe(true);
        expect(slow.has(ino('open'))).toBe(false);
        writeSync(writer, Buffer.from('still writable'), 0, 14, 0);
        openContent.write('still writable', 0);
        for (const [name, content] of contents) expect(sha256(readFileSync(join(mount.mountpoint, name)))).toBe(sha256(content));
      } finally {
        closeSync(writer);
      }
      expect(sha256(readFileSync(openPath))).toBe(sha256(openContent));
      // Below the high watermark now: a run moves nothing.
      const again = (await control(mount, 'runMover')) as { taskId: number };
      const quiet = (await control(mount, 'waitTask', { id: again.taskId })) as TaskInfo;
      expect((quiet.result as { filesMoved: number }).filesMoved).toBe(0);
    });
  }, 120_000);

  it('yields to a foreground writer streaming to the source pool, then finishes', async () => {
    const extraYaml = `mover: { target: slow, idle: 0s, high_watermark: 1MiB, low_watermark: 0, yield_above: 256KiB }
metrics: { collect_interval: 100ms, flush_interval: 500ms }
`;
    await withMount({ pools: POOLS, extraYaml }, async (mount) => {
      const contents = new Map(['f1', 'f2', 'f3'].map((name) => [name, randomBytes(2 * MiB)]));
      for (const [name, content] of contents) writeFileSync(join(mount.mountpoint, name), content);
      await control(mount, 'flush');
      // About 10 MiB/s of 1 MiB writes, each stored at once (fdatasync), until told to stop.
      const stream = await open(join(mount.mountpoint, 'stream'), 'w');
      let isWriting = true;
      const writer = (async () => {
        const chunk = randomBytes(MiB);
        while (isWriting) {
          await stream.write(chunk);
          await stream.datasync();
          await sleep(50);
        }
        await stream.close();
      })();
      let taskId = 0;
      try {
        await sleep(1500);
        const load = (await control(mount, 'queryMetric', {
          name: 'block_bytes_total', matchers: [['pool', '=', 'fast'], ['op', '=', 'write']], fn: 'rate', intervals: 3,
        })) as { value: number };
        expect(load.value).toBeGreaterThan(256 * 1024);
        taskId = ((await control(mount, 'runMover')) as { taskId: number }).taskId;
        for (let poll = 0; poll < 10; poll++) {
          await sleep(250);
          const task = (await control(mount, 'task', { id: taskId })) as TaskInfo;
          expect(task.state).toBe('running');
          expect(task.doneBytes).toBe(0);
        }
      } finally {
        isWriting = false;
        await writer;
      }
      const info = (await control(mount, 'waitTask', { id: taskId })) as TaskInfo;
      expect(info.state, info.errors.join('\n')).toBe('done');
      const report = info.result as { filesMoved: number; yieldedMs: number };
      // The stream itself may move too: it is closed by the time the run reaches it.
      expect(report.filesMoved).toBeGreaterThanOrEqual(3);
      expect(report.filesMoved).toBeLessThanOrEqual(4);
      expect(report.yieldedMs).toBeGreaterThanOrEqual(2500);
      const slow = inodesIn(mount, 'slow');
      for (const [name, content] of contents) {
        expect(slow.has(statSync(join(mount.mountpoint, name)).ino), name).toBe(true);
        expect(sha256(readFileSync(join(mount.mountpoint, name)))).toBe(sha256(content));
      }
    });
  }, 120_000);

  it('shmr crond runs the mover and the purge through the daemon', async () => {
    const extraYaml = `${MOVER_YAML}housekeeping: { mover: 1s, purge: 1s }\n`;
    await withMount({ pools: POOLS, extraYaml }, async (mount) => {
      const contents = await writeAged(mount, ['a', 'b', 'c', 'd']);
      const crond = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'shmr.js'), 'crond', '--config', mount.configPath], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      crond.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
      crond.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
      try {
        let isMoved = false;
        for (let attempt = 0; attempt < 60 && !isMoved; attempt++) {
          await sleep(500);
          const { tasks } = (await control(mount, 'tasks')) as { tasks: TaskInfo[] };
          const tombstones = (await control(mount, 'tombstones')) as { tombstones: unknown[] };
          isMoved = tasks.some((task) => task.kind === 'mover' && (task.result as { filesMoved?: number })?.filesMoved === 2) &&
            tombstones.tombstones.length === 0;
        }
        expect(isMoved, output).toBe(true);
        expect(output).toContain('crond purge: {"purgedShards":');
      } finally {
        crond.kill('SIGTERM');
      }
      const code = await new Promise((resolve) => crond.once('exit', resolve));
      expect(code, output).toBe(0);
      for (const [name, content] of contents) expect(sha256(readFileSync(join(mount.mountpoint, name)))).toBe(sha256(content));
    });
  }, 120_000);

  it('validates and inherits policy xattrs', async () => {
    await withMount({ pools: POOLS }, async (mount) => {
      const directory = join(mount.mountpoint, 'cold');
      mkdirSync(directory);
      const setXattr = (name: string, value: string, path = directory) =>
        execFileAsync('setfattr', ['-n', name, '-v', value, path]).then(() => 'ok', (error: { stderr: string }) => error.stderr);
      expect(await setXattr('user.shmr.pool', 'nope')).toMatch(/Invalid argument/);
      expect(await setXattr('user.shmr.topology', 'erasure:4+2')).toMatch(/Invalid argument/);
      expect(await setXattr('user.shmr.block_size', '3000')).toMatch(/Invalid argument/);
      expect(await setXattr('user.shmr.compression', 'no such thing!')).toMatch(/Invalid argument/);
      expect(await setXattr('user.shmr.pool', 'slow')).toBe('ok');
      expect(await setXattr('user.shmr.topology', 'mirror:3')).toBe('ok');
      expect(await setXattr('user.shmr.block_size', '64KiB')).toBe('ok');
      expect(await setXattr('user.shmr.compression', 'zstd:3')).toBe('ok');
      mkdirSync(join(directory, 'sub'));
      const path = join(directory, 'sub', 'file');
      const content = randomBytes(200_000);
      writeFileSync(path, content);
      const { stdout } = await execFileAsync('getfattr', ['-d', '-m', 'user.shmr', path]);
      expect(stdout).toContain('user.shmr.pool="slow"');
      expect(stdout).toContain('user.shmr.block_size="64KiB"');
      await mount.remount();
      const ino = statSync(path).ino;
      const shards = Object.values(mount.buckets).flatMap(shardFilesOf).filter((file) => basename(file).startsWith(`${ino}-`));
      // 200 000 bytes in 64 KiB blocks: 4 blocks, 3 mirror copies each, all on the slow pool.
      expect(shards.length).toBe(12);
      expect(inodesIn(mount, 'fast').has(ino)).toBe(false);
      expect(sha256(readFileSync(path))).toBe(sha256(content));
    });
  }, 60_000);
});
