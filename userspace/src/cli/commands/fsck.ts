/**
 * `shmr fsck --config FILE [--repair] [--json]`: cross-checks metadata and shard files.
 * Exit codes: 0 clean (or everything repaired), 3 problems remain, 1 failure.
 */
import { parseArgs } from 'node:util';
import { fsck, type FsckReport } from '../../tasks/fsck.js';
import { configFrom } from '../config-option.js';
import { runOnFilesystem } from './run.js';

export async function fsckCommand(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: { config: { type: 'string', short: 'c' }, repair: { type: 'boolean' }, json: { type: 'boolean' } },
  });
  const repair = values.repair === true;
  const { result: report, viaDaemon } = await runOnFilesystem<FsckReport>(configFrom(values.config), {
    local: (fs) => fsck(fs, { repair }), method: 'fsck', params: { repair },
  });
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ ...report, viaDaemon }, null, 2)}\n`);
  } else {
    const lines = [`fsck: ${report.inodes} inodes, ${report.blocks} blocks, ${report.shardFiles} shard files: ` +
      `${report.problems.length} problem(s), ${report.repaired.length} repaired`];
    for (const problem of report.problems) lines.push(`  ! ${problem}`);
    for (const repaired of report.repaired) lines.push(`  + ${repaired}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  const isFixed = repair && report.problems.every((problem) => !problem.includes('cannot repair'));
  return report.isClean || isFixed ? 0 : 3;
}
