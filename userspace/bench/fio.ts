/**
 * The fio jobs of the core benchmark, and the parsing of fio's JSON report.
 *
 * Every job uses `ioengine=psync direct=0 fallocate=none iodepth=1`, as the FUSE ceiling
 * probes did (/work/shared/notes/fuse-ceiling.md), so their numbers stay comparable:
 * - seqwrite: 1 MiB writes of a new file, `end_fsync=1` (the fsync is inside fio's runtime).
 * - seqread: 1 MiB reads of that file.
 * - randread1 / randread4: 4 KiB random reads with `invalidate=0`, by 1 job or by 4 jobs
 *   sharing the same total bytes (group-reported: one aggregate).
 * - randwrite: 4 KiB random overwrites, no fsync.
 * Random jobs stop at `randomIoBytes` or `randomRuntimeSec`, whichever comes first; sequential
 * jobs are capped at SEQ_RUNTIME_SEC_MAX so a pathological system cannot hang the bench.
 */
import { assert } from '../src/assert.js';
import { runChild } from './host.js';

/** The fio-driven tests, in the order a round runs them (seqwrite creates the file). */
export const FIO_TESTS = ['seqwrite', 'seqread', 'randread1', 'randread4', 'randwrite'] as const;
export type FioTest = (typeof FIO_TESTS)[number];

/** Sizes and limits shared by all fio jobs of a run. */
export interface FioSizes {
  readonly fileBytes: number;
  readonly randomIoBytes: number;
  readonly randomRuntimeSec: number;
}

/** What one fio run measured. */
export interface FioMeasurement {
  readonly bytesPerSecond: number;
  readonly operationsPerSecond: number;
  /** Requests issued by all jobs together (1 MiB or 4 KiB each). */
  readonly operationCount: number;
  readonly runtimeMs: number;
}

/** Upper bound of a sequential job's runtime: 1 GiB at under ~4 MiB/s is broken anyway. */
const SEQ_RUNTIME_SEC_MAX = 300;
/** Extra time fio gets beyond its own runtime limit (file layout, end_fsync, exit). */
const FIO_EXIT_MARGIN_MS = 120_000;
const PARALLEL_JOB_COUNT = 4;
const SEQ_BLOCK_BYTES = 1024 * 1024;
const RANDOM_BLOCK_BYTES = 4096;

assert(SEQ_BLOCK_BYTES % RANDOM_BLOCK_BYTES === 0);

/** Whether the test reads (else it writes): picks the side of fio's report. */
export function isReadTest(test: FioTest): boolean {
  return test === 'seqread' || test === 'randread1' || test === 'randread4';
}

/** Whether the test wants the backing files in the page cache before it starts (warm). */
export function isWarmTest(test: FioTest): boolean {
  return test === 'randread1' || test === 'randread4';
}

function jobArgs(test: FioTest, sizes: FioSizes): string[] {
  const randomTail = (ioBytes: number) => [
    `--bs=${RANDOM_BLOCK_BYTES}`, `--io_size=${ioBytes}`, `--runtime=${sizes.randomRuntimeSec}`,
  ];
  switch (test) {
    case 'seqwrite':
      return [
        '--rw=write', `--bs=${SEQ_BLOCK_BYTES}`, '--end_fsync=1',
        `--runtime=${SEQ_RUNTIME_SEC_MAX}`,
      ];
    case 'seqread':
      return ['--rw=read', `--bs=${SEQ_BLOCK_BYTES}`, `--runtime=${SEQ_RUNTIME_SEC_MAX}`];
    case 'randread1':
      return ['--rw=randread', '--invalidate=0', ...randomTail(sizes.randomIoBytes)];
    case 'randread4': {
      // Same total bytes as randread1, split over the jobs.
      const totalBlocks = Math.floor(sizes.randomIoBytes / RANDOM_BLOCK_BYTES);
      const perJobBlocks = Math.floor(totalBlocks / PARALLEL_JOB_COUNT);
      const perJobBytes = perJobBlocks * RANDOM_BLOCK_BYTES;
      return [
        '--rw=randread', '--invalidate=0', `--numjobs=${PARALLEL_JOB_COUNT}`, '--group_reporting',
        ...randomTail(perJobBytes),
      ];
    }
    case 'randwrite':
      return ['--rw=randwrite', ...randomTail(sizes.randomIoBytes)];
  }
}

/** The full fio command line of `test` on `filePath`. */
export function fioArgs(test: FioTest, filePath: string, sizes: FioSizes): string[] {
  assert(sizes.fileBytes % SEQ_BLOCK_BYTES === 0);
  assert(sizes.randomIoBytes >= PARALLEL_JOB_COUNT * RANDOM_BLOCK_BYTES);
  return [
    `--name=${test}`, `--filename=${filePath}`, `--size=${sizes.fileBytes}`,
    '--ioengine=psync', '--direct=0', '--fallocate=none', '--iodepth=1',
    '--output-format=json', ...jobArgs(test, sizes),
  ];
}

interface FioSide {
  bw_bytes?: number;
  iops?: number;
  total_ios?: number;
  runtime?: number;
}

/** Reads fio's JSON report (fio may print warnings before it). */
export function parseFioReport(test: FioTest, stdout: string): FioMeasurement {
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error('fio printed no JSON report');
  const report = JSON.parse(stdout.slice(start)) as { jobs?: Array<Record<string, unknown>> };
  const job = report.jobs?.[0];
  if (job === undefined) throw new Error('fio report has no job');
  if (job['error'] !== undefined && job['error'] !== 0) {
    throw new Error(`fio job error ${String(job['error'])}`);
  }
  const side = job[isReadTest(test) ? 'read' : 'write'] as FioSide | undefined;
  const bytesPerSecond = side?.bw_bytes ?? 0;
  const operationCount = side?.total_ios ?? 0;
  if (bytesPerSecond <= 0 || operationCount <= 0) throw new Error('fio report shows no I/O');
  return {
    bytesPerSecond,
    operationsPerSecond: side?.iops ?? 0,
    operationCount,
    runtimeMs: side?.runtime ?? 0,
  };
}

/** Runs one fio test on `filePath`; throws with fio's stderr when it fails or times out. */
export async function runFio(
  test: FioTest,
  filePath: string,
  sizes: FioSizes,
  signal: AbortSignal,
): Promise<FioMeasurement> {
  const runtimeSec = test.startsWith('seq') ? SEQ_RUNTIME_SEC_MAX : sizes.randomRuntimeSec;
  const result = await runChild('fio', fioArgs(test, filePath, sizes), {
    timeoutMs: runtimeSec * 1000 + FIO_EXIT_MARGIN_MS,
    signal,
  });
  if (result.isTimedOut) throw new Error(`fio ${test} did not finish in time`);
  if (result.code !== 0) {
    const reason = result.code === null ? `signal ${String(result.signal)}` : `exit ${result.code}`;
    throw new Error(`fio ${test} failed (${reason}): ${result.stderr.trim().slice(0, 500)}`);
  }
  return parseFioReport(test, result.stdout);
}
