/**
 * The interface co.volf.shmr.ShmrFs1 as a table: every method, property and signal with its
 * D-Bus signature and documentation. The service dispatches from it, the introspection XML
 * is generated from it and docs/dbus.md describes it; adding a method is one entry here.
 *
 * A method entry maps a D-Bus call onto a control method of the daemon (daemon/methods.ts,
 * the same registry the control socket serves): `params` validates the D-Bus arguments and
 * builds the control parameters (throwing an API error before anything happens), `reply`
 * turns the control result into the D-Bus reply body.
 */
import { formatTopology } from '../config/index.js';
import type { OpenFilesystem } from '../daemon/open.js';
import { REWRITE_PARALLEL_MAX } from '../tiering/rewrite.js';
import { SHMR_VERSION } from '../version.js';
import {
  blockSizeArgument, inodeArgument, integerArgument, matchersArgument, poolArgument, requireRegular,
  targetArgument, taskIdArgument, topologyArgument, type ArgumentContext,
} from './arguments.js';
import { apiError } from './errors.js';
import { toVariantDict } from './marshal.js';

/** One argument of a method or signal. */
export interface ArgumentSpec {
  readonly name: string;
  /** D-Bus type signature of the argument. */
  readonly type: string;
}

export interface MethodSpec {
  readonly name: string;
  readonly doc: string;
  readonly args: readonly ArgumentSpec[];
  readonly results: readonly ArgumentSpec[];
  /** Name of the control method (daemon/methods.ts) it calls. */
  readonly control: string;
  readonly params: (context: ArgumentContext, args: readonly unknown[]) => Record<string, unknown>;
  readonly reply: (result: Record<string, unknown>) => unknown[];
}

/** What properties are read from. */
export interface PropertySource {
  readonly fs: OpenFilesystem;
  readonly openHandleCount: () => number;
}

export interface PropertySpec {
  readonly name: string;
  readonly type: string;
  readonly doc: string;
  readonly read: (source: PropertySource) => unknown;
}

export interface SignalSpec {
  readonly name: string;
  readonly doc: string;
  readonly args: readonly ArgumentSpec[];
}

const arg = (name: string, type: string): ArgumentSpec => ({ name, type });
const none = (): unknown[] => [];
const taskId = (result: Record<string, unknown>): unknown[] => [String(result['taskId'])];
const purged = (result: Record<string, unknown>): unknown[] =>
  [BigInt(Number(result['purgedShards'] ?? 0)), BigInt(Number(result['purgedBytes'] ?? 0))];
const records = (list: unknown): unknown[] => [(list as object[]).map(toVariantDict)];

