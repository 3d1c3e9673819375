/**
 * Emitters and CLI: the committed generated files are current and deterministic, compile
 * cleanly (gcc, rustc `#![no_std]`, clippy, rustfmt), and follow a change of the TypeScript
 * layout without any hand edit.
 *
 * Method: generate from the real layout and compare with kmod-spec/generated/; compile the
 * header and the Rust module in a temporary directory; then mutate a copy of the layout
 * (widen a field and shift the rest, or add a new struct file), regenerate, and check that the
 * size/offset assertions changed exactly as the layout did and that the output still compiles,
 * while the old struct against the new assertions does not.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { copyLayout, replaceIn, REPO_ROOT, type LayoutCopy } from '../test/layout-copy.js';
import {
  differences,
  emitAll,
  generate,
  GENERATED_DIRECTORY,
  LAYOUT_DIRECTORY,
  main,
} from './main.js';
import { readLayout } from './read-layout.js';

const scratch = mkdtempSync(join(tmpdir(), 'shmr-emit-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** gcc flags: C11 and every warning a kernel header should survive, as errors. */
const GCC_FLAGS = [
  '-std=c11', '-Wall', '-Wextra', '-Wpedantic', '-Wconversion', '-Wsign-conversion', '-Wshadow',
  '-Wcast-qual', '-Wstrict-prototypes', '-Wmissing-prototypes', '-Wdeclaration-after-statement',
  '-Werror',
];

/** Runs a compiler; returns its output, or throws with it. */
function run(command: string, args: readonly string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: 'pipe' });
}

/** Compiles `header` (text) in a fresh folder, as userspace or with kernel-like headers. */
function compileC(header: string, name: string, options: { isKernel?: boolean } = {}): void {
  const folder = join(scratch, name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'shmr_layout.h'), header);
  const main = '#include "shmr_layout.h"\nint main(void)\n{\n\treturn 0;\n}\n';
  writeFileSync(join(folder, 'main.c'), main);
  const extra = options.isKernel ? ['-D__KERNEL__', '-I', writeKernelStubs(folder)] : [];
  const output = ['-o', join(folder, 'main')];
  run('gcc', [...GCC_FLAGS, ...extra, '-I', folder, join(folder, 'main.c'), ...output]);
}

/**
 * Minimal stand-ins for the kernel headers the `__KERNEL__` branch includes, with the kernel's
 * names for types and byte-order conversions, so that branch is compiled too.
 */
function writeKernelStubs(folder: string): string {
  const stubs = join(folder, 'kernel-include');
  const files: Record<string, string> = {
    'linux/types.h': [
      '#include <stdint.h>',
      '#include <stddef.h>',
      'typedef uint8_t __u8;',
      'typedef uint16_t __le16;',
      'typedef uint32_t __le32;',
      'typedef uint64_t __le64;',
      '',
    ].join('\n'),
    'linux/stddef.h': '#include <stddef.h>\n',
    'linux/string.h': '#include <string.h>\n',
    'asm/byteorder.h': [16, 32, 64]
      .map(
        (bits) =>
          `#define le${bits}_to_cpu(x) ((uint${bits}_t)(x))\n` +
          `#define cpu_to_le${bits}(x) ((__le${bits})(x))\n`,
      )
      .join(''),
  };
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(stubs, path, '..'), { recursive: true });
    writeFileSync(join(stubs, path), text);
  }
  return stubs;
}

/** Compiles `module` (text) as the only content of a `#![no_std]` library, warnings denied. */
function compileRustNoStd(
  module: string,
  name: string,
  options: { isClippy?: boolean } = {},
): void {
  const folder = join(scratch, name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'shmr_layout.rs'), module);
  writeFileSync(
    join(folder, 'lib.rs'),
    [
      '#![no_std]',
      '#![deny(warnings, missing_docs)]',
      '//! The generated layout alone.',
      'include!("shmr_layout.rs");',
      '',
    ].join('\n'),
  );
  const compiler = options.isClippy ? 'clippy-driver' : 'rustc';
  const flags = ['--edition', '2021', '--crate-type', 'lib', '-O', '-D', 'warnings'];
  run(compiler, [...flags, '--out-dir', folder, join(folder, 'lib.rs')]);
}

