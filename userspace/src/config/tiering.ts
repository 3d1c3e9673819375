/**
 * The tiering sections of the config: `tombstones` (grace period), `mover` (what moves where,
 * when) and `housekeeping` (the schedule `shmr crond` keeps). Validated here so config.ts only
 * wires them in; every message names the key and what is wrong.
 */
import { parseTopology, shardCount, type TopologySpec } from './topology.js';
import { parseDuration, parsePercent, parseSize } from './units.js';

/** A watermark of the mover's source pool: a fraction of its capacity, or live bytes. */
export type Watermark = { readonly kind: 'fraction'; readonly value: number } | { readonly kind: 'bytes'; readonly value: number };

/** The background mover's policy. */
export interface MoverConfig {
  readonly source: string;
  readonly target: string;
  readonly topology: TopologySpec;
  readonly blockBytes: number;
  /** Files untouched (mtime and ctime) for this long are candidates. */
  readonly idleMs: number;
  /** A run starts moving when the source is above `high` and stops below `low`. */
  readonly highWatermark: Watermark;
  readonly lowWatermark: Watermark;
  /** Bytes per second a run may copy; 0: unlimited. */
  readonly bytesPerSecondMax: number;
  /**
   * A run pauses between blocks while foreground writes to the source pool exceed this many
   * bytes per second (needs metrics); 0: never pauses.
   */
  readonly yieldAboveBytesPerSecond: number;
}

/** How often `shmr crond` asks the daemon for each housekeeping job; undefined: never. */
export interface HousekeepingConfig {
  readonly moverIntervalMs: number | undefined;
  readonly purgeIntervalMs: number | undefined;
  readonly scrubIntervalMs: number | undefined;
}

export interface RawMover {
  source?: string; target: string; topology?: string; block_size?: string | number; idle?: string | number;
  high_watermark?: string | number; low_watermark?: string | number; rate?: string | number;
  yield_above?: string | number;
}

export interface RawTiering {
  write_pool: string;
  pools: Record<string, { topology: string; block_size: string | number; buckets: Record<string, unknown> }>;
  tombstones?: { grace?: string | number };
  mover?: RawMover;
  housekeeping?: { mover?: string | number; purge?: string | number; scrub?: string | number };
}

/** Default grace period of tombstones. */
export const TOMBSTONE_GRACE_MS_DEFAULT = 10 * 60_000;

function parseWatermark(text: string | number, key: string, problems: string[]): Watermark | undefined {
  const percent = parsePercent(text);
  if (percent !== undefined) {
    const value = percent / 100;
    if (value <= 1) return { kind: 'fraction', value };
    problems.push(`${key}: ${text} is above 100%`);
    return undefined;
  }
  const bytes = parseSize(text);
  if (bytes !== undefined) return { kind: 'bytes', value: bytes };
  problems.push(`${key}: "${text}" is neither a percentage (80%) nor a size (100GiB)`);
  return undefined;
}

function durationAt(value: string | number | undefined, key: string, problems: string[]): number | undefined {
  if (value === undefined) return undefined;
  const milliseconds = parseDuration(value);
  if (milliseconds === undefined) problems.push(`${key}: "${value}" is not a duration (e.g. 10m)`);
  return milliseconds;
}

/** The tombstone grace period in milliseconds. */
export function buildTombstoneGrace(raw: RawTiering, problems: string[]): number {
  return durationAt(raw.tombstones?.grace, 'tombstones.grace', problems) ?? TOMBSTONE_GRACE_MS_DEFAULT;
}

export function buildHousekeeping(raw: RawTiering, problems: string[]): HousekeepingConfig {
  return Object.freeze({
    moverIntervalMs: durationAt(raw.housekeeping?.mover, 'housekeeping.mover', problems),
    purgeIntervalMs: durationAt(raw.housekeeping?.purge, 'housekeeping.purge', problems),
    scrubIntervalMs: durationAt(raw.housekeeping?.scrub, 'housekeeping.scrub', problems),
  });
}

/** The mover policy, or undefined when the config has none (or it is invalid: see problems). */
export function buildMover(raw: RawTiering, problems: string[]): MoverConfig | undefined {
  const mover = raw.mover;
  if (mover === undefined) return undefined;
  const source = mover.source ?? raw.write_pool;
  const targetPool = raw.pools[mover.target];
  const known = Object.keys(raw.pools).join(', ');
  if (!(source in raw.pools)) problems.push(`mover.source: unknown pool "${source}" (pools: ${known})`);
  if (targetPool === undefined) {
    problems.push(`mover.target: unknown pool "${mover.target}" (pools: ${known})`);
    return undefined;
  }
  const topologyText = mover.topology ?? targetPool.topology;
  const topology = parseTopology(topologyText);
  if (typeof topology === 'string') problems.push(`mover.topology: ${topology}`);
  else if (shardCount(topology) > Object.keys(targetPool.buckets).length) {
    problems.push(`mover.topology: ${topologyText} needs ${shardCount(topology)} buckets, pool ${mover.target} ` +
      `has ${Object.keys(targetPool.buckets).length}`);
  }
  const blockBytes = parseSize(mover.block_size ?? targetPool.block_size);
  if (blockBytes === undefined) problems.push(`mover.block_size: "${String(mover.block_size)}" is not a size`);
  const high = parseWatermark(mover.high_watermark ?? '80%', 'mover.high_watermark', problems);
  const low = parseWatermark(mover.low_watermark ?? '60%', 'mover.low_watermark', problems);
  if (high !== undefined && low !== undefined && high.kind !== low.kind) {
    problems.push('mover.low_watermark: use the same kind (percentage or size) as mover.high_watermark');
  } else if (high !== undefined && low !== undefined && low.value > high.value) {
    problems.push('mover.low_watermark: must not be above mover.high_watermark');
  }
  const rate = parseSize(mover.rate ?? 0);
  if (rate === undefined) problems.push(`mover.rate: "${String(mover.rate)}" is not a size per second`);
  const yieldAbove = parseSize(mover.yield_above ?? 0);
  if (yieldAbove === undefined) {
    problems.push(`mover.yield_above: "${String(mover.yield_above)}" is not a size per second (e.g. 50MiB)`);
  }
  const idleMs = durationAt(mover.idle, 'mover.idle', problems) ?? 3_600_000;
  if (typeof topology === 'string' || blockBytes === undefined || high === undefined || low === undefined) return undefined;
  return Object.freeze({
    source, target: mover.target, topology, blockBytes, idleMs, highWatermark: high, lowWatermark: low,
    bytesPerSecondMax: rate ?? 0, yieldAboveBytesPerSecond: yieldAbove ?? 0,
  });
}
