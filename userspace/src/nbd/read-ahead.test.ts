/**
 * Read-ahead of volumes: ReadAheadWindow asks for the bytes past a connection's sequential
 * reads (and nothing for other reads, nor the same bytes twice); over the real file store the
 * next blocks' shards then come into the page cache before the client asks for them, and what
 * a read returns does not change: a shard damaged after it was read ahead is EIO (or served
 * from its other copy), a block written after it was read ahead reads its new bytes.
 *
 * Method: a filesystem on temporary bucket folders (no mount, no socket); shard pages are
 * dropped with dd iflag=nocache and fincore tells what is cached; shards are damaged in place
 * through the page cache, where read-ahead put their bytes.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Errno } from '../errno.js';
import { readAhead } from '../erasure/index.js';
import { shardGeometry } from '../layout/index.js';
import {
  cachedPages, dropPages, flipByte, openBlockFixture, type BlockFixture,
} from '../../test/helpers/block-fixture.js';
import type { NbdExport } from './export.js';
import { ReadAheadWindow } from './read-ahead.js';
import { VolumeCatalog } from './volume-catalog.js';
import { createVolume } from './volumes.js';

const MiB = 1024 * 1024;
const BLOCK_BYTES = MiB;
const BLOCK_COUNT = 16;
const POLL_MS_MAX = 10_000;

describe('ReadAheadWindow', () => {
  it('asks for the window past sequential reads, each byte once per run', () => {
    const window = new ReadAheadWindow(8 * MiB);
    // The first read of a connection shows no direction yet.
    expect(window.next(0, MiB)).toBeUndefined();
    expect(window.next(MiB, MiB)).toEqual({ offset: 2 * MiB, length: 8 * MiB });
    // The next sequential read adds only what its end moved the window by.
    expect(window.next(2 * MiB, 2 * MiB)).toEqual({ offset: 10 * MiB, length: 2 * MiB });
    expect(window.next(4 * MiB, MiB)).toEqual({ offset: 12 * MiB, length: MiB });
  });

  it('asks nothing for reads elsewhere, and starts over after one', () => {
    const window = new ReadAheadWindow(8 * MiB);
    expect(window.next(0, MiB)).toBeUndefined();
    expect(window.next(MiB, MiB)).toEqual({ offset: 2 * MiB, length: 8 * MiB });
    // A jump backwards, a jump forwards, an empty read: no read-ahead.
    expect(window.next(0, MiB)).toBeUndefined();
    expect(window.next(40 * MiB, MiB)).toBeUndefined();
    expect(window.next(41 * MiB, 0)).toBeUndefined();
    // Sequential again from the last read: a new run, with a whole window.
    expect(window.next(41 * MiB, MiB)).toEqual({ offset: 42 * MiB, length: 8 * MiB });
  });

  it('refuses a window that is not a positive whole number of bytes', () => {
    expect(() => new ReadAheadWindow(0)).toThrow();
    expect(() => new ReadAheadWindow(1.5)).toThrow();
  });
});

describe('volume read-ahead', () => {
  let fixture: BlockFixture | undefined;

  afterEach(() => fixture?.close());

  /** A volume of BLOCK_COUNT stored 1 MiB blocks of random bytes, none cached anywhere. */
  async function storedVolume(topology: string, buckets: number) {
    fixture = openBlockFixture('read-ahead', { ssd: { topology, buckets } });
    const { filesystem } = fixture;
    const catalog = new VolumeCatalog(filesystem);
    const { ino } = await createVolume(filesystem, { name: 'disk', sizeBytes: BLOCK_COUNT * BLOCK_BYTES, blockBytes: BLOCK_BYTES });
    const data = randomBytes(BLOCK_COUNT * BLOCK_BYTES);
    const writer = open(catalog);
    await (await writer.write(0, data)).released;
    await writer.flush();
    writer.release();
    expect(filesystem.files.cacheBytes).toBe(0);
    /** Path of shard `shardIndex` of block `blockIndex` as stored now. */
    const shardPath = (blockIndex: number, shardIndex = 0) => {
      const record = filesystem.meta.getBlock(ino, blockIndex);
      if (record === undefined) throw new Error(`block ${blockIndex} not stored`);
      return filesystem.blocks.location(record, shardIndex).path;
    };
    for (let blockIndex = 0; blockIndex < BLOCK_COUNT; blockIndex++) {
      for (let shardIndex = 0; shardIndex < buckets; shardIndex++) dropPages(shardPath(blockIndex, shardIndex));
    }
    return { catalog, data, shardPath };
  }

  function open(catalog: VolumeCatalog): NbdExport {
    const target = catalog.open('disk');
    if (target === undefined) throw new Error('volume "disk" missing');
    return target;
  }

  async function readBack(target: NbdExport, offset: number, length: number): Promise<Buffer> {
    const buffer = Buffer.alloc(length);
    await target.read(offset, length, buffer);
    return buffer;
  }

  /** Waits until every page of the file is cached; fails after POLL_MS_MAX. */
  async function untilCached(path: string): Promise<void> {
    const pages = Math.ceil((shardGeometry(BLOCK_BYTES).payloadOffset + BLOCK_BYTES) / 4096);
    const deadline = Date.now() + POLL_MS_MAX;
    while (cachedPages(path) < pages) {
      if (Date.now() > deadline) throw new Error(`${path}: ${cachedPages(path)} of ${pages} pages cached`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it('brings the next blocks into the page cache while a connection reads in order', async () => {
    const { catalog, data, shardPath } = await storedVolume('single', 1);
    const reader = open(catalog);
    // A read somewhere first: not sequential, nothing read ahead.
    expect((await readBack(reader, 9 * BLOCK_BYTES, BLOCK_BYTES)).equals(data.subarray(9 * MiB, 10 * MiB))).toBe(true);
    expect((await readBack(reader, 0, BLOCK_BYTES)).equals(data.subarray(0, MiB))).toBe(true);
    expect((await readBack(reader, BLOCK_BYTES, BLOCK_BYTES)).equals(data.subarray(MiB, 2 * MiB))).toBe(true);
    // Sequential from block 1 on: the blocks past it (to the end of this small volume).
    for (const blockIndex of [2, 8, BLOCK_COUNT - 1]) await untilCached(shardPath(blockIndex));
    for (let blockIndex = 2; blockIndex < BLOCK_COUNT; blockIndex++) {
      const offset = blockIndex * BLOCK_BYTES;
      expect((await readBack(reader, offset, BLOCK_BYTES)).equals(data.subarray(offset, offset + MiB))).toBe(true);
    }
    reader.release();
  });

  it('never serves a shard damaged after it was read ahead: EIO, or its other copy', async () => {
    for (const [topology, buckets] of [['single', 1], ['mirror:2', 2]] as const) {
      const { catalog, data, shardPath } = await storedVolume(topology, buckets);
      const reader = open(catalog);
      await readBack(reader, 0, BLOCK_BYTES);
      await readBack(reader, BLOCK_BYTES, BLOCK_BYTES);
      await untilCached(shardPath(3));
      // The cached page is what later reads see.
      flipByte(shardPath(3), shardGeometry(BLOCK_BYTES).payloadOffset + 123_456, 0x10);
      await readBack(reader, 2 * BLOCK_BYTES, BLOCK_BYTES);
      const damaged = readBack(reader, 3 * BLOCK_BYTES, BLOCK_BYTES);
      if (topology === 'single') {
        await expect(damaged, topology).rejects.toMatchObject({ errno: Errno.EIO });
      } else {
        expect((await damaged).equals(data.subarray(3 * MiB, 4 * MiB)), topology).toBe(true);
      }
      reader.release();
      fixture?.close();
      fixture = undefined;
    }
  });

  it('reads the new bytes of a block written after it was read ahead', async () => {
    const { catalog, shardPath } = await storedVolume('single', 1);
    const reader = open(catalog);
    await readBack(reader, 0, BLOCK_BYTES);
    await readBack(reader, BLOCK_BYTES, BLOCK_BYTES);
    const before = shardPath(3);
    await untilCached(before);
    const writer = open(catalog);
    const whole = randomBytes(BLOCK_BYTES);
    const part = randomBytes(4096);
    await (await writer.write(3 * BLOCK_BYTES, whole)).released;
    await (await writer.write(4 * BLOCK_BYTES + 8192, part)).released;
    expect((await readBack(reader, 2 * BLOCK_BYTES, BLOCK_BYTES)).byteLength).toBe(BLOCK_BYTES);
    expect((await readBack(reader, 3 * BLOCK_BYTES, BLOCK_BYTES)).equals(whole)).toBe(true);
    expect((await readBack(reader, 4 * BLOCK_BYTES + 8192, 4096)).equals(part)).toBe(true);
    // Stored, the block is another shard file; read again from there.
    await writer.flush();
    expect(shardPath(3)).not.toBe(before);
    expect((await readBack(reader, 3 * BLOCK_BYTES, BLOCK_BYTES)).equals(whole)).toBe(true);
    writer.release();
    reader.release();
  });

  it('asks the kernel for a file it has, and answers the errno of one it has not', async () => {
    const { shardPath } = await storedVolume('single', 1);
    const path = shardPath(5);
    expect(cachedPages(path)).toBe(0);
    expect(await readAhead(path, 0, shardGeometry(BLOCK_BYTES).payloadOffset + BLOCK_BYTES)).toBe(0);
    await untilCached(path);
    expect(await readAhead(`${path}.absent`, 0, 4096)).toBe(Errno.ENOENT);
    expect(() => readAhead(path, 0, 0)).toThrow(RangeError);
  });
});
