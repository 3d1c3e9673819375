/**
 * ReedSolomon: round trips, the pinned encoding, async equivalence and argument checks.
 *
 * Method:
 * - A pure-JS GF(2^8) written here (shift-and-add multiplication, inverse by search, so it
 *   shares nothing with the addon's log tables) builds the Cauchy matrix and computes the
 *   expected parity; the addon must match it byte for byte, so a change of matrix, field
 *   polynomial or shard order fails here, not on disks already written.
 * - Shards are erased in random patterns (seeded, so a failure reproduces) and for small
 *   geometries in every possible pattern, then reconstructed in place and compared with the
 *   originals. Erased shards are first overwritten with garbage so stale bytes cannot pass.
 * - Shard lengths cover the addon's scalar path (< 64 bytes) and ISA-L's SIMD path with tails.
 */
import { describe, expect, it } from 'vitest';
import { ReedSolomon } from './index.js';

/** GF(2^8) multiplication modulo x^8 + x^4 + x^3 + x^2 + 1 by shift and add. */
function gfMultiply(a: number, b: number): number {
  let product = 0;
  for (let left = a, right = b; right !== 0; right >>>= 1) {
    if (right & 1) product ^= left;
    left <<= 1;
    if (left & 0x100) left ^= 0x11d;
  }
  return product;
}

const GF_INVERSE = (() => {
  const inverse = new Uint8Array(256);
  for (let a = 1; a < 256; a++) {
    for (let b = 1; b < 256; b++) if (gfMultiply(a, b) === 1) inverse[a] = b;
  }
  return inverse;
})();

/** Parity row r of the (k + p) x k Cauchy matrix: 1 / ((k + r) xor j). */
function cauchyRow(dataCount: number, parityIndex: number): number[] {
  const row = dataCount + parityIndex;
  return Array.from({ length: dataCount }, (_, column) => GF_INVERSE[row ^ column]!);
}

function referenceParity(data: readonly Uint8Array[], parityCount: number): Uint8Array[] {
  const shardBytes = data[0]!.length;
  return Array.from({ length: parityCount }, (_, parityIndex) => {
    const coefficients = cauchyRow(data.length, parityIndex);
    const parity = new Uint8Array(shardBytes);
    data.forEach((shard, column) => {
      const coefficient = coefficients[column]!;
      for (let offset = 0; offset < shardBytes; offset++) {
        parity[offset]! ^= gfMultiply(coefficient, shard[offset]!);
      }
    });
    return parity;
  });
}

/** xorshift32: reproducible randomness for data and patterns. */
function makeRandom(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}

function randomShard(random: () => number, shardBytes: number): Buffer {
  const shard = Buffer.allocUnsafeSlow(shardBytes);
  for (let offset = 0; offset < shardBytes; offset += 4) {
    const value = random();
    for (let byte = 0; byte < 4 && offset + byte < shardBytes; byte++) {
      shard[offset + byte] = (value >>> (8 * byte)) & 0xff;
    }
  }
  return shard;
}

interface Stripe {
  readonly codec: ReedSolomon;
  /** The correct shards: data then parity. */
  readonly original: readonly Buffer[];
}

function makeStripe(
  dataCount: number,
  parityCount: number,
  shardBytes: number,
  seed: number,
): Stripe {
  const codec = new ReedSolomon(dataCount, parityCount);
  const random = makeRandom(seed);
  const data = Array.from({ length: dataCount }, () => randomShard(random, shardBytes));
  const parity = Array.from({ length: parityCount }, () => Buffer.alloc(shardBytes, 0x5a));
  codec.encode(data, parity);
  return { codec, original: [...data, ...parity] };
}

/** Copies of the shards with the lost ones overwritten by garbage. */
function damage(original: readonly Buffer[], present: readonly boolean[]): Buffer[] {
  return original.map((shard, index) => {
    const copy = Buffer.from(shard);
    if (!present[index]) copy.fill(0xa5 ^ index);
    return copy;
  });
}

