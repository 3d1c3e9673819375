/**
 * Writes of part of a block through a real mount, into blocks that are stored but not cached
 * (after a remount): the daemon merges the stored bytes in when it stores the block. Checked
 * byte for byte against the same writes on a plain buffer: after close, after a remount, and
 * after kill -9 of the daemon once fsync returned.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { withMount } from '../helpers/mount.js';

const MiB = 1024 * 1024;

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Deterministic pseudo-random bytes and numbers, so a failure reproduces. */
function generator(seed: number): { bytes(length: number): Buffer; below(limit: number): number } {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  return {
    bytes: (length) => {
      const buffer = Buffer.allocUnsafe(length);
      for (let index = 0; index < length; index++) buffer[index] = next() & 0xff;
      return buffer;
    },
    below: (limit) => next() % limit,
  };
}

/**
 * Scattered writes on `path` mirrored into `model` (grown past its end as the file is):
 * pages, odd sizes, pieces across block boundaries and overlapping earlier ones.
 */
function scatteredWrites(path: string, model: Buffer, seed: number, count: number): Buffer {
  const random = generator(seed);
  let result = model;
  const fd = openSync(path, 'r+');
  try {
    for (let step = 0; step < count; step++) {
      const kind = random.below(4);
      const length = kind === 0 ? 4096 : kind === 1 ? 1 + random.below(9000) : kind === 2 ? 200 * 1024 + random.below(MiB) : 1;
      const offset = kind === 0 ? 4096 * random.below(result.byteLength / 4096 + 64) : random.below(result.byteLength + 300_000);
      const data = random.bytes(length);
      writeSync(fd, data, 0, length, offset);
      if (offset + length > result.byteLength) {
        result = Buffer.concat([result, Buffer.alloc(offset + length - result.byteLength)]);
      }
      data.copy(result, offset);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return result;
}

describe('writes of part of a stored block', () => {
  it('read back exactly after close, remount and kill -9 after fsync', async () => {
    await withMount({}, async (mount) => {
      const path = join(mount.mountpoint, 'scattered');
      let model = generator(5).bytes(6 * MiB + 100);
      await writeFile(path, model);
      await mount.remount();
      model = scatteredWrites(path, model, 11, 300);
      expect(sha256(await readFile(path))).toBe(sha256(model));
      await mount.remount();
      expect(sha256(await readFile(path))).toBe(sha256(model));
      model = scatteredWrites(path, model, 23, 300);
      // Unsynced writes to another file may be lost; the fsynced file must not change.
      const other = openSync(join(mount.mountpoint, 'unsynced'), 'w');
      writeSync(other, generator(3).bytes(3 * MiB));
      await mount.killAndRemount(async () => {
        try {
          closeSync(other);
        } catch {
          // The daemon is gone (ENOTCONN): the descriptor is closed all the same.
        }
      });
      expect(sha256(await readFile(path))).toBe(sha256(model));
      expect(await mount.log()).not.toMatch(/handler failed/);
    });
  }, 180_000);
});
