/**
 * Test vectors: binary files written by the real TypeScript encoder, plus manifest.json with
 * what the real TypeScript decoder makes of each, for the C and Rust tests to check against.
 *
 * Cases, per struct (generic, from the layout): `normal` (seeded random fields), `zero` and
 * `max` (every field at its bounds), and one corrupt vector per check the decoder makes
 * (short, each fixed value, each checksum, each reserved field, each enum field). Shard files
 * (header, chunk table, padding, payload) come from encodeShardPrefix, with corrupt chunk
 * table, payload and truncated cases.
 *
 * Invariants:
 * - Deterministic: seeded by struct name, no clock, no randomness; same bytes on every run.
 * - Every expectation in the manifest is what the TypeScript decoder returns, and every corrupt
 *   vector is asserted to fail the way it was built to, so a vector never means something else.
 */
import { assert } from '../../userspace/src/assert.js';
import { crc32c } from '../../userspace/src/erasure/index.js';
import * as layout from '../../userspace/src/layout/index.js';
import type { DecodeFailure, StructLayout } from '../../userspace/src/layout/index.js';
import { CHUNK_BYTES, SECTOR_BYTES } from '../../userspace/src/limits.js';
import {
  fixedValueKind,
  type LayoutField,
  type LayoutModel,
  type LayoutStruct,
} from './read-layout.js';
import { snakeCase } from './text.js';

/** The manifest's name among the vector files. */
export const MANIFEST_NAME = 'manifest.json';

type Enums = Readonly<Record<string, Readonly<Record<string, number>>>>;
type FieldValue = number | bigint | Buffer;

/** A decode failure in manifest form: the DecodeErrorKind name and number, and the field. */
export interface FailureExpectation {
  readonly ok: false;
  readonly error: string;
  readonly errorCode: number;
  readonly field: string;
}

/** What the TypeScript decoder says of a vector: its fields (hex strings), or the failure. */
export type Expectation =
  | { readonly ok: true; readonly fields: Readonly<Record<string, string>> }
  | FailureExpectation;

/** Shard-file checks beyond the header struct (shard-format.ts), for `kind: 'shard'`. */
export interface ShardExpectation {
  /** decodeShardPrefix: header fields and chunk table checksum. */
  readonly prefix: { readonly ok: true } | FailureExpectation;
  /** Whether the file holds the payload after the prefix, or the prefix only. */
  readonly payloadIncluded: boolean;
  /** findBadChunk over the whole payload: -1 when every chunk matches its table entry. */
  readonly badChunkIndex: number | null;
  /** Whether the payload matches `payload_checksum`. */
  readonly payloadChecksumOk: boolean | null;
}

/** One vector file and what decoding it must give. */
export interface VectorEntry {
  readonly name: string;
  readonly file: string;
  readonly layout: string;
  readonly kind: 'struct' | 'shard';
  readonly case: 'normal' | 'boundary' | 'corrupt';
  readonly description: string;
  /** Struct-level decode (decodeStruct) of the structure at the start of the file. */
  readonly expect: Expectation;
  readonly shard?: ShardExpectation;
}

/** Every vector file by name, manifest.json included. */
export function buildVectors(model: LayoutModel): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const entries: VectorEntry[] = [];
  const add = (entry: VectorEntry, bytes: Buffer): void => {
    assert(!files.has(entry.file), entry.file);
    files.set(entry.file, bytes);
    entries.push(entry);
  };
  for (const struct of model.structs) {
    for (const [entry, bytes] of structVectors(struct)) add(entry, bytes);
  }
  const shardHeader = model.structs.find((struct) => struct.name === 'ShardHeader');
  assert(shardHeader !== undefined, 'the layout has no ShardHeader');
  for (const [entry, bytes] of shardVectors(shardHeader)) add(entry, bytes);
  files.set(MANIFEST_NAME, Buffer.from(JSON.stringify(manifest(entries), null, 2) + '\n'));
  return files;
}

/** Inputs whose CRC32C the manifest gives, so C and Rust check theirs against ISA-L's. */
const CRC32C_INPUTS = [
  Buffer.from('123456789'),
  Buffer.alloc(0),
  Buffer.alloc(32),
  Buffer.alloc(32, 0xff),
];

function manifest(entries: readonly VectorEntry[]): object {
  return {
    generatedBy: 'codegen/src/vectors.ts (npm run codegen)',
    description:
      'Binary vectors from the TypeScript encoder; each entry says what the TypeScript ' +
      'decoder makes of its file. Integers are hex strings, bytes fields hex without 0x.',
    decodeErrorKinds: layout.DecodeErrorKind,
    sectorBytes: SECTOR_BYTES,
    chunkBytes: CHUNK_BYTES,
    crc32c: CRC32C_INPUTS.map((input) => ({
      input: input.toString('hex'),
      value: hex(crc32c(input)),
    })),
    vectors: entries,
  };
}

