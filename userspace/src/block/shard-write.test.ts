/**
 * writeShardFileAtOnce: a whole shard file (checksums, directories, create, write, fsync,
 * close) in one thread-pool job of the shmr_isal addon.
 *
 * Method: real files in a fresh temp folder. The file written from an encodeShardHeader
 * prefix must equal, byte for byte, the one writeShardFile writes from encodeShardPrefix (the
 * JS checksums), and verify as a reader checks it. Failures are real ones: a name that
 * exists (EEXIST, the old file untouched), a bucket root that is gone (ENOENT from mkdir:
 * only the two shard directory levels are created), a write past RLIMIT_FSIZE in a child
 * process running the addon (EFBIG after the create: the partial file is removed), and a
 * tmpfs too small for the shard (ENOSPC from its allocation ahead, before any byte is written).
 */
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { crc32c, startWriteback, writeShardFileAsync } from '../erasure/index.js';
import { SHARD_WRITE_CHECKSUM, SHARD_WRITE_DIRECT } from '../erasure/native.js';
import {
  decodeShardPrefix, encodeShardHeader, encodeShardPrefix, findBadChunk, SHARD_PREFIX_CHECKSUMS, shardGeometry,
  Topology, type ShardHeaderInput,
} from '../layout/index.js';
import { allocPageAligned } from './aligned.js';
import { canWriteAtOnce, writeShardFile, writeShardFileAtOnce } from './shard-io.js';
import { cachedBytes, isWaitingForWriteback } from '../../test/helpers/page-cache.js';
import { withTmpfs } from '../../test/helpers/temp-folder.js';

const PAYLOAD_BYTES = 1024 * 1024 - 4096 + 5;
const ADDON_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'isal', 'build', 'Release', 'shmr_isal.node');

function headerInput(payloadBytes: number): ShardHeaderInput {
  return {
    topology: Topology.single, shard_index: 0, data_shards: 1, parity_shards: 0, ino: 7n, block_index: 3n,
    generation: 11n, block_bytes: Math.max(1 << 20, payloadBytes), data_bytes: payloadBytes, payload_bytes: payloadBytes,
    compression: 0, compressed_bytes: 0,
  };
}

function randomPayload(bytes: number): Buffer {
  return randomFillSync(Buffer.allocUnsafe(bytes));
}

function headerOnly(payload: Buffer): Buffer {
  const prefix = Buffer.allocUnsafe(shardGeometry(payload.byteLength).payloadOffset);
  encodeShardHeader(headerInput(payload.byteLength), payload.byteLength, prefix);
  return prefix;
}

/** `written` is a shard file holding `payload` that verifies as a reader checks it. */
function expectShardOf(written: Buffer, payload: Buffer): void {
  const decoded = decodeShardPrefix(written);
  if (!decoded.ok) throw new Error(`prefix does not decode: ${decoded.kind} ${decoded.field}`);
  const body = written.subarray(decoded.value.header.payload_offset);
  expect(body.equals(payload)).toBe(true);
  expect(findBadChunk(decoded.value, body, 0)).toBe(-1);
  expect(decoded.value.header.payload_checksum).toBe(crc32c(payload));
}


/**
 * Runs the addon's writeShardFileAsync of a zero payload in a child whose file size limit is
 * 64 KiB, SIGXFSZ ignored (inherited through exec), so the write gets EFBIG once the file
 * exists; returns the rejection's errno and syscall, and the prefix as the write left it.
 */
function addonWriteUnderSizeLimit(path: string, prefix: Buffer, payloadBytes: number, flags: number): [number, string, Buffer] {
  const script = `
    const isal = require(${JSON.stringify(ADDON_PATH)});
    const [path, prefix, payload] = [process.argv[1], Buffer.from(process.argv[2], 'base64'), Buffer.alloc(${payloadBytes})];
    isal.writeShardFileAsync(path, prefix, payload, ${SHARD_PREFIX_CHECKSUMS.chunkBytes}, ${SHARD_PREFIX_CHECKSUMS.tableStart},
      ${SHARD_PREFIX_CHECKSUMS.payloadChecksumAt}, ${SHARD_PREFIX_CHECKSUMS.tableChecksumAt},
      ${SHARD_PREFIX_CHECKSUMS.headerChecksumAt}, ${flags}).then(() => console.log('written'),
      (error) => console.log(error.errno + ' ' + error.syscall + ' ' + prefix.toString('base64')));`;
  const output = execFileSync('bash', [
    '-c', 'ulimit -f 64; trap "" XFSZ; exec "$0" -e "$1" "$2" "$3"', process.execPath, script, path,
    prefix.toString('base64'),
  ], { encoding: 'utf8' });
  const [errno, syscall, prefixAfter] = output.trim().split(' ');
  return [Number(errno), syscall ?? '', Buffer.from(prefixAfter ?? '', 'base64')];
}

