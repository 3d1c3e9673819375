/**
 * config: loads, validates and resolves a shmr config file into a frozen `Config`.
 *
 * Invariants:
 * - A returned Config is fully valid: every pool resolvable, every bucket path an existing
 *   writable directory, block sizes powers of two in range, topologies satisfiable.
 * - Validation has no side effects: nothing is created on disk for an invalid config.
 * - Relative paths resolve against the config file's folder (the embedded default: the
 *   current directory).
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { totalmem } from 'node:os';
import { dirname, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { BLOCK_BYTES_MAX, BLOCK_BYTES_MIN } from '../limits.js';
import { compressionSpec, COMPRESSION_NONE, type CompressionSpec } from './compression.js';
import { CONFIG_SCHEMA } from './schema.js';
import { parseTopology, shardCount, type TopologySpec } from './topology.js';
import { formatSize, parseDuration, parsePercent, parseSize } from './units.js';
import {
  buildHousekeeping, buildMover, buildTombstoneGrace, type HousekeepingConfig, type MoverConfig,
  type RawMover,
} from './tiering.js';

export type BucketPriority = 'prioritize' | 'normal' | 'deprioritize' | 'ignore' | 'evacuate';

export interface BucketConfig {
  readonly name: string;
  readonly pool: string;
  readonly path: string;
  readonly priority: BucketPriority;
}

export interface PoolConfig {
  readonly name: string;
  readonly topology: TopologySpec;
  readonly blockBytes: number;
  /** How blocks written to this pool are compressed (none unless configured). */
  readonly compression: CompressionSpec;
  /** Files rewritten into this pool keep their first `headBytes` on the write pool. */
  readonly headBytes: number;
  readonly buckets: readonly BucketConfig[];
}

export interface Config {
  /** The file this came from; undefined for the embedded default. */
  readonly configPath: string | undefined;
  readonly mountDir: string;
  readonly metadataDir: string;
  readonly writePool: string;
  readonly pools: ReadonlyMap<string, PoolConfig>;
  readonly cache: {
    readonly memoryLimitBytes: number;
    readonly flushIntervalMs: number;
    readonly dirtyAgeMs: number;
    /** How long a volume's stored block waits before its write-back is started (FileStore). */
    readonly writebackDelayMs: number;
  };
  /** Problems that do not stop the filesystem (a failed drive within redundancy). */
  readonly warnings: readonly string[];
  readonly fuse: {
    readonly allowOther: 'auto' | boolean;
    readonly defaultPermissions: boolean;
    readonly writebackCache: boolean;
    readonly entryTimeoutSec: number;
    readonly attrTimeoutSec: number;
    readonly options: readonly string[];
  };
  /** Tombstoned shards are purged this long after they lost their last reference. */
  readonly tombstoneGraceMs: number;
  /** The background mover's policy; undefined: no mover. */
  readonly mover: MoverConfig | undefined;
  /** The schedule of `shmr crond`. */
  readonly housekeeping: HousekeepingConfig;
  /** The NBD server of the daemon (volumes as block devices). */
  readonly nbd: {
    /** Unix socket, always served (mode 0600); default <metadata_dir>/nbd.sock. */
    readonly socketPath: string;
    /** Optional TCP listener; loopback only unless allowRemote. */
    readonly listen: { readonly host: string; readonly port: number } | undefined;
    readonly allowRemote: boolean;
  };
  /**
   * The D-Bus control plane (docs/dbus.md): which bus the daemon serves co.volf.shmr on.
   * `session` uses DBUS_SESSION_BUS_ADDRESS, `system` DBUS_SYSTEM_BUS_ADDRESS or the standard
   * system socket; `none` serves no D-Bus at all.
   */
  readonly dbus: { readonly bus: DbusBus };
  /** Metrics: recording, query engine, journal, exporters and the _stat directory. */
  readonly metrics: MetricsConfig;
}

