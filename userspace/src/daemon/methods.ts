/**
 * The operations a running daemon offers on its control socket. Each one is the same code the
 * CLI runs on an unmounted filesystem, here run against the daemon's open filesystem.
 */
import { Errno, FsError } from '../errno.js';
import { isDirectory, isRegular } from '../meta/index.js';
import { fileLayout } from '../tasks/file-layout.js';
import { fsck } from '../tasks/fsck.js';
import { replaceBucket } from '../tasks/replace-bucket.js';
import { scrub, type ScrubOptions } from '../tasks/scrub.js';
import type { ControlMethod } from './control.js';
import type { OpenFilesystem } from './open.js';
import type { MetricsEngine } from '../metrics/engine.js';
import { queryMetric, metricsText } from '../metrics/control.js';
import {
  createVolume, listVolumes, NO_VOLUME_USERS, removeVolume, volumeCreateInput, type VolumeUsers,
} from '../nbd/index.js';

/** Parses scrub parameters (from the CLI or the control socket). */
export function scrubOptions(params: Record<string, unknown>): Omit<ScrubOptions, 'onProgress' | 'signal'> {
  return {
    pool: typeof params['pool'] === 'string' ? params['pool'] : undefined,
    repair: params['repair'] === true,
    restart: params['restart'] === true,
    ...(typeof params['bytesPerSecondMax'] === 'number' ? { bytesPerSecondMax: params['bytesPerSecondMax'] } : {}),
  };
}

export function controlMethods(
  fs: OpenFilesystem,
  volumeUsers: VolumeUsers = NO_VOLUME_USERS,
  metrics?: MetricsEngine,
): Record<string, ControlMethod> {
  return {
    queryMetric: async (params) => queryMetric(metrics, params),
    metricsText: async () => ({ text: metricsText(metrics) }),
    volumeCreate: async (params) => createVolume(fs, volumeCreateInput(params)),
    volumeList: async () => listVolumes(fs).map((volume) =>
      ({ ...volume, connections: volumeUsers.exportCount(volume.ino) })),
    volumeRemove: async (params) => {
      await removeVolume(fs, String(params['name'] ?? ''), volumeUsers);
      return { removed: params['name'] };
    },
    scrub: (params, progress) => {
      // Cached dirty blocks are stored first, so the scrub sees every acknowledged write.
      return fs.files.flushAll({ sync: false }).then(() =>
        scrub(fs, { ...scrubOptions(params), onProgress: progress }));
    },
    fsck: async (params) => {
      await fs.files.flushAll({ sync: false });
      return fsck(fs, { repair: params['repair'] === true });
    },
    replaceBucket: async (params) => replaceBucket(fs, {
      bucket: String(params['bucket'] ?? ''), newPath: String(params['newPath'] ?? ''),
    }),
    flush: async () => {
      await fs.files.flushAll({ sync: true });
      return { flushed: true };
    },
    flushInode: async (params) => {
      const inode = fs.meta.requireInode(inoParam(params), 'flushInode');
      await fs.files.flush(inode.ino, { sync: true });
      return { flushed: inode.ino };
    },
    stat: async (params) => {
      const inode = fs.meta.requireInode(inoParam(params), 'stat');
      if (!isRegular(inode.mode)) {
        const errno = isDirectory(inode.mode) ? Errno.EISDIR : Errno.EINVAL;
        throw new FsError(errno, 'stat', `${fs.meta.pathOf(inode.ino)} is not a regular file`);
      }
      return fileLayout(fs, inode);
    },
    status: async () => statusOf(fs, { isMounted: true }),
    rewriteFile: async (params) => fs.tiering.rewriteFile(params),
    rewriteBlock: async (params) => fs.tiering.rewriteBlock(params),
    tombstones: async (params) => fs.tiering.tombstones(params),
    purgeTombstone: async (params) => fs.tiering.purgeTombstone(params),
    purgeTombstones: async (params) => fs.tiering.purgeTombstones(params),
    tasks: async () => ({ tasks: fs.tasks.list() }),
    task: async (params) => fs.tasks.get(Number(params['id'])),
    cancelTask: async (params) => fs.tasks.cancel(Number(params['id'])),
    waitTask: async (params) => fs.tasks.wait(fs.tasks.get(Number(params['id'])).id),
    runMover: async () => fs.tiering.runMover(),
    scrubTask: async (params) => fs.tiering.scrubTask(params),
  };
}

/** The inode number of a control call (`ino`), checked: callers of the socket are not trusted. */
function inoParam(params: Record<string, unknown>): number {
  const ino = params['ino'];
  if (typeof ino !== 'number' || !Number.isSafeInteger(ino) || ino < 1) {
    throw new FsError(Errno.EINVAL, 'control', `ino: ${String(ino)} is not an inode number`);
  }
  return ino;
}

/** What `shmr status` shows: buckets with their state and space, cache use. */
export function statusOf(fs: OpenFilesystem, options: { isMounted: boolean }): Record<string, unknown> {
  return {
    isMounted: options.isMounted,
    pid: options.isMounted ? process.pid : undefined,
    mountDir: fs.config.mountDir,
    cacheBytes: fs.files.cacheBytes,
    dirtyBytes: fs.files.dirtyBytes,
    pools: poolSpace(fs),
    buckets: fs.pools.buckets.map((bucket) => ({
      name: bucket.name, pool: bucket.pool, path: bucket.path, priority: bucket.priority,
      state: bucket.state, failure: bucket.failure, freeBytes: bucket.freeBytes, totalBytes: bucket.totalBytes,
    })),
  };
}

/** Per pool: live and tombstoned data (blocks, bytes) and the free space of its buckets. */
function poolSpace(fs: OpenFilesystem): Record<string, unknown>[] {
  const live = fs.meta.poolUsage();
  const tombstoned = fs.meta.tombstoneUsage();
  return fs.pools.all.map((pool) => ({
    pool: pool.name,
    blocks: live.find((usage) => usage.pool === pool.name)?.blocks ?? 0,
    dataBytes: live.find((usage) => usage.pool === pool.name)?.dataBytes ?? 0,
    tombstonedBlocks: tombstoned.find((usage) => usage.pool === pool.name)?.blocks ?? 0,
    tombstonedBytes: tombstoned.find((usage) => usage.pool === pool.name)?.dataBytes ?? 0,
    freeBytes: pool.buckets.reduce((sum, bucket) => sum + (bucket.state === 'ok' ? bucket.freeBytes : 0), 0),
  }));
}