function patternText(present: readonly boolean[]): string {
  return present.map((isPresent) => (isPresent ? '.' : 'x')).join('');
}

function randomPattern(random: () => number, shardCount: number, lostCount: number): boolean[] {
  const present = new Array<boolean>(shardCount).fill(true);
  for (let lost = 0; lost < lostCount; ) {
    const index = random() % shardCount;
    if (present[index]) {
      present[index] = false;
      lost++;
    }
  }
  return present;
}

/** Every pattern of at most maxLost lost shards out of shardCount. */
function allPatterns(shardCount: number, maxLost: number): boolean[][] {
  const patterns: boolean[][] = [];
  for (let mask = 0; mask < 2 ** shardCount; mask++) {
    let lostCount = 0;
    for (let bits = mask; bits !== 0; bits &= bits - 1) lostCount++;
    if (lostCount > maxLost) continue;
    patterns.push(Array.from({ length: shardCount }, (_, index) => ((mask >>> index) & 1) === 0));
  }
  return patterns;
}

function expectShardsEqual(
  actual: readonly Uint8Array[],
  expected: readonly Uint8Array[],
  label: string,
): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((shard, index) => {
    if (!Buffer.from(shard.buffer, shard.byteOffset, shard.byteLength).equals(expected[index]!)) {
      throw new Error(`${label}: shard ${index} differs`);
    }
  });
}

const GEOMETRIES: ReadonlyArray<readonly [number, number]> = [
  [1, 1], [2, 1], [4, 2], [8, 3], [10, 4], [16, 16], [31, 1],
];
const SHARD_LENGTHS = [1, 7, 4096, 65537, 1024 * 1024];

describe('ReedSolomon encoding is pinned to the Cauchy reference', () => {
  it('matches a golden vector (4+2, data bytes 1..4)', () => {
    const codec = new ReedSolomon(4, 2);
    const data = [1, 2, 3, 4].map((value) => Uint8Array.of(value));
    const parity = [new Uint8Array(1), new Uint8Array(1)];
    codec.encode(data, parity);
    expect([parity[0]![0], parity[1]![0]]).toEqual(GOLDEN_4_2);
    expect(referenceParity(data, 2).map((shard) => shard[0])).toEqual(GOLDEN_4_2);
  });

  for (const dataCount of [1, 2, 3, 5, 8, 16, 31]) {
    it(`single parity (${dataCount},1) equals the reference`, () => {
      for (const shardBytes of [1, 7, 63, 64, 65, 1000]) {
        const { original } = makeStripe(dataCount, 1, shardBytes, dataCount * 1000 + shardBytes);
        const expected = referenceParity(original.slice(0, dataCount), 1);
        expectShardsEqual(original.slice(dataCount), expected, `(${dataCount},1) ${shardBytes}`);
      }
    });
  }

  for (const [dataCount, parityCount] of GEOMETRIES) {
    it(`(${dataCount},${parityCount}) parity equals the reference, scalar and SIMD`, () => {
      for (const shardBytes of [1, 7, 63, 64, 127, 4096 + 5]) {
        const { original } = makeStripe(dataCount, parityCount, shardBytes, shardBytes + 17);
        const expected = referenceParity(original.slice(0, dataCount), parityCount);
        expectShardsEqual(original.slice(dataCount), expected, `${dataCount}+${parityCount}`);
      }
    });
  }
});