/** The runtime layout object of `struct`, checked against what the reader parsed. */
function runtimeLayout(struct: LayoutStruct): StructLayout {
  const runtime = (layout as unknown as Record<string, StructLayout | undefined>)[struct.name];
  assert(runtime !== undefined, `${struct.name} is not exported from layout/index.ts`);
  assert.equal(runtime.sizeBytes, struct.sizeBytes, struct.name);
  const runtimeFields = Object.entries(runtime.fields);
  assert.equal(runtimeFields.length, struct.fields.length, struct.name);
  for (const [index, field] of struct.fields.entries()) {
    const [name, spec] = runtimeFields[index]!;
    assert.equal(name, field.name);
    assert.equal(spec.offset, field.offsetBytes, name);
    assert.equal(spec.type, field.type, name);
  }
  return runtime;
}

function enumsOf(struct: LayoutStruct): Enums {
  const enums: Record<string, Readonly<Record<string, number>>> = {};
  for (const field of struct.fields) {
    if (field.enumName === undefined) continue;
    const members = (layout as unknown as Record<string, Record<string, number>>)[field.enumName];
    assert(members !== undefined, field.enumName);
    enums[field.enumName] = members;
  }
  return enums;
}

/** The fields encodeStruct takes: not reserved, not fixed, not checksums. */
function isInput(field: LayoutField): boolean {
  return !field.isReserved && field.fixedValue === undefined && !field.isChecksum;
}

type Bound = 'normal' | 'zero' | 'max';

/** The value of `field` for a `bound` vector; `random` feeds the normal case. */
function fieldValue(
  field: LayoutField,
  bound: Bound,
  random: () => number,
  enums: Enums,
): FieldValue {
  if (field.type === 'bytes') {
    if (bound !== 'normal') return Buffer.alloc(field.widthBytes, bound === 'max' ? 0xff : 0);
    return Buffer.from(Array.from({ length: field.widthBytes }, () => random() & 0xff));
  }
  if (field.enumName !== undefined) {
    const values = Object.values(enums[field.enumName]!).sort((left, right) => left - right);
    if (bound === 'normal') return values[random() % values.length]!;
    return bound === 'max' ? values.at(-1)! : values[0]!;
  }
  if (field.type === 'u64') {
    if (bound === 'normal') return (BigInt(random()) << 32n) | BigInt(random());
    return bound === 'max' ? 2n ** 64n - 1n : 0n;
  }
  const bits = 8 * field.widthBytes;
  if (bound === 'normal') return bits === 32 ? random() : random() % 2 ** bits;
  return bound === 'max' ? 2 ** bits - 1 : 0;
}

function encodeWith(struct: LayoutStruct, bound: Bound): Buffer {
  const random = mulberry32(fnv1a(struct.name));
  const enums = enumsOf(struct);
  const input: Record<string, FieldValue> = {};
  for (const field of struct.fields) {
    if (isInput(field)) input[field.name] = fieldValue(field, bound, random, enums);
  }
  // Start from a non-zero buffer: the encoder must overwrite every byte, reserved ones included.
  const bytes = Buffer.alloc(struct.sizeBytes, 0xa5);
  layout.encodeStruct(runtimeLayout(struct), input as never, bytes);
  return bytes;
}

/** The struct-level decode of `bytes` as the TypeScript decoder reports it, in manifest form. */
export function expectationOf(struct: LayoutStruct, bytes: Buffer): Expectation {
  const decoded = layout.decodeStruct(runtimeLayout(struct), bytes, enumsOf(struct));
  if (!decoded.ok) return failureExpectation(decoded);
  const fields: Record<string, string> = {};
  for (const field of struct.fields) {
    const value = (decoded.value as Record<string, FieldValue>)[field.name]!;
    fields[field.name] = Buffer.isBuffer(value) ? value.toString('hex') : hex(value);
  }
  return { ok: true, fields };
}

function failureExpectation(failure: DecodeFailure): FailureExpectation {
  const errorCode = layout.DecodeErrorKind[failure.kind];
  return { ok: false, error: failure.kind, errorCode, field: failure.field };
}

