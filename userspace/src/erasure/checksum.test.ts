/**
 * crc32c / crc32cAsync: known answers, chaining and unaligned views. crc32cChunks /
 * crc32cVerifyChunks (and their async forms): per-chunk tables and the whole CRC.
 *
 * Method: the addon's results are compared with published check values (the CRC catalogue's
 * "123456789" and the iSCSI vectors of RFC 3720 B.4) and with a small table-driven pure-JS
 * CRC32C written here, on buffers of many lengths and byte offsets, and a large one. Chunk
 * tables are compared entry by entry with crc32c of each chunk (and the reference on odd
 * chunk sizes, which exercise the addon's CRC combine arithmetic); verification is checked by
 * flipping single bytes.
 */
import { randomFillSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  crc32c,
  crc32cAsync,
  crc32cChunks,
  crc32cChunksAsync,
  crc32cVerifyChunks,
  crc32cVerifyChunksAsync,
} from './index.js';

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

/** The table crc32cChunks must produce, built from per-chunk crc32c calls. */
function expectedTable(data: Uint8Array, chunkBytes: number, crc = crc32c): Buffer {
  const count = Math.ceil(data.length / chunkBytes);
  const table = Buffer.alloc(4 * count);
  for (let chunk = 0; chunk < count; chunk++) {
    const start = chunk * chunkBytes;
    table.writeUInt32LE(crc(data.subarray(start, start + chunkBytes)), 4 * chunk);
  }
  return table;
}

function tableFor(data: Uint8Array, chunkBytes: number): Buffer {
  return Buffer.alloc(4 * Math.ceil(data.length / chunkBytes));
}

const CHUNK_LENGTHS = [0, 1, 4095, 4096, 4097, (1 << 20) + 3];
const CHUNK_SIZES = [512, 4096, 65536];

describe('crc32cChunks', () => {
  it('matches per-chunk crc32c and returns crc32c of the whole data', () => {
    for (const bytes of CHUNK_LENGTHS) {
      const data = randomBytes(bytes);
      for (const chunkBytes of CHUNK_SIZES) {
        const table = tableFor(data, chunkBytes);
        expect(crc32cChunks(data, chunkBytes, table), `${bytes} / ${chunkBytes}`).toBe(
          crc32c(data),
        );
        expect(table.equals(expectedTable(data, chunkBytes)), `${bytes} / ${chunkBytes}`).toBe(
          true,
        );
      }
    }
  });

  it('agrees with the pure-JS reference on odd chunk sizes (the CRC combine)', () => {
    const data = randomBytes(5000);
    for (const chunkBytes of [1, 2, 3, 7, 64, 999, 4999, 5000, 5001, 0x7fffffff]) {
      for (const bytes of [0, 1, 9, 100, 4097, 5000]) {
        const view = data.subarray(0, bytes);
        const table = tableFor(view, chunkBytes);
        expect(crc32cChunks(view, chunkBytes, table), `${bytes} / ${chunkBytes}`).toBe(
          referenceCrc32c(view),
        );
        expect(table.equals(expectedTable(view, chunkBytes, (chunk) => referenceCrc32c(chunk))))
          .toBe(true);
      }
    }
    expect(crc32cChunks(Buffer.from('123456789'), 4, new Uint8Array(12))).toBe(0xe3069283);
  });

  it('works on unaligned views and leaves the bytes past the table untouched', () => {
    const backing = randomBytes(20000);
    const data = backing.subarray(3, 3 + 9001);
    const tableBacking = Buffer.alloc(1 + 4 * 3 + 8, 0xa5);
    const table = tableBacking.subarray(1, 1 + 4 * 3 + 5); /* 5 spare bytes */
    expect(crc32cChunks(data, 4096, table)).toBe(crc32c(data));
    expect(table.subarray(0, 12).equals(expectedTable(data, 4096))).toBe(true);
    expect(tableBacking[0]).toBe(0xa5);
    expect([...tableBacking.subarray(13)]).toEqual(new Array(8).fill(0xa5));
  });

  it('lets the table and data share a buffer without overlapping', () => {
    const payload = randomBytes(3 * 4096 + 12);
    const data = payload.subarray(0, 3 * 4096);
    const table = payload.subarray(3 * 4096);
    expect(crc32cChunks(data, 4096, table)).toBe(crc32c(data));
    expect(table.equals(expectedTable(data, 4096))).toBe(true);
    expect(crc32cVerifyChunks(data, 4096, table, 0)).toBe(-1);
  });
});