export interface MetricsConfig {
  /** Off: nothing is recorded, exported or shown (the benchmark's baseline). */
  readonly enabled: boolean;
  readonly collectIntervalMs: number;
  readonly flushIntervalMs: number;
  /** Flush intervals kept per series in memory (and restored from the journal). */
  readonly retentionIntervals: number;
  /** Recent intervals whose every collect sample is kept. */
  readonly highResolutionIntervals: number;
  /** Bound of the journal files together. */
  readonly historyBytesMax: number;
  /** Name of the virtual directory at the mount root; undefined: none. */
  readonly statDir: string | undefined;
  /** Whether readdir of the root lists it (it stays reachable by name either way). */
  readonly statDirListed: boolean;
  /** Prometheus text exposition at http://host:port/metrics (loopback only). */
  readonly prometheus: { readonly host: string; readonly port: number } | undefined;
  readonly otlp: { readonly endpoint: string; readonly intervalMs: number } | undefined;
}

/** Which message bus the daemon serves its D-Bus API on. */
export type DbusBus = 'system' | 'session' | 'none';

/** A config that failed validation; `problems` has one "key: what is wrong" line each. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(source: string, problems: readonly string[]) {
    super(`invalid config ${source}:\n${problems.map((line) => `  - ${line}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * The embedded default: a demo filesystem in the current directory, one SSD-like write pool
 * and a 4+2 erasure archive pool, every bucket a folder under ./data.
 */
export const DEFAULT_CONFIG_YAML = `# shmr embedded default: a demo filesystem under the current directory.
mount_dir: ./mnt
metadata_dir: ./data/meta
write_pool: ssd
pools:
  ssd:
    topology: single
    block_size: 1MiB
    buckets:
      ssd0: { path: ./data/ssd0 }
  archive:
    topology: erasure:4+2
    block_size: 32MiB
    buckets:
      hdd0: { path: ./data/hdd0 }
      hdd1: { path: ./data/hdd1 }
      hdd2: { path: ./data/hdd2 }
      hdd3: { path: ./data/hdd3 }
      hdd4: { path: ./data/hdd4 }
      hdd5: { path: ./data/hdd5 }
`;

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const validateShape = ajv.compile(CONFIG_SCHEMA);

/** Reads and validates a config file. Throws ConfigError (or an fs error naming the file). */
export function loadConfigFile(path: string): Config {
  const absolute = resolve(path);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (error) {
    throw new ConfigError(absolute, [`cannot read the file: ${(error as Error).message}`]);
  }
  const config = parseConfig(text, { source: absolute, baseDir: dirname(absolute) });
  return Object.freeze({ ...config, configPath: absolute });
}

/** Parses and validates config text; relative paths resolve against `baseDir`. */
export function parseConfig(
  text: string,
  options: { source: string; baseDir: string; checkPaths?: boolean },
): Config {
  let document: unknown;
  try {
    document = parseYaml(text, { prettyErrors: true });
  } catch (error) {
    throw new ConfigError(options.source, [`not valid YAML: ${(error as Error).message}`]);
  }
  if (!validateShape(document)) {
    throw new ConfigError(options.source, (validateShape.errors ?? []).map(describeAjvError));
  }
  const problems: string[] = [];
  const config = buildConfig(document as RawConfig, options, problems);
  if (options.checkPaths !== false) checkPaths(config, problems);
  if (problems.length > 0) throw new ConfigError(options.source, problems);
  return config;
}

