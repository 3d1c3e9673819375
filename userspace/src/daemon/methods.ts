/**
 * The operations a running daemon offers on its control socket. Each one is the same code the
 * CLI runs on an unmounted filesystem, here run against the daemon's open filesystem.
 */
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
    status: async () => statusOf(fs, { isMounted: true }),
  };
}

/** What `shmr status` shows: buckets with their state and space, cache use. */
export function statusOf(fs: OpenFilesystem, options: { isMounted: boolean }): Record<string, unknown> {
  return {
    isMounted: options.isMounted,
    pid: options.isMounted ? process.pid : undefined,
    mountDir: fs.config.mountDir,
    cacheBytes: fs.files.cacheBytes,
    dirtyBytes: fs.files.dirtyBytes,
    pools: fs.meta.poolUsage(),
    buckets: fs.pools.buckets.map((bucket) => ({
      name: bucket.name, pool: bucket.pool, path: bucket.path, priority: bucket.priority,
      state: bucket.state, failure: bucket.failure, freeBytes: bucket.freeBytes, totalBytes: bucket.totalBytes,
    })),
  };
}
