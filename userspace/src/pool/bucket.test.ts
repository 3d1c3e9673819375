/**
 * Bucket shard paths: consecutive blocks of a file share a shard directory in filesystems made
 * now, and filesystems made before keep their per-block directories (their shards stay where
 * they are). Method: real bucket folders and a real metadata store in a temp folder; the
 * per-block path is pinned to what the per-block hash gave before runs existed.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SHARD_DIRECTORY_BLOCKS } from '../limits.js';
import { MetaStore } from '../meta/index.js';
import { Bucket } from './bucket.js';

const UUID = '0f8b1d4c-5a43-4a8e-9d53-2b7e0c6f9a11';
let root: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'shmr-bucket-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function openBucket(directoryBlocks: number): Bucket {
  const path = join(root, `b${directoryBlocks}`);
  mkdirSync(path);
  const bucket = new Bucket({ name: 'b', pool: 'p', path, priority: 'normal' });
  bucket.open(UUID, directoryBlocks);
  return bucket;
}

function directoryOf(bucket: Bucket, ino: number, blockIndex: number): string {
  return dirname(bucket.shardPath({ ino, blockIndex, generation: 5, shardIndex: 0 }));
}

describe('shard directories', () => {
  it('stay per block in a filesystem made before runs (1 block per directory)', () => {
    const bucket = openBucket(1);
    expect(bucket.shardPath({ ino: 7, blockIndex: 3, generation: 5, shardIndex: 2 }))
      .toBe(join(bucket.path, '57', 'e3', '7-3-5-2'));
    expect(directoryOf(bucket, 7, 4)).not.toBe(directoryOf(bucket, 7, 3));
  });

  it('hold a run of consecutive blocks, and runs spread over directories', () => {
    const bucket = openBucket(SHARD_DIRECTORY_BLOCKS);
    const first = directoryOf(bucket, 9, 0);
    for (let blockIndex = 1; blockIndex < SHARD_DIRECTORY_BLOCKS; blockIndex++) {
      expect(directoryOf(bucket, 9, blockIndex)).toBe(first);
    }
    const runs = new Set(Array.from({ length: 32 }, (_, run) => directoryOf(bucket, 9, run * SHARD_DIRECTORY_BLOCKS)));
    expect(runs.size).toBeGreaterThanOrEqual(30);
    expect(directoryOf(bucket, 10, 0)).not.toBe(first);
  });

  it('are what the metadata store was made with: runs now, per block before the setting', () => {
    const made = MetaStore.open(join(root, 'meta'), { uid: 0, gid: 0 });
    expect(made.shardDirectoryBlocks).toBe(SHARD_DIRECTORY_BLOCKS);
    made.close();
    const db = new Database(join(root, 'meta', 'shmr-meta.sqlite'));
    db.prepare("DELETE FROM settings WHERE key = 'shard_directory_blocks'").run();
    db.close();
    const older = MetaStore.open(join(root, 'meta'), { uid: 0, gid: 0 });
    try {
      expect(older.shardDirectoryBlocks).toBe(1);
    } finally {
      older.close();
    }
  });
});
