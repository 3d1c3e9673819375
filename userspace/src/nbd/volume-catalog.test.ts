/**
 * Volume exports over the real file store: whole-block writes are stored behind the reply,
 * yet reads see them at once and a flush covers them; a block whose store fails stays
 * readable and dirty, the flush reports the failure, and a later flush stores it.
 *
 * Method: a filesystem opened on a temporary bucket folder (no mount, no socket); the bucket
 * is broken by putting a plain file where its folder was.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/index.js';
import { openFilesystem, type OpenFilesystem } from '../daemon/open.js';
import type { NbdExport } from './export.js';
import { VolumeCatalog } from './volume-catalog.js';
import { createVolume } from './volumes.js';

const BLOCK_BYTES = 1024 * 1024;
const VOLUME_BYTES = 8 * BLOCK_BYTES;

let root: string;
let filesystem: OpenFilesystem;
let catalog: VolumeCatalog;
let ino: number;

beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), 'shmr-volume-catalog-'));
  mkdirSync(join(root, 'ssd0'));
  const pools = '{ ssd: { topology: single, block_size: 1MiB, buckets: { ssd0: { path: ./ssd0 } } } }';
  const yaml = `mount_dir: ./mnt\nmetadata_dir: ./meta\nwrite_pool: ssd\npools: ${pools}\n`;
  const config = parseConfig(yaml, { source: 'test', baseDir: root });
  filesystem = openFilesystem(config);
  catalog = new VolumeCatalog(filesystem);
  ino = (await createVolume(filesystem, { name: 'disk', sizeBytes: VOLUME_BYTES })).ino;
});

afterEach(() => {
  filesystem.close();
  rmSync(root, { recursive: true, force: true });
});

function openDisk(): NbdExport {
  const target = catalog.open('disk');
  if (target === undefined) throw new Error('volume "disk" missing');
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
});