function describeAjvError(error: {
  instancePath: string;
  message?: string | undefined;
  params: Record<string, unknown>;
}): string {
  const key = error.instancePath.replace(/^\//, '').replaceAll('/', '.') || '(top level)';
  const extra = error.params['additionalProperty'];
  if (typeof extra === 'string') return `${key}: unknown key "${extra}"`;
  const allowed = error.params['allowedValues'];
  if (Array.isArray(allowed)) return `${key}: must be one of ${allowed.join(', ')}`;
  const missing = error.params['missingProperty'];
  if (typeof missing === 'string') return `${key}: missing required key "${missing}"`;
  return `${key}: ${error.message ?? 'invalid'}`;
}

interface RawBucket {
  path: string;
  priority?: BucketPriority;
}
interface RawPool {
  topology: string;
  block_size: string | number;
  compression?: { algorithm: string; level?: number };
  head_size?: string | number;
  buckets: Record<string, RawBucket>;
}
interface RawConfig {
  mount_dir: string;
  metadata_dir: string;
  write_pool: string;
  pools: Record<string, RawPool>;
  cache?: {
    memory_limit?: string | number; flush_interval?: string | number; dirty_age?: string | number;
    writeback_delay?: string | number;
  };
  fuse?: {
    allow_other?: 'auto' | boolean;
    default_permissions?: boolean;
    writeback_cache?: boolean;
    entry_timeout?: string | number;
    attr_timeout?: string | number;
    options?: string[];
  };
  nbd?: { socket?: string; listen?: string; allow_remote?: boolean };
  dbus?: { bus?: DbusBus };
  tombstones?: { grace?: string | number };
  mover?: RawMover;
  housekeeping?: { mover?: string | number; purge?: string | number; scrub?: string | number };
  metrics?: RawMetrics;
}
interface RawMetrics {
  enabled?: boolean;
  collect_interval?: string | number;
  flush_interval?: string | number;
  retention?: number;
  high_resolution_retention?: number;
  history_max_size?: string | number;
  stat_dir?: string | false;
  stat_dir_listed?: boolean;
  prometheus?: { listen: string };
  otlp?: { endpoint: string; interval?: string | number };
}

function buildConfig(raw: RawConfig, options: { baseDir: string }, problems: string[]): Config {
  const pools = new Map<string, PoolConfig>();
  for (const [name, rawPool] of Object.entries(raw.pools)) {
    const pool = buildPool(name, rawPool, options.baseDir, problems);
    if (pool !== undefined) pools.set(name, pool);
  }
  if (!(raw.write_pool in raw.pools)) {
    const known = Object.keys(raw.pools).join(', ');
    problems.push(`write_pool: unknown pool "${raw.write_pool}" (pools: ${known})`);
  }
  checkBucketUniqueness(pools, problems);
  return Object.freeze({
    configPath: undefined,
    mountDir: resolve(options.baseDir, raw.mount_dir),
    metadataDir: resolve(options.baseDir, raw.metadata_dir),
    writePool: raw.write_pool,
    pools,
    warnings: [],
    cache: Object.freeze({
      memoryLimitBytes: memoryLimitOf(raw.cache?.memory_limit, problems),
      flushIntervalMs: durationOr(raw.cache?.flush_interval, 5000, 'cache.flush_interval', problems),
      dirtyAgeMs: durationOr(raw.cache?.dirty_age, 5000, 'cache.dirty_age', problems),
      writebackDelayMs: durationOr(raw.cache?.writeback_delay, WRITEBACK_DELAY_MS_DEFAULT, 'cache.writeback_delay', problems),
    }),
    fuse: Object.freeze({
      allowOther: raw.fuse?.allow_other ?? 'auto',
      defaultPermissions: raw.fuse?.default_permissions ?? true,
      writebackCache: raw.fuse?.writeback_cache ?? true,
      entryTimeoutSec: durationOr(raw.fuse?.entry_timeout, 3_600_000, 'fuse.entry_timeout', problems) / 1000,
      attrTimeoutSec: durationOr(raw.fuse?.attr_timeout, 3_600_000, 'fuse.attr_timeout', problems) / 1000,
      options: Object.freeze([...(raw.fuse?.options ?? [])]),
    }),
    nbd: buildNbd(raw, options.baseDir, problems),
    dbus: Object.freeze({ bus: raw.dbus?.bus ?? 'system' }),
    tombstoneGraceMs: buildTombstoneGrace(raw, problems),
    mover: buildMover(raw, problems),
    housekeeping: buildHousekeeping(raw, problems),
    metrics: buildMetrics(raw.metrics ?? {}, problems),
  });
}

function buildMetrics(raw: RawMetrics, problems: string[]): MetricsConfig {
  const collectIntervalMs = durationOr(raw.collect_interval, 1000, 'metrics.collect_interval', problems);
  const flushIntervalMs = durationOr(raw.flush_interval, 1000, 'metrics.flush_interval', problems);
  if (collectIntervalMs <= 0) problems.push('metrics.collect_interval: must be more than 0');
  if (flushIntervalMs < collectIntervalMs) {
    problems.push(`metrics.flush_interval: ${flushIntervalMs} ms is shorter than metrics.collect_interval (${collectIntervalMs} ms)`);
  }
  const statDir = raw.stat_dir === false ? undefined : (raw.stat_dir ?? '_stat');
  if (statDir === '.' || statDir === '..') problems.push(`metrics.stat_dir: "${statDir}" is not a usable name`);
  let prometheus: MetricsConfig['prometheus'];
  if (raw.prometheus !== undefined) {
    const parsed = parseListen(raw.prometheus.listen);
    if (typeof parsed === 'string') problems.push(`metrics.prometheus.listen: ${parsed}`);
    else if (!isLoopback(parsed.host)) problems.push(`metrics.prometheus.listen: ${raw.prometheus.listen} is not a loopback address`);
    else prometheus = Object.freeze(parsed);
  }
  let otlp: MetricsConfig['otlp'];
  if (raw.otlp !== undefined) {
    if (!/^https?:\/\/[^/\s]+/.test(raw.otlp.endpoint)) {
      problems.push(`metrics.otlp.endpoint: "${raw.otlp.endpoint}" is not an http:// or https:// URL`);
    } else {
      otlp = Object.freeze({ endpoint: raw.otlp.endpoint, intervalMs: durationOr(raw.otlp.interval, 10_000, 'metrics.otlp.interval', problems) });
    }
  }
  const historyBytesMax = sizeOr(raw.history_max_size, 64 * 1024 ** 2, 'metrics.history_max_size', problems);
  if (historyBytesMax < 64 * 1024) problems.push('metrics.history_max_size: at least 64KiB');
  return Object.freeze({
    enabled: raw.enabled ?? true, collectIntervalMs, flushIntervalMs,
    retentionIntervals: raw.retention ?? 3600, highResolutionIntervals: raw.high_resolution_retention ?? 1,
    historyBytesMax, statDir, statDirListed: raw.stat_dir_listed ?? true, prometheus, otlp,
  });
}

/** Longest Unix socket path Linux accepts (sun_path less its NUL). */
const UNIX_SOCKET_PATH_BYTES_MAX = 107;

function buildNbd(raw: RawConfig, baseDir: string, problems: string[]): Config['nbd'] {
  const socketPath = raw.nbd?.socket === undefined
    ? resolve(baseDir, raw.metadata_dir, 'nbd.sock')
    : resolve(baseDir, raw.nbd.socket);
  if (Buffer.byteLength(socketPath) > UNIX_SOCKET_PATH_BYTES_MAX) {
    problems.push(`nbd.socket: ${socketPath} is longer than ${UNIX_SOCKET_PATH_BYTES_MAX} bytes, ` +
      'the limit of a Unix socket path');
  }
  const allowRemote = raw.nbd?.allow_remote ?? false;
  let listen: Config['nbd']['listen'];
  if (raw.nbd?.listen !== undefined) {
    const parsed = parseListen(raw.nbd.listen);
    if (typeof parsed === 'string') {
      problems.push(`nbd.listen: ${parsed}`);
    } else if (!allowRemote && !isLoopback(parsed.host)) {
      problems.push(`nbd.listen: ${raw.nbd.listen} is not a loopback address; no TLS here, ` +
        'so serving other hosts needs nbd.allow_remote: true');
    } else {
      listen = Object.freeze(parsed);
    }
  }
  return Object.freeze({ socketPath, listen, allowRemote });
}

/** Parses HOST:PORT ("127.0.0.1:10809", "[::1]:10809", "localhost:10809"), or says why not. */
function parseListen(text: string): { host: string; port: number } | string {
  const match = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(text.trim());
  if (match === null) return `"${text}" is not HOST:PORT (e.g. 127.0.0.1:10809 or [::1]:10809)`;
  const host = match[1] ?? match[2] ?? '';
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return `port ${port} is not between 1 and 65535`;
  if (match[1] !== undefined && isIP(host) !== 6) return `"${host}" is not an IPv6 address`;
  if (isIP(host) === 0 && !/^[A-Za-z0-9.-]{1,253}$/.test(host)) {
    return `"${host}" is not an address or host name`;
  }
  return { host, port };
}

/** True for addresses only this machine can reach. */
function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) !== 6) return false;
  return host === '::1' || /^(0{0,4}:){7}0{0,3}1$/.test(host) || /^::ffff:127\./i.test(host);
}

