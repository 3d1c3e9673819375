/**
 * Reads answered by the binding itself (fuse/fast-reads.ts, native/fuse3/fast_read.c): small
 * reads of a block load it into the block cache, the block is registered with the binding, and
 * later reads inside it never reach the JS read path. What must hold: every read returns what
 * was last written, whatever changed the file in between (writes through another descriptor,
 * buffered writes, copy_file_range, truncation down and up, hole punching, an extension past
 * EOF, eviction of the block under a small cache), at block boundaries and at EOF, with several
 * readers at once; and the fast path is really taken (its reads show in the read count but not
 * in the latency histogram, which only the JS path feeds).
 * Method: a real mount; a Python driver reads with O_DIRECT (every read reaches the daemon) and
 * checks each answer against a model of the file that it updates with every change it makes.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { sleep, withMount, type Mount } from '../helpers/mount.js';

const run = promisify(execFile);
const MIB = 1024 * 1024;
const PAGE = 4096;

/**
 * The driver: argv = file, model file (its expected bytes), JSON list of steps, seed. Steps:
 * ["warm", n] n random 4 KiB reads (loads and registers blocks), ["random", n, writeShare]
 * random reads of 4 KiB-64 KiB (some crossing blocks) mixed with 4 KiB O_DIRECT writes through a
 * second descriptor, ["read", offset, length], ["write", offset, length] (O_DIRECT, page
 * aligned), ["buffered", offset, length] (plain write + fsync through a third descriptor),
 * ["truncate", size], ["punch", offset, length], ["copy", offset, length] (copy_file_range from
 * a scratch file), ["readall"] every page twice. Prints {"bad": [...], "reads": n}.
 */
const DRIVER = String.raw`
import ctypes, json, mmap, os, random, sys
path, model_path, steps, seed = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed)
model = bytearray(open(model_path, 'rb').read())
libc = ctypes.CDLL(None, use_errno=True)
rfd = os.open(path, os.O_RDONLY | os.O_DIRECT)
wfd = os.open(path, os.O_RDWR | os.O_DIRECT)
bfd = os.open(path, os.O_RDWR)
scratch = path + '.src'
rbuf = mmap.mmap(-1, 1 << 20)
wbuf = mmap.mmap(-1, 1 << 20)
bad, reads = [], 0
def read(off, length):
    global reads
    n = os.preadv(rfd, [memoryview(rbuf)[:length]], off)
    reads += 1
    if rbuf[:n] != bytes(model[off:off + length]):
        bad.append([off, length, n, len(model)])
def set_bytes(off, data):
    if off > len(model): model.extend(bytes(off - len(model)))
    model[off:off + len(data)] = data
def write(off, length):
    data = os.urandom(length)
    wbuf[:length] = data
    assert os.pwritev(wfd, [memoryview(wbuf)[:length]], off) == length
    set_bytes(off, data)
def pages(): return max(1, len(model) // 4096)
for step in steps:
    kind = step[0]
    if kind == 'warm':
        for _ in range(step[1]): read(rnd.randrange(pages()) * 4096, 4096)
    elif kind == 'random':
        for _ in range(step[1]):
            off = rnd.randrange(pages()) * 4096
            if rnd.random() < step[2]: write(off, 4096)
            read(rnd.randrange(pages()) * 4096, rnd.choice([4096, 4096, 8192, 65536]))
    elif kind == 'read': read(step[1], step[2])
    elif kind == 'write': write(step[1], step[2])
    elif kind == 'buffered':
        data = os.urandom(step[2])
        assert os.pwrite(bfd, data, step[1]) == step[2]
        os.fsync(bfd)
        set_bytes(step[1], data)
    elif kind == 'truncate':
        os.ftruncate(wfd, step[1])
        if step[1] < len(model): del model[step[1]:]
        else: model.extend(bytes(step[1] - len(model)))
    elif kind == 'punch':
        if libc.fallocate(wfd, 3, ctypes.c_long(step[1]), ctypes.c_long(step[2])) != 0:
            raise OSError(ctypes.get_errno(), 'fallocate')
        end = min(len(model), step[1] + step[2])
        model[step[1]:end] = bytes(max(0, end - step[1]))
    elif kind == 'copy':
        data = os.urandom(step[2])
        with open(scratch, 'wb') as f: f.write(data)
        sfd = os.open(scratch, os.O_RDONLY)
        done = 0
        while done < step[2]:
            done += os.copy_file_range(sfd, bfd, step[2] - done, done, step[1] + done)
        os.close(sfd)
        os.fsync(bfd)
        set_bytes(step[1], data)
    elif kind == 'readall':
        for off in range(0, len(model), 4096):
            read(off, 4096)
            read(off, 4096)
    else:
        raise ValueError(kind)
if os.fstat(rfd).st_size != len(model): bad.append(['size', os.fstat(rfd).st_size, len(model)])
print(json.dumps({'bad': bad[:20], 'badCount': len(bad), 'reads': reads}))
`;

