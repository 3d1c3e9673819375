/**
 * The read fast path (BlockStore.readNow over preadv2(RWF_NOWAIT) + chunk checks): it returns
 * exactly the bytes read() returns, for every topology and for ranges that are not chunk
 * aligned (up to 256 KiB of one shard; more is left to the thread pool); it refuses a shard
 * whose bytes no longer match their checksums (read() then answers EIO) and shards that are
 * not in the page cache (read() then reads them from disk). A shard read in full by read() (one
 * thread-pool job that opens and closes it) leaves no descriptor behind: the first small read()
 * of each shard opens the one the fast path uses.
 * Method: a real filesystem opened on temporary bucket folders (no mount); shard files are
 * damaged in place and their pages dropped with dd iflag=nocache (posix_fadvise DONTNEED).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { OpenFilesystem } from '../daemon/open.js';
import { Errno, FsError } from '../errno.js';
import { crc32cChunks, PREAD_NOT_CACHED, preadVerifyChunksNow } from '../erasure/index.js';
import type { BlockRecord } from '../meta/index.js';
import {
  dropPages, openBlockFixture, TOPOLOGY_POOLS, writeTestBlock, type BlockFixture,
} from '../../test/helpers/block-fixture.js';
import type { ShardEvent } from './index.js';

const BLOCK_BYTES = 1024 * 1024;
/** Not a multiple of the chunk size nor of the erasure data count: padding and a short chunk. */
const DATA_BYTES = BLOCK_BYTES - 1001;

let fixture: BlockFixture;
let filesystem: OpenFilesystem;

beforeEach(() => {
  fixture = openBlockFixture('read-now', TOPOLOGY_POOLS);
  filesystem = fixture.filesystem;
});

afterEach(() => fixture.close());

function writeBlock(pool: string, data: Buffer): Promise<BlockRecord> {
  return writeTestBlock(filesystem, pool, data, { ino: 7, blockIndex: 3 });
}

/** readNow into a fresh buffer: the bytes, or undefined when it declined. */
function readNow(block: BlockRecord, start: number, end: number): Buffer | undefined {
  const target = Buffer.alloc(end - start, 0xee);
  return filesystem.blocks.readNow(block, { start, end }, target, 0) ? target : undefined;
}

/** The whole block by read(), then a small read() of each shard: descriptors for the fast path. */
async function readAndWarm(block: BlockRecord): Promise<Buffer> {
  const whole = await read(block, 0, block.dataBytes);
  const shardBytes = filesystem.blocks.shardBytesOf(block);
  const dataShards = block.topology.startsWith('erasure') ? Math.ceil(block.storedBytes / shardBytes) : 1;
  for (let shardIndex = 0; shardIndex < dataShards; shardIndex++) {
    const start = shardIndex * shardBytes;
    await read(block, start, Math.min(start + 4096, block.dataBytes));
  }
  return whole;
}

async function read(block: BlockRecord, start: number, end: number): Promise<Buffer> {
  const target = Buffer.alloc(end - start, 0xee);
  await filesystem.blocks.read(block, { start, end }, target, 0);
  return target;
}

/** Flips one payload byte of a shard file in place (through the page cache). */
function damage(path: string, payloadIndex: number, block: BlockRecord, shardIndex: number): Promise<void> {
  return filesystem.blocks.header(block, shardIndex).then(({ header }) => {
    const fd = openSync(path, 'r+');
    const byte = Buffer.alloc(1);
    const at = header.payload_offset + payloadIndex;
    readSync(fd, byte, 0, 1, at);
    byte[0] = (byte[0] ?? 0) ^ 0x40;
    writeSync(fd, byte, 0, 1, at);
    closeSync(fd);
  });
}

