/**
 * NBD section of `npm run bench`: a volume served by the shmr daemon against `nbdkit file`
 * serving a plain file on the same disk, both driven by nbdcopy, in the same run.
 *
 * Method: one random source file of VOLUME_BYTES (quick: QUICK_VOLUME_BYTES) in the temp
 * folder; for each server, `nbdcopy SOURCE URI` into an empty target (a new volume, after the
 * last round's was removed and its tombstones purged; a freshly truncated file: neither server
 * keeps the previous round's data or its page cache) (in), then `nbdcopy URI OUT` (out), checked by SHA-256 against the source.
 * shmr runs as `shmr mount` (its NBD server lives in the daemon) with one single-topology
 * pool of 1 MiB blocks (the volume gets the default volume block size, 4 MiB), its bucket in
 * the same temp folder; nbdkit serves a sparse file there.
 * The servers alternate per round (nbdkit, shmr, nbdkit, shmr) so neither always runs on a
 * warmer page cache; the best of ROUNDS rounds is reported, in MB/s (10^6 bytes), with shmr's
 * ratio to nbdkit. A third line copies in with `--flush` (data durable before nbdcopy exits),
 * for information, and a fourth gives each server's CPU seconds (all threads) per GiB copied,
 * the least of the rounds: on a busy machine throughput follows CPU use. Target: ratio >=
 * RATIO_TARGET both ways.
 *
 * Needs root, /dev/fuse, nbdkit and nbdcopy (apt-get install nbdkit libnbd-bin) and the
 * build; prints a skip line when something is missing. Run standalone:
 *   node dist/userspace/bench/nbd.js [--quick]
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import {
  accessSync, closeSync, constants, createReadStream, existsSync, mkdirSync, mkdtempSync,
  openSync, rmSync, truncateSync, writeFileSync, writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { isSocketLive } from '../src/nbd/index.js';
import { processCpuSeconds } from './host.js';

const execFileAsync = promisify(execFile);

/** shmr must reach this fraction of nbdkit's MB/s, in and out. */
const RATIO_TARGET = 0.5;
const VOLUME_BYTES = 1024 ** 3;
const QUICK_VOLUME_BYTES = 256 * 1024 ** 2;
const ROUNDS = 2;
const QUICK_ROUNDS = 1;
const START_WAIT_MS_MAX = 20_000;
const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CLI = join(REPO_ROOT, 'bin', 'shmr.js');

/** One server under test: how to reach it, and how to give it a fresh, empty target. */
interface Target {
  readonly label: string;
  readonly uri: string;
  /** The server process, for its CPU time. */
  readonly pid: number;
  readonly reset: () => Promise<void>;
}

/** Best MB/s per direction, and least CPU seconds per GiB. */
interface Speeds {
  inMBps: number;
  outMBps: number;
  inFlushMBps: number;
  inCpuPerGiB: number;
  outCpuPerGiB: number;
}

/** The source image and where copies out go. */
interface Files {
  readonly source: string;
  readonly out: string;
  readonly digest: string;
}

/** Why the bench cannot run here, or undefined. */
function missingRequirement(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (shmr mount)';
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    return 'needs /dev/fuse';
  }
  if (!existsSync('/usr/bin/nbdcopy')) return 'needs nbdcopy (apt-get install libnbd-bin)';
  const hasNbdkit = existsSync('/usr/sbin/nbdkit') || existsSync('/usr/bin/nbdkit');
  if (!hasNbdkit) return 'needs nbdkit (apt-get install nbdkit)';
  const built = join(REPO_ROOT, 'dist', 'userspace', 'src', 'cli', 'main.js');
  if (!existsSync(built)) return 'needs the build (npm run build)';
  return undefined;
}

function writeRandomFile(path: string, bytes: number): void {
  const chunk = Buffer.allocUnsafe(4 * 1024 * 1024);
  const fd = openSync(path, 'w');
  try {
    for (let done = 0; done < bytes; done += chunk.byteLength) {
      randomFillSync(chunk);
      writeSync(fd, chunk, 0, Math.min(chunk.byteLength, bytes - done));
    }
  } finally {
    closeSync(fd);
  }
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  const stream = createReadStream(path, { highWaterMark: 4 * 1024 * 1024 });
  for await (const piece of stream) hash.update(piece as Buffer);
  return hash.digest('hex');
}

