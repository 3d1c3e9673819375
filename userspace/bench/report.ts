/**
 * Results of the core benchmark: the workloads and their targets, medians over rounds, the
 * printed tables and the JSON document.
 *
 * A workload's target is a minimum for shmr / mergerfs. The bench reports PASS or MISS next
 * to each; it never fails because of a MISS (machine noise on a shared 2-core VM is 10-40 %
 * per round, see /work/shared/notes/fuse3-ceiling.md).
 */
import type { FioTest } from './fio.js';
import type { SystemName } from './systems.js';

/** A core test: one fio job or the metadata run (which yields three workloads). */
export type CoreTest = FioTest | 'meta';

/** One printed row: a rate of one system on one workload. */
export interface Workload {
  readonly id: string;
  readonly label: string;
  readonly unit: 'MiB/s' | 'IOPS' | 'ops/s';
  readonly test: CoreTest;
  /** Minimum of shmr / mergerfs. */
  readonly target: number;
}

/** The rows, in print order, with the targets (shmr / mergerfs). */
export const WORKLOADS: readonly Workload[] = [
  {
    id: 'seq_write', label: 'seq write 1 MiB (end_fsync)', unit: 'MiB/s', test: 'seqwrite',
    target: 0.9,
  },
  { id: 'seq_read', label: 'seq read 1 MiB (cold)', unit: 'MiB/s', test: 'seqread', target: 1.0 },
  {
    id: 'rand_read_1job', label: 'rand read 4 KiB, 1 job (warm)', unit: 'IOPS', test: 'randread1',
    target: 0.35,
  },
  {
    id: 'rand_read_4jobs', label: 'rand read 4 KiB, 4 jobs (warm)', unit: 'IOPS', test: 'randread4',
    target: 0.7,
  },
  { id: 'rand_write', label: 'rand write 4 KiB', unit: 'IOPS', test: 'randwrite', target: 1.0 },
  {
    id: 'create', label: 'create (open O_CREAT + close)', unit: 'ops/s', test: 'meta',
    target: 0.5,
  },
  { id: 'stat', label: 'stat', unit: 'ops/s', test: 'meta', target: 1.0 },
  { id: 'unlink', label: 'unlink', unit: 'ops/s', test: 'meta', target: 0.8 },
];

/** One test of one system in one round. */
export interface CellRecord {
  readonly round: number;
  readonly test: CoreTest;
  readonly system: SystemName;
  /** Rates by workload id; empty when the cell failed. */
  readonly values: Readonly<Record<string, number>>;
  readonly error: string | undefined;
  /** Requests the workload issued (fio requests, or file syscalls for meta). */
  readonly operationCount: number;
  readonly elapsedMs: number;
  /** Other load before the test, percent of one core; and how long the gate waited. */
  readonly backgroundCorePercent: number;
  readonly gateWaitedMs: number;
  /** Whole-machine CPU during the measured part, percent of one core. */
  readonly machineBusyCorePercent: number;
  /** CPU seconds of the FUSE daemon (all threads) during the measured part. */
  readonly daemonCpuSeconds: number | undefined;
}

/** Per-workload summary. */
export interface WorkloadSummary extends Workload {
  readonly rounds: Readonly<Partial<Record<SystemName, Array<number | null>>>>;
  readonly median: Readonly<Partial<Record<SystemName, number>>>;
  readonly shmrToRaw: number | undefined;
  readonly shmrToMergerfs: number | undefined;
  readonly verdict: 'PASS' | 'MISS' | 'n/a';
  /** Daemon CPU microseconds per request (median over rounds), mergerfs and shmr. */
  readonly daemonUsPerOperation: Readonly<Partial<Record<SystemName, number>>>;
}

