/**
 * `npm run bench`: runs the benchmark sections in order and prints their tables.
 *
 * Sections: core (core.ts: shmr vs the raw backing folder vs mergerfs, fio and metadata
 * workloads, needs root), erasure (erasure.ts: the erasure addon vs plain ISA-L), latency
 * (latency.ts: 4 KiB reads during a big erasure-coded write), nbd (nbd.ts: nbdcopy vs
 * nbdkit), compression (compression.ts: the block codec vs memcpy), tiering (tiering.ts:
 * rewrite Single 1 MiB -> Erasure 4+2 32 MiB vs cp) and metrics (metrics.ts: sequential
 * throughput with metrics on vs off).
 * The bench reports targets as PASS/MISS; a MISS never changes the exit status. Exit status:
 * 0 when every section ran, 1 when one could not run or failed, 2 on a usage error, 130 when
 * interrupted (mounts and temp folders are removed first).
 *
 * Usage (after `npm run build`):
 *   node dist/userspace/bench/main.js [--quick]
 *     [--section core|erasure|latency|nbd|compression|tiering|metrics|all] [--json FILE]
 *     [--rounds N] [--work-dir DIR] [--systems raw,mergerfs,shmr]
 *     [--tests seqwrite,seqread,randread1,randread4,randwrite,meta]
 *     [--gate-wait SEC] [--shmr-node-option OPT]... [--shmr-set KEY=VALUE]...
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import {
  CORE_TESTS, FULL_SETTINGS, QUICK_SETTINGS, runCoreBench, writeJson, type CoreSettings,
} from './core.js';
import { runCompressionBench } from './compression.js';
import { runErasureBench } from './erasure.js';
import { runLatencyBench } from './latency.js';
import { runNbdBench } from './nbd.js';
import { runTieringBench } from './tiering.js';
import { runMetricsBench } from './metrics.js';
import { findExecutable } from './host.js';
import type { CoreTest } from './report.js';
import { SYSTEM_NAMES, type ShmrSetting, type SystemName } from './systems.js';

const SECTIONS = ['core', 'erasure', 'latency', 'nbd', 'compression', 'tiering', 'metrics'] as const;
type Section = (typeof SECTIONS)[number];
/** Default parent of the core work folder: on disk by convention (/tmp may be tmpfs). */
const WORK_DIR_DEFAULT = '/var/tmp';

const USAGE = `usage: node dist/userspace/bench/main.js [options]
  --quick                 1 round, 256 MiB file, 2,000 files, 5 s random jobs (~3 min)
  --section S             core, erasure, latency, nbd, compression, tiering, metrics or all
                          (default all)
  --json FILE             write the core results as JSON to FILE
  --rounds N              rounds of the core section (default 3; --quick 1)
  --work-dir DIR          put the core work folder in DIR, on the disk under test
                          (default ${WORK_DIR_DEFAULT})
  --systems LIST          subset of ${SYSTEM_NAMES.join(',')}
  --tests LIST            subset of ${CORE_TESTS.join(',')}
  --gate-wait SEC         longest wait for an idle machine before each test
  --shmr-node-option OPT  extra Node option for the shmr daemon (repeatable),
                          e.g. --shmr-node-option=--cpu-prof
  --shmr-set KEY=VALUE    a setting of the core section's shmr config, by dotted key, the
                          value in YAML (repeatable), e.g. --shmr-set fuse.writeback_cache=false
`;

/** A command line or prerequisite problem: printed as one message, no stack. */
class BenchSetupError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
    this.name = 'BenchSetupError';
  }
}

/** Parsed command line. */
interface BenchOptions {
  readonly sections: readonly Section[];
  readonly quick: boolean;
  readonly jsonPath: string | undefined;
  readonly workDir: string;
  readonly settings: CoreSettings;
  readonly systems: readonly SystemName[];
  readonly tests: readonly CoreTest[];
  readonly shmrNodeOptions: readonly string[];
  readonly shmrSettings: readonly ShmrSetting[];
}

/** Splits a comma list and checks every item against `allowed`. */
function parseList<T extends string>(
  text: string | undefined,
  allowed: readonly T[],
  flag: string,
): T[] {
  if (text === undefined) return [...allowed];
  const items = text.split(',').map((item) => item.trim()).filter((item) => item !== '');
  for (const item of items) {
    if (!(allowed as readonly string[]).includes(item)) {
      throw new BenchSetupError(`${flag}: unknown "${item}" (one of ${allowed.join(', ')})`, 2);
    }
  }
  if (items.length === 0) throw new BenchSetupError(`${flag}: empty list`, 2);
  return items as T[];
}

function parsePositive(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new BenchSetupError(`${flag}: "${text}" is not a count`, 2);
  }
  return value;
}