type Step = (string | number)[];

interface DriverResult {
  readonly bad: unknown[];
  readonly badCount: number;
  readonly reads: number;
}

/** Writes `content` as `name` in the mount and as its model beside the mount. */
async function writeWithModel(mount: Mount, name: string, content: Buffer): Promise<{ path: string; model: string }> {
  const path = join(mount.mountpoint, name);
  const model = join(mount.root, `${name}.model`);
  await writeFile(path, content);
  await writeFile(model, content);
  return { path, model };
}

/** writeWithModel, then the driver's steps on it. */
async function drive(mount: Mount, name: string, content: Buffer, steps: Step[], seed = 1): Promise<DriverResult> {
  const { path, model } = await writeWithModel(mount, name, content);
  return runDriver(path, model, steps, seed);
}

async function runDriver(path: string, model: string, steps: Step[], seed: number): Promise<DriverResult> {
  const { stdout } = await run('python3', ['-c', DRIVER, path, model, JSON.stringify(steps), String(seed)], {
    timeout: 120_000, maxBuffer: 16 * MIB,
  });
  return JSON.parse(stdout.trim()) as DriverResult;
}

/** A series of the mount's _stat file `file`, first number after the name. */
async function statValue(mount: Mount, file: string, series: string): Promise<number> {
  const text = await readFile(join(mount.mountpoint, '_stat', file), 'utf8');
  const line = text.split('\n').find((row) => row.startsWith(`${series} `));
  if (line === undefined) throw new Error(`_stat/${file} has no ${series}: ${text}`);
  return Number(line.split(/\s+/)[1]);
}

/** Reads counted in all (JS and native) and reads timed (the JS path only). */
async function readCounts(mount: Mount): Promise<{ all: number; timed: number }> {
  return {
    all: await statValue(mount, 'fuse_operations_total', 'fuse_operations_total{op="read"}'),
    timed: await statValue(mount, 'fuse_operation_duration_seconds', 'fuse_operation_duration_seconds{op="read"}'),
  };
}

const FAST_YAML = 'cache: { flush_interval: 200ms }\n';

