/**
 * Block store compression: the pool's setting applies unless a write brings its own, blocks
 * that do not shrink are stored raw, a compressed erasure block reads back from any k shards
 * and a lost shard is rebuilt from the same compressed stream, and a record that disagrees
 * with its shard headers is an EIO. Recheck: a write checks its buffers against the headers
 * written (a buffer changed meanwhile is an EIO with no files left) and can take its parity
 * room from the caller. Method: a real filesystem opened on temporary bucket
 * folders (no mount), shard files inspected and damaged on disk.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { OpenFilesystem } from '../daemon/open.js';
import { Errno, FsError } from '../errno.js';
import { Compression } from '../layout/index.js';
import type { BlockRecord } from '../meta/index.js';
import { openBlockFixture, type BlockFixture } from '../../test/helpers/block-fixture.js';
import { allocAligned, BLOCK_PADDING_BYTES, directBytes, type BlockWrite } from './index.js';
import { NO_BLOCK_OBSERVER } from './observer.js';

const BLOCK_BYTES = 1024 * 1024;

let fixture: BlockFixture;
let filesystem: OpenFilesystem;

beforeEach(() => {
  fixture = openBlockFixture('block-store', {
    plain: { topology: 'single', buckets: 1 },
    archive: { topology: 'erasure:4+2', buckets: 6, extra: ['compression: { algorithm: zstd, level: 3 }'] },
  });
  filesystem = fixture.filesystem;
});

afterEach(() => fixture.close());

function textLike(bytes: number): Buffer {
  const data = Buffer.alloc(bytes + BLOCK_PADDING_BYTES);
  let offset = 0;
  for (let line = 0; offset < bytes; line++) offset += data.write(`line ${line} of a log, status ${line % 7}\n`, offset);
  return data;
}

function blockWrite(pool: string, data: Buffer, dataBytes: number, compression?: string): BlockWrite {
  return {
    ino: 7, blockIndex: 3, blockBytes: BLOCK_BYTES, dataBytes, data, pool: filesystem.pools.pool(pool),
    sync: false, compression,
  };
}

async function readBack(block: BlockRecord, start: number, end: number): Promise<Buffer> {
  const target = Buffer.alloc(end - start);
  await filesystem.blocks.read(block, { start, end }, target, 0);
  return target;
}

async function readError(block: BlockRecord): Promise<unknown> {
  try {
    await filesystem.blocks.read(block, { start: 0, end: block.dataBytes }, Buffer.alloc(block.dataBytes), 0);
    return 'read';
  } catch (error) {
    return error;
  }
}

describe('block store compression', () => {
  it('uses the pool setting unless the write names its own', async () => {
    const dataBytes = BLOCK_BYTES - 1000;
    const data = textLike(dataBytes);
    const expected = Buffer.from(data.subarray(0, dataBytes));
    const plain = await filesystem.blocks.write(blockWrite('plain', data, dataBytes));
    expect(plain.storedBytes).toBe(dataBytes);
    for (const [pool, compression, code] of [
      ['plain', 'zstd:5', Compression.zstd], ['plain', 'lz4', Compression.lz4], ['archive', undefined, Compression.zstd],
    ] as const) {
      const block = await filesystem.blocks.write(blockWrite(pool, data, dataBytes, compression));
      expect(block.storedBytes).toBeLessThan(dataBytes / 4);
      expect((await filesystem.blocks.header(block, 0)).header.compression).toBe(code);
      expect((await readBack(block, 0, dataBytes)).equals(expected)).toBe(true);
      expect((await readBack(block, 5000, 9000)).equals(expected.subarray(5000, 9000))).toBe(true);
      // Past dataBytes the block reads as zeros, as an uncompressed one does.
      expect((await readBack(block, dataBytes - 10, BLOCK_BYTES)).equals(
        Buffer.concat([expected.subarray(dataBytes - 10), Buffer.alloc(1000)]))).toBe(true);
    }
    const raw = await filesystem.blocks.write(blockWrite('archive', data, dataBytes, 'none'));
    expect(raw.storedBytes).toBe(dataBytes);
    const bad = await filesystem.blocks.write(blockWrite('plain', data, dataBytes, 'gzip:9')).catch((error: unknown) => error);
    expect(bad).toBeInstanceOf(FsError);
    expect((bad as FsError).errno).toBe(Errno.EINVAL);
  });

  it('stores data that does not shrink raw', async () => {
    const data = Buffer.concat([randomBytes(BLOCK_BYTES), Buffer.alloc(BLOCK_PADDING_BYTES)]);
    const block = await filesystem.blocks.write(blockWrite('archive', data, BLOCK_BYTES));
    expect(block.storedBytes).toBe(BLOCK_BYTES);
    expect((await filesystem.blocks.header(block, 0)).header.compression).toBe(Compression.none);
    expect((await readBack(block, 0, BLOCK_BYTES)).equals(data.subarray(0, BLOCK_BYTES))).toBe(true);
  });

  it('rebuilds a lost shard of a compressed erasure block from the compressed stream', async () => {
    const dataBytes = BLOCK_BYTES;
    const data = textLike(dataBytes);
    const expected = Buffer.from(data.subarray(0, dataBytes));
    const block = await filesystem.blocks.write(blockWrite('archive', data, dataBytes));
    const lost = filesystem.blocks.location(block, 1);
    const original = readFileSync(lost.path);
    rmSync(lost.path);
    filesystem.fds.forget(lost.path);
    expect((await readBack(block, 0, dataBytes)).equals(expected)).toBe(true);
    const bucket = filesystem.pools.bucket(lost.bucket);
    expect(bucket).toBeDefined();
    if (bucket === undefined) return;
    await filesystem.blocks.rebuildShard(block, 1, bucket, BLOCK_BYTES);
    expect(readFileSync(lost.path).equals(original)).toBe(true);
    const scratch = Buffer.alloc(filesystem.blocks.shardBytesOf(block));
    expect(await filesystem.blocks.verify(block, scratch)).toEqual([]);
  });

  it('answers EIO when the record and the shard headers disagree on the lengths', async () => {
    const dataBytes = 300_000;
    const block = await filesystem.blocks.write(blockWrite('plain', textLike(dataBytes), dataBytes, 'zstd:1'));
    expect(block.storedBytes).toBeLessThan(dataBytes);
    for (const wrong of [{ ...block, dataBytes: dataBytes + 1 }, { ...block, dataBytes: dataBytes - 1 }]) {
      const error = await readError(wrong);
      expect(error).toBeInstanceOf(FsError);
      expect((error as FsError).errno).toBe(Errno.EIO);
    }
    expect(await readError(block)).toBe('read');
  });
});

/** Shard files of block 3 of inode 7 in every bucket folder. */
function shardFilesOfBlock(): string[] {
  return readdirSync(fixture.root, { recursive: true, encoding: 'utf8' })
    .filter((path) => basename(path).startsWith('7-3-'));
}