describe('ReedSolomon round trips', () => {
  for (const [dataCount, parityCount] of GEOMETRIES) {
    for (const shardBytes of SHARD_LENGTHS) {
      const shardCount = dataCount + parityCount;
      const patternCount = shardBytes >= 65536 ? 6 : 40;
      const name = `(${dataCount},${parityCount}) ${shardBytes}-byte shards`;
      it(`${name}, ${patternCount}+ patterns`, () => {
        const seed = dataCount * 7919 + parityCount * 104729 + shardBytes;
        const { codec, original } = makeStripe(dataCount, parityCount, shardBytes, seed);
        const random = makeRandom(seed ^ 0x9e3779b9);
        const patterns: boolean[][] = [
          // Worst cases first: the first p shards (all data when p <= k), and all parity.
          Array.from({ length: shardCount }, (_, index) => index >= parityCount),
          Array.from({ length: shardCount }, (_, index) => index < dataCount),
        ];
        for (let trial = 0; trial < patternCount; trial++) {
          patterns.push(randomPattern(random, shardCount, 1 + (random() % parityCount)));
        }
        for (const present of patterns) {
          const shards = damage(original, present);
          codec.reconstruct(shards, present);
          expectShardsEqual(shards, original, `lost ${patternText(present)}`);
        }
      });
    }
  }

  for (const [dataCount, parityCount, shardBytes] of [
    [4, 2, 7], [4, 2, 100], [8, 3, 5], [8, 3, 200], [10, 4, 9], [10, 4, 67], [6, 6, 64],
  ] as const) {
    it(`(${dataCount},${parityCount}) ${shardBytes}-byte shards: every erasure pattern`, () => {
      const { codec, original } = makeStripe(dataCount, parityCount, shardBytes, shardBytes);
      // More patterns than the addon caches, so eviction is exercised too.
      for (const present of allPatterns(dataCount + parityCount, parityCount)) {
        const shards = damage(original, present);
        codec.reconstruct(shards, present);
        expectShardsEqual(shards, original, `lost ${patternText(present)}`);
      }
    });
  }

  it('works on unaligned views into one shared buffer', () => {
    const { codec, original } = makeStripe(5, 3, 1001, 42);
    const backing = Buffer.alloc(8 * 1001 + 8);
    const views = original.map((shard, index) => {
      const view = backing.subarray(3 + index * 1001, 3 + (index + 1) * 1001);
      shard.copy(view);
      return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    });
    const present = [false, true, true, false, true, true, false, true];
    for (const [index, view] of views.entries()) if (!present[index]) view.fill(0);
    codec.reconstruct(views, present);
    expectShardsEqual(views, original, 'unaligned');
    const parity = views.slice(5);
    for (const view of parity) view.fill(0);
    codec.encode(views.slice(0, 5), parity);
    expectShardsEqual(views, original, 'unaligned encode');
  });

  it('leaves present shards untouched and does nothing when none is lost', () => {
    const { codec, original } = makeStripe(4, 2, 300, 9);
    const shards = damage(original, new Array(6).fill(true));
    codec.reconstruct(shards, new Array(6).fill(true));
    expectShardsEqual(shards, original, 'nothing lost');
    const present = [true, false, true, true, true, true];
    const damaged = damage(original, present);
    const keptBefore = damaged.filter((_, index) => present[index]).map((s) => Buffer.from(s));
    codec.reconstruct(damaged, present);
    const keptAfter = damaged.filter((_, index) => present[index]);
    expectShardsEqual(keptAfter, keptBefore, 'present kept');
  });

  it('supports parityCount 0 (no parity, nothing can be lost)', () => {
    const codec = new ReedSolomon(3, 0);
    const data = [Buffer.from('abc'), Buffer.from('def'), Buffer.from('ghi')];
    codec.encode(data, []);
    codec.reconstruct(data, [true, true, true]);
    expect(Buffer.concat(data).toString()).toBe('abcdefghi');
    expect(() => codec.reconstruct(data, [true, false, true])).toThrow(RangeError);
  });

  it('supports the largest geometry (32 shards)', () => {
    for (const [dataCount, parityCount] of [[32, 0], [1, 31], [20, 12]] as const) {
      const { codec, original } = makeStripe(dataCount, parityCount, 100, dataCount);
      const random = makeRandom(dataCount + 1);
      for (let trial = 0; trial < 20 && parityCount > 0; trial++) {
        const present = randomPattern(random, 32, parityCount);
        const shards = damage(original, present);
        codec.reconstruct(shards, present);
        expectShardsEqual(shards, original, `${dataCount}+${parityCount}`);
      }
    }
  });
});

