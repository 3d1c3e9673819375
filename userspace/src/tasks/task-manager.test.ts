/**
 * TaskManager: tasks start at once, report progress and finish exactly once with the right
 * state; cancellation goes through the AbortSignal; finished tasks are kept, bounded.
 * Method: real jobs (promises with timers) run on the manager directly.
 */
import { describe, expect, it } from 'vitest';
import { Errno, FsError } from '../errno.js';
import { FINISHED_TASKS_MAX, TaskManager, type TaskInfo } from './task-manager.js';

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

describe('TaskManager', () => {
  it('returns the id before the job runs, counts progress and finishes once', async () => {
    const tasks = new TaskManager();
    let hasRun = false;
    const finished: TaskInfo[] = [];
    tasks.on('finished', (info) => finished.push(info));
    const info = tasks.start('rewrite', '/f', async (context) => {
      hasRun = true;
      context.addTotal({ bytes: 100, blocks: 2 });
      context.addDone({ bytes: 60, blocks: 1 });
      context.addDone({ bytes: 40, blocks: 1 });
      return { ok: true };
    });
    expect(hasRun).toBe(false);
    expect(info.state).toBe('running');
    const done = await tasks.wait(info.id);
    expect(done).toMatchObject({ state: 'done', doneBytes: 100, totalBytes: 100, doneBlocks: 2, result: { ok: true } });
    expect(done.finishedAt).toBeGreaterThanOrEqual(done.startedAt);
    expect(finished.map((task) => task.id)).toEqual([info.id]);
  });

  it('records a failure and cancels through the signal', async () => {
    const tasks = new TaskManager();
    const failing = tasks.start('scrub', 'all', async () => {
      throw new FsError(Errno.EIO, 'scrub', 'disk on fire');
    });
    expect((await tasks.wait(failing.id)).errors[0]).toMatch(/disk on fire/);
    expect(tasks.get(failing.id).state).toBe('failed');
    const slow = tasks.start('mover', 'ssd -> hdd', async (context) => {
      while (!context.signal.aborted) await sleep(5);
      throw new FsError(Errno.ECANCELED, 'mover', 'cancelled');
    });
    await sleep(20);
    expect(tasks.cancel(slow.id).state).toBe('running');
    const cancelled = await tasks.wait(slow.id);
    expect(cancelled.state).toBe('cancelled');
    expect(cancelled.errors).toEqual([]);
    expect(() => tasks.get(999_999)).toThrow(/ENOENT/);
  });

  it(`keeps at most ${FINISHED_TASKS_MAX} finished tasks`, async () => {
    const tasks = new TaskManager();
    const ids: number[] = [];
    for (let index = 0; index < FINISHED_TASKS_MAX + 10; index++) {
      const info = tasks.start('purge', String(index), async () => undefined);
      ids.push(info.id);
      await tasks.wait(info.id);
    }
    const listed = tasks.list();
    expect(listed.length).toBe(FINISHED_TASKS_MAX);
    expect(listed[0]?.id).toBe(ids[10]);
  });
});