describe('crc32cVerifyChunks', () => {
  it('returns -1 on intact data and the chunk of a flipped byte', () => {
    for (const bytes of [1, 4095, 4096, 4097, (1 << 20) + 3]) {
      for (const chunkBytes of CHUNK_SIZES) {
        const data = randomBytes(bytes);
        const table = tableFor(data, chunkBytes);
        crc32cChunks(data, chunkBytes, table);
        expect(crc32cVerifyChunks(data, chunkBytes, table, 0)).toBe(-1);
        const chunkCount = Math.ceil(bytes / chunkBytes);
        /* The first byte, a middle one, the first and last of the (maybe short) last chunk. */
        for (const offset of [0, bytes >> 1, (chunkCount - 1) * chunkBytes, bytes - 1]) {
          data[offset]! ^= 0x01;
          expect(crc32cVerifyChunks(data, chunkBytes, table, 0), `${bytes}/${chunkBytes}/${offset}`)
            .toBe(Math.floor(offset / chunkBytes));
          data[offset]! ^= 0x01;
        }
        expect(crc32cVerifyChunks(data, chunkBytes, table, 0)).toBe(-1);
      }
    }
  });

  it('reports the first of several bad chunks, and a corrupted table entry', () => {
    const data = randomBytes(10 * 512);
    const table = tableFor(data, 512);
    crc32cChunks(data, 512, table);
    data[7 * 512 + 3]! ^= 0x80;
    data[4 * 512 + 100]! ^= 0x80;
    expect(crc32cVerifyChunks(data, 512, table, 0)).toBe(4);
    data[7 * 512 + 3]! ^= 0x80;
    data[4 * 512 + 100]! ^= 0x80;
    table[4 * 9 + 2]! ^= 0x10;
    expect(crc32cVerifyChunks(data, 512, table, 0)).toBe(9);
  });

  it('verifies a subarray from firstChunk on, reporting payload chunk indexes', () => {
    const chunkBytes = 4096;
    const payload = randomBytes(10 * chunkBytes + 100); /* chunk 10 is short */
    const table = tableFor(payload, chunkBytes);
    crc32cChunks(payload, chunkBytes, table);
    const tail = payload.subarray(3 * chunkBytes);
    expect(crc32cVerifyChunks(tail, chunkBytes, table, 3)).toBe(-1);
    expect(crc32cVerifyChunks(tail, chunkBytes, table, 2)).toBe(2); /* misaligned: detected */
    const middle = payload.subarray(3 * chunkBytes, 6 * chunkBytes);
    expect(crc32cVerifyChunks(middle, chunkBytes, table, 3)).toBe(-1);

    payload[7 * chunkBytes + 5]! ^= 0xff;
    expect(crc32cVerifyChunks(tail, chunkBytes, table, 3)).toBe(7);
    expect(crc32cVerifyChunks(middle, chunkBytes, table, 3)).toBe(-1); /* outside the range */
    payload[7 * chunkBytes + 5]! ^= 0xff;

    payload[payload.length - 1]! ^= 0x04; /* in the short last chunk */
    expect(crc32cVerifyChunks(tail, chunkBytes, table, 3)).toBe(10);
    expect(crc32cVerifyChunks(payload.subarray(10 * chunkBytes), chunkBytes, table, 10)).toBe(10);
    payload[payload.length - 1]! ^= 0x04;
    expect(crc32cVerifyChunks(payload.subarray(10 * chunkBytes), chunkBytes, table, 10)).toBe(-1);
  });

  it('verifies empty data as -1', () => {
    expect(crc32cVerifyChunks(new Uint8Array(0), 4096, new Uint8Array(0), 0)).toBe(-1);
    expect(crc32cVerifyChunks(new Uint8Array(0), 4096, new Uint8Array(8), 2)).toBe(-1);
  });
});

