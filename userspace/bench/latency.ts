/**
 * Latency section of `npm run bench`: how long a 4 KiB read through the mount takes while a
 * large erasure-coded write runs, against the same reads on an idle mount, in the same run.
 *
 * Why: encoding and checksumming big blocks must stay off the event loop (the libuv pool), or
 * one 32 MiB write would stall every other FUSE request for milliseconds.
 *
 * Method: shmr with an Erasure(4+2) 32 MiB write pool and a 256 MiB cache; a probe reads 4 KiB
 * at random offsets of a stored 64 MiB file with O_DIRECT (so every read reaches the daemon),
 * one read per millisecond (a reader that comes and goes, not one that keeps a core busy):
 * first on the idle mount, then from the first 32 MiB write() of another process that writes
 * a 2 GiB file until that process has fsynced and exited, so the probe samples the whole write
 * including the stores of its last blocks. Prints count, p50, p99 and max of both, the ratios,
 * the target below with PASS or FAIL, and the write's MiB/s (a change that buys latency with
 * throughput shows there).
 *
 * Target: p99 during the write at most LOADED_P99_TARGET_US (5 ms). A read of bytes that are
 * in memory should never cost a reader more than one random read from the drives shmr is made
 * for (4 KiB on an SMR hard disk: 5-10 ms), so a large write is never worse for a reader than
 * a cache miss. The write keeps both cores of the bench machine busy (the writer's copies,
 * the daemon's copies, encoding, shard writes, kernel writeback), so the read also waits for a
 * CPU; idle reads take ~0.1 ms.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { startShmrAt, stopShmrAt } from './systems.js';

/** p99 of 4 KiB reads during the write that the section asks for (see the header). */
const LOADED_P99_TARGET_US = 5000;
/** One probe read per this many microseconds. */
const PROBE_INTERVAL_US = 1000;

/**
 * Reads `count` times, or until its standard input ends (the bench closes it when the write is
 * over), one read per interval; prints the latencies in nanoseconds.
 */
const PROBE = `
import mmap, os, random, sys, threading, time
path, interval_ns, count = sys.argv[1], int(sys.argv[2]) * 1000, int(sys.argv[3])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
size = os.fstat(fd).st_size
buf = mmap.mmap(-1, 4096)
rng = random.Random(7)
out = []
due = time.perf_counter_ns()
while len(out) < count and not stop.is_set():
    offset = rng.randrange(0, size // 4096) * 4096
    start = time.perf_counter_ns()
    os.preadv(fd, [buf], offset)
    end = time.perf_counter_ns()
    out.append(end - start)
    due = max(due + interval_ns, end)
    time.sleep((due - end) / 1e9)
print(' '.join(str(x) for x in out))
`;

/** Writes the file in 32 MiB write() calls; prints a line once the first one returned. */
const WRITER = `
const fs = require('fs');
const [path, mib] = process.argv.slice(1);
const block = require('crypto').randomBytes(32 * 1024 * 1024);
const fd = fs.openSync(path, 'w');
for (let at = 0; at < Number(mib) * 1024 * 1024; at += block.length) {
  fs.writeSync(fd, block, 0, block.length, at);
  if (at === 0) process.stdout.write('started\\n');
}
fs.fsyncSync(fd);
fs.closeSync(fd);
`;

interface Percentiles {
  count: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

function percentiles(samplesNs: number[]): Percentiles {
  const sorted = [...samplesNs].sort((a, b) => a - b);
  const at = (fraction: number) => (sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? 0) / 1000;
  return { count: sorted.length, p50Us: at(0.5), p99Us: at(0.99), maxUs: at(1) };
}

/** Starts the probe; `stop` ends it early; `samples` resolves with its latencies (ns). */
function startProbe(path: string, count: number): { stop: () => void; samples: Promise<number[]> } {
  const child = spawn('/usr/bin/python3', ['-c', PROBE, path, String(PROBE_INTERVAL_US), String(count)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  const samples = new Promise<number[]>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolve(output.trim().split(' ').map(Number));
      else reject(new Error(`latency bench: probe exited with ${code}`));
    });
  });
  return { stop: () => child.stdin.end(), samples };
}

