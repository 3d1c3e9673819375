/**
 * Long operations over D-Bus: RewriteFile, RewriteBlock and Scrub return a task id at once and
 * report through TaskProgress and TaskFinished; ListTasks, GetTask, CancelTask, GetTombstones
 * and PurgeTombstone(s) show and clean up after them.
 *
 * Method: a private session bus and a mounted filesystem with a fast erasure pool and a single
 * archive pool. A file is rewritten to the archive with a new block size, checked through
 * Stat and by reading it back; its tombstones are listed and purged; the same is done through
 * gdbus and through `shmrctl rewrite --wait --json`, `tasks`, `tombstones` and `scrub`.
 */
import { spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ShmrClient } from '../../src/dbus/client.js';
import { BUS_NAME, INTERFACE_NAME, objectPathOf } from '../../src/dbus/names.js';
import { connectClient, runProcess, withBus, type PrivateBus } from '../helpers/dbus.js';
import { REPO_ROOT, sleep, withMount } from '../helpers/mount.js';

const POOLS = {
  fast: { topology: 'erasure:2+1', blockSize: '64KiB', buckets: 3 },
  arc: { topology: 'mirror:2', blockSize: '128KiB', buckets: 2 },
};

interface Task { id: number; kind: string; state: string; doneBytes: number; totalBytes: number; errors: string[] }
interface Layout { ino: number; blockBytes: number; blockCount: number; pools: string[]; topologies: string[]; health: string }

/** Starts a task and collects its signals until TaskFinished. */
async function runTask(client: ShmrClient, start: () => Promise<unknown[]>): Promise<{ id: string; progress: Task[]; finished: Task }> {
  const progress = new Map<string, Task[]>();
  const finished = new Map<string, { state: string; task: Task }>();
  const offProgress = await client.onSignal('TaskProgress', ([id, task]) => {
    progress.set(String(id), [...(progress.get(String(id)) ?? []), task as Task]);
  });
  const offFinished = await client.onSignal('TaskFinished', ([id, state, task]) => finished.set(String(id), { state: String(state), task: task as Task }));
  try {
    const [id] = await start();
    expect(id).toMatch(/^\d+$/);
    const deadline = Date.now() + 60_000;
    while (!finished.has(String(id))) {
      if (Date.now() > deadline) throw new Error(`task ${String(id)} did not finish`);
      await sleep(20);
    }
    const end = finished.get(String(id));
    expect(end?.task.state).toBe(end?.state);
    return { id: String(id), progress: progress.get(String(id)) ?? [], finished: end?.task as Task };
  } finally {
    offProgress();
    offFinished();
  }
}

async function shmrctl(bus: PrivateBus, args: string[]): Promise<{ code: number; json: unknown }> {
  const result = await runProcess(process.execPath, [join(REPO_ROOT, 'bin', 'shmrctl.js'), ...args, '--json', '--bus', 'session'], bus.env);
  return { code: result.code, json: JSON.parse(result.stdout) as unknown };
}