describe('block store recheck', () => {
  it('writes erasure shards from the caller\'s parity room, rechecked, and rebuilds from them', async () => {
    const data = Buffer.concat([randomBytes(BLOCK_BYTES), Buffer.alloc(BLOCK_PADDING_BYTES)]);
    const expected = Buffer.from(data.subarray(0, BLOCK_BYTES));
    const parity = [Buffer.alloc(BLOCK_BYTES / 4), Buffer.alloc(BLOCK_BYTES / 4)];
    const block = await filesystem.blocks.write({ ...blockWrite('archive', data, BLOCK_BYTES, 'none'), recheck: true, parity });
    expect(parity[0]?.equals(Buffer.alloc(BLOCK_BYTES / 4))).toBe(false);
    // Two data shards lost: the block comes back only through the parity the room held.
    for (const shardIndex of [0, 2]) {
      const lost = filesystem.blocks.location(block, shardIndex);
      rmSync(lost.path);
      filesystem.fds.forget(lost.path);
    }
    expect((await readBack(block, 0, BLOCK_BYTES)).equals(expected)).toBe(true);
    // A room too small for the shards is not used.
    const small = [Buffer.alloc(16), Buffer.alloc(16)];
    const other = await filesystem.blocks.write({ ...blockWrite('archive', data, BLOCK_BYTES, 'none'), parity: small });
    expect(small[0]?.equals(Buffer.alloc(16))).toBe(true);
    expect((await readBack(other, 0, BLOCK_BYTES)).equals(expected)).toBe(true);
  });

  it('fails with EIO and leaves no shard files when a buffer changes after its checksums', async () => {
    const data = Buffer.concat([randomBytes(BLOCK_BYTES), Buffer.alloc(BLOCK_PADDING_BYTES)]);
    let isChanged = false;
    filesystem.blocks.observer = {
      ...NO_BLOCK_OBSERVER,
      shardWritten: () => {
        // The first shard file is on its way to the disk: a buggy caller scribbles on its data.
        if (!isChanged) data[100] = (data[100] ?? 0) ^ 0xff;
        isChanged = true;
      },
    };
    const error = await filesystem.blocks.write({ ...blockWrite('archive', data, BLOCK_BYTES, 'none'), recheck: true })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(FsError);
    expect((error as FsError).errno).toBe(Errno.EIO);
    expect((error as FsError).message).toMatch(/written chunk 0 does not match its checksum/);
    expect(shardFilesOfBlock()).toEqual([]);
    // Unchanged buffers pass the recheck.
    isChanged = true;
    await filesystem.blocks.write({ ...blockWrite('archive', data, BLOCK_BYTES, 'none'), recheck: true });
    expect(shardFilesOfBlock()).toHaveLength(6);
  });

  it('writes shards from aligned buffers past the page cache, unaligned parts through it', async () => {
    const aligned = allocAligned(BLOCK_BYTES + BLOCK_PADDING_BYTES);
    expect(directBytes(aligned.subarray(0, 3 * 4096 + 100))).toBe(3 * 4096);
    expect(directBytes(aligned.subarray(100, 9000))).toBe(0);
    expect(directBytes(Buffer.alloc(8192))).toBe(0);
    // Shard 0 and the parity start aligned and end in a tail; shards 1-3 start unaligned.
    const dataBytes = BLOCK_BYTES - 1000;
    randomBytes(dataBytes).copy(aligned);
    const expected = Buffer.from(aligned.subarray(0, dataBytes));
    const parity = [allocAligned(BLOCK_BYTES / 4), allocAligned(BLOCK_BYTES / 4)];
    const block = await filesystem.blocks.write({ ...blockWrite('archive', aligned, dataBytes, 'none'), recheck: true, parity });
    expect((await readBack(block, 0, dataBytes)).equals(expected)).toBe(true);
    const scratch = Buffer.alloc(filesystem.blocks.shardBytesOf(block));
    expect(await filesystem.blocks.verify(block, scratch)).toEqual([]);
    // Two data shards lost: parity written directly rebuilds them.
    for (const shardIndex of [0, 1]) {
      const lost = filesystem.blocks.location(block, shardIndex);
      rmSync(lost.path);
      filesystem.fds.forget(lost.path);
    }
    expect((await readBack(block, 0, dataBytes)).equals(expected)).toBe(true);
  });
});
