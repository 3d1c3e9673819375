/**
 * Placement policy of files and directories, as extended attributes (like bcachefs' per-inode
 * options): `user.shmr.pool`, `user.shmr.topology`, `user.shmr.block_size` and
 * `user.shmr.compression` (opaque here, passed to block writes).
 *
 * Invariants:
 * - A policy xattr holds a valid value: setxattr of a bad one fails with EINVAL naming what
 *   is wrong, and nothing is stored.
 * - A new file or directory starts with a copy of its directory's policy xattrs.
 * - A file's block size applies to data written from then on; its existing data changes layout
 *   only through a rewrite.
 */
import { Errno, FsError } from '../errno.js';
import {
  formatSize, parseCompression, parseSize, parseTopology, shardCount, type TopologySpec,
} from '../config/index.js';
import { BLOCK_BYTES_MAX, BLOCK_BYTES_MIN } from '../limits.js';
import type { MetaStore } from '../meta/index.js';
import type { Pool, Pools } from '../pool/index.js';
import type { WriteTarget } from '../file/index.js';

/** The policy xattr names. */
export const POLICY_XATTRS = {
  pool: 'user.shmr.pool',
  topology: 'user.shmr.topology',
  blockSize: 'user.shmr.block_size',
  compression: 'user.shmr.compression',
} as const;

const POLICY_NAMES: readonly string[] = Object.values(POLICY_XATTRS);

/** True for the xattr names this module owns. */
export function isPolicyXattr(name: string): boolean {
  return POLICY_NAMES.includes(name);
}

/** Parses a block size: a power of two within the limits, or FsError EINVAL. */
export function parseBlockSize(text: string, operation: string): number {
  const bytes = parseSize(text.trim());
  const isPowerOfTwo = bytes !== undefined && bytes > 0 && (bytes & (bytes - 1)) === 0;
  if (bytes === undefined || !isPowerOfTwo || bytes < BLOCK_BYTES_MIN || bytes > BLOCK_BYTES_MAX) {
    throw new FsError(Errno.EINVAL, operation, `block size "${text}" must be a power of two from ` +
      `${formatSize(BLOCK_BYTES_MIN)} to ${formatSize(BLOCK_BYTES_MAX)}`);
  }
  return bytes;
}

/** Parses a topology and checks that `pool` has enough buckets for it, or FsError EINVAL. */
export function parseTopologyFor(text: string, pool: Pool, operation: string): TopologySpec {
  const topology = parseTopology(text);
  if (typeof topology === 'string') throw new FsError(Errno.EINVAL, operation, topology);
  if (shardCount(topology) > pool.buckets.length) {
    throw new FsError(Errno.EINVAL, operation, `topology ${text.trim()} needs ${shardCount(topology)} buckets, ` +
      `pool ${pool.name} has ${pool.buckets.length}`);
  }
  return topology;
}

/** The pool named `name`, or FsError EINVAL listing the known pools. */
export function requirePool(pools: Pools, name: string, operation: string): Pool {
  const pool = pools.all.find((candidate) => candidate.name === name);
  if (pool === undefined) {
    throw new FsError(Errno.EINVAL, operation, `unknown pool "${name}" (pools: ${pools.all.map((p) => p.name).join(', ')})`);
  }
  return pool;
}

/**
 * Checks a policy xattr value about to be set on `ino`; throws FsError EINVAL naming what is
 * wrong. The topology is checked against the pool the inode would write to.
 */
export function validatePolicyXattr(parts: { meta: MetaStore; pools: Pools }, ino: number, name: string, value: Buffer): void {
  const text = value.toString('utf8');
  const operation = `setxattr ${name}`;
  if (name === POLICY_XATTRS.pool) {
    const pool = requirePool(parts.pools, text.trim(), operation);
    const topology = stringXattr(parts.meta, ino, POLICY_XATTRS.topology);
    if (topology !== undefined) parseTopologyFor(topology, pool, operation);
  } else if (name === POLICY_XATTRS.topology) {
    const poolName = stringXattr(parts.meta, ino, POLICY_XATTRS.pool);
    const pool = poolName === undefined ? parts.pools.writePool : requirePool(parts.pools, poolName, operation);
    parseTopologyFor(text, pool, operation);
  } else if (name === POLICY_XATTRS.blockSize) {
    parseBlockSize(text, operation);
  } else if (name === POLICY_XATTRS.compression) {
    const parsed = parseCompression(text);
    if (typeof parsed === 'string') throw new FsError(Errno.EINVAL, operation, parsed);
  }
}

function stringXattr(meta: MetaStore, ino: number, name: string): string | undefined {
  if (!meta.hasXattrNamed(name)) return undefined;
  return meta.getXattr(ino, name)?.toString('utf8').trim();
}

/**
 * Where new blocks of `ino` go: the write pool unless its policy xattrs say otherwise. A value
 * that became invalid (a pool removed from the config) falls back to the write pool's.
 */
export function writeTargetOf(parts: { meta: MetaStore; pools: Pools }, ino: number): WriteTarget {
  const { meta, pools } = parts;
  const poolName = stringXattr(meta, ino, POLICY_XATTRS.pool);
  const pool = pools.all.find((candidate) => candidate.name === poolName) ?? pools.writePool;
  const topologyText = stringXattr(meta, ino, POLICY_XATTRS.topology);
  const blockSizeText = stringXattr(meta, ino, POLICY_XATTRS.blockSize);
  let topology: TopologySpec | undefined;
  let blockBytes = pool.blockBytes;
  try {
    if (topologyText !== undefined) topology = parseTopologyFor(topologyText, pool, 'policy');
    if (blockSizeText !== undefined) blockBytes = parseBlockSize(blockSizeText, 'policy');
  } catch {
    topology = undefined;
  }
  return { pool, topology, blockBytes, compression: stringXattr(meta, ino, POLICY_XATTRS.compression) };
}

/** Copies the policy xattrs of directory `parent` to the new inode `child`. */
export function inheritPolicy(meta: MetaStore, parent: number, child: number): void {
  for (const name of POLICY_NAMES) {
    if (!meta.hasXattrNamed(name)) continue;
    const value = meta.getXattr(parent, name);
    if (value !== undefined) meta.setXattr(child, name, value, 0);
  }
}
