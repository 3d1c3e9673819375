/**
 * The mover's yield decision: wait while the pool's foreground write rate is above the
 * threshold, go on when it drops, never wait without a load reading or with the threshold off,
 * and stop waiting at once when the copy is cancelled.
 */
import { describe, expect, it } from 'vitest';
import { isBusy, yieldWhileBusy, type YieldPolicy } from './yield.js';

const MiB = 1024 * 1024;

/** A load reading that goes through `rates` (bytes per second), one per call, then stays on the last. */
function scripted(rates: number[]): { load: (pool: string) => number; pools: string[] } {
  const pools: string[] = [];
  let index = 0;
  const load = (pool: string) => {
    pools.push(pool);
    const rate = rates[Math.min(index, rates.length - 1)] as number;
    index += 1;
    return rate;
  };
  return { load, pools };
}

describe('yielding to foreground writes', () => {
  it('is busy only above a threshold that is on, with a load to read', () => {
    const policy = (load: YieldPolicy['load'], thresholdBytesPerSecond: number): YieldPolicy =>
      ({ pool: 'fast', load, thresholdBytesPerSecond });
    expect(isBusy(policy(() => 80 * MiB, 50 * MiB))).toBe(true);
    expect(isBusy(policy(() => 50 * MiB, 50 * MiB))).toBe(false);
    expect(isBusy(policy(() => 10 * MiB, 50 * MiB))).toBe(false);
    expect(isBusy(policy(() => 80 * MiB, 0))).toBe(false);
    expect(isBusy(policy(undefined, 50 * MiB))).toBe(false);
  });

  it('waits while the source pool is busy and goes on when the load drops', async () => {
    const { load, pools } = scripted([90 * MiB, 70 * MiB, 60 * MiB, 5 * MiB]);
    const waitedMs = await yieldWhileBusy({ pool: 'fast', load, thresholdBytesPerSecond: 50 * MiB }, new AbortController().signal, 20);
    // Three busy readings, three polls of 20 ms; the fourth reading lets it go.
    expect(pools).toEqual(['fast', 'fast', 'fast', 'fast']);
    expect(waitedMs).toBeGreaterThanOrEqual(55);
    expect(waitedMs).toBeLessThan(1000);
  });

  it('does not wait when idle, and stops waiting when cancelled', async () => {
    const idle = scripted([1 * MiB]);
    expect(await yieldWhileBusy({ pool: 'fast', load: idle.load, thresholdBytesPerSecond: 50 * MiB }, new AbortController().signal))
      .toBe(0);
    const controller = new AbortController();
    const busy = scripted([500 * MiB]);
    setTimeout(() => controller.abort(), 100);
    const startedMs = Date.now();
    await yieldWhileBusy({ pool: 'fast', load: busy.load, thresholdBytesPerSecond: 50 * MiB }, controller.signal, 60_000);
    expect(Date.now() - startedMs).toBeLessThan(5000);
    expect(busy.pools.length).toBe(1);
  });
});
