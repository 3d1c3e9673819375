/**
 * Volumes over NBD, end to end, with independent clients from Debian's packages: nbdinfo,
 * nbdcopy and nbdsh (libnbd), qemu-img and qemu-io (qemu-utils), and a raw-socket fuzzer.
 *
 * Goal: the daemon's NBD server interoperates (handshake, list, info, reads and writes at
 * random offsets, flush, trim, zeroes, block status, many requests in flight, several
 * clients), keeps FLUSH-acknowledged data across kill -9, refuses bad input with protocol
 * errors without going down or damaging volumes, and `shmr volume` manages volumes.
 *
 * Method: every test mounts a fresh filesystem with withMount; the daemon serves NBD on its
 * default Unix socket, <metadata_dir>/nbd.sock, inside the test's temp root. Data written is
 * derived from fixed seeds, so what is read back is compared byte for byte (or by SHA-256).
 * nbdsh runs with /usr/bin first on PATH: it is `python3 -m nbd`, and the module lives in
 * Debian's python3 (python3-libnbd), not in a python3 that PATH may find first.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync, closeSync, createReadStream, existsSync, openSync, readdirSync, readSync, statSync,
  writeFileSync,
} from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runCli, sleep, withMount, type Mount } from '../helpers/mount.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const TOOL_ENV = { ...process.env, PATH: `/usr/bin:/usr/sbin:${process.env['PATH'] ?? ''}` };
const FUZZ_MS = 5000;

function socketOf(mount: Mount): string {
  return join(mount.root, 'meta', 'nbd.sock');
}

function uriOf(mount: Mount, name: string): string {
  return `nbd+unix:///${name}?socket=${socketOf(mount)}`;
}

/** Runs a tool; rejects with its stderr when it fails. */
async function tool(
  command: string,
  args: string[],
  options: { timeoutMs?: number } = {},
): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, {
      env: TOOL_ENV, maxBuffer: 64 * MiB, timeout: options.timeoutMs ?? 120_000,
    });
    return stdout;
  } catch (error) {
    const failure = error as { stderr?: string; stdout?: string; message: string };
    const output = `${failure.stdout ?? ''}\n${failure.stderr ?? ''}`;
    throw new Error(`${command} ${args.join(' ')} failed: ${failure.message}\n${output}`);
  }
}

/** Runs a Python script in nbdsh (the handle `h`), connected to `uri` unless `uri` is undefined. */
function nbdsh(
  uri: string | undefined,
  script: string,
  options: { baseAllocation?: boolean } = {},
): Promise<string> {
  const args = options.baseAllocation === true ? ['--base-allocation'] : [];
  if (uri !== undefined) args.push('-u', uri);
  return tool('nbdsh', [...args, '-c', script]);
}

