/**
 * Placement: shards go to distinct buckets by priority, then free space; full, failed,
 * ignored and evacuated buckets get none; too few buckets double up (and say so).
 */
import { describe, expect, it } from 'vitest';
import { FsError } from '../errno.js';
import { Bucket } from './bucket.js';
import { placeShards } from './placement.js';

function bucket(name: string, freeBytes: number, priority: Bucket['priority'] = 'normal'): Bucket {
  const created = new Bucket({ name, pool: 'p', path: `/nonexistent/${name}`, priority });
  Object.defineProperty(created, 'freeBytes', { get: () => freeBytes });
  return created;
}

describe('placeShards', () => {
  it('uses distinct buckets, prioritized first, then the most free', () => {
    const buckets = [bucket('a', 100e9), bucket('b', 500e9), bucket('c', 10e9, 'prioritize'), bucket('d', 900e9, 'deprioritize')];
    const placement = placeShards(buckets, 3, { shardBytes: 1 << 20 });
    expect(placement.buckets.map((chosen) => chosen.name)).toEqual(['c', 'b', 'a']);
    expect(placement.isDoubledUp).toBe(false);
  });

  it('skips full, failed, ignored, evacuated and excluded buckets', () => {
    const failed = bucket('failed', 900e9);
    failed.markFailed('test');
    const buckets = [bucket('full', 1000), failed, bucket('ignored', 900e9, 'ignore'),
      bucket('leaving', 900e9, 'evacuate'), bucket('excluded', 900e9), bucket('ok', 1e9)];
    const placement = placeShards(buckets, 1, { shardBytes: 1 << 20, excluded: new Set(['excluded']) });
    expect(placement.buckets.map((chosen) => chosen.name)).toEqual(['ok']);
  });

  it('doubles up when the pool has fewer usable buckets than shards', () => {
    const placement = placeShards([bucket('a', 1e9), bucket('b', 2e9)], 3, { shardBytes: 1 << 20 });
    expect(placement.buckets.map((chosen) => chosen.name)).toEqual(['b', 'a', 'b']);
    expect(placement.isDoubledUp).toBe(true);
  });

  it('reports ENOSPC when every bucket is full and EIO when none is usable', () => {
    const errnoOf = (body: () => unknown) => {
      try {
        body();
      } catch (error) {
        return error instanceof FsError ? error.code : String(error);
      }
      return 'ok';
    };
    expect(errnoOf(() => placeShards([bucket('a', 10)], 1, { shardBytes: 1 << 20 }))).toBe('ENOSPC');
    expect(errnoOf(() => placeShards([bucket('a', 1e9, 'ignore')], 1, { shardBytes: 1 << 20 }))).toBe('EIO');
  });
});
