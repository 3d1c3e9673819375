/**
 * Bucket: one directory (normally one drive) of a pool, holding shard files under a two-level
 * hashed directory tree: <bucket>/<xx>/<yy>/<ino>-<block>-<generation>-<shard>, where xx/yy is
 * a hash of the inode and of the block index divided by the filesystem's shard directory
 * blocks (MetaStore.shardDirectoryBlocks): a run of consecutive blocks shares a directory.
 *
 * Invariants:
 * - A bucket is written to only when its label (`shmr-bucket`) names this filesystem; an
 *   unlabelled directory is labelled only when it is empty, so a missing drive (an empty
 *   mount point) or another filesystem's drive is never mistaken for ours.
 * - Shard file names are unique per (inode, block, generation, shard): a new shard never
 *   replaces an old file in place.
 */
import { randomUUID } from 'node:crypto';
import {
  closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, statfsSync, statSync,
  writeFileSync,
} from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { assert } from '../assert.js';
import { log } from '../log.js';
import { Errno, FsError } from '../errno.js';
import { directoryProblem, type BucketConfig, type BucketPriority } from '../config/index.js';
import { BucketLabel, decodeStruct, encodeStruct, u64ToNumber } from '../layout/index.js';

const LABEL_FILE = 'shmr-bucket';
const FREE_SPACE_REFRESH_MS = 2000;
/** I/O errors within ERROR_WINDOW_MS that mark a bucket failed. */
const ERRORS_TO_FAIL = 3;
const ERROR_WINDOW_MS = 60_000;

/** Health of a bucket as the pool sees it. */
export type BucketState = 'ok' | 'failed';

/** A change of a bucket's state, as `Bucket.onStateChange` reports it. */
export interface BucketStateChange {
  readonly bucket: Bucket;
  readonly previous: BucketState;
}

/** Names of one shard's file. */
export interface ShardName {
  readonly ino: number;
  readonly blockIndex: number;
  readonly generation: number;
  readonly shardIndex: number;
}

export class Bucket {
  readonly name: string;
  readonly pool: string;
  path: string;
  readonly priority: BucketPriority;
  state: BucketState = 'ok';
  /** Why the bucket failed, for logs and status. */
  failure = '';
  readonly #knownDirectories = new Set<string>();
  /** Consecutive blocks per shard directory, as the filesystem was made (set by open). */
  #directoryBlocks = 1;
  #freeBytes = 0;
  #totalBytes = 0;
  #freeCheckedMs = 0;
  #recentErrorsMs: number[] = [];
  /** Device id of the directory, so statfs counts one drive once. */
  deviceId = 0;
  /** Called after every change of `state` (the D-Bus BucketStateChanged signal, logs). */
  onStateChange: (change: BucketStateChange) => void = () => undefined;

  constructor(config: BucketConfig) {
    this.name = config.name;
    this.pool = config.pool;
    this.path = config.path;
    this.priority = config.priority;
  }

  /**
   * Checks the label (writing it on an empty directory) and reads free space. Throws FsError
   * naming the bucket when the directory is someone else's. `directoryBlocks`: see
   * MetaStore.shardDirectoryBlocks.
   */
  open(filesystemUuid: string, directoryBlocks: number): void {
    assert(Number.isSafeInteger(directoryBlocks) && directoryBlocks >= 1);
    this.#directoryBlocks = directoryBlocks;
    const labelPath = join(this.path, LABEL_FILE);
    if (directoryProblem(this.path) !== undefined) {
      // Accepted by the config only within the pool's redundancy: start failed, read degraded.
      this.markFailed(`${this.path} ${directoryProblem(this.path) ?? ''}`);
      return;
    }
    let label: Buffer | undefined;
    try {
      label = readFileSync(labelPath);
    } catch (error) {
      if ((error as { code?: string }).code !== 'ENOENT') throw error;
    }
    if (label === undefined) {
      const entries = readdirSync(this.path).filter((name) => name !== 'lost+found');
      if (entries.length > 0) {
        throw new FsError(Errno.EINVAL, 'open bucket',
          `${this.name} (${this.path}) is not empty and has no ${LABEL_FILE} label: not a shmr bucket`);
      }
      writeLabel(labelPath, filesystemUuid);
    } else {
      checkLabel(label, filesystemUuid, this);
    }
    this.deviceId = statSync(this.path).dev;
    this.refreshFreeSpace(true);
  }