async function createVolume(
  mount: Mount,
  name: string,
  size: string,
  extra: string[] = [],
): Promise<void> {
  const args = ['volume', 'create', name, '--size', size, ...extra];
  const result = await runCli([...args, '--config', mount.configPath]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(path)) hash.update(piece as Buffer);
  return hash.digest('hex');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** SHA-256 of a whole volume, read with nbdcopy. */
async function volumeDigest(mount: Mount, name: string): Promise<string> {
  const out = join(mount.root, `${name}.out`);
  await tool('nbdcopy', [uriOf(mount, name), out]);
  return sha256File(out);
}

describe('shmr volume CLI', () => {
  it('creates, lists and removes volumes, with clear errors', async () => {
    const pools = {
      ssd: { topology: 'single', blockSize: '1MiB', buckets: 1 },
      archive: { topology: 'mirror:2', blockSize: '256KiB', buckets: 2 },
    };
    await withMount({ pools, writePool: 'ssd' }, async (mount) => {
      const cli = (args: string[]) => runCli(['volume', ...args, '--config', mount.configPath]);
      const empty = await cli(['list']);
      expect(empty.stdout).toContain('no volumes');
      const placement = ['--pool', 'ssd', '--topology', 'single', '--block-size', '1MiB'];
      await createVolume(mount, 'vm1', '64MiB', placement);
      await createVolume(mount, 'db_2', '1GiB');
      const list = JSON.parse((await cli(['list', '--json'])).stdout) as {
        socket: string; isServing: boolean;
        volumes: { name: string; sizeBytes: number; isReadOnly: boolean; connections: number }[];
      };
      expect(list.socket).toBe(socketOf(mount));
      expect(list.isServing).toBe(true);
      expect(list.volumes.map((volume) =>
        [volume.name, volume.sizeBytes, volume.isReadOnly, volume.connections]))
        .toEqual([['vm1', 64 * MiB, false, 0], ['db_2', 1024 * MiB, false, 0]]);
      const table = (await cli(['list'])).stdout;
      expect(table).toMatch(/vm1\s+64MiB\s+0B\s+rw/);
      expect(table).toContain(`nbd+unix:///vm1?socket=${socketOf(mount)}`);
      // The volume is a file of the filesystem.
      const file = statSync(join(mount.mountpoint, '.volumes', 'vm1'));
      expect(file.size).toBe(64 * MiB);
      expect(file.mode & 0o777).toBe(0o600);
      const refusals: [string[], RegExp][] = [
        [['create', 'vm1', '--size', '1MiB'], /EEXIST/],
        [['create', 'x', '--size', '1000'], /multiple of 4096/],
        [['create', 'x', '--size', 'lots'], /not a size/],
        [['create', '../x', '--size', '1MiB'], /not a volume name/],
        [['create', 'x', '--size', '1MiB', '--pool', 'archive'], /write pool until tiering/],
        [['create', 'x', '--size', '1MiB', '--pool', 'nope'], /unknown pool "nope"/],
        [['create', 'x', '--size', '1MiB', '--topology', 'mirror:2'], /tiering/],
        [['create', 'x', '--size', '1MiB', '--topology', 'raid5'], /not a topology/],
        [['create', 'x', '--size', '1MiB', '--block-size', '3MiB'], /power of two/],
        [['create', 'x'], /--size/],
        [['rm', 'nope'], /no volume named "nope"/],
        [['frobnicate'], /usage/],
      ];
      for (const [args, message] of refusals) {
        const result = await cli(args);
        expect({ args, code: result.code === 0 ? 0 : 'failed' }).toEqual({ args, code: 'failed' });
        expect(result.stderr).toMatch(message);
      }
      expect((await cli(['rm', 'vm1'])).code).toBe(0);
      const after = JSON.parse((await cli(['list', '--json'])).stdout) as {
        volumes: { name: string }[];
      };
      expect(after.volumes.map((volume) => volume.name)).toEqual(['db_2']);
      // Through the mount (readdir is never cached by the kernel; a stat may be, until
      // fuse.entry_timeout, since the daemon changed the namespace behind the kernel's back).
      expect(readdirSync(join(mount.mountpoint, '.volumes'))).toEqual(['db_2']);
    });
  });

  it('refuses to remove a volume in use (EBUSY), then removes it and frees blocks', async () => {
    await withMount({}, async (mount) => {
      await createVolume(mount, 'busy', '16MiB');
      await nbdsh(uriOf(mount, 'busy'), 'h.pwrite(bytearray(b"x" * (16 << 20)), 0); h.flush()');
      const hold = 'import time; print("ready", flush=True); time.sleep(30)';
      const holder = spawn('nbdsh', ['-u', uriOf(mount, 'busy'), '-c', hold], { env: TOOL_ENV });
      try {
        await new Promise<void>((resolve, reject) => {
          holder.stdout.on('data', (chunk: Buffer) => {
            if (chunk.toString().includes('ready')) resolve();
          });
          holder.once('exit', (code) => reject(new Error(`nbdsh exited ${code}`)));
        });
        const listing = await runCli(['volume', 'list', '--json', '--config', mount.configPath]);
        const list = JSON.parse(listing.stdout) as {
          volumes: { name: string; connections: number; storedBytes: number }[];
        };
        const expected = { name: 'busy', connections: 1, storedBytes: 16 * MiB };
        expect(list.volumes[0]).toMatchObject(expected);
        const refused = await runCli(['volume', 'rm', 'busy', '--config', mount.configPath]);
        expect(refused.code).toBe(1);
        expect(refused.stderr).toMatch(/EBUSY.*1 NBD connection/);
      } finally {
        holder.kill('SIGKILL');
      }
      if (holder.exitCode === null && holder.signalCode === null) {
        await new Promise((resolve) => holder.once('exit', resolve));
      }
      let removed = await runCli(['volume', 'rm', 'busy', '--config', mount.configPath]);
      for (let attempt = 0; attempt < 50 && removed.code !== 0; attempt++) {
        await sleep(100);
        removed = await runCli(['volume', 'rm', 'busy', '--config', mount.configPath]);
      }
      expect(removed.code).toBe(0);
      const statusRun = await runCli(['status', '--json', '--config', mount.configPath]);
      const status = JSON.parse(statusRun.stdout) as {
        pools: { blocks: number }[];
      };
      expect(status.pools.reduce((sum, pool) => sum + pool.blocks, 0)).toBe(0);
    });
  });

  it('attach fails clearly when the nbd kernel module is unavailable', async () => {
    await withMount({}, async (mount) => {
      await createVolume(mount, 'vm', '16MiB');
      const hasDriver = existsSync('/sys/module/nbd') || existsSync('/sys/block/nbd0');
      const attach = await runCli(['volume', 'attach', 'vm', '--config', mount.configPath]);
      if (hasDriver) {
        // A kernel with nbd (the VM tests): attach and detach for real.
        expect(attach.code).toBe(0);
        const device = attach.stdout.trim();
        expect(device).toMatch(/^\/dev\/nbd\d+$/);
        const detached = await runCli(['volume', 'detach', device, '--config', mount.configPath]);
        expect(detached.code).toBe(0);
        return;
      }
      expect(attach.code).toBe(1);
      expect(attach.stderr).toMatch(/nbd kernel module is not available/);
      const missing = await runCli(['volume', 'attach', 'nope', '--config', mount.configPath]);
      expect(missing.stderr).toMatch(/no volume named "nope"/);
      const detach = await runCli(['volume', 'detach', '/dev/sda', '--config', mount.configPath]);
      expect(detach.stderr).toMatch(/not an NBD device/);
    });
  });
});

describe('NBD interoperability', () => {
  it('handshake, list and info with nbdinfo and qemu-img', async () => {
    await withMount({}, async (mount) => {
      await createVolume(mount, 'alpha', '64MiB');
      await createVolume(mount, 'beta', '8MiB');
      const server = `nbd+unix:///?socket=${socketOf(mount)}`;
      const listed = JSON.parse(await tool('nbdinfo', ['--list', '--json', server])) as {
        protocol: string; exports: { 'export-name': string; 'export-size': number }[];
      };
      expect(listed.protocol).toBe('newstyle-fixed');
      expect(listed.exports.map((entry) => [entry['export-name'], entry['export-size']]))
        .toEqual([['alpha', 64 * MiB], ['beta', 8 * MiB]]);
      const info = JSON.parse(await tool('nbdinfo', ['--json', uriOf(mount, 'alpha')])) as {
        exports: Record<string, unknown>[];
      };
      expect(info.exports[0]).toMatchObject({
        'export-name': 'alpha', 'export-size': 64 * MiB, is_read_only: false, can_flush: true,
        can_fua: true, can_trim: true, can_zero: true, can_multi_conn: true, can_fast_zero: true,
        block_size_minimum: 1, block_size_preferred: 4 * MiB, block_size_maximum: 32 * MiB,
      });
      expect(JSON.stringify(info)).toContain('base:allocation');
      const qemuInfo = await tool('qemu-img', ['info', '--output=json', uriOf(mount, 'alpha')]);
      const qemu = JSON.parse(qemuInfo) as { 'virtual-size': number };
      expect(qemu['virtual-size']).toBe(64 * MiB);
      // NBD_REP_ERR_UNKNOWN, which libnbd reports as ENOENT.
      await expect(tool('nbdinfo', [uriOf(mount, 'nope')]))
        .rejects.toThrow(/No such file or directory for export: nope/);
    });
  });

  it('qemu-io: random patterns read back; discard and write-zeroes read zeroes', async () => {
    await withMount({}, async (mount) => {
      // 1 MiB blocks: the discards and zeroes below are laid out on that grid.
      await createVolume(mount, 'vm', '64MiB', ['--block-size', '1MiB']);
      let seed = 20240601;
      const random = (limit: number) => {
        seed = (seed * 1103515245 + 12345) >>> 0;
        return seed % limit;
      };
      const writes: [number, number, number][] = [];
      const commands: string[] = [];
      for (let index = 0; index < 40; index++) {
        // Distinct 2 MiB slots, unaligned inside them: no two writes overlap.
        const offset = index * 1536 * 1024 + random(512 * 1024);
        const length = 1 + random(1024 * 1024);
        const pattern = 1 + random(254);
        writes.push([offset, length, pattern]);
        commands.push('-c', `write -P ${pattern} ${offset} ${length}`);
      }
      commands.push('-c', 'flush');
      await tool('qemu-io', ['-f', 'raw', ...commands, uriOf(mount, 'vm')]);
      const reads = writes.flatMap(([offset, length, pattern]) =>
        ['-c', `read -P ${pattern} ${offset} ${length}`]);
      const verified = await tool('qemu-io', ['-f', 'raw', ...reads, uriOf(mount, 'vm')]);
      expect(verified).not.toMatch(/Pattern verification failed|error/i);
      expect(verified.match(/^read /gm)?.length).toBe(writes.length);
      // discard (TRIM) of whole blocks, and write-zeroes with and without unmap.
      const commandsOf = (lines: string[]) => lines.flatMap((line) => ['-c', line]);
      await tool('qemu-io', ['-f', 'raw', ...commandsOf(['write -P 170 0 8M', 'discard 1M 2M',
        'write -z 4M 1M', 'write -z -u 6M 1536k', 'flush']), uriOf(mount, 'vm')]);
      const after = await tool('qemu-io', ['-f', 'raw', ...commandsOf(['read -P 170 0 1M',
        'read -P 0 1M 2M', 'read -P 170 3M 1M', 'read -P 0 4M 1M', 'read -P 170 5M 1M',
        'read -P 0 6M 1536k', 'read -P 170 7680k 512k']), uriOf(mount, 'vm')]);
      expect(after).not.toMatch(/Pattern verification failed|error/i);
      // qemu-img convert in and out.
      const image = join(mount.root, 'image.raw');
      writeFileSync(image, randomBytes(8 * MiB));
      const vm = uriOf(mount, 'vm');
      await tool('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', image, vm]);
      const back = join(mount.root, 'back.raw');
      await tool('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uriOf(mount, 'vm'), back]);
      const head = Buffer.alloc(8 * MiB);
      const fd = openSync(back, 'r');
      readSync(fd, head, 0, head.byteLength, 0);
      closeSync(fd);
      expect(createHash('sha256').update(head).digest('hex')).toBe(await sha256File(image));
    });
  });

  it('nbdsh: requests in flight, block status holes, errors for bad requests', async () => {
    await withMount({}, async (mount) => {
      // 1 MiB blocks: the holes below are laid out on that grid.
      await createVolume(mount, 'vm', '64MiB', ['--block-size', '1MiB']);
      const script = `
import random
random.seed(11)
size = h.get_size()
assert size == 64 << 20, size
assert h.can_multi_conn() and h.can_flush() and h.can_fua()
assert h.can_trim() and h.can_zero() and h.can_df()
model = bytearray(size)
slots = random.sample(range(size // 65536), 200)
pending = []
for i, slot in enumerate(slots):
    data = bytearray(random.randbytes(random.randrange(1, 65536)))
    offset = slot * 65536 + random.randrange(0, 65536 - len(data) + 1)
    model[offset:offset + len(data)] = data
    flags = nbd.CMD_FLAG_FUA if i % 40 == 0 else 0
    pending.append(h.aio_pwrite(nbd.Buffer.from_bytearray(data), offset, flags=flags))
assert h.aio_in_flight() > 1
while h.aio_in_flight() > 0:
    h.poll(-1)
for cookie in pending:
    assert h.aio_command_completed(cookie)
reads = []
for slot in slots:
    buffer = nbd.Buffer(65536)
    reads.append((slot, buffer, h.aio_pread(buffer, slot * 65536)))
completed = []
while h.aio_in_flight() > 0:
    h.poll(-1)
for slot, buffer, cookie in reads:
    assert h.aio_command_completed(cookie)
    assert buffer.to_bytearray() == model[slot * 65536:(slot + 1) * 65536], slot
h.flush()
# Whole blocks trimmed become holes; a partly written block is data.
h.pwrite(bytearray(b'\\x5a' * (8 << 20)), 32 << 20)
h.flush()
h.trim(4 << 20, 33 << 20)
h.zero(1 << 20, 38 << 20)
h.zero(1 << 20, 39 << 20, nbd.CMD_FLAG_NO_HOLE)
extents = []
def collect(context, offset, entries, error):
    if context == 'base:allocation':
        extents.extend(entries)
h.block_status(8 << 20, 32 << 20, collect)
spans = [(extents[i], extents[i + 1]) for i in range(0, len(extents), 2)]
assert sum(length for length, _ in spans) == 8 << 20, spans
assert spans[0] == (1 << 20, 0), spans          # block 32: still data
assert spans[1] == (4 << 20, 3), spans          # blocks 33-36: holes
assert spans[2] == (1 << 20, 0), spans          # block 37: data
assert spans[3] == (1 << 20, 3), spans          # block 38: zeroed, may punch
assert spans[4] == (1 << 20, 0), spans          # block 39: zeroed, NO_HOLE
assert h.pread(4 << 20, 33 << 20) == bytearray(4 << 20)
assert h.pread(2 << 20, 38 << 20) == bytearray(2 << 20)
assert h.pread(1 << 20, 37 << 20) == bytearray(b'\\x5a' * (1 << 20))
# Out of range and oversized requests, sent as-is (strict mode off), get the protocol's errors.
h.set_strict_mode(0)
def errno_of(call):
    try:
        call()
    except nbd.Error as error:
        return error.errno
    return None
assert errno_of(lambda: h.pread(4096, size - 2048)) == 'EINVAL'
assert errno_of(lambda: h.pwrite(bytearray(4096), size - 2048)) == 'ENOSPC'
assert errno_of(lambda: h.zero(4096, size)) == 'ENOSPC'
assert errno_of(lambda: h.trim(4096, size)) == 'EINVAL'
assert errno_of(lambda: h.pread((32 << 20) + 1, 0)) in ('EINVAL', 'EOVERFLOW')
fast_no_hole = nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE
assert errno_of(lambda: h.zero(4096, 0, fast_no_hole)) in ('ENOTSUP', 'EOPNOTSUPP')
assert h.pread(512, 0) == model[0:512]
print('ok')
`;
      expect((await nbdsh(uriOf(mount, 'vm'), script, { baseAllocation: true })).trim()).toBe('ok');
    });
  });

  it('nbdcopy: 256 MiB in and out, SHA-256 equal, through a cache smaller than that', async () => {
    await withMount({ extraYaml: 'cache: { memory_limit: 64MiB }\n' }, async (mount) => {
      await createVolume(mount, 'big', '256MiB');
      const source = join(mount.root, 'source.img');
      const chunks: Buffer[] = [];
      for (let index = 0; index < 256; index++) {
        chunks.push(index % 16 === 3 ? Buffer.alloc(MiB) : randomBytes(MiB));
      }
      writeFileSync(source, Buffer.concat(chunks));
      const digest = await sha256File(source);
      await tool('nbdcopy', ['--flush', source, uriOf(mount, 'big')]);
      expect(await volumeDigest(mount, 'big')).toBe(digest);
      // Again after a remount: read from the buckets, not the cache.
      await mount.remount();
      expect(await volumeDigest(mount, 'big')).toBe(digest);
      const fsck = await runCli(['fsck', '--json', '--config', mount.configPath]);
      expect(fsck.code).toBe(0);
    });
  });

  it('serves several clients at once, and a loopback TCP listener', async () => {
    const port = await freePort();
    await withMount({ extraYaml: `nbd: { listen: "127.0.0.1:${port}" }\n` }, async (mount) => {
      await createVolume(mount, 'shared', '64MiB');
      const log = await mount.log();
      expect(log).toContain(`127.0.0.1:${port}`);
      const clients = Array.from({ length: 6 }, (_, index) => {
        const uri = index % 2 === 0 ? uriOf(mount, 'shared') : `nbd://127.0.0.1:${port}/shared`;
        const offset = index * 8 * MiB;
        const pattern = index + 1;
        return tool('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} ${offset} 8M`,
          '-c', 'flush', '-c', `read -P ${pattern} ${offset} 8M`, uri]);
      });
      const outputs = await Promise.all(clients);
      const failure = /Pattern verification failed|error/i;
      for (const output of outputs) expect(output).not.toMatch(failure);
      const checks = Array.from({ length: 6 }, (_, index) =>
        ['-c', `read -P ${index + 1} ${index * 8 * MiB} 8M`]).flat();
      const tcp = `nbd://127.0.0.1:${port}/shared`;
      expect(await tool('qemu-io', ['-f', 'raw', ...checks, tcp])).not.toMatch(failure);
    });
  });

  it('serves a volume without the owner write bit read-only', async () => {
    await withMount({}, async (mount) => {
      await createVolume(mount, 'golden', '16MiB');
      const golden = uriOf(mount, 'golden');
      await tool('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 16M', '-c', 'flush', golden]);
      chmodSync(join(mount.mountpoint, '.volumes', 'golden'), 0o400);
      const info = JSON.parse(await tool('nbdinfo', ['--json', golden])) as {
        exports: Record<string, unknown>[];
      };
      const readOnly = { is_read_only: true, can_trim: false, can_zero: false };
      expect(info.exports[0]).toMatchObject(readOnly);
      const script = `
h.set_strict_mode(0)
try:
    h.pwrite(bytearray(4096), 0)
    raise SystemExit('write succeeded')
except nbd.Error as error:
    assert error.errno == 'EPERM', error
assert h.pread(4096, 0) == bytearray(b'\\x07' * 4096)
print('ok')
`;
      expect((await nbdsh(uriOf(mount, 'golden'), script)).trim()).toBe('ok');
      const list = (await runCli(['volume', 'list', '--config', mount.configPath])).stdout;
      expect(list).toMatch(/golden\s+16MiB\s+16MiB\s+ro/);
    });
  });
});