describe('ReedSolomon async', () => {
  for (const [dataCount, parityCount] of GEOMETRIES) {
    it(`(${dataCount},${parityCount}) encodeAsync, reconstructAsync equal sync`, async () => {
      for (const shardBytes of [1, 7, 4096, 65537]) {
        const { codec, original } = makeStripe(dataCount, parityCount, shardBytes, shardBytes * 3);
        const data = original.slice(0, dataCount).map((shard) => Buffer.from(shard));
        const parity = Array.from({ length: parityCount }, () => Buffer.alloc(shardBytes));
        await codec.encodeAsync(data, parity);
        expectShardsEqual(parity, original.slice(dataCount), 'encodeAsync');
        const random = makeRandom(shardBytes);
        for (let trial = 0; trial < 10; trial++) {
          const lostCount = 1 + (random() % parityCount);
          const present = randomPattern(random, dataCount + parityCount, lostCount);
          const shards = damage(original, present);
          await codec.reconstructAsync(shards, present);
          expectShardsEqual(shards, original, 'reconstructAsync');
        }
      }
    });
  }

  it('runs many jobs at once, with more erasure patterns than the cache holds', async () => {
    const { codec, original } = makeStripe(10, 4, 4096 + 3, 77);
    const patterns = allPatterns(14, 4).slice(-200);
    const stripes = patterns.map((present) => damage(original, present));
    await Promise.all(
      stripes.map((shards, index) => codec.reconstructAsync(shards, patterns[index]!)),
    );
    for (const shards of stripes) expectShardsEqual(shards, original, 'concurrent');
    const parities = Array.from({ length: 50 }, () => [0, 1, 2, 3].map(() => Buffer.alloc(4099)));
    const data = original.slice(0, 10);
    await Promise.all(parities.map((parity) => codec.encodeAsync(data, parity)));
    for (const parity of parities) expectShardsEqual(parity, original.slice(10), 'concurrent');
  });

  it('works on small on-heap typed arrays', async () => {
    const codec = new ReedSolomon(3, 2);
    const data = [Uint8Array.of(1, 2, 3), Uint8Array.of(4, 5, 6), Uint8Array.of(7, 8, 9)];
    const parity = [new Uint8Array(3), new Uint8Array(3)];
    const expected = referenceParity(data, 2);
    await codec.encodeAsync(data, parity);
    expectShardsEqual(parity, expected, 'on-heap');
  });
});

