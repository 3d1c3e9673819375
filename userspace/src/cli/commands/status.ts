/**
 * `shmr status --config FILE [--json]`: pools, buckets (state, free space) and cache use, from
 * the daemon when mounted.
 */
import { parseArgs } from 'node:util';
import { formatSize } from '../../config/index.js';
import { statusOf } from '../../daemon/methods.js';
import { configFrom } from '../config-option.js';
import { runOnFilesystem } from './run.js';

interface Status {
  isMounted: boolean;
  mountDir: string;
  pools: { pool: string; blocks: number; dataBytes: number; tombstonedBytes: number; freeBytes: number }[];
  buckets: { name: string; pool: string; path: string; state: string; failure: string; freeBytes: number; totalBytes: number }[];
}

export async function statusCommand(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({ args: [...args], options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } } });
  const { result } = await runOnFilesystem<Status>(configFrom(values.config), {
    local: async (fs) => statusOf(fs, { isMounted: false }) as unknown as Status, method: 'status', params: {},
  });
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return 0;
  }
  const lines = [`${result.mountDir}: ${result.isMounted ? 'mounted' : 'not mounted'}`];
  for (const pool of result.pools) {
    lines.push(`  pool ${pool.pool}: ${pool.blocks} blocks, ${formatSize(pool.dataBytes)} live, ` +
      `${formatSize(pool.tombstonedBytes)} tombstoned, ${formatSize(pool.freeBytes)} free`);
  }
  for (const bucket of result.buckets) {
    const failure = bucket.state === 'failed' ? ` (${bucket.failure})` : '';
    lines.push(`  bucket ${bucket.name} [${bucket.pool}] ${bucket.path}: ${bucket.state}${failure}, ` +
      `${formatSize(bucket.freeBytes)} free of ${formatSize(bucket.totalBytes)}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
