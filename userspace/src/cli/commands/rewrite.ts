/**
 * `shmr rewrite PATH --pool P --topology T [--block-size 32MiB] [--parallel N] [--wait] [--json]`:
 * rewrites a file to another pool, topology and block size as a task of the daemon. Without
 * --wait it prints the task id at once; with --wait it follows the task to its end.
 * On an unmounted filesystem it runs in this process and always waits.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Errno, FsError } from '../../errno.js';
import { parseSize } from '../../config/index.js';
import { callControl } from '../../daemon/control.js';
import type { TaskInfo } from '../../tasks/task-manager.js';
import { configFrom } from '../config-option.js';
import { ProgressBar } from '../progress.js';
import { runOnFilesystem } from './run.js';

export async function rewriteCommand(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args], allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' }, pool: { type: 'string' }, topology: { type: 'string' },
      'block-size': { type: 'string' }, parallel: { type: 'string' }, wait: { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  const [path] = positionals;
  if (path === undefined) throw new FsError(Errno.EINVAL, 'rewrite', 'missing PATH');
  const blockSize = values['block-size'] === undefined ? undefined : parseSize(values['block-size']);
  if (values['block-size'] !== undefined && blockSize === undefined) throw new FsError(Errno.EINVAL, 'rewrite', `--block-size: "${values['block-size']}" is not a size`);
  const params = {
    path: resolve(path), pool: values.pool, topology: values.topology, blockSize,
    parallel: values.parallel === undefined ? undefined : Number(values.parallel),
  };
  const config = configFrom(values.config);
  const { result, viaDaemon } = await runOnFilesystem<TaskInfo | { taskId: number }>(config, {
    local: async (fs) => fs.tasks.wait(fs.tiering.rewriteFile(params).taskId),
    method: 'rewriteFile', params,
  });
  let info: TaskInfo | { taskId: number } = result;
  if (viaDaemon && values.wait === true) info = await followTask(config.metadataDir, (result as { taskId: number }).taskId);
  if (values.json === true) process.stdout.write(`${JSON.stringify({ ...info, viaDaemon })}\n`);
  else if ('state' in info) process.stdout.write(`task ${info.id} ${info.state}: ${info.target} (${info.doneBytes} bytes)\n${info.errors.join('\n')}`);
  else process.stdout.write(`task ${info.taskId} started (shmr tasks to follow it)\n`);
  return 'state' in info && info.state !== 'done' ? 1 : 0;
}

/** Polls a task of the daemon until it finishes, drawing a progress bar on a terminal. */
export async function followTask(metadataDir: string, id: number): Promise<TaskInfo> {
  const bar = new ProgressBar(`task ${id}`);
  for (;;) {
    const info = (await callControl(metadataDir, 'task', { id })) as TaskInfo;
    bar.update(info.doneBytes, info.totalBytes);
    if (info.state !== 'running') {
      bar.finish();
      return info;
    }
    await new Promise((done) => setTimeout(done, 200));
  }
}
