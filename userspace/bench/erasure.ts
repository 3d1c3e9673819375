/**
 * Erasure section of `npm run bench`: the shmr_isal addon against plain ISA-L from C.
 *
 * For 4+2, 8+3 and 10+4 at 1 MiB and 32 MiB blocks (block = k shards), it measures encode and
 * reconstruct (2 lost data shards, or p if p < 2) in GB/s of data bytes, single thread, for the
 * addon's sync and async calls and for erasure-baseline.c, compiled here with `cc -O2 -lisal`;
 * then the per-call cost at 4 KiB shards, and CRC32C over 1 MiB. Target: addon sync encode at
 * least ENCODE_RATIO_TARGET of ISA-L.
 *
 * Method, the same on both sides (see erasure-baseline.c): malloc'd buffers, one warm-up call,
 * five rounds of a fifth of the measurement time, best round reported. Async calls are
 * awaited one at a time, so they measure one pool thread plus the hand-off cost.
 *
 * Run standalone after `npm run build:native && npx tsc -p tsconfig.json`:
 *   node dist/userspace/bench/erasure.js [--quick]
 */
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { assert } from '../src/assert.js';
import { crc32c, crc32cAsync, ReedSolomon } from '../src/erasure/index.js';

/** Addon sync encode must reach this fraction of plain ISA-L's GB/s. */
const ENCODE_RATIO_TARGET = 0.7;
const MEASURE_SECONDS = 0.3;
const MEASURE_SECONDS_QUICK = 0.1;
const ROUNDS = 5;
const GEOMETRIES: ReadonlyArray<readonly [number, number]> = [[4, 2], [8, 3], [10, 4]];
const BLOCK_BYTES_LIST = [1024 * 1024, 32 * 1024 * 1024];
const PER_CALL_SHARD_BYTES = 4096;
const CRC_BYTES = 1024 * 1024;
const BASELINE_SOURCE_RELATIVE = join('userspace', 'bench', 'erasure-baseline.c');

/** One line of erasure-baseline's output. */
interface BaselineResult {
  readonly bytesPerSecond: number;
  readonly nsPerCall: number;
}

/** Calls per second: best of ROUNDS rounds of seconds / ROUNDS, after one warm-up call. */
export function measureSync(call: () => void, seconds: number): number {
  let best = 0;
  call();
  for (let round = 0; round < ROUNDS; round++) {
    const roundMs = (seconds * 1000) / ROUNDS;
    const start = performance.now();
    let elapsedMs = 0;
    let calls = 0;
    // Batches double while short, so the clock costs nothing next to small calls, and stop
    // doubling early enough that a round overshoots by at most about an eighth.
    for (let batch = 1; elapsedMs < roundMs; ) {
      for (let index = 0; index < batch; index++) call();
      calls += batch;
      elapsedMs = performance.now() - start;
      if (elapsedMs < roundMs / 16) batch *= 2;
    }
    best = Math.max(best, (calls * 1000) / elapsedMs);
  }
  return best;
}

/** measureSync for a promise-returning call, awaited one at a time. */
export async function measureAsync(call: () => Promise<unknown>, seconds: number): Promise<number> {
  let best = 0;
  await call();
  for (let round = 0; round < ROUNDS; round++) {
    const start = performance.now();
    let elapsedMs = 0;
    let calls = 0;
    const roundMs = (seconds * 1000) / ROUNDS;
    while (elapsedMs < roundMs) {
      await call();
      calls++;
      elapsedMs = performance.now() - start;
    }
    best = Math.max(best, (calls * 1000) / elapsedMs);
  }
  return best;
}

/** The folder above this module that holds `relative`, for source and dist alike. */
function findUpwards(relative: string): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let folder = start; ; folder = dirname(folder)) {
    if (existsSync(join(folder, relative))) return join(folder, relative);
    if (dirname(folder) === folder) throw new Error(`${relative} not found above ${start}`);
  }
}

