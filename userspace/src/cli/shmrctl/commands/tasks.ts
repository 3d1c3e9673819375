/**
 * Commands that start or follow background tasks: `shmrctl rewrite PATH --pool P ...
 * [--wait]`, `shmrctl scrub [--pool P] [--repair] [--wait]`, `shmrctl tasks`, `shmrctl task
 * ID`, `shmrctl cancel ID`.
 *
 * --wait follows the task through its TaskProgress and TaskFinished signals (subscribed before
 * the task starts, so a quick task cannot finish unseen), with GetTask as a fallback every
 * WAIT_POLL_MS in case a signal is lost; a progress bar runs on a terminal.
 */
import { resolve } from 'node:path';
import type { ShmrClient } from '../../../dbus/index.js';
import { formatSize, parseSize } from '../../../config/index.js';
import { ProgressBar } from '../../progress.js';
import { EXIT_CODES, UsageError } from '../exit-codes.js';
import { ok, parseCommand, required, withClient, type CommandResult } from '../command.js';

const WAIT_POLL_MS = 1000;

/** A task as GetTask returns it (TaskInfo of the task manager). */
interface Task {
  id: string; kind: string; target: string; state: string;
  doneBytes: number; totalBytes: number; doneBlocks: number; totalBlocks: number; errors: string[];
}

function describe(task: Task): string {
  const percent = task.totalBytes > 0 ? ` ${Math.floor((100 * task.doneBytes) / task.totalBytes)}%` : '';
  const errors = task.errors.length > 0 ? ` (${task.errors.length} errors: ${task.errors[0] ?? ''})` : '';
  return `${task.id} ${task.kind} ${task.target}: ${task.state}${percent}, ${task.doneBlocks}/${task.totalBlocks} blocks, ` +
    `${formatSize(task.doneBytes)} of ${formatSize(task.totalBytes)}${errors}`;
}

function taskResult(task: Task): CommandResult {
  const code = task.state === 'done' ? EXIT_CODES.ok : EXIT_CODES.failed;
  return { json: task, text: describe(task), code };
}

/** Starts a task with `start` and, when asked, waits for it to end. */
async function startTask(client: ShmrClient, options: { wait: boolean; label: string }, start: () => Promise<string>): Promise<CommandResult> {
  if (!options.wait) {
    const id = await start();
    return ok({ taskId: id }, `started task ${id}`);
  }
  const seen = new Map<string, Task>();
  let notify = () => undefined as void;
  const onEvent = ([id, task]: unknown[]) => {
    seen.set(String(id), task as Task);
    notify();
  };
  await client.onSignal('TaskProgress', onEvent);
  await client.onSignal('TaskFinished', ([id, , task]) => onEvent([id, task]));
  const id = await start();
  const bar = new ProgressBar(options.label);
  for (;;) {
    const task = seen.get(id) ?? ((await client.call('GetTask', id))[0] as Task);
    bar.update(task.doneBytes, task.totalBytes, task.state);
    if (task.state !== 'running') {
      bar.finish();
      return taskResult(task);
    }
    seen.delete(id);
    await new Promise<void>((done) => {
      const timer = setTimeout(done, WAIT_POLL_MS);
      notify = () => {
        clearTimeout(timer);
        done();
      };
    });
  }
}

export async function rewrite(args: readonly string[]): Promise<CommandResult> {
  const parsed = parseCommand(args, {
    pool: { type: 'string' }, topology: { type: 'string' }, 'block-size': { type: 'string' },
    parallel: { type: 'string' }, wait: { type: 'boolean' },
  }, 1);
  const path = resolve(required(parsed, 0, 'PATH'));
  const pool = parsed.values['pool'];
  if (typeof pool !== 'string') throw new UsageError('--pool P is required');
  const blockSizeText = parsed.values['block-size'];
  const blockBytes = typeof blockSizeText === 'string' ? parseSize(blockSizeText) : 0;
  if (blockBytes === undefined) throw new UsageError(`--block-size: "${String(blockSizeText)}" is not a size (e.g. 32MiB)`);
  const parallelText = parsed.values['parallel'];
  const parallel = typeof parallelText === 'string' ? Number(parallelText) : 0;
  if (!Number.isInteger(parallel) || parallel < 0 || parallel > 0xffffffff) throw new UsageError(`--parallel: "${String(parallelText)}" is not a count`);
  const topology = typeof parsed.values['topology'] === 'string' ? parsed.values['topology'] : '';
  return withClient(parsed, path, (client) =>
    startTask(client, { wait: parsed.values['wait'] === true, label: 'rewrite' }, async () =>
      String((await client.call('RewriteFile', path, pool, topology, BigInt(blockBytes), parallel))[0])));
}

export async function scrub(args: readonly string[]): Promise<CommandResult> {
  const parsed = parseCommand(args, { pool: { type: 'string' }, repair: { type: 'boolean' }, wait: { type: 'boolean' } }, 0);
  const pool = typeof parsed.values['pool'] === 'string' ? parsed.values['pool'] : '';
  return withClient(parsed, undefined, (client) =>
    startTask(client, { wait: parsed.values['wait'] === true, label: 'scrub' }, async () =>
      String((await client.call('Scrub', pool, parsed.values['repair'] === true))[0])));
}

export async function tasks(args: readonly string[]): Promise<CommandResult> {
  const parsed = parseCommand(args, {}, 0);
  const [list] = await withClient(parsed, undefined, (client) => client.call('ListTasks'));
  const all = list as Task[];
  return ok(all, all.length === 0 ? 'no tasks' : all.map(describe).join('\n'));
}

export async function task(args: readonly string[]): Promise<CommandResult> {
  const parsed = parseCommand(args, {}, 1);
  const id = required(parsed, 0, 'ID');
  const [found] = await withClient(parsed, undefined, (client) => client.call('GetTask', id));
  return ok(found, describe(found as Task));
}

export async function cancel(args: readonly string[]): Promise<CommandResult> {
  const parsed = parseCommand(args, {}, 1);
  const id = required(parsed, 0, 'ID');
  const [cancelled] = await withClient(parsed, undefined, (client) => client.call('CancelTask', id));
  return ok(cancelled, describe(cancelled as Task));
}
