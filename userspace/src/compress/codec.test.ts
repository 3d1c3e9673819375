/**
 * Block codec: zstd and lz4 round-trip text-like data below and above the off-thread size,
 * random data is reported as not shrinking, and every damaged stream or wrong length is an
 * EIO, never a result. Method: real libraries on generated data, compared byte for byte.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { CompressionSpec } from '../config/index.js';
import { Errno, FsError } from '../errno.js';
import { compressBlock, decompressBlock, OFF_THREAD_BYTES_MIN, type CompressedAlgorithm } from './index.js';
import { flipBits } from '../../test/helpers/bytes.js';

/** Log-like lines: compresses several times over, as text does. */
function textLike(bytes: number): Buffer {
  const data = Buffer.alloc(bytes);
  let offset = 0;
  for (let line = 0; offset < bytes; line++) {
    offset += data.write(`${1700000000 + line} INFO request ${line % 97} served in ${line % 13} ms\n`, offset);
  }
  return data;
}

const SPECS: readonly (CompressionSpec & { algorithm: CompressedAlgorithm })[] = [
  { algorithm: 'zstd', level: 1 },
  { algorithm: 'zstd', level: 3 },
  { algorithm: 'zstd', level: 9 },
  { algorithm: 'lz4' },
];
const SIZES = [1000, 64 * 1024, OFF_THREAD_BYTES_MIN, 4 * 1024 * 1024 + 3];

async function compressed(spec: CompressionSpec, source: Buffer): Promise<Buffer> {
  const target = Buffer.alloc(source.byteLength);
  const bytes = await compressBlock(spec, source, target);
  expect(bytes).toBeGreaterThan(0);
  return target.subarray(0, bytes);
}

async function decodeError(
  algorithm: CompressedAlgorithm,
  stream: Uint8Array,
  expectedBytes: number,
): Promise<unknown> {
  try {
    await decompressBlock(algorithm, stream, { target: Buffer.alloc(expectedBytes + 100), expectedBytes });
    return 'decoded';
  } catch (error) {
    return error;
  }
}

describe.each(SPECS)('$algorithm $level', (spec) => {
  it.each(SIZES)('round-trips %i bytes of text-like data, smaller', async (bytes) => {
    const source = textLike(bytes);
    const stream = await compressed(spec, source);
    expect(stream.byteLength).toBeLessThan(bytes / 2);
    const target = Buffer.alloc(bytes + 64, 0xee);
    await decompressBlock(spec.algorithm, stream, { target, expectedBytes: bytes });
    expect(target.subarray(0, bytes).equals(source)).toBe(true);
    // Nothing is written past the expected length.
    expect(target.subarray(bytes).every((byte) => byte === 0xee)).toBe(true);
  });

  it('reports random data as not shrinking (stored raw)', async () => {
    for (const bytes of [4096, OFF_THREAD_BYTES_MIN * 2]) {
      const source = randomBytes(bytes);
      expect(await compressBlock(spec, source, Buffer.alloc(bytes))).toBe(0);
    }
  });

  it('answers EIO for a wrong length or a damaged stream, never data', async () => {
    for (const bytes of [8192, OFF_THREAD_BYTES_MIN * 2]) {
      const stream = await compressed(spec, textLike(bytes));
      const shorter = await decodeError(spec.algorithm, stream, bytes - 1);
      const longer = await decodeError(spec.algorithm, stream, bytes + 1);
      const truncated = await decodeError(spec.algorithm, stream.subarray(0, stream.byteLength - 7), bytes);
      const flipped = Buffer.from(stream);
      // Flip bits in the middle of the stream, past every header.
      for (let index = flipped.byteLength >> 1; index < (flipped.byteLength >> 1) + 8; index++) flipBits(flipped, index, 0xa5);
      const damaged = await decodeError(spec.algorithm, flipped, bytes);
      for (const outcome of [shorter, longer, truncated]) {
        expect(outcome).toBeInstanceOf(FsError);
        expect((outcome as FsError).errno).toBe(Errno.EIO);
      }
      // A flipped literal byte can decode to the right length with other content: what stops
      // that on disk is the chunk checksums. Here it must be an EIO or the right length.
      if (damaged !== 'decoded') expect((damaged as FsError).errno).toBe(Errno.EIO);
    }
  });
});

describe('none', () => {
  it('never compresses', async () => {
    const source = textLike(100_000);
    expect(await compressBlock({ algorithm: 'none' }, source, Buffer.alloc(100_000))).toBe(0);
  });
});

describe('zstd off-thread', () => {
  it('runs several big blocks at once without mixing them up', async () => {
    const sources = Array.from({ length: 6 }, (_, index) => textLike(OFF_THREAD_BYTES_MIN * (index + 1) + index));
    const streams = await Promise.all(sources.map((source) => compressed({ algorithm: 'zstd', level: 3 }, source)));
    const targets = sources.map((source) => Buffer.alloc(source.byteLength));
    await Promise.all(streams.map((stream, index) => decompressBlock('zstd', stream, {
      target: targets[index] ?? Buffer.alloc(0), expectedBytes: sources[index]?.byteLength ?? 0,
    })));
    targets.forEach((target, index) => expect(target.equals(sources[index] ?? Buffer.alloc(0))).toBe(true));
  });
});
