/**
 * Core section of `npm run bench`: shmr against the bare backing folder (baseline) and against
 * mergerfs over that folder (peer), same disk, same workloads, in the same run.
 *
 * Workloads: fio psync jobs on one file (sequential 1 MiB write with end_fsync and cold read;
 * warm random 4 KiB reads by 1 and by 4 jobs; random 4 KiB writes; see fio.ts), then
 * create + stat + unlink of N files in one folder, one synchronous call at a time in a child
 * process (meta-ops.ts).
 *
 * Method, after the FUSE ceiling probes (/work/shared/notes/fuse-ceiling.md, fuse3-ceiling.md):
 * - Rounds are interleaved: each round runs every test on every system, test by test, and the
 *   system order rotates by one each round (the first system of a round ran slower in pilots).
 *   Each rate is the median over rounds.
 * - Before each test: wait (bounded) until the rest of the machine is nearly idle, `sync`, and
 *   drop the page cache (`echo 3 > /proc/sys/vm/drop_caches`) before fio tests. Warm random
 *   reads then pre-read the system's backing files (not through the mount), and fio runs with
 *   invalidate=0: every 4 KiB read is a FUSE round trip served from cached backing pages.
 * - The daemons' CPU time and the machine's CPU use are recorded per test.
 *
 * Invariants: every mount and the work folder are removed on every exit path (the caller's
 * abort signal, e.g. from SIGINT, kills the running workload and lands in the same finally).
 */
