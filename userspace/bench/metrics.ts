/**
 * Metrics section of `npm run bench`: what recording costs. Two shmr mounts, identical but for
 * `metrics.enabled`, run fio's sequential write and (cold) sequential read in alternating
 * order each round; the table shows the medians and the on/off ratio.
 *
 * Target: with metrics on, sequential throughput drops by at most 3 % (ratio >= 0.97).
 * Method: the core section's pool (single topology, 1 MiB blocks, one bucket folder) and fio
 * jobs (1 MiB requests, end_fsync on writes); page caches dropped before each read. The ratio
 * is the median of the per-round ratios: the two runs of a round are back to back, so a
 * change in the machine's load between rounds (other work on shared cores) cancels out.
 * The daemon's CPU seconds per GiB moved are shown too: on a busy machine they show the cost
 * of recording more steadily than throughput does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dropCaches, isMountPoint, processCpuSeconds, runChild } from './host.js';
import { runFio, type FioSizes, type FioTest } from './fio.js';
import { shmrEntry } from './systems.js';

const TARGET_RATIO_MIN = 0.97;
const MOUNT_WAIT_MS_MAX = 30_000;
const VARIANTS = ['on', 'off'] as const;
type Variant = (typeof VARIANTS)[number];
const TESTS: readonly FioTest[] = ['seqwrite', 'seqread'];

interface Mounted {
  readonly mountpoint: string;
  readonly daemon: ChildProcess;
}

async function mountVariant(root: string, variant: Variant): Promise<Mounted> {
  const folder = join(root, variant);
  for (const name of ['ssd0', 'meta', 'mnt']) await mkdir(join(folder, name), { recursive: true });
  const config = {
    mount_dir: join(folder, 'mnt'), metadata_dir: join(folder, 'meta'), write_pool: 'ssd',
    pools: { ssd: { topology: 'single', block_size: '1MiB', buckets: { ssd0: { path: join(folder, 'ssd0') } } } },
    metrics: { enabled: variant === 'on' },
  };
  const configPath = join(folder, 'shmr.yaml');
  await writeFile(configPath, `${JSON.stringify(config, undefined, 2)}\n`);
  const daemon = spawn(process.execPath, [shmrEntry(), 'mount', '--config', configPath], { stdio: 'ignore' });
  const mountpoint = join(folder, 'mnt');
  for (let waited = 0; !isMountPoint(mountpoint); waited += 100) {
    if (daemon.exitCode !== null || waited > MOUNT_WAIT_MS_MAX) throw new Error(`metrics bench: shmr (${variant}) did not mount`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { mountpoint, daemon };
}

async function unmount(mounted: Mounted): Promise<void> {
  if (!isMountPoint(mounted.mountpoint)) return;
  const exited = mounted.daemon.exitCode === null ? once(mounted.daemon, 'exit') : Promise.resolve();
  // Not the bench's signal: cleanup runs after an interrupt too.
  const child = { timeoutMs: 60_000, signal: new AbortController().signal };
  const result = await runChild('fusermount3', ['-u', mounted.mountpoint], child);
  if (result.code !== 0) await runChild('fusermount3', ['-uz', mounted.mountpoint], child);
  await exited;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Runs the section and prints its table. */
export async function runMetricsBench(options: { quick: boolean; workDir: string; signal: AbortSignal }): Promise<void> {
  const rounds = options.quick ? 3 : 5;
  const sizes: FioSizes = { fileBytes: (options.quick ? 256 : 1024) * 1024 * 1024, randomIoBytes: 65536, randomRuntimeSec: 1 };
  const root = await mkdtemp(join(options.workDir, 'shmr-metrics-'));
  const mounts: Partial<Record<Variant, Mounted>> = {};
  const results = new Map<string, number[]>();
  try {
    for (const variant of VARIANTS) mounts[variant] = await mountVariant(root, variant);
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
      for (const variant of order) {
        const file = join((mounts[variant] as Mounted).mountpoint, 'bench-file');
        await rm(file, { force: true });
        for (const test of TESTS) {
          if (test === 'seqread') await dropCaches(options.signal);
          const pid = (mounts[variant] as Mounted).daemon.pid ?? 0;
          const cpuBefore = processCpuSeconds(pid) ?? 0;
          const measured = await runFio(test, file, sizes, options.signal);
          const cpuSecPerGib = ((processCpuSeconds(pid) ?? 0) - cpuBefore) / (sizes.fileBytes / 1024 ** 3);
          const key = `${test}:${variant}`;
          results.set(key, [...(results.get(key) ?? []), measured.bytesPerSecond]);
          results.set(`cpu:${key}`, [...(results.get(`cpu:${key}`) ?? []), cpuSecPerGib]);
        }
      }
    }
  } finally {
    for (const mounted of Object.values(mounts)) await unmount(mounted);
    await rm(root, { recursive: true, force: true });
  }
  printTable(results, { rounds, fileBytes: sizes.fileBytes });
}

function printTable(results: ReadonlyMap<string, number[]>, run: { rounds: number; fileBytes: number }): void {
  const mib = (bytesPerSecond: number) => (bytesPerSecond / 1024 / 1024).toFixed(0).padStart(10);
  const lines = [
    '',
    `metrics: sequential throughput with metrics on vs off (median of ${run.rounds} rounds, ` +
      `${run.fileBytes / 1024 / 1024} MiB file, 1 MiB requests)`,
    '  test       on (MiB/s)  off (MiB/s)   on/off (paired)   target          daemon CPU s/GiB on, off',
  ];
  for (const test of TESTS) {
    const ons = results.get(`${test}:on`) ?? [];
    const offs = results.get(`${test}:off`) ?? [];
    const on = median(ons);
    const off = median(offs);
    const ratio = median(ons.map((value, round) => value / (offs[round] as number)));
    const verdict = ratio >= TARGET_RATIO_MIN ? 'PASS' : 'MISS';
    const ratioText = ratio.toFixed(3).padStart(6);
    const cpu = [median(results.get(`cpu:${test}:on`) ?? []), median(results.get(`cpu:${test}:off`) ?? [])];
    const cpuText = cpu.map((seconds) => seconds.toFixed(2)).join(', ');
    lines.push(`  ${test.padEnd(9)} ${mib(on)}  ${mib(off)}   ${ratioText}            >= ${TARGET_RATIO_MIN} ${verdict}   ${cpuText}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}
