/**
 * crc32c / crc32cAsync: known answers, chaining and unaligned views.
 *
 * Method: the addon's results are compared with published check values (the CRC catalogue's
 * "123456789" and the iSCSI vectors of RFC 3720 B.4) and with a small table-driven pure-JS
 * CRC32C written here, on buffers of many lengths and byte offsets, and a large one.
 */
import { randomFillSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { crc32c, crc32cAsync } from './index.js';

/** Reflected CRC32C table for polynomial 0x82f63b78, built bit by bit. */
const REFERENCE_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let value = byte;
    for (let bit = 0; bit < 8; bit++) value = value & 1 ? (value >>> 1) ^ 0x82f63b78 : value >>> 1;
    table[byte] = value >>> 0;
  }
  return table;
})();

function referenceCrc32c(data: Uint8Array, previous = 0): number {
  let state = ~previous >>> 0;
  for (const byte of data) state = (REFERENCE_TABLE[(state ^ byte) & 0xff]! ^ (state >>> 8)) >>> 0;
  return ~state >>> 0;
}

function randomBytes(bytes: number): Buffer {
  return randomFillSync(Buffer.allocUnsafe(bytes));
}

describe('crc32c known answers', () => {
  it('matches the standard check value', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(referenceCrc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  it('matches the RFC 3720 iSCSI vectors', () => {
    const ascending = Uint8Array.from({ length: 32 }, (_, index) => index);
    const descending = Uint8Array.from({ length: 32 }, (_, index) => 31 - index);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(ascending)).toBe(0x46dd794e);
    expect(crc32c(descending)).toBe(0x113fdb5c);
  });

  it('is 0 for an empty buffer and returns previous unchanged', () => {
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32c(Buffer.alloc(0), 0xdeadbeef)).toBe(0xdeadbeef);
    expect(crc32c(new Uint8Array(0), undefined)).toBe(0);
  });

  it('returns an unsigned 32-bit integer', () => {
    for (let trial = 0; trial < 200; trial++) {
      const value = crc32c(randomBytes(1 + trial));
      expect(Number.isInteger(value)).toBe(true);
      expect(value).toBeGreaterThanOrEqual(0);
      expect(value).toBeLessThanOrEqual(0xffffffff);
    }
  });
});

describe('crc32c against the pure-JS reference', () => {
  it('agrees on every length 0..600 and every offset 0..15 (unaligned views)', () => {
    const backing = randomBytes(1024);
    for (let offset = 0; offset < 16; offset++) {
      for (let bytes = 0; bytes <= 600; bytes += offset + 1) {
        const view = backing.subarray(offset, offset + bytes);
        expect(crc32c(view)).toBe(referenceCrc32c(view));
      }
    }
  });

  it('agrees on a plain Uint8Array view of a shared ArrayBuffer', () => {
    const buffer = new ArrayBuffer(4099);
    const whole = new Uint8Array(buffer);
    randomFillSync(whole);
    const view = new Uint8Array(buffer, 3, 4093);
    expect(crc32c(view)).toBe(referenceCrc32c(view));
  });

  it('agrees on a large buffer (16 MiB + 3)', () => {
    const data = randomBytes(16 * 1024 * 1024 + 3);
    expect(crc32c(data)).toBe(referenceCrc32c(data));
  });
});

describe('crc32c chaining', () => {
  it('crc32c(b, crc32c(a)) equals crc32c(a + b) at every split point', () => {
    const data = randomBytes(300);
    const whole = crc32c(data);
    for (let split = 0; split <= data.length; split++) {
      expect(crc32c(data.subarray(split), crc32c(data.subarray(0, split)))).toBe(whole);
    }
  });

  it('chains across many pieces of different lengths', () => {
    const data = randomBytes(1 << 20);
    let state = 0;
    let offset = 0;
    for (let piece = 1; offset < data.length; piece = (piece * 7 + 3) % 9973) {
      const end = Math.min(data.length, offset + piece);
      state = crc32c(data.subarray(offset, end), state);
      offset = end;
    }
    expect(state).toBe(crc32c(data));
    expect(state).toBe(referenceCrc32c(data));
  });

  it('matches the reference with an arbitrary seed', () => {
    const data = randomBytes(77);
    for (const seed of [1, 0x7fffffff, 0x80000000, 0xffffffff, 0x12345678]) {
      expect(crc32c(data, seed)).toBe(referenceCrc32c(data, seed));
    }
  });
});

describe('crc32cAsync', () => {
  it('equals the sync result, seeded or not, on small and big buffers', async () => {
    for (const bytes of [0, 1, 9, 4096, 65537, 8 * 1024 * 1024 + 1]) {
      const data = randomBytes(bytes);
      expect(await crc32cAsync(data)).toBe(crc32c(data));
      expect(await crc32cAsync(data, 0xcafef00d)).toBe(crc32c(data, 0xcafef00d));
    }
    expect(await crc32cAsync(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  it('runs many jobs at once', async () => {
    const buffers = Array.from({ length: 64 }, (_, index) => randomBytes(1000 + index * 997));
    const results = await Promise.all(buffers.map((buffer) => crc32cAsync(buffer)));
    expect(results).toEqual(buffers.map((buffer) => referenceCrc32c(buffer)));
  });
});

describe('crc32c argument checks', () => {
  const data = Buffer.from('abc');

  it('rejects non-Uint8Array data with a TypeError', () => {
    const notUint8Arrays = [
      'abc', 42, undefined, null, {}, [1, 2], new Uint16Array(4), new DataView(new ArrayBuffer(4)),
    ];
    for (const bad of notUint8Arrays) {
      expect(() => crc32c(bad as unknown as Uint8Array)).toThrow(TypeError);
      expect(() => crc32c(bad as unknown as Uint8Array)).toThrow(/data must be a Uint8Array/);
    }
  });

  it('rejects a previous value that is not an unsigned 32-bit integer', () => {
    expect(() => crc32c(data, '1' as unknown as number)).toThrow(TypeError);
    for (const bad of [-1, 0x100000000, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => crc32c(data, bad)).toThrow(RangeError);
      expect(() => crc32c(data, bad)).toThrow(/previous must be an integer/);
    }
  });

  it('reports bad arguments to crc32cAsync as a rejection', async () => {
    const bad = 'abc' as unknown as Uint8Array;
    await expect(crc32cAsync(bad)).rejects.toThrow(TypeError);
    await expect(crc32cAsync(data, -1)).rejects.toThrow(RangeError);
  });
});
