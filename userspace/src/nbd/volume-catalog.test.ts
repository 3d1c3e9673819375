/**
 * Volume exports over the real file store: whole-block writes are stored behind the reply,
 * yet reads see them at once and a flush covers them; a block whose store fails stays
 * readable and dirty, the flush reports the failure, and a later flush stores it.
 *
 * Method: a filesystem opened on a temporary bucket folder (no mount, no socket); the bucket
 * is broken by putting a plain file where its folder was.
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/index.js';
import { openFilesystem, type OpenFilesystem } from '../daemon/open.js';
import type { NbdExport } from './export.js';
import { VolumeCatalog } from './volume-catalog.js';
import { Errno } from '../errno.js';
import { POLICY_XATTRS } from '../tiering/policy.js';
import { createVolume, findVolume, VOLUME_BLOCK_BYTES_DEFAULT } from './volumes.js';
import { allocPageAligned } from '../block/index.js';
import { ROOT_INO, S_IFREG } from '../meta/index.js';
import { cachedBytes, isWaitingForWriteback } from '../../test/helpers/page-cache.js';
import { storedShardPath } from '../../test/helpers/block-fixture.js';

const BLOCK_BYTES = 1024 * 1024;
const VOLUME_BYTES = 8 * BLOCK_BYTES;
/** cache.writeback_delay here: long, so that no store starts a write-back the test looks at. */
const WRITEBACK_DELAY_MS = 60_000;

let root: string;
let filesystem: OpenFilesystem;
let catalog: VolumeCatalog;
let ino: number;

beforeEach(async () => {
  // On disk, not tmpfs: a test looks at what the page cache holds of shard files.
  root = mkdtempSync(join('/var/tmp', 'shmr-volume-catalog-'));
  mkdirSync(join(root, 'ssd0'));
  const pools = '{ ssd: { topology: single, block_size: 1MiB, buckets: { ssd0: { path: ./ssd0 } } } }';
  const cache = `{ writeback_delay: ${WRITEBACK_DELAY_MS / 1000}s }`;
  const yaml = `mount_dir: ./mnt\nmetadata_dir: ./meta\nwrite_pool: ssd\npools: ${pools}\ncache: ${cache}\n`;
  const config = parseConfig(yaml, { source: 'test', baseDir: root });
  filesystem = openFilesystem(config);
  catalog = new VolumeCatalog(filesystem);
  const input = { name: 'disk', sizeBytes: VOLUME_BYTES, blockBytes: BLOCK_BYTES };
  ino = (await createVolume(filesystem, input)).ino;
});

afterEach(() => {
  filesystem.close();
  rmSync(root, { recursive: true, force: true });
});

function openDisk(name = 'disk'): NbdExport {
  const target = catalog.open(name);
  if (target === undefined) throw new Error(`volume "${name}" missing`);
  return target;
}

async function readBack(target: NbdExport, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  await target.read(offset, length, buffer);
  return buffer;
}

