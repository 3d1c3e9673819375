/**
 * shmrctl end to end, and the API through standard D-Bus tools.
 *
 * Method: a private session bus and a mounted filesystem; shmrctl runs as a separate process
 * (bin/shmrctl.js) with --json, and its output is parsed and checked against what the
 * filesystem holds; failures are checked for their exit code and JSON error. gdbus and
 * dbus-send (Debian's tools) read the status and call methods, proving the API is plain D-Bus.
 */
import { rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BUS_NAME, INTERFACE_NAME, objectPathOf } from '../../src/dbus/names.js';
import { runProcess, withBus, type PrivateBus } from '../helpers/dbus.js';
import { REPO_ROOT, sleep, withMount } from '../helpers/mount.js';

const SHMRCTL = join(REPO_ROOT, 'bin', 'shmrctl.js');

/** shmrctl on the private bus, --json added; resolves with the exit code and parsed output. */
async function shmrctl(bus: PrivateBus, args: string[]): Promise<{ code: number; json: Record<string, unknown>; stderr: string }> {
  const result = await runProcess(process.execPath, [SHMRCTL, ...args, '--json'], { ...bus.env, SHMR_DBUS_BUS: 'session' });
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(result.stdout) as Record<string, unknown>;
  } catch {
    throw new Error(`shmrctl ${args.join(' ')}: not JSON (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
  }
  return { code: result.code, json, stderr: result.stderr };
}

async function waitForService(bus: PrivateBus, mountpoint: string): Promise<void> {
  for (let waited = 0; waited < 10_000; waited += 50) {
    if ((await shmrctl(bus, ['status', '--mount', mountpoint])).code === 0) return;
    await sleep(50);
  }
  throw new Error('the daemon never registered on the bus');
}

const POOLS = {
  fast: { topology: 'erasure:2+1', blockSize: '64KiB', buckets: 3 },
  arc: { topology: 'single', blockSize: '128KiB', buckets: 1 },
};

describe('shmrctl and standard D-Bus tools', () => {
  it('status, flush, stat, errors and exit codes with --json; gdbus and dbus-send interoperate', async () => {
    await withBus('session', async (bus) => {
      await withMount({ pools: POOLS, extraYaml: 'dbus: { bus: session }\n', env: bus.env }, async (mount) => {
        const file = join(mount.mountpoint, 'f');
        writeFileSync(file, Buffer.alloc(100 * 1024, 1));
        await waitForService(bus, mount.mountpoint);

        const status = await shmrctl(bus, ['status', '--mount', mount.mountpoint]);
        expect(status.code).toBe(0);
        expect(status.json['MountPoint']).toBe(mount.mountpoint);
        expect((status.json['Pools'] as { name: string }[]).map((pool) => pool.name)).toEqual(['fast', 'arc']);

        const flushed = await shmrctl(bus, ['flush', file]);
        expect(flushed.code, flushed.stderr).toBe(0);
        expect(flushed.json).toEqual({ flushed: file, inode: statSync(file).ino });
        expect((await shmrctl(bus, ['flush', '--mount', mount.mountpoint])).json).toEqual({ flushed: mount.mountpoint });

        const stat = await shmrctl(bus, ['stat', file]);
        expect(stat.code, stat.stderr).toBe(0);
        expect(stat.json).toMatchObject({ ino: statSync(file).ino, blockCount: 2, pools: ['fast'], health: 'ok' });

        // Exit codes scripts rely on, each with its JSON error.
        const cases: [string[], number, string][] = [
          [['rewrite', file, '--pool', 'nope'], 4, 'co.volf.shmr.Error.UnknownPool'],
          [['rewrite', file, '--pool', 'arc', '--topology', 'erasure:8+3'], 4, 'co.volf.shmr.Error.TopologyTooWide'],
          [['stat', '/etc/passwd', '--mount', mount.mountpoint], 4, 'co.volf.shmr.Error.PathOutsideMount'],
          [['stat', join(mount.mountpoint, 'missing')], 5, 'co.volf.shmr.Error.NoSuchFile'],
          [['task', 'x1', '--mount', mount.mountpoint], 4, 'co.volf.shmr.Error.InvalidArguments'],
          [['status', '--mount', '/nonexistent/mount'], 7, 'Unreachable'],
          [['rewrite', file, '--pool', 'arc', '--block-size', 'huge'], 2, 'Usage'],
          [['frobnicate'], 2, 'Usage'],
          [['status', '--bogus'], 2, 'Usage'],
        ];
        for (const [args, code, name] of cases) {
          const failed = await shmrctl(bus, args);
          expect(failed.code, `${args.join(' ')}: ${failed.stderr}`).toBe(code);
          expect((failed.json['error'] as { name: string }).name).toBe(name);
        }
        const noBus = await runProcess(process.execPath, [SHMRCTL, 'status', '--mount', mount.mountpoint, '--bus', 'system', '--json'],
          { DBUS_SYSTEM_BUS_ADDRESS: 'unix:path=/nonexistent/bus' });
        expect(noBus.code).toBe(7);

        // A damaged file: stat still answers, with exit 3.
        const shard = (stat.json['blocks'] as { shards: { path: string }[] }[])[0]?.shards[1]?.path as string;
        rmSync(shard);
        const damaged = await shmrctl(bus, ['stat', file]);
        expect(damaged.code).toBe(3);
        expect(damaged.json).toMatchObject({ health: 'degraded', blocksDegraded: 1 });

        // Standard tools.
        const path = objectPathOf(mount.mountpoint);
        const gdbus = ['call', '--session', '--dest', BUS_NAME, '--object-path', path, '--method'];
        const all = await runProcess('/usr/bin/gdbus', [...gdbus, 'org.freedesktop.DBus.Properties.GetAll', INTERFACE_NAME], bus.env);
        expect(all.code, all.stderr).toBe(0);
        expect(all.stdout).toContain(`'MountPoint': <'${mount.mountpoint}'>`);
        expect(all.stdout).toMatch(/'OpenFileHandles': <uint32 \d+>/);
        const flushAll = await runProcess('/usr/bin/dbus-send', ['--session', '--print-reply', `--dest=${BUS_NAME}`, path,
          `${INTERFACE_NAME}.FlushAll`], bus.env);
        expect(flushAll.code, flushAll.stderr).toBe(0);
        const flushInode = await runProcess('/usr/bin/dbus-send', ['--session', '--print-reply', `--dest=${BUS_NAME}`, path,
          `${INTERFACE_NAME}.FlushInode`, `uint64:${statSync(file).ino}`], bus.env);
        expect(flushInode.code, flushInode.stderr).toBe(0);
        const badPool = await runProcess('/usr/bin/gdbus', [...gdbus, `${INTERFACE_NAME}.RewriteFile`, file, 'nope', '', '0', '0'], bus.env);
        expect(badPool.code).not.toBe(0);
        expect(badPool.stderr).toMatch(/co\.volf\.shmr\.Error\.UnknownPool: pool: unknown pool "nope"/);
        const statCall = await runProcess('/usr/bin/gdbus', [...gdbus, `${INTERFACE_NAME}.Stat`, file], bus.env);
        expect(statCall.code, statCall.stderr).toBe(0);
        expect(statCall.stdout).toContain("'health': <'degraded'>");
      });
    });
  }, 120_000);

  it('metrics: a value after I/O, --json shape, exit codes of bad queries', async () => {
    await withBus('session', async (bus) => {
      const extraYaml = 'dbus: { bus: session }\nmetrics: { collect_interval: 200ms, flush_interval: 200ms }\n';
      await withMount({ pools: POOLS, extraYaml, env: bus.env }, async (mount) => {
        await waitForService(bus, mount.mountpoint);
        const file = join(mount.mountpoint, 'f');
        writeFileSync(file, Buffer.alloc(256 * 1024, 7));
        expect((await shmrctl(bus, ['flush', file])).code).toBe(0);

        // 256 KiB in 64 KiB blocks went to pool fast: four block writes, and their bytes.
        const args = ['metrics', 'block_bytes_total', 'pool=fast', 'op=write', '--fn', 'sum', '--intervals', '1000'];
        const written = await shmrctl(bus, [...args, '--mount', mount.mountpoint]);
        expect(written.code, written.stderr).toBe(0);
        expect(written.json).toEqual({
          name: 'block_bytes_total', matchers: [['pool', '=', 'fast'], ['op', '=', 'write']],
          fn: 'sum', intervals: 1000, value: 256 * 1024,
        });
        const text = await runProcess(process.execPath, [SHMRCTL, ...args, '--mount', mount.mountpoint],
          { ...bus.env, SHMR_DBUS_BUS: 'session' });
        expect(text.stdout).toBe(`${256 * 1024}\n`);
        const none = await shmrctl(bus, ['metrics', 'block_bytes_total', 'pool!~fa.*', 'op=write', '--fn', 'count',
          '--intervals', '1000', '--mount', mount.mountpoint]);
        expect(none.json['value']).toBe(0);

        const cases: [string[], number, string, RegExp][] = [
          [['metrics', 'shmr_no_such_metric'], 4, 'co.volf.shmr.Error.InvalidArguments', /unknown metric "shmr_no_such_metric" \(known: .*block_bytes_total/],
          [['metrics', 'block_bytes_total', 'pool=~('], 4, 'co.volf.shmr.Error.InvalidArguments', /bad regex/],
          [['metrics', 'block_bytes_total', 'pool'], 2, 'Usage', /matcher "pool": write LABEL=VALUE/],
          [['metrics', 'block_bytes_total', '--fn', 'median'], 2, 'Usage', /--fn: "median" is not one of avg/],
          [['metrics', 'block_bytes_total', '--intervals', '0'], 2, 'Usage', /--intervals/],
          [['metrics'], 2, 'Usage', /missing metric NAME/],
        ];
        for (const [caseArgs, code, name, message] of cases) {
          const failed = await shmrctl(bus, [...caseArgs, '--mount', mount.mountpoint]);
          expect(failed.code, `${caseArgs.join(' ')}: ${failed.stderr}`).toBe(code);
          expect(failed.json['error'], caseArgs.join(' ')).toMatchObject({ name, message: expect.stringMatching(message) });
          expect(failed.stderr).toMatch(message);
        }
      });
    });
  }, 120_000);
});