describe('crc32cChunksAsync and crc32cVerifyChunksAsync', () => {
  it('equal the sync results', async () => {
    for (const bytes of CHUNK_LENGTHS) {
      const data = randomBytes(bytes);
      for (const chunkBytes of CHUNK_SIZES) {
        const syncTable = tableFor(data, chunkBytes);
        const asyncTable = tableFor(data, chunkBytes);
        const whole = crc32cChunks(data, chunkBytes, syncTable);
        expect(await crc32cChunksAsync(data, chunkBytes, asyncTable)).toBe(whole);
        expect(asyncTable.equals(syncTable)).toBe(true);
        expect(await crc32cVerifyChunksAsync(data, chunkBytes, asyncTable, 0)).toBe(-1);
        if (bytes > 0) {
          data[bytes - 1]! ^= 0x01;
          const bad = crc32cVerifyChunks(data, chunkBytes, syncTable, 0);
          expect(bad).toBe(Math.ceil(bytes / chunkBytes) - 1);
          expect(await crc32cVerifyChunksAsync(data, chunkBytes, syncTable, 0)).toBe(bad);
        }
      }
    }
  });

  it('verifies a subarray with firstChunk > 0', async () => {
    const payload = randomBytes(8 * 512 + 7);
    const table = tableFor(payload, 512);
    await crc32cChunksAsync(payload, 512, table);
    payload[5 * 512]! ^= 0x02;
    expect(await crc32cVerifyChunksAsync(payload.subarray(2 * 512), 512, table, 2)).toBe(5);
  });

  it('runs many jobs at once', async () => {
    const payloads = Array.from({ length: 32 }, (_, index) => randomBytes(10000 + index * 4099));
    const tables = payloads.map((payload) => tableFor(payload, 4096));
    const wholes = await Promise.all(
      payloads.map((payload, index) => crc32cChunksAsync(payload, 4096, tables[index]!)),
    );
    expect(wholes).toEqual(payloads.map((payload) => crc32c(payload)));
    tables.forEach((table, index) => {
      expect(table.equals(expectedTable(payloads[index]!, 4096))).toBe(true);
    });
    const verdicts = await Promise.all(
      payloads.map((payload, index) => crc32cVerifyChunksAsync(payload, 4096, tables[index]!, 0)),
    );
    expect(verdicts).toEqual(new Array(32).fill(-1));
  });
});

