/**
 * FdCache: the descriptor bound, and which descriptor eviction drops. Method: real files in a
 * temporary folder; which paths the cache still holds is read back with peek (closing is
 * asynchronous and descriptor numbers are reused, so the descriptors themselves say little).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FdCache } from './fd-cache.js';

let folder: string;
const path = (name: string) => join(folder, name);

/** Opens `name` through the cache and releases it at once; returns its descriptor. */
async function touch(cache: FdCache, name: string): Promise<number> {
  const held = await cache.acquire(path(name));
  cache.release(held);
  return held.fd;
}

/** The names among a..d whose descriptor the cache holds (peek marks them used). */
function held(cache: FdCache): string[] {
  return ['a', 'b', 'c', 'd'].filter((name) => cache.peek(path(name)) !== undefined);
}

beforeEach(() => {
  folder = mkdtempSync(join(tmpdir(), 'shmr-fd-cache-'));
  for (const name of ['a', 'b', 'c', 'd']) writeFileSync(path(name), name);
});

afterEach(() => {
  rmSync(folder, { recursive: true, force: true });
});

describe('FdCache', () => {
  it('keeps at most countMax descriptors, dropping the least recently used', async () => {
    const cache = new FdCache(2);
    await touch(cache, 'a');
    const b = await touch(cache, 'b');
    await touch(cache, 'c');
    expect(cache.openCount).toBe(2);
    expect(held(cache)).toEqual(['b', 'c']);
    expect(cache.peek(path('b'))).toBe(b);
    cache.clear();
    expect(cache.openCount).toBe(0);
  });

  it('gives a descriptor used through peek a second chance over one that was not', async () => {
    const cache = new FdCache(2);
    const a = await touch(cache, 'a');
    await touch(cache, 'b');
    // a is the oldest, but a warm read used it since.
    expect(cache.peek(path('a'))).toBe(a);
    await touch(cache, 'c');
    expect(cache.openCount).toBe(2);
    expect(cache.peek(path('b'))).toBeUndefined();
    expect(cache.peek(path('a'))).toBe(a);
    cache.clear();
  });

  it('drops a peeked descriptor too once every one was peeked, and never one in use', async () => {
    const cache = new FdCache(2);
    const inUse = await cache.acquire(path('a'));
    await touch(cache, 'b');
    expect(held(cache)).toEqual(['a', 'b']);
    await touch(cache, 'c');
    await touch(cache, 'd');
    expect(cache.openCount).toBe(2);
    expect(cache.peek(path('a'))).toBe(inUse.fd);
    expect(held(cache)).toEqual(['a', 'd']);
    cache.release(inUse);
    cache.clear();
    expect(cache.openCount).toBe(0);
  });
});
