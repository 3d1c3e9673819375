/**
 * The mount daemon: `shmr mount`. Runs in the foreground until the filesystem is unmounted
 * (from outside, or on SIGINT/SIGTERM), then stores every cached block, makes everything
 * durable and exits 0.
 */
import { setPriority } from 'node:os';
import type { Config } from '../config/index.js';
import { FuseSession, type MountOptions } from '../fuse/binding.js';
import { AttrCache } from '../fuse/attr-cache.js';
import { ChunkReads } from '../fuse/chunk-reads.js';
import { ShmrFilesystem } from '../fuse/filesystem.js';
import { FUSE_READAHEAD_BYTES, IO_REQUEST_BYTES_MAX } from '../limits.js';
import { setMountReadahead } from '../fuse/readahead.js';
import { setMountWritebackLimit, writebackLimitFor } from '../fuse/writeback-limit.js';
import { log } from '../log.js';
import { setThreadSlice } from '../erasure/index.js';
import { checkMountPoint } from './mountpoint.js';
import { openFilesystem, removeOrphans, type OpenFilesystem } from './open.js';
import { forgetDaemon, recordDaemon } from './runtime.js';
import { serveControl } from './control.js';
import { RepairQueue } from '../tasks/repair-queue.js';
import { controlMethods } from './methods.js';
import { NbdServer, VolumeCatalog } from '../nbd/index.js';
import { BUS_NAME, DbusService } from '../dbus/index.js';
import { startMetrics, type MetricsService } from '../metrics/service.js';

/** Shortest period of the write-back timer (cache.writeback_delay may be 0: start at once). */
const WRITEBACK_TIMER_MS_MIN = 100;
/** How often failed buckets are probed and queued repairs run. */
const HOUSEKEEPING_INTERVAL_MS = 5000;

/** Mounts `config` and serves until unmounted. Resolves with the exit code. */
export async function runMount(config: Config): Promise<number> {
  checkMountPoint(config.mountDir);
  for (const warning of config.warnings) log.warn(warning);
  const fs = openFilesystem(config);
  const orphans = await removeOrphans(fs);
  if (orphans > 0) log.info(`removed ${orphans} orphan inode(s) left by an earlier crash`);
  const strays = await fs.tombstones.purgeInterruptedRewrites();
  if (strays.purgedShards > 0) log.info(`removed ${strays.purgedShards} shard(s) of rewrites cut short by a crash`);
  const filesystem = new ShmrFilesystem({
    meta: fs.meta, files: fs.files, pools: fs.pools,
    options: { entryTimeoutSec: config.fuse.entryTimeoutSec, attrTimeoutSec: config.fuse.attrTimeoutSec },
  });
  // A volume unlinked through the mount while a connection serves it goes at its last close.
  const catalog = new VolumeCatalog(fs, {
    onIdle: (ino) => {
      filesystem.releasedElsewhere(ino)?.catch((error: Error) => log.error(`deleting unlinked volume inode ${ino}: ${error.message}`));
    },
  });
  filesystem.isUsedElsewhere = (ino) => catalog.exportCount(ino) > 0;
  let nbd: NbdServer;
  let metrics: MetricsService | undefined;
  try {
    if (config.metrics.enabled) metrics = await startMetrics(config, fs);
    const listen = { socketPath: config.nbd.socketPath, tcp: config.nbd.listen };
    nbd = await NbdServer.start(catalog, listen, log.warn);
  } catch (error) {
    await metrics?.close();
    fs.close();
    throw error;
  }
  const ops = metrics?.wrapOps(filesystem, () => filesystem.handles.handleCount) ?? filesystem;
  const session = new FuseSession(ops, mountOptions(config));
  filesystem.invalidateAttributes = (ino) => {
    session.notifyInvalInode(ino, -1, 0);
  };
  ChunkReads.attach(fs, session);
  filesystem.attrCache = AttrCache.attach(fs, session);
  metrics?.metrics.setChunkReadSource(() => session.chunkReadStats());
  metrics?.metrics.setAttrReplySource(() => session.attributeStats());
  // The control socket is bound before the mount appears, so whoever sees the mount can reach
  // the daemon at once.
  const stop = () => session.unmount();
  const methods = {
    ...controlMethods(fs, {
      exportCount: (ino) => catalog.exportCount(ino),
      isOpenThroughMount: (ino) => filesystem.handles.openCount(ino) > 0,
    }, metrics?.engine),
    // After the reply: the unmount ends this daemon and its bus connection.
    unmount: async () => {
      setImmediate(stop);
      return { unmounting: config.mountDir };
    },
  };
  const control = serveControl(config.metadataDir, methods);
  try {
    session.mount();
  } catch (error) {
    control.close();
    await nbd.close();
    await metrics?.close();
    fs.close();
    throw error;
  }
  const priorityProblem = raiseServingPriority();
  if (priorityProblem !== undefined) log.info(`request thread left at its priority: ${priorityProblem}`);
  const sliceProblem = shortenServingSlice();
  if (sliceProblem !== undefined) log.info(`request thread left at the kernel's time slice: ${sliceProblem}`);
  const readaheadProblem = setMountReadahead(config.mountDir, FUSE_READAHEAD_BYTES);
  if (readaheadProblem !== undefined) log.info(`kernel readahead left at its default: ${readaheadProblem}`);
  const writebackBytes = writebackLimitFor(fs.pools.writePool.blockBytes);
  const writebackProblem = writebackBytes === undefined ? undefined : setMountWritebackLimit(config.mountDir, writebackBytes);
  if (writebackProblem !== undefined) log.info(`kernel write-back limit left at its default: ${writebackProblem}`);
  fs.tiering.isOpenForWriting = (ino) => filesystem.handles.isOpenForWriting(ino);
  fs.tiering.foregroundWriteLoad = metrics?.poolWriteRate;
  recordDaemon(config.mountDir);
  log.info(`mounted at ${config.mountDir} (write pool ${config.writePool}); ` +
    `stop with Ctrl-C or: shmr unmount ${config.mountDir}`);
  log.info(`serving volumes over NBD on ${nbd.addresses.join(', ')}`);
  const dbusService = config.dbus.bus === 'none' ? undefined : await DbusService.start({
    bus: config.dbus.bus, fs, methods, openHandleCount: () => filesystem.handles.handleCount, tasks: fs.tasks,
  });
  if (dbusService !== undefined) log.info(`serving D-Bus ${BUS_NAME} ${dbusService.objectPath} on the ${config.dbus.bus} bus`);
  const timer = setInterval(() => {
    fs.files.flushAged().catch((error: Error) => log.error(`background flush: ${error.message}`));
  }, config.cache.flushIntervalMs);
  // Write-back of volume blocks stored at the end of a burst (the stores start the others).
  const writeback = setInterval(() => {
    fs.files.startAgedWriteback().catch((error: Error) => log.error(`background write-back: ${error.message}`));
  }, Math.max(config.cache.writebackDelayMs, WRITEBACK_TIMER_MS_MIN));
  const repairs = new RepairQueue(fs);
  const reportShardError = fs.blocks.onShardError;
  fs.blocks.onShardError = (event) => {
    reportShardError(event);
    metrics?.metrics.shardFailed(event);
    repairs.add(event.block);
  };
  const housekeeping = setInterval(() => {
    fs.pools.probe(fs.meta.filesystemUuid);
    repairs.drain().catch((error: Error) => log.error(`background repair: ${error.message}`));
    fs.tiering.purgeExpiredInBackground();
  }, HOUSEKEEPING_INTERVAL_MS);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  await session.closed;
  clearInterval(timer);
  clearInterval(writeback);
  clearInterval(housekeeping);
  await fs.tasks.cancelAll();
  // Before the last flush: requests in flight complete, later ones are refused.
  await nbd.close();
  control.close();
  dbusService?.stop();
  await metrics?.close();
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  return shutDown(fs, config);
}

