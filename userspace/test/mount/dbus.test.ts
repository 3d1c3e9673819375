/**
 * The D-Bus control plane on a real bus: a private dbus-daemon (test/helpers/dbus.ts) and a
 * real mounted filesystem serving co.volf.shmr.ShmrFs1 on it.
 *
 * Method: dbus-next as the client (our ShmrClient and raw messages) for every method,
 * property and signal; bad arguments for every method must give the documented error and
 * change nothing (the file's layout, its data and the mount are checked afterwards). Signals
 * are provoked for real: a deleted shard (ShardError), a bucket whose label vanished and came
 * back (BucketStateChanged). Unmount is called through the API and the daemon must exit 0.
 */
import { readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import dbus from 'dbus-next';
import { describe, expect, it } from 'vitest';
import type { ShmrClient } from '../../src/dbus/client.js';
import { BUS_NAME, INTERFACE_NAME, objectPathOf } from '../../src/dbus/names.js';
import { connectClient, withBus, type PrivateBus } from '../helpers/dbus.js';
import { sleep, withMount, type Mount } from '../helpers/mount.js';

const POOLS = {
  fast: { topology: 'erasure:2+1', blockSize: '64KiB', buckets: 3 },
  arc: { topology: 'single', blockSize: '128KiB', buckets: 1 },
};

interface ShardView { index: number; bucket: string; path: string; health: string }
interface Layout {
  ino: number; blockCount: number; pools: string[]; topologies: string[]; health: string;
  blocks: { index: number; generation: number; health: string; shards: ShardView[] }[];
}

async function expectError(call: Promise<unknown>, name: string, message?: RegExp): Promise<void> {
  const error = await call.then(() => undefined, (failure: unknown) => failure);
  expect(error, `expected ${name}`).toBeInstanceOf(dbus.DBusError);
  expect((error as dbus.DBusError).type).toBe(`co.volf.shmr.Error.${name}`);
  if (message !== undefined) expect((error as dbus.DBusError).text).toMatch(message);
}

/** A call with any signature, bypassing the client's table (wrong-signature cases). */
async function rawCall(client: ShmrClient, address: string, member: string, signature: string, body: unknown[]): Promise<unknown> {
  const bus = dbus.sessionBus({ busAddress: address });
  try {
    return await bus.call(new dbus.Message({
      destination: BUS_NAME, path: client.objectPath, interface: INTERFACE_NAME, member, signature, body,
    }));
  } finally {
    bus.disconnect();
  }
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('D-Bus API on a private session bus', () => {
  it('serves properties, introspection, flush, stat and rejects bad arguments without changing anything', async () => {
    await withBus('session', async (bus) => {
      const extraYaml = 'dbus: { bus: session }\ncache: { memory_limit: 384MiB }\n';
      await withMount({ pools: POOLS, extraYaml, env: bus.env }, async (mount) => {
        const file = join(mount.mountpoint, 'data.bin');
        const content = Buffer.alloc(200 * 1024, 7);
        writeFileSync(file, content);
        mkdirSync(join(mount.mountpoint, 'dir'));
        symlinkSync('data.bin', join(mount.mountpoint, 'link'));
        const client = await connectClient(bus, mount.mountpoint);
        try {
          // Properties, with a handle held open through the mount.
          const properties = await client.properties();
          expect(properties['Version']).toMatch(/^\d+\.\d+\.\d+$/);
          expect(properties['MountPoint']).toBe(mount.mountpoint);
          expect(properties['WritePool']).toBe('fast');
          const pools = properties['Pools'] as { name: string; topology: string; buckets: { name: string; state: string }[] }[];
          expect(pools.map((pool) => [pool.name, pool.topology, pool.buckets.length])).toEqual([['fast', 'erasure:2+1', 3], ['arc', 'single', 1]]);
          expect(pools[0]?.buckets.every((bucket) => bucket.state === 'ok')).toBe(true);
          expect(properties['CacheLimitBytes']).toBe(384 * 1024 ** 2);
          expect(typeof properties['CacheBytes']).toBe('number');
          expect(typeof properties['DirtyBytes']).toBe('number');
          const { open } = await import('node:fs/promises');
          const handle = await open(file, 'r');
          expect((await client.properties())['OpenFileHandles']).toBeGreaterThanOrEqual(1);
          await handle.close();

          // Introspection is good enough for dbus-next's own proxies.
          const proxyBus = dbus.sessionBus({ busAddress: bus.address });
          try {
            const proxy = await proxyBus.getProxyObject(BUS_NAME, objectPathOf(mount.mountpoint));
            const fs1 = proxy.getInterface(INTERFACE_NAME);
            for (const name of ['Unmount', 'FlushAll', 'FlushInode', 'RewriteFile', 'Stat', 'QueryMetric']) {
              expect(typeof fs1[name], name).toBe('function');
            }
            const mountPoint = await proxy.getInterface('org.freedesktop.DBus.Properties')['Get']?.(INTERFACE_NAME, 'MountPoint');
            expect((mountPoint as dbus.Variant).value).toBe(mount.mountpoint);
          } finally {
            proxyBus.disconnect();
          }

          // FlushInode stores the file; Stat shows where.
          const ino = statSync(file).ino;
          await client.call('FlushInode', BigInt(ino));
          const [layout] = (await client.call('Stat', file)) as [Layout];
          expect(layout.ino).toBe(ino);
          expect(layout.blockCount).toBe(4);
          expect(layout.pools).toEqual(['fast']);
          expect(layout.topologies).toEqual(['erasure:2+1']);
          expect(layout.health).toBe('ok');
          expect(layout.blocks[0]?.shards.map((shard) => shard.health)).toEqual(['ok', 'ok', 'ok']);
          expect((await client.call('Stat', String(ino)))[0]).toEqual(layout);
          await client.call('FlushAll');

          await checkBadArguments(client, bus, mount, { file, ino });

          // Nothing changed: same layout (generations included), same data, still mounted.
          expect((await client.call('Stat', file))[0]).toEqual(layout);
          expect(readFileSync(file).equals(content)).toBe(true);
          expect((await client.properties())['MountPoint']).toBe(mount.mountpoint);
        } finally {
          client.close();
        }
      });
    });
  }, 120_000);

  it('signals ShardError and BucketStateChanged, and Unmount ends the daemon', async () => {
    await withBus('session', async (bus) => {
      await withMount({ pools: POOLS, extraYaml: 'dbus: { bus: session }\n', env: bus.env }, async (mount) => {
        const file = join(mount.mountpoint, 'victim');
        const content = Buffer.alloc(64 * 1024, 3);
        writeFileSync(file, content);
        let client = await connectClient(bus, mount.mountpoint);
        await client.call('FlushAll');
        const [layout] = (await client.call('Stat', file)) as [Layout];
        const shard = layout.blocks[0]?.shards[0] as ShardView;
        client.close();
        // A fresh daemon: nothing of the file is cached, the read must go to the shards.
        await mount.remount();
        client = await connectClient(bus, mount.mountpoint);
        try {
          const shardErrors: unknown[][] = [];
          const bucketChanges: unknown[][] = [];
          await client.onSignal('ShardError', (args) => shardErrors.push(args));
          await client.onSignal('BucketStateChanged', (args) => bucketChanges.push(args));
          const bucketPath = mount.buckets[shard.bucket] as string;
          rmSync(shard.path);
          renameSync(join(bucketPath, 'shmr-bucket'), join(bucketPath, 'label.away'));
          expect(readFileSync(file).equals(content)).toBe(true); // Rebuilt from parity.
          const shardError = await waitFor('ShardError', () => shardErrors[0]);
          expect(shardError.slice(0, 5)).toEqual([layout.ino, 0, shard.bucket, 'missing', shard.path]);
          const failed = await waitFor('BucketStateChanged failed', () => bucketChanges[0]);
          expect(failed.slice(0, 4)).toEqual([shard.bucket, 'fast', 'failed', 'ok']);
          expect(failed[4]).toMatch(/label is gone/);
          const [degraded] = (await client.call('Stat', file)) as [Layout];
          expect(degraded.health).toBe('degraded');
          expect(degraded.blocks[0]?.shards[0]?.health).toBe('unavailable');
          // The drive comes back: the daemon's probe (every 5 s) puts the bucket in service.
          renameSync(join(bucketPath, 'label.away'), join(bucketPath, 'shmr-bucket'));
          const back = await waitFor('BucketStateChanged ok', () => bucketChanges[1], 20_000);
          expect(back.slice(0, 4)).toEqual([shard.bucket, 'fast', 'ok', 'failed']);

          await client.call('Unmount');
        } finally {
          client.close();
        }
        await mount.mountAgain();
        expect(readFileSync(file).equals(content)).toBe(true);
      });
    });
  }, 120_000);
});

async function checkBadArguments(client: ShmrClient, bus: PrivateBus, mount: Mount, target: { file: string; ino: number }): Promise<void> {
  const { file, ino } = target;
  const dir = join(mount.mountpoint, 'dir');
  const link = join(mount.mountpoint, 'link');
  const outside = '/etc/passwd';
  const cases: [string, unknown[], string, RegExp?][] = [
    ['FlushInode', [0n], 'InvalidArguments', /inode: 0 is not between 1/],
    ['FlushInode', [999_999n], 'NoSuchFile', /no inode 999999/],
    ['RewriteFile', ['data.bin', 'arc', '', 0n, 0], 'InvalidArguments', /neither an absolute path nor an inode/],
    ['RewriteFile', ['', 'arc', '', 0n, 0], 'InvalidArguments'],
    ['RewriteFile', [outside, 'arc', '', 0n, 0], 'PathOutsideMount', /outside the mount point/],
    ['RewriteFile', [`${mount.mountpoint}/../x`, 'arc', '', 0n, 0], 'PathOutsideMount'],
    ['RewriteFile', [join(mount.mountpoint, 'missing'), 'arc', '', 0n, 0], 'NoSuchFile'],
    ['RewriteFile', [dir, 'arc', '', 0n, 0], 'IsADirectory', /is a directory/],
    ['RewriteFile', [link, 'arc', '', 0n, 0], 'NotARegularFile'],
    ['RewriteFile', [file, 'nope', '', 0n, 0], 'UnknownPool', /unknown pool "nope" \(pools: fast, arc\)/],
    ['RewriteFile', [file, 'arc', 'raid5', 0n, 0], 'InvalidTopology', /not a topology/],
    ['RewriteFile', [file, 'arc', 'erasure:0+1', 0n, 0], 'InvalidTopology'],
    ['RewriteFile', [file, 'arc', 'erasure:2+1', 0n, 0], 'TopologyTooWide', /needs 3 buckets, pool arc has 1/],
    ['RewriteFile', [file, 'arc', '', 1000n, 0], 'InvalidBlockSize', /power of two/],
    ['RewriteFile', [file, 'arc', '', 512n * 1024n ** 2n, 0], 'InvalidBlockSize'],
    ['RewriteFile', [file, 'arc', '', 2n ** 63n, 0], 'InvalidArguments'],
    ['RewriteFile', [file, 'arc', '', 0n, 100_000], 'InvalidArguments', /parallel/],
    ['RewriteBlock', [0n, 0n, 'arc', ''], 'InvalidArguments'],
    ['RewriteBlock', [BigInt(ino), 99n, 'arc', ''], 'NoSuchBlock', /no stored block 99/],
    ['RewriteBlock', [BigInt(ino), 0n, 'nope', ''], 'UnknownPool'],
    ['RewriteBlock', [BigInt(ino), 0n, 'arc', 'mirror:9'], 'InvalidTopology'],
    ['PurgeTombstone', [0n], 'InvalidArguments'],
    ['PurgeTombstones', [2n ** 62n], 'InvalidArguments'],
    ['GetTask', ['abc'], 'InvalidArguments', /not a task id/],
    ['CancelTask', [''], 'InvalidArguments'],
    ['Scrub', ['nope', true], 'UnknownPool'],
    ['Stat', [outside], 'PathOutsideMount'],
    ['Stat', [dir], 'IsADirectory'],
    ['Stat', ['42x'], 'InvalidArguments'],
    ['QueryMetric', ['bad name', [], 'rate', 1], 'InvalidArguments', /not a metric name/],
    ['QueryMetric', ['shmr_reads', [['pool', '<>', 'fast']], 'rate', 1], 'InvalidArguments', /operator/],
    ['QueryMetric', ['shmr_reads', [], 'rate', 0], 'InvalidArguments', /intervals/],
  ];
  for (const [method, args, name, message] of cases) {
    await expectError(client.call(method, ...args), name, message);
  }
  // Wrong D-Bus signatures, for methods with and without arguments.
  for (const [method, signature, body] of [
    ['FlushInode', 's', ['1']], ['Unmount', 's', ['now']], ['FlushAll', 'u', [1]], ['RewriteFile', 'ss', [file, 'arc']],
    ['ListTasks', 'u', [1]], ['GetTombstones', 's', ['x']], ['Stat', 't', [1n]],
  ] as const) {
    await expectError(rawCall(client, bus.address, method, signature, [...body]), 'InvalidArguments', /takes \(/);
  }
  // QueryMetric evaluates the daemon's metrics engine; an unknown name is a bad argument.
  const [cacheBytes] = await client.call('QueryMetric', 'cache_bytes', [], 'last', 1);
  expect(typeof cacheBytes).toBe('number');
  await expectError(client.call('QueryMetric', 'shmr_no_such_metric', [['pool', '=', 'fast']], 'rate', 1),
    'InvalidArguments', /unknown metric "shmr_no_such_metric"/);
}
