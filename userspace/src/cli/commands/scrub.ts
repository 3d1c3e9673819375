/**
 * `shmr scrub --config FILE [--pool P] [--repair] [--restart] [--rate BYTES/s] [--json]`:
 * verifies every shard, repairs with --repair, reports counts and affected files.
 * Exit codes: 0 all healthy (or everything repaired), 3 problems found (or left), 1 failure.
 */
import { parseArgs } from 'node:util';
import { parseSize } from '../../config/index.js';
import { scrubOptions } from '../../daemon/methods.js';
import { scrub, type ScrubProgress, type ScrubReport } from '../../tasks/scrub.js';
import { configFrom } from '../config-option.js';
import { ProgressBar } from '../progress.js';
import { runOnFilesystem } from './run.js';

export async function scrubCommand(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      config: { type: 'string', short: 'c' }, pool: { type: 'string' }, repair: { type: 'boolean' },
      restart: { type: 'boolean' }, rate: { type: 'string' }, json: { type: 'boolean' },
    },
  });
  const rate = values.rate === undefined ? undefined : parseSize(values.rate);
  if (values.rate !== undefined && rate === undefined) throw new Error(`--rate: "${values.rate}" is not a size per second`);
  const params = {
    pool: values.pool, repair: values.repair === true, restart: values.restart === true,
    ...(rate === undefined ? {} : { bytesPerSecondMax: rate }),
  };
  const bar = new ProgressBar(values.repair === true ? 'scrub+repair' : 'scrub');
  const onProgress = (value: unknown) => {
    const progress = value as ScrubProgress;
    bar.update(progress.blocksDone, progress.blocksTotal);
  };
  const { result: report, viaDaemon } = await runOnFilesystem<ScrubReport>(configFrom(values.config), {
    local: (fs) => scrub(fs, { ...scrubOptions(params), onProgress }),
    method: 'scrub', params, onProgress,
  });
  bar.finish();
  if (values.json === true) process.stdout.write(`${JSON.stringify({ ...report, viaDaemon }, null, 2)}\n`);
  else printReport(report);
  const bad = report.shardsMissing + report.shardsCorrupt + report.shardsUnreadable + report.blocksDoubledUp;
  const isRepaired = report.blocksUnrecoverable === 0 && report.blocksRespread === report.blocksDoubledUp;
  const isHealthy = bad === 0 || (values.repair === true && isRepaired);
  return isHealthy ? 0 : 3;
}

function printReport(report: ScrubReport): void {
  const lines = [
    `scrub of ${report.pool === '*' ? 'all pools' : `pool ${report.pool}`}: ${report.complete ? 'complete' : 'stopped'}`,
    `  blocks checked:   ${report.blocksChecked} (${report.shardsChecked} shards, ${report.bytesChecked} bytes)`,
    `  shards missing:   ${report.shardsMissing}`,
    `  shards corrupt:   ${report.shardsCorrupt}`,
    `  shards unreadable: ${report.shardsUnreadable}`,
    `  blocks repaired:  ${report.blocksRepaired}`,
    `  unrecoverable:    ${report.blocksUnrecoverable}`,
    `  doubled up:       ${report.blocksDoubledUp} (spread out: ${report.blocksRespread})`,
  ];
  if (report.affectedFiles.length > 0) lines.push('  affected files:', ...report.affectedFiles.map((path) => `    ${path}`));
  for (const problem of report.problems.slice(0, 50)) lines.push(`  ! ${problem}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
