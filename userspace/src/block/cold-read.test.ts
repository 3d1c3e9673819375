/**
 * Cold reads of big ranges (ShardReader's one-job path: open, prefix and payload, close, verify
 * in one thread-pool job, O_DIRECT into page-aligned targets): the bytes are exactly those
 * written, for every topology, with or without the shard's header cached; a page-aligned
 * target is filled past the page cache; a damaged payload chunk or header, a short file and a
 * missing file are EIO (or served from another copy / rebuilt from parity), never garbage.
 * Method: a real filesystem on temporary bucket folders (no mount); shard files are damaged in
 * place and their pages dropped with dd iflag=nocache; fincore shows what is cached.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, truncateSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { OpenFilesystem } from '../daemon/open.js';
import { cachedBytes } from '../../test/helpers/page-cache.js';
import { Errno, FsError } from '../errno.js';
import { allocHugePages, crc32cChunks, READ_SHORT, readShardVerify } from '../erasure/index.js';
import { shardGeometry } from '../layout/index.js';
import type { BlockRecord } from '../meta/index.js';
import {
  dropPages, flipByte, openBlockFixture, TOPOLOGY_POOLS, writeTestBlock, type BlockFixture,
} from '../../test/helpers/block-fixture.js';
import { allocAligned, allocAlignedSlab, directBytes, type ShardEvent } from './index.js';

const BLOCK_BYTES = 1024 * 1024;

let fixture: BlockFixture;
let filesystem: OpenFilesystem;
let nextBlock = 0;

beforeEach(() => {
  fixture = openBlockFixture('cold-read', TOPOLOGY_POOLS);
  filesystem = fixture.filesystem;
});

afterEach(() => fixture.close());

/** Writes a new block (a new shard file name each time: nothing of it is cached). */
function writeBlock(pool: string, data: Buffer): Promise<BlockRecord> {
  return writeTestBlock(filesystem, pool, data, { ino: 9, blockIndex: nextBlock++ });
}

function shardPath(block: BlockRecord, shardIndex: number): string {
  return filesystem.blocks.location(block, shardIndex).path;
}


/** Flips one byte of a shard file at `fileOffset`, on disk, and drops the file's pages. */
function damage(path: string, fileOffset: number): void {
  flipByte(path, fileOffset, 0x40);
  dropPages(path);
}

async function readInto(target: Buffer, block: BlockRecord, range: { start: number; end: number }): Promise<Buffer> {
  await filesystem.blocks.read(block, range, target, 0);
  return target.subarray(0, range.end - range.start);
}

async function readError(block: BlockRecord, range: { start: number; end: number }): Promise<unknown> {
  return readInto(allocAligned(BLOCK_BYTES), block, range).then(() => 'no error', (error: unknown) => error);
}

describe('cold big reads', () => {
  it('return exactly the written bytes for every topology, aligned target or not, header cached or not', async () => {
    for (const pool of ['plain', 'mirrored', 'archive']) {
      for (const dataBytes of [BLOCK_BYTES, BLOCK_BYTES - 1001, 300_000]) {
        const data = randomBytes(dataBytes);
        const block = await writeBlock(pool, data);
        for (let shardIndex = 0; shardIndex < block.buckets.length; shardIndex++) dropPages(shardPath(block, shardIndex));
        const label = `${pool}, ${dataBytes} bytes`;
        const whole = { start: 0, end: dataBytes };
        expect((await readInto(allocAligned(BLOCK_BYTES), block, whole)).equals(data), label).toBe(true);
        // Now with the header cached, into a plain buffer, and ranges that are not chunk aligned.
        expect((await readInto(Buffer.alloc(BLOCK_BYTES), block, whole)).equals(data), label).toBe(true);
        const part = { start: 4096 + 17, end: Math.min(dataBytes, 4096 + 17 + 200_000) };
        const partRead = await readInto(Buffer.alloc(BLOCK_BYTES), block, part);
        expect(partRead.equals(data.subarray(part.start, part.end)), label).toBe(true);
      }
    }
  });

  it('reads a page-aligned target past the page cache, a plain one through it', async () => {
    const data = randomBytes(BLOCK_BYTES);
    const direct = await writeBlock('plain', data);
    dropPages(shardPath(direct, 0));
    expect((await readInto(allocAligned(BLOCK_BYTES), direct, { start: 0, end: BLOCK_BYTES })).equals(data)).toBe(true);
    expect(cachedBytes(shardPath(direct, 0))).toBe(0);
    const buffered = await writeBlock('plain', data);
    dropPages(shardPath(buffered, 0));
    expect((await readInto(Buffer.alloc(BLOCK_BYTES), buffered, { start: 0, end: BLOCK_BYTES })).equals(data)).toBe(true);
    expect(cachedBytes(shardPath(buffered, 0))).toBeGreaterThanOrEqual(BLOCK_BYTES);
  });

  it('answers EIO for a damaged payload chunk or header, a short file and a missing file', async () => {
    const events: ShardEvent[] = [];
    filesystem.blocks.onShardError = (event) => events.push(event);
    const data = randomBytes(BLOCK_BYTES);
    const payloadOffset = shardGeometry(BLOCK_BYTES).payloadOffset;
    const whole = { start: 0, end: BLOCK_BYTES };
    const cases: [string, (path: string) => void][] = [
      ['payload', (path) => damage(path, payloadOffset + 700_000)],
      ['header', (path) => damage(path, 40)],
      ['short', (path) => truncateSync(path, payloadOffset + BLOCK_BYTES - 4096)],
      ['missing', (path) => unlinkSync(path)],
    ];
    for (const [what, harm] of cases) {
      const block = await writeBlock('plain', data);
      harm(shardPath(block, 0));
      const error = await readError(block, whole);
      expect(error, what).toBeInstanceOf(FsError);
      expect((error as FsError).errno, what).toBe(Errno.EIO);
    }
    expect(events.map((event) => event.error.kind)).toEqual(['corrupt', 'corrupt', 'corrupt', 'missing']);
    // A damaged chunk of a shard whose header is cached: still EIO.
    const block = await writeBlock('plain', data);
    expect((await readInto(allocAligned(BLOCK_BYTES), block, whole)).equals(data)).toBe(true);
    damage(shardPath(block, 0), payloadOffset + 5);
    expect(((await readError(block, whole)) as FsError).errno).toBe(Errno.EIO);
  });

  it('serves a damaged mirror copy from the other copy and rebuilds a damaged erasure shard', async () => {
    filesystem.blocks.onShardError = () => undefined;
    const data = randomBytes(BLOCK_BYTES);
    const payloadOffset = (block: BlockRecord) => shardGeometry(filesystem.blocks.shardBytesOf(block)).payloadOffset;
    const mirrored = await writeBlock('mirrored', data);
    damage(shardPath(mirrored, 0), payloadOffset(mirrored) + 300_000);
    expect((await readInto(allocAligned(BLOCK_BYTES), mirrored, { start: 0, end: BLOCK_BYTES })).equals(data)).toBe(true);
    const archive = await writeBlock('archive', data);
    damage(shardPath(archive, 1), payloadOffset(archive) + 10);
    for (let shardIndex = 0; shardIndex < archive.buckets.length; shardIndex++) dropPages(shardPath(archive, shardIndex));
    expect((await readInto(allocAligned(BLOCK_BYTES), archive, { start: 0, end: BLOCK_BYTES })).equals(data)).toBe(true);
  });
});