  /** Path of a shard file. */
  shardPath(shard: ShardName): string {
    return join(this.path, shardDirectory(shard, this.#directoryBlocks), shardFileName(shard));
  }

  /** Creates the hashed directory of `shard` if this process has not seen it yet. */
  async ensureDirectory(shard: ShardName): Promise<string> {
    const relative = shardDirectory(shard, this.#directoryBlocks);
    const absolute = join(this.path, relative);
    if (!this.#knownDirectories.has(relative)) {
      await mkdir(absolute, { recursive: true });
      this.#knownDirectories.add(relative);
    }
    return absolute;
  }

  /** Points the bucket at another directory (a replaced drive); state starts fresh. */
  relocate(path: string): void {
    this.path = path;
    this.#knownDirectories.clear();
    this.#recentErrorsMs = [];
    this.#setState('ok', '');
    this.deviceId = statSync(path).dev;
    this.refreshFreeSpace(true);
  }

  /** Forgets that the directory of `shard` exists (someone removed it under us). */
  forgetDirectory(shard: ShardName): void {
    this.#knownDirectories.delete(shardDirectory(shard, this.#directoryBlocks));
  }

  /** Free bytes, refreshed from statfs at most every FREE_SPACE_REFRESH_MS unless forced. */
  refreshFreeSpace(force = false): void {
    const nowMs = Date.now();
    if (!force && nowMs - this.#freeCheckedMs < FREE_SPACE_REFRESH_MS) return;
    this.#freeCheckedMs = nowMs;
    try {
      const stats = statfsSync(this.path, { bigint: false });
      this.#freeBytes = stats.bavail * stats.bsize;
      this.#totalBytes = stats.blocks * stats.bsize;
    } catch (error) {
      this.markFailed(`statfs: ${(error as Error).message}`);
    }
  }

  get freeBytes(): number {
    this.refreshFreeSpace();
    return this.#freeBytes;
  }

  get totalBytes(): number {
    this.refreshFreeSpace();
    return this.#totalBytes;
  }

  /** Accounts for bytes just written, until the next statfs refresh. */
  consume(bytes: number): void {
    this.#freeBytes = Math.max(0, this.#freeBytes - bytes);
  }

  /**
   * Counts an I/O error; ERRORS_TO_FAIL of them within ERROR_WINDOW_MS take the bucket out of
   * service, so reads go degraded instead of retrying a dying drive on every request.
   */
  noteError(reason: string): void {
    const nowMs = Date.now();
    this.#recentErrorsMs = this.#recentErrorsMs.filter((atMs) => nowMs - atMs < ERROR_WINDOW_MS);
    this.#recentErrorsMs.push(nowMs);
    if (this.#recentErrorsMs.length >= ERRORS_TO_FAIL) this.markFailed(`repeated errors, last: ${reason}`);
  }

  /** True when the bucket's directory and label are still there (a missing-shard read asks). */
  isPresent(): boolean {
    try {
      statSync(join(this.path, LABEL_FILE));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Brings a failed bucket back when its directory and label are readable again (a drive
   * that was remounted). Returns true when the state changed.
   */
  probe(filesystemUuid: string): boolean {
    if (this.state !== 'failed') return false;
    try {
      checkLabel(readFileSync(join(this.path, LABEL_FILE)), filesystemUuid, this);
      this.#knownDirectories.clear();
      this.#recentErrorsMs = [];
      this.#setState('ok', '');
      this.refreshFreeSpace(true);
      log.info(`bucket ${this.name} (${this.path}) is back in service`);
      return true;
    } catch {
      return false;
    }
  }

  /** Takes the bucket out of service for new writes. */
  markFailed(reason: string): void {
    if (this.state !== 'failed') log.error(`bucket ${this.name} (${this.path}) failed: ${reason}`);
    this.#setState('failed', reason);
  }

  #setState(state: BucketState, failure: string): void {
    const previous = this.state;
    this.state = state;
    this.failure = failure;
    if (previous !== state) this.onStateChange({ bucket: this, previous });
  }

  /** True when new shards may be placed here. */
  get isWritable(): boolean {
    return this.state === 'ok' && this.priority !== 'ignore' && this.priority !== 'evacuate';
  }
}

function writeLabel(labelPath: string, filesystemUuid: string): void {
  const buffer = Buffer.alloc(BucketLabel.sizeBytes);
  encodeStruct(BucketLabel, {
    filesystem_uuid: uuidBytes(filesystemUuid),
    bucket_uuid: uuidBytes(randomUUID()),
    created_sec: BigInt(Math.floor(Date.now() / 1000)),
  }, buffer);
  writeFileSync(labelPath, buffer, { flag: 'wx' });
  const fd = openSync(labelPath, 'r');
  fsyncSync(fd);
  closeSync(fd);
}

function checkLabel(label: Buffer, filesystemUuid: string, bucket: Bucket): void {
  const decoded = decodeStruct(BucketLabel, label);
  if (!decoded.ok) {
    throw new FsError(Errno.EIO, 'open bucket',
      `${bucket.name} (${bucket.path}): label ${LABEL_FILE} is corrupt (${decoded.kind} ${decoded.field})`);
  }
  if (!decoded.value.filesystem_uuid.equals(uuidBytes(filesystemUuid))) {
    throw new FsError(Errno.EINVAL, 'open bucket',
      `${bucket.name} (${bucket.path}) belongs to another shmr filesystem`);
  }
  assert(u64ToNumber(decoded.value.created_sec) >= 0);
}

function uuidBytes(uuid: string): Buffer {
  const bytes = Buffer.from(uuid.replaceAll('-', ''), 'hex');
  assert.equal(bytes.byteLength, 16);
  return bytes;
}

/**
 * Two hex levels from a hash of (inode, run of `directoryBlocks` blocks), spreading a file's
 * runs over 65536 dirs. With 1 it is the hash of (inode, block) of older filesystems.
 */
function shardDirectory(shard: ShardName, directoryBlocks: number): string {
  const run = Math.floor(shard.blockIndex / directoryBlocks);
  let hash = Math.imul(shard.ino ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(run + 1, 0xc2b2ae35);
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x27d4eb2f);
  hash ^= hash >>> 15;
  const level1 = ((hash >>> 8) & 0xff).toString(16).padStart(2, '0');
  const level2 = (hash & 0xff).toString(16).padStart(2, '0');
  return `${level1}/${level2}`;
}

function shardFileName(shard: ShardName): string {
  return `${shard.ino}-${shard.blockIndex}-${shard.generation}-${shard.shardIndex}`;
}

/** Creates a directory for buckets of the embedded default config. */
export function createDirectory(path: string): void {
  mkdirSync(path, { recursive: true });
}