async function waitFor(
  check: () => Promise<boolean>,
  what: string,
  child: ChildProcess,
): Promise<void> {
  const deadline = Date.now() + START_WAIT_MS_MAX;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what}: exited with ${child.exitCode}`);
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what}: not ready after ${START_WAIT_MS_MAX} ms`);
}

/** Seconds nbdcopy takes for one copy, and CPU seconds the server `pid` used meanwhile. */
async function timedCopy(
  copy: { source: string; target: string; pid: number },
  flags: readonly string[] = [],
): Promise<{ seconds: number; cpuSeconds: number }> {
  const cpuBefore = processCpuSeconds(copy.pid) ?? Number.NaN;
  const started = process.hrtime.bigint();
  await execFileAsync('nbdcopy', [...flags, copy.source, copy.target], { maxBuffer: 1024 * 1024 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seconds, cpuSeconds: (processCpuSeconds(copy.pid) ?? Number.NaN) - cpuBefore };
}

/** Copies in to an empty target, out again (checked), and in once more with --flush. */
async function measure(target: Target, files: Files, bytes: number, best: Speeds): Promise<void> {
  const megabytes = bytes / 1e6;
  const gibibytes = bytes / 1024 ** 3;
  const copyIn = { source: files.source, target: target.uri, pid: target.pid };
  await target.reset();
  const copiedIn = await timedCopy(copyIn);
  const copiedOut = await timedCopy({ source: target.uri, target: files.out, pid: target.pid });
  const digest = await sha256Of(files.out);
  if (digest !== files.digest) throw new Error(`${target.label}: read back differs from source`);
  rmSync(files.out, { force: true });
  await target.reset();
  const copiedInFlush = await timedCopy(copyIn, ['--flush']);
  best.inMBps = Math.max(best.inMBps, megabytes / copiedIn.seconds);
  best.outMBps = Math.max(best.outMBps, megabytes / copiedOut.seconds);
  best.inFlushMBps = Math.max(best.inFlushMBps, megabytes / copiedInFlush.seconds);
  best.inCpuPerGiB = Math.min(best.inCpuPerGiB, copiedIn.cpuSeconds / gibibytes);
  best.outCpuPerGiB = Math.min(best.outCpuPerGiB, copiedOut.cpuSeconds / gibibytes);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** nbdkit serving a sparse plain file in `root`. */
async function startNbdkit(root: string, bytes: number, children: ChildProcess[]): Promise<Target> {
  const plain = join(root, 'plain.img');
  closeSync(openSync(plain, 'w'));
  truncateSync(plain, bytes);
  const socket = join(root, 'nbdkit.sock');
  const args = ['--foreground', '--unix', socket, 'file', `file=${plain}`];
  const nbdkit = spawn('nbdkit', args, { stdio: 'ignore' });
  children.push(nbdkit);
  await waitFor(() => isSocketLive(socket), 'nbdkit', nbdkit);
  const reset = async () => {
    truncateSync(plain, 0);
    truncateSync(plain, bytes);
  };
  const pid = nbdkit.pid;
  if (pid === undefined) throw new Error('nbdkit: no process id');
  return { label: 'nbdkit file', uri: `nbd+unix:///?socket=${socket}`, pid, reset };
}

/** A shmr daemon with one single-topology pool in `root`, serving volume "bench". */
async function startShmr(
  root: string,
  bytes: number,
  shmr: { children: ChildProcess[]; nodeOptions: readonly string[] },
): Promise<Target> {
  for (const folder of ['mnt', 'bucket']) mkdirSync(join(root, folder));
  const config = join(root, 'shmr.yaml');
  writeFileSync(config, [
    `mount_dir: ${root}/mnt`, `metadata_dir: ${root}/meta`, 'write_pool: ssd', 'pools:',
    '  ssd:', '    topology: single', '    block_size: 1MiB', '    buckets:',
    `      ssd0: { path: ${root}/bucket }`, '',
  ].join('\n'));
  const log = openSync(join(root, 'daemon.log'), 'a');
  const args = [...shmr.nodeOptions, CLI, 'mount', '--config', config];
  const daemon = spawn(process.execPath, args, { stdio: ['ignore', log, log], cwd: root });
  closeSync(log);
  shmr.children.push(daemon);
  const socket = join(root, 'meta', 'nbd.sock');
  await waitFor(() => isSocketLive(socket), 'shmr mount', daemon);
  const volume = (more: string[]) =>
    execFileAsync(process.execPath, [CLI, 'volume', ...more, '--config', config]);
  await volume(['create', 'bench', '--size', String(bytes)]);
  const reset = async () => {
    await volume(['rm', 'bench']);
    await execFileAsync(process.execPath, [CLI, 'tombstones', '--purge', '--older-than', '0s', '--config', config]);
    await volume(['create', 'bench', '--size', String(bytes)]);
  };
  const pid = daemon.pid;
  if (pid === undefined) throw new Error('shmr mount: no process id');
  return { label: 'shmr volume', uri: `nbd+unix:///bench?socket=${socket}`, pid, reset };
}

function report(baseline: Speeds, shmr: Speeds): void {
  const line = (label: string, key: keyof Speeds) => {
    const ratio = (shmr[key] / baseline[key]).toFixed(2);
    return `  ${label.padEnd(12)} nbdkit ${baseline[key].toFixed(0).padStart(6)} MB/s   ` +
      `shmr ${shmr[key].toFixed(0).padStart(6)} MB/s   ratio ${ratio}x\n`;
  };
  process.stdout.write(line('in', 'inMBps') + line('out', 'outMBps'));
  process.stdout.write(line('in, --flush', 'inFlushMBps'));
  const cpu = (speeds: Speeds) =>
    `in ${speeds.inCpuPerGiB.toFixed(2)} s  out ${speeds.outCpuPerGiB.toFixed(2)} s`;
  process.stdout.write(`  ${'CPU per GiB'.padEnd(12)} nbdkit ${cpu(baseline)}   shmr ${cpu(shmr)}\n`);
  const worst = Math.min(shmr.inMBps / baseline.inMBps, shmr.outMBps / baseline.outMBps);
  const verdict = worst >= RATIO_TARGET ? 'met' : 'NOT MET';
  process.stdout.write(`  target: shmr >= ${RATIO_TARGET.toFixed(2)}x nbdkit in and out: ` +
    `${verdict} (worst ${worst.toFixed(2)}x)\n`);
}

/** Runs the NBD comparison and prints it. */
export async function runNbdBench(options: {
  quick: boolean;
  /** Extra Node options of the shmr daemon (e.g. --cpu-prof; profiles land in its folder). */
  shmrNodeOptions?: readonly string[];
}): Promise<void> {
  const bytes = options.quick ? QUICK_VOLUME_BYTES : VOLUME_BYTES;
  const rounds = options.quick ? QUICK_ROUNDS : ROUNDS;
  process.stdout.write(`\nNBD: nbdcopy of a ${bytes / 1024 ** 2} MiB volume in and out, ` +
    `shmr daemon vs nbdkit file (best of ${rounds})\n`);
  const missing = missingRequirement();
  if (missing !== undefined) {
    process.stdout.write(`  skipped: ${missing}\n`);
    return;
  }
  const root = mkdtempSync(join(tmpdir(), 'shmr-nbd-bench-'));
  const children: ChildProcess[] = [];
  try {
    const source = join(root, 'source.img');
    writeRandomFile(source, bytes);
    const files = { source, out: join(root, 'out.img'), digest: await sha256Of(source) };
    const targets = [
      await startNbdkit(root, bytes, children),
      await startShmr(root, bytes, { children, nodeOptions: options.shmrNodeOptions ?? [] }),
    ];
    const best = targets.map((): Speeds => ({
      inMBps: 0, outMBps: 0, inFlushMBps: 0, inCpuPerGiB: Infinity, outCpuPerGiB: Infinity,
    }));
    for (let round = 0; round < rounds; round++) {
      for (const [index, target] of targets.entries()) {
        await measure(target, files, bytes, best[index] as Speeds);
      }
    }
    report(best[0] as Speeds, best[1] as Speeds);
    // A clean unmount: the daemon stores everything and exits 0.
    await execFileAsync('fusermount3', ['-u', join(root, 'mnt')]);
  } finally {
    for (const child of children) await stop(child);
    await execFileAsync('fusermount3', ['-uz', join(root, 'mnt')]).catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  }
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  const nodeOptions = process.argv.filter((arg) => arg.startsWith('--shmr-node-option='))
    .map((arg) => arg.slice('--shmr-node-option='.length));
  await runNbdBench({ quick: process.argv.includes('--quick'), shmrNodeOptions: nodeOptions });
}
