/**
 * Layout types: how an on-disk structure is described.
 *
 * Every structure shmr writes is one object literal of type `StructLayout`, read both by the
 * runtime codec (codec.ts) and, as source text, by the code generator (codegen/), which emits
 * the same structure in C and Rust. Rules (checked by codec.ts at import and by codegen):
 * - Fields have explicit offsets, in offset order, contiguous, ending at `sizeBytes`.
 * - Scalars are naturally aligned (`offset % width === 0`), so C and Rust need no padding.
 * - Gaps are named `reserved_N` fields of type `bytes`; they are written as zero and must
 *   read back as zero.
 * - All integers are little-endian.
 */

/** Field types: unsigned little-endian integers or an opaque byte string. */
export type FieldType = 'u8' | 'u16' | 'u32' | 'u64' | 'bytes';

/** One field of an on-disk structure. */
export interface FieldLayout {
  readonly offset: number;
  readonly width: number;
  readonly type: FieldType;
  /** Name of an enum object exported from the same file; the field holds one of its values. */
  readonly enum?: string;
  /** A value the field must hold (magic numbers, versions). */
  readonly value?: number | bigint;
  /** This u32 field holds the CRC32C of every byte of the structure before it. */
  readonly checksum?: 'crc32c';
}

/** A fixed-size on-disk structure. */
export interface StructLayout {
  readonly sizeBytes: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
}

type DecodedField<F extends FieldLayout> = F['type'] extends 'u64'
  ? bigint
  : F['type'] extends 'bytes'
    ? Buffer
    : number;

/** The runtime value of a structure: u64 as bigint, bytes as a Buffer view, the rest number. */
export type Decoded<S extends StructLayout> = {
  -readonly [K in keyof S['fields']]: DecodedField<S['fields'][K]>;
};

/** What `encodeStruct` needs: every field but reserved ones, fixed values and checksums. */
export type EncodeInput<S extends StructLayout> = {
  [K in keyof S['fields'] as K extends `reserved_${string}`
    ? never
    : S['fields'][K] extends { value: number | bigint }
      ? never
      : S['fields'][K] extends { checksum: 'crc32c' }
        ? never
        : K]: DecodedField<S['fields'][K]>;
};
