/**
 * FileStore writes that cover part of a block: a block that is not cached is not loaded for
 * such a write; its stored bytes are merged in when the block is read or stored. Checked
 * against a plain buffer over random writes, reads, truncates and flushes, across a reopen
 * (nothing cached), with a memory limit that forces stores of partial blocks, and for the
 * errors a merge can meet. Method: a real filesystem opened on temporary bucket folders (no
 * mount); reopening it is a remount.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/index.js';
import { openFilesystem, type OpenFilesystem } from '../daemon/open.js';
import { NO_BLOCK_OBSERVER } from '../block/index.js';
import { storedShardPath } from '../../test/helpers/block-fixture.js';

const BLOCK_BYTES = 64 * 1024;

let root: string;
let filesystem: OpenFilesystem | undefined;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'shmr-file-store-'));
  mkdirSync(join(root, 'b0'));
});

afterEach(() => {
  filesystem?.close();
  filesystem = undefined;
  rmSync(root, { recursive: true, force: true });
});

/** Opens (or reopens: a remount, nothing cached) the filesystem under `root`. */
function open(cache: { memoryLimit?: string } = {}): OpenFilesystem {
  filesystem?.close();
  const config = parseConfig(`
mount_dir: ./mnt
metadata_dir: ./meta
write_pool: plain
cache: { memory_limit: ${cache.memoryLimit ?? '64MiB'}, dirty_age: 1h }
pools:
  plain:
    topology: single
    block_size: 64KiB
    buckets:
      b0: { path: ./b0 }
`, { source: 'test', baseDir: root });
  filesystem = openFilesystem(config);
  return filesystem;
}

function createFile(fs: OpenFilesystem, name: string): number {
  return fs.meta.createInode({ parent: 1, name, mode: 0o100644, uid: 0, gid: 0 }).ino;
}

async function readAll(fs: OpenFilesystem, ino: number, size: number): Promise<Buffer> {
  const target = Buffer.alloc(size);
  const bytes = await fs.files.read(ino, 0, size, target);
  expect(bytes).toBe(size);
  return target;
}

/** A file of `size` random bytes, stored and fsynced, then the filesystem reopened. */
async function storedFile(size: number, cache: { memoryLimit?: string } = {}): Promise<{ fs: OpenFilesystem; ino: number; model: Buffer }> {
  const first = open(cache);
  const ino = createFile(first, 'f');
  const model = randomBytes(size);
  await first.files.write(ino, 0, model);
  await first.files.flush(ino, { sync: true });
  return { fs: open(cache), ino, model };
}

/** A small deterministic generator, so a failure can be replayed. */
function generator(seed: number): (limit: number) => number {
  let state = seed >>> 0;
  return (limit) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return Math.floor((state / 2 ** 32) * limit);
  };
}

/** Counts stored blocks (the block store's observer). */
function countStores(fs: OpenFilesystem): { count: number } {
  const counter = { count: 0 };
  fs.blocks.observer = { ...NO_BLOCK_OBSERVER, blockWritten: () => { counter.count += 1; } };
  return counter;
}