/** The median of the defined values, or undefined when there are none. */
export function median(values: ReadonlyArray<number | null | undefined>): number | undefined {
  const sorted = values
    .filter((value): value is number => typeof value === 'number')
    .sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function ratio(numerator: number | undefined, denominator: number | undefined): number | undefined {
  if (numerator === undefined || denominator === undefined || denominator <= 0) return undefined;
  return numerator / denominator;
}

/** Medians, ratios and verdicts of every workload over the recorded cells. */
export function summarize(
  cells: readonly CellRecord[],
  options: { systems: readonly SystemName[]; rounds: number },
): WorkloadSummary[] {
  return WORKLOADS.map((workload) => {
    const rounds: Partial<Record<SystemName, Array<number | null>>> = {};
    const medianBySystem: Partial<Record<SystemName, number>> = {};
    const cpuBySystem: Partial<Record<SystemName, number>> = {};
    for (const system of options.systems) {
      const mine = cells.filter((cell) => cell.system === system && cell.test === workload.test);
      if (mine.length === 0) continue;
      const perRound = Array.from({ length: options.rounds }, (_, round) =>
        mine.find((cell) => cell.round === round)?.values[workload.id] ?? null);
      rounds[system] = perRound;
      const value = median(perRound);
      if (value !== undefined) medianBySystem[system] = value;
      const cpu = median(mine.map((cell) =>
        cell.daemonCpuSeconds === undefined || cell.error !== undefined || cell.operationCount === 0
          ? undefined
          : (cell.daemonCpuSeconds * 1e6) / cell.operationCount));
      if (cpu !== undefined) cpuBySystem[system] = cpu;
    }
    const shmrToRaw = ratio(medianBySystem.shmr, medianBySystem.raw);
    const shmrToMergerfs = ratio(medianBySystem.shmr, medianBySystem.mergerfs);
    const isMet = shmrToMergerfs !== undefined && shmrToMergerfs >= workload.target;
    const verdict = shmrToMergerfs === undefined ? 'n/a' : isMet ? 'PASS' : 'MISS';
    return {
      ...workload, rounds, median: medianBySystem, shmrToRaw, shmrToMergerfs, verdict,
      daemonUsPerOperation: cpuBySystem,
    };
  });
}

function formatRate(value: number | undefined): string {
  if (value === undefined) return '-';
  return value >= 1000 ? value.toFixed(0) : value.toFixed(1);
}

function formatRatio(value: number | undefined): string {
  return value === undefined ? '-' : `${value.toFixed(2)}x`;
}

/** The main table: rates, ratios, targets and verdicts. */
export function formatTable(summaries: readonly WorkloadSummary[]): string {
  const header = [
    'workload', 'unit', 'raw', 'mergerfs', 'shmr', 'shmr/raw', 'shmr/mfs', 'target', '',
  ];
  const rows = summaries.map((summary) => [
    summary.label, summary.unit, formatRate(summary.median.raw),
    formatRate(summary.median.mergerfs), formatRate(summary.median.shmr),
    formatRatio(summary.shmrToRaw), formatRatio(summary.shmrToMergerfs),
    `>=${summary.target.toFixed(2)}x`, summary.verdict,
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const pad = (cell: string, column: number) =>
    column < 2 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!);
  const line = (cells: readonly string[]) => `  ${cells.map(pad).join('  ')}`.trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

/** Daemon CPU per request: where the FUSE systems spend their time. */
export function formatCpuTable(summaries: readonly WorkloadSummary[]): string {
  const lines = ['  daemon CPU per request, microseconds (all threads; meta: per file syscall)'];
  const seen = new Set<CoreTest>();
  for (const summary of summaries) {
    if (seen.has(summary.test)) continue;
    seen.add(summary.test);
    const mergerfs = summary.daemonUsPerOperation.mergerfs;
    const shmr = summary.daemonUsPerOperation.shmr;
    const label = summary.test === 'meta' ? 'create+stat+unlink' : summary.label;
    lines.push(`    ${label.padEnd(32)} mergerfs ${formatRate(mergerfs).padStart(7)}` +
      `   shmr ${formatRate(shmr).padStart(7)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The background-load line: how quiet the machine was before the tests. */
export function formatLoadLine(cells: readonly CellRecord[], gateCorePercentMax: number): string {
  const background = cells.map((cell) => cell.backgroundCorePercent);
  const overCount = background.filter((value) => value >= gateCorePercentMax).length;
  const maximum = background.length === 0 ? 0 : Math.max(...background);
  return '  background load before tests (% of one core): ' +
    `median ${formatRate(median(background))},` +
    ` max ${formatRate(maximum)}; ${overCount} of ${cells.length} tests started above` +
    ` ${gateCorePercentMax} % after the gate's wait\n`;
}