describe('volume exports', () => {
  it('store whole blocks behind the write: visible at once, covered by the next flush', async () => {
    const target = openDisk();
    const data = randomBytes(3 * BLOCK_BYTES);
    const { released } = await target.write(BLOCK_BYTES, data);
    expect((await readBack(target, BLOCK_BYTES, data.byteLength)).equals(data)).toBe(true);
    await target.flush();
    for (let blockIndex = 1; blockIndex <= 3; blockIndex++) {
      expect(filesystem.meta.getBlock(ino, blockIndex)).toBeDefined();
    }
    await released;
    target.release();
    // The cache dropped with the last export: this read comes from the shard files.
    const again = openDisk();
    expect(filesystem.files.cacheBytes).toBe(0);
    expect((await readBack(again, BLOCK_BYTES, data.byteLength)).equals(data)).toBe(true);
    again.release();
  });

  it('keep a block whose store failed readable and dirty until a flush stores it', async () => {
    const target = openDisk();
    const bucket = join(root, 'ssd0');
    renameSync(bucket, `${bucket}.away`);
    writeFileSync(bucket, 'not a folder');
    const data = randomBytes(BLOCK_BYTES);
    const { released } = await target.write(2 * BLOCK_BYTES, data);
    await released;
    expect(filesystem.meta.getBlock(ino, 2)).toBeUndefined();
    expect((await readBack(target, 2 * BLOCK_BYTES, BLOCK_BYTES)).equals(data)).toBe(true);
    await expect(target.flush()).rejects.toThrow();
    expect((await readBack(target, 2 * BLOCK_BYTES, BLOCK_BYTES)).equals(data)).toBe(true);
    rmSync(bucket);
    renameSync(`${bucket}.away`, bucket);
    expect(filesystem.pools.probe(filesystem.meta.filesystemUuid)).toHaveLength(1);
    await target.flush();
    expect(filesystem.meta.getBlock(ino, 2)).toBeDefined();
    target.release();
    const again = openDisk();
    expect((await readBack(again, 2 * BLOCK_BYTES, BLOCK_BYTES)).equals(data)).toBe(true);
    again.release();
  });

  it('get their own block size: 4 MiB unless asked, kept as the block_size policy', async () => {
    const made = await createVolume(filesystem, { name: 'big', sizeBytes: 2 * VOLUME_BLOCK_BYTES_DEFAULT });
    expect(made.blockBytes).toBe(VOLUME_BLOCK_BYTES_DEFAULT);
    expect(filesystem.meta.getXattr(made.ino, POLICY_XATTRS.blockSize)?.toString()).toBe('4MiB');
    const target = openDisk('big');
    expect(target.preferredBlockBytes).toBe(VOLUME_BLOCK_BYTES_DEFAULT);
    const data = randomBytes(VOLUME_BLOCK_BYTES_DEFAULT);
    const { released } = await target.write(VOLUME_BLOCK_BYTES_DEFAULT, data);
    await target.flush();
    await released;
    // One block of 4 MiB, not four of the pool's 1 MiB.
    const record = filesystem.meta.getBlock(made.ino, 1);
    expect(record?.dataBytes).toBe(VOLUME_BLOCK_BYTES_DEFAULT);
    expect(filesystem.meta.getBlock(made.ino, 4)).toBeUndefined();
    expect(filesystem.meta.requireInode(made.ino, 'test').blockBytes).toBe(VOLUME_BLOCK_BYTES_DEFAULT);
    target.release();
    // The asked size, and the pool's 1 MiB volume of beforeEach.
    expect(findVolume(filesystem, 'disk')?.blockBytes).toBe(BLOCK_BYTES);
    const small = await createVolume(filesystem, { name: 'small', sizeBytes: BLOCK_BYTES, blockBytes: 64 * 1024 });
    expect(small.blockBytes).toBe(64 * 1024);
    for (const blockBytes of [3 * BLOCK_BYTES, 32 * 1024, 64 * BLOCK_BYTES]) {
      await expect(createVolume(filesystem, { name: 'bad', sizeBytes: BLOCK_BYTES, blockBytes }))
        .rejects.toMatchObject({ errno: Errno.EINVAL, message: expect.stringMatching(/power of two/) as unknown });
    }
    expect(findVolume(filesystem, 'bad')).toBeUndefined();
  });

  it('leave their stored blocks in the page cache, where a file written through write() goes past it', async () => {
    const made = await createVolume(filesystem, { name: 'big', sizeBytes: 2 * VOLUME_BLOCK_BYTES_DEFAULT });
    const target = openDisk('big');
    // Page-aligned, as NBD payloads are: a whole block stored from it in one write (canWriteAtOnce).
    const data = randomFillSync(allocPageAligned(VOLUME_BLOCK_BYTES_DEFAULT));
    await (await target.write(0, data)).released;
    await target.flush();
    target.release();
    const file = filesystem.meta.createInode({ parent: ROOT_INO, name: 'plain', mode: S_IFREG | 0o644, uid: 0, gid: 0 });
    await filesystem.files.write(file.ino, 0, data);
    await filesystem.files.flush(file.ino, { sync: true });
    const cached = (blockIno: number) => cachedBytes(storedShardPath(filesystem, blockIno, 0));
    expect(cached(made.ino)).toBeGreaterThanOrEqual(VOLUME_BLOCK_BYTES_DEFAULT);
    expect(cached(file.ino)).toBe(0);
  });

  it('start the write-back of stored blocks once they are cache.writeback_delay old', async () => {
    const made = await createVolume(filesystem, { name: 'big', sizeBytes: 4 * VOLUME_BLOCK_BYTES_DEFAULT });
    const target = openDisk('big');
    const write = async (blockIndex: number) => {
      const data = randomFillSync(allocPageAligned(VOLUME_BLOCK_BYTES_DEFAULT));
      await (await target.write(blockIndex * VOLUME_BLOCK_BYTES_DEFAULT, data)).released;
      return storedShardPath(filesystem, made.ino, blockIndex);
    };
    const [first, second] = [await write(0), await write(1)];
    const storedMs = performance.now();
    // Dirty in the page cache: nothing started their write-back with the store.
    expect([first, second].map(isWaitingForWriteback)).toEqual([true, true]);
    await filesystem.files.startAgedWriteback(storedMs + WRITEBACK_DELAY_MS - 1000);
    expect([first, second].map(isWaitingForWriteback)).toEqual([true, true]);
    // Block 1 stored again later: its new shard file waits its own delay.
    await new Promise((resolve) => setTimeout(resolve, 5));
    const replacement = await write(1);
    await filesystem.files.startAgedWriteback(storedMs + WRITEBACK_DELAY_MS);
    expect([first, replacement].map(isWaitingForWriteback)).toEqual([false, true]);
    await filesystem.files.startAgedWriteback(performance.now() + WRITEBACK_DELAY_MS);
    expect(isWaitingForWriteback(replacement)).toBe(false);
    target.release();
  });

  it('read unaligned ranges larger than a FUSE request from the shards of a 4 MiB block', async () => {
    const made = await createVolume(filesystem, { name: 'big', sizeBytes: 2 * VOLUME_BLOCK_BYTES_DEFAULT });
    const data = randomBytes(VOLUME_BLOCK_BYTES_DEFAULT);
    const writer = openDisk('big');
    await (await writer.write(0, data)).released;
    await writer.flush();
    writer.release();
    expect(filesystem.files.cacheBytes).toBe(0);
    const reader = openDisk('big');
    // Neither end on a chunk boundary: read through a scratch buffer of more than 1 MiB.
    const start = 12_345;
    const length = 3 * BLOCK_BYTES + 777;
    expect((await readBack(reader, start, length)).equals(data.subarray(start, start + length))).toBe(true);
    // A write inside the block loads the rest around it (a gap of almost the whole block).
    const patch = randomBytes(100);
    await (await reader.write(VOLUME_BLOCK_BYTES_DEFAULT - 5000, patch)).released;
    await reader.flush();
    patch.copy(data, VOLUME_BLOCK_BYTES_DEFAULT - 5000);
    expect(filesystem.meta.getBlock(made.ino, 0)?.dataBytes).toBe(VOLUME_BLOCK_BYTES_DEFAULT);
    reader.release();
    const again = openDisk('big');
    expect((await readBack(again, 0, VOLUME_BLOCK_BYTES_DEFAULT)).equals(data)).toBe(true);
    again.release();
  });
});