function parseOptions(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: 'boolean', default: false },
      section: { type: 'string', default: 'all' },
      json: { type: 'string' },
      rounds: { type: 'string' },
      'work-dir': { type: 'string', default: WORK_DIR_DEFAULT },
      systems: { type: 'string' },
      tests: { type: 'string' },
      'gate-wait': { type: 'string' },
      'shmr-node-option': { type: 'string', multiple: true, default: [] },
      'shmr-set': { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const section = values.section;
  if (section !== 'all' && !(SECTIONS as readonly string[]).includes(section)) {
    throw new BenchSetupError(`--section: unknown "${section}" (${SECTIONS.join(', ')} or all)`, 2);
  }
  const base = values.quick ? QUICK_SETTINGS : FULL_SETTINGS;
  const rounds = parsePositive(values.rounds, '--rounds');
  const gateWaitSec = parsePositive(values['gate-wait'], '--gate-wait');
  if (rounds === 0) throw new BenchSetupError('--rounds: at least 1', 2);
  return {
    sections: section === 'all' ? SECTIONS : [section as Section],
    quick: values.quick,
    jsonPath: values.json,
    workDir: values['work-dir'],
    settings: {
      ...base, rounds: rounds ?? base.rounds, gateWaitSec: gateWaitSec ?? base.gateWaitSec,
    },
    systems: parseList(values.systems, SYSTEM_NAMES, '--systems'),
    tests: parseList(values.tests, CORE_TESTS, '--tests'),
    shmrNodeOptions: values['shmr-node-option'],
    shmrSettings: values['shmr-set'].map(parseSetting),
  };
}

/** `fuse.writeback_cache=false` as a key path and a YAML value. */
function parseSetting(text: string): ShmrSetting {
  const equals = text.indexOf('=');
  const path = text.slice(0, equals).split('.');
  if (equals < 1 || path.some((key) => key === '')) {
    throw new BenchSetupError(`--shmr-set: "${text}" is not KEY=VALUE (a dotted key such as fuse.writeback_cache)`, 2);
  }
  return { path, value: parseYaml(text.slice(equals + 1)) as unknown };
}

/** Throws one message listing everything the core section is missing, with its apt package. */
function checkCorePrerequisites(options: BenchOptions): void {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) {
    missing.push('root (mounts, /proc/sys/vm/drop_caches): run with sudo');
  }
  if (!existsSync('/dev/fuse')) {
    missing.push('/dev/fuse: apt-get install fuse3 (and modprobe fuse)');
  }
  const tools: Array<[string, string, boolean]> = [
    ['fio', 'fio', true],
    ['fusermount3', 'fuse3', true],
    ['mergerfs', 'mergerfs', options.systems.includes('mergerfs')],
  ];
  for (const [tool, aptPackage, isNeeded] of tools) {
    if (isNeeded && findExecutable(tool) === undefined) {
      missing.push(`${tool}: apt-get install ${aptPackage}`);
    }
  }
  if (!existsSync(options.workDir)) missing.push(`--work-dir ${options.workDir}: no such folder`);
  if (missing.length > 0) {
    const lines = missing.map((line) => `  - ${line}`).join('\n');
    throw new BenchSetupError(`bench core: missing prerequisites:\n${lines}`, 1);
  }
}

/** Runs the sections; resolves with the exit status. */
async function main(argv: readonly string[]): Promise<number> {
  const options = parseOptions(argv);
  if (options.sections.includes('core') || options.sections.includes('metrics')) checkCorePrerequisites(options);
  const controller = new AbortController();
  let section: Section | undefined;
  const onSignal = (signalName: NodeJS.Signals) => {
    if (controller.signal.aborted || section !== 'core') process.exit(130);
    process.stderr.write(`\nbench: ${signalName}: stopping, unmounting and cleaning up...\n`);
    controller.abort(new Error(`interrupted by ${signalName}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    for (section of options.sections) {
      if (section === 'core') {
        const result = await runCoreBench({
          settings: options.settings, parentDir: options.workDir, systems: options.systems,
          tests: options.tests, shmrNodeOptions: options.shmrNodeOptions, shmrSettings: options.shmrSettings, signal: controller.signal,
        });
        if (options.jsonPath !== undefined) {
          await writeJson(options.jsonPath, result);
          process.stdout.write(`core results written to ${options.jsonPath}\n`);
        }
      } else if (section === 'erasure') {
        await runErasureBench({ quick: options.quick });
      } else if (section === 'latency') {
        await runLatencyBench({ quick: options.quick, workDir: options.workDir });
      } else if (section === 'compression') {
        await runCompressionBench({ quick: options.quick });
      } else if (section === 'tiering') {
        await runTieringBench({ quick: options.quick, workDir: options.workDir });
      } else if (section === 'metrics') {
        await runMetricsBench({ quick: options.quick, workDir: options.workDir, signal: controller.signal });
      } else {
        await runNbdBench({ quick: options.quick, shmrNodeOptions: options.shmrNodeOptions });
      }
      process.stdout.write('\n');
    }
  } catch (error) {
    if (controller.signal.aborted) return 130;
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof BenchSetupError) {
      process.stderr.write(`${error.message}\n`);
      if (error.exitCode === 2) process.stderr.write(USAGE);
      process.exit(error.exitCode);
    }
    const code = (error as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`bench: ${(error as Error).message}\n${USAGE}`);
      process.exit(2);
    }
    const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`bench: ${text}\n`);
    process.exit(1);
  },
);