describe('writes of part of a block', () => {
  it('match a plain buffer over random writes, reads, truncates and flushes, and after a reopen', async () => {
    for (const memoryLimit of ['64MiB', '128KiB']) {
      const { fs, ino, model: initial } = await storedFile(5 * BLOCK_BYTES + 1234, { memoryLimit });
      let model = Buffer.from(initial);
      const random = generator(memoryLimit.length * 7919);
      for (let step = 0; step < 400; step++) {
        const choice = random(100);
        if (choice < 70) {
          // Mostly small writes (writeback of pages), some across blocks or past the end.
          const length = random(4) === 0 ? 1 + random(3 * BLOCK_BYTES) : 1 + random(8192);
          const offset = random(model.byteLength + BLOCK_BYTES);
          const data = randomBytes(length);
          expect(await fs.files.write(ino, offset, data)).toBe(length);
          if (offset + length > model.byteLength) {
            model = Buffer.concat([model, Buffer.alloc(offset + length - model.byteLength)]);
          }
          data.copy(model, offset);
        } else if (choice < 88) {
          const offset = random(model.byteLength + 100);
          const length = 1 + random(2 * BLOCK_BYTES);
          const target = Buffer.alloc(length);
          const bytes = await fs.files.read(ino, offset, length, target);
          const expected = model.subarray(offset, offset + length);
          expect(bytes).toBe(expected.byteLength);
          expect(target.subarray(0, bytes).equals(expected)).toBe(true);
        } else if (choice < 94) {
          const size = random(model.byteLength + BLOCK_BYTES);
          await fs.files.truncate(ino, size);
          model = size <= model.byteLength
            ? Buffer.from(model.subarray(0, size))
            : Buffer.concat([model, Buffer.alloc(size - model.byteLength)]);
        } else {
          await fs.files.flush(ino, { sync: random(2) === 0 });
        }
        expect(fs.files.overlay(ino)?.size).toBe(model.byteLength);
      }
      expect((await readAll(fs, ino, model.byteLength)).equals(model)).toBe(true);
      await fs.files.flush(ino, { sync: true });
      const reopened = open({ memoryLimit });
      expect(reopened.meta.getInode(ino)?.size).toBe(model.byteLength);
      expect((await readAll(reopened, ino, model.byteLength)).equals(model)).toBe(true);
      reopened.close();
      filesystem = undefined;
      rmSync(join(root, 'meta'), { recursive: true, force: true });
      rmSync(join(root, 'b0'), { recursive: true, force: true });
      mkdirSync(join(root, 'b0'));
    }
  }, 60_000);

  it('leave an uncached block unread until it is read or stored, and keep each written byte', async () => {
    const { fs, ino, model } = await storedFile(3 * BLOCK_BYTES);
    const stores = countStores(fs);
    const pieces = [[100, 4096], [BLOCK_BYTES + 5000, 3000], [BLOCK_BYTES + 4000, 2000], [2 * BLOCK_BYTES - 10, 10]];
    for (const [offset, length] of pieces) {
      const data = randomBytes(length as number);
      await fs.files.write(ino, offset as number, data);
      data.copy(model, offset as number);
    }
    expect(stores.count).toBe(0);
    // A read inside written bytes is served from them; one over a gap merges the stored bytes.
    const inside = Buffer.alloc(1000);
    await fs.files.read(ino, BLOCK_BYTES + 4500, 1000, inside);
    expect(inside.equals(model.subarray(BLOCK_BYTES + 4500, BLOCK_BYTES + 5500))).toBe(true);
    expect((await readAll(fs, ino, model.byteLength)).equals(model)).toBe(true);
    await fs.files.flush(ino, { sync: true });
    expect(stores.count).toBe(2);
    expect((await readAll(open(), ino, model.byteLength)).equals(model)).toBe(true);
  });

  it('store a new block once when its pieces arrive out of order', async () => {
    const fs = open();
    const ino = createFile(fs, 'f');
    const stores = countStores(fs);
    const model = randomBytes(3 * BLOCK_BYTES);
    // Writeback of a misaligned stream: a block's tail comes with one request, its head with
    // the previous one, which may run later.
    const cut = 40_000;
    await Promise.all([
      fs.files.write(ino, BLOCK_BYTES + cut, model.subarray(BLOCK_BYTES + cut, 2 * BLOCK_BYTES + cut)),
      fs.files.write(ino, cut, model.subarray(cut, BLOCK_BYTES + cut)),
      fs.files.write(ino, 0, model.subarray(0, cut)),
      fs.files.write(ino, 2 * BLOCK_BYTES + cut, model.subarray(2 * BLOCK_BYTES + cut)),
    ]);
    expect(stores.count).toBe(3);
    // A block a write completed is let go once stored (a sequential writer is done with it).
    expect(fs.files.cacheBytes).toBe(0);
    await fs.files.flush(ino, { sync: true });
    expect(stores.count).toBe(3);
    expect((await readAll(open(), ino, model.byteLength)).equals(model)).toBe(true);
  });

  it('reads bytes past the stored data of a block and in gaps past the end as zeros', async () => {
    const { fs, ino, model } = await storedFile(BLOCK_BYTES / 2);
    const tail = randomBytes(1000);
    await fs.files.write(ino, BLOCK_BYTES / 2 + 3000, tail);
    const expected = Buffer.concat([model, Buffer.alloc(3000), tail]);
    expect((await readAll(fs, ino, expected.byteLength)).equals(expected)).toBe(true);
    await fs.files.flush(ino, { sync: true });
    expect((await readAll(open(), ino, expected.byteLength)).equals(expected)).toBe(true);
  });

  it('reports a block whose stored bytes cannot be loaded, and keeps the written bytes for a retry', async () => {
    const { fs, ino, model } = await storedFile(2 * BLOCK_BYTES);
    const data = randomBytes(4096);
    await fs.files.write(ino, 8192, data);
    data.copy(model, 8192);
    // The shard of block 0 goes missing: its gaps cannot be filled.
    const path = storedShardPath(fs, ino, 0);
    const saved = Buffer.from(await import('node:fs').then((m) => m.readFileSync(path)));
    unlinkSync(path);
    fs.fds.clear();
    await expect(fs.files.flush(ino, { sync: true })).rejects.toMatchObject({ errno: 5 });
    expect(fs.files.hasDirtyBlocks(ino)).toBe(true);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(path, saved);
    await fs.files.flush(ino, { sync: true });
    expect(fs.files.hasDirtyBlocks(ino)).toBe(false);
    expect((await readAll(open(), ino, model.byteLength)).equals(model)).toBe(true);
    expect(readdirSync(join(root, 'b0')).length).toBeGreaterThan(0);
  });
});
