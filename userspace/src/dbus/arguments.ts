/**
 * Validation of D-Bus arguments, before anything happens: every check that can fail runs
 * before the control method is called, so a rejected call changes nothing. Each failure is an
 * API error naming the argument and what is wrong with it.
 *
 * Paths are resolved in the metadata, never through the mount (the daemon must not make
 * filesystem calls on its own mount: one JS thread serves it), and symlinks are not followed.
 */
import { posix } from 'node:path';
import { formatTopology, parseTopology, shardCount } from '../config/index.js';
import { BLOCK_BYTES_MAX, BLOCK_BYTES_MIN, PATH_BYTES_MAX } from '../limits.js';
import { isDirectory, isRegular, ROOT_INO, type InodeRecord, type MetaStore } from '../meta/index.js';
import type { Pool, Pools } from '../pool/index.js';
import { apiError } from './errors.js';

/** What validation reads: the metadata, the pools and where the filesystem is mounted. */
export interface ArgumentContext {
  readonly meta: MetaStore;
  readonly pools: Pools;
  readonly mountDir: string;
}

/** A uint64 argument as a safe integer within [min, max]. */
export function integerArgument(value: unknown, name: string, range: { min: number; max: number }): number {
  const number = typeof value === 'bigint' ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < range.min || number > range.max) {
    throw apiError('InvalidArguments', `${name}: ${String(value)} is not between ${range.min} and ${range.max}`);
  }
  return number;
}

/** An inode number that exists. */
export function inodeArgument(context: ArgumentContext, value: unknown, name = 'inode'): InodeRecord {
  const ino = integerArgument(value, name, { min: 1, max: Number.MAX_SAFE_INTEGER });
  const inode = context.meta.getInode(ino);
  if (inode === undefined || inode.nlink === 0) throw apiError('NoSuchFile', `${name}: no inode ${ino}`);
  return inode;
}

/**
 * A file named by an absolute path under the mount point, or by its inode number in decimal
 * ("1234"). Returns the inode.
 */
export function targetArgument(context: ArgumentContext, text: unknown, name = 'path'): InodeRecord {
  if (typeof text !== 'string' || text === '') {
    throw apiError('InvalidArguments', `${name}: empty; give an absolute path or an inode number`);
  }
  if (/^[0-9]+$/.test(text)) return inodeArgument(context, Number(text), name);
  if (!text.startsWith('/')) {
    throw apiError('InvalidArguments', `${name}: "${text}" is neither an absolute path nor an inode number`);
  }
  if (Buffer.byteLength(text) > PATH_BYTES_MAX || text.includes('\0')) {
    throw apiError('InvalidArguments', `${name}: not a valid path (NUL byte or longer than ${PATH_BYTES_MAX} bytes)`);
  }
  const relative = posix.relative(context.mountDir, posix.normalize(text));
  if (relative.startsWith('..') || posix.isAbsolute(relative)) {
    throw apiError('PathOutsideMount', `${name}: ${text} is outside the mount point ${context.mountDir}`);
  }
  let ino = ROOT_INO;
  for (const part of relative.split('/').filter((segment) => segment !== '')) {
    const next = context.meta.lookup(ino, part);
    if (next === undefined) throw apiError('NoSuchFile', `${name}: no such file ${text}`);
    ino = next;
  }
  const inode = context.meta.getInode(ino);
  if (inode === undefined) throw apiError('NoSuchFile', `${name}: no such file ${text}`);
  return inode;
}

/** The inode must be a regular file (rewrite, stat of a layout). */
export function requireRegular(context: ArgumentContext, inode: InodeRecord, name = 'path'): void {
  const where = `${context.meta.pathOf(inode.ino)} (inode ${inode.ino})`;
  if (isDirectory(inode.mode)) throw apiError('IsADirectory', `${name}: ${where} is a directory`);
  if (!isRegular(inode.mode)) throw apiError('NotARegularFile', `${name}: ${where} is not a regular file`);
}

/** A pool of the config. */
export function poolArgument(context: ArgumentContext, name: unknown): Pool {
  const known = context.pools.all.map((pool) => pool.name);
  if (typeof name !== 'string' || !known.includes(name)) {
    throw apiError('UnknownPool', `pool: unknown pool "${String(name)}" (pools: ${known.join(', ')})`);
  }
  return context.pools.pool(name);
}

/** A topology the pool can hold; the empty string means the pool's own topology. */
export function topologyArgument(text: unknown, pool: Pool): string {
  if (text === '') return formatTopology(pool.topology);
  const topology = typeof text === 'string' ? parseTopology(text) : 'not a string';
  if (typeof topology === 'string') throw apiError('InvalidTopology', `topology: ${topology}`);
  const needed = shardCount(topology);
  if (needed > pool.buckets.length) {
    throw apiError('TopologyTooWide',
      `topology: ${formatTopology(topology)} needs ${needed} buckets, pool ${pool.name} has ${pool.buckets.length}`);
  }
  return formatTopology(topology);
}

/** A block size in bytes; 0 means "the target pool's block size" (undefined). */
export function blockSizeArgument(value: unknown): number | undefined {
  const bytes = integerArgument(value, 'block_size', { min: 0, max: Number.MAX_SAFE_INTEGER });
  if (bytes === 0) return undefined;
  // In range first: the bit test is exact only below 2^31, and BLOCK_BYTES_MAX is.
  const isInRange = bytes >= BLOCK_BYTES_MIN && bytes <= BLOCK_BYTES_MAX;
  if (!isInRange || (bytes & (bytes - 1)) !== 0) {
    throw apiError('InvalidBlockSize',
      `block_size: ${bytes} is not a power of two between ${BLOCK_BYTES_MIN} and ${BLOCK_BYTES_MAX} bytes`);
  }
  return bytes;
}

/** A task id as the daemon hands them out: a decimal number (as text on the bus). */
export function taskIdArgument(text: unknown): number {
  if (typeof text !== 'string' || !/^[0-9]{1,15}$/.test(text)) {
    throw apiError('InvalidArguments', `id: "${String(text)}" is not a task id`);
  }
  return Number(text);
}

/** A metric query's label matchers, `a(sss)`: [label, operator, value] triples, as queryMetric takes them. */
export function matchersArgument(value: unknown): [string, string, string][] {
  const matchers = value as readonly (readonly unknown[])[];
  return matchers.map(([label, op, text], index) => {
    if (typeof label !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(label)) {
      throw apiError('InvalidArguments', `matchers[${index}]: "${String(label)}" is not a label name`);
    }
    if (op !== '=' && op !== '!=' && op !== '=~' && op !== '!~') {
      throw apiError('InvalidArguments', `matchers[${index}]: operator "${String(op)}" is not one of = != =~ !~`);
    }
    return [label, op, String(text)];
  });
}
