/**
 * codegen CLI: regenerates the kernel side of the on-disk format from the TypeScript layout.
 *
 * `node dist/codegen/src/main.js` writes kmod-spec/generated/{shmr_layout.h, shmr_layout.rs,
 * LAYOUT.md} and the test vectors (kmod-spec/generated/vectors/); with `--check` it writes
 * nothing and exits 1 listing every file that differs, is missing or is stale, which is how CI
 * proves the committed files match the layout.
 *
 * Invariants:
 * - Output depends only on the layout sources and the encoder: two runs are byte-identical.
 * - A layout the generator cannot represent stops it with the LayoutError naming the
 *   declaration; nothing is written then.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { emitC } from './emit-c.js';
import { emitMarkdown } from './emit-markdown.js';
import { emitRust } from './emit-rust.js';
import { LayoutError, readLayout, type LayoutModel } from './read-layout.js';
import { buildVectors } from './vectors.js';

/** Where the layout sources are, relative to the repository root. */
export const LAYOUT_DIRECTORY = 'userspace/src/layout';
/** Where the generated files go, relative to the repository root. */
export const GENERATED_DIRECTORY = 'kmod-spec/generated';
/** Where the test vectors go, relative to the repository root. */
export const VECTORS_DIRECTORY = `${GENERATED_DIRECTORY}/vectors`;
/** How the generated files name their generator. */
export const GENERATOR_PATH = 'codegen/src/main.ts';

/** The three generated sources, by path relative to the repository root. */
export function emitAll(model: LayoutModel): Map<string, Buffer> {
  return new Map([
    [`${GENERATED_DIRECTORY}/shmr_layout.h`, Buffer.from(emitC(model, GENERATOR_PATH))],
    [`${GENERATED_DIRECTORY}/shmr_layout.rs`, Buffer.from(emitRust(model, GENERATOR_PATH))],
    [`${GENERATED_DIRECTORY}/LAYOUT.md`, Buffer.from(emitMarkdown(model, GENERATOR_PATH))],
  ]);
}

/** Every generated file (sources and vectors), by path relative to the repository root. */
export function generate(root: string): Map<string, Buffer> {
  const model = readLayout({ directory: join(root, LAYOUT_DIRECTORY), root });
  const outputs = emitAll(model);
  for (const [name, bytes] of buildVectors(model)) {
    outputs.set(`${VECTORS_DIRECTORY}/${name}`, bytes);
  }
  return outputs;
}

/** The repository root: the first folder above this module holding the layout sources. */
export function findRoot(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let folder = start; ; folder = dirname(folder)) {
    if (existsSync(join(folder, LAYOUT_DIRECTORY, 'index.ts'))) return folder;
    if (dirname(folder) === folder) throw new Error(`no ${LAYOUT_DIRECTORY} above ${start}`);
  }
}

/** Vector files on disk that the generator no longer writes. */
function staleVectors(root: string, outputs: ReadonlyMap<string, Buffer>): string[] {
  const directory = join(root, VECTORS_DIRECTORY);
  if (!existsSync(directory)) return [];
  return readdirSync(directory)
    .map((name) => `${VECTORS_DIRECTORY}/${name}`)
    .filter((path) => !outputs.has(path))
    .sort();
}

/** Paths whose committed content differs from `outputs`: changed, missing or stale. */
export function differences(root: string, outputs: ReadonlyMap<string, Buffer>): string[] {
  const differing: string[] = [];
  for (const [path, bytes] of outputs) {
    const target = join(root, path);
    if (!existsSync(target)) differing.push(`${path} (missing)`);
    else if (!readFileSync(target).equals(bytes)) differing.push(`${path} (differs)`);
  }
  differing.push(...staleVectors(root, outputs).map((path) => `${path} (stale)`));
  return differing;
}

/** Writes `outputs` and removes stale vectors. */
export function writeOutputs(root: string, outputs: ReadonlyMap<string, Buffer>): void {
  for (const path of staleVectors(root, outputs)) rmSync(join(root, path));
  for (const [path, bytes] of outputs) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), bytes);
  }
}

/** Runs the CLI on `args` for the repository at `root`; returns the exit code. */
export function main(args: readonly string[], root = findRoot()): number {
  const isCheck = args.includes('--check');
  const unknown = args.filter((arg) => arg !== '--check');
  if (unknown.length > 0) {
    process.stderr.write(
      `codegen: unknown argument ${unknown.join(' ')}\nusage: main.js [--check]\n`,
    );
    return 2;
  }
  let outputs: Map<string, Buffer>;
  try {
    outputs = generate(root);
  } catch (error) {
    if (!(error instanceof LayoutError)) throw error;
    process.stderr.write(`codegen: ${error.message}\n`);
    return 1;
  }
  if (!isCheck) {
    writeOutputs(root, outputs);
    process.stdout.write(`codegen: wrote ${outputs.size} files under ${GENERATED_DIRECTORY}\n`);
    return 0;
  }
  const differing = differences(root, outputs);
  if (differing.length === 0) return 0;
  process.stderr.write(
    `codegen: generated files are out of date; run npm run codegen and commit:\n` +
      differing.map((path) => `  ${path}\n`).join(''),
  );
  return 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2));
}
