/**
 * Errors that lose nothing: a full bucket, a missing or rotten shard on a Single pool, a busy
 * mount point, a locked metadata store, a bad config. Each gives a clear error and leaves
 * acknowledged data intact.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync, unlinkSync,
  writeFileSync, writeSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { shardFilesOf as shardFiles } from '../../src/tasks/fsck.js';
import { runCli, withMount } from '../helpers/mount.js';
import { flipBits } from '../helpers/bytes.js';
import { withTmpfs } from '../helpers/temp-folder.js';


function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('errors', () => {
  it('fills a small bucket, spills to the next, then reports ENOSPC and keeps fsynced data', async () => {
    await withTmpfs(8 * 1024 * 1024, async (small) => {
      await withTmpfs(24 * 1024 * 1024, async (large) => {
        const pools = { ssd: { topology: 'single', blockSize: '1MiB', buckets: [small, large] } };
        await withMount({ pools }, async ({ mountpoint }) => {
          const kept = Buffer.alloc(4 * 1024 * 1024, 7);
          const fd = openSync(join(mountpoint, 'kept'), 'w');
          writeSync(fd, kept);
          fsyncSync(fd);
          closeSync(fd);
          let code: string | undefined;
          let written = 0;
          try {
            const big = openSync(join(mountpoint, 'big'), 'w');
            try {
              for (; written < 64 * 1024 * 1024; written += 1024 * 1024) writeSync(big, Buffer.alloc(1024 * 1024, 1));
              fsyncSync(big);
            } finally {
              closeSync(big);
            }
          } catch (error) {
            code = (error as { code?: string }).code;
          }
          expect(code).toBe('ENOSPC');
          // More than the small bucket held: the other bucket took the overflow.
          expect(written).toBeGreaterThan(8 * 1024 * 1024);
          expect(sha256(readFileSync(join(mountpoint, 'kept')))).toBe(sha256(kept));
          // Deleting the file that did not fit discards what could not be stored.
          unlinkSync(join(mountpoint, 'big'));
        });
      });
    });
  }, 120_000);

  it('returns EIO, never zeros, for a missing or rotten shard of a Single pool', async () => {
    await withMount({}, async (mount) => {
      writeFileSync(join(mount.mountpoint, 'victim'), Buffer.alloc(3 * 1024 * 1024, 0x5a));
      writeFileSync(join(mount.mountpoint, 'rotten'), Buffer.alloc(100_000, 0x33));
      await mount.remount();
      const bucket = Object.values(mount.buckets)[0] ?? '';
      const files = shardFiles(bucket);
      const inodeOf = (name: string) => statSync(join(mount.mountpoint, name)).ino;
      const victimShard = files.find((path) => path.includes(`/${inodeOf('victim')}-1-`));
      const rottenShard = files.find((path) => path.includes(`/${inodeOf('rotten')}-0-`));
      expect(victimShard).toBeDefined();
      expect(rottenShard).toBeDefined();
      execFileSync('rm', [victimShard ?? '']);
      const rotten = readFileSync(rottenShard ?? '');
      flipBits(rotten, rotten.byteLength - 10, 0xff);
      writeFileSync(rottenShard ?? '', rotten);
      await mount.remount();
      const readError = (name: string) => {
        try {
          readFileSync(join(mount.mountpoint, name));
          return 'read';
        } catch (error) {
          return (error as { code?: string }).code;
        }
      };
      expect(readError('victim')).toBe('EIO');
      expect(readError('rotten')).toBe('EIO');
      // The first block is intact and still readable.
      const fd = openSync(join(mount.mountpoint, 'victim'), 'r');
      const head = Buffer.alloc(4096);
      expect(readSync(fd, head, 0, 4096, 0)).toBe(4096);
      closeSync(fd);
      expect(head.every((byte) => byte === 0x5a)).toBe(true);
      const log = await mount.log();
      expect(log).toMatch(/missing shard .* \(file \/victim, block 1\)/);
      expect(log).toMatch(/corrupt shard .* \(file \/rotten, block 0\)/);
    });
  }, 120_000);

  it('refuses a busy mount point and a locked metadata store, changing nothing', async () => {
    await withMount({}, async (mount) => {
      writeFileSync(join(mount.mountpoint, 'still-here'), 'yes');
      const again = await runCli(['mount', '--config', mount.configPath]);
      expect(again.code).not.toBe(0);
      expect(again.stderr).toMatch(/already mounted/);
      // A second mount point, same metadata: the lock refuses it.
      const other = join(mount.root, 'other');
      mkdirSync(other);
      const config = readFileSync(mount.configPath, 'utf8').replace(/^mount_dir: .*$/m, `mount_dir: ${other}`);
      writeFileSync(join(mount.root, 'other.yaml'), config);
      const locked = await runCli(['mount', '--config', join(mount.root, 'other.yaml')]);
      expect(locked.code).not.toBe(0);
      expect(locked.stderr).toMatch(/in use by another shmr process/);
      expect(readFileSync(join(mount.mountpoint, 'still-here'), 'utf8')).toBe('yes');
    });
  }, 60_000);

  it('rejects a mount point that is missing or not a directory, and a bad config', async () => {
    const root = await mkdtemp(join(tmpdir(), 'shmr-bad-'));
    try {
      mkdirSync(join(root, 'b0'));
      writeFileSync(join(root, 'file'), '');
      const config = (mountDir: string) => `mount_dir: ${mountDir}\nmetadata_dir: ${root}/meta\nwrite_pool: p\n` +
        `pools:\n  p:\n    topology: single\n    block_size: 1MiB\n    buckets:\n      b0: { path: ${root}/b0 }\n`;
      writeFileSync(join(root, 'missing.yaml'), config(`${root}/nowhere`));
      writeFileSync(join(root, 'file.yaml'), config(`${root}/file`));
      writeFileSync(join(root, 'bad.yaml'), config(`${root}/file`).replace('1MiB', '1000KiB'));
      const missing = await runCli(['mount', '--config', join(root, 'missing.yaml')]);
      expect([missing.code, missing.stderr]).toEqual([1, expect.stringMatching(/mount point .*nowhere does not exist/)]);
      const file = await runCli(['mount', '--config', join(root, 'file.yaml')]);
      expect([file.code, file.stderr]).toEqual([1, expect.stringMatching(/mount point .*file is not a directory/)]);
      const bad = await runCli(['mount', '--config', join(root, 'bad.yaml')]);
      expect([bad.code, bad.stderr]).toEqual([1, expect.stringMatching(/pools\.p\.block_size: 1000KiB must be a power of two/)]);
      // Nothing was created: no metadata directory, no bucket label.
      expect(readdirSync(root).sort()).toEqual(['b0', 'bad.yaml', 'file', 'file.yaml', 'missing.yaml']);
      expect(readdirSync(join(root, 'b0'))).toEqual([]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('rejects a bucket directory that belongs to something else', async () => {
    const root = await mkdtemp(join(tmpdir(), 'shmr-foreign-'));
    try {
      mkdirSync(join(root, 'b0'));
      mkdirSync(join(root, 'mnt'));
      writeFileSync(join(root, 'b0', 'somebody-elses-file'), 'keep me');
      writeFileSync(join(root, 'c.yaml'), `mount_dir: ${root}/mnt\nmetadata_dir: ${root}/meta\nwrite_pool: p\n` +
        `pools:\n  p:\n    topology: single\n    block_size: 1MiB\n    buckets:\n      b0: { path: ${root}/b0 }\n`);
      const result = await runCli(['mount', '--config', join(root, 'c.yaml')]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/b0 .* is not empty and has no shmr-bucket label/);
      expect(readFileSync(join(root, 'b0', 'somebody-elses-file'), 'utf8')).toBe('keep me');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
