/** `shmrctl status`: the filesystem's properties: version, pools, buckets, cache, open handles. */
import { formatSize } from '../../../config/index.js';
import { ok, parseCommand, withClient, type CommandResult } from '../command.js';

interface PoolView {
  name: string; topology: string; blockBytes: number; blocks: number; dataBytes: number;
  buckets: { name: string; path: string; state: string; failure: string; freeBytes: number; totalBytes: number }[];
}

export async function status(args: readonly string[]): Promise<CommandResult> {
  const parsed = parseCommand(args, {}, 0);
  const properties = await withClient(parsed, undefined, (client) => client.properties());
  const lines = [
    `${String(properties['MountPoint'])}: shmr ${String(properties['Version'])}, write pool ${String(properties['WritePool'])}`,
    `  cache ${formatSize(Number(properties['CacheBytes']))} (${formatSize(Number(properties['DirtyBytes']))} dirty) ` +
      `of ${formatSize(Number(properties['CacheLimitBytes']))}, ${String(properties['OpenFileHandles'])} open handles`,
  ];
  for (const pool of properties['Pools'] as PoolView[]) {
    lines.push(`  pool ${pool.name} (${pool.topology}, ${formatSize(pool.blockBytes)} blocks): ` +
      `${pool.blocks} blocks, ${formatSize(pool.dataBytes)} of data`);
    for (const bucket of pool.buckets) {
      const failure = bucket.state === 'failed' ? ` (${bucket.failure})` : '';
      lines.push(`    bucket ${bucket.name} ${bucket.path}: ${bucket.state}${failure}, ` +
        `${formatSize(bucket.freeBytes)} free of ${formatSize(bucket.totalBytes)}`);
    }
  }
  return ok(properties, lines.join('\n'));
}
