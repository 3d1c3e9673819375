import { describe, expect, it } from 'vitest';
import { addRange, coversRange, forEachGap } from './byte-ranges.js';

/** The ranges a byte map describes, as addRange must keep them. */
function rangesOf(bytes: readonly boolean[]): number[] {
  const ranges: number[] = [];
  for (let index = 0; index < bytes.length; index++) {
    if (bytes[index] !== true) continue;
    if (ranges.length > 0 && ranges[ranges.length - 1] === index) ranges[ranges.length - 1] = index + 1;
    else ranges.push(index, index + 1);
  }
  return ranges;
}

function gapsOf(ranges: readonly number[], end: number): number[] {
  const gaps: number[] = [];
  forEachGap(ranges, end, (start, stop) => gaps.push(start, stop));
  return gaps;
}

describe('byte ranges', () => {
  it('appends, extends and merges touching ranges', () => {
    const ranges: number[] = [];
    addRange(ranges, 0, 10);
    addRange(ranges, 10, 20);
    expect(ranges).toEqual([0, 20]);
    addRange(ranges, 30, 40);
    addRange(ranges, 50, 60);
    expect(ranges).toEqual([0, 20, 30, 40, 50, 60]);
    addRange(ranges, 22, 25);
    expect(ranges).toEqual([0, 20, 22, 25, 30, 40, 50, 60]);
    addRange(ranges, 20, 50);
    expect(ranges).toEqual([0, 60]);
    addRange(ranges, 5, 5);
    expect(ranges).toEqual([0, 60]);
  });

  it('matches a byte map over many random insertions', () => {
    let seed = 7;
    const random = (limit: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % limit;
    };
    for (let round = 0; round < 200; round++) {
      const size = 1 + random(200);
      const bytes: boolean[] = Array.from({ length: size }, () => false);
      const ranges: number[] = [];
      for (let step = 0; step < 30; step++) {
        const start = random(size);
        const end = start + random(size - start + 1);
        addRange(ranges, start, end);
        for (let index = start; index < end; index++) bytes[index] = true;
        expect(ranges).toEqual(rangesOf(bytes));
        const probe = random(size);
        const probeEnd = probe + 1 + random(size - probe);
        expect(coversRange(ranges, probe, probeEnd)).toBe(bytes.slice(probe, probeEnd).every(Boolean));
        const gaps = gapsOf(ranges, size);
        expect(gaps).toEqual(rangesOf(bytes.map((isSet) => !isSet)));
      }
    }
  });

  it('lists gaps up to a bound inside or past the ranges', () => {
    expect(gapsOf([10, 20, 30, 40], 35)).toEqual([0, 10, 20, 30]);
    expect(gapsOf([10, 20], 50)).toEqual([0, 10, 20, 50]);
    expect(gapsOf([0, 20], 20)).toEqual([]);
    expect(gapsOf([], 8)).toEqual([0, 8]);
  });
});