describe('readShardVerify', () => {
  it('reads prefix and payload, names a bad chunk, reports a short file and a missing one', async () => {
    const path = join(fixture.root, 'shard');
    const payload = randomBytes(64 * 4096);
    const prefix = Buffer.alloc(4096, 7);
    const table = prefix.subarray(100, 100 + 4 * 64);
    crc32cChunks(payload, 4096, table);
    const fd = openSync(path, 'w');
    writeSync(fd, prefix);
    writeSync(fd, payload);
    closeSync(fd);
    dropPages(path);
    const gotPrefix = Buffer.alloc(4096);
    const data = allocAligned(64 * 4096);
    const check = { chunkBytes: 4096, table: gotPrefix.subarray(100, 100 + 4 * 64), firstChunk: 0 };
    expect(await readShardVerify(path, { prefix: gotPrefix, data, position: 4096 }, check)).toBe(-1);
    expect(gotPrefix.equals(prefix)).toBe(true);
    expect(data.equals(payload)).toBe(true);
    // Chunks 3 and 4 with a known table, into a plain buffer; then one byte off: chunk 3 is bad.
    const part = Buffer.alloc(2 * 4096);
    const known = { chunkBytes: 4096, table, firstChunk: 3 };
    expect(await readShardVerify(path, { prefix: Buffer.alloc(0), data: part, position: 4 * 4096 }, known)).toBe(-1);
    expect(part.equals(payload.subarray(3 * 4096, 5 * 4096))).toBe(true);
    expect(await readShardVerify(path, { prefix: Buffer.alloc(0), data: part, position: 4 * 4096 + 1 }, known)).toBe(3);
    const pastEnd = { prefix: Buffer.alloc(0), data: part, position: 64 * 4096 };
    expect(await readShardVerify(path, pastEnd, known)).toBe(READ_SHORT);
    const missing = await readShardVerify(join(fixture.root, 'none'), { prefix: gotPrefix, data, position: 4096 }, check)
      .catch((error: unknown) => error);
    expect((missing as { code?: string }).code).toBe('ENOENT');
    const overlapping = { prefix: data.subarray(0, 4096), data, position: 4096 };
    await expect(readShardVerify(path, overlapping, check)).rejects.toThrow(/overlaps/);
  });
});

describe('allocHugePages', () => {
  it('maps zeroed memory of whole huge pages that O_DIRECT may use, and refuses other sizes', async () => {
    const memory = allocHugePages(4 * 1024 * 1024);
    expect(memory.byteLength).toBe(4 * 1024 * 1024);
    expect(new Uint8Array(memory).every((byte) => byte === 0)).toBe(true);
    expect(() => allocHugePages(4096)).toThrow(RangeError);
    expect(() => allocHugePages(0)).toThrow(RangeError);
    const slab = allocAlignedSlab(2 * 1024 * 1024);
    expect(directBytes(slab.subarray(BLOCK_BYTES))).toBe(BLOCK_BYTES);
    const data = randomBytes(BLOCK_BYTES);
    const block = await writeBlock('plain', data);
    dropPages(shardPath(block, 0));
    expect((await readInto(slab.subarray(BLOCK_BYTES), block, { start: 0, end: BLOCK_BYTES })).equals(data)).toBe(true);
    expect(cachedBytes(shardPath(block, 0))).toBe(0);
  });
});
