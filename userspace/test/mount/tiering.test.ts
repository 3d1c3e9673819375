/**
 * Tiering through a real mount: files rewritten between pools, topologies and block sizes read
 * back byte for byte (odd sizes, sparse files), writes during a rewrite are kept, the old
 * shards become tombstones and a purge removes them, policy xattrs are validated and inherited.
 *
 * Method: the daemon's control socket (the same methods the CLI and D-Bus use); content is
 * compared by SHA-256 against what was written; shard files are counted in the bucket dirs.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { callControl } from '../../src/daemon/control.js';
import { shardFilesOf } from '../../src/tasks/fsck.js';
import type { TaskInfo } from '../../src/tasks/task-manager.js';
import { runCli, withMount, type Mount } from '../helpers/mount.js';

const execFileAsync = promisify(execFile);
const POOLS = {
  fast: { topology: 'single', blockSize: '1MiB', buckets: 3 },
  slow: { topology: 'erasure:2+1', blockSize: '256KiB', buckets: 3 },
};
/** Tombstones stay for the whole test unless it purges them. */
const KEEPING_TOMBSTONES = { pools: POOLS, extraYaml: 'tombstones: { grace: 1h }\n' };
const TOPOLOGIES = ['single', 'mirror:2', 'erasure:2+1'];
const BLOCK_SIZES = [65536, 262144, 1048576];

/**
 * A writer process: `count` writes of deterministic bytes at deterministic offsets inside
 * [start, end) of a file, the sequence derived from `seed` (replayed by `replayWriter`).
 */
const WRITER = `
const fs = require('fs');
const [path, start, end, seed, count] = process.argv.slice(1).map((value, index) => index === 0 ? value : Number(value));
let state = seed;
const next = () => (state = (state * 1103515245 + 12345) >>> 0);
const fd = fs.openSync(path, 'r+');
for (let index = 0; index < count; index++) {
  const length = 1000 + (next() % 20000);
  const offset = start + (next() % (end - start - length));
  const data = Buffer.alloc(length, next() & 0xff);
  fs.writeSync(fd, data, 0, length, offset);
  const until = Date.now() + 3;
  while (Date.now() < until);
}
fs.closeSync(fd);
`;

