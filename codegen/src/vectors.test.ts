/**
 * Shared test vectors: C and Rust decode every vector the TypeScript encoder wrote exactly as
 * TypeScript does, and TypeScript decodes what C and Rust encode.
 *
 * Method: the manifest is first checked against the TypeScript decoder and for coverage (each
 * struct has normal, boundary and one corrupt vector per check). Then
 * codegen/test/c/vectors_test.c (gcc, with AddressSanitizer and UBSan) and
 * codegen/test/rust/vectors_test.rs (plain rustc, no crates) are built against the committed
 * generated files and run over the committed vectors; each writes its re-encoding of every good
 * vector, which must decode in TypeScript to the manifest's values.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as layout from '../../userspace/src/layout/index.js';
import { REPO_ROOT } from '../test/layout-copy.js';
import { GENERATED_DIRECTORY, LAYOUT_DIRECTORY, VECTORS_DIRECTORY } from './main.js';
import { readLayout, type LayoutStruct } from './read-layout.js';
import { expectationOf, MANIFEST_NAME, shardExpectationOf, type VectorEntry } from './vectors.js';

const vectorsDirectory = join(REPO_ROOT, VECTORS_DIRECTORY);
const manifest = JSON.parse(readFileSync(join(vectorsDirectory, MANIFEST_NAME), 'utf8')) as {
  vectors: VectorEntry[];
};
const model = readLayout({ directory: join(REPO_ROOT, LAYOUT_DIRECTORY), root: REPO_ROOT });
const scratch = mkdtempSync(join(tmpdir(), 'shmr-vectors-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function structNamed(name: string): LayoutStruct {
  const found = model.structs.find((struct) => struct.name === name);
  if (found === undefined) throw new Error(`no struct ${name}`);
  return found;
}

function vectorBytes(entry: VectorEntry): Buffer {
  return readFileSync(join(vectorsDirectory, entry.file));
}

describe('the manifest', () => {
  it('says what the TypeScript decoder says of every vector file', () => {
    for (const entry of manifest.vectors) {
      const bytes = vectorBytes(entry);
      expect(expectationOf(structNamed(entry.layout), bytes), entry.name).toEqual(entry.expect);
      if (entry.kind === 'shard') {
        const shard = shardExpectationOf(bytes, entry.shard!.payloadIncluded);
        expect(shard, entry.name).toEqual(entry.shard);
      }
    }
  });

  it('covers every struct: normal, boundary, and each check with a corrupt vector', () => {
    for (const struct of model.structs) {
      const entries = manifest.vectors.filter(
        (entry) => entry.layout === struct.name && entry.kind === 'struct',
      );
      const cases = entries.map((entry) => entry.case);
      expect(cases.filter((testCase) => testCase === 'normal'), struct.name).toHaveLength(1);
      expect(cases.filter((testCase) => testCase === 'boundary'), struct.name).toHaveLength(2);
      const outcomes = new Set(
        entries.map(({ expect: outcome }) =>
          outcome.ok ? 'ok' : `${outcome.error}:${outcome.field}`,
        ),
      );
      expect(outcomes, struct.name).toContain('short:');
      for (const field of struct.fields) {
        const fixedKind = field.name === 'version' ? 'version' : 'magic';
        if (field.fixedValue !== undefined) {
          expect(outcomes).toContain(`${fixedKind}:${field.name}`);
        }
        if (field.isChecksum) expect(outcomes).toContain(`checksum:${field.name}`);
        if (field.isReserved) expect(outcomes).toContain(`reserved:${field.name}`);
        if (field.enumName !== undefined) expect(outcomes).toContain(`field:${field.name}`);
      }
    }
    const shardOutcomes = manifest.vectors.flatMap(({ shard }) => {
      if (shard === undefined) return [];
      return [shard.prefix.ok ? `chunk:${shard.badChunkIndex}` : shard.prefix.field];
    });
    expect(shardOutcomes).toEqual(
      expect.arrayContaining(['chunk_table', 'chunk_table_checksum', 'chunk:1', 'chunk:-1']),
    );
  });
});

/** Reads back what a C or Rust test encoded: each file must decode to its manifest entry. */
function readBack(outDirectory: string): number {
  const names = readdirSync(outDirectory).sort();
  for (const fileName of names) {
    const entry = manifest.vectors.find((candidate) => `${candidate.name}.bin` === fileName);
    expect(entry, fileName).toBeDefined();
    const bytes = readFileSync(join(outDirectory, fileName));
    expect(expectationOf(structNamed(entry!.layout), bytes), fileName).toEqual(entry!.expect);
    if (entry!.kind === 'shard') {
      const prefix = layout.decodeShardPrefix(bytes);
      expect(prefix.ok, fileName).toBe(true);
      expect(shardExpectationOf(bytes, true), fileName).toEqual(entry!.shard);
    }
  }
  const good = manifest.vectors.filter(
    (entry) =>
      entry.expect.ok &&
      entry.case !== 'corrupt' &&
      (entry.kind === 'struct' || entry.shard!.payloadIncluded),
  );
  expect(names).toEqual(good.map((entry) => `${entry.name}.bin`).sort());
  return names.length;
}

/** Runs a built test program over the committed vectors; returns its report. */
function runTest(binary: string, out: string): string {
  return execFileSync(binary, [vectorsDirectory, out], { encoding: 'utf8', stdio: 'pipe' });
}

/** The summary line of a test program that checked every vector and found nothing wrong. */
function summary(language: string): RegExp {
  const count = manifest.vectors.length;
  return new RegExp(`^${language}: ${count} vectors decoded, \\d+ encoded, 0 failures`);
}

function outDirectory(name: string): string {
  const directory = join(scratch, name);
  mkdirSync(directory, { recursive: true });
  return directory;
}

describe('C', () => {
  it('decodes every vector as TypeScript does, and TypeScript decodes what C encodes', () => {
    const binary = join(scratch, 'vectors_test_c');
    execFileSync('gcc', [
      '-std=c11', '-Wall', '-Wextra', '-Wpedantic', '-Werror', '-O1', '-g',
      '-fsanitize=address,undefined', '-fno-sanitize-recover=all',
      '-I', join(REPO_ROOT, GENERATED_DIRECTORY),
      join(REPO_ROOT, 'codegen/test/c/vectors_test.c'), '-o', binary,
    ], { stdio: 'pipe' });
    const out = outDirectory('c-out');
    expect(runTest(binary, out)).toMatch(summary('c'));
    expect(readBack(out)).toBeGreaterThan(0);
  });
});

describe('Rust', () => {
  it('decodes every vector as TypeScript does, and TypeScript decodes what Rust encodes', () => {
    const binary = join(scratch, 'vectors_test_rust');
    execFileSync('rustc', [
      '--edition', '2021', '-O', '-D', 'warnings',
      join(REPO_ROOT, 'codegen/test/rust/vectors_test.rs'), '-o', binary,
    ], { stdio: 'pipe' });
    const out = outDirectory('rust-out');
    expect(runTest(binary, out)).toMatch(summary('rust'));
    expect(readBack(out)).toBeGreaterThan(0);
  });
});