function buildPool(
  name: string,
  raw: RawPool,
  baseDir: string,
  problems: string[],
): PoolConfig | undefined {
  const key = `pools.${name}`;
  const topology = parseTopology(raw.topology);
  if (typeof topology === 'string') problems.push(`${key}.topology: ${topology}`);
  const blockBytes = parseSize(raw.block_size);
  if (blockBytes === undefined) {
    problems.push(`${key}.block_size: "${raw.block_size}" is not a size (e.g. 1MiB)`);
  } else if (!isPowerOfTwo(blockBytes) || blockBytes < BLOCK_BYTES_MIN || blockBytes > BLOCK_BYTES_MAX) {
    problems.push(
      `${key}.block_size: ${raw.block_size} must be a power of two between ` +
        `${formatSize(BLOCK_BYTES_MIN)} and ${formatSize(BLOCK_BYTES_MAX)}`,
    );
  }
  const buckets = Object.entries(raw.buckets).map(([bucketName, bucket]) => ({
    name: bucketName,
    pool: name,
    path: resolve(baseDir, bucket.path),
    priority: bucket.priority ?? 'normal',
  }));
  if (typeof topology !== 'string' && shardCount(topology) > buckets.length) {
    problems.push(
      `${key}.topology: ${raw.topology} needs ${shardCount(topology)} buckets, ` +
        `the pool has ${buckets.length}`,
    );
  }
  const compression = raw.compression === undefined
    ? COMPRESSION_NONE
    : compressionSpec(raw.compression.algorithm, raw.compression.level);
  if (typeof compression === 'string') problems.push(`${key}.compression: ${compression}`);
  const headBytes = sizeOr(raw.head_size, 0, `${key}.head_size`, problems);
  if (typeof topology === 'string' || blockBytes === undefined || typeof compression === 'string') {
    return undefined;
  }
  return Object.freeze({ name, topology, blockBytes, compression, headBytes, buckets: Object.freeze(buckets) });
}

