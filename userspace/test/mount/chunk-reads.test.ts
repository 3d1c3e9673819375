/**
 * Reads answered by the binding itself from page-cached shard chunks (fuse/chunk-reads.ts,
 * native/fuse3/chunk_read.c). What must hold: repeated small reads of a Single or Mirror block
 * are answered without JS (the served counter moves) with exactly the current bytes, whatever
 * changed the file in between: writes through the page cache and with O_DIRECT, truncation
 * down and up, unlink and recreate under the same name, a block rewritten to another pool; a
 * chunk damaged in place is never answered (EIO on Single, the other copy on Mirror); a shard
 * whose pages were dropped is read by JS, still right.
 * Method: a real mount; each reader holds one O_DIRECT descriptor (every read reaches the
 * daemon; the first read of a handle always goes to JS), and checks every answer against a
 * model; shard files are warmed into the page cache by reading them, damaged in place through
 * the page cache.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync, constants, fsyncSync, ftruncateSync, openSync, readFileSync, readSync, statSync, unlinkSync, writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { callControl } from '../../src/daemon/control.js';
import type { TaskInfo } from '../../src/tasks/task-manager.js';
import { shardFilesOf } from '../../src/tasks/fsck.js';
import { dropPages, flipByte } from '../helpers/block-fixture.js';
import { sleep, statSeries, withMount, type Mount } from '../helpers/mount.js';

const MIB = 1024 * 1024;
const PAGE = 4096;

/** One O_DIRECT descriptor of a file: reads answer the bytes or the error code. */
class DirectReader {
  readonly #fd: number;
  readonly #buffer = Buffer.alloc(MIB);

  constructor(path: string) {
    this.#fd = openSync(path, constants.O_RDONLY | constants.O_DIRECT);
  }

