/**
 * The block-device extra: mkfs.ext4 on the device, mount, copy a source tree in, compare
 * every file by SHA-256 (once from the page cache, once after a remount with the cache
 * dropped, so the bytes come back from the device), unmount, and `fsck.ext4 -n -f` clean.
 */
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { digest, dropCaches } from './io-suite.js';
import { check, type Case } from './report.js';
import { run, status } from './tools.js';

function filesUnder(root: string): string[] {
  const files: string[] = [];
  const walk = (directory: string): void => {
    for (const name of readdirSync(directory)) {
      const path = join(directory, name);
      if (statSync(path).isDirectory()) walk(path);
      else files.push(path);
    }
  };
  walk(root);
  return files;
}

function compareTrees(source: string, copy: string): number {
  const files = filesUnder(source);
  for (const file of files) {
    const copied = join(copy, relative(source, file));
    check(
      digest(readFileSync(copied)) === digest(readFileSync(file)),
      `${copied} differs from ${file}`,
    );
  }
  return files.length;
}

export function ext4Case(target: string, device: () => string, repo: string): Case {
  return {
    name: `ext4 ${target} mkfs-mount-copy-fsck`,
    timeoutMs: 900_000,
    run: async () => {
      const path = device();
      const mountpoint = `/tmp/ext4-${target}`;
      const source = join(repo, 'userspace', 'src');
      mkdirSync(mountpoint, { recursive: true });
      await run('mkfs.ext4', ['-q', '-F', '-b', '4096', path]);
      await run('mount', ['-t', 'ext4', path, mountpoint]);
      try {
        await run('cp', ['-a', source, join(mountpoint, 'tree')]);
        await run('sync', []);
        const count = compareTrees(source, join(mountpoint, 'tree'));
        check(count > 10, `only ${count} files copied`);
      } finally {
        await run('umount', [mountpoint]);
      }
      dropCaches();
      await run('mount', ['-t', 'ext4', '-o', 'ro', path, mountpoint]);
      try {
        compareTrees(source, join(mountpoint, 'tree'));
      } finally {
        await run('umount', [mountpoint]);
      }
      const fsck = status('fsck.ext4', ['-n', '-f', path]);
      check(fsck.code === 0, `fsck.ext4 -n -f exited with ${String(fsck.code)}:\n${fsck.output}`);
    },
  };
}