function checkBucketUniqueness(pools: ReadonlyMap<string, PoolConfig>, problems: string[]): void {
  const byPath = new Map<string, string>();
  const byName = new Map<string, string>();
  for (const pool of pools.values()) {
    for (const bucket of pool.buckets) {
      const key = `pools.${pool.name}.buckets.${bucket.name}`;
      const pathOwner = byPath.get(bucket.path);
      if (pathOwner !== undefined) problems.push(`${key}.path: ${bucket.path} is also ${pathOwner}`);
      byPath.set(bucket.path, key);
      const nameOwner = byName.get(bucket.name);
      if (nameOwner !== undefined) problems.push(`${key}: bucket name also used by ${nameOwner}`);
      byName.set(bucket.name, key);
    }
  }
}

/**
 * Bucket directories that are missing or unusable are errors when the pool cannot do without
 * them; within the pool's redundancy (a dead drive of a mirror or erasure pool) they are
 * warnings, and the filesystem mounts with those buckets failed, reading degraded.
 */
function checkPaths(config: Config, problems: string[]): void {
  for (const pool of config.pools.values()) {
    const unusable = pool.buckets.flatMap((bucket) => {
      const problem = directoryProblem(bucket.path);
      return problem === undefined ? [] : [`pools.${pool.name}.buckets.${bucket.name}.path: ${bucket.path} ${problem}`];
    });
    if (unusable.length > toleratedLosses(pool.topology)) problems.push(...unusable);
    else (config.warnings as string[]).push(...unusable.map((line) => `${line} (pool runs degraded)`));
  }
}

