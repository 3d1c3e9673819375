/**
 * `shmrctl tombstones [--purge] [--inode N] [--older-than DURATION]`: lists the old copies a
 * rewrite left behind; --purge deletes those of one inode (--inode) or those older than
 * DURATION (default: all).
 */
import { formatSize, parseDuration } from '../../../config/index.js';
import { UsageError } from '../exit-codes.js';
import { ok, parseCommand, withClient, type CommandResult } from '../command.js';

export async function tombstones(args: readonly string[]): Promise<CommandResult> {
  const parsed = parseCommand(args, { purge: { type: 'boolean' }, inode: { type: 'string' }, 'older-than': { type: 'string' } }, 0);
  const inodeText = parsed.values['inode'];
  const ino = typeof inodeText === 'string' ? Number(inodeText) : undefined;
  if (ino !== undefined && (!Number.isSafeInteger(ino) || ino < 1)) throw new UsageError(`--inode: "${String(inodeText)}" is not an inode number`);
  const olderText = parsed.values['older-than'];
  const olderMs = typeof olderText === 'string' ? parseDuration(olderText) : 0;
  if (olderMs === undefined) throw new UsageError(`--older-than: "${String(olderText)}" is not a duration (e.g. 7d)`);
  return withClient(parsed, undefined, async (client) => {
    if (parsed.values['purge'] !== true) {
      const [list] = await client.call('GetTombstones');
      const all = list as { ino: number; pool: string; bytes: number }[];
      return ok(all, all.length === 0 ? 'no tombstones' : all.map((entry) =>
        `inode ${entry.ino} pool ${entry.pool}: ${formatSize(entry.bytes)}`).join('\n'));
    }
    const [shards, bytes] = ino !== undefined
      ? await client.call('PurgeTombstone', BigInt(ino))
      : await client.call('PurgeTombstones', BigInt(Math.floor(olderMs / 1000)));
    return ok({ purgedShards: shards, purgedBytes: bytes }, `purged ${String(shards)} shards, ${formatSize(Number(bytes))}`);
  });
}
