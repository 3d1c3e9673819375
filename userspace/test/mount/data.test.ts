/**
 * Data integrity through a real mount: files from 0 bytes to 100 MiB written at unaligned
 * offsets and compared by SHA-256 with the same operations on a plain buffer; persistence
 * across remounts; fsynced data surviving kill -9 of the daemon; concurrent writers.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, writeSync, ftruncateSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { withMount } from '../helpers/mount.js';

const MiB = 1024 * 1024;

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Deterministic pseudo-random bytes, so a failure reproduces. */
function patternBytes(length: number, seed: number): Buffer {
  const buffer = Buffer.allocUnsafe(length);
  let state = seed >>> 0 || 1;
  for (let index = 0; index < length; index++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    buffer[index] = state & 0xff;
  }
  return buffer;
}

describe('file data', () => {
  it('round-trips sizes from 0 bytes to 100 MiB, byte for byte', async () => {
    await withMount({}, async (mount) => {
      const sizes = [0, 1, 4095, 4096, 4097, MiB - 1, MiB, MiB + 1, 3 * MiB + 12345, 100 * MiB];
      const expected = new Map<string, string>();
      for (const [index, size] of sizes.entries()) {
        const data = size > 8 * MiB ? randomBytes(size) : patternBytes(size, index + 1);
        const path = join(mount.mountpoint, `file-${size}`);
        await writeFile(path, data);
        expected.set(path, sha256(data));
        expect(sha256(await readFile(path))).toBe(expected.get(path));
      }
      await mount.remount();
      for (const [path, digest] of expected) expect(sha256(await readFile(path))).toBe(digest);
    });
  }, 300_000);

  it('writes at unaligned offsets, past EOF and over holes like a plain buffer', async () => {
    // A 512 KiB cache for 64 KiB blocks: eviction and flushing under memory pressure all the time.
    const options = {
      pools: { ssd: { topology: 'single', blockSize: '64KiB', buckets: 1 } },
      extraYaml: 'cache:\n  memory_limit: 512KiB\n  flush_interval: 100ms\n  dirty_age: 50ms\n',
    };
    await withMount(options, async (mount) => {
      const path = join(mount.mountpoint, 'scattered');
      const model = Buffer.alloc(3 * MiB);
      let modelSize = 0;
      const fd = openSync(path, 'w+');
      let seed = 7;
      for (let step = 0; step < 300; step++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        const offset = seed % (2 * MiB + 333);
        const length = 1 + ((seed >>> 8) % (200 * 1024));
        const data = patternBytes(length, seed);
        writeSync(fd, data, 0, length, offset);
        data.copy(model, offset);
        modelSize = Math.max(modelSize, offset + length);
        if (step % 50 === 49) {
          const size = (seed >>> 4) % modelSize;
          ftruncateSync(fd, size);
          model.fill(0, size);
          modelSize = size;
        }
      }
      closeSync(fd);
      const expected = sha256(model.subarray(0, modelSize));
      expect(sha256(await readFile(path))).toBe(expected);
      await mount.remount();
      expect(sha256(await readFile(path))).toBe(expected);
    });
  }, 180_000);

  it('reads holes as zeros and keeps sparse files sparse', async () => {
    await withMount({}, async (mount) => {
      const path = join(mount.mountpoint, 'sparse');
      const fd = openSync(path, 'w');
      writeSync(fd, Buffer.from('end'), 0, 3, 50 * MiB);
      closeSync(fd);
      const data = await readFile(path);
      expect(data.byteLength).toBe(50 * MiB + 3);
      expect(data.subarray(0, 50 * MiB).every((byte) => byte === 0)).toBe(true);
      expect(data.subarray(50 * MiB).toString()).toBe('end');
      const { statSync } = await import('node:fs');
      expect(statSync(path).blocks * 512).toBeLessThan(2 * MiB);
    });
  }, 120_000);

  it('serves concurrent writers to different files and to one file', async () => {
    await withMount({}, async (mount) => {
      const writers = Array.from({ length: 16 }, async (_, index) => {
        const data = patternBytes(2 * MiB + index * 777, index + 100);
        const path = join(mount.mountpoint, `w${index}`);
        await writeFile(path, data);
        return { path, digest: sha256(data) };
      });
      for (const { path, digest } of await Promise.all(writers)) {
        expect(sha256(await readFile(path))).toBe(digest);
      }
      const shared = join(mount.mountpoint, 'shared');
      const fd = openSync(shared, 'w+');
      const pieceBytes = 300_000;
      const pieces = Array.from({ length: 12 }, (_, index) => patternBytes(pieceBytes, index + 500));
      const { write } = await import('node:fs/promises').then(() => import('node:fs'));
      await Promise.all(pieces.map((piece, index) => new Promise<void>((resolve, reject) => {
        write(fd, piece, 0, pieceBytes, index * pieceBytes, (error) => (error ? reject(error) : resolve()));
      })));
      closeSync(fd);
      const whole = readFileSync(shared);
      for (const [index, piece] of pieces.entries()) {
        expect(sha256(whole.subarray(index * pieceBytes, (index + 1) * pieceBytes))).toBe(sha256(piece));
      }
    });
  }, 120_000);

  it('keeps every byte of many parallel writes into the same blocks while they are stored', async () => {
    // Regression: a write resumed after another filled (and started storing) its block.
    await withMount({ pools: { ssd: { topology: 'erasure:4+2', blockSize: '64KiB', buckets: 6 } } }, async (mount) => {
      const path = join(mount.mountpoint, 'parallel');
      const slotBytes = 4096;
      const slotCount = 256;
      const order = Array.from({ length: slotCount }, (_, index) => (index * 97) % slotCount);
      const { open, write, close } = await import('node:fs');
      const fd = await new Promise<number>((resolve, reject) => open(path, 'w+', (error, value) => (error ? reject(error) : resolve(value))));
      for (let round = 0; round < 3; round++) {
        await Promise.all(order.map((slot) => new Promise<void>((resolve, reject) => {
          write(fd, patternBytes(slotBytes, slot + round * 1000), 0, slotBytes, slot * slotBytes, (error) => (error ? reject(error) : resolve()));
        })));
      }
      await new Promise<void>((resolve, reject) => close(fd, (error) => (error ? reject(error) : resolve())));
      const expected = Buffer.concat(Array.from({ length: slotCount }, (_, slot) => patternBytes(slotBytes, slot + 2000)));
      expect(sha256(await readFile(path))).toBe(sha256(expected));
      await mount.remount();
      expect(sha256(await readFile(path))).toBe(sha256(expected));
      expect(await mount.log()).not.toMatch(/handler failed/);
    });
  }, 120_000);

  it('keeps fsynced data and consistent metadata across kill -9 of the daemon', async () => {
    await withMount({}, async (mount) => {
      const synced = patternBytes(5 * MiB + 17, 42);
      const path = join(mount.mountpoint, 'durable');
      const fd = openSync(path, 'w');
      writeSync(fd, synced);
      fsyncSync(fd);
      closeSync(fd);
      const { mkdirSync, renameSync } = await import('node:fs');
      mkdirSync(join(mount.mountpoint, 'dir'));
      renameSync(path, join(mount.mountpoint, 'dir', 'moved'));
      // Unsynced writes in flight when the daemon dies may be lost, never corrupted.
      const pending = openSync(join(mount.mountpoint, 'pending'), 'w');
      writeSync(pending, patternBytes(3 * MiB, 9));
      await mount.killAndRemount();
      expect(sha256(await readFile(join(mount.mountpoint, 'dir', 'moved')))).toBe(sha256(synced));
      const partial = await readFile(join(mount.mountpoint, 'pending')).catch(() => Buffer.alloc(0));
      const full = patternBytes(3 * MiB, 9);
      // Whatever survived is a prefix of zeros-or-data consistent with what was written.
      for (let index = 0; index < partial.byteLength; index += 4096) {
        const chunk = partial.subarray(index, index + 4096);
        const isData = chunk.equals(full.subarray(index, index + chunk.byteLength));
        const isZero = chunk.every((byte) => byte === 0);
        expect(isData || isZero).toBe(true);
      }
    });
  }, 120_000);
});
