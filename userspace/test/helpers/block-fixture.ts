/**
 * A filesystem opened without a mount, on bucket folders in a fresh temporary root: for tests
 * of the block and file layers that inspect or damage shard files directly.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/index.js';
import { openFilesystem, type OpenFilesystem } from '../../src/daemon/open.js';
import { BLOCK_PADDING_BYTES } from '../../src/block/index.js';
import type { BlockRecord } from '../../src/meta/index.js';
import type { BlockStore } from '../../src/block/index.js';

/** One pool of the fixture: 1 MiB blocks on `buckets` folders named after the pool. */
export interface FixturePool {
  readonly topology: string;
  readonly buckets: number;
  /** More YAML lines of the pool (compression: ...), without indentation. */
  readonly extra?: readonly string[];
}

export interface BlockFixture {
  readonly root: string;
  readonly filesystem: OpenFilesystem;
  /** Closes the filesystem and removes the root. */
  close(): void;
}

/** Opens a filesystem with `pools` (the first one is the write pool) under a new temp root. */
export function openBlockFixture(name: string, pools: Readonly<Record<string, FixturePool>>): BlockFixture {
  const root = mkdtempSync(join(tmpdir(), `shmr-${name}-`));
  const lines = ['mount_dir: ./mnt', 'metadata_dir: ./meta', `write_pool: ${Object.keys(pools)[0] ?? ''}`, 'pools:'];
  for (const [pool, spec] of Object.entries(pools)) {
    lines.push(`  ${pool}:`, `    topology: ${spec.topology}`, '    block_size: 1MiB');
    for (const extra of spec.extra ?? []) lines.push(`    ${extra}`);
    lines.push('    buckets:');
    for (let index = 0; index < spec.buckets; index++) {
      mkdirSync(join(root, `${pool}${index}`));
      lines.push(`      ${pool}${index}: { path: ./${pool}${index} }`);
    }
  }
  const filesystem = openFilesystem(parseConfig(lines.join('\n'), { source: 'test', baseDir: root }));
  return {
    root, filesystem,
    close: () => {
      filesystem.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** One pool of each topology, for tests of the read paths. */
export const TOPOLOGY_POOLS: Readonly<Record<string, FixturePool>> = {
  plain: { topology: 'single', buckets: 1 },
  mirrored: { topology: 'mirror:2', buckets: 2 },
  archive: { topology: 'erasure:4+2', buckets: 6 },
};

const BLOCK_BYTES = 1024 * 1024;

/** Writes `data` as block `at.blockIndex` of inode `at.ino` in `pool` (1 MiB blocks, no fsync). */
export function writeTestBlock(
  filesystem: OpenFilesystem,
  pool: string,
  data: Buffer,
  at: { ino: number; blockIndex: number },
): Promise<BlockRecord> {
  const buffer = Buffer.concat([data, Buffer.alloc(BLOCK_BYTES + BLOCK_PADDING_BYTES - data.byteLength)]);
  return filesystem.blocks.write({
    ...at, blockBytes: BLOCK_BYTES, dataBytes: data.byteLength, data: buffer, pool: filesystem.pools.pool(pool), sync: false,
  });
}

export { dropPages } from './page-cache.js';

/** The path of shard 0 of stored block `blockIndex` of `ino`; throws when the block is not stored. */
export function storedShardPath(fs: OpenFilesystem, ino: number, blockIndex: number): string {
  const record = fs.meta.getBlock(ino, blockIndex);
  if (record === undefined) throw new Error(`block ${blockIndex} of ${ino} is not stored`);
  return fs.blocks.location(record, 0).path;
}

/** Flips bits `mask` of the byte at `offset` of a file, in place (through the page cache). */
export function flipByte(path: string, offset: number, mask = 0x01): void {
  const fd = openSync(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, offset);
    byte[0] = (byte[0] ?? 0) ^ mask;
    writeSync(fd, byte, 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}

/**
 * `store` with its method `key` replaced by `method` (which may call the original): a test
 * injects a concurrent change (a repair, a write) at an exact point of a task's work.
 */
export function withMethod<K extends keyof BlockStore>(store: BlockStore, key: K, method: BlockStore[K]): BlockStore {
  return new Proxy(store, {
    get: (target, name) => {
      if (name === key) return method;
      const value: unknown = Reflect.get(target, name, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** A new file `name` in the root directory with `bytes` random bytes, stored and fsynced. */
export async function storedFile(filesystem: OpenFilesystem, name: string, bytes: number): Promise<{ ino: number; model: Buffer }> {
  const ino = filesystem.meta.createInode({ parent: 1, name, mode: 0o100644, uid: 0, gid: 0 }).ino;
  const model = randomBytes(bytes);
  await filesystem.files.write(ino, 0, model);
  await filesystem.files.flush(ino, { sync: true });
  return { ino, model };
}

/** Fails unless the file reads back as `model`. */
export async function expectContent(filesystem: OpenFilesystem, ino: number, model: Buffer): Promise<void> {
  const target = Buffer.alloc(model.byteLength);
  const bytes = await filesystem.files.read(ino, 0, model.byteLength, target);
  if (bytes !== model.byteLength || !target.equals(model)) throw new Error(`inode ${ino} does not read back as written`);
}