/** Every method, in the order docs/dbus.md lists them. */
export const METHODS: readonly MethodSpec[] = [
  {
    name: 'Unmount', doc: 'Stores cached data, unmounts and ends the daemon (replies first).',
    args: [], results: [], control: 'unmount', params: () => ({}), reply: none,
  },
  {
    name: 'FlushAll', doc: 'Stores every cached dirty block and makes everything durable.',
    args: [], results: [], control: 'flush', params: () => ({}), reply: none,
  },
  {
    name: 'FlushInode', doc: 'Stores the dirty blocks of one inode and makes it durable.',
    args: [arg('inode', 't')], results: [], control: 'flushInode',
    params: (context, [inode]) => ({ ino: inodeArgument(context, inode).ino }), reply: none,
  },
  {
    name: 'RewriteFile',
    doc: 'Starts rewriting a file (absolute path or inode number) into a pool with a topology ' +
      '("" = the pool\'s) and block size (0 = the pool\'s); parallel 0 = default. Returns a task id.',
    args: [arg('inode_or_path', 's'), arg('pool', 's'), arg('topology', 's'), arg('block_size', 't'), arg('parallel', 'u')],
    results: [arg('task_id', 's')], control: 'rewriteFile',
    params: (context, [target, poolName, topologyText, blockSize, parallel]) => {
      const inode = targetArgument(context, target, 'inode_or_path');
      requireRegular(context, inode, 'inode_or_path');
      const pool = poolArgument(context, poolName);
      const topology = topologyArgument(topologyText, pool);
      const blockBytes = blockSizeArgument(blockSize);
      const parallelCount = integerArgument(parallel, 'parallel', { min: 0, max: REWRITE_PARALLEL_MAX });
      return {
        ino: inode.ino, pool: pool.name, topology,
        ...(blockBytes === undefined ? {} : { blockSize: blockBytes }),
        ...(parallelCount === 0 ? {} : { parallel: parallelCount }),
      };
    },
    reply: taskId,
  },
  {
    name: 'RewriteBlock', doc: 'Starts rewriting one block of a file into a pool and topology. Returns a task id.',
    args: [arg('inode', 't'), arg('block', 't'), arg('pool', 's'), arg('topology', 's')],
    results: [arg('task_id', 's')], control: 'rewriteBlock',
    params: (context, [inode, block, poolName, topologyText]) => {
      const record = inodeArgument(context, inode);
      requireRegular(context, record, 'inode');
      const blockIndex = integerArgument(block, 'block', { min: 0, max: Number.MAX_SAFE_INTEGER });
      if (context.meta.getBlock(record.ino, blockIndex) === undefined) {
        throw apiError('NoSuchBlock', `block: inode ${record.ino} has no stored block ${blockIndex}`);
      }
      const pool = poolArgument(context, poolName);
      return { ino: record.ino, block: blockIndex, pool: pool.name, topology: topologyArgument(topologyText, pool) };
    },
    reply: taskId,
  },
  {
    name: 'GetTombstones', doc: 'Lists the tombstones: old copies kept after a rewrite until purged.',
    args: [], results: [arg('tombstones', 'aa{sv}')], control: 'tombstones',
    params: () => ({}), reply: (result) => records(result['tombstones']),
  },
  {
    name: 'PurgeTombstone', doc: 'Deletes the tombstones of one inode. Returns shards and bytes freed.',
    args: [arg('inode', 't')], results: [arg('purged_shards', 't'), arg('purged_bytes', 't')],
    control: 'purgeTombstone',
    params: (context, [inode]) => ({ ino: integerArgument(inode, 'inode', { min: 1, max: Number.MAX_SAFE_INTEGER }) }),
    reply: purged,
  },
  {
    name: 'PurgeTombstones', doc: 'Deletes every tombstone older than the given seconds. Returns shards and bytes freed.',
    args: [arg('older_than_seconds', 't')], results: [arg('purged_shards', 't'), arg('purged_bytes', 't')],
    control: 'purgeTombstones',
    params: (context, [seconds]) =>
      ({ olderThanSeconds: integerArgument(seconds, 'older_than_seconds', { min: 0, max: 100 * 365 * 86_400 }) }),
    reply: purged,
  },
  {
    name: 'ListTasks', doc: 'Lists the background tasks (running and recently finished).',
    args: [], results: [arg('tasks', 'aa{sv}')], control: 'tasks',
    params: () => ({}), reply: (result) => records(result['tasks']),
  },
  {
    name: 'GetTask', doc: 'One task: kind, target, state, progress, errors.',
    args: [arg('id', 's')], results: [arg('task', 'a{sv}')], control: 'task',
    params: (context, [id]) => ({ id: taskIdArgument(id) }), reply: (result) => [toVariantDict(result)],
  },
  {
    name: 'CancelTask', doc: 'Cancels a running task; returns it in its new state.',
    args: [arg('id', 's')], results: [arg('task', 'a{sv}')], control: 'cancelTask',
    params: (context, [id]) => ({ id: taskIdArgument(id) }), reply: (result) => [toVariantDict(result)],
  },
  {
    name: 'Scrub', doc: 'Starts a scrub of one pool ("" = all), repairing when asked. Returns a task id.',
    args: [arg('pool', 's'), arg('repair', 'b')], results: [arg('task_id', 's')],
    control: 'scrubTask',
    params: (context, [poolName, repair]) => ({
      ...(poolName === '' ? {} : { pool: poolArgument(context, poolName).name }), repair: repair === true,
    }),
    reply: taskId,
  },
  {
    name: 'RunMover', doc: 'Starts (or returns the running) mover task of the config\'s mover section. Returns a task id.',
    args: [], results: [arg('task_id', 's')], control: 'runMover', params: () => ({}), reply: taskId,
  },
  {
    name: 'Stat', doc: 'Layout of a file (absolute path or inode number): blocks, pools, topologies, shard locations, health.',
    args: [arg('inode_or_path', 's')], results: [arg('layout', 'a{sv}')], control: 'stat',
    params: (context, [target]) => {
      const inode = targetArgument(context, target, 'inode_or_path');
      requireRegular(context, inode, 'inode_or_path');
      return { ino: inode.ino };
    },
    reply: (result) => [toVariantDict(result)],
  },
  {
    name: 'QueryMetric',
    doc: 'Evaluates a metric: name, label matchers (label, = != =~ !~, value), a function and a count of intervals.',
    args: [arg('name', 's'), arg('matchers', 'a(sss)'), arg('fn', 's'), arg('intervals', 'u')],
    results: [arg('value', 'd')], control: 'queryMetric',
    params: (context, [name, matchers, fn, intervals]) => {
      if (typeof name !== 'string' || !/^[A-Za-z_:][A-Za-z0-9_:]*$/.test(name)) {
        throw apiError('InvalidArguments', `name: "${String(name)}" is not a metric name`);
      }
      if (typeof fn !== 'string' || !/^[a-z_]{1,32}$/.test(fn)) {
        throw apiError('InvalidArguments', `fn: "${String(fn)}" is not a function name`);
      }
      return {
        name, matchers: matchersArgument(matchers), fn,
        intervals: integerArgument(intervals, 'intervals', { min: 1, max: 100_000 }),
      };
    },
    reply: (result) => [Number(result['value'])],
  },
];

