/**
 * A filesystem opened without a mount, on bucket folders in a fresh temporary root: for tests
 * of the block and file layers that inspect or damage shard files directly.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/index.js';
import { openFilesystem, type OpenFilesystem } from '../../src/daemon/open.js';

/** One pool of the fixture: 1 MiB blocks on `buckets` folders named after the pool. */
export interface FixturePool {
  readonly topology: string;
  readonly buckets: number;
  /** More YAML lines of the pool (compression: ...), without indentation. */
  readonly extra?: readonly string[];
}

export interface BlockFixture {
  readonly root: string;
  readonly filesystem: OpenFilesystem;
  /** Closes the filesystem and removes the root. */
  close(): void;
}

/** Opens a filesystem with `pools` (the first one is the write pool) under a new temp root. */
export function openBlockFixture(name: string, pools: Readonly<Record<string, FixturePool>>): BlockFixture {
  const root = mkdtempSync(join(tmpdir(), `shmr-${name}-`));
  const lines = ['mount_dir: ./mnt', 'metadata_dir: ./meta', `write_pool: ${Object.keys(pools)[0] ?? ''}`, 'pools:'];
  for (const [pool, spec] of Object.entries(pools)) {
    lines.push(`  ${pool}:`, `    topology: ${spec.topology}`, '    block_size: 1MiB');
    for (const extra of spec.extra ?? []) lines.push(`    ${extra}`);
    lines.push('    buckets:');
    for (let index = 0; index < spec.buckets; index++) {
      mkdirSync(join(root, `${pool}${index}`));
      lines.push(`      ${pool}${index}: { path: ./${pool}${index} }`);
    }
  }
  const filesystem = openFilesystem(parseConfig(lines.join('\n'), { source: 'test', baseDir: root }));
  return {
    root, filesystem,
    close: () => {
      filesystem.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