describe('reads answered by the binding from cached blocks', () => {
  it('takes the fast path for repeated reads, and is exact at block boundaries and EOF', async () => {
    await withMount({ extraYaml: FAST_YAML }, async (mount) => {
      const size = 3 * MIB + 12345;
      const reads: Step[] = [['warm', 400]];
      for (const block of [1, 2, 3]) {
        const start = block * MIB;
        reads.push(['read', start - PAGE, PAGE], ['read', start - PAGE, 2 * PAGE], ['read', start, PAGE],
          ['read', start - 512, 1024], ['read', start + 100, 65536]);
      }
      reads.push(['read', size - 100, PAGE], ['read', size - PAGE, 65536], ['read', 3 * MIB, 65536],
        ['read', size, PAGE], ['read', size + 5 * PAGE, PAGE], ['readall']);
      const before = await readCounts(mount);
      const result = await drive(mount, 'f', randomBytes(size), reads);
      expect(result.bad).toEqual([]);
      await sleep(600);
      const after = await readCounts(mount);
      const all = after.all - before.all;
      const viaJs = after.timed - before.timed;
      // Every read counted once; most of them never reached the JS read path.
      expect(all).toBeGreaterThanOrEqual(result.reads - 4);
      expect(all - viaJs).toBeGreaterThan(result.reads / 2);
    });
  }, 180_000);

  it('returns what was last written after writes, buffered writes, copies, truncation, punching and extension', async () => {
    await withMount({ extraYaml: FAST_YAML }, async (mount) => {
      const size = 6 * MIB;
      const steps: Step[] = [
        ['warm', 600], ['random', 1500, 0.1], ['warm', 300],
        ['buffered', MIB + 3 * PAGE, 100], ['read', MIB, 65536], ['buffered', 2 * MIB - 50, 100], ['random', 300, 0],
        ['copy', 3 * MIB - 2 * PAGE, 5 * PAGE], ['read', 3 * MIB - 2 * PAGE, 65536], ['warm', 300],
        ['truncate', 5 * MIB + 3 * PAGE + 17], ['read', 5 * MIB, 65536], ['readall'],
        ['truncate', 6 * MIB], ['readall'],
        ['punch', MIB + 2 * PAGE, 4 * PAGE], ['punch', 2 * MIB, MIB], ['readall'],
        ['warm', 300], ['write', 6 * MIB + 2 * PAGE, PAGE], ['readall'],
        ['truncate', 2 * MIB + 100], ['warm', 300], ['write', 2 * MIB + 8 * PAGE, PAGE], ['readall'],
        ['random', 1000, 0.2], ['readall'],
      ];
      const result = await drive(mount, 'g', randomBytes(size), steps, 7);
      expect(result.bad).toEqual([]);
    });
  }, 240_000);

  it('stays exact while blocks are evicted under a small cache.memory_limit', async () => {
    await withMount({ extraYaml: `cache: { memory_limit: 6656KiB, flush_interval: 200ms }\n` }, async (mount) => {
      const { path, model } = await writeWithModel(mount, 'big', randomBytes(16 * MIB));
      const results: DriverResult[] = [];
      const evictionsBefore = await statValue(mount, 'cache_evictions_total', 'cache_evictions_total');
      // Small writes spread over blocks: each makes a cached 1 MiB entry, whose buffers are
      // the evicted ones reused (whole blocks would be stored without the cache).
      const writeOthers = async (name: string): Promise<void> => {
        for (let round = 0; round < 6; round++) {
          const handle = await open(join(mount.mountpoint, `${name}-${round}`), 'w');
          for (let block = 0; block < 4; block++) await handle.write(randomBytes(100), 0, 100, block * MIB + 10);
          await handle.close();
          await sleep(30);
        }
      };
      // Held open, the file keeps its cached (and registered) blocks between the drivers.
      const holder = await open(path, 'r');
      try {
        const first = await runDriver(path, model, [['warm', 2000]], 1);
        await writeOthers('a');
        const [second] = await Promise.all([runDriver(path, model, [['warm', 2000], ['readall'], ['warm', 2000]], 2), writeOthers('b')]);
        results.push(first, second);
      } finally {
        await holder.close();
      }
      for (const result of results) expect(result.bad).toEqual([]);
      await sleep(600);
      expect(await statValue(mount, 'cache_evictions_total', 'cache_evictions_total')).toBeGreaterThan(evictionsBefore);
    });
  }, 240_000);

  it('serves four readers at once, and each sees a writer’s change of the block it reads', async () => {
    await withMount({ extraYaml: FAST_YAML }, async (mount) => {
      const { path, model } = await writeWithModel(mount, 'shared', randomBytes(4 * MIB));
      const readers = [11, 12, 13, 14].map((seed) => runDriver(path, model, [['warm', 800], ['readall'], ['warm', 800]], seed));
      for (const result of await Promise.all(readers)) expect(result.bad).toEqual([]);
      // One driver changes every block while reading; its model follows (the others are done).
      const steps: Step[] = [['warm', 800]];
      for (let block = 0; block < 4; block++) steps.push(['write', block * MIB + 5 * PAGE, PAGE], ['read', block * MIB, 65536]);
      steps.push(['readall']);
      expect((await runDriver(path, model, steps, 15)).bad).toEqual([]);
    });
  }, 240_000);
});
