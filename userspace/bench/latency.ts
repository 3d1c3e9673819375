/**
 * Latency section of `npm run bench`: how long a 4 KiB read through the mount takes while a
 * large erasure-coded write runs, against the same reads on an idle mount, in the same run.
 *
 * Why: encoding and checksumming big blocks must stay off the event loop (the libuv pool), or
 * one 32 MiB write would stall every other FUSE request for milliseconds.
 *
 * Method: shmr with an Erasure(4+2) 32 MiB write pool; a probe reads 4 KiB at random offsets of
 * a stored file with O_DIRECT (so every read reaches the daemon), first idle, then while
 * another process writes a file in 32 MiB blocks. Prints p50, p99 and max, and the ratios.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startShmrAt, stopShmrAt } from './systems.js';

const execFileAsync = promisify(execFile);

const PROBE = `
import mmap, os, random, sys, time
path, count = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
size = os.fstat(fd).st_size
buf = mmap.mmap(-1, 4096)
rng = random.Random(7)
out = []
for _ in range(count):
    offset = rng.randrange(0, size // 4096) * 4096
    start = time.perf_counter_ns()
    os.preadv(fd, [buf], offset)
    out.append(time.perf_counter_ns() - start)
print(' '.join(str(x) for x in out))
`;

const WRITER = `
const fs = require('fs');
const [path, mib] = process.argv.slice(1);
const block = require('crypto').randomBytes(32 * 1024 * 1024);
const fd = fs.openSync(path, 'w');
for (let at = 0; at < Number(mib) * 1024 * 1024; at += block.length) fs.writeSync(fd, block, 0, block.length, at);
fs.fsyncSync(fd);
fs.closeSync(fd);
`;

interface Percentiles {
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

function percentiles(samplesNs: number[]): Percentiles {
  const sorted = [...samplesNs].sort((a, b) => a - b);
  const at = (fraction: number) => (sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? 0) / 1000;
  return { p50Us: at(0.5), p99Us: at(0.99), maxUs: at(1) };
}

async function probe(path: string, count: number): Promise<number[]> {
  const { stdout } = await execFileAsync('/usr/bin/python3', ['-c', PROBE, path, String(count)], { maxBuffer: 64 * 1024 * 1024 });
  return stdout.trim().split(' ').map(Number);
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
  const count = options.quick ? 500 : 3000;
  const writeMib = options.quick ? 512 : 2048;
  let daemon: ChildProcess | undefined;
  try {
    daemon = await mountShmr(root);
    const probeFile = join(mountpoint, 'probe');
    writeFileSync(probeFile, Buffer.alloc(64 * 1024 * 1024, 1));
    const idle = percentiles(await probe(probeFile, count));
    const writer = spawn(process.execPath, ['-e', WRITER, join(mountpoint, 'big'), String(writeMib)], { stdio: 'ignore' });
    const writerDone = new Promise((resolve) => writer.once('exit', resolve));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const loaded = percentiles(await probe(probeFile, count));
    await writerDone;
    printTable(idle, loaded, writeMib);
  } finally {
    await stopShmrAt(root, daemon);
  }
}

function printTable(idle: Percentiles, loaded: Percentiles, writeMib: number): void {
  const row = (name: string, value: (p: Percentiles) => number) =>
    `  ${name.padEnd(5)} ${value(idle).toFixed(0).padStart(9)} ${value(loaded).toFixed(0).padStart(12)} ${(value(loaded) / value(idle)).toFixed(2).padStart(8)}x`;
  process.stdout.write([
    '',
    `latency: 4 KiB O_DIRECT reads, idle vs during a ${writeMib} MiB write (erasure 4+2, 32 MiB blocks)`,
    '  stat   idle (us)  writing (us)    ratio',
    row('p50', (p) => p.p50Us), row('p99', (p) => p.p99Us), row('max', (p) => p.maxUs), '',
  ].join('\n'));
}
