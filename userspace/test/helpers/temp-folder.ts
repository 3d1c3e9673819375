/**
 * Temporary folders removed whatever the test's outcome: a fresh one for each test of the
 * calling file, for tests of the store and other parts that work on a folder of their own; and
 * a small tmpfs, for tests that fill a bucket.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';

/** Registers the hooks; the returned function names the current test's folder. */
export function folderPerTest(prefix: string): () => string {
  let folder: string | undefined;
  beforeEach(() => {
    folder = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(() => {
    if (folder !== undefined) rmSync(folder, { recursive: true, force: true });
    folder = undefined;
  });
  return () => {
    if (folder === undefined) throw new Error('folderPerTest: used outside a test');
    return folder;
  };
}

/** Runs `body` on a new tmpfs of `sizeBytes` (needs root), unmounted and removed after. */
export async function withTmpfs(sizeBytes: number, body: (path: string) => Promise<void>): Promise<void> {
  const path = await mkdtemp(join(tmpdir(), 'shmr-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes}`, 'shmr-test', path]);
  try {
    await body(path);
  } finally {
    execFileSync('umount', ['-l', path]);
    await rm(path, { recursive: true, force: true });
  }
}