describe('NBD durability', () => {
  it('keeps FLUSH-acknowledged and FUA writes across kill -9 of the daemon', async () => {
    await withMount({}, async (mount) => {
      await createVolume(mount, 'durable', '64MiB');
      const write = `
import random
random.seed(99)
for i in range(24):
    h.pwrite(bytearray(random.randbytes(700_000)), i * (2 << 20) + i * 4097)
h.flush()
for i in range(24, 28):
    h.pwrite(bytearray(random.randbytes(700_000)), i * (2 << 20) + i * 4097, nbd.CMD_FLAG_FUA)
# Not flushed: may or may not survive, and must not damage the rest.
h.pwrite(bytearray(b'\\xee' * (3 << 20)), 60 << 20)
print('written')
`;
      expect((await nbdsh(uriOf(mount, 'durable'), write)).trim()).toBe('written');
      await mount.killAndRemount();
      const verify = `
import random
random.seed(99)
for i in range(28):
    expected = random.randbytes(700_000)
    offset = i * (2 << 20) + i * 4097
    assert h.pread(700_000, offset) == expected, i
tail = h.pread(3 << 20, 60 << 20)
assert set(tail) <= {0, 0xee}, 'bytes never written'
print('ok')
`;
      expect((await nbdsh(uriOf(mount, 'durable'), verify)).trim()).toBe('ok');
      const fsck = await runCli(['fsck', '--json', '--config', mount.configPath]);
      expect(fsck.code).toBe(0);
    });
  });
});