describe('read fast path', () => {
  it('returns exactly what read() returns, for single, mirror and erasure blocks and any range', async () => {
    const data = randomBytes(DATA_BYTES);
    const ranges: [number, number][] = [
      [0, 4096], [4096, 8192], [5000, 70_001], [0, 256 * 1024], [DATA_BYTES - 10, BLOCK_BYTES],
      [DATA_BYTES + 5, BLOCK_BYTES], [262_000, 263_000],
    ];
    for (const pool of ['plain', 'mirrored', 'archive']) {
      const block = await writeBlock(pool, data);
      // Nothing of the shard is known yet (descriptor, verified header): the fast path declines.
      expect(readNow(block, 0, 4096)).toBeUndefined();
      expect((await readAndWarm(block)).equals(data)).toBe(true);
      for (const [start, end] of ranges) {
        const expected = await read(block, start, end);
        const fast = readNow(block, start, end);
        expect(fast, `${pool} [${start}, ${end})`).toBeDefined();
        expect(fast?.equals(expected), `${pool} [${start}, ${end})`).toBe(true);
      }
      // A whole block is left to the thread pool, except where it is cut into 4 shards.
      expect(readNow(block, 0, DATA_BYTES)?.equals(data)).toBe(pool === 'archive' ? true : undefined);
    }
  });

  it('declines a shard whose bytes no longer match; read() then answers EIO', async () => {
    const data = randomBytes(DATA_BYTES);
    const block = await writeBlock('plain', data);
    expect((await readAndWarm(block)).equals(data)).toBe(true);
    expect(readNow(block, 8192, 12_288)).toBeDefined();
    const events: ShardEvent[] = [];
    filesystem.blocks.onShardError = (event) => events.push(event);
    await damage(filesystem.blocks.location(block, 0).path, 10_000, block, 0);
    // Chunk 2 holds byte 10,000: every range touching it is refused, the others still served.
    expect(readNow(block, 8192, 12_288)).toBeUndefined();
    expect(readNow(block, 9000, 9001)).toBeUndefined();
    expect(readNow(block, 0, 8192)?.equals(data.subarray(0, 8192))).toBe(true);
    const error = await read(block, 8192, 12_288).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(FsError);
    expect((error as FsError).errno).toBe(Errno.EIO);
    expect(events.map((event) => event.error.kind)).toEqual(['corrupt']);
  });

  it('declines a damaged first mirror copy; read() then serves the other copy', async () => {
    const data = randomBytes(DATA_BYTES);
    const block = await writeBlock('mirrored', data);
    expect((await readAndWarm(block)).equals(data)).toBe(true);
    await damage(filesystem.blocks.location(block, 0).path, 100, block, 0);
    expect(readNow(block, 0, 4096)).toBeUndefined();
    filesystem.blocks.onShardError = () => undefined;
    expect((await read(block, 0, 4096)).equals(data.subarray(0, 4096))).toBe(true);
  });

  it('declines shards that are not in the page cache, and serves them once read()', async () => {
    const data = randomBytes(DATA_BYTES);
    for (const pool of ['plain', 'archive']) {
      const block = await writeBlock(pool, data);
      expect((await readAndWarm(block)).equals(data)).toBe(true);
      expect(readNow(block, 0, 4096)?.equals(data.subarray(0, 4096))).toBe(true);
      for (let shardIndex = 0; shardIndex < block.buckets.length; shardIndex++) {
        dropPages(filesystem.blocks.location(block, shardIndex).path);
      }
      expect(readNow(block, 0, 4096)).toBeUndefined();
      expect((await read(block, 0, 4096)).equals(data.subarray(0, 4096))).toBe(true);
      expect(readNow(block, 0, 4096)?.equals(data.subarray(0, 4096))).toBe(true);
    }
  });
});

describe('preadVerifyChunksNow', () => {
  it('reads and verifies cached bytes, names a bad chunk, and reports what it cannot read at once', () => {
    const path = join(fixture.root, 'payload');
    const payload = randomBytes(5 * 4096 + 100);
    const table = Buffer.alloc(4 * 6);
    crc32cChunks(payload, 4096, table);
    const fd = openSync(path, 'w+');
    try {
      writeSync(fd, Buffer.alloc(512, 9));
      writeSync(fd, payload);
      const target = Buffer.alloc(2 * 4096);
      const check = { chunkBytes: 4096, table, firstChunk: 1 };
      expect(preadVerifyChunksNow(target, check, fd, 512 + 4096)).toBe(-1);
      expect(target.equals(payload.subarray(4096, 3 * 4096))).toBe(true);
      const tail = Buffer.alloc(4096 + 100);
      expect(preadVerifyChunksNow(tail, { chunkBytes: 4096, table, firstChunk: 4 }, fd, 512 + 4 * 4096)).toBe(-1);
      // Read one byte off: chunk 1 and 2 differ, the first one is named.
      expect(preadVerifyChunksNow(target, check, fd, 512 + 4096 + 1)).toBe(1);
      // Past the end of the file: not all bytes could be read.
      expect(preadVerifyChunksNow(target, check, fd, 512 + 4 * 4096)).toBe(PREAD_NOT_CACHED);
      dropPages(path);
      expect(preadVerifyChunksNow(target, check, fd, 512 + 4096)).toBe(PREAD_NOT_CACHED);
      expect(() => preadVerifyChunksNow(target, check, -1, 0)).toThrow(RangeError);
    } finally {
      closeSync(fd);
    }
  });
});
