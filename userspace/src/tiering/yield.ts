/**
 * Yielding to foreground writes: background copies (the mover) wait while users write to the
 * same pool faster than a threshold, so archive moves never compete with them for the drives.
 *
 * The load is read, not measured here: the daemon passes a function giving a pool's recent
 * write rate (from the metrics engine); without one (metrics disabled) nothing ever yields.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { assert } from '../assert.js';

/** Bytes per second written to `pool` by recent foreground I/O (an average over a few seconds). */
export type ForegroundLoad = (pool: string) => number;

/** How often a yielding copy looks at the load again. */
export const YIELD_POLL_MS = 250;

/** When a copy to/from `pool` should wait: a load function, and the rate above which it waits. */
export interface YieldPolicy {
  readonly pool: string;
  readonly load: ForegroundLoad | undefined;
  /** 0: never yield. */
  readonly thresholdBytesPerSecond: number;
}

/** True when `policy` says wait now. */
export function isBusy(policy: YieldPolicy): boolean {
  assert(policy.thresholdBytesPerSecond >= 0);
  if (policy.load === undefined || policy.thresholdBytesPerSecond === 0) return false;
  return policy.load(policy.pool) > policy.thresholdBytesPerSecond;
}

/**
 * Waits while the pool is busy (or until `signal` aborts); resolves with the milliseconds
 * waited, 0 when it was not busy. Never throws: a cancelled copy finds out from its signal.
 */
export async function yieldWhileBusy(policy: YieldPolicy, signal: AbortSignal, pollMs = YIELD_POLL_MS): Promise<number> {
  assert(pollMs > 0);
  if (signal.aborted || !isBusy(policy)) return 0;
  const startedMs = Date.now();
  do {
    // Rejects (AbortError) when the copy is cancelled: the loop then ends at once.
    await sleep(pollMs, undefined, { signal }).catch(() => undefined);
  } while (!signal.aborted && isBusy(policy));
  return Date.now() - startedMs;
}
