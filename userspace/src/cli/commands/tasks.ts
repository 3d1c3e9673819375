/**
 * `shmr tasks [--cancel ID] [--json]`: the daemon's tasks (rewrites, mover runs, scrubs, purges)
 * with their progress; --cancel asks one to stop.
 */
import { parseArgs } from 'node:util';
import { formatSize } from '../../config/index.js';
import { callControl } from '../../daemon/control.js';
import type { TaskInfo } from '../../tasks/task-manager.js';
import { configFrom } from '../config-option.js';

export async function tasksCommand(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: { config: { type: 'string', short: 'c' }, cancel: { type: 'string' }, json: { type: 'boolean' } },
  });
  const config = configFrom(values.config);
  if (values.cancel !== undefined) {
    const info = (await callControl(config.metadataDir, 'cancelTask', { id: Number(values.cancel) })) as TaskInfo;
    process.stdout.write(values.json === true ? `${JSON.stringify(info)}\n` : `task ${info.id}: cancel requested (${info.state})\n`);
    return 0;
  }
  const { tasks } = (await callControl(config.metadataDir, 'tasks', {})) as { tasks: TaskInfo[] };
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ tasks })}\n`);
    return 0;
  }
  for (const task of tasks) {
    const percent = task.totalBytes > 0 ? ` ${Math.floor((100 * task.doneBytes) / task.totalBytes)}%` : '';
    process.stdout.write(`${task.id}\t${task.kind}\t${task.state}${percent}\t${formatSize(task.doneBytes)}/` +
      `${formatSize(task.totalBytes)}\t${task.target}${task.errors.length > 0 ? `\t! ${task.errors[0]}` : ''}\n`);
  }
  return 0;
}
