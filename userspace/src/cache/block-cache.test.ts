import { describe, expect, it } from 'vitest';
import { BlockCache } from './block-cache.js';

const BLOCK_BYTES = 1024;
const PADDING_BYTES = 64;
const BUFFER_BYTES = BLOCK_BYTES + PADDING_BYTES;

describe('BlockCache buffers', () => {
  it('reuses the buffer of a removed entry while entries and idle buffers fit the memory limit', () => {
    const cache = new BlockCache({ paddingBytes: PADDING_BYTES, memoryLimitBytes: 2 * BUFFER_BYTES });
    const first = cache.insert(1, 0, BLOCK_BYTES, 0);
    const buffer = first.buffer;
    cache.remove(first);
    expect(cache.bytes).toBe(0);
    expect(cache.insert(1, 1, BLOCK_BYTES, 0).buffer).toBe(buffer);
  });

  it('lets a buffer go when keeping it would pass the memory limit', () => {
    const cache = new BlockCache({ paddingBytes: PADDING_BYTES, memoryLimitBytes: 2 * BUFFER_BYTES });
    const entries = [0, 1, 2].map((blockIndex) => cache.insert(1, blockIndex, BLOCK_BYTES, 0));
    const buffers = entries.map((entry) => entry.buffer);
    // Three entries over a limit of two (the file layer relieves that by storing): the first
    // removed buffer would make entries plus idle buffers three again, so it goes.
    cache.remove(entries[0]!);
    cache.remove(entries[1]!);
    const next = [cache.insert(2, 0, BLOCK_BYTES, 0), cache.insert(2, 1, BLOCK_BYTES, 0)];
    expect(next[0]!.buffer).toBe(buffers[1]);
    expect(buffers).not.toContain(next[1]!.buffer);
  });
});