function committed(name: string): string {
  return readFileSync(join(REPO_ROOT, GENERATED_DIRECTORY, name), 'utf8');
}

describe('the committed generated files', () => {
  it('are what the generator writes now (CI: npm run codegen:check)', () => {
    expect(differences(REPO_ROOT, generate(REPO_ROOT))).toEqual([]);
  });

  it('are deterministic: two runs give the same bytes', () => {
    const first = generate(REPO_ROOT);
    const second = generate(REPO_ROOT);
    expect([...second.keys()]).toEqual([...first.keys()]);
    for (const [path, bytes] of first) expect(second.get(path)!.equals(bytes), path).toBe(true);
  });

  it('each say they are generated, and from what', () => {
    for (const name of ['shmr_layout.h', 'shmr_layout.rs', 'LAYOUT.md']) {
      const text = committed(name);
      expect(text, name).toContain('GENERATED by codegen/src/main.ts from');
      expect(text, name).toContain('userspace/src/layout/shard-header.ts');
      expect(text, name).toContain('DO NOT EDIT');
    }
  });

  it('C: the header compiles cleanly for userspace and for the kernel', () => {
    compileC(committed('shmr_layout.h'), 'c-userspace');
    compileC(committed('shmr_layout.h'), 'c-kernel', { isKernel: true });
  });

  it('Rust: the module compiles alone in a #![no_std] crate, clippy- and rustfmt-clean', () => {
    compileRustNoStd(committed('shmr_layout.rs'), 'rust-no-std');
    compileRustNoStd(committed('shmr_layout.rs'), 'rust-clippy', { isClippy: true });
    const path = join(REPO_ROOT, GENERATED_DIRECTORY, 'shmr_layout.rs');
    run('rustfmt', ['--edition', '2021', '--check', path]);
  });

  it('LAYOUT.md has a row for every field and every enum member', () => {
    const markdown = committed('LAYOUT.md');
    const directory = join(REPO_ROOT, LAYOUT_DIRECTORY);
    const model = readLayout({ directory, root: REPO_ROOT });
    for (const struct of model.structs) {
      expect(markdown).toContain(`## ${struct.name} (${struct.sizeBytes} bytes)`);
      for (const field of struct.fields) {
        const cells = [field.offsetBytes, field.widthBytes, field.type, `\`${field.name}\``];
        expect(markdown).toContain(`| ${cells.join(' | ')} |`);
      }
    }
    for (const member of model.enums.flatMap((layoutEnum) => layoutEnum.members)) {
      expect(markdown).toContain(`| ${member.value} | \`${member.name}\` |`);
    }
  });
});

/** The `_Static_assert(...)` statements of C text, or the `assert!(...)` ones of Rust text. */
function assertions(text: string, language: 'c' | 'rust'): Set<string> {
  const pattern = language === 'c' ? /_Static_assert\([^;]*\);/g : /assert!\([^;]*\);/g;
  return new Set([...text.matchAll(pattern)].map((match) => match[0].replace(/\s+/g, ' ')));
}

/** Statements in `after` but not in `before`. */
function added(before: Set<string>, after: Set<string>): string[] {
  return [...after].filter((statement) => !before.has(statement)).sort();
}