/** Every property; all read-only. */
export const PROPERTIES: readonly PropertySpec[] = [
  { name: 'Version', type: 's', doc: 'Version of the daemon.', read: () => SHMR_VERSION },
  { name: 'MountPoint', type: 's', doc: 'Where the filesystem is mounted.', read: (source) => source.fs.config.mountDir },
  { name: 'WritePool', type: 's', doc: 'The pool new writes land on.', read: (source) => source.fs.config.writePool },
  {
    name: 'Pools', type: 'aa{sv}', doc: 'Pools with topology, block size, usage and their buckets (state, space).',
    read: (source) => poolsOf(source.fs).map(toVariantDict),
  },
  { name: 'CacheBytes', type: 't', doc: 'Bytes of blocks held in the cache.', read: (source) => BigInt(source.fs.files.cacheBytes) },
  { name: 'DirtyBytes', type: 't', doc: 'Bytes of cached blocks not stored yet.', read: (source) => BigInt(source.fs.files.dirtyBytes) },
  {
    name: 'CacheLimitBytes', type: 't', doc: 'The cache memory limit (cache.memory_limit).',
    read: (source) => BigInt(source.fs.config.cache.memoryLimitBytes),
  },
  { name: 'OpenFileHandles', type: 'u', doc: 'Files and directories open through the mount.', read: (source) => source.openHandleCount() },
];

/** Every signal. */
export const SIGNALS: readonly SignalSpec[] = [
  { name: 'TaskProgress', doc: 'A task advanced (at most a few times a second per task).', args: [arg('id', 's'), arg('task', 'a{sv}')] },
  { name: 'TaskFinished', doc: 'A task ended: done, failed or cancelled.', args: [arg('id', 's'), arg('state', 's'), arg('task', 'a{sv}')] },
  {
    name: 'ShardError', doc: 'A shard could not be read or trusted (kind: missing, io, corrupt).',
    args: [arg('inode', 't'), arg('block', 't'), arg('bucket', 's'), arg('kind', 's'), arg('path', 's'), arg('message', 's')],
  },
  {
    name: 'BucketStateChanged', doc: 'A bucket failed or came back (state: ok, failed).',
    args: [arg('bucket', 's'), arg('pool', 's'), arg('state', 's'), arg('previous_state', 's'), arg('reason', 's')],
  },
];

/** Pools as the Pools property and `shmrctl status` show them. */
export function poolsOf(fs: OpenFilesystem): Record<string, unknown>[] {
  const usage = new Map(fs.meta.poolUsage().map((entry) => [entry.pool, entry]));
  return fs.pools.all.map((pool) => ({
    name: pool.name, topology: formatTopology(pool.topology),
    blockBytes: pool.blockBytes, blocks: usage.get(pool.name)?.blocks ?? 0, dataBytes: usage.get(pool.name)?.dataBytes ?? 0,
    buckets: pool.buckets.map((bucket) => ({
      name: bucket.name, path: bucket.path, priority: bucket.priority, state: bucket.state,
      failure: bucket.failure, freeBytes: bucket.freeBytes, totalBytes: bucket.totalBytes,
    })),
  }));
}
