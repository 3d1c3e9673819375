/**
 * Generic encoder and decoder of `StructLayout` structures.
 *
 * Invariants:
 * - encodeStruct writes every byte of the target range: reserved fields as zero, fixed values
 *   from the layout, the checksum last. No stale buffer content ever reaches disk.
 * - decodeStruct never throws on bad input (disk contents are input): it returns a
 *   `DecodeFailure` naming the kind and the field.
 */
import { assert } from '../assert.js';
import { crc32c } from '../erasure/index.js';
import type { Decoded, EncodeInput, FieldLayout, StructLayout } from './types.js';

/** Why a structure failed to decode. The kernel module's decoder reports the same kinds. */
export const DecodeErrorKind = {
  /** The buffer is shorter than the structure. */
  short: 1,
  /** A field that must hold a fixed value (magic) does not. */
  magic: 2,
  /** The format version is one this reader does not know. */
  version: 3,
  /** The structure's own checksum does not match its bytes. */
  checksum: 4,
  /** A reserved field is not zero. */
  reserved: 5,
  /** A field holds a value outside its enum or its valid range. */
  field: 6,
  /** The payload described by the structure does not match its checksum. */
  payload: 7,
} as const;
export type DecodeErrorKind = keyof typeof DecodeErrorKind;

/** A failed decode: what kind of failure, and in which field. */
export interface DecodeFailure {
  readonly ok: false;
  readonly kind: DecodeErrorKind;
  readonly field: string;
  readonly detail: string;
}

/** A successful decode. */
export interface DecodeSuccess<S extends StructLayout> {
  readonly ok: true;
  readonly value: Decoded<S>;
}

export type DecodeResult<S extends StructLayout> = DecodeSuccess<S> | DecodeFailure;

/** Checks the layout rules of types.ts; throws (a bug in the layout source) when one fails. */
export function checkLayout(name: string, layout: StructLayout): void {
  let offsetExpected = 0;
  for (const [field, spec] of Object.entries(layout.fields)) {
    assert.equal(spec.offset, offsetExpected, `${name}.${field}: not contiguous`);
    if (spec.type !== 'bytes') {
      assert.equal(spec.width, scalarWidth(spec), `${name}.${field}: width`);
      assert.equal(spec.offset % spec.width, 0, `${name}.${field}: unaligned`);
    }
    if (spec.checksum !== undefined) assert.equal(spec.type, 'u32', `${name}.${field}`);
    if (spec.value !== undefined) {
      assert.equal(typeof spec.value, spec.type === 'u64' ? 'bigint' : 'number', `${name}.${field}: value type`);
    }
    if (spec.enum !== undefined) assert(['u8', 'u16', 'u32'].includes(spec.type), `${name}.${field}: enum width`);
    if (field.startsWith('reserved_')) assert.equal(spec.type, 'bytes', `${name}.${field}`);
    offsetExpected += spec.width;
  }
  assert.equal(offsetExpected, layout.sizeBytes, `${name}: fields do not end at sizeBytes`);
  // No tail padding: C and Rust round a struct up to its widest scalar.
  const widest = Math.max(...Object.values(layout.fields).map((spec) => (spec.type === 'bytes' ? 1 : spec.width)));
  assert.equal(layout.sizeBytes % widest, 0, `${name}: size is not a multiple of its widest field`);
}

function scalarWidth(spec: FieldLayout): number {
  return { u8: 1, u16: 2, u32: 4, u64: 8, bytes: spec.width }[spec.type];
}

/**
 * Encodes `input` into `target[0, sizeBytes)`.
 *
 * Values outside a field's range are bugs (the caller built them), so they are asserted.
 */