/** Shards of a block that may be lost with the data still readable. */
export function toleratedLosses(topology: TopologySpec): number {
  if (topology.kind === 'mirror') return topology.copies - 1;
  if (topology.kind === 'erasure') return topology.parity;
  return 0;
}

/** Why `path` cannot serve as a bucket, or undefined when it can. */
export function directoryProblem(path: string): string | undefined {
  try {
    if (!statSync(path).isDirectory()) return 'is not a directory';
    accessSync(path, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ENOENT') return 'does not exist';
    if (code === 'EACCES' || code === 'EPERM') return 'is not writable';
    return `cannot be used: ${(error as Error).message}`;
  }
}

function sizeOr(value: string | number | undefined, fallback: number, key: string, problems: string[]): number {
  if (value === undefined) return fallback;
  const bytes = parseSize(value);
  if (bytes === undefined) problems.push(`${key}: "${value}" is not a size (e.g. 512MiB)`);
  return bytes ?? fallback;
}

/**
 * Default share of the machine's memory for cached blocks. Like the kernel's dirty limits and
 * ZFS's ARC, the cache scales with RAM: a fixed 512 MiB held half the blocks of a 1 GiB file
 * written at random and stored the others block by block (read, merge, write) while the
 * kernel's page cache, the baseline, holds it all.
 */
const CACHE_MEMORY_SHARE_DEFAULT = '12.5%';
/**
 * cache.writeback_delay: how long a block stored through the page cache (a volume's) waits
 * before its write-back is started, unless a sync comes first. Starting it with each store kept
 * a FLUSH short but put the whole write-back inside every burst of writes: the NBD bench's
 * 1 GiB copy-in (0.7 s) took 0.93-0.99 s of daemon CPU per GiB that way and 0.81-0.83 without,
 * at 1387-1465 against 1573-1623 MB/s (2 runs each, alternated). After a pause, a FLUSH finds
 * the blocks written back; amid a stream of writes it waits for about this long's worth. The
 * kernel's own write-back waits 30 s (dirty_expire_centisecs).
 */
const WRITEBACK_DELAY_MS_DEFAULT = 1000;
/** The default share never leaves less than this (small machines, containers). */
const CACHE_MEMORY_DEFAULT_MIN_BYTES = 256 * 1024 ** 2;
/** An explicit share above this would leave the system too little to run. */
const CACHE_MEMORY_SHARE_MAX_PERCENT = 90;

/** cache.memory_limit: a size ("2GiB") or a share of the machine's memory ("25%"). */
function memoryLimitOf(value: string | number | undefined, problems: string[]): number {
  const key = 'cache.memory_limit';
  const text = value ?? CACHE_MEMORY_SHARE_DEFAULT;
  const percent = parsePercent(text);
  if (percent === undefined) {
    const bytes = parseSize(text);
    if (bytes === undefined) problems.push(`${key}: "${value}" is neither a size (2GiB) nor a share of memory (25%)`);
    return bytes ?? 0;
  }
  if (percent <= 0 || percent > CACHE_MEMORY_SHARE_MAX_PERCENT) {
    problems.push(`${key}: "${value}" must be a share above 0% and at most ${CACHE_MEMORY_SHARE_MAX_PERCENT}% of memory`);
    return 0;
  }
  const bytes = Math.floor((totalmem() * percent) / 100);
  return value === undefined ? Math.max(CACHE_MEMORY_DEFAULT_MIN_BYTES, bytes) : bytes;
}

function durationOr(value: string | number | undefined, fallback: number, key: string, problems: string[]): number {
  if (value === undefined) return fallback;
  const milliseconds = parseDuration(value);
  if (milliseconds === undefined) problems.push(`${key}: "${value}" is not a duration (e.g. 5s)`);
  return milliseconds ?? fallback;
}

function isPowerOfTwo(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0 && 2 ** Math.round(Math.log2(value)) === value;
}

/** Every bucket directory of the embedded default config, resolved against `baseDir`. */
export function defaultConfig(baseDir: string, options: { checkPaths: boolean }): Config {
  return parseConfig(DEFAULT_CONFIG_YAML, {
    source: '(embedded default)',
    baseDir,
    checkPaths: options.checkPaths,
  });
}