/** Runs the writer; resolves once its first 32 MiB write() returned, with its exit. */
async function startWriter(path: string, mib: number): Promise<{ done: Promise<unknown> }> {
  const writer = spawn(process.execPath, ['-e', WRITER, path, String(mib)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const done = new Promise((resolve) => writer.once('exit', resolve));
  await new Promise<void>((resolve, reject) => {
    writer.stdout.setEncoding('utf8').once('data', () => resolve());
    writer.once('exit', (code) => reject(new Error(`latency bench: writer exited with ${code} before writing`)));
  });
  return { done };
}

async function mountShmr(root: string): Promise<ChildProcess> {
  const buckets = Array.from({ length: 6 }, (_, index) => join(root, `hdd${index}`));
  for (const path of [...buckets, join(root, 'mnt')]) mkdirSync(path, { recursive: true });
  return startShmrAt(root, [
    `mount_dir: ${root}/mnt`, `metadata_dir: ${root}/meta`, 'write_pool: archive', 'pools:', '  archive:',
    '    topology: erasure:4+2', '    block_size: 32MiB', '    buckets:',
    ...buckets.map((path, index) => `      hdd${index}: { path: ${path} }`),
    'cache: { memory_limit: 256MiB }',
  ], 'latency');
}

/** Runs the section and prints its table. */
export async function runLatencyBench(options: { quick: boolean; workDir?: string }): Promise<void> {
  const root = await mkdtemp(join(options.workDir ?? '/var/tmp', 'shmr-latency-'));
  const mountpoint = join(root, 'mnt');
  const idleCount = options.quick ? 500 : 2000;
  const writeMib = options.quick ? 512 : 2048;
  let daemon: ChildProcess | undefined;
  try {
    daemon = await mountShmr(root);
    const probeFile = join(mountpoint, 'probe');
    writeFileSync(probeFile, Buffer.alloc(64 * 1024 * 1024, 1));
    const idle = percentiles(await startProbe(probeFile, idleCount).samples);
    const writeStartMs = performance.now();
    const writer = await startWriter(join(mountpoint, 'big'), writeMib);
    const probe = startProbe(probeFile, Number.MAX_SAFE_INTEGER);
    await writer.done;
    const writeSeconds = (performance.now() - writeStartMs) / 1000;
    probe.stop();
    printTable(idle, percentiles(await probe.samples), { mib: writeMib, seconds: writeSeconds });
  } finally {
    await stopShmrAt(root, daemon);
  }
}

function printTable(idle: Percentiles, loaded: Percentiles, write: { mib: number; seconds: number }): void {
  const row = (name: string, value: (p: Percentiles) => number) =>
    `  ${name.padEnd(5)} ${value(idle).toFixed(0).padStart(9)} ${value(loaded).toFixed(0).padStart(12)} ${(value(loaded) / value(idle)).toFixed(2).padStart(8)}x`;
  const verdict = loaded.p99Us <= LOADED_P99_TARGET_US ? 'PASS' : 'FAIL';
  process.stdout.write([
    '',
    `latency: 4 KiB O_DIRECT reads, one per ${PROBE_INTERVAL_US} us, idle vs during a ${write.mib} MiB write (erasure 4+2, 32 MiB blocks)`,
    '  stat   idle (us)  writing (us)    ratio',
    `  reads ${String(idle.count).padStart(9)} ${String(loaded.count).padStart(12)}`,
    row('p50', (p) => p.p50Us), row('p99', (p) => p.p99Us), row('max', (p) => p.maxUs),
    `  target: p99 during the write <= ${LOADED_P99_TARGET_US} us: ${verdict} (${loaded.p99Us.toFixed(0)} us)`,
    `  the write: ${(write.mib / write.seconds).toFixed(0)} MiB/s (${write.seconds.toFixed(1)} s from its start to its fsync and exit)`, '',
  ].join('\n'));
}