/**
 * Stores what is cached and closes the store, once the kernel is gone. Unlinked files go first:
 * nothing can open them any more, so their cached data is dropped rather than stored (storing
 * it could fail on a full pool and fail the unmount for data no one can read).
 */
export async function shutDown(fs: OpenFilesystem, config: Config): Promise<number> {
  let code = 0;
  try {
    await removeOrphans(fs);
  } catch (error) {
    log.error(`could not delete unlinked files at unmount: ${(error as Error).message}`);
    code = 1;
  }
  try {
    await fs.files.flushAll({ sync: true });
  } catch (error) {
    log.error(`could not store all cached data at unmount: ${(error as Error).message}`);
    code = 1;
  }
  fs.close();
  forgetDaemon(config.mountDir);
  log.info(`unmounted ${config.mountDir}`);
  return code;
}

function mountOptions(config: Config): MountOptions {
  const isRoot = process.getuid?.() === 0;
  const allowOther = config.fuse.allowOther === 'auto' ? isRoot : config.fuse.allowOther;
  return {
    mountpoint: config.mountDir,
    fsName: 'shmr',
    subtype: 'shmr',
    allowOther,
    defaultPermissions: config.fuse.defaultPermissions,
    extraOptions: [...config.fuse.options],
    maxWriteBytes: IO_REQUEST_BYTES_MAX,
    maxReadBytes: IO_REQUEST_BYTES_MAX,
    writebackCache: config.fuse.writebackCache,
    // More write-back and readahead requests in flight than the kernel's 12 (measured +17 %
    // random writes): the daemon answers them concurrently anyway.
    maxBackground: 64,
  };
}

/**
 * Nice value of the daemon's main thread, which receives and answers every FUSE request. During
 * a large write the writer, the kernel's writeback and the encoder keep every core busy, and a
 * small read then waits for a CPU rather than for a disk: on 2 cores, the median over runs of
 * the p99 of 4 KiB reads during a 2 GiB erasure write fell from 9.1 ms (6 runs) to 5.9 ms
 * (9 runs) at -5 (the bench's latency section; single runs spread from 3 to 15 ms).
 * Linux nice values are per thread: this is the calling thread's; threads started later
 * inherit it, those already running keep theirs.
 */
export const SERVING_THREAD_NICE = -5;

/**
 * Time slice of the daemon's main thread under the fair scheduler (the kernel's smallest). Its
 * nice value sets its share of the CPU; the slice sets how soon it runs when a request wakes it
 * while the cores are busy: a woken thread with a shorter slice than the running one preempts
 * it (EEVDF, Linux 6.12+), where with the default slice it may wait for the end of the other's
 * (the writer's copies, the bulk pool's encoding). The thread runs in short bursts, one request
 * each, so a short slice costs it nothing.
 */
export const SERVING_THREAD_SLICE_NS = 100_000;

/** Sets this thread's slice to SERVING_THREAD_SLICE_NS; undefined, or why not. */
function shortenServingSlice(): string | undefined {
  try {
    return setThreadSlice(SERVING_THREAD_SLICE_NS) ? undefined : 'the kernel does not take slices (before Linux 6.12)';
  } catch (error) {
    return (error as Error).message;
  }
}

/** Raises this thread's priority to SERVING_THREAD_NICE; undefined, or why not (not root). */
function raiseServingPriority(): string | undefined {
  try {
    setPriority(SERVING_THREAD_NICE);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}