describe('tasks over D-Bus', () => {
  it('rewrites a file and a block, lists and cancels tasks, purges tombstones, scrubs', async () => {
    await withBus('session', async (bus) => {
      await withMount({ pools: POOLS, extraYaml: 'dbus: { bus: session }\n', env: bus.env }, async (mount) => {
        const file = join(mount.mountpoint, 'big');
        const content = Buffer.alloc(4 * 1024 * 1024);
        for (let index = 0; index < content.length; index += 4) content.writeUInt32LE(index, index);
        writeFileSync(file, content);
        const ino = statSync(file).ino;
        const client = await connectClient(bus, mount.mountpoint);
        try {
          await client.call('FlushAll');
          const rewrite = await runTask(client, () => client.call('RewriteFile', file, 'arc', '', BigInt(256 * 1024), 2));
          expect(rewrite.finished).toMatchObject({ kind: 'rewrite', state: 'done', errors: [] });
          expect(rewrite.finished.doneBytes).toBe(content.length);
          expect(rewrite.progress.length).toBeGreaterThanOrEqual(1);
          expect(rewrite.progress.every((task) => task.state === 'running')).toBe(true);
          const [layout] = (await client.call('Stat', file)) as [Layout];
          expect(layout).toMatchObject({ pools: ['arc'], topologies: ['mirror:2'], blockBytes: 256 * 1024, blockCount: 16, health: 'ok' });
          expect(readFileSync(file).equals(content)).toBe(true);

          const [task] = (await client.call('GetTask', rewrite.id)) as [Task];
          expect(task).toMatchObject({ id: Number(rewrite.id), state: 'done' });
          const [list] = (await client.call('ListTasks')) as [Task[]];
          expect(list.map((entry) => entry.id)).toContain(Number(rewrite.id));
          // Cancelling a finished task changes nothing; an unknown one is an error.
          expect(((await client.call('CancelTask', rewrite.id)) as [Task])[0].state).toBe('done');
          await expect(client.call('CancelTask', '99999')).rejects.toMatchObject({ type: 'co.volf.shmr.Error.NoSuchTask' });
          await expect(client.call('GetTask', '99999')).rejects.toMatchObject({ type: 'co.volf.shmr.Error.NoSuchTask' });

          const [tombstones] = (await client.call('GetTombstones')) as [{ ino: number; pool: string; bytes: number }[]];
          const mine = tombstones.filter((entry) => entry.ino === ino);
          expect(mine.length).toBeGreaterThan(0);
          expect(mine.every((entry) => entry.pool === 'fast')).toBe(true);
          const [shards, bytes] = await client.call('PurgeTombstone', BigInt(ino));
          expect(shards).toBeGreaterThan(0);
          expect(bytes).toBeGreaterThan(0);
          expect(((await client.call('GetTombstones')) as [unknown[]])[0]).toEqual([]);
          expect(await client.call('PurgeTombstones', 0n)).toEqual([0, 0]);

          const block = await runTask(client, () => client.call('RewriteBlock', BigInt(ino), 3n, 'fast', 'erasure:2+1'));
          expect(block.finished.state).toBe('done');
          expect(((await client.call('Stat', file)) as [Layout])[0].pools.sort()).toEqual(['arc', 'fast']);
          expect(readFileSync(file).equals(content)).toBe(true);

          const scrub = await runTask(client, () => client.call('Scrub', 'arc', true));
          expect(scrub.finished).toMatchObject({ kind: 'scrub', state: 'done', errors: [] });

          // Standard tools start a rewrite too, and the task id comes back at once.
          const gdbus = await runProcess('/usr/bin/gdbus', ['call', '--session', '--dest', BUS_NAME, '--object-path',
            objectPathOf(mount.mountpoint), '--method', `${INTERFACE_NAME}.RewriteFile`, String(ino), 'fast', 'erasure:2+1', '0', '0'], bus.env);
          expect(gdbus.code, gdbus.stderr).toBe(0);
          const gdbusId = /\('(\d+)',\)/.exec(gdbus.stdout)?.[1];
          expect(gdbusId).toBeDefined();
          for (let waited = 0; ((await client.call('GetTask', gdbusId)) as [Task])[0].state === 'running'; waited += 50) {
            if (waited > 60_000) throw new Error('gdbus rewrite did not finish');
            await sleep(50);
          }
          expect(((await client.call('Stat', file)) as [Layout])[0]).toMatchObject({ pools: ['fast'], blockBytes: 64 * 1024 });

          // Cancelling a running rewrite (512 blocks, one at a time): it ends cancelled, data intact.
          const large = join(mount.mountpoint, 'large');
          const largeContent = Buffer.alloc(32 * 1024 * 1024, 9);
          writeFileSync(large, largeContent);
          await client.call('FlushAll');
          const cancelled = await runTask(client, async () => {
            const started = await client.call('RewriteFile', large, 'arc', '', 0n, 1);
            const [now] = (await client.call('CancelTask', started[0])) as [Task];
            expect(now.state).toBe('running');
            return started;
          });
          expect(cancelled.finished.state).toBe('cancelled');
          expect(readFileSync(large).equals(largeContent)).toBe(true);
        } finally {
          client.close();
        }

        // shmrctl: rewrite --wait, tasks, tombstones (--purge), scrub --wait; all --json.
        const waited = await shmrctl(bus, ['rewrite', file, '--pool', 'arc', '--topology', 'mirror:2', '--block-size', '1MiB', '--wait']);
        expect(waited.code).toBe(0);
        expect(waited.json).toMatchObject({ kind: 'rewrite', state: 'done', doneBytes: content.length });
        const tasks = await shmrctl(bus, ['tasks', '--mount', mount.mountpoint]);
        expect(tasks.code).toBe(0);
        expect((tasks.json as Task[]).filter((entry) => entry.kind === 'rewrite').length).toBeGreaterThanOrEqual(3);
        const listed = await shmrctl(bus, ['tombstones', '--mount', mount.mountpoint]);
        expect((listed.json as { ino: number }[]).some((entry) => entry.ino === ino)).toBe(true);
        const purged = await shmrctl(bus, ['tombstones', '--purge', '--mount', mount.mountpoint]);
        expect(purged.code).toBe(0);
        expect((purged.json as { purgedShards: number }).purgedShards).toBeGreaterThan(0);
        expect((await shmrctl(bus, ['tombstones', '--mount', mount.mountpoint])).json).toEqual([]);
        const scrubbed = await shmrctl(bus, ['scrub', '--repair', '--wait', '--mount', mount.mountpoint]);
        expect(scrubbed.json).toMatchObject({ kind: 'scrub', state: 'done' });
        const started = await shmrctl(bus, ['scrub', '--mount', mount.mountpoint]);
        expect(started.json).toMatchObject({ taskId: expect.stringMatching(/^\d+$/) as unknown });
        expect(readFileSync(file).equals(content)).toBe(true);
        expect(((await shmrctl(bus, ['stat', file])).json as Layout)).toMatchObject({ pools: ['arc'], blockBytes: 1024 * 1024 });
      });
    });
  }, 180_000);

  it('shmr crond --dbus runs the housekeeping schedule through the D-Bus API', async () => {
    const extraYaml = 'dbus: { bus: session }\nmover: { target: arc, idle: 1s, high_watermark: 1MiB, low_watermark: 1MiB }\n' +
      'housekeeping: { mover: 1s, purge: 1s, scrub: 1s }\n';
    await withBus('session', async (bus) => {
      await withMount({ pools: POOLS, extraYaml, env: bus.env }, async (mount) => {
        writeFileSync(join(mount.mountpoint, 'old'), Buffer.alloc(2 * 1024 * 1024, 5));
        const crond = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'shmr.js'), 'crond', '--dbus', '--config', mount.configPath], {
          stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...bus.env },
        });
        let output = '';
        crond.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
        crond.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
        try {
          const expected = [/crond mover: \{"taskId":"\d+"\}/, /crond purge: \{"purgedShards":\d+,"purgedBytes":\d+\}/, /crond scrub: \{"taskId":"\d+"\}/];
          for (let waited = 0; !expected.every((pattern) => pattern.test(output)); waited += 100) {
            if (waited > 30_000) throw new Error(`crond did not run every job over D-Bus:\n${output}`);
            await sleep(100);
          }
          expect(output).not.toMatch(/failed/);
        } finally {
          crond.kill('SIGTERM');
        }
        expect(await new Promise((resolve) => crond.once('exit', resolve)), output).toBe(0);
      });
    });
  }, 120_000);
});