/** The normal, boundary and corrupt vectors of one struct, encoded by encodeStruct. */
function structVectors(struct: LayoutStruct): Array<[VectorEntry, Buffer]> {
  const base = snakeCase(struct.name).replace(/_/g, '-');
  const entry = (
    suffix: string,
    testCase: VectorEntry['case'],
    description: string,
    bytes: Buffer,
  ): [VectorEntry, Buffer] => {
    const name = `${base}-${suffix}`;
    const expect = expectationOf(struct, bytes);
    const file = `${name}.bin`;
    const kind = 'struct';
    return [{ name, file, layout: struct.name, kind, case: testCase, description, expect }, bytes];
  };
  const normal = encodeWith(struct, 'normal');
  const vectors = [
    entry('normal', 'normal', 'Seeded random field values.', normal),
    entry('zero', 'boundary', 'Every field at its minimum.', encodeWith(struct, 'zero')),
    entry('max', 'boundary', 'Every field at its maximum.', encodeWith(struct, 'max')),
  ];
  for (const [good] of vectors) assert(good.expect.ok, good.name);
  for (const corrupt of corruptions(struct, normal)) {
    const built = entry(corrupt.suffix, 'corrupt', corrupt.description, corrupt.bytes);
    const [{ expect }] = built;
    assert(!expect.ok, corrupt.suffix);
    assert.deepEqual([expect.error, expect.field], [corrupt.kind, corrupt.field], corrupt.suffix);
    vectors.push(built);
  }
  return vectors;
}

interface Corruption {
  readonly suffix: string;
  readonly description: string;
  readonly bytes: Buffer;
  /** The failure the vector was built to cause. */
  readonly kind: string;
  readonly field: string;
}

/** Copies `normal`, applies `change`, and recomputes the checksums when `isResealed`. */
type Damage = (change: (bytes: Buffer) => void, isResealed: boolean) => Buffer;

/** One damaged copy of `normal` per check decodeStruct makes. */
function corruptions(struct: LayoutStruct, normal: Buffer): Corruption[] {
  const short = Buffer.from(normal.subarray(0, struct.sizeBytes - 1));
  const list: Corruption[] = [
    { suffix: 'short', description: 'One byte short.', bytes: short, kind: 'short', field: '' },
  ];
  const damaged: Damage = (change, isResealed) => {
    const bytes = Buffer.from(normal);
    change(bytes);
    if (isResealed) reseal(struct, bytes);
    return bytes;
  };
  for (const field of struct.fields) {
    const corruption = fieldCorruption(struct, field, damaged);
    if (corruption !== undefined) list.push(corruption);
    if (field.isChecksum) list.push(...checksumCorruptions(struct, field, damaged));
  }
  return list;
}

/**
 * The corrupt vector of a fixed value (a flipped bit), a reserved field (a non-zero byte) or an
 * enum field (one past its largest member), with valid checksums so that check is reached.
 */
function fieldCorruption(
  struct: LayoutStruct,
  field: LayoutField,
  damaged: Damage,
): Corruption | undefined {
  const at = field.offsetBytes;
  const corruption = (suffix: string, description: string, bytes: Buffer, kind: string) =>
    ({ suffix: `${suffix}-${field.name}`, description, bytes, kind, field: field.name });
  if (field.fixedValue !== undefined) {
    const bytes = damaged((target) => void (target[at]! ^= 0x01), true);
    return corruption('bad', `${field.name} has a bit flipped.`, bytes, fixedValueKind(field));
  }
  if (field.isReserved) {
    const bytes = damaged((target) => void (target[at + field.widthBytes - 1] = 0x01), true);
    return corruption('nonzero', `${field.name} is not zero.`, bytes, 'reserved');
  }
  if (field.enumName === undefined) return undefined;
  const invalid = Math.max(...Object.values(enumsOf(struct)[field.enumName]!)) + 1;
  if (invalid >= 2 ** (8 * field.widthBytes)) return undefined;
  const bytes = damaged((target) => void target.writeUIntLE(invalid, at, field.widthBytes), true);
  const description = `${field.name} is ${invalid}, not a ${field.enumName}.`;
  return corruption('invalid', description, bytes, 'field');
}

/** A flipped bit in the checksum itself, and one in a plain data field it covers. */
function checksumCorruptions(
  struct: LayoutStruct,
  checksum: LayoutField,
  damaged: Damage,
): Corruption[] {
  const stored = damaged((target) => void (target[checksum.offsetBytes]! ^= 0x01), false);
  const list: Corruption[] = [
    {
      suffix: `bad-${checksum.name}`,
      description: `${checksum.name} has a bit flipped.`,
      bytes: stored,
      kind: 'checksum',
      field: checksum.name,
    },
  ];
  // Fixed values and enums have checks of their own, so the flip goes into a plain field.
  const covered = struct.fields.find(
    (field) =>
      field.offsetBytes < checksum.offsetBytes && isInput(field) && field.enumName === undefined,
  );
  if (covered === undefined) return list;
  list.push({
    suffix: `flipped-${covered.name}`,
    description: `${covered.name} has a bit flipped; ${checksum.name} no longer matches.`,
    bytes: damaged((target) => void (target[covered.offsetBytes]! ^= 0x01), false),
    kind: 'checksum',
    field: checksum.name,
  });
  return list;
}

