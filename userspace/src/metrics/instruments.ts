/**
 * The metric families of shmr and the recorders that feed them: the FUSE op recorder, the
 * block observer, collectors for cache, handles, buckets, and the hooks through which other
 * modules (task manager, tombstones) publish what only they know.
 *
 * Hot-path recorders hold their series (label handles) resolved ahead of time; per-bucket and
 * per-pool handles are looked up in a Map by the name the caller already has (no string built).
 */
import type { BlockObserver, ShardEvent } from '../block/index.js';
import type { Pools } from '../pool/index.js';
import { Registry, type Family, type Series } from './registry.js';

/** What the FUSE session answered in C from attributes JS handed over (fuse/attr-cache.ts). */
export interface AttrReplyCounts {
  readonly served: number;
  readonly setattrsServed: number;
}

/** What the FUSE session's chunk reads counted since mount. */
export interface ChunkReadCounts {
  readonly reads: number;
  readonly bytes: number;
  readonly notCached: number;
  readonly mismatches: number;
}

/** One FUSE op's series. */
export interface OpSeries {
  readonly count: Series;
  readonly errors: Series;
  readonly duration: Series;
  readonly bytes: Series;
}

/** A task as the task manager reports it (see `setTaskSource`). */
export interface TaskInfo {
  readonly id: string;
  readonly kind: string;
  readonly state: string;
  readonly doneUnits: number;
  readonly totalUnits: number;
  readonly detail?: string;
}

/** What the daemon's parts expose to the collectors. */
export interface MetricSources {
  readonly pools: Pools;
  readonly cache: () => { bytes: number; dirtyBytes: number; hits: number; misses: number; evictions: number };
  readonly openHandles: () => number;
}

interface IoSeries {
  readonly count: Series;
  readonly bytes: Series;
  readonly duration: Series;
}

