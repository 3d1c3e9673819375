/**
 * Bucket replacement: every shard that a (failed) bucket held is rebuilt from the other shards
 * of its block into a new, empty directory, which then takes the bucket's place (and its path
 * in the config file).
 *
 * Invariants: the old directory is never written to; the block map does not change (shards
 * keep their names and generations), so a replacement that stops halfway leaves every block
 * exactly as readable as before, and can be run again.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { directoryProblem, type Config } from '../config/index.js';
import { Errno, FsError } from '../errno.js';
import { Bucket } from '../pool/index.js';
import type { ScrubTarget } from './scrub.js';

export interface ReplaceReport {
  bucket: string;
  oldPath: string;
  newPath: string;
  shardsRebuilt: number;
  shardsFailed: number;
  problems: string[];
  configUpdated: boolean;
}

export async function replaceBucket(
  target: ScrubTarget & { config: Config },
  options: { bucket: string; newPath: string; onProgress?: (done: number) => void },
): Promise<ReplaceReport> {
  const bucket = target.pools.bucket(options.bucket);
  if (bucket === undefined) throw new FsError(Errno.EINVAL, 'replace bucket', `unknown bucket "${options.bucket}"`);
  const newPath = resolve(options.newPath);
  checkNewDirectory(newPath);
  const staging = new Bucket({ name: bucket.name, pool: bucket.pool, path: newPath, priority: bucket.priority });
  staging.open(target.meta.filesystemUuid, target.meta.shardDirectoryBlocks);
  const report: ReplaceReport = {
    bucket: bucket.name, oldPath: bucket.path, newPath, shardsRebuilt: 0, shardsFailed: 0, problems: [],
    configUpdated: false,
  };
  // Reads must come from the other shards, never from the drive being replaced.
  bucket.markFailed('being replaced');
  for (const block of [...target.meta.allBlocks()]) {
    for (let shardIndex = 0; shardIndex < block.buckets.length; shardIndex++) {
      if (block.buckets[shardIndex] !== bucket.name) continue;
      try {
        const inode = target.meta.requireInode(block.ino, 'replace bucket');
        await target.blocks.rebuildShard(block, shardIndex, staging, inode.blockBytes);
        report.shardsRebuilt += 1;
      } catch (error) {
        if (!(error instanceof FsError)) throw error;
        report.shardsFailed += 1;
        report.problems.push(`${target.meta.pathOf(block.ino)} block ${block.blockIndex} shard ${shardIndex}: ${error.message}`);
      }
      options.onProgress?.(report.shardsRebuilt + report.shardsFailed);
    }
  }
  bucket.relocate(newPath);
  report.configUpdated = updateConfigFile(target.config, bucket, newPath);
  return report;
}

function checkNewDirectory(path: string): void {
  const problem = directoryProblem(path);
  if (problem !== undefined) throw new FsError(Errno.EINVAL, 'replace bucket', `${path} ${problem}`);
  const entries = readdirSync(path).filter((name) => name !== 'lost+found');
  if (entries.length > 0) throw new FsError(Errno.EINVAL, 'replace bucket', `${path} is not empty`);
}

/** Rewrites the bucket's path in the config file, keeping its comments and layout. */
function updateConfigFile(config: Config, bucket: Bucket, newPath: string): boolean {
  if (config.configPath === undefined) return false;
  const document = parseDocument(readFileSync(config.configPath, 'utf8'));
  document.setIn(['pools', bucket.pool, 'buckets', bucket.name, 'path'], newPath);
  writeFileSync(config.configPath, document.toString());
  return true;
}