  read(offset: number, length: number): Buffer | string {
    try {
      return Buffer.from(this.#buffer.subarray(0, readSync(this.#fd, this.#buffer, 0, length, offset)));
    } catch (error) {
      return (error as { code?: string }).code ?? String(error);
    }
  }

  /** `count` reads at random page offsets below `limit` (100 B to 64 KiB) checked against `model`: the bad ones. */
  check(model: Buffer, count: number, limit = model.length): unknown[] {
    const bad: unknown[] = [];
    for (let index = 0; index < count; index++) {
      const length = [100, PAGE, 2 * PAGE, 16 * PAGE][index % 4] as number;
      const offset = Math.floor(Math.random() * Math.ceil(limit / PAGE)) * PAGE + (index % 8 === 7 ? 300 : 0);
      const got = this.read(offset, length);
      const want = model.subarray(offset, offset + length);
      if (typeof got === 'string' || !got.equals(want)) bad.push([offset, length, typeof got === 'string' ? got : got.length]);
    }
    return bad;
  }

  close(): void {
    closeSync(this.#fd);
  }
}

/** Reads every shard file of the mount's buckets, so their pages are cached. */
function warmShards(mount: Mount): void {
  for (const bucket of Object.values(mount.buckets)) for (const file of shardFilesOf(bucket)) readFileSync(file);
}

/** The shard files of block `blockIndex` of inode `ino`, in all buckets. */
function shardsOf(mount: Mount, ino: number, blockIndex: number): string[] {
  return Object.values(mount.buckets).flatMap(shardFilesOf).filter((file) => file.includes(`/${ino}-${blockIndex}-`));
}

/**
 * The binding's counts and the READs the metrics counted in all (metrics collect every
 * second: waits for a fresh sweep).
 */
async function chunkReads(mount: Mount): Promise<{ served: number; notCached: number; mismatch: number; readOps: number }> {
  await sleep(1200);
  const outcome = (name: string): number => statSeries(mount.mountpoint, 'fuse_chunk_reads_total', `outcome="${name}"`);
  return {
    served: outcome('served'), notCached: outcome('not_cached'), mismatch: outcome('mismatch'),
    readOps: statSeries(mount.mountpoint, 'fuse_operations_total', 'op="read"'),
  };
}

async function control(mount: Mount, method: string, params: Record<string, unknown> = {}): Promise<unknown> {
  return callControl(join(mount.root, 'meta'), method, params);
}

/** Writes `data` to `path` through one descriptor, fsynced, as a model copy. */
function writeAt(path: string, model: Buffer, offset: number, data: Buffer, flags = constants.O_WRONLY): Buffer {
  const fd = openSync(path, flags);
  try {
    writeSync(fd, data, 0, data.length, offset);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const next = Buffer.alloc(Math.max(model.length, offset + data.length));
  model.copy(next);
  data.copy(next, offset);
  return next;
}

/** Writes `bytes` random bytes as `name`, stored and warm in the page cache, then runs `body` with a reader of it held open. */
async function withStoredFile(
  mount: Mount, name: string, bytes: number,
  body: (file: { path: string; model: Buffer; ino: number; reader: DirectReader }) => Promise<void>,
): Promise<void> {
  const path = join(mount.mountpoint, name);
  const model: Buffer = randomBytes(bytes);
  writeFileSync(path, model);
  await control(mount, 'flush');
  warmShards(mount);
  const reader = new DirectReader(path);
  try {
    await body({ path, model, ino: statSync(path).ino, reader });
  } finally {
    reader.close();
  }
}

describe('reads answered in C from page-cached shard chunks', () => {
  it('serves repeated small reads natively, exactly, and follows writes, truncation and recreation', async () => {
    await withMount({}, async (mount) => {
      const path = join(mount.mountpoint, 'f');
      let model: Buffer = Buffer.alloc(0);
      await withStoredFile(mount, 'f', 4 * MIB + 5000, async ({ model: written, reader }) => {
        model = written;
        const before = await chunkReads(mount);
        expect(reader.check(model, 2000)).toEqual([]);
        const after = await chunkReads(mount);
        const served = after.served - before.served;
        // The handle's first read and each block's first go to JS; nearly all others here.
        expect(served).toBeGreaterThan(1900);
        // The read op's count includes the reads answered in C.
        expect(after.readOps - before.readOps).toBeGreaterThanOrEqual(2000);

        // Buffered (writeback cache) and O_DIRECT writes into registered blocks.
        model = writeAt(path, model, MIB + 3 * PAGE + 17, randomBytes(300));
        model = writeAt(path, model, 2 * MIB, randomBytes(PAGE), constants.O_WRONLY | constants.O_DIRECT);
        const buffered = openSync(path, constants.O_WRONLY);
        const unsynced = randomBytes(5000);
        writeSync(buffered, unsynced, 0, unsynced.length, 3 * MIB + 100);
        unsynced.copy(model, 3 * MIB + 100);
        expect(reader.read(3 * MIB, 8192)).toEqual(model.subarray(3 * MIB, 3 * MIB + 8192));
        closeSync(buffered);
        expect(reader.check(model, 1000)).toEqual([]);
        // Once stored again, the written blocks are served natively again.
        await control(mount, 'flush');
        warmShards(mount);
        expect(reader.check(model, 300)).toEqual([]);
        const afterWrites = await chunkReads(mount);
        expect(reader.check(model, 1000)).toEqual([]);
        expect((await chunkReads(mount)).served - afterWrites.served).toBeGreaterThan(900);

        // Truncation into the middle of block 2, then extension: the cut bytes read as zeros.
        const cut = 2 * MIB + 12345;
        const truncating = openSync(path, constants.O_WRONLY);
        ftruncateSync(truncating, cut);
        closeSync(truncating);
        model = model.subarray(0, cut);
        expect(reader.check(model, 500)).toEqual([]);
        const longer = 3 * MIB;
        const fd = openSync(path, constants.O_WRONLY);
        ftruncateSync(fd, longer);
        closeSync(fd);
        model = Buffer.concat([model, Buffer.alloc(longer - cut)]);
        expect(reader.read(cut - 100, PAGE)).toEqual(model.subarray(cut - 100, cut - 100 + PAGE));
        expect(reader.check(model, 500)).toEqual([]);
      });

      // Unlink and recreate under the same name: a held descriptor keeps the old bytes.
      const old = new DirectReader(path);
      try {
        expect(old.check(model, 200)).toEqual([]);
        const fresh = randomBytes(3 * MIB);
        unlinkSync(path);
        writeFileSync(path, fresh);
        await control(mount, 'flush');
        warmShards(mount);
        const reader2 = new DirectReader(path);
        try {
          expect(reader2.check(fresh, 500)).toEqual([]);
          expect(old.check(model, 500)).toEqual([]);
        } finally {
          reader2.close();
        }
      } finally {
        old.close();
      }
    });
  }, 180_000);

  it('follows a block rewritten to a Mirror pool, and answers a damaged copy from the other one', async () => {
    const pools = {
      fast: { topology: 'single', blockSize: '1MiB', buckets: 1 },
      slow: { topology: 'mirror:2', blockSize: '1MiB', buckets: 2 },
    };
    await withMount({ pools, writePool: 'fast', extraYaml: 'tombstones: { grace: 1h }\n' }, async (mount) => {
      await withStoredFile(mount, 'm', 3 * MIB, async ({ model, ino, reader }) => {
        expect(reader.check(model, 500)).toEqual([]);
        const { taskId } = (await control(mount, 'rewriteBlock', { ino, block: 1, pool: 'slow', topology: 'mirror:2' })) as { taskId: number };
        const info = (await control(mount, 'waitTask', { id: taskId })) as TaskInfo;
        expect(info.state, info.errors.join('\n')).toBe('done');
        // The old Single shard of block 1 stays (a tombstone): damaging it must not matter.
        const [oldShard] = shardsOf(mount, ino, 1).filter((file) => file.startsWith(mount.buckets.fast0 ?? '-'));
        expect(oldShard).toBeDefined();
        warmShards(mount);
        flipByte(oldShard ?? '', statSync(oldShard ?? '').size - 10);
        const before = await chunkReads(mount);
        for (let index = 0; index < 300; index++) {
          expect(reader.read(MIB + (index % 256) * PAGE, PAGE)).toEqual(model.subarray(MIB + (index % 256) * PAGE, MIB + (index % 256 + 1) * PAGE));
        }
        const afterMove = await chunkReads(mount);
        expect(afterMove.served - before.served).toBeGreaterThan(250);
        expect(afterMove.mismatch).toBe(before.mismatch);

        // Damage the first copy (the one read) of block 1's last chunk, in place.
        const firstCopy = shardsOf(mount, ino, 1).find((file) => !file.startsWith(mount.buckets.fast0 ?? '-') && file.endsWith('-0'));
        expect(firstCopy).toBeDefined();
        flipByte(firstCopy ?? '', statSync(firstCopy ?? '').size - 10);
        const lastPage = 2 * MIB - PAGE;
        expect(reader.read(lastPage, PAGE)).toEqual(model.subarray(lastPage, lastPage + PAGE));
        expect(reader.read(lastPage, PAGE)).toEqual(model.subarray(lastPage, lastPage + PAGE));
        expect((await chunkReads(mount)).mismatch).toBeGreaterThan(afterMove.mismatch);
        expect(reader.check(model, 500)).toEqual([]);
      });
    });
  }, 180_000);

  it('never answers a damaged Single chunk (EIO), and reads a shard with dropped pages through JS', async () => {
    await withMount({}, async (mount) => {
      await withStoredFile(mount, 'v', 2 * MIB, async ({ model, ino, reader }) => {
        expect(reader.check(model, 500)).toEqual([]);
        const before = await chunkReads(mount);
        const [shard0] = shardsOf(mount, ino, 0);
        dropPages(shard0 ?? '');
        expect(reader.check(model, 200, MIB)).toEqual([]);
        const dropped = await chunkReads(mount);
        expect(dropped.notCached).toBeGreaterThan(before.notCached);

        const [shard1] = shardsOf(mount, ino, 1);
        flipByte(shard1 ?? '', statSync(shard1 ?? '').size - 10);
        const lastPage = 2 * MIB - PAGE;
        expect(reader.read(lastPage, PAGE)).toBe('EIO');
        expect(reader.read(lastPage, PAGE)).toBe('EIO');
        expect(reader.read(lastPage - PAGE, PAGE)).toEqual(model.subarray(lastPage - PAGE, lastPage));
        expect((await chunkReads(mount)).mismatch).toBeGreaterThan(dropped.mismatch);
      });
    });
  }, 120_000);
});
