/**
 * Compression section of `npm run bench`: shmr's block codec (compress/) on text-like and
 * random blocks, against a plain memory copy of the same block measured in the same run.
 *
 * For zstd at levels 1, 3 and 9 and for lz4, it prints the compression ratio (input bytes /
 * stored bytes; 1.00 when the block does not shrink and is stored raw) and compress and
 * decompress throughput in MB/s of uncompressed bytes, with the ratio to the memcpy baseline
 * (Buffer.copy of the block). Calls go through compressBlock/decompressBlock as the block store
 * makes them: one block at a time, big blocks on worker threads. Then the longest event loop
 * stall while one archive-sized block is compressed, off-thread (as shmr does) against a
 * synchronous call on the event loop. Target: zstd:3 stores text-like data at least
 * TEXT_RATIO_TARGET times smaller.
 *
 * Method: best of five rounds of a fifth of the measurement time, after one warm-up call
 * (measureSync/measureAsync of the erasure section).
 *
 * Run standalone after `npm run build`: node dist/userspace/bench/compression.js [--quick]
 */
import { randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { assert } from '../src/assert.js';
import { compressBlock, decompressBlock } from '../src/compress/index.js';
import { formatCompression, parseCompression, type CompressionSpec } from '../src/config/index.js';
import { measureAsync, measureSync } from './erasure.js';

/** zstd:3 must store text-like blocks at least this many times smaller. */
const TEXT_RATIO_TARGET = 3;
const BLOCK_BYTES = 4 * 1024 * 1024;
/** The archive pool's block size in the default config, for the event loop stall. */
const STALL_BLOCK_BYTES = 32 * 1024 * 1024;
const MEASURE_SECONDS = 1;
const MEASURE_SECONDS_QUICK = 0.25;
const SETTINGS = ['zstd:1', 'zstd:3', 'zstd:9', 'lz4'];

/** Log-like lines with varying numbers: compresses several times over, as text does. */
function textLike(bytes: number): Buffer {
  const data = Buffer.allocUnsafeSlow(bytes);
  let offset = 0;
  for (let line = 0; offset < bytes; line++) {
    const text = `2026-11-26T13:${String(line % 60).padStart(2, '0')}:00Z GET /files/${(line * 7919) % 100003}` +
      ` 200 ${(line * 104729) % 65536} bytes ${line % 3 === 0 ? 'cache hit' : 'cache miss'}\n`;
    offset += data.write(text, offset);
  }
  return data;
}

function spec(text: string): CompressionSpec {
  const parsed = parseCompression(text);
  assert(typeof parsed !== 'string', text);
  return parsed;
}

function formatMbps(bytesPerSecond: number, baseline: number): string {
  return `${(bytesPerSecond / 1e6).toFixed(0).padStart(6)} (${(bytesPerSecond / baseline).toFixed(3)}x)`;
}

/** One table row: ratio, compress and decompress throughput of one setting on one block. */
async function measureRow(setting: CompressionSpec, source: Buffer, seconds: number, baseline: number): Promise<{ line: string; ratio: number }> {
  const target = Buffer.allocUnsafeSlow(source.byteLength);
  const storedBytes = await compressBlock(setting, source, target);
  const ratio = storedBytes === 0 ? 1 : source.byteLength / storedBytes;
  const compressRate = (await measureAsync(() => compressBlock(setting, source, target), seconds)) * source.byteLength;
  let decompressText = '     - (stored raw)';
  if (storedBytes > 0 && setting.algorithm !== 'none') {
    const stream = Buffer.from(target.subarray(0, storedBytes));
    const output = { target: Buffer.allocUnsafeSlow(source.byteLength), expectedBytes: source.byteLength };
    await decompressBlock(setting.algorithm, stream, output);
    assert(output.target.equals(source));
    const rate = (await measureAsync(() => decompressBlock(setting.algorithm as 'zstd' | 'lz4', stream, output), seconds)) * source.byteLength;
    decompressText = formatMbps(rate, baseline);
  }
  const line = `  ${formatCompression(setting).padEnd(7)} ${ratio.toFixed(2).padStart(6)}` +
    `   ${formatMbps(compressRate, baseline).padEnd(20)} ${decompressText}`;
  return { line, ratio };
}

/** Longest gap between 1 ms timer ticks while `work` runs: how long the event loop stalled. */
async function longestStallMs(work: () => Promise<unknown>): Promise<number> {
  let last = performance.now();
  let longest = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 1);
  await new Promise((resolve) => setTimeout(resolve, 5));
  last = performance.now();
  await work();
  longest = Math.max(longest, performance.now() - last);
  clearInterval(timer);
  return longest;
}

async function benchStall(): Promise<void> {
  const source = textLike(STALL_BLOCK_BYTES);
  const target = Buffer.allocUnsafeSlow(STALL_BLOCK_BYTES);
  const zstd = createRequire(import.meta.url)('zstd-napi/binding') as typeof import('zstd-napi/binding.js');
  const context = new zstd.CCtx();
  const offThreadMs = await longestStallMs(() => compressBlock(spec('zstd:3'), source, target));
  const syncMs = await longestStallMs(async () => context.compress(target, source, 3));
  process.stdout.write(
    `compression: longest event loop stall while one ${STALL_BLOCK_BYTES / 1024 / 1024} MiB block is compressed (zstd:3)\n` +
      `  shmr (worker thread) ${offThreadMs.toFixed(1)} ms   synchronous call ${syncMs.toFixed(1)} ms` +
      `   (ratio ${(offThreadMs / syncMs).toFixed(3)})\n`,
  );
}

/** Prints the compression section of the benchmark. `quick` shortens every measurement. */
export async function runCompressionBench(options: { quick: boolean }): Promise<void> {
  const seconds = options.quick ? MEASURE_SECONDS_QUICK : MEASURE_SECONDS;
  const blocks = { text: textLike(BLOCK_BYTES), random: randomFillSync(Buffer.allocUnsafeSlow(BLOCK_BYTES)) };
  const copyTarget = Buffer.allocUnsafeSlow(BLOCK_BYTES);
  const baseline = measureSync(() => blocks.text.copy(copyTarget), seconds) * BLOCK_BYTES;
  process.stdout.write(
    `compression: ${BLOCK_BYTES / 1024 / 1024} MiB blocks, one at a time, MB/s of uncompressed bytes` +
      ` (ratio = / memcpy)\n  baseline memcpy (Buffer.copy): ${(baseline / 1e6).toFixed(0)} MB/s\n`,
  );
  let textRatio = 0;
  for (const [name, source] of Object.entries(blocks)) {
    process.stdout.write(`  ${name}:\n  setting  ratio   compress MB/s        decompress MB/s\n`);
    for (const setting of SETTINGS) {
      const row = await measureRow(spec(setting), source, seconds, baseline);
      if (name === 'text' && setting === 'zstd:3') textRatio = row.ratio;
      process.stdout.write(`${row.line}\n`);
    }
  }
  const verdict = textRatio >= TEXT_RATIO_TARGET ? 'PASS' : 'MISS';
  process.stdout.write(`  target: zstd:3 text ratio >= ${TEXT_RATIO_TARGET.toFixed(2)}: ${verdict} (${textRatio.toFixed(2)})\n`);
  await benchStall();
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  await runCompressionBench({ quick: process.argv.includes('--quick') });
}
