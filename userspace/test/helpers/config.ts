/**
 * Shared fixtures of the config parse tests: a temporary folder to resolve relative paths
 * against (bucket folders made before each test, all removed after it), and the smallest
 * valid config text, one Single pool on ./ssd0, that each test extends.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach } from 'vitest';
import { folderPerTest } from './temp-folder.js';

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
  const root = folderPerTest(prefix);
  beforeEach(() => {
    for (const name of bucketNames) mkdirSync(join(root(), name));
  });
  return root;
}
