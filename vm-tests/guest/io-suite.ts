/**
 * The byte-level I/O suite, the same code for every target: a file in the shmr FUSE mount,
 * /dev/nbdN backed by a shmr volume, /dev/shmr and /dev/shmrb0 from the kernel module.
 *
 * Every byte written is also written to an in-memory model of the target; every check reads
 * the target back and compares SHA-256 digests with the model's, range by range. Patterns
 * come from a seeded generator, so a failure repeats with the same seed.
 *
 * Cases: random writes (sizes from 1 byte to several blocks at random offsets), overlapping
 * overwrites, unaligned writes around block boundaries, reads past the end (a device ends at
 * its size and refuses writes there with ENOSPC; a file ends at its length and reads holes as
 * zeros), fsync then a fresh descriptor after dropping the page cache, and a whole-target
 * comparison at the end.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { check, type Case } from './report.js';

/** What the suite runs on. */
export interface IoTarget {
  /** Name in case names: fuse, nbd, kmod, kmod-mirror, blk. */
  readonly name: string;
  readonly path: string;
  /** A device has a fixed size; a file grows as it is written. */
  readonly kind: 'device' | 'file';
  /** Device size, or the window of the file the suite writes in. */
  readonly sizeBytes: number;
  /** The block size of the store below: writes are placed around its boundaries. */
  readonly blockBytes: number;
}

const MiB = 1024 * 1024;
const COMPARE_BYTES = 1 * MiB;

/** xorshift128+: a small seeded generator, reproducible across runs. */
export class Random {
  private state0: bigint;
  private state1: bigint;

  constructor(seed: number) {
    this.state0 = BigInt(seed) * 0x9e3779b97f4a7c15n + 1n;
    this.state1 = (BigInt(seed) ^ 0xdeadbeefn) * 0xbf58476d1ce4e5b9n + 7n;
    for (let index = 0; index < 8; index++) this.next();
  }

  private next(): bigint {
    const mask = (1n << 64n) - 1n;
    let s1 = this.state0;
    const s0 = this.state1;
    this.state0 = s0;
    s1 ^= (s1 << 23n) & mask;
    this.state1 = s1 ^ s0 ^ (s1 >> 17n) ^ (s0 >> 26n);
    return (this.state1 + s0) & mask;
  }

  /** An integer in [0, bound). */
  below(bound: number): number {
    return Number(this.next() % BigInt(bound));
  }

  /** `length` bytes of a pattern: counters, runs or noise, so no two writes look alike. */
  bytes(length: number): Buffer {
    const out = Buffer.alloc(length);
    const style = this.below(3);
    const base = this.below(256);
    if (style === 0)
      for (let index = 0; index < length; index++) out[index] = (base + index) & 0xff;
    else if (style === 1) out.fill(base === 0 ? 1 : base);
    else {
      const word = Buffer.alloc(8);
      for (let index = 0; index < length; index += 8) {
        word.writeBigUInt64LE(this.next());
        word.copy(out, index, 0, Math.min(8, length - index));
      }
    }
    return out;
  }
}

/** The target and its model, kept in step by `write`. */
class Modelled {
  readonly model: Buffer;
  /** File length (files) or size (devices). */
  length: number;
  fd: number;

  constructor(readonly target: IoTarget) {
    // A file gets room past its window for the hole that `pastEnd` makes.
    this.model = Buffer.alloc(
      target.sizeBytes + (target.kind === 'file' ? 8 * target.blockBytes : 0),
    );
    this.length = target.kind === 'device' ? target.sizeBytes : 0;
    this.fd = openSync(target.path, target.kind === 'file' ? 'w+' : 'r+');
  }

  write(offset: number, data: Buffer): void {
    check(offset + data.byteLength <= this.model.byteLength, 'write outside the model');
    let done = 0;
    while (done < data.byteLength) {
      done += writeSync(this.fd, data, done, data.byteLength - done, offset + done);
    }
    data.copy(this.model, offset);
    this.length = Math.max(this.length, offset + data.byteLength);
  }

  /** Reads `[offset, offset + length)` as pread would, looping over short reads. */
  read(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const got = readSync(this.fd, out, done, length - done, offset + done);
      if (got === 0) break;
      done += got;
    }
    return out.subarray(0, done);
  }

  /** Compares `[offset, offset + length)` of the target with the model, by digest. */
  verify(offset: number, length: number, what: string): void {
    for (let at = offset; at < offset + length; at += COMPARE_BYTES) {
      const size = Math.min(COMPARE_BYTES, offset + length - at);
      const expected = this.model.subarray(at, Math.min(at + size, this.length));
      const actual = this.read(at, size);
      if (digest(actual) !== digest(expected)) {
        throw new Error(
          `${what}: bytes [${at}, ${at + size}) differ from what was written ` +
            `(${actual.byteLength} bytes read, first difference at ${firstDifference(actual, expected)})`,
        );
      }
    }
  }

  reopen(): void {
    closeSync(this.fd);
    dropCaches();
    this.fd = openSync(this.target.path, 'r+');
  }

  close(): void {
    closeSync(this.fd);
  }
}