describe('chunked CRC32C argument checks', () => {
  const data = randomBytes(10000); /* 3 chunks of 4096 */
  const table = new Uint8Array(12);

  it('rejects data and table that are not Uint8Arrays', () => {
    for (const bad of ['abc', 42, undefined, null, {}, [1, 2], new Uint32Array(3)]) {
      const notBytes = bad as unknown as Uint8Array;
      expect(() => crc32cChunks(notBytes, 4096, table)).toThrow(/data must be a Uint8Array/);
      expect(() => crc32cChunks(data, 4096, notBytes)).toThrow(/table must be a Uint8Array/);
      expect(() => crc32cChunks(data, 4096, notBytes)).toThrow(TypeError);
      expect(() => crc32cVerifyChunks(notBytes, 4096, table, 0)).toThrow(
        /data must be a Uint8Array/,
      );
      expect(() => crc32cVerifyChunks(data, 4096, notBytes, 0)).toThrow(
        /table must be a Uint8Array/,
      );
    }
  });

  it('rejects a chunkBytes that is not an integer from 1 to 2^31 - 1', () => {
    expect(() => crc32cChunks(data, '4096' as unknown as number, table)).toThrow(TypeError);
    expect(() => crc32cChunks(data, undefined as unknown as number, table)).toThrow(
      /chunkBytes must be a number/,
    );
    for (const bad of [0, -4096, 4096.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31]) {
      expect(() => crc32cChunks(data, bad, table)).toThrow(RangeError);
      expect(() => crc32cChunks(data, bad, table)).toThrow(/chunkBytes must be an integer/);
      expect(() => crc32cVerifyChunks(data, bad, table, 0)).toThrow(
        /chunkBytes must be an integer/,
      );
    }
  });

  it('rejects a table too short for the chunks', () => {
    expect(() => crc32cChunks(data, 4096, new Uint8Array(11))).toThrow(RangeError);
    expect(() => crc32cChunks(data, 4096, new Uint8Array(11))).toThrow(
      /table has 11 bytes but needs 12/,
    );
    expect(() => crc32cChunks(data, 512, table)).toThrow(/table has 12 bytes but needs 80/);
    expect(() => crc32cVerifyChunks(data, 4096, table, 1)).toThrow(
      /table has 12 bytes but needs 16/,
    );
    expect(() => crc32cVerifyChunks(new Uint8Array(0), 4096, table, 4)).toThrow(RangeError);
  });

  it('rejects a firstChunk that is not a non-negative integer', () => {
    expect(() => crc32cVerifyChunks(data, 4096, table, undefined as unknown as number)).toThrow(
      /firstChunk must be a number/,
    );
    for (const bad of [-1, 0.5, Number.NaN, 2 ** 53]) {
      expect(() => crc32cVerifyChunks(data, 4096, table, bad)).toThrow(RangeError);
      expect(() => crc32cVerifyChunks(data, 4096, table, bad)).toThrow(
        /firstChunk must be an integer/,
      );
    }
    expect(() => crc32cVerifyChunks(data, 4096, table, 2 ** 53 - 1)).toThrow(/table has 12 bytes/);
  });

  it('rejects a table that overlaps the data', () => {
    const buffer = randomBytes(8192);
    const saved = Buffer.from(buffer);
    const inside = buffer.subarray(100, 200);
    const straddling = buffer.subarray(8000 - 4, 8000 + 28); /* 8 entries; 1 inside data */
    const overlapping = [
      [buffer, inside],
      [buffer.subarray(0, 8000), straddling],
      [buffer.subarray(4096), buffer.subarray(4096 - 8, 8192)], /* entries 2 and 3 in data */
    ] as const;
    for (const [payload, entries] of overlapping) {
      expect(() => crc32cChunks(payload, 1024, entries)).toThrow(RangeError);
      expect(() => crc32cChunks(payload, 1024, entries)).toThrow(/table overlaps data/);
      expect(() => crc32cVerifyChunks(payload, 1024, entries, 0)).toThrow(/table overlaps data/);
    }
    expect(buffer.equals(saved)).toBe(true);
    /* Only the entries used count: a table whose unused tail covers data is fine. */
    const shared = randomBytes(16 + 64);
    expect(crc32cChunks(shared.subarray(16), 16, shared)).toBe(crc32c(shared.subarray(16)));
    expect(crc32cVerifyChunks(shared.subarray(48), 16, shared, 2)).toBe(-1);
  });

  it('reports bad arguments to the async forms as rejections', async () => {
    const notBytes = 'abc' as unknown as Uint8Array;
    await expect(crc32cChunksAsync(notBytes, 4096, table)).rejects.toThrow(TypeError);
    await expect(crc32cChunksAsync(data, 0, table)).rejects.toThrow(/chunkBytes must be/);
    await expect(crc32cChunksAsync(data, 4096, new Uint8Array(4))).rejects.toThrow(RangeError);
    await expect(crc32cChunksAsync(data, 4096, data.subarray(0, 12))).rejects.toThrow(
      /table overlaps data/,
    );
    await expect(crc32cVerifyChunksAsync(data, 4096, table, -1)).rejects.toThrow(RangeError);
    await expect(crc32cVerifyChunksAsync(data, 4096, notBytes, 0)).rejects.toThrow(TypeError);
  });
});