export class ShmrMetrics implements BlockObserver {
  readonly registry = new Registry();
  readonly #fuseCount = this.registry.counter('fuse_operations_total', 'FUSE requests answered, per operation', ['op']);
  readonly #fuseErrors = this.registry.counter('fuse_operation_errors_total', 'FUSE requests answered with an error', ['op']);
  readonly #fuseDuration = this.registry.histogram('fuse_operation_duration_seconds', 'FUSE request latency', ['op']);
  readonly #fuseBytes = this.registry.counter('fuse_operation_bytes_total', 'Bytes read or written by FUSE requests', ['op']);
  readonly #blockCount = this.registry.counter('block_operations_total', 'Block reads and writes', ['pool', 'op']);
  readonly #blockBytes = this.registry.counter('block_bytes_total', 'Block bytes read and written', ['pool', 'op']);
  readonly #blockDuration = this.registry.histogram(
    'block_operation_duration_seconds', 'Block read and write latency', ['pool', 'op']);
  readonly #diskCount = this.registry.counter(
    'disk_io_operations_total', 'Shard file reads and writes', ['pool', 'bucket', 'op']);
  readonly #diskBytes = this.registry.counter('disk_io_bytes_total', 'Shard bytes read and written', ['pool', 'bucket', 'op']);
  readonly #diskDuration = this.registry.histogram(
    'disk_io_operation_duration', 'Shard read and write latency (seconds)', ['pool', 'bucket', 'op']);
  readonly #encode = this.registry.histogram('erasure_encode_duration_seconds', 'Parity computation time per block', ['pool']);
  readonly #decode = this.registry.histogram('erasure_decode_duration_seconds', 'Rebuild time per degraded block', ['pool']);
  readonly #checksumFailures = this.registry.counter(
    'checksum_failures_total', 'Shards whose checksum did not match', ['pool', 'bucket']);
  readonly #degradedReads = this.registry.counter(
    'degraded_reads_total', 'Reads served from other copies or parity because a shard failed', ['pool', 'bucket']);
  readonly #shardErrors = this.registry.counter('shard_errors_total', 'Shard failures by kind', ['pool', 'bucket', 'kind']);
  readonly #taskProgress = this.registry.gauge('task_progress_ratio', 'Progress of running tasks (0..1)', ['task', 'kind']);
  readonly #tombstoneBytes = this.registry.gauge('tombstone_bytes', 'Bytes held by deleted data not reclaimed yet', ['pool']);
  readonly #cacheBytes = this.registry.gauge('cache_bytes', 'Memory held by the block cache');
  readonly #dirtyBytes = this.registry.gauge('cache_dirty_bytes', 'Cached bytes not stored yet');
  readonly #hits = this.registry.counter('cache_hits_total', 'Block reads served from the cache');
  readonly #misses = this.registry.counter('cache_misses_total', 'Block reads that went to the shards');
  readonly #evictions = this.registry.counter('cache_evictions_total', 'Clean blocks dropped from the cache');
  readonly #hitRatio = this.registry.gauge('cache_hit_ratio', 'Cache hits / lookups since mount');
  readonly #handles = this.registry.gauge('open_handles', 'Files open through the mount');
  readonly #bucketFree = this.registry.gauge('bucket_free_bytes', 'Free space of a bucket', ['pool', 'bucket']);
  readonly #bucketTotal = this.registry.gauge('bucket_total_bytes', 'Size of a bucket', ['pool', 'bucket']);
  readonly #bucketFailed = this.registry.gauge('bucket_failed', '1 when a bucket is failed', ['pool', 'bucket']);
  readonly #chunkReads = this.registry.counter(
    'fuse_chunk_reads_total', 'READs the binding answered from page-cached shard chunks, or passed to JS', ['outcome']);
  readonly #attrReplies = this.registry.counter(
    'fuse_attr_replies_total', 'GETATTRs, and time-only SETATTRs of unlinked inodes, the binding answered from attributes JS handed over', ['op']);
  readonly #ops = new Map<string, OpSeries>();
  readonly #pools = new Map<string, { read: IoSeries; write: IoSeries; encode: Series; decode: Series }>();
  readonly #buckets = new Map<string, { read: IoSeries; write: IoSeries }>();
  #bucketPool = new Map<string, string>();
  #taskSource: () => readonly TaskInfo[] = () => [];
  #tombstoneSource: () => Iterable<readonly [string, number]> = () => [];
  #chunkReadSource: () => ChunkReadCounts = () => ({ reads: 0, bytes: 0, notCached: 0, mismatches: 0 });
  #attrReplySource: () => AttrReplyCounts = () => ({ served: 0, setattrsServed: 0 });
  /** GETATTRs and SETATTRs answered in C already added to their ops' counts. */
  #attrRepliesCounted: AttrReplyCounts = { served: 0, setattrsServed: 0 };
  /** Served chunk reads already added to the read op's count and bytes. */
  #chunkReadsCounted = { reads: 0, bytes: 0 };

  constructor() {
    // The hooks are read at every sweep, whether or not a daemon attached its sources.
    this.registry.addCollector(() => this.#collectHooks());
  }

  /** The series of one FUSE op, resolved once (at wrap time). */
  fuseOp(op: string): OpSeries {
    let series = this.#ops.get(op);
    if (series === undefined) {
      series = {
        count: this.#fuseCount.series(op), errors: this.#fuseErrors.series(op),
        duration: this.#fuseDuration.series(op), bytes: this.#fuseBytes.series(op),
      };
      this.#ops.set(op, series);
    }
    return series;
  }

  /** Registers the collectors of the daemon's state; resolves every pool and bucket handle. */
  attach(sources: MetricSources): void {
    const [cacheBytes, dirtyBytes, hits, misses, evictions, hitRatio, handles] = [
      this.#cacheBytes, this.#dirtyBytes, this.#hits, this.#misses, this.#evictions, this.#hitRatio, this.#handles,
    ].map((family) => family.series());
    const [bucketFree, bucketTotal, bucketFailed] = [this.#bucketFree, this.#bucketTotal, this.#bucketFailed];
    this.#bucketPool = new Map(sources.pools.buckets.map((bucket) => [bucket.name, bucket.pool]));
    for (const bucket of sources.pools.buckets) {
      this.#bucketSeries(bucket.name);
      this.#poolSeries(bucket.pool);
    }
    this.registry.addCollector(() => {
      const cache = sources.cache();
      cacheBytes?.set(cache.bytes);
      dirtyBytes?.set(cache.dirtyBytes);
      hits?.set(cache.hits);
      misses?.set(cache.misses);
      evictions?.set(cache.evictions);
      hitRatio?.set(cache.hits + cache.misses === 0 ? 0 : cache.hits / (cache.hits + cache.misses));
      handles?.set(sources.openHandles());
      for (const bucket of sources.pools.buckets) {
        bucketFree.series(bucket.pool, bucket.name).set(bucket.freeBytes);
        bucketTotal.series(bucket.pool, bucket.name).set(bucket.totalBytes);
        bucketFailed.series(bucket.pool, bucket.name).set(bucket.state === 'failed' ? 1 : 0);
      }
    });
  }

  /** Hook for the task manager: a function listing the tasks and their progress. */
  setTaskSource(source: () => readonly TaskInfo[]): void {
    this.#taskSource = source;
  }

  tasks(): readonly TaskInfo[] {
    return this.#taskSource();
  }

  /** Hook for whoever tracks deleted-but-unreclaimed data: (pool, bytes) pairs. */
  setTombstoneSource(source: () => Iterable<readonly [string, number]>): void {
    this.#tombstoneSource = source;
  }

  /** Hook for the FUSE session: its reads answered in C (fuse/chunk-reads.ts) and declined ones. */
  setChunkReadSource(source: () => ChunkReadCounts): void {
    this.#chunkReadSource = source;
    this.#chunkReadsCounted = { reads: 0, bytes: 0 };
  }

  /** Hook for the FUSE session: the GETATTRs and SETATTRs it answered in C (fuse/attr-cache.ts) since mount. */
  setAttrReplySource(source: () => AttrReplyCounts): void {
    this.#attrReplySource = source;
    this.#attrRepliesCounted = { served: 0, setattrsServed: 0 };
  }

  /** Counts a shard failure: checksum failures and the degraded read it caused. */
  shardFailed(event: ShardEvent): void {
    const bucket = event.error.bucket;
    const pool = this.#bucketPool.get(bucket) ?? event.block.pool;
    if (event.error.kind === 'corrupt') this.#checksumFailures.series(pool, bucket).inc();
    this.#degradedReads.series(pool, bucket).inc();
    this.#shardErrors.series(pool, bucket, event.error.kind).inc();
  }

  blockRead(pool: string, bytes: number, seconds: number): void {
    recordIo(this.#poolSeries(pool).read, bytes, seconds);
  }

  blockWritten(pool: string, bytes: number, seconds: number): void {
    recordIo(this.#poolSeries(pool).write, bytes, seconds);
  }

  shardRead(bucket: string, bytes: number, seconds: number): void {
    recordIo(this.#bucketSeries(bucket).read, bytes, seconds);
  }

  shardWritten(bucket: string, bytes: number, seconds: number): void {
    recordIo(this.#bucketSeries(bucket).write, bytes, seconds);
  }

  encoded(pool: string, seconds: number): void {
    this.#poolSeries(pool).encode.observe(seconds);
  }

  decoded(pool: string, seconds: number): void {
    this.#poolSeries(pool).decode.observe(seconds);
  }

  #collectHooks(): void {
    for (const task of this.#taskSource()) {
      const ratio = task.totalUnits > 0 ? task.doneUnits / task.totalUnits : 0;
      this.#taskProgress.series(task.id, task.kind).set(ratio);
    }
    for (const [pool, bytes] of this.#tombstoneSource()) this.#tombstoneBytes.series(pool).set(bytes);
    const chunkReads = this.#chunkReadSource();
    this.#chunkReads.series('served').set(chunkReads.reads);
    this.#chunkReads.series('not_cached').set(chunkReads.notCached);
    this.#chunkReads.series('mismatch').set(chunkReads.mismatches);
    // Reads answered in C never pass the JS op wrapper: fold them into the read op's totals, so
    // fuse_operations_total and its bytes count every READ (their latency is not sampled).
    const read = this.fuseOp('read');
    read.count.inc(chunkReads.reads - this.#chunkReadsCounted.reads);
    read.bytes.inc(chunkReads.bytes - this.#chunkReadsCounted.bytes);
    this.#chunkReadsCounted = { reads: chunkReads.reads, bytes: chunkReads.bytes };
    // Likewise GETATTRs and SETATTRs answered in C, counted in fuse_operations_total and on their own.
    const attrReplies = this.#attrReplySource();
    const getattrs = attrReplies.served - this.#attrRepliesCounted.served;
    const setattrs = attrReplies.setattrsServed - this.#attrRepliesCounted.setattrsServed;
    this.#attrReplies.series('getattr').inc(getattrs);
    this.#attrReplies.series('setattr').inc(setattrs);
    this.fuseOp('getattr').count.inc(getattrs);
    this.fuseOp('setattr').count.inc(setattrs);
    this.#attrRepliesCounted = attrReplies;
  }

  #poolSeries(pool: string): { read: IoSeries; write: IoSeries; encode: Series; decode: Series } {
    let series = this.#pools.get(pool);
    if (series === undefined) {
      series = {
        read: ioSeries([this.#blockCount, this.#blockBytes, this.#blockDuration], [pool, 'read']),
        write: ioSeries([this.#blockCount, this.#blockBytes, this.#blockDuration], [pool, 'write']),
        encode: this.#encode.series(pool), decode: this.#decode.series(pool),
      };
      this.#pools.set(pool, series);
    }
    return series;
  }

  #bucketSeries(bucket: string): { read: IoSeries; write: IoSeries } {
    let series = this.#buckets.get(bucket);
    if (series === undefined) {
      const pool = this.#bucketPool.get(bucket) ?? '';
      const families: [Family, Family, Family] = [this.#diskCount, this.#diskBytes, this.#diskDuration];
      series = { read: ioSeries(families, [pool, bucket, 'read']), write: ioSeries(families, [pool, bucket, 'write']) };
      this.#buckets.set(bucket, series);
    }
    return series;
  }
}

function ioSeries(families: [Family, Family, Family], labels: string[]): IoSeries {
  return { count: families[0].series(...labels), bytes: families[1].series(...labels), duration: families[2].series(...labels) };
}

function recordIo(series: IoSeries, bytes: number, seconds: number): void {
  series.count.inc();
  series.bytes.inc(bytes);
  series.duration.observe(seconds);
}
