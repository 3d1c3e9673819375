/**
 * Tiering section of `npm run bench`: rewrite throughput of one big file from the write pool
 * (Single, 1 MiB blocks) to an archive pool (Erasure 4+2, 32 MiB blocks), against `cp` of a
 * file of the same size between the same bucket directories, in the same run.
 *
 * Why: moving data to the SMR tier is what shmr exists for; it must run near the speed of a
 * plain copy, or the write pool fills faster than it drains. Target: at least 50 % of cp.
 *
 * Method: both pools' buckets are folders under one work folder on the disk under test. The
 * file is written through the mount and made durable; caches are dropped; `shmr`'s rewrite
 * (copy, checksum recheck, fsync, commit) is timed from the request to the task's end. Then a
 * plain file of the same size in the write pool's folder is copied with `cp` into an archive
 * folder and fsynced (`sync FILE`), caches dropped first as well.
 *
 * Throughput on a shared machine swings with everyone else's load, and the rewrite needs far
 * more CPU than cp (checksums, parity): the table also gives the CPU seconds each used (the
 * daemon's threads; cp and sync as children of the bench) and how busy the machine was.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync, fsyncSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { promisify } from 'node:util';
import { assert } from '../src/assert.js';
import { callControl } from '../src/daemon/control.js';
import type { TaskInfo } from '../src/tasks/task-manager.js';
import { MachineCpu, processCpuSeconds } from './host.js';
import { startShmrAt, stopShmrAt } from './systems.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const TARGET_RATIO = 0.5;

async function mountShmr(root: string): Promise<ChildProcess> {
  const archive = Array.from({ length: 6 }, (_, index) => join(root, `hdd${index}`));
  for (const path of [...archive, join(root, 'ssd0'), join(root, 'mnt')]) mkdirSync(path, { recursive: true });
  return startShmrAt(root, [
    `mount_dir: ${root}/mnt`, `metadata_dir: ${root}/meta`, 'write_pool: ssd', 'pools:',
    '  ssd:', '    topology: single', '    block_size: 1MiB', '    buckets:', `      ssd0: { path: ${root}/ssd0 }`,
    '  archive:', '    topology: erasure:4+2', '    block_size: 32MiB', '    buckets:',
    ...archive.map((path, index) => `      hdd${index}: { path: ${path} }`),
    'cache: { memory_limit: 256MiB }',
  ], 'tiering');
}

/** Writes `bytes` of random data to `path` in 4 MiB writes, then fsyncs. */
function writeFile(path: string, bytes: number): void {
  const chunk = randomFillSync(Buffer.allocUnsafe(4 * MiB));
  const fd = openSync(path, 'w');
  try {
    for (let at = 0; at < bytes; at += chunk.byteLength) writeSync(fd, chunk, 0, Math.min(chunk.byteLength, bytes - at), at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function dropCaches(): void {
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** Wall seconds, CPU seconds of the work, and machine CPU use (percent of one core). */
interface Timing {
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly machineCorePercent: number;
}

/** CPU seconds of the bench's waited-for children (cutime + cstime of /proc/self/stat). */
function childrenCpuSeconds(): number {
  const text = readFileSync('/proc/self/stat', 'utf8');
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

async function timed(cpuSeconds: () => number, body: () => Promise<void>): Promise<Timing> {
  const machine = await MachineCpu.start();
  const cpuStart = cpuSeconds();
  const startedMs = performance.now();
  await body();
  const seconds = (performance.now() - startedMs) / 1000;
  return { seconds, cpuSeconds: cpuSeconds() - cpuStart, machineCorePercent: await machine.busyCorePercent() };
}

async function timeRewrite(root: string, daemonPid: number): Promise<Timing> {
  const metadataDir = join(root, 'meta');
  return timed(() => processCpuSeconds(daemonPid) ?? Number.NaN, async () => {
    const { taskId } = (await callControl(metadataDir, 'rewriteFile', {
      path: join(root, 'mnt', 'big'), pool: 'archive', topology: 'erasure:4+2', blockSize: 32 * MiB, parallel: 4,
    })) as { taskId: number };
    const info = (await callControl(metadataDir, 'waitTask', { id: taskId })) as TaskInfo;
    if (info.state !== 'done') throw new Error(`tiering bench: rewrite ${info.state}: ${info.errors.join('; ')}`);
  });
}

async function timeCopy(root: string, bytes: number): Promise<Timing> {
  const source = join(root, 'ssd0', 'plain');
  const target = join(root, 'hdd0', 'plain');
  writeFile(source, bytes);
  dropCaches();
  return timed(childrenCpuSeconds, async () => {
    await execFileAsync('cp', [source, target]);
    await execFileAsync('sync', [target]);
  });
}

/** Runs the section and prints its table. */
export async function runTieringBench(options: { quick: boolean; workDir?: string }): Promise<void> {
  const root = await mkdtemp(join(options.workDir ?? '/var/tmp', 'shmr-tiering-'));
  const mountpoint = join(root, 'mnt');
  const bytes = (options.quick ? 256 : 1024) * MiB;
  let daemon: ChildProcess | undefined;
  try {
    daemon = await mountShmr(root);
    writeFile(join(mountpoint, 'big'), bytes);
    dropCaches();
    assert(daemon.pid !== undefined);
    const rewrite = await timeRewrite(root, daemon.pid);
    const copy = await timeCopy(root, bytes);
    printTable(bytes, rewrite, copy);
  } finally {
    await stopShmrAt(root, daemon);
  }
}

function printTable(bytes: number, rewrite: Timing, copy: Timing): void {
  const rewriteMbPerSec = bytes / MiB / rewrite.seconds;
  const copyMbPerSec = bytes / MiB / copy.seconds;
  const ratio = rewriteMbPerSec / copyMbPerSec;
  const row = (what: string, timing: Timing, mbPerSec: number) => `  ${what.padEnd(9)} ` +
    `${timing.seconds.toFixed(2).padStart(10)} ${mbPerSec.toFixed(1).padStart(9)} ` +
    `${timing.cpuSeconds.toFixed(2).padStart(9)} ${timing.machineCorePercent.toFixed(0).padStart(13)}`;
  process.stdout.write([
    '',
    `tiering: rewrite of a ${bytes / MiB} MiB file, Single 1 MiB -> Erasure(4+2) 32 MiB, vs cp + sync`,
    '  what         seconds     MiB/s     CPU s  machine CPU %',
    row('rewrite', rewrite, rewriteMbPerSec),
    row('cp', copy, copyMbPerSec),
    `  ratio ${ratio.toFixed(2)} (target >= ${TARGET_RATIO}) ${ratio >= TARGET_RATIO ? 'PASS' : 'MISS'}`, '',
  ].join('\n'));
}