describe('a change to the TypeScript layout', () => {
  let copy: LayoutCopy | undefined;
  afterEach(() => copy?.remove());

  /** block_bytes widened from u32 to u64; every later field shifted by 4; reserved_1 shrunk. */
  const WIDEN_BLOCK_BYTES: ReadonlyArray<readonly [string, string]> = [
    [
      "block_bytes: { offset: 40, width: 4, type: 'u32' }",
      "block_bytes: { offset: 40, width: 8, type: 'u64' }",
    ],
    ['data_bytes: { offset: 44,', 'data_bytes: { offset: 48,'],
    ['payload_bytes: { offset: 48,', 'payload_bytes: { offset: 52,'],
    ['payload_offset: { offset: 52,', 'payload_offset: { offset: 56,'],
    ['chunk_bytes: { offset: 56,', 'chunk_bytes: { offset: 60,'],
    ['payload_checksum: { offset: 60,', 'payload_checksum: { offset: 64,'],
    ['chunk_table_checksum: { offset: 64,', 'chunk_table_checksum: { offset: 68,'],
    ['compressed_bytes: { offset: 68,', 'compressed_bytes: { offset: 72,'],
    ['reserved_1: { offset: 72, width: 52,', 'reserved_1: { offset: 76, width: 48,'],
  ];

  function emitCopy(layoutCopy: LayoutCopy): Map<string, string> {
    const model = readLayout({ directory: layoutCopy.directory, root: layoutCopy.root });
    const outputs = [...emitAll(model)];
    return new Map(outputs.map(([path, bytes]) => [path.split('/').at(-1)!, bytes.toString()]));
  }

  it('moves exactly the affected size/offset assertions in C and Rust; both compile', () => {
    const before = emitCopy((copy = copyLayout()));
    copy.remove();
    const after = emitCopy((copy = copyLayout(replaceIn('shard-header.ts', WIDEN_BLOCK_BYTES))));
    const tag = 'struct shmr_shard_header';
    const shifted = [
      ['data_bytes', 48], ['payload_bytes', 52], ['payload_offset', 56], ['chunk_bytes', 60],
      ['payload_checksum', 64], ['chunk_table_checksum', 68], ['compressed_bytes', 72],
      ['reserved_1', 76],
    ] as const;
    const changed = (name: string, language: 'c' | 'rust'): string[] =>
      added(assertions(before.get(name)!, language), assertions(after.get(name)!, language));
    const width = (field: string, bytes: number): string =>
      `_Static_assert(sizeof(((${tag} *)0)->${field}) == ${bytes}, ` +
      `"shmr_shard_header.${field} width");`;
    expect(changed('shmr_layout.h', 'c')).toEqual(
      [
        ...shifted.map(
          ([field, offset]) =>
            `_Static_assert(offsetof(${tag}, ${field}) == ${offset}, ` +
            `"shmr_shard_header.${field} offset");`,
        ),
        width('block_bytes', 8),
        width('reserved_1', 48),
      ].sort(),
    );
    expect(changed('shmr_layout.rs', 'rust')).toEqual(
      shifted
        .map(([field, at]) => `assert!(core::mem::offset_of!(ShardHeader, ${field}) == ${at});`)
        .sort(),
    );
    expect(after.get('shmr_layout.h')).toContain('\t__le64 block_bytes;');
    expect(after.get('shmr_layout.rs')).toContain('    pub block_bytes: u64,');
    expect(after.get('shmr_layout.rs')).toContain('data_bytes: read_u32(bytes, 48),');
    expect(after.get('LAYOUT.md')).toContain('| 48 | 4 | u32 | `data_bytes` |');
    compileC(after.get('shmr_layout.h')!, 'c-widened');
    compileRustNoStd(after.get('shmr_layout.rs')!, 'rust-widened');
  });

  it('makes the new assertions reject the old struct definition', () => {
    const original = committed('shmr_layout.h');
    const after = emitCopy((copy = copyLayout(replaceIn('shard-header.ts', WIDEN_BLOCK_BYTES))));
    const struct = /struct shmr_shard_header \{[\s\S]*?\n\};/;
    const stale = after.get('shmr_layout.h')!.replace(struct, struct.exec(original)![0]);
    expect(() => compileC(stale, 'c-stale')).toThrow(
      /static assertion failed: "shmr_shard_header\.\w+ (offset|width)"/,
    );
  });

  it('adds a new struct file to all three outputs, compiling, with no hand edit', () => {
    const volume = [
      '/**',
      ' * Volume header: names a volume. Only here to show that a new struct needs no edits.',
      ' */',
      "import type { StructLayout } from './types.js';",
      '',
      '/** Whether the volume takes writes. */',
      'export const VolumeState = {',
      '  /** Open for writes. */',
      '  open: 1,',
      '  /** Read-only. */',
      '  sealed: 2,',
      '} as const;',
      '',
      'export const VolumeHeader = {',
      '  sizeBytes: 32,',
      '  fields: {',
      '    /** Identifies a volume header. */',
      "    magic: { offset: 0, width: 4, type: 'u32', value: 0x4c4f_5653 },",
      '    /** Lifecycle state, a `VolumeState`. */',
      "    state: { offset: 4, width: 2, type: 'u16', enum: 'VolumeState' },",
      '    /** Zero. */',
      "    reserved_0: { offset: 6, width: 2, type: 'bytes' },",
      '    /** Volume size. */',
      "    capacity_bytes: { offset: 8, width: 8, type: 'u64' },",
      '    /** Volume name, NUL-padded. */',
      "    name: { offset: 16, width: 12, type: 'bytes' },",
      '    /** Checksum of bytes 0 to 27. */',
      "    volume_checksum: { offset: 28, width: 4, type: 'u32', checksum: 'crc32c' },",
      '  },',
      '} as const satisfies StructLayout;',
      '',
    ].join('\n');
    copy = copyLayout();
    writeFileSync(join(copy.directory, 'volume-header.ts'), volume);
    const outputs = emitCopy(copy);
    const header = outputs.get('shmr_layout.h')!;
    expect(header).toContain(
      '_Static_assert(offsetof(struct shmr_volume_header, capacity_bytes) == 8,',
    );
    expect(header).toContain('shmr_volume_header_decode(const void *source');
    expect(header).toContain('if (!shmr_volume_state_is_valid(shmr_get_le16(bytes + 4)))');
    expect(header).toContain('\t{ "VolumeHeader", SHMR_VOLUME_HEADER_SIZE_BYTES,');
    expect(outputs.get('shmr_layout.rs')).toContain(
      '"VolumeHeader" => Some(visitor.visit::<VolumeHeader>()),',
    );
    expect(outputs.get('LAYOUT.md')).toContain('## VolumeHeader (32 bytes)');
    compileC(header, 'c-volume');
    compileRustNoStd(outputs.get('shmr_layout.rs')!, 'rust-volume');
  });
});