/** Recomputes every checksum field, in offset order, as encodeStruct does. */
function reseal(struct: LayoutStruct, bytes: Buffer): void {
  for (const field of struct.fields) {
    if (!field.isChecksum) continue;
    bytes.writeUInt32LE(crc32c(bytes.subarray(0, field.offsetBytes)), field.offsetBytes);
  }
}

/** A hex string of an unsigned integer: how the manifest spells integers (u64 exceeds JSON). */
function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

/** FNV-1a of a string: a stable seed per struct, so adding a struct changes no other vector. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

/** mulberry32: a small seeded generator of uint32 values; the vectors need no better. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = Math.imul(state ^ (state >>> 15), state | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return (value ^ (value >>> 14)) >>> 0;
  };
}

/** A deterministic payload: a byte pattern that differs between chunks and positions. */
function payloadOf(payloadBytes: number, seed: number): Buffer {
  const payload = Buffer.alloc(payloadBytes);
  for (let index = 0; index < payloadBytes; index++) {
    payload[index] = (index * 31 + seed + (index >> 12)) & 0xff;
  }
  return payload;
}

/** A normal shard file: who the shard is and how much payload it holds. */
interface ShardCase {
  readonly name: string;
  readonly description: string;
  readonly topology: keyof typeof layout.Topology;
  readonly shardIndex: number;
  readonly dataShards: number;
  readonly parityShards: number;
  readonly payloadBytes: number;
  /** Whether to store the payload after the prefix (false keeps a large case small). */
  readonly isPayloadIncluded: boolean;
  /** A compressed block: its algorithm and the length of its compressed stream. */
  readonly compression?: { readonly algorithm: 'zstd' | 'lz4'; readonly compressedBytes: number };
}

/** Chunks whose table ends one entry past the first sector, pushing the payload a sector on. */
const CHUNKS_PAST_SECTOR = Math.floor((SECTOR_BYTES - 128) / 4) + 1;

/** The normal shard files: every topology, an empty payload, a chunk table past one sector. */
const SHARD_CASES: readonly ShardCase[] = [
  {
    name: 'shard-single',
    description: 'Single topology; 3 chunks, the last one short.',
    topology: 'single', shardIndex: 0, dataShards: 1, parityShards: 0,
    payloadBytes: 10_000, isPayloadIncluded: true,
  },
  {
    name: 'shard-erasure',
    description: 'Erasure 4+2, the last parity shard; 2 whole chunks.',
    topology: 'erasure', shardIndex: 5, dataShards: 4, parityShards: 2,
    payloadBytes: 2 * CHUNK_BYTES, isPayloadIncluded: true,
  },
  {
    name: 'shard-mirror',
    description: 'Mirror of 3 copies, copy 2; a 1-byte payload.',
    topology: 'mirror', shardIndex: 2, dataShards: 3, parityShards: 0,
    payloadBytes: 1, isPayloadIncluded: true,
  },
  {
    name: 'shard-empty',
    description: 'Empty payload: no chunk table.',
    topology: 'single', shardIndex: 0, dataShards: 1, parityShards: 0,
    payloadBytes: 0, isPayloadIncluded: true,
  },
  {
    name: 'shard-compressed',
    description: 'Erasure 4+2 of a zstd-compressed block, data shard 1 of its stream.',
    topology: 'erasure', shardIndex: 1, dataShards: 4, parityShards: 2,
    payloadBytes: 3 * CHUNK_BYTES, isPayloadIncluded: true,
    compression: { algorithm: 'zstd', compressedBytes: 4 * 3 * CHUNK_BYTES - 5 },
  },
  {
    name: 'shard-table-past-sector',
    description: 'Chunk table one entry past the first sector; prefix only, no payload.',
    topology: 'erasure', shardIndex: 0, dataShards: 2, parityShards: 1,
    payloadBytes: CHUNKS_PAST_SECTOR * CHUNK_BYTES, isPayloadIncluded: false,
  },
];

