/**
 * TaskManager: every long-running job of a daemon (rewrite, mover run, scrub, purge) as a task
 * with an id, progress counters, a state and a way to cancel it.
 *
 * Invariants:
 * - `start` returns at once; the job runs on the event loop in the background and never blocks
 *   the caller (control methods answer with the task id).
 * - A task leaves 'running' exactly once, for 'done', 'failed' or 'cancelled', and emits
 *   'finished' then; 'progress' events are throttled to one per PROGRESS_INTERVAL_MS per task.
 * - Finished tasks are kept for listing, at most FINISHED_TASKS_MAX (oldest dropped first).
 */
import { EventEmitter } from 'node:events';
import { assert } from '../assert.js';
import { Errno, FsError } from '../errno.js';

/** Finished tasks kept for `list`; older ones are forgotten. */
export const FINISHED_TASKS_MAX = 256;
/** Running tasks at once; more is refused with EAGAIN (a caller retries later). */
export const RUNNING_TASKS_MAX = 64;
/** Errors recorded per task; later ones are counted in the last line. */
const TASK_ERRORS_MAX = 100;
const PROGRESS_INTERVAL_MS = 250;

export type TaskState = 'running' | 'done' | 'failed' | 'cancelled';

/** What a task reports about itself (JSON-able: sent over the control socket and D-Bus). */
export interface TaskInfo {
  id: number;
  kind: string;
  target: string;
  state: TaskState;
  doneBytes: number;
  totalBytes: number;
  doneBlocks: number;
  totalBlocks: number;
  /** Milliseconds since the epoch. */
  startedAt: number;
  finishedAt?: number;
  errors: string[];
  /** What the job returned when it finished (a report), if anything. */
  result?: unknown;
}

/** Handed to a job: where it reports progress, and the signal that cancels it. */
export interface TaskContext {
  readonly signal: AbortSignal;
  /** Adds to the totals (a job may discover its work as it goes). */
  addTotal(work: { bytes?: number; blocks?: number }): void;
  /** Adds to the done counters. */
  addDone(work: { bytes?: number; blocks?: number }): void;
  /** Records a non-fatal error (the task goes on). */
  noteError(message: string): void;
}

export type TaskJob = (context: TaskContext) => Promise<unknown>;

interface TaskEntry {
  readonly info: TaskInfo;
  readonly controller: AbortController;
  lastProgressMs: number;
  done: Promise<TaskInfo>;
}

export interface TaskManagerEvents {
  progress: [TaskInfo];
  finished: [TaskInfo];
}

/** The tasks of one daemon. */
export class TaskManager extends EventEmitter<TaskManagerEvents> {
  readonly #tasks = new Map<number, TaskEntry>();
  #nextId = 1;

  /** Starts `job` as a task and returns its info at once. Throws EAGAIN when too many run. */
  start(kind: string, target: string, job: TaskJob): TaskInfo {
    if (this.#runningCount() >= RUNNING_TASKS_MAX) {
      throw new FsError(Errno.EAGAIN, 'start task', `${RUNNING_TASKS_MAX} tasks are running already`);
    }
    const info: TaskInfo = {
      id: this.#nextId++, kind, target, state: 'running', doneBytes: 0, totalBytes: 0,
      doneBlocks: 0, totalBlocks: 0, startedAt: Date.now(), errors: [],
    };
    const entry: TaskEntry = { info, controller: new AbortController(), lastProgressMs: 0, done: Promise.resolve(info) };
    this.#tasks.set(info.id, entry);
    entry.done = this.#run(entry, job);
    return { ...info };
  }

  async #run(entry: TaskEntry, job: TaskJob): Promise<TaskInfo> {
    const { info } = entry;
    // Let the caller receive the id before any of the job runs.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      info.result = await job(this.#context(entry));
      info.state = entry.controller.signal.aborted ? 'cancelled' : 'done';
    } catch (error) {
      info.state = entry.controller.signal.aborted ? 'cancelled' : 'failed';
      if (info.state === 'failed') pushError(info, error instanceof Error ? error.message : String(error));
    }
    info.finishedAt = Date.now();
    this.#forgetOldFinished();
    this.emit('finished', { ...info });
    return { ...info };
  }

  #context(entry: TaskEntry): TaskContext {
    const { info } = entry;
    return {
      signal: entry.controller.signal,
      addTotal: (work) => {
        info.totalBytes += work.bytes ?? 0;
        info.totalBlocks += work.blocks ?? 0;
      },
      addDone: (work) => {
        info.doneBytes += work.bytes ?? 0;
        info.doneBlocks += work.blocks ?? 0;
        this.#reportProgress(entry);
      },
      noteError: (message) => pushError(info, message),
    };
  }

  #reportProgress(entry: TaskEntry): void {
    const nowMs = Date.now();
    if (nowMs - entry.lastProgressMs < PROGRESS_INTERVAL_MS) return;
    entry.lastProgressMs = nowMs;
    this.emit('progress', { ...entry.info });
  }

  /** Every task kept, oldest first. */
  list(): TaskInfo[] {
    return [...this.#tasks.values()].map((entry) => ({ ...entry.info }));
  }

  /** One task; ENOENT naming the id when it is unknown (or long forgotten). */
  get(id: number): TaskInfo {
    return { ...this.#require(id).info };
  }

  /** Resolves with the task's final info when it has finished. */
  wait(id: number): Promise<TaskInfo> {
    return this.#require(id).done;
  }

  /** Asks a running task to stop; returns its info (a finished task is left as it is). */
  cancel(id: number): TaskInfo {
    const entry = this.#require(id);
    if (entry.info.state === 'running') entry.controller.abort();
    return { ...entry.info };
  }

  /** Cancels every running task and waits for all to finish (daemon shutdown). */
  async cancelAll(): Promise<void> {
    const running = [...this.#tasks.values()].filter((entry) => entry.info.state === 'running');
    for (const entry of running) entry.controller.abort();
    await Promise.all(running.map((entry) => entry.done));
  }

  #require(id: number): TaskEntry {
    const entry = this.#tasks.get(id);
    if (entry === undefined) throw new FsError(Errno.ENOENT, 'task', `no task ${id}`);
    return entry;
  }

  #runningCount(): number {
    let count = 0;
    for (const entry of this.#tasks.values()) if (entry.info.state === 'running') count += 1;
    return count;
  }

  #forgetOldFinished(): void {
    const finished = [...this.#tasks.values()].filter((entry) => entry.info.state !== 'running');
    for (const entry of finished.slice(0, Math.max(0, finished.length - FINISHED_TASKS_MAX))) {
      this.#tasks.delete(entry.info.id);
    }
    assert(this.#tasks.size <= FINISHED_TASKS_MAX + RUNNING_TASKS_MAX);
  }
}

function pushError(info: TaskInfo, message: string): void {
  if (info.errors.length < TASK_ERRORS_MAX) info.errors.push(message);
  else info.errors[TASK_ERRORS_MAX - 1] = `... and more (last: ${message})`;
}

/** Throws when `signal` was aborted: the job stops at the next safe point. */
export function throwIfCancelled(signal: AbortSignal, what: string): void {
  if (signal.aborted) throw new FsError(Errno.ECANCELED, what, 'cancelled');
}