describe('NBD fuzz', () => {
  it(`stays up through ${FUZZ_MS} ms of malformed input, volumes consistent`, async () => {
    await withMount({}, async (mount) => {
      await createVolume(mount, 'fuzz', '16MiB');
      await createVolume(mount, 'keep', '16MiB');
      const keep = ['-c', 'write -P 66 0 16M', '-c', 'flush', uriOf(mount, 'keep')];
      await tool('qemu-io', ['-f', 'raw', ...keep]);
      const keepDigest = await volumeDigest(mount, 'keep');
      const deadline = Date.now() + FUZZ_MS;
      let sessions = 0;
      while (Date.now() < deadline) {
        await fuzzSession(socketOf(mount), sessions);
        sessions += 1;
      }
      expect(sessions).toBeGreaterThan(20);
      expect(mount.daemon.exitCode).toBeNull();
      expect(await volumeDigest(mount, 'keep')).toBe(keepDigest);
      // The fuzzed volume is whole: every byte readable, metadata consistent.
      await volumeDigest(mount, 'fuzz');
      const fsck = await runCli(['fsck', '--json', '--config', mount.configPath]);
      expect(fsck.code).toBe(0);
      const log = await mount.log();
      expect(log).not.toMatch(/bug in command|connection failed|fatal/);
    });
  });
});