export function digest(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function firstDifference(left: Buffer, right: Buffer): number {
  const length = Math.min(left.byteLength, right.byteLength);
  for (let index = 0; index < length; index++) if (left[index] !== right[index]) return index;
  return length;
}

/**
 * Drops clean page cache, so the next read goes to the store (FUSE daemon, NBD, module).
 * Only inside the guest (init.sh sets SHMR_VM_GUEST): on a shared host it would disturb
 * everyone else's benchmarks.
 */
export function dropCaches(): void {
  if (process.env['SHMR_VM_GUEST'] === '1') writeFileSync('/proc/sys/vm/drop_caches', '3\n');
}

function errorCode(body: () => unknown): string {
  try {
    body();
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

/** A random write length: mostly small and sub-block, sometimes several blocks. */
function writeLength(random: Random, blockBytes: number): number {
  const choice = random.below(10);
  if (choice < 3) return 1 + random.below(512);
  if (choice < 7) return 1 + random.below(blockBytes);
  return 1 + random.below(3 * blockBytes);
}

function randomWrites(io: Modelled, random: Random, count: number): void {
  const { sizeBytes, blockBytes } = io.target;
  for (let index = 0; index < count; index++) {
    const length = Math.min(writeLength(random, blockBytes), sizeBytes);
    const offset = random.below(sizeBytes - length + 1);
    io.write(offset, random.bytes(length));
    if (index % 16 === 0) {
      const readAt = random.below(sizeBytes);
      io.verify(
        readAt,
        Math.min(1 + random.below(2 * blockBytes), sizeBytes - readAt),
        `read ${index}`,
      );
    }
  }
  io.verify(0, sizeBytes, 'after random writes');
}

function overwrites(io: Modelled, random: Random): void {
  const { sizeBytes, blockBytes } = io.target;
  const base = random.below(Math.max(1, sizeBytes - 4 * blockBytes));
  for (let round = 0; round < 24; round++) {
    const offset = base + random.below(2 * blockBytes);
    io.write(offset, random.bytes(1 + random.below(2 * blockBytes)));
  }
  io.verify(base, Math.min(5 * blockBytes, sizeBytes - base), 'after overwrites');
}

function unaligned(io: Modelled, random: Random): void {
  const { sizeBytes, blockBytes } = io.target;
  const boundaries = [blockBytes, 2 * blockBytes, 4096, sizeBytes - blockBytes].filter(
    (at) => at > 1 && at < sizeBytes - 4097,
  );
  for (const boundary of boundaries) {
    for (const [shift, length] of [
      [-1, 1],
      [0, 1],
      [-1, 2],
      [-7, 4097],
      [-4095, 4095],
      [-3, 3],
    ] as const) {
      const offset = boundary + shift;
      if (offset < 0 || offset + length > sizeBytes) continue;
      io.write(offset, random.bytes(length));
      io.verify(
        Math.max(0, offset - 512),
        Math.min(length + 1024, sizeBytes - Math.max(0, offset - 512)),
        `around ${boundary}`,
      );
    }
  }
}

function pastEnd(io: Modelled, random: Random): void {
  const { sizeBytes, kind } = io.target;
  check(sizeBytes > 4096, 'the target is too small');
  if (kind === 'device') {
    check(
      io.read(sizeBytes, 4096).byteLength === 0,
      'a read at the end of the device returned bytes',
    );
    check(io.read(sizeBytes + 12345, 100).byteLength === 0, 'a read past the end returned bytes');
    const tail = io.read(sizeBytes - 100, 4096);
    check(
      tail.byteLength === 100,
      `a read across the end returned ${tail.byteLength} bytes, not 100`,
    );
    check(digest(tail) === digest(io.model.subarray(sizeBytes - 100)), 'the last 100 bytes differ');
    const code = errorCode(() => writeSync(io.fd, Buffer.alloc(10, 1), 0, 10, sizeBytes));
    check(code === 'ENOSPC', `a write at the end of the device gave ${code}, not ENOSPC`);
    return;
  }
  // A file: extend it with a hole, then read at, across and past its end.
  const end = io.length;
  const holeEnd = end + 3 * io.target.blockBytes + 17;
  io.write(holeEnd, random.bytes(10));
  io.verify(end, holeEnd + 10 - end, 'the hole and what follows');
  check(
    io.read(holeEnd + 10, 100).byteLength === 0,
    'a read at the end of the file returned bytes',
  );
  check(
    io.read(holeEnd + 5, 100).byteLength === 5,
    'a read across the end of the file is not short',
  );
}

function fsyncReopen(io: Modelled, random: Random): void {
  const { sizeBytes, blockBytes } = io.target;
  for (let index = 0; index < 8; index++) {
    const length = 1 + random.below(2 * blockBytes);
    io.write(random.below(sizeBytes - length), random.bytes(length));
  }
  fsyncSync(io.fd);
  io.reopen();
  io.verify(0, io.length, 'after fsync and a fresh open');
}

/** The suite's cases for `target`; each opens the target afresh and checks it whole. */
export function ioCases(target: IoTarget, seed: number, writeCount: number): Case[] {
  let io: Modelled | undefined;
  const random = new Random(seed);
  const step = (name: string, body: (io: Modelled) => void, timeoutMs = 600_000): Case => ({
    name: `io ${target.name} ${name}`,
    timeoutMs,
    run: async () => {
      io ??= new Modelled(target);
      body(io);
    },
  });
  return [
    step('random-writes', (each) => randomWrites(each, random, writeCount)),
    step('overwrites', (each) => overwrites(each, random)),
    step('unaligned', (each) => unaligned(each, random)),
    step('read-past-end', (each) => pastEnd(each, random)),
    step('fsync-reopen', (each) => fsyncReopen(each, random)),
    step('whole-compare', (each) => {
      each.reopen();
      each.verify(0, target.kind === 'device' ? target.sizeBytes : each.length, 'whole target');
      each.close();
    }),
  ];
}
