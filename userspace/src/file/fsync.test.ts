/**
 * fsync after overwriting stored blocks: the new shard files are written back before fsync
 * returns, like those of blocks stored for the first time; concurrent stores of a file's
 * blocks, finishing in any order, leave its size and blocks right.
 *
 * Method: a real filesystem on a temporary bucket folder (no mount). Whether a shard file waits
 * for its write-back is read from its dirty pages (cachestat(2)). The test first checks that a
 * just-stored shard has some, so that it cannot pass vacuously. Shards of whole pages are written
 * past the page cache (O_DIRECT) and never wait for writeback, so the pool is erasure 3+1:
 * its shards of a 1 MiB block (349,526 bytes) are not whole pages and go through the cache.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/index.js';
import { openFilesystem, type OpenFilesystem } from '../daemon/open.js';
import { isWaitingForWriteback } from '../../test/helpers/page-cache.js';
import { storedShardPath } from '../../test/helpers/block-fixture.js';

const BLOCK_BYTES = 1024 * 1024;
const BUCKETS = ['b0', 'b1', 'b2', 'b3'];

let root: string;
let filesystem: OpenFilesystem | undefined;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'shmr-fsync-'));
  for (const bucket of BUCKETS) mkdirSync(join(root, bucket));
});

afterEach(() => {
  filesystem?.close();
  filesystem = undefined;
  rmSync(root, { recursive: true, force: true });
});

function open(): OpenFilesystem {
  filesystem?.close();
  filesystem = openFilesystem(parseConfig(`
mount_dir: ./mnt
metadata_dir: ./meta
write_pool: plain
cache: { memory_limit: 64MiB, dirty_age: 1h }
pools:
  plain:
    topology: erasure:3+1
    block_size: 1MiB
    buckets:
${BUCKETS.map((bucket) => `      ${bucket}: { path: ./${bucket} }`).join('\n')}
`, { source: 'test', baseDir: root }));
  return filesystem;
}

describe('fsync', () => {
  it('writes back the shard files of blocks that replaced stored ones', async () => {
    const fs = open();
    const { ino } = fs.meta.createInode({ parent: 1, name: 'f', mode: 0o100644, uid: 0, gid: 0 });
    await fs.files.write(ino, 0, randomBytes(2 * BLOCK_BYTES));
    await fs.files.flush(ino, { sync: true });
    const model = randomBytes(2 * BLOCK_BYTES);
    // Whole blocks are stored by the write itself (without sync), replacing the first ones.
    await fs.files.write(ino, 0, model);
    const replaced = [storedShardPath(fs, ino, 0), storedShardPath(fs, ino, 1)];
    expect(replaced.map(isWaitingForWriteback))
      .toEqual([true, true]);
    await fs.files.flush(ino, { sync: true });
    expect(replaced.map(isWaitingForWriteback)).toEqual([false, false]);
    const target = Buffer.alloc(model.byteLength);
    expect(await fs.files.read(ino, 0, model.byteLength, target)).toBe(model.byteLength);
    expect(target.equals(model)).toBe(true);
  });

  it('keeps the size and every block of concurrent stores that finish in any order', async () => {
    const first = open();
    const { ino } = first.meta.createInode({ parent: 1, name: 'g', mode: 0o100644, uid: 0, gid: 0 });
    const model = randomBytes(8 * BLOCK_BYTES + 1000);
    // Concurrent stores of whole blocks, last block first.
    await Promise.all([8, 7, 6, 5, 4, 3, 2, 1, 0].map((blockIndex) => {
      const start = blockIndex * BLOCK_BYTES;
      return first.files.write(ino, start, model.subarray(start, Math.min(start + BLOCK_BYTES, model.byteLength)));
    }));
    await first.files.flush(ino, { sync: true });
    const reopened = open();
    expect(reopened.meta.requireInode(ino, 'test').size).toBe(model.byteLength);
    const target = Buffer.alloc(model.byteLength);
    expect(await reopened.files.read(ino, 0, model.byteLength, target)).toBe(model.byteLength);
    expect(target.equals(model)).toBe(true);
  });
});