// ---- a small raw-socket fuzzer (the unit tests have the thorough one) ----

function randomBelow(limit: number): number {
  return Math.floor(Math.random() * limit);
}

function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value >>> 0);
  return buffer;
}

function option(code: number, data: Buffer): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(0x49484156454f5054n, 0);
  header.writeUInt32BE(code >>> 0, 8);
  header.writeUInt32BE(data.byteLength, 12);
  return Buffer.concat([header, data]);
}

function goOption(name: string): Buffer {
  const nameBytes = Buffer.from(name);
  const infos = Buffer.from([0, 1, 0, 3]);
  return option(7, Buffer.concat([u32(nameBytes.byteLength), nameBytes, infos]));
}

function request(type: number, flags: number, offset: number, length: number): Buffer {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(0x25609513, 0);
  header.writeUInt16BE(flags, 4);
  header.writeUInt16BE(type, 6);
  header.writeBigUInt64BE(BigInt(Math.floor(Math.random() * 2 ** 32)), 8);
  header.writeBigUInt64BE(BigInt(offset), 16);
  header.writeUInt32BE(length >>> 0, 24);
  return header;
}

function mutate(bytes: Buffer): Buffer {
  if (Math.random() < 0.7) return bytes;
  const copy = Buffer.from(bytes);
  copy[Math.floor(Math.random() * copy.byteLength)] = Math.floor(Math.random() * 256);
  return Math.random() < 0.2 ? copy.subarray(0, Math.floor(Math.random() * copy.byteLength)) : copy;
}