describe('the CLI', () => {
  let copy: LayoutCopy | undefined;
  afterEach(() => {
    copy?.remove();
    vi.restoreAllMocks();
  });

  it('--check passes on the repository', () => {
    expect(main(['--check'], REPO_ROOT)).toBe(0);
  });

  it('writes the files, then --check lists each one that differs, is missing or is stale', () => {
    copy = copyLayout();
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    expect(main(['--check'], copy.root)).toBe(1);
    const lastError = (): string => String(stderr.mock.calls.at(-1)![0]);
    expect(lastError()).toContain('kmod-spec/generated/shmr_layout.h (missing)');
    expect(main([], copy.root)).toBe(0);
    expect(main(['--check'], copy.root)).toBe(0);
    writeFileSync(join(copy.root, GENERATED_DIRECTORY, 'LAYOUT.md'), 'edited by hand\n');
    writeFileSync(join(copy.root, GENERATED_DIRECTORY, 'vectors', 'old.bin'), 'stale');
    expect(main(['--check'], copy.root)).toBe(1);
    const report = lastError();
    expect(report).toContain('kmod-spec/generated/LAYOUT.md (differs)');
    expect(report).toContain('kmod-spec/generated/vectors/old.bin (stale)');
    expect(main([], copy.root)).toBe(0);
    expect(main(['--check'], copy.root)).toBe(0);
  });

  it('reports a layout it cannot represent, naming the declaration, and writes nothing', () => {
    const gap = ['data_bytes: { offset: 44,', 'data_bytes: { offset: 48,'] as const;
    copy = copyLayout(replaceIn('shard-header.ts', [gap]));
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(main([], copy.root)).toBe(1);
    expect(String(stderr.mock.calls.at(-1)![0])).toMatch(
      /shard-header\.ts: ShardHeader\.data_bytes: implicit padding/,
    );
    const header = join(copy.root, GENERATED_DIRECTORY, 'shmr_layout.h');
    expect(() => readFileSync(header)).toThrow(/ENOENT/);
  });

  it('rejects unknown arguments', () => {
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(main(['--frobnicate'], REPO_ROOT)).toBe(2);
  });
});