let root: string;
beforeEach(() => {
  // On disk, not tmpfs: the direct test looks at what the page cache holds.
  root = mkdtempSync(join('/var/tmp', 'shmr-shard-write-'));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

describe('writeShardFileAtOnce', () => {
  /** The shard file writeShardFile stores from the JS checksums (encodeShardPrefix). */
  async function referenceShard(payload: Buffer): Promise<Buffer> {
    const reference = join(root, 'reference');
    const prefix = Buffer.allocUnsafe(shardGeometry(payload.byteLength).payloadOffset);
    encodeShardPrefix(headerInput(payload.byteLength), payload, prefix);
    await writeShardFile(reference, { prefix, payload, sync: false });
    return readFileSync(reference);
  }

  // keepCached: buffered, checksummed and written 512 KiB at a time (a last piece and chunk
  // that are short, or 4 MiB: eight whole pieces).
  it.each([
    [false, () => randomPayload(PAYLOAD_BYTES)],
    [true, () => randomPayload(PAYLOAD_BYTES)],
    [true, () => randomFillSync(allocPageAligned(4 * 1024 * 1024))],
  ])('writes the same file as the JS checksums and writeShardFile, and it verifies (keepCached %s)', async (keepCached, make) => {
    const payload = make();
    expect(canWriteAtOnce(payload)).toBe(true);
    const atOnce = join(root, 'ab', 'cd', 'at-once');
    await writeShardFileAtOnce(atOnce, { prefix: headerOnly(payload), payload, sync: true, checksum: true, keepCached });
    const written = readFileSync(atOnce);
    expect(written.equals(await referenceShard(payload))).toBe(true);
    expectShardOf(written, payload);
  });

  it('fills the checksums of a piecewise write that cannot create its file, for the retry elsewhere', async () => {
    const taken = join(root, 'taken');
    writeFileSync(taken, 'old');
    const payload = randomPayload(PAYLOAD_BYTES);
    const prefix = headerOnly(payload);
    const failure = writeShardFileAtOnce(taken, { prefix, payload, sync: false, checksum: true, keepCached: true });
    await expect(failure).rejects.toMatchObject({ code: 'EEXIST' });
    const retry = join(root, 'retry');
    await writeShardFileAtOnce(retry, { prefix, payload, sync: false, checksum: false, keepCached: true });
    expect(readFileSync(retry).equals(await referenceShard(payload))).toBe(true);
  });

  it('writes a prefix as given without checksum (a retry after the first attempt filled it)', async () => {
    const payload = randomPayload(5000);
    const prefix = headerOnly(payload);
    const first = join(root, 'first');
    await writeShardFileAtOnce(first, { prefix, payload, sync: false, checksum: true });
    const again = join(root, 'again');
    await writeShardFileAtOnce(again, { prefix, payload, sync: false, checksum: false });
    expect(readFileSync(again).equals(readFileSync(first))).toBe(true);
  });

  it('refuses a name that exists (EEXIST) and leaves that file alone', async () => {
    const path = join(root, 'taken');
    writeFileSync(path, 'old');
    const payload = randomPayload(100);
    const failure = writeShardFileAtOnce(path, { prefix: headerOnly(payload), payload, sync: false, checksum: true });
    await expect(failure).rejects.toMatchObject({ code: 'EEXIST', syscall: 'open', path });
    expect(readFileSync(path, 'utf8')).toBe('old');
  });

  it('creates the two shard directory levels but not a bucket root that is gone', async () => {
    const payload = randomPayload(100);
    const path = join(root, 'gone', 'ab', 'cd', 'shard');
    const failure = writeShardFileAtOnce(path, { prefix: headerOnly(payload), payload, sync: false, checksum: true });
    await expect(failure).rejects.toMatchObject({ code: 'ENOENT', syscall: 'mkdir' });
    expect(existsSync(join(root, 'gone'))).toBe(false);
  });

  it('removes the file when the write fails after the create (EFBIG past RLIMIT_FSIZE)', async () => {
    const path = join(root, 'ab', 'cd', 'too-big');
    const payload = randomPayload(256 * 1024);
    const prefix = headerOnly(payload);
    await writeShardFileAtOnce(join(root, 'ab', 'cd', 'fits'), { prefix, payload, sync: false, checksum: true });
    const [errno, syscall] = addonWriteUnderSizeLimit(path, prefix, payload.byteLength, SHARD_WRITE_CHECKSUM);
    expect(getSystemErrorName(errno)).toBe('EFBIG');
    expect(syscall).toBe('write');
    expect(existsSync(path)).toBe(false);
    expect(existsSync(join(root, 'ab', 'cd', 'fits'))).toBe(true);
  });

  it.each([
    ['copied into an aligned buffer first', (bytes: number) => randomPayload(bytes)],
    ['written where it is (page-aligned)', (bytes: number) => randomFillSync(allocPageAligned(bytes))],
  ])('writes whole pages past the page cache (O_DIRECT), %s, the same file as buffered, and it verifies', async (_, make) => {
    const payload = make(1024 * 1024);
    const direct = join(root, 'ab', 'cd', 'direct');
    await writeShardFileAtOnce(direct, { prefix: headerOnly(payload), payload, sync: false, checksum: true });
    const buffered = join(root, 'buffered');
    await writeShardFileAsync(buffered, {
      prefix: headerOnly(payload), payload, sync: false, makeDirectories: false, checksum: true,
      offsets: SHARD_PREFIX_CHECKSUMS,
    });
    expect(cachedBytes(buffered)).toBeGreaterThan(0);
    // Nothing of the direct file went through the page cache (reading it below would cache it).
    expect(cachedBytes(direct)).toBe(0);
    const written = readFileSync(direct);
    expect(written.equals(readFileSync(buffered))).toBe(true);
    const decoded = decodeShardPrefix(written);
    if (!decoded.ok) throw new Error(`prefix does not decode: ${decoded.kind} ${decoded.field}`);
    expect(written.subarray(decoded.value.header.payload_offset).equals(payload)).toBe(true);
    expect(findBadChunk(decoded.value, written.subarray(decoded.value.header.payload_offset), 0)).toBe(-1);
  });

  it('takes a payload beyond 1 MiB only as whole pages of page-aligned memory, up to 8 MiB', () => {
    const fourMiB = 4 * 1024 * 1024;
    expect(canWriteAtOnce(allocPageAligned(fourMiB))).toBe(true);
    expect(canWriteAtOnce(allocPageAligned(8 * 1024 * 1024))).toBe(true);
    // A plain buffer would be copied into the job thread's buffer: written in pieces instead.
    expect(canWriteAtOnce(Buffer.allocUnsafeSlow(fourMiB))).toBe(false);
    // Not whole pages: start or length off a page boundary, or too big for one job.
    expect(canWriteAtOnce(allocPageAligned(fourMiB + 4096).subarray(1, fourMiB + 1))).toBe(false);
    expect(canWriteAtOnce(allocPageAligned(fourMiB).subarray(0, fourMiB - 100))).toBe(false);
    expect(canWriteAtOnce(allocPageAligned(16 * 1024 * 1024))).toBe(false);
  });

  it('writes a 4 MiB page-aligned payload (a volume block) past the page cache, and it verifies', async () => {
    const payload = randomFillSync(allocPageAligned(4 * 1024 * 1024));
    const path = join(root, 'ab', 'cd', 'volume-block');
    await writeShardFileAtOnce(path, { prefix: headerOnly(payload), payload, sync: true, checksum: true });
    expect(cachedBytes(path)).toBe(0);
    const written = readFileSync(path);
    expectShardOf(written, payload);
  });

  it('keeps a 4 MiB volume block in the page cache (keepCached), dirty until startWriteback starts its write-back', async () => {
    const payload = randomFillSync(allocPageAligned(4 * 1024 * 1024));
    const path = join(root, 'ab', 'cd', 'volume-block');
    await writeShardFileAtOnce(path, { prefix: headerOnly(payload), payload, sync: false, checksum: true, keepCached: true });
    expect(cachedBytes(path)).toBeGreaterThanOrEqual(payload.byteLength);
    expect(isWaitingForWriteback(path)).toBe(true);
    expect(await startWriteback(path)).toBe(true);
    expect(isWaitingForWriteback(path)).toBe(false);
    expectShardOf(readFileSync(path), payload);
    expect(await startWriteback(join(root, 'gone'))).toBe(false);
  });

  it('fills the checksums of a piecewise write that fails midway and removes its file (EFBIG)', () => {
    const path = join(root, 'piecewise-too-big');
    // Five pieces: the size limit stops the first one's write.
    const payload = Buffer.alloc(4 * 512 * 1024 + 5);
    const [errno, syscall, prefixAfter] = addonWriteUnderSizeLimit(
      path, headerOnly(payload), payload.byteLength, SHARD_WRITE_CHECKSUM);
    expect(getSystemErrorName(errno)).toBe('EFBIG');
    expect(syscall).toBe('write');
    expect(existsSync(path)).toBe(false);
    const reference = Buffer.allocUnsafe(shardGeometry(payload.byteLength).payloadOffset);
    encodeShardPrefix(headerInput(payload.byteLength), payload, reference);
    expect(prefixAfter.equals(reference)).toBe(true);
  });

  it('allocates a buffered shard of 1 MiB or more before writing it, and a smaller one as it goes', async () => {
    const write = (name: string, payload: Buffer) => writeShardFileAsync(join(root, name), {
      prefix: headerOnly(payload), payload, sync: false, checksum: true, offsets: SHARD_PREFIX_CHECKSUMS, makeDirectories: false,
    });
    const large = randomPayload(4 * 1024 * 1024);
    await write('large', large);
    await write('small', randomPayload(256 * 1024));
    // Until its write-back, a file written into unallocated space has delayed-allocation
    // extents (ext4, XFS); one allocated ahead has a whole, unwritten one.
    const extentsOf = (name: string) => execFileSync('filefrag', ['-v', join(root, name)], { encoding: 'utf8' });
    expect(extentsOf('small')).toMatch(/delalloc/);
    expect(extentsOf('large')).not.toMatch(/delalloc/);
    expect(extentsOf('large')).toMatch(/unwritten/);
    expectShardOf(readFileSync(join(root, 'large')), large);
  });

  it('refuses a large shard that does not fit before writing any of it (ENOSPC from fallocate), checksums filled for the retry', async () => {
    const payload = randomFillSync(allocPageAligned(4 * 1024 * 1024));
    const prefix = headerOnly(payload);
    await withTmpfs(2 * 1024 * 1024, async (full) => {
      const path = join(full, 'ab', 'cd', 'shard');
      const failure = writeShardFileAtOnce(path, { prefix, payload, sync: false, checksum: true, keepCached: true });
      await expect(failure).rejects.toMatchObject({ code: 'ENOSPC', syscall: 'fallocate', path });
      expect(existsSync(path)).toBe(false);
    });
    const retry = join(root, 'retry');
    await writeShardFileAtOnce(retry, { prefix, payload, sync: false, checksum: false, keepCached: true });
    expect(readFileSync(retry).equals(await referenceShard(payload))).toBe(true);
  });

  it('removes a direct write that fails after the create (EFBIG past RLIMIT_FSIZE)', () => {
    const path = join(root, 'too-big');
    const payload = randomPayload(256 * 1024);
    const flags = SHARD_WRITE_CHECKSUM | SHARD_WRITE_DIRECT;
    const [errno, syscall] = addonWriteUnderSizeLimit(path, headerOnly(payload), payload.byteLength, flags);
    expect(getSystemErrorName(errno)).toBe('EFBIG');
    expect(syscall).toBe('write');
    expect(existsSync(path)).toBe(false);
  });

  it('rejects bad arguments with errors that name them', async () => {
    const payload = randomPayload(100);
    const prefix = headerOnly(payload);
    await expect(writeShardFileAsync(join(root, 'x'), {
      prefix, payload, sync: false, makeDirectories: false, checksum: true,
      offsets: { chunkBytes: 4096, tableStart: 128, payloadChecksumAt: 124, tableChecksumAt: 64, headerChecksumAt: 60 },
    })).rejects.toThrow(/header checksum after the other two/);
    await expect(writeShardFileAsync(join(root, 'x'), {
      prefix: prefix.subarray(0, 100), payload, sync: false, makeDirectories: false, checksum: true,
      offsets: { chunkBytes: 4096, tableStart: 128, payloadChecksumAt: 60, tableChecksumAt: 64, headerChecksumAt: 124 },
    })).rejects.toThrow(/tableStart 128 leaves no 4 bytes in a prefix of 100/);
    expect(existsSync(join(root, 'x'))).toBe(false);
  });
});
