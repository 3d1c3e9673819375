/**
 * Housekeeping schedule (`shmr crond`): a separate process that, on the intervals of the config's
 * `housekeeping` section, asks the running daemon to run the mover, purge expired tombstones
 * and scrub. It holds no filesystem state: everything goes through a ControlTransport.
 *
 * Invariants:
 * - One call per job at a time: a job whose previous call has not answered is skipped.
 * - A daemon that is not running (or refuses) is logged and retried at the next tick, never fatal.
 */
import type { Config } from '../config/index.js';
import type { ControlTransport } from '../daemon/control-transport.js';

/** One scheduled call. */
export interface HousekeepingJob {
  readonly name: string;
  readonly method: string;
  readonly params: Record<string, unknown>;
  readonly intervalMs: number;
}

/** The jobs the config schedules (none when `housekeeping` is absent). */
export function housekeepingJobs(config: Config): HousekeepingJob[] {
  const schedule = config.housekeeping;
  const jobs: HousekeepingJob[] = [];
  if (schedule.moverIntervalMs !== undefined) {
    jobs.push({ name: 'mover', method: 'runMover', params: {}, intervalMs: schedule.moverIntervalMs });
  }
  if (schedule.purgeIntervalMs !== undefined) {
    jobs.push({
      name: 'purge', method: 'purgeTombstones', params: { olderThanSeconds: config.tombstoneGraceMs / 1000 },
      intervalMs: schedule.purgeIntervalMs,
    });
  }
  if (schedule.scrubIntervalMs !== undefined) {
    jobs.push({ name: 'scrub', method: 'scrubTask', params: { repair: true }, intervalMs: schedule.scrubIntervalMs });
  }
  return jobs;
}

/** Runs `jobs` on their intervals until `stop`. */
export class Crond {
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #busy = new Set<string>();

  constructor(
    readonly transport: ControlTransport,
    readonly jobs: readonly HousekeepingJob[],
    readonly report: (line: string) => void,
  ) {}

  start(): void {
    for (const job of this.jobs) this.#timers.push(setInterval(() => void this.runOnce(job), job.intervalMs));
  }

  /** Calls one job now (skipped while its previous call is in flight). */
  async runOnce(job: HousekeepingJob): Promise<void> {
    if (this.#busy.has(job.name)) return;
    this.#busy.add(job.name);
    try {
      const result = await this.transport.call(job.method, job.params);
      this.report(`${job.name}: ${JSON.stringify(result)}`);
    } catch (error) {
      this.report(`${job.name}: failed: ${(error as Error).message}`);
    } finally {
      this.#busy.delete(job.name);
    }
  }

  stop(): void {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers.length = 0;
  }
}
