/**
 * `shmr tombstones [--inode N] [--purge [--older-than 1h]] [--json]`: lists the tombstones
 * (shards of deleted files and replaced blocks waiting for their purge), or purges those of
 * one inode, or those older than a duration (all with --purge alone).
 */
import { parseArgs } from 'node:util';
import { Errno, FsError } from '../../errno.js';
import { formatSize, parseDuration } from '../../config/index.js';
import type { PurgeResult, TombstoneInfo } from '../../tiering/tombstones.js';
import { configFrom } from '../config-option.js';
import { runOnFilesystem } from './run.js';

export async function tombstonesCommand(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      config: { type: 'string', short: 'c' }, inode: { type: 'string' }, purge: { type: 'boolean' },
      'older-than': { type: 'string' }, json: { type: 'boolean' },
    },
  });
  const config = configFrom(values.config);
  const ino = values.inode === undefined ? undefined : Number(values.inode);
  if (values.purge !== true) {
    const { result } = await runOnFilesystem<{ tombstones: TombstoneInfo[] }>(config, {
      local: async (fs) => fs.tiering.tombstones({ ino }), method: 'tombstones', params: { ino },
    });
    if (values.json === true) process.stdout.write(`${JSON.stringify(result)}\n`);
    for (const stone of values.json === true ? [] : result.tombstones) {
      process.stdout.write(`inode ${stone.ino}\tblock ${stone.block}\t${stone.pool}\t${formatSize(stone.bytes)}\t` +
        `${stone.reason}\t${new Date(stone.createdAt).toISOString()}\n`);
    }
    return 0;
  }
  const olderThanMs = values['older-than'] === undefined ? 0 : parseDuration(values['older-than']);
  if (olderThanMs === undefined) throw new FsError(Errno.EINVAL, 'tombstones', `--older-than: "${values['older-than']}" is not a duration (e.g. 1h)`);
  const method = ino === undefined ? 'purgeTombstones' : 'purgeTombstone';
  const params = ino === undefined ? { olderThanSeconds: olderThanMs / 1000 } : { ino };
  const { result } = await runOnFilesystem<PurgeResult>(config, {
    local: async (fs) => (ino === undefined ? fs.tiering.purgeTombstones(params) : fs.tiering.purgeTombstone(params)),
    method, params,
  });
  if (values.json === true) process.stdout.write(`${JSON.stringify(result)}\n`);
  else process.stdout.write(`purged ${result.purgedShards} shard(s), ${formatSize(result.purgedBytes)}\n`);
  return 0;
}