export function encodeStruct<S extends StructLayout>(
  layout: S,
  input: EncodeInput<S>,
  target: Buffer,
): void {
  assert(target.byteLength >= layout.sizeBytes);
  const values = input as Record<string, number | bigint | Buffer | undefined>;
  for (const [field, spec] of Object.entries(layout.fields)) {
    if (spec.checksum !== undefined) continue;
    const value = field.startsWith('reserved_') ? undefined : (spec.value ?? values[field]);
    writeField(target, spec, field, value);
  }
  for (const spec of Object.values(layout.fields)) {
    if (spec.checksum === undefined) continue;
    target.writeUInt32LE(crc32c(target.subarray(0, spec.offset)), spec.offset);
  }
}

function writeField(
  target: Buffer,
  spec: FieldLayout,
  field: string,
  value: number | bigint | Buffer | undefined,
): void {
  if (spec.type === 'bytes') {
    target.fill(0, spec.offset, spec.offset + spec.width);
    if (value === undefined) return;
    assert(Buffer.isBuffer(value), field);
    assert(value.byteLength <= spec.width, field);
    value.copy(target, spec.offset);
    return;
  }
  assert(value !== undefined, `${field}: missing`);
  if (spec.type === 'u64') {
    target.writeBigUInt64LE(BigInt(value as number | bigint), spec.offset);
    return;
  }
  assert(typeof value === 'number', field);
  assert(Number.isInteger(value) && value >= 0 && value < 2 ** (8 * spec.width), field);
  target.writeUIntLE(value, spec.offset, spec.width);
}

/** Decodes `source[0, sizeBytes)`: checksum, fixed values and reserved bytes are verified. */
export function decodeStruct<S extends StructLayout>(
  layout: S,
  source: Buffer,
  enums: Readonly<Record<string, Readonly<Record<string, number>>>> = {},
): DecodeResult<S> {
  if (source.byteLength < layout.sizeBytes) {
    return failure('short', '', `${source.byteLength} < ${layout.sizeBytes} bytes`);
  }
  const value: Record<string, number | bigint | Buffer> = {};
  for (const [field, spec] of Object.entries(layout.fields)) {
    value[field] = readField(source, spec);
  }
  // Fixed values first: a buffer that is not ours at all is "magic", not "checksum".
  for (const [field, spec] of Object.entries(layout.fields)) {
    if (spec.value === undefined || value[field] === spec.value) continue;
    const kind = field === 'version' ? 'version' : 'magic';
    return failure(kind, field, `${String(value[field])} != ${String(spec.value)}`);
  }
  for (const [field, spec] of Object.entries(layout.fields)) {
    if (spec.checksum === undefined) continue;
    const computed = crc32c(source.subarray(0, spec.offset));
    if (computed !== value[field]) return failure('checksum', field, `computed ${computed}`);
  }
  for (const [field, spec] of Object.entries(layout.fields)) {
    if (field.startsWith('reserved_') && !isZero(value[field] as Buffer)) {
      return failure('reserved', field, 'not zero');
    }
    const members = spec.enum === undefined ? undefined : enums[spec.enum];
    if (members !== undefined && !Object.values(members).includes(value[field] as number)) {
      return failure('field', field, `${String(value[field])} is not a ${spec.enum}`);
    }
  }
  return { ok: true, value: value as Decoded<S> };
}

function readField(source: Buffer, spec: FieldLayout): number | bigint | Buffer {
  if (spec.type === 'bytes') return source.subarray(spec.offset, spec.offset + spec.width);
  if (spec.type === 'u64') return source.readBigUInt64LE(spec.offset);
  return source.readUIntLE(spec.offset, spec.width);
}

function isZero(bytes: Buffer): boolean {
  for (let index = 0; index < bytes.byteLength; index++) if (bytes[index] !== 0) return false;
  return true;
}

/** Builds a DecodeFailure. */
export function failure(kind: DecodeErrorKind, field: string, detail: string): DecodeFailure {
  return { ok: false, kind, field, detail };
}

/** A u64 field as a number; asserts it is exact. */
export function u64ToNumber(value: bigint): number {
  assert(value <= BigInt(Number.MAX_SAFE_INTEGER));
  return Number(value);
}