/** Compiles erasure-baseline.c into `folder`; throws saying what to install when it cannot. */
function compileBaseline(folder: string): string {
  const source = findUpwards(BASELINE_SOURCE_RELATIVE);
  const executable = join(folder, 'erasure-baseline');
  try {
    execFileSync('cc', ['-O2', '-o', executable, source, '-lisal'], { stdio: 'pipe' });
  } catch (error) {
    const { code, stderr } = error as { code?: string; stderr?: Buffer };
    if (code === 'ENOENT') {
      throw new Error('erasure bench: no C compiler `cc`: apt-get install gcc', { cause: error });
    }
    throw new Error(
      'erasure bench: cannot compile erasure-baseline.c against ISA-L' +
        ` (apt-get install libisal-dev):\n${stderr?.toString() ?? String(error)}`,
      { cause: error },
    );
  }
  return executable;
}

/** Runs the baseline and returns its result lines by first word. */
function runBaseline(executable: string, args: readonly string[]): Map<string, BaselineResult> {
  const output = execFileSync(executable, args, { encoding: 'utf8' });
  const results = new Map<string, BaselineResult>();
  for (const line of output.trim().split('\n')) {
    const fields = line.split(' ');
    const kind = fields[0]!;
    // Rates sit at fixed positions from the end: RS lines end with "ok"/"mismatch".
    const tail = kind === 'reconstruct' ? fields.slice(-3, -1) : fields.slice(-2);
    if (kind === 'reconstruct' && fields.at(-1) !== 'ok') {
      throw new Error(`erasure-baseline: wrong reconstruction: ${line}`);
    }
    results.set(kind, { bytesPerSecond: Number(tail[0]), nsPerCall: Number(tail[1]) });
  }
  return results;
}

/** Shards for one geometry: random data, zeroed parity, each its own allocation. */
function makeShards(k: number, p: number, shardBytes: number): Buffer[] {
  return Array.from({ length: k + p }, (_, index) => {
    const shard = Buffer.allocUnsafeSlow(shardBytes);
    return index < k ? randomFillSync(shard) : shard.fill(0);
  });
}

interface RsRates {
  readonly encodeSync: number;
  readonly encodeAsync: number;
  readonly reconstructSync: number;
  readonly reconstructAsync: number;
}

/** Calls per second of the addon's four calls for one geometry and shard length. */
async function measureAddon(
  k: number,
  p: number,
  shardBytes: number,
  seconds: number,
): Promise<RsRates> {
  const codec = new ReedSolomon(k, p);
  const shards = makeShards(k, p, shardBytes);
  const data = shards.slice(0, k);
  const parity = shards.slice(k);
  const encodeSync = measureSync(() => codec.encode(data, parity), seconds);
  const encodeAsync = await measureAsync(() => codec.encodeAsync(data, parity), seconds);
  const lostCount = Math.min(2, p);
  const present = shards.map((_, index) => index >= lostCount);
  const expected = shards.slice(0, lostCount).map((shard) => Buffer.from(shard));
  shards.slice(0, lostCount).forEach((shard) => shard.fill(0));
  const reconstructSync = measureSync(() => codec.reconstruct(shards, present), seconds);
  const reconstructAsync = await measureAsync(
    () => codec.reconstructAsync(shards, present),
    seconds,
  );
  // Every reconstruct rewrote the lost shards in place: they must hold the original bytes.
  expected.forEach((shard, index) => assert(shard.equals(shards[index]!)));
  return { encodeSync, encodeAsync, reconstructSync, reconstructAsync };
}

function formatRate(bytesPerSecond: number): string {
  return (bytesPerSecond / 1e9).toFixed(2).padStart(6);
}

function formatRatio(value: number, reference: number): string {
  return `${formatRate(value)} (${(value / reference).toFixed(2)}x)`;
}

