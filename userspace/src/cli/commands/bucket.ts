/**
 * `shmr bucket replace NAME --with NEW_PATH --config FILE [--json]`: rebuilds every shard of
 * bucket NAME (a failed drive) into the empty directory NEW_PATH and points the bucket there.
 * Exit codes: 0 all shards rebuilt (and blocks doubled up meanwhile spread out), 3 some could
 * not be, 1 failure, 2 usage.
 */
import { parseArgs } from 'node:util';
import { replaceBucket, type ReplaceReport } from '../../tasks/replace-bucket.js';
import { configFrom } from '../config-option.js';
import { runOnFilesystem } from './run.js';

export async function bucketCommand(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args], allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, with: { type: 'string' }, json: { type: 'boolean' } },
  });
  const [action, name] = positionals;
  if (action !== 'replace' || name === undefined || values.with === undefined) {
    process.stderr.write('usage: shmr bucket replace NAME --with NEW_PATH [--config FILE] [--json]\n');
    return 2;
  }
  const config = configFrom(values.config);
  const params = { bucket: name, newPath: values.with };
  const { result: report } = await runOnFilesystem<ReplaceReport>(config, {
    local: (fs) => replaceBucket(fs, params), method: 'replaceBucket', params,
  });
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    const lines = [`bucket ${report.bucket}: ${report.shardsRebuilt} shard(s) rebuilt into ${report.newPath}, ` +
      `${report.shardsFailed} failed, ${report.blocksRespread} doubled-up block(s) spread out`];
    lines.push(report.configUpdated
      ? `  config updated: ${report.bucket}.path = ${report.newPath}`
      : `  set the path of bucket ${report.bucket} to ${report.newPath} in your config`);
    for (const problem of report.problems) lines.push(`  ! ${problem}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return report.problems.length === 0 ? 0 : 3;
}
