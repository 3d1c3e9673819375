/**
 * Tiering service: the control-socket (and later D-Bus) face of rewrites, the mover, scrub
 * tasks and tombstones. Each method validates its parameters (FsError EINVAL naming what is
 * wrong), starts a task when the job is long and returns its id at once.
 */
import type { Config } from '../config/index.js';
import { Errno, FsError } from '../errno.js';
import { ROOT_INO, type MetaStore } from '../meta/index.js';
import type { Pools } from '../pool/index.js';
import { scrub } from '../tasks/scrub.js';
import type { TaskContext, TaskManager } from '../tasks/task-manager.js';
import type { BlockStore } from '../block/index.js';
import type { FileStore } from '../file/index.js';
import { runMover } from './mover.js';
import type { ForegroundLoad } from './yield.js';
import { parseBlockSize, parseTopologyFor, requirePool } from './policy.js';
import { REWRITE_PARALLEL_MAX, requireRegularFile, rewriteBlock, rewriteFile, type LayoutTarget } from './rewrite.js';
import { POLICY_XATTRS } from './policy.js';
import type { PurgeResult, TombstoneInfo, Tombstones } from './tombstones.js';

const REWRITE_PARALLEL_DEFAULT = 4;

/** The parts of an open filesystem tiering works on. */
export interface TieringParts {
  readonly config: Config;
  readonly meta: MetaStore;
  readonly pools: Pools;
  readonly blocks: BlockStore;
  readonly files: FileStore;
  readonly tasks: TaskManager;
  readonly tombstones: Tombstones;
}

function integerParam(params: Record<string, unknown>, key: string, operation: string): number | undefined {
  const value = params[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new FsError(Errno.EINVAL, operation, `${key} must be a non-negative integer, not ${JSON.stringify(value)}`);
  }
  return value;
}

function stringParam(params: Record<string, unknown>, key: string, operation: string): string {
  const value = params[key];
  if (typeof value !== 'string' || value.trim() === '') {
    throw new FsError(Errno.EINVAL, operation, `${key} is required (a string)`);
  }
  return value;
}

export class Tiering {
  readonly #parts: TieringParts;
  /** Set by the mount: true when a handle has the file open for writing. */
  isOpenForWriting: (ino: number) => boolean = () => false;
  /** Set by the mount when metrics run: a pool's recent write rate, which the mover yields to. */
  foregroundWriteLoad: ForegroundLoad | undefined = undefined;

  constructor(parts: TieringParts) {
    this.#parts = parts;
  }

  /** Inode of a path under the mount point, or of a path inside the filesystem. */
  resolvePath(path: string, operation: string): number {
    const mountDir = this.#parts.config.mountDir;
    const inside = path === mountDir ? '/' : path.startsWith(`${mountDir}/`) ? path.slice(mountDir.length) : path;
    let ino = ROOT_INO;
    for (const name of inside.split('/').filter((part) => part !== '' && part !== '.')) {
      const next = this.#parts.meta.lookup(ino, name);
      if (next === undefined) throw new FsError(Errno.ENOENT, operation, `${path}: no such file in the filesystem`);
      ino = next;
    }
    return ino;
  }