import { mkdtemp, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { cpus, release } from 'node:os';
import { join, resolve } from 'node:path';
import { assert } from '../src/assert.js';
import { FIO_TESTS, isWarmTest, runFio, type FioSizes, type FioTest } from './fio.js';
import {
  dropCaches, MachineCpu, mountOf, processCpuSeconds, readIntoPageCache, readMounts, runChild,
  syncAll, waitForQuiet,
} from './host.js';
import { runMetaOps } from './meta-ops.js';
import {
  formatCpuTable, formatLoadLine, formatTable, summarize,
  type CellRecord, type CoreTest, type WorkloadSummary,
} from './report.js';
import {
  MERGERFS_OPTIONS, startSystem, SYSTEM_NAMES, type BenchSystem, type ShmrSetting, type SystemName,
} from './systems.js';

export const CORE_TESTS: readonly CoreTest[] = [...FIO_TESTS, 'meta'];

/** Sizes of a run: the full run, or the quick one (about 3 minutes). */
export interface CoreSettings extends FioSizes {
  readonly rounds: number;
  readonly metaFileCount: number;
  /** Longest wait for a quiet machine before each test. */
  readonly gateWaitSec: number;
}

const MIB = 1024 * 1024;
export const FULL_SETTINGS: CoreSettings = {
  rounds: 3, fileBytes: 1024 * MIB, randomIoBytes: 200 * MIB, randomRuntimeSec: 30,
  metaFileCount: 10_000, gateWaitSec: 60,
};
export const QUICK_SETTINGS: CoreSettings = {
  rounds: 1, fileBytes: 256 * MIB, randomIoBytes: 64 * MIB, randomRuntimeSec: 5,
  metaFileCount: 2_000, gateWaitSec: 5,
};
/** A test starts once other load is below this, in percent of one core (of 100 per core). */
const GATE_BUSY_CORE_PERCENT_MAX = 25;
const TEST_FILE_NAME = 'bench.dat';
const VERSION_TIMEOUT_MS = 10_000;

/** Options of `runCoreBench`. */
export interface CoreOptions {
  readonly settings: CoreSettings;
  /** The work folder is created inside this folder: put it on the disk under test. */
  readonly parentDir: string;
  readonly systems: readonly SystemName[];
  readonly tests: readonly CoreTest[];
  readonly shmrNodeOptions: readonly string[];
  readonly shmrSettings: readonly ShmrSetting[];
  /** Aborting (SIGINT) stops the running workload; cleanup still runs. */
  readonly signal: AbortSignal;
}

/** Everything the core section measured; also the JSON document's `core` value. */
export interface CoreResult {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly host: Readonly<Record<string, string | number>>;
  readonly settings: CoreSettings;
  readonly systems: readonly SystemName[];
  readonly mergerfsOptions: string;
  readonly workloads: readonly WorkloadSummary[];
  readonly cells: readonly CellRecord[];
  readonly problems: readonly string[];
}

/** `systems` rotated left by `round`, so each system leads one round in turn. */
function rotate<T>(items: readonly T[], round: number): T[] {
  const shift = round % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

async function fileBytesOf(path: string): Promise<number | undefined> {
  return (await stat(path).catch(() => undefined))?.size;
}

/** What every cell of a run shares. */
interface CellContext {
  readonly round: number;
  readonly settings: CoreSettings;
  readonly signal: AbortSignal;
}

/** Readies the page cache for `test`: cold for fio tests, with backing files for warm ones. */
async function prepareTest(
  system: BenchSystem,
  test: FioTest,
  context: CellContext,
): Promise<void> {
  const filePath = join(system.testDir, TEST_FILE_NAME);
  if (test === 'seqwrite') {
    await unlink(filePath).catch(() => undefined);
  } else if (await fileBytesOf(filePath) !== context.settings.fileBytes) {
    // Only when seqwrite was left out (--tests) or failed: lay the file out, unmeasured.
    await unlink(filePath).catch(() => undefined);
    await runFio('seqwrite', filePath, context.settings, context.signal);
  }
  await dropCaches(context.signal);
  if (isWarmTest(test)) await readIntoPageCache(system.warmPaths(TEST_FILE_NAME));
}

/** Workload ids of each fio test (the meta test yields create, stat and unlink). */
const FIO_WORKLOAD_IDS: Readonly<Record<FioTest, string>> = {
  seqwrite: 'seq_write', seqread: 'seq_read', randread1: 'rand_read_1job',
  randread4: 'rand_read_4jobs', randwrite: 'rand_write',
};

/** The measured part of one cell: rates by workload id and the request count. */
async function measure(
  system: BenchSystem,
  test: CoreTest,
  context: CellContext,
): Promise<{ values: Record<string, number>; operationCount: number }> {
  const { settings, signal } = context;
  if (test === 'meta') {
    const folder = join(system.testDir, `meta-${context.round}`);
    const rates = await runMetaOps(folder, settings.metaFileCount, signal);
    const values = {
      create: rates.createPerSecond, stat: rates.statPerSecond, unlink: rates.unlinkPerSecond,
    };
    return { values, operationCount: 3 * settings.metaFileCount };
  }
  const result = await runFio(test, join(system.testDir, TEST_FILE_NAME), settings, signal);
  const isSequential = test === 'seqwrite' || test === 'seqread';
  const value = isSequential ? result.bytesPerSecond / MIB : result.operationsPerSecond;
  return { values: { [FIO_WORKLOAD_IDS[test]]: value }, operationCount: result.operationCount };
}

function daemonCpuSeconds(system: BenchSystem): number | undefined {
  return system.daemonPid === undefined ? undefined : processCpuSeconds(system.daemonPid);
}

/** Runs one test on one system: gate, prepare, measure with CPU accounting. */
async function runCell(
  system: BenchSystem,
  test: CoreTest,
  context: CellContext,
): Promise<CellRecord> {
  const startMs = performance.now();
  const gate = await waitForQuiet({
    busyCorePercentMax: GATE_BUSY_CORE_PERCENT_MAX,
    waitMsMax: context.settings.gateWaitSec * 1000,
  }, context.signal);
  const base = {
    round: context.round, test, system: system.name,
    backgroundCorePercent: gate.backgroundCorePercent, gateWaitedMs: gate.waitedMs,
  };
  try {
    if (test === 'meta') await syncAll(context.signal);
    else await prepareTest(system, test, context);
    const machine = await MachineCpu.start();
    const daemonStart = daemonCpuSeconds(system);
    const { values, operationCount } = await measure(system, test, context);
    const daemonEnd = daemonCpuSeconds(system);
    const daemonUsed = daemonStart === undefined || daemonEnd === undefined
      ? undefined
      : daemonEnd - daemonStart;
    return {
      ...base, values, error: undefined, operationCount,
      elapsedMs: performance.now() - startMs,
      machineBusyCorePercent: await machine.busyCorePercent(),
      daemonCpuSeconds: daemonUsed,
    };
  } catch (error) {
    if (context.signal.aborted) throw error;
    return {
      ...base, values: {}, error: (error as Error).message, operationCount: 0,
      elapsedMs: performance.now() - startMs, machineBusyCorePercent: 0,
      daemonCpuSeconds: undefined,
    };
  }
}

/** The progress line of one cell. */
function formatCell(cell: CellRecord): string {
  const rates = Object.entries(cell.values)
    .map(([id, value]) => `${id} ${value.toFixed(1)}`)
    .join(', ');
  const cpuUs = cell.daemonCpuSeconds === undefined
    ? undefined
    : (cell.daemonCpuSeconds * 1e6) / Math.max(cell.operationCount, 1);
  const cpu = cpuUs === undefined ? '' : `, daemon ${cpuUs.toFixed(1)} us/req`;
  const outcome = cell.error === undefined ? rates : `FAILED: ${cell.error.split('\n')[0]}`;
  const seconds = (cell.elapsedMs / 1000).toFixed(1);
  return `  round ${cell.round + 1} ${cell.test.padEnd(9)} ${cell.system.padEnd(8)} ${outcome}` +
    ` (bg ${cell.backgroundCorePercent.toFixed(0)}%${cpu}, ${seconds} s)\n`;
}

async function versionOf(command: string, signal: AbortSignal): Promise<string> {
  const result = await runChild(command, ['--version'], { timeoutMs: VERSION_TIMEOUT_MS, signal })
    .catch(() => undefined);
  return result?.stdout.split('\n')[0]?.trim() ?? 'unknown';
}

type HostInfo = Record<string, string | number>;

async function describeHost(workDir: string, signal: AbortSignal): Promise<HostInfo> {
  const mount = mountOf(workDir);
  return {
    kernel: release(), cpuCount: cpus().length, node: process.version,
    fio: await versionOf('fio', signal), mergerfs: await versionOf('mergerfs', signal),
    workDir, backingDevice: mount?.source ?? 'unknown', backingFsType: mount?.fsType ?? 'unknown',
  };
}

function printHeader(host: HostInfo, options: CoreOptions): void {
  const { settings } = options;
  process.stdout.write(
    'core: shmr vs raw backing folder (baseline) vs mergerfs (peer), ' +
      `median of ${settings.rounds} round(s)\n` +
      `  work folder ${host['workDir']} on ${host['backingDevice']} (${host['backingFsType']}), ` +
      `${host['cpuCount']} CPUs, kernel ${host['kernel']}, ${host['fio']}, ${host['mergerfs']}\n` +
      `  file ${settings.fileBytes / MIB} MiB; random: ${settings.randomIoBytes / MIB} MiB or ` +
      `${settings.randomRuntimeSec} s; metadata: ${settings.metaFileCount} files; ` +
      `systems ${options.systems.join(', ')}\n`,
  );
}

/** Runs every round; returns the cells. Systems must be started. */
async function runRounds(
  systems: readonly BenchSystem[],
  options: CoreOptions,
): Promise<CellRecord[]> {
  const cells: CellRecord[] = [];
  const tests = CORE_TESTS.filter((name) => options.tests.includes(name));
  for (let round = 0; round < options.settings.rounds; round++) {
    const context = { round, settings: options.settings, signal: options.signal };
    for (const test of tests) {
      for (const system of rotate(systems, round)) {
        const cell = await runCell(system, test, context);
        process.stdout.write(formatCell(cell));
        cells.push(cell);
      }
    }
  }
  return cells;
}

/** Unmounts everything, then removes the work folder unless a mount is still attached. */
async function cleanUp(
  root: string,
  stops: ReadonlyArray<() => Promise<string[]>>,
): Promise<string[]> {
  const problems: string[] = [];
  for (const stop of [...stops].reverse()) problems.push(...await stop());
  // A mount that is still attached must not be walked by rm: it would delete through it.
  const attached = readMounts().filter((mount) => mount.mountPoint.startsWith(`${root}/`));
  if (attached.length === 0) await rm(root, { recursive: true, force: true });
  else problems.push(`work folder ${root} kept: ${attached[0]!.mountPoint} is still mounted`);
  return problems;
}

function printResults(
  workloads: readonly WorkloadSummary[],
  cells: readonly CellRecord[],
  options: { rounds: number; problems: readonly string[] },
): void {
  process.stdout.write(`\ncore results (median of ${options.rounds} round(s); ` +
    'target and PASS/MISS: shmr/mergerfs)\n');
  process.stdout.write(formatTable(workloads));
  process.stdout.write(formatCpuTable(workloads));
  process.stdout.write(formatLoadLine(cells, GATE_BUSY_CORE_PERCENT_MAX));
  for (const problem of options.problems) process.stdout.write(`  problem: ${problem}\n`);
}

/** Runs the core benchmark, prints its tables and returns the results. */
export async function runCoreBench(options: CoreOptions): Promise<CoreResult> {
  assert(options.settings.rounds > 0);
  assert(options.systems.length > 0);
  const startedAt = new Date().toISOString();
  const root = await mkdtemp(join(resolve(options.parentDir), 'shmr-bench-'));
  const stops: Array<() => Promise<string[]>> = [];
  const problems: string[] = [];
  let host: HostInfo = {};
  let cells: CellRecord[] = [];
  try {
    host = await describeHost(root, options.signal);
    printHeader(host, options);
    const systems: BenchSystem[] = [];
    for (const name of SYSTEM_NAMES.filter((system) => options.systems.includes(system))) {
      systems.push(await startSystem(name, {
        root, shmrNodeOptions: options.shmrNodeOptions, shmrSettings: options.shmrSettings, register: (stop) => stops.push(stop),
      }));
    }
    cells = await runRounds(systems, options);
  } finally {
    problems.push(...await cleanUp(root, stops));
  }
  for (const cell of cells) {
    if (cell.error === undefined) continue;
    problems.push(`round ${cell.round + 1} ${cell.test} ${cell.system}: ${cell.error}`);
  }
  const { rounds } = options.settings;
  const workloads = summarize(cells, { systems: options.systems, rounds });
  printResults(workloads, cells, { rounds, problems });
  return {
    startedAt, finishedAt: new Date().toISOString(), host, settings: options.settings,
    systems: options.systems, mergerfsOptions: MERGERFS_OPTIONS, workloads, cells, problems,
  };
}

/** Writes the JSON results document (`{ "core": ... }`). */
export async function writeJson(path: string, core: CoreResult): Promise<void> {
  // Absent values (a failed cell's rates, raw's daemon CPU) are written as null, not dropped.
  const text = JSON.stringify({ core }, (_key, value: unknown) => value ?? null, 2);
  await writeFile(path, `${text}\n`);
}
