/**
 * The metrics of a mounted filesystem, put together: recorders hooked into the block store
 * and the FUSE ops, the query engine with its journal (history restored at start), the
 * Prometheus and OTLP exporters and the _stat directory. One `close()` undoes it all.
 */
import type { Server } from 'node:http';
import type { Config } from '../config/index.js';
import type { OpenFilesystem } from '../daemon/open.js';
import type { LowLevelOps } from '../fuse/binding.js';
import { instrumentOps } from '../fuse/instrument.js';
import { StatDirectory } from '../fuse/stat-dir.js';
import { log } from '../log.js';
import { MetricsEngine } from './engine.js';
import { match } from './query.js';
import { ShmrMetrics } from './instruments.js';
import { journalDirectory, JournalWriter, restoreHistory } from './journal.js';
import { statContent } from './stat-files.js';
import type { OtlpPusher } from './otlp.js';

/**
 * Flush intervals a load reading covers (the current one included): long enough that one
 * quiet interval between a writer's bursts does not read as idle.
 */
const LOAD_WINDOW_INTERVALS = 3;

export interface MetricsService {
  readonly metrics: ShmrMetrics;
  readonly engine: MetricsEngine;
  /** Bytes per second of blocks written to `pool` over the last few flush intervals. */
  poolWriteRate(pool: string): number;
  /** The FUSE ops with recording and the _stat directory around them. */
  wrapOps(ops: LowLevelOps, openHandles: () => number): LowLevelOps;
  close(): Promise<void>;
}

/** Starts recording for `fs`; the exporters listen before this resolves. */
export async function startMetrics(config: Config, fs: OpenFilesystem): Promise<MetricsService> {
  const options = config.metrics;
  const metrics = new ShmrMetrics();
  const engine = new MetricsEngine(metrics.registry, options);
  let openHandles = () => 0;
  metrics.attach({
    pools: fs.pools,
    cache: () => ({ bytes: fs.files.cacheBytes, dirtyBytes: fs.files.dirtyBytes, ...fs.files.cacheStats }),
    openHandles: () => openHandles(),
  });
  fs.blocks.observer = metrics;
  metrics.setTaskSource(() => fs.tasks.list().map((task) => ({
    id: String(task.id), kind: task.kind, state: task.state, detail: task.target,
    doneUnits: task.totalBytes > 0 ? task.doneBytes : task.doneBlocks,
    totalUnits: task.totalBytes > 0 ? task.totalBytes : task.totalBlocks,
  })));
  metrics.setTombstoneSource(() => fs.meta.tombstoneUsage().map((usage) => [usage.pool, usage.dataBytes] as const));
  const directory = journalDirectory(config.metadataDir);
  const restored = await restoreHistory(engine, directory).catch((error: Error) => {
    log.warn(`metrics history not restored: ${error.message}`);
    return 0;
  });
  if (restored > 0) log.info(`metrics: restored ${restored} interval(s) of history`);
  const journal = new JournalWriter({ directory, totalBytesMax: options.historyBytesMax });
  journal.attach(engine, (error) => log.error(`metrics journal: ${error.message}`));
  engine.start();
  let server: Server | undefined;
  // The exporters' libraries load only when configured (the OpenTelemetry SDK alone costs
  // about half a second of daemon start).
  if (options.prometheus !== undefined) {
    const { servePrometheus } = await import('./prometheus.js');
    server = await servePrometheus(metrics.registry, options.prometheus, (error) => log.error(`prometheus: ${error.message}`));
    log.info(`metrics: Prometheus exposition at http://${options.prometheus.host}:${options.prometheus.port}/metrics`);
  }
  let otlp: OtlpPusher | undefined;
  if (options.otlp !== undefined) {
    const { OtlpPusher } = await import('./otlp.js');
    otlp = new OtlpPusher({ registry: metrics.registry, endpoint: options.otlp.endpoint });
    otlp.start(options.otlp.intervalMs, (error) => log.error(`otlp export: ${error.message}`));
  }
  return {
    metrics, engine,
    poolWriteRate: (pool) =>
      engine.get('block_bytes_total', [match('pool', pool), match('op', 'write')]).rate(LOAD_WINDOW_INTERVALS),
    wrapOps: (ops, handles) => {
      openHandles = handles;
      const recorded = instrumentOps(ops, (op) => metrics.fuseOp(op));
      if (options.statDir === undefined) return recorded;
      const stat = new StatDirectory({
        name: options.statDir, isListed: options.statDirListed,
        content: statContent({ engine, metrics, pools: () => poolRows(fs) }),
      });
      return stat.wrap(recorded);
    },
    close: async () => {
      engine.stop();
      engine.flush(Date.now());
      await journal.drain();
      await otlp?.stop();
      if (server !== undefined) {
        // A scraper's keep-alive connection would hold close() (and so the unmount) open.
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  };
}

function poolRows(fs: OpenFilesystem) {
  return [...fs.config.pools.keys()].map((pool) => ({
    pool,
    buckets: fs.pools.buckets.filter((bucket) => bucket.pool === pool).map((bucket) => ({
      name: bucket.name, state: bucket.state, freeBytes: bucket.freeBytes, totalBytes: bucket.totalBytes,
    })),
  }));
}
