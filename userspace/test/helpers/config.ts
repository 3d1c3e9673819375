/**
 * Shared fixtures of the config parse tests: a temporary folder to resolve relative paths
 * against (bucket folders made before each test, all removed after it), and the smallest
 * valid config text, one Single pool on ./ssd0, that each test extends.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';

/** The base of config texts in tests: tests append more pools or sections. */
export const SSD_POOL_YAML = `
mount_dir: ./mnt
metadata_dir: ./meta
write_pool: ssd
pools:
  ssd: { topology: single, block_size: 1MiB, buckets: { ssd0: { path: ./ssd0 } } }
`;

/** Registers hooks that give each test a fresh folder holding `bucketNames`; returns its getter. */
export function useConfigRoot(prefix: string, bucketNames: readonly string[]): () => string {
  let root: string | undefined;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), prefix));
    for (const name of bucketNames) mkdirSync(join(root, name));
  });
  afterEach(() => {
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
    root = undefined;
  });
  return () => {
    if (root === undefined) throw new Error('the config root exists only inside a test');
    return root;
  };
}