/** Header fields of a shard case; the rest come from encodeShardPrefix. */
function shardInput(shardCase: ShardCase): layout.ShardHeaderInput {
  return {
    topology: layout.Topology[shardCase.topology],
    shard_index: shardCase.shardIndex,
    data_shards: shardCase.dataShards,
    parity_shards: shardCase.parityShards,
    ino: 0x1234_5678_9abcn,
    block_index: 2n ** 40n + 7n,
    generation: 2n ** 63n + 1n,
    block_bytes: 1 << 20,
    data_bytes: (1 << 20) - 3,
    payload_bytes: shardCase.payloadBytes,
    compression: layout.Compression[shardCase.compression?.algorithm ?? 'none'],
    compressed_bytes: shardCase.compression?.compressedBytes ?? 0,
  };
}

/** The shard files: the normal cases, then damaged copies of the first. */
function shardVectors(header: LayoutStruct): Array<[VectorEntry, Buffer]> {
  const vectors = SHARD_CASES.map((shardCase, index) => {
    const file = encodeShardFile(shardCase, payloadOf(shardCase.payloadBytes, index));
    return shardVector(header, { ...shardCase, testCase: 'normal', file });
  });
  const single = vectors[0]![1];
  const corrupt = (name: string, description: string, change: (bytes: Buffer) => Buffer) => {
    const file = change(Buffer.from(single));
    const shardFile: ShardFile = {
      name,
      description,
      testCase: 'corrupt',
      file,
      isPayloadIncluded: true,
    };
    vectors.push(shardVector(header, shardFile));
  };
  corrupt('shard-bad-chunk-table', 'A chunk table entry has a bit flipped.', (bytes) => {
    bytes[header.sizeBytes + 5]! ^= 0x01;
    return bytes;
  });
  corrupt('shard-bad-payload', 'Payload chunk 1 has a bit flipped.', (bytes) => {
    bytes[SECTOR_BYTES + CHUNK_BYTES + 9]! ^= 0x80;
    return bytes;
  });
  corrupt('shard-short-table', 'The file ends inside the chunk table.', (bytes) =>
    bytes.subarray(0, header.sizeBytes + 8),
  );
  return vectors;
}

/** Prefix from encodeShardPrefix, then the payload unless the case leaves it out. */
function encodeShardFile(shardCase: ShardCase, payload: Buffer): Buffer {
  const prefixBytes = layout.shardGeometry(payload.byteLength).payloadOffset;
  const fileBytes = prefixBytes + (shardCase.isPayloadIncluded ? payload.byteLength : 0);
  // Non-zero fill: encodeShardPrefix must write the padding between table and payload.
  const file = Buffer.alloc(fileBytes, 0xa5);
  layout.encodeShardPrefix(shardInput(shardCase), payload, file.subarray(0, prefixBytes));
  if (shardCase.isPayloadIncluded) payload.copy(file, prefixBytes);
  return file;
}

interface ShardFile {
  readonly name: string;
  readonly testCase: VectorEntry['case'];
  readonly description: string;
  readonly file: Buffer;
  readonly isPayloadIncluded: boolean;
}

/**
 * What shard-format.ts makes of a shard file beyond its header struct: the prefix check
 * (decodeShardPrefix) and, when the payload follows the prefix, its chunks and checksum.
 */
export function shardExpectationOf(file: Buffer, isPayloadIncluded: boolean): ShardExpectation {
  const prefix = layout.decodeShardPrefix(file);
  const absent = { payloadIncluded: false, badChunkIndex: null, payloadChecksumOk: null };
  if (!prefix.ok) return { prefix: failureExpectation(prefix), ...absent };
  if (!isPayloadIncluded) return { prefix: { ok: true }, ...absent };
  const start = prefix.value.header.payload_offset;
  const payload = file.subarray(start, start + prefix.value.header.payload_bytes);
  return {
    prefix: { ok: true },
    payloadIncluded: true,
    badChunkIndex: layout.findBadChunk(prefix.value, payload, 0),
    payloadChecksumOk: crc32c(payload) === prefix.value.header.payload_checksum,
  };
}

/** A shard file's entry: struct-level, prefix (decodeShardPrefix) and chunk expectations. */
function shardVector(header: LayoutStruct, shardFile: ShardFile): [VectorEntry, Buffer] {
  const { name, file } = shardFile;
  const entry: VectorEntry = {
    name,
    file: `${name}.bin`,
    layout: header.name,
    kind: 'shard',
    case: shardFile.testCase,
    description: shardFile.description,
    expect: expectationOf(header, file),
    shard: shardExpectationOf(file, shardFile.isPayloadIncluded),
  };
  return [entry, file];
}