function formatMiB(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toString()} MiB`;
}

/** The throughput table; returns the worst sync encode ratio. */
async function benchThroughput(executable: string, seconds: number): Promise<number> {
  let worstEncodeRatio = Number.POSITIVE_INFINITY;
  process.stdout.write(
    'erasure: Reed-Solomon, GB/s of data bytes, single thread (ratio = addon / ISA-L C)\n' +
      '  k+p   block   shard    op           ISA-L C   addon sync       addon async\n',
  );
  for (const blockBytes of BLOCK_BYTES_LIST) {
    for (const [k, p] of GEOMETRIES) {
      const shardBytes = Math.floor(blockBytes / k);
      const dataBytes = k * shardBytes;
      const args = ['rs', String(seconds), String(k), String(p), String(shardBytes)];
      const baseline = runBaseline(executable, args);
      const rates = await measureAddon(k, p, shardBytes, seconds);
      const encodeC = baseline.get('encode')!.bytesPerSecond;
      const reconstructC = baseline.get('reconstruct')!.bytesPerSecond;
      worstEncodeRatio = Math.min(worstEncodeRatio, (rates.encodeSync * dataBytes) / encodeC);
      const prefix =
        `  ${`${k}+${p}`.padEnd(5)} ${formatMiB(blockBytes).padEnd(7)}` +
        ` ${String(shardBytes).padEnd(8)}`;
      const row = (op: string, c: number, sync: number, async: number) =>
        `${prefix} ${op.padEnd(12)} ${formatRate(c)}    ${formatRatio(sync * dataBytes, c)}` +
        `   ${formatRatio(async * dataBytes, c)}\n`;
      process.stdout.write(
        row('encode', encodeC, rates.encodeSync, rates.encodeAsync) +
          row('reconstruct', reconstructC, rates.reconstructSync, rates.reconstructAsync),
      );
    }
  }
  return worstEncodeRatio;
}

/** Per-call encode time at 4 KiB shards, where the binding's fixed cost shows. */
async function benchPerCall(executable: string, seconds: number): Promise<void> {
  process.stdout.write(
    `erasure: encode per call, ${PER_CALL_SHARD_BYTES}-byte shards, microseconds (extra over C)\n` +
      '  k+p   ISA-L C   addon sync        addon async\n',
  );
  for (const [k, p] of [[4, 2], [10, 4]] as const) {
    const args = ['rs', String(seconds), String(k), String(p), String(PER_CALL_SHARD_BYTES)];
    const microsecondsC = runBaseline(executable, args).get('encode')!.nsPerCall / 1000;
    const rates = await measureAddon(k, p, PER_CALL_SHARD_BYTES, seconds);
    const syncUs = 1e6 / rates.encodeSync;
    const asyncUs = 1e6 / rates.encodeAsync;
    const extra = (value: number) =>
      `${value.toFixed(2).padStart(7)} (+${(value - microsecondsC).toFixed(2)})`;
    process.stdout.write(
      `  ${`${k}+${p}`.padEnd(5)} ${microsecondsC.toFixed(2).padStart(7)}` +
        `   ${extra(syncUs).padEnd(17)} ${extra(asyncUs)}\n`,
    );
  }
}

async function benchCrc(executable: string, seconds: number): Promise<void> {
  const data = randomFillSync(Buffer.allocUnsafeSlow(CRC_BYTES));
  const args = ['crc', String(seconds), String(CRC_BYTES)];
  const rateC = runBaseline(executable, args).get('crc32c')!;
  const syncBytesPerSecond = measureSync(() => crc32c(data), seconds) * CRC_BYTES;
  const asyncBytesPerSecond = (await measureAsync(() => crc32cAsync(data), seconds)) * CRC_BYTES;
  process.stdout.write(
    `erasure: crc32c, ${formatMiB(CRC_BYTES)} buffer (hot), GB/s\n` +
      `  ISA-L C crc32_iscsi ${formatRate(rateC.bytesPerSecond)}   addon sync ` +
      `${formatRatio(syncBytesPerSecond, rateC.bytesPerSecond)}   addon async ` +
      `${formatRatio(asyncBytesPerSecond, rateC.bytesPerSecond)}\n`,
  );
}

/** Prints the erasure section of the benchmark. `quick` shortens every measurement. */
export async function runErasureBench(options: { quick: boolean }): Promise<void> {
  const seconds = options.quick ? MEASURE_SECONDS_QUICK : MEASURE_SECONDS;
  const folder = mkdtempSync(join(tmpdir(), 'shmr-erasure-bench-'));
  try {
    const executable = compileBaseline(folder);
    const worstEncodeRatio = await benchThroughput(executable, seconds);
    const verdict = worstEncodeRatio >= ENCODE_RATIO_TARGET ? 'met' : 'NOT MET';
    process.stdout.write(
      `  target: addon sync encode >= ${ENCODE_RATIO_TARGET.toFixed(2)}x ISA-L C: ${verdict}` +
        ` (worst ${worstEncodeRatio.toFixed(2)}x; differences under ~20% are machine noise)\n`,
    );
    await benchPerCall(executable, seconds);
    await benchCrc(executable, seconds);
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  await runErasureBench({ quick: process.argv.includes('--quick') });
}