function replayWriter(target: Buffer, options: { start: number; end: number; seed: number; count: number }): void {
  let state = options.seed;
  const next = () => (state = (state * 1103515245 + 12345) >>> 0);
  for (let index = 0; index < options.count; index++) {
    const length = 1000 + (next() % 20000);
    const offset = options.start + (next() % (options.end - options.start - length));
    target.fill(next() & 0xff, offset, offset + length);
  }
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function control(mount: Mount, method: string, params: Record<string, unknown> = {}): Promise<unknown> {
  return callControl(join(mount.root, 'meta'), method, params);
}

async function rewriteAndWait(mount: Mount, params: Record<string, unknown>): Promise<TaskInfo> {
  const { taskId } = (await control(mount, 'rewriteFile', params)) as { taskId: number };
  const info = (await control(mount, 'waitTask', { id: taskId })) as TaskInfo;
  expect(info.errors).toEqual([]);
  expect(info.state).toBe('done');
  return info;
}

function shardCount(mount: Mount): number {
  return Object.values(mount.buckets).flatMap(shardFilesOf).length;
}

describe('tiering', () => {
  it('rewrites across every pair of topologies and block sizes, byte-identical', async () => {
    await withMount(KEEPING_TOMBSTONES, async (mount) => {
      const dense = randomBytes(3 * 1048576 + 12345);
      const sparse = Buffer.alloc(5 * 1048576 + 777);
      randomBytes(70000).copy(sparse, 1048576 + 5);
      randomBytes(1000).copy(sparse, sparse.byteLength - 1000);
      writeFileSync(join(mount.mountpoint, 'dense'), dense);
      const fd = openSync(join(mount.mountpoint, 'sparse'), 'w');
      writeSync(fd, sparse.subarray(1048576 + 5, 1048576 + 70005), 0, 70000, 1048576 + 5);
      writeSync(fd, sparse.subarray(sparse.byteLength - 1000), 0, 1000, sparse.byteLength - 1000);
      closeSync(fd);
      // Nine topology pairs zipped with the nine ordered block size pairs: each pair of each once.
      const topologyPairs = TOPOLOGIES.flatMap((from) => TOPOLOGIES.map((to) => [from, to] as const));
      const sizePairs = BLOCK_SIZES.flatMap((from) => BLOCK_SIZES.map((to) => [from, to] as const));
      for (const [pairIndex, [fromTopology, toTopology]] of topologyPairs.entries()) {
        const [fromSize, toSize] = sizePairs[pairIndex] ?? [0, 0];
        for (const [name, content] of [['dense', dense], ['sparse', sparse]] as const) {
          const path = join(mount.mountpoint, name);
          const steps = [[fromTopology, fromSize, 'fast'], [toTopology, toSize, 'slow']] as const;
          for (const [topology, blockSize, pool] of steps) {
            await rewriteAndWait(mount, { path, pool, topology, blockSize });
            expect(sha256(readFileSync(path)), `${name} ${topology} ${blockSize} on ${pool}`).toBe(sha256(content));
          }
        }
      }
      // The sparse file stayed sparse: its holes hold no blocks (st_blocks counts stored bytes).
      expect(statSync(join(mount.mountpoint, 'sparse')).blocks * 512).toBeLessThan(sparse.byteLength / 2);
      const tombstones = (await control(mount, 'tombstones')) as { tombstones: unknown[] };
      expect(tombstones.tombstones.length).toBeGreaterThan(0);
      const before = shardCount(mount);
      const purged = (await control(mount, 'purgeTombstones', { olderThanSeconds: 0 })) as { purgedShards: number };
      expect(purged.purgedShards).toBeGreaterThan(0);
      expect(shardCount(mount)).toBe(before - purged.purgedShards);
      expect(((await control(mount, 'tombstones')) as { tombstones: unknown[] }).tombstones).toEqual([]);
      await mount.remount();
      expect(sha256(readFileSync(join(mount.mountpoint, 'dense')))).toBe(sha256(dense));
      expect(sha256(readFileSync(join(mount.mountpoint, 'sparse')))).toBe(sha256(sparse));
      const fsck = await runCli(['fsck', '--config', mount.configPath, '--json']);
      expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    });
  }, 300_000);

  it('rewrites one block by inode to another pool and topology', async () => {
    await withMount(KEEPING_TOMBSTONES, async (mount) => {
      const path = join(mount.mountpoint, 'blocky');
      const content = randomBytes(3 * 1048576 + 5);
      writeFileSync(path, content);
      const ino = statSync(path).ino;
      await control(mount, 'flush');
      const { taskId } = (await control(mount, 'rewriteBlock', { ino, block: 1, pool: 'slow', topology: 'mirror:2' })) as { taskId: number };
      const info = (await control(mount, 'waitTask', { id: taskId })) as TaskInfo;
      expect(info.state, info.errors.join('\n')).toBe('done');
      const { tombstones } = (await control(mount, 'tombstones', { ino })) as { tombstones: { block: number; pool: string }[] };
      expect(tombstones.map((stone) => [stone.block, stone.pool])).toEqual([[1, 'fast']]);
      const slowShards = Object.entries(mount.buckets).filter(([name]) => name.startsWith('slow'))
        .flatMap(([, bucket]) => shardFilesOf(bucket)).filter((file) => file.includes(`/${ino}-1-`));
      expect(slowShards.length).toBe(2);
      expect(sha256(readFileSync(path))).toBe(sha256(content));
      const hole = await control(mount, 'rewriteBlock', { ino, block: 9, pool: 'slow', topology: 'single' })
        .then(() => 'ok', (error: { code?: string }) => error.code);
      expect(hole).toBe('ENOENT');
    });
  }, 60_000);

  it('keeps a deleted file as tombstones until its grace period ends', async () => {
    await withMount({ pools: POOLS, extraYaml: 'tombstones: { grace: 3s }\n' }, async (mount) => {
      const path = join(mount.mountpoint, 'doomed');
      writeFileSync(path, randomBytes(2 * 1048576 + 3));
      const ino = statSync(path).ino;
      await control(mount, 'flush');
      const shardsOf = () => Object.values(mount.buckets).flatMap(shardFilesOf).filter((file) => file.includes(`/${ino}-`));
      expect(shardsOf().length).toBe(3);
      unlinkSync(path);
      const { tombstones } = (await control(mount, 'tombstones', { ino })) as { tombstones: { reason: string; bytes: number }[] };
      expect(tombstones.map((stone) => stone.reason)).toEqual(['deleted', 'deleted', 'deleted']);
      expect(tombstones.reduce((sum, stone) => sum + stone.bytes, 0)).toBe(2 * 1048576 + 3);
      expect(shardsOf().length).toBe(3);
      let isPurged = false;
      for (let attempt = 0; attempt < 40 && !isPurged; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        isPurged = shardsOf().length === 0;
      }
      expect(isPurged).toBe(true);
      expect(((await control(mount, 'tombstones', { ino })) as { tombstones: unknown[] }).tombstones).toEqual([]);
      const { tasks } = (await control(mount, 'tasks')) as { tasks: TaskInfo[] };
      expect(tasks.some((task) => task.kind === 'purge' && task.state === 'done')).toBe(true);
    });
  }, 60_000);

  it('rejects bad rewrite requests with a precise errno', async () => {
    await withMount({ pools: POOLS }, async (mount) => {
      writeFileSync(join(mount.mountpoint, 'f'), 'x');
      const attempt = (params: Record<string, unknown>) => control(mount, 'rewriteFile', params).then(
        () => 'ok', (error: { code?: string; message: string }) => `${error.code}: ${error.message}`);
      const path = join(mount.mountpoint, 'f');
      expect(await attempt({ path, pool: 'nope', topology: 'single' })).toMatch(/^EINVAL: .*unknown pool "nope"/);
      expect(await attempt({ path, pool: 'fast', topology: 'erasure:4+2' })).toMatch(/^EINVAL: .*needs 6 buckets, pool fast has 3/);
      expect(await attempt({ path: mount.mountpoint, pool: 'fast', topology: 'single' })).toMatch(/^EISDIR/);
      expect(await attempt({ path, pool: 'fast', topology: 'single', blockSize: 1000 })).toMatch(/^EINVAL: .*power of two/);
      expect(await attempt({ path: join(mount.mountpoint, 'missing'), pool: 'fast', topology: 'single' })).toMatch(/^ENOENT/);
    });
  }, 60_000);

  it('drives rewrites, tasks and tombstones from the command line', async () => {
    await withMount(KEEPING_TOMBSTONES, async (mount) => {
      const path = join(mount.mountpoint, 'cli');
      const content = randomBytes(3 * 1048576 + 1);
      writeFileSync(path, content);
      const config = ['--config', mount.configPath];
      const rewrite = await runCli(['rewrite', path, '--pool', 'slow', '--topology', 'erasure:2+1',
        '--block-size', '64KiB', '--parallel', '2', '--wait', '--json', ...config]);
      expect(rewrite.code, rewrite.stderr).toBe(0);
      const done = JSON.parse(rewrite.stdout) as TaskInfo;
      expect(done).toMatchObject({ state: 'done', kind: 'rewrite', doneBytes: content.byteLength });
      const tasks = JSON.parse((await runCli(['tasks', '--json', ...config])).stdout) as { tasks: TaskInfo[] };
      expect(tasks.tasks.map((task) => task.id)).toContain(done.id);
      const listed = JSON.parse((await runCli(['tombstones', '--json', ...config])).stdout) as { tombstones: { ino: number }[] };
      expect(listed.tombstones.length).toBe(4);
      // statfs: the tombstoned shard files are free for bfree (they come back) but not for
      // bavail: four single shards, each its data after a 4 KiB header and chunk table.
      const reclaimableBlocks = async () => {
        const { stdout } = await execFileAsync('stat', ['-f', '-c', '%f %a', mount.mountpoint]);
        const [free, available] = stdout.trim().split(' ').map(Number);
        return (free ?? 0) - (available ?? 0);
      };
      expect(Math.abs((await reclaimableBlocks()) - (content.byteLength + 4 * 4096) / 4096)).toBeLessThanOrEqual(1);
      const young = await runCli(['tombstones', '--purge', '--older-than', '1h', '--json', ...config]);
      expect(JSON.parse(young.stdout)).toMatchObject({ purgedShards: 0 });
      const purge = await runCli(['tombstones', '--purge', '--inode', String(listed.tombstones[0]?.ino), '--json', ...config]);
      expect(JSON.parse(purge.stdout)).toMatchObject({ purgedShards: 4 });
      expect(await reclaimableBlocks()).toBe(0);
      const bad = await runCli(['rewrite', path, '--pool', 'nope', '--topology', 'single', ...config]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/unknown pool "nope"/);
      expect(sha256(readFileSync(path))).toBe(sha256(content));
    });
  }, 60_000);

  it('keeps writes made during a rewrite, and reads see them', async () => {
    await withMount(KEEPING_TOMBSTONES, async (mount) => {
      const path = join(mount.mountpoint, 'busy');
      const expected = randomBytes(8 * 1048576);
      writeFileSync(path, expected);
      const fd = openSync(path, 'r+');
      const { taskId } = (await control(mount, 'rewriteFile', {
        path, pool: 'slow', topology: 'erasure:2+1', blockSize: 65536, parallel: 2,
      })) as { taskId: number };
      // Two writer processes own the upper half of the file; this process writes the lower.
      const writers = [
        { start: 4 * 1048576, end: 6 * 1048576, seed: 11, count: 150 },
        { start: 6 * 1048576, end: 8 * 1048576, seed: 29, count: 150 },
      ];
      const exits = writers.map((writer) => {
        const child = spawn(process.execPath, ['-e', WRITER, path, String(writer.start), String(writer.end),
          String(writer.seed), String(writer.count)], { stdio: 'inherit' });
        return new Promise((resolve) => child.once('exit', resolve));
      });
      // Overwrite while the rewrite copies; every write must survive it.
      for (let round = 0; round < 40; round++) {
        const chunk = randomBytes(5000 + round * 100);
        const offset = (round * 310_001) % (4 * 1048576 - chunk.byteLength);
        writeSync(fd, chunk, 0, chunk.byteLength, offset);
        chunk.copy(expected, offset);
        // Reads in the middle of the rewrite see every write made so far (lower half: ours).
        if (round % 8 === 7) {
          expect(sha256(readFileSync(path).subarray(0, 4 * 1048576)), `round ${round}`)
            .toBe(sha256(expected.subarray(0, 4 * 1048576)));
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      closeSync(fd);
      expect(await Promise.all(exits)).toEqual([0, 0]);
      for (const writer of writers) replayWriter(expected, writer);
      const info = (await control(mount, 'waitTask', { id: taskId })) as TaskInfo;
      expect(info.state, info.errors.join('\n')).toBe('done');
      // The writes landed mid-copy: the commit saw a changed map and copied again.
      expect((info.result as { rounds: number }).rounds).toBeGreaterThanOrEqual(2);
      const want = expected;
      expect(sha256(readFileSync(path))).toBe(sha256(want));
      await mount.remount();
      expect(sha256(readFileSync(path))).toBe(sha256(want));
    });
  }, 120_000);
});
