/**
 * Commands about files: `shmrctl flush [PATH]`, `shmrctl stat PATH`, `shmrctl unmount`.
 * Paths are sent absolute; the daemon resolves them in its metadata.
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { EXIT_CODES } from '../exit-codes.js';
import { ok, parseCommand, required, withClient, type CommandResult } from '../command.js';

export async function flush(args: readonly string[]): Promise<CommandResult> {
  const parsed = parseCommand(args, {}, 1);
  const path = parsed.positionals[0];
  return withClient(parsed, path, async (client, mountDir) => {
    if (path === undefined) {
      await client.call('FlushAll');
      return ok({ flushed: mountDir }, `flushed ${mountDir}`);
    }
    // The inode number the kernel shows is shmr's own.
    const ino = statSync(resolve(path)).ino;
    await client.call('FlushInode', BigInt(ino));
    return ok({ flushed: resolve(path), inode: ino }, `flushed ${resolve(path)} (inode ${ino})`);
  });
}

interface Layout {
  path: string; ino: number; sizeBytes: number; blockCount: number; pools: string[]; topologies: string[];
  health: string; blocksDegraded: number; blocksLost: number; isTruncated: boolean;
  blocks: { index: number; pool: string; topology: string; health: string;
    shards: { index: number; bucket: string; path: string; health: string; problem?: string }[] }[];
}

export async function stat(args: readonly string[]): Promise<CommandResult> {
  const parsed = parseCommand(args, {}, 1);
  const path = resolve(required(parsed, 0, 'PATH'));
  const [layout] = await withClient(parsed, path, (client) => client.call('Stat', path));
  const view = layout as Layout;
  const lines = [
    `${path} (inode ${view.ino}): ${view.sizeBytes} bytes, ${view.blockCount} blocks in ${view.pools.join(', ') || 'no pool'} ` +
      `(${view.topologies.join(', ') || '-'}), health ${view.health}`,
  ];
  for (const block of view.blocks) {
    lines.push(`  block ${block.index}: ${block.pool} ${block.topology} ${block.health}`);
    for (const shard of block.shards) {
      lines.push(`    shard ${shard.index} ${shard.bucket} ${shard.path} ${shard.health}${shard.problem === undefined ? '' : `: ${shard.problem}`}`);
    }
  }
  if (view.isTruncated) lines.push(`  ... ${view.blockCount - view.blocks.length} more blocks`);
  return { json: layout, text: lines.join('\n'), code: view.health === 'ok' ? EXIT_CODES.ok : EXIT_CODES.problems };
}

export async function unmount(args: readonly string[]): Promise<CommandResult> {
  const parsed = parseCommand(args, {}, 0);
  return withClient(parsed, undefined, async (client, mountDir) => {
    await client.call('Unmount');
    return ok({ unmounting: mountDir }, `unmounting ${mountDir}`);
  });
}