  #inoOf(params: Record<string, unknown>, operation: string): number {
    const ino = integerParam(params, 'ino', operation);
    if (ino !== undefined) return ino;
    if (typeof params['path'] === 'string') return this.resolvePath(params['path'], operation);
    throw new FsError(Errno.EINVAL, operation, 'give path or ino');
  }

  /** The layout a rewriteFile request asks for, validated. */
  layoutTarget(params: Record<string, unknown>, ino: number, operation: string): LayoutTarget {
    const { pools, meta } = this.#parts;
    const pool = requirePool(pools, stringParam(params, 'pool', operation), operation);
    const topology = parseTopologyFor(stringParam(params, 'topology', operation), pool, operation);
    const blockSize = params['blockSize'];
    const blockBytes = blockSize === undefined || blockSize === null ? pool.blockBytes : parseBlockSize(String(blockSize), operation);
    const source = pools.writePool;
    const head = params['head'] !== false && pool !== source && pool.headBytes > 0
      ? { bytes: pool.headBytes, pool: source, topology: source.topology } : undefined;
    const compression = meta.getXattr(ino, POLICY_XATTRS.compression)?.toString('utf8');
    return { pool, topology, blockBytes, head, compression };
  }

  rewriteFile(params: Record<string, unknown>): { taskId: number } {
    const operation = 'rewriteFile';
    const ino = this.#inoOf(params, operation);
    requireRegularFile(this.#parts.meta, ino, operation);
    const target = this.layoutTarget(params, ino, operation);
    const parallel = integerParam(params, 'parallel', operation) ?? REWRITE_PARALLEL_DEFAULT;
    if (parallel < 1 || parallel > REWRITE_PARALLEL_MAX) {
      throw new FsError(Errno.EINVAL, operation, `parallel must be 1 to ${REWRITE_PARALLEL_MAX}, not ${parallel}`);
    }
    const label = `${this.#parts.meta.pathOf(ino)} -> ${target.pool.name}`;
    const task = this.#parts.tasks.start('rewrite', label, (context) =>
      rewriteFile(this.#parts, ino, target, { parallel, context }));
    return { taskId: task.id };
  }

  rewriteBlock(params: Record<string, unknown>): { taskId: number } {
    const operation = 'rewriteBlock';
    const ino = integerParam(params, 'ino', operation);
    const blockIndex = integerParam(params, 'block', operation);
    if (ino === undefined || blockIndex === undefined) throw new FsError(Errno.EINVAL, operation, 'ino and block are required');
    requireRegularFile(this.#parts.meta, ino, operation);
    if (this.#parts.meta.getBlock(ino, blockIndex) === undefined) {
      throw new FsError(Errno.ENOENT, operation, `inode ${ino} has no block ${blockIndex}`);
    }
    const pool = requirePool(this.#parts.pools, stringParam(params, 'pool', operation), operation);
    const topology = parseTopologyFor(stringParam(params, 'topology', operation), pool, operation);
    const task = this.#parts.tasks.start('rewrite-block', `inode ${ino} block ${blockIndex} -> ${pool.name}`,
      (context) => rewriteBlock(this.#parts, { ino, blockIndex, pool, topology }, context));
    return { taskId: task.id };
  }

  tombstones(params: Record<string, unknown>): { tombstones: TombstoneInfo[] } {
    return { tombstones: this.#parts.tombstones.list(integerParam(params, 'ino', 'tombstones')) };
  }

  async purgeTombstone(params: Record<string, unknown>): Promise<PurgeResult> {
    const ino = integerParam(params, 'ino', 'purgeTombstone');
    if (ino === undefined) throw new FsError(Errno.EINVAL, 'purgeTombstone', 'ino is required');
    return this.#parts.tombstones.purgeInode(ino);
  }

  async purgeTombstones(params: Record<string, unknown>): Promise<PurgeResult> {
    const seconds = params['olderThanSeconds'];
    if (typeof seconds !== 'number' || !(seconds >= 0)) {
      throw new FsError(Errno.EINVAL, 'purgeTombstones', 'olderThanSeconds must be a number >= 0');
    }
    return this.#parts.tombstones.purgeOlderThan(seconds * 1000);
  }

  /**
   * Starts a purge task for tombstones past their grace period, when there are some and no
   * purge runs (the daemon's housekeeping tick: idle ticks leave no task behind).
   */
  purgeExpiredInBackground(): void {
    const grace = this.#parts.config.tombstoneGraceMs;
    // Pending marks belong to rewrites running now (those of a crash went at startup).
    const expired = this.#parts.meta.tombstonesBefore(Date.now() - grace, 64);
    if (!expired.some((record) => record.reason !== 'pending')) return;
    if (this.#parts.tasks.list().some((task) => task.kind === 'purge' && task.state === 'running')) return;
    this.#parts.tasks.start('purge', `tombstones older than ${grace / 1000} s`, (context) =>
      this.#parts.tombstones.purgeOlderThan(grace, context.signal));
  }

  runMover(): { taskId: number } {
    const mover = this.#parts.config.mover;
    if (mover === undefined) throw new FsError(Errno.EINVAL, 'runMover', 'the config has no mover section');
    const running = this.#parts.tasks.list().find((task) => task.kind === 'mover' && task.state === 'running');
    if (running !== undefined) return { taskId: running.id };
    const task = this.#parts.tasks.start('mover', `${mover.source} -> ${mover.target}`, (context) =>
      runMover({
        ...this.#parts, isOpenForWriting: (ino) => this.isOpenForWriting(ino), foregroundWriteLoad: this.foregroundWriteLoad,
      }, mover, context));
    return { taskId: task.id };
  }

  scrubTask(params: Record<string, unknown>): { taskId: number } {
    const pool = typeof params['pool'] === 'string' ? params['pool'] : undefined;
    if (pool !== undefined) requirePool(this.#parts.pools, pool, 'scrubTask');
    const task = this.#parts.tasks.start('scrub', pool ?? 'all pools', async (context) => {
      await this.#parts.files.flushAll({ sync: false });
      return scrub(this.#parts, { pool, repair: params['repair'] === true, signal: context.signal,
        onProgress: progressDeltas(context) });
    });
    return { taskId: task.id };
  }
}

/** Turns scrub's running totals into task counter increments. */
function progressDeltas(context: TaskContext): (progress: { blocksDone: number; blocksTotal: number; bytesDone: number }) => void {
  const last = { blocksDone: 0, blocksTotal: 0, bytesDone: 0 };
  return (progress) => {
    context.addTotal({ blocks: progress.blocksTotal - last.blocksTotal });
    context.addDone({ blocks: progress.blocksDone - last.blocksDone, bytes: progress.bytesDone - last.bytesDone });
    Object.assign(last, progress);
  };
}