async function fuzzSession(path: string, index: number): Promise<void> {
  const socket = createConnection(path);
  socket.on('error', () => undefined);
  socket.on('data', () => undefined);
  const closed = new Promise((resolve) => socket.once('close', resolve));
  await new Promise((resolve) => socket.once('connect', resolve));
  const pieces: Buffer[] = [];
  if (index % 5 === 0) {
    pieces.push(randomBytes(Math.floor(Math.random() * 300)));
  } else {
    pieces.push(u32(index % 7 === 0 ? Math.floor(Math.random() * 2 ** 32) : 3));
    for (let count = Math.floor(Math.random() * 4); count > 0; count--) {
      pieces.push(mutate(option(randomBelow(12), randomBytes(randomBelow(24)))));
    }
    pieces.push(option(8, Buffer.alloc(0)), mutate(goOption('fuzz')));
    for (let count = Math.floor(Math.random() * 30); count > 0; count--) {
      const type = Math.random() < 0.9 ? randomBelow(8) : randomBelow(65536);
      const flags = Math.random() < 0.8 ? randomBelow(2) : randomBelow(65536);
      const offset = Math.random() < 0.8 ? randomBelow(16 * MiB) : randomBelow(2 ** 53);
      const length = Math.random() < 0.8 ? randomBelow(262144) : randomBelow(2 ** 32);
      pieces.push(mutate(request(type, flags, offset, length)));
      if (type === 1 && length <= 262144) pieces.push(randomBytes(length));
    }
  }
  socket.write(Buffer.concat(pieces));
  await sleep(Math.random() < 0.5 ? 0 : 30);
  socket.destroy();
  await closed;
}
