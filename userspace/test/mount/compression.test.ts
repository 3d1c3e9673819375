/**
 * Compressed pools through a real mount: text-like data takes less room in the shard files
 * (and in st_blocks), random data is stored raw, every byte reads back identical, shards
 * written before compression was turned on still read, an erasure-coded compressed block
 * survives lost and rotten shards within tolerance, and beyond it (or on a Single pool) a
 * damaged compressed block is an EIO, never wrong data. Method: files written through the
 * mount, shard files measured, inspected (header bytes) and damaged in the bucket folders.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { shardFilesOf } from '../../src/tasks/fsck.js';
import { withMount, type Mount } from '../helpers/mount.js';

/** Offset of the `compression` byte in a shard header (layout/shard-header.ts). */
const COMPRESSION_OFFSET = 15;
/** Offset of `compressed_bytes`. */
const COMPRESSED_BYTES_OFFSET = 68;
/** Offset of the payload in a shard file whose chunk table fits the first sector. */
const PAYLOAD_OFFSET = 4096;

/** Log-like text: compresses many times over. */
function textLike(bytes: number, seed: number): Buffer {
  const data = Buffer.alloc(bytes);
  let offset = 0;
  for (let line = 0; offset < bytes; line++) {
    offset += data.write(`${seed}.${line} GET /files/${line % 101} 200 ${(line * 7) % 1000} bytes\n`, offset);
  }
  return data;
}

/** Shard files of `name`'s inode, optionally of one block only. */
function shardsOf(mount: Mount, name: string, blockIndex?: number): string[] {
  const inode = statSync(join(mount.mountpoint, name)).ino;
  const marker = blockIndex === undefined ? `/${inode}-` : `/${inode}-${blockIndex}-`;
  return Object.values(mount.buckets).flatMap(shardFilesOf).filter((path) => path.includes(marker));
}

function shardBytes(paths: readonly string[]): number {
  return paths.reduce((sum, path) => sum + statSync(path).size, 0);
}

function readCode(mount: Mount, name: string): string {
  try {
    readFileSync(join(mount.mountpoint, name));
    return 'read';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

/** Flips a payload byte of a shard file (the chunk checksums must catch it). */
function rot(path: string): void {
  const bytes = readFileSync(path);
  bytes[PAYLOAD_OFFSET + 100] = (bytes[PAYLOAD_OFFSET + 100] ?? 0) ^ 0x40;
  writeFileSync(path, bytes);
}

function expectSame(mount: Mount, files: ReadonlyMap<string, Buffer>): void {
  for (const [name, data] of files) expect(readFileSync(join(mount.mountpoint, name)).equals(data), name).toBe(true);
}

describe('compressed pools', () => {
  it('shrinks text, stores random data raw, still reads older raw shards, EIO on rot', async () => {
    await withMount({ pools: { ssd: { topology: 'single', blockSize: '1MiB', buckets: 1 } } }, async (mount) => {
      const files = new Map<string, Buffer>([['old', textLike(1_500_000, 1)]]);
      writeFileSync(join(mount.mountpoint, 'old'), files.get('old') ?? Buffer.alloc(0));
      // Compression on from now: 'old' keeps its shards from before, headers without it.
      const config = readFileSync(mount.configPath, 'utf8');
      writeFileSync(mount.configPath, config.replace('    block_size: 1MiB\n',
        '    block_size: 1MiB\n    compression: { algorithm: zstd, level: 3 }\n'));
      await mount.remount();
      files.set('text', textLike(3 * 1024 * 1024 + 12345, 2));
      files.set('small', textLike(5000, 3));
      files.set('random', randomBytes(2 * 1024 * 1024));
      for (const name of ['text', 'small', 'random']) writeFileSync(join(mount.mountpoint, name), files.get(name) ?? Buffer.alloc(0));
      await mount.remount();
      expectSame(mount, files);

      const textSize = files.get('text')?.byteLength ?? 0;
      expect(shardBytes(shardsOf(mount, 'text'))).toBeLessThan(textSize / 3);
      expect(statSync(join(mount.mountpoint, 'text')).blocks * 512).toBeLessThan(textSize / 3);
      expect(shardBytes(shardsOf(mount, 'random'))).toBeGreaterThan(2 * 1024 * 1024);
      expect(statSync(join(mount.mountpoint, 'random')).blocks * 512).toBeGreaterThanOrEqual(2 * 1024 * 1024);
      const header = (path: string) => readFileSync(path).subarray(0, 128);
      for (const path of shardsOf(mount, 'text')) expect(header(path)[COMPRESSION_OFFSET]).toBe(1);
      for (const name of ['random', 'old']) {
        for (const path of shardsOf(mount, name)) {
          expect(header(path)[COMPRESSION_OFFSET]).toBe(0);
          expect(header(path).readUInt32LE(COMPRESSED_BYTES_OFFSET)).toBe(0);
        }
      }

      const [rotten] = shardsOf(mount, 'text', 1);
      expect(rotten).toBeDefined();
      rot(rotten ?? '');
      await mount.remount();
      expect(readCode(mount, 'text')).toBe('EIO');
      // Block 0 is intact and reads; so does everything else.
      const head = Buffer.alloc(1024 * 1024);
      const fd = openSync(join(mount.mountpoint, 'text'), 'r');
      expect(readSync(fd, head, 0, head.byteLength, 0)).toBe(head.byteLength);
      closeSync(fd);
      expect(head.equals(files.get('text')?.subarray(0, head.byteLength) ?? Buffer.alloc(0))).toBe(true);
      files.delete('text');
      expectSame(mount, files);
      expect(await mount.log()).toMatch(/corrupt shard .* \(file \/text, block 1\)/);
    });
  }, 180_000);

  it('erasure 4+2 with zstd: rebuilds past lost and rotten shards, EIO beyond tolerance', async () => {
    const pools = {
      archive: { topology: 'erasure:4+2', blockSize: '1MiB', buckets: 6, compression: { algorithm: 'zstd', level: 3 } },
    };
    await withMount({ pools }, async (mount) => {
      const files = new Map<string, Buffer>([
        ['text', textLike(4 * 1024 * 1024 + 777, 4)],
        ['random', randomBytes(1024 * 1024 + 5)],
        ['small', textLike(300_000, 5)],
      ]);
      for (const [name, data] of files) writeFileSync(join(mount.mountpoint, name), data);
      await mount.remount();
      expectSame(mount, files);
      expect(shardBytes(shardsOf(mount, 'text'))).toBeLessThan((files.get('text')?.byteLength ?? 0) / 2);

      // One whole bucket lost, and a data shard of text block 0 rotten: 2 failures, 2 parity.
      const [lostBucket] = Object.values(mount.buckets);
      for (const path of shardFilesOf(lostBucket ?? '')) rmSync(path);
      const survivors = shardsOf(mount, 'text', 0);
      expect(survivors).toHaveLength(5);
      const isDataShard = (path: string) => Number(path.split('-').at(-1)) < 4;
      const rotten = survivors.find(isDataShard);
      rot(rotten ?? '');
      await mount.remount();
      expectSame(mount, files);

      // A third failure in block 0: beyond tolerance, EIO; the other files still read.
      const third = survivors.find((path) => path !== rotten);
      expect(third).toBeDefined();
      rot(third ?? '');
      await mount.remount();
      expect(readCode(mount, 'text')).toBe('EIO');
      files.delete('text');
      expectSame(mount, files);
    });
  }, 180_000);
});
