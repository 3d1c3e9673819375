/**
 * Metadata workload of the core benchmark: create, then stat, then unlink N empty files in one
 * folder, one synchronous call at a time, timed per phase.
 *
 * It runs in a child process of its own (this file is also that child's entry point), so the
 * bench harness's event loop, timers and garbage collector are not on the measured path, as
 * the FUSE ceiling probes' meta.js did. The child creates the folder, leaves it empty and
 * removes it; it prints one JSON line: `{"createPerSecond":..,"statPerSecond":..,...}`.
 *
 * Usage as a child: node dist/userspace/bench/meta-ops.js FOLDER COUNT
 */
import {
  closeSync, constants, mkdirSync, openSync, rmdirSync, statSync, unlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { assert } from '../src/assert.js';
import { runChild } from './host.js';

/** Rates of one metadata run, in operations per second. */
export interface MetaRates {
  readonly createPerSecond: number;
  readonly statPerSecond: number;
  readonly unlinkPerSecond: number;
}

/** Each phase gets this long per file at least, plus a fixed start-up allowance. */
const TIMEOUT_MS_PER_FILE = 10;
const TIMEOUT_MS_BASE = 60_000;
const FILE_MODE = 0o644;

/** Operations per second of `call` applied to every path. */
function timePhase(paths: readonly string[], call: (path: string) => void): number {
  const start = process.hrtime.bigint();
  for (const path of paths) call(path);
  const elapsedNs = Number(process.hrtime.bigint() - start);
  return (paths.length * 1e9) / Math.max(elapsedNs, 1);
}

/** The child's work: the three timed phases over `count` files in `folder`. */
function measure(folder: string, count: number): MetaRates {
  assert(Number.isSafeInteger(count));
  assert(count > 0);
  mkdirSync(folder);
  const paths = Array.from({ length: count }, (_, index) =>
    join(folder, `f${String(index).padStart(7, '0')}`));
  const flags = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY;
  const createPerSecond = timePhase(paths, (path) => closeSync(openSync(path, flags, FILE_MODE)));
  const statPerSecond = timePhase(paths, (path) => {
    assert(statSync(path).size === 0);
  });
  const unlinkPerSecond = timePhase(paths, (path) => unlinkSync(path));
  rmdirSync(folder);
  return { createPerSecond, statPerSecond, unlinkPerSecond };
}

/** Runs the metadata workload in a fresh Node process on `folder` (which must not exist). */
export async function runMetaOps(
  folder: string,
  count: number,
  signal: AbortSignal,
): Promise<MetaRates> {
  const script = fileURLToPath(import.meta.url);
  const result = await runChild(process.execPath, [script, folder, String(count)], {
    timeoutMs: TIMEOUT_MS_BASE + count * TIMEOUT_MS_PER_FILE,
    signal,
  });
  if (result.isTimedOut) throw new Error(`metadata workload did not finish in time on ${folder}`);
  if (result.code !== 0) {
    throw new Error(`metadata workload failed on ${folder}: ${result.stderr.trim().slice(0, 500)}`);
  }
  const rates = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '') as MetaRates;
  assert(rates.createPerSecond > 0);
  assert(rates.statPerSecond > 0);
  assert(rates.unlinkPerSecond > 0);
  return rates;
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  const [folder, countText] = process.argv.slice(2);
  if (folder === undefined || countText === undefined) {
    process.stderr.write('usage: meta-ops.js FOLDER COUNT\n');
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(measure(folder, Number(countText)))}\n`);
}
