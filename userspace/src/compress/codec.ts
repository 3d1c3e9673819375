/**
 * Block codec: compresses a block into a caller's buffer and decompresses it back, with zstd
 * (zstd-napi, a build of the bundled libzstd) or lz4 (lz4-napi, lz4_flex's block format with
 * the uncompressed length prepended as a little-endian u32).
 *
 * Invariants:
 * - compressBlock answers 0 when the result would not be strictly smaller than the input: the
 *   caller then stores the block raw, so compression never costs space.
 * - decompressBlock resolves only when exactly `expectedBytes` came out of a well-formed
 *   stream; anything else (malformed data, a longer or shorter result) is FsError EIO. It never
 *   hands back a guess.
 * - Inputs of OFF_THREAD_BYTES_MIN or more are processed off the event loop: zstd on worker
 *   threads (zstd-workers.ts), lz4 on the libuv pool (lz4-napi's async calls).
 */
import { createRequire } from 'node:module';
import { assert } from '../assert.js';
import type { CompressionSpec } from '../config/index.js';
import { Errno, FsError } from '../errno.js';
import { ZstdWorkers } from './zstd-workers.js';

type ZstdBinding = typeof import('zstd-napi/binding.js');
type Lz4 = typeof import('lz4-napi');

const requireCommonJs = createRequire(import.meta.url);
const zstd = requireCommonJs('zstd-napi/binding') as ZstdBinding;
const lz4 = requireCommonJs('lz4-napi') as Lz4;

/** Blocks at least this large are (de)compressed off the event loop. */
export const OFF_THREAD_BYTES_MIN = 256 * 1024;
/** Bytes of the length lz4-napi writes before an lz4 block. */
const LZ4_LENGTH_BYTES = 4;

/** Algorithms that produce a compressed stream (everything but none). */
export type CompressedAlgorithm = 'zstd' | 'lz4';

// Contexts of the synchronous (small block) path, reused: creating one costs more than
// compressing a small block.
const compressor = new zstd.CCtx();
const decompressor = new zstd.DCtx();
const workers = new ZstdWorkers();

/**
 * Compresses `source` into `target` with `spec` and returns the compressed byte count, or 0
 * when the block does not shrink (or `spec` is none). `target` must hold `source.byteLength`.
 */
export async function compressBlock(spec: CompressionSpec, source: Uint8Array, target: Buffer): Promise<number> {
  assert(source.byteLength > 0);
  assert(target.byteLength >= source.byteLength);
  if (spec.algorithm === 'none') return 0;
  const bytes = spec.algorithm === 'zstd'
    ? await compressZstd(spec.level, source, target)
    : await compressLz4(source, target);
  assert(bytes < source.byteLength);
  return bytes;
}

async function compressZstd(level: number, source: Uint8Array, target: Buffer): Promise<number> {
  // Room for one byte less than the input: zstd fails when the result would not shrink.
  const capacityBytes = source.byteLength - 1;
  if (source.byteLength < OFF_THREAD_BYTES_MIN) {
    try {
      return compressor.compress(target.subarray(0, capacityBytes), source, level);
    } catch {
      return 0;
    }
  }
  const shared = toShared(source);
  const output = new SharedArrayBuffer(Math.max(1, capacityBytes));
  const result = await workers.run({
    isCompress: true, level, source: shared, sourceBytes: source.byteLength, target: output, targetBytes: capacityBytes,
  });
  if (result.bytes < 0) return 0;
  Buffer.from(output, 0, result.bytes).copy(target, 0);
  return result.bytes;
}

async function compressLz4(source: Uint8Array, target: Buffer): Promise<number> {
  const compressed = source.byteLength < OFF_THREAD_BYTES_MIN
    ? lz4.compressSync(Buffer.from(source.buffer, source.byteOffset, source.byteLength))
    : await lz4.compress(source);
  if (compressed.byteLength >= source.byteLength) return 0;
  compressed.copy(target, 0);
  return compressed.byteLength;
}

/**
 * Decompresses `source` (a stream compressBlock made with `algorithm`) into `target[0,
 * expectedBytes)`. Throws FsError EIO when the stream is malformed or its length is not
 * `expectedBytes`.
 */
export async function decompressBlock(
  algorithm: CompressedAlgorithm,
  source: Uint8Array,
  output: { target: Buffer; expectedBytes: number },
): Promise<void> {
  const { target, expectedBytes } = output;
  assert(expectedBytes > 0);
  assert(target.byteLength >= expectedBytes);
  const bytes = algorithm === 'zstd'
    ? await decompressZstd(source, target.subarray(0, expectedBytes))
    : await decompressLz4(source, target.subarray(0, expectedBytes));
  if (bytes !== expectedBytes) {
    throw new FsError(Errno.EIO, 'decompress block', `${algorithm} gave ${bytes} bytes, ${expectedBytes} expected`);
  }
}

async function decompressZstd(source: Uint8Array, target: Buffer): Promise<number> {
  // The frame header states the content size: a mismatch is known before any work.
  let contentBytes: number | null;
  try {
    contentBytes = zstd.getFrameContentSize(source);
  } catch (error) {
    throw malformed('zstd', error);
  }
  if (contentBytes !== target.byteLength) return contentBytes ?? -1;
  if (source.byteLength < OFF_THREAD_BYTES_MIN && target.byteLength < OFF_THREAD_BYTES_MIN) {
    try {
      return decompressor.decompress(target, source);
    } catch (error) {
      throw malformed('zstd', error);
    }
  }
  const output = new SharedArrayBuffer(target.byteLength);
  const result = await workers.run({
    isCompress: false, level: 0, source: toShared(source), sourceBytes: source.byteLength,
    target: output, targetBytes: target.byteLength,
  });
  if (result.bytes < 0) throw malformed('zstd', new Error(result.message));
  Buffer.from(output, 0, result.bytes).copy(target, 0);
  return result.bytes;
}

async function decompressLz4(source: Uint8Array, target: Buffer): Promise<number> {
  // The stream starts with its decompressed length; checking it first also keeps a damaged
  // length from making lz4-napi allocate gigabytes.
  if (source.byteLength < LZ4_LENGTH_BYTES) throw malformed('lz4', new Error('shorter than its length field'));
  const statedBytes = Buffer.from(source.buffer, source.byteOffset, LZ4_LENGTH_BYTES).readUInt32LE(0);
  if (statedBytes !== target.byteLength) return statedBytes;
  let result: Buffer;
  try {
    result = source.byteLength < OFF_THREAD_BYTES_MIN && target.byteLength < OFF_THREAD_BYTES_MIN
      ? lz4.uncompressSync(source)
      : await lz4.uncompress(source);
  } catch (error) {
    throw malformed('lz4', error);
  }
  if (result.byteLength === target.byteLength) result.copy(target, 0);
  return result.byteLength;
}

/** A copy of `source` in shared memory, for a worker to read. */
function toShared(source: Uint8Array): SharedArrayBuffer {
  const shared = new SharedArrayBuffer(source.byteLength);
  new Uint8Array(shared).set(source);
  return shared;
}

function malformed(algorithm: CompressedAlgorithm, error: unknown): FsError {
  return new FsError(Errno.EIO, 'decompress block', `malformed ${algorithm} stream: ${(error as Error).message}`);
}