describe('ReedSolomon argument checks', () => {
  const shards = (count: number, bytes = 16): Uint8Array[] =>
    Array.from({ length: count }, () => new Uint8Array(bytes));
  const allPresent = (count: number): boolean[] => new Array<boolean>(count).fill(true);

  it('rejects bad geometries with RangeError or TypeError', () => {
    expect(() => new ReedSolomon(30, 3)).toThrow(/dataCount \+ parityCount must be at most 32/);
    expect(() => new ReedSolomon(30, 3)).toThrow(RangeError);
    expect(() => new ReedSolomon(33, 0)).toThrow(RangeError);
    expect(() => new ReedSolomon(0, 2)).toThrow(/dataCount must be an integer from 1 to 32/);
    expect(() => new ReedSolomon(4, -1)).toThrow(/parityCount/);
    expect(() => new ReedSolomon(4.5, 1)).toThrow(RangeError);
    expect(() => new ReedSolomon(Number.NaN, 1)).toThrow(RangeError);
    expect(() => new ReedSolomon('4' as unknown as number, 1)).toThrow(TypeError);
    expect(() => new ReedSolomon(undefined as unknown as number, 1)).toThrow(TypeError);
  });

  it('rejects too few present shards', () => {
    const codec = new ReedSolomon(4, 2);
    const present = [false, false, false, true, true, true];
    expect(() => codec.reconstruct(shards(6), present)).toThrow(RangeError);
    expect(() => codec.reconstruct(shards(6), present)).toThrow(/too few .*3 of 6, need 4/);
  });

  it('rejects mismatched lengths and empty shards', () => {
    const codec = new ReedSolomon(4, 2);
    const data = shards(4);
    data[2] = new Uint8Array(15);
    const message = /data\[2\] has 15 bytes but data\[0\] has 16/;
    expect(() => codec.encode(data, shards(2))).toThrow(message);
    const parity = [new Uint8Array(16), new Uint8Array(17)];
    expect(() => codec.encode(shards(4), parity)).toThrow(/parity\[1\]/);
    const mixed = shards(6);
    mixed[5] = new Uint8Array(8);
    expect(() => codec.reconstruct(mixed, allPresent(6))).toThrow(/shards\[5\] has 8 bytes/);
    expect(() => codec.encode(shards(4, 0), shards(2, 0))).toThrow(/data\[0\] has 0 bytes/);
  });

  it('rejects wrong shard counts', () => {
    const codec = new ReedSolomon(4, 2);
    expect(() => codec.encode(shards(3), shards(2))).toThrow(/data must have 4 shards, got 3/);
    expect(() => codec.encode(shards(4), shards(3))).toThrow(/parity must have 2 shards, got 3/);
    expect(() => codec.reconstruct(shards(5), allPresent(5))).toThrow(/shards must have 6/);
    expect(() => codec.reconstruct(shards(6), allPresent(5))).toThrow(/present must have 6/);
  });

  it('rejects values that are not Uint8Arrays, arrays or booleans', () => {
    const codec = new ReedSolomon(4, 2);
    const notUint8Arrays = [
      'x', 1, null, undefined, {},
      new Uint16Array(16), new Uint8ClampedArray(16), new ArrayBuffer(16),
    ];
    for (const bad of notUint8Arrays) {
      const data: unknown[] = shards(4);
      data[1] = bad;
      const encode = () => codec.encode(data as Uint8Array[], shards(2));
      expect(encode).toThrow(TypeError);
      expect(encode).toThrow(/data\[1\] must be a Uint8Array/);
    }
    expect(() => codec.encode('abcd' as unknown as Uint8Array[], shards(2))).toThrow(TypeError);
    const notArray = new Uint8Array(4) as unknown as Uint8Array[];
    expect(() => codec.encode(notArray, shards(2))).toThrow(TypeError);
    const present: unknown[] = new Array(6).fill(true);
    present[4] = 1;
    const reconstruct = () => codec.reconstruct(shards(6), present as boolean[]);
    expect(reconstruct).toThrow(/present\[4\] must be a boolean/);
    expect(() => codec.reconstruct(shards(6), 'yes' as unknown as boolean[])).toThrow(TypeError);
  });

  it('rejects an output shard that overlaps another shard', () => {
    const codec = new ReedSolomon(4, 2);
    const data = shards(4);
    const aliased = [new Uint8Array(16), data[3]!];
    expect(() => codec.encode(data, aliased)).toThrow(/parity\[1\] overlaps data\[3\]/);
    const backing = new Uint8Array(100);
    const overlapping = [0, 16, 32, 48, 64, 70].map((start) => backing.subarray(start, start + 16));
    expect(() => codec.encode(overlapping.slice(0, 4), overlapping.slice(4))).toThrow(/overlaps/);
    const sameTwice = shards(6);
    sameTwice[1] = sameTwice[0]!;
    const firstLost = [false, true, true, true, true, true];
    expect(() => codec.reconstruct(sameTwice, firstLost)).toThrow(/overlaps/);
  });

  it('reports bad arguments to the async variants as rejections', async () => {
    const codec = new ReedSolomon(4, 2);
    await expect(codec.encodeAsync(shards(4), shards(1))).rejects.toThrow(RangeError);
    const nonePresent = new Array<boolean>(6).fill(false);
    await expect(codec.reconstructAsync(shards(6), nonePresent)).rejects.toThrow(/too few/);
    const strings = ['x', 'x', 'x', 'x'] as unknown as Uint8Array[];
    await expect(codec.encodeAsync(strings, shards(2))).rejects.toThrow(TypeError);
  });
});

/** Parity of data bytes 1, 2, 3, 4 under 4+2, computed once with referenceParity. */
const GOLDEN_4_2 = [72, 15];
