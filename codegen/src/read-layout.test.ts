/**
 * read-layout: the ts-morph reader sees exactly what the runtime layout objects hold, takes
 * doc comments from object-literal properties, and rejects every layout it cannot represent
 * faithfully with an error naming the declaration.
 *
 * Method: the real layout sources are read and compared field by field with the objects the
 * codec uses at run time; then copies of the sources, each with one mutation, must fail with
 * a LayoutError whose declaration and message say what and where.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as layout from '../../userspace/src/layout/index.js';
import type { StructLayout } from '../../userspace/src/layout/index.js';
import { join } from 'node:path';
import {
  copyLayout,
  LAYOUT_RELATIVE,
  replaceIn,
  REPO_ROOT,
  type LayoutCopy,
} from '../test/layout-copy.js';
import { LayoutError, readLayout } from './read-layout.js';

const runtime = layout as unknown as Record<string, unknown>;

function readReal() {
  return readLayout({ directory: join(REPO_ROOT, LAYOUT_RELATIVE), root: REPO_ROOT });
}

describe('reading the real layout', () => {
  const model = readReal();

  it('finds every struct and enum, in file order', () => {
    expect(model.structs.map((struct) => struct.name)).toEqual(['BucketLabel', 'ShardHeader']);
    expect(model.enums.map((layoutEnum) => layoutEnum.name)).toEqual([
      'DecodeErrorKind',
      'Topology',
      'ChecksumKind',
      'Compression',
    ]);
    expect(model.sourcePaths).toEqual([
      'userspace/src/layout/bucket-label.ts',
      'userspace/src/layout/codec.ts',
      'userspace/src/layout/shard-header.ts',
    ]);
  });

  it('matches the runtime layout objects field by field', () => {
    for (const struct of model.structs) {
      const object = runtime[struct.name] as StructLayout;
      expect(struct.sizeBytes).toBe(object.sizeBytes);
      const fields = Object.entries(object.fields).map(([name, spec]) => ({
        name,
        offsetBytes: spec.offset,
        widthBytes: spec.width,
        type: spec.type,
        enumName: spec.enum,
        fixedValue: spec.value === undefined ? undefined : BigInt(spec.value),
        isChecksum: spec.checksum === 'crc32c',
        isReserved: name.startsWith('reserved_'),
      }));
      expect(struct.fields.map(({ doc: _, ...field }) => field)).toEqual(fields);
    }
  });

  it('matches the runtime enum objects', () => {
    for (const layoutEnum of model.enums) {
      const members = layoutEnum.members.map((member) => [member.name, member.value]);
      expect(Object.fromEntries(members)).toEqual(runtime[layoutEnum.name]);
    }
  });

  it('takes doc comments from object-literal properties (ts-morph has no getJsDocs there)', () => {
    const header = model.structs.find((struct) => struct.name === 'ShardHeader')!;
    const magic = header.fields.find((field) => field.name === 'magic')!;
    expect(magic.doc).toBe(
      'Identifies a shard file: ASCII "SHMRSHD1" read as a little-endian u64.',
    );
    const topology = model.enums.find((layoutEnum) => layoutEnum.name === 'Topology')!;
    expect(topology.members[0]!.doc).toBe('One shard holding the whole block.');
    for (const field of model.structs.flatMap((struct) => struct.fields)) {
      expect(field.doc, field.name).not.toBe('');
    }
  });

  it("takes a struct's description from its own doc comment", () => {
    const header = model.structs.find((struct) => struct.name === 'ShardHeader')!;
    expect(header.doc).toMatch(/^Shard header: identifies the block, shard and layout of one shard file/);
    expect(model.moduleDoc).toContain('little-endian');
  });
});

describe('rejecting what cannot be represented', () => {
  let copy: LayoutCopy | undefined;
  afterEach(() => copy?.remove());

  /** Reads a copy of the layout with `replacements` made in `fileName`; returns the error. */
  function rejection(
    fileName: string,
    replacements: ReadonlyArray<readonly [string, string]>,
  ): LayoutError {
    copy = copyLayout(replaceIn(fileName, replacements));
    try {
      readLayout({ directory: copy.directory, root: copy.root });
    } catch (error) {
      if (error instanceof LayoutError) return error;
      throw error;
    }
    throw new Error('the mutated layout was accepted');
  }

  const BLOCK_BYTES = "block_bytes: { offset: 40, width: 4, type: 'u32' }";
  const cases: ReadonlyArray<{
    name: string;
    file?: string;
    replacements: ReadonlyArray<readonly [string, string]>;
    declaration: string;
    message: RegExp;
  }> = [
    {
      name: 'an unsupported field type',
      replacements: [[BLOCK_BYTES, "block_bytes: { offset: 40, width: 4, type: 'i32' }"]],
      declaration: 'ShardHeader.block_bytes',
      message: /unsupported field type 'i32'/,
    },
    {
      name: 'a number whose width is not its type',
      replacements: [[BLOCK_BYTES, "block_bytes: { offset: 40, width: 3, type: 'u32' }"]],
      declaration: 'ShardHeader.block_bytes',
      message: /non-fixed-width number: type u32 is 4 bytes, width says 3/,
    },
    {
      name: 'a gap (implicit padding) between fields',
      replacements: [["data_bytes: { offset: 44,", 'data_bytes: { offset: 48,']],
      declaration: 'ShardHeader.data_bytes',
      message: /implicit padding: gap of 4 bytes after block_bytes/,
    },
    {
      name: 'overlapping fields (a field widened without shifting the rest)',
      replacements: [[BLOCK_BYTES, "block_bytes: { offset: 40, width: 8, type: 'u64' }"]],
      declaration: 'ShardHeader.data_bytes',
      message: /offset 44 overlaps block_bytes, which ends at 48/,
    },
    {
      name: 'implicit tail padding',
      replacements: [['sizeBytes: 128,', 'sizeBytes: 136,']],
      declaration: 'ShardHeader.sizeBytes',
      message: /fields end at 128, but sizeBytes is 136 \(implicit tail padding\)/,
    },
    {
      name: 'a misaligned scalar',
      replacements: [
        [
          "data_shards: { offset: 13, width: 1, type: 'u8' }",
          "data_shards: { offset: 13, width: 2, type: 'u16' }",
        ],
      ],
      declaration: 'ShardHeader.data_shards',
      message: /offset 13 is not a multiple of 2/,
    },
    {
      name: 'an expression instead of a literal',
      replacements: [[BLOCK_BYTES, "block_bytes: { offset: 36 + 4, width: 4, type: 'u32' }"]],
      declaration: 'ShardHeader.block_bytes.offset',
      message: /must be a non-negative integer literal, found `36 \+ 4`/,
    },
    {
      name: 'a spread among the fields',
      replacements: [['  fields: {\n', '  fields: {\n    ...EXTRA,\n']],
      declaration: 'ShardHeader',
      message: /only `name: literal` properties are allowed, found `...EXTRA`/,
    },
    {
      name: 'a u64 fixed value that is not a bigint',
      replacements: [['value: 0x3144_4853_524d_4853n', 'value: 0x3144']],
      declaration: 'ShardHeader.magic.value',
      message: /a u64 value must be a bigint literal/,
    },
    {
      name: 'a fixed value too large for its field',
      replacements: [["type: 'u16', value: 1 }", "type: 'u16', value: 65536 }"]],
      declaration: 'ShardHeader.version.value',
      message: /does not fit a u16/,
    },
    {
      name: 'a field without a doc comment',
      replacements: [['    /** Inode number of the file the block belongs to. */\n', '']],
      declaration: 'ShardHeader.ino',
      message: /needs a \/\*\* doc comment \*\//,
    },
    {
      name: 'an enum that does not exist',
      replacements: [["enum: 'Topology'", "enum: 'Shape'"]],
      declaration: 'ShardHeader.topology',
      message: /enum 'Shape' is not exported from the same file/,
    },
    {
      name: 'a reserved field that is not bytes',
      replacements: [
        [
          "reserved_1: { offset: 72, width: 52, type: 'bytes' }",
          "reserved_1: { offset: 72, width: 4, type: 'u32' }, reserved_2: { offset: 76, width: 48, type: 'bytes' }",
        ],
      ],
      declaration: 'ShardHeader.reserved_1',
      message: /a reserved field must have type 'bytes'/,
    },
    {
      name: 'a field named with a C or Rust keyword',
      replacements: [['    ino: {', '    type: {']],
      declaration: 'ShardHeader.type',
      message: /'type' is a C or Rust keyword/,
    },
    {
      name: 'a struct without `satisfies StructLayout`',
      replacements: [['} as const satisfies StructLayout;', '} as const;']],
      declaration: 'ShardHeader',
      message: /a struct must end in `as const satisfies StructLayout`/,
    },
    {
      name: 'a checksum on a bytes field',
      file: 'bucket-label.ts',
      replacements: [["type: 'u32', checksum: 'crc32c'", "type: 'bytes', checksum: 'crc32c'"]],
      declaration: 'BucketLabel.label_checksum',
      message: /a bytes field cannot have enum, value or checksum/,
    },
    {
      name: 'a DecodeErrorKind without a kind the decoders report',
      file: 'codec.ts',
      replacements: [['  reserved: 5,\n', '']],
      declaration: 'DecodeErrorKind.reserved',
      message: /missing/,
    },
  ];

  for (const testCase of cases) {
    it(`rejects ${testCase.name}, naming the declaration`, () => {
      const error = rejection(testCase.file ?? 'shard-header.ts', testCase.replacements);
      expect(error.declaration).toBe(testCase.declaration);
      expect(error.message).toMatch(testCase.message);
      expect(error.message.startsWith(`userspace/src/layout/`)).toBe(true);
    });
  }

  it('accepts an unchanged copy (so the rejections are due to the mutations)', () => {
    copy = copyLayout();
    const model = readLayout({ directory: copy.directory, root: copy.root });
    expect(model).toEqual(readReal());
  });
});
