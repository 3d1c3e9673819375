/**
 * Test helper: a private copy of the layout sources to mutate, laid out as in the repository
 * (ROOT/userspace/src/layout/), so generated headers name the same paths.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, from this file's place in codegen/test/. */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The layout sources, relative to a root. */
export const LAYOUT_RELATIVE = join('userspace', 'src', 'layout');

/** A copy of the layout, to be removed with `remove()`. */
export interface LayoutCopy {
  readonly root: string;
  readonly directory: string;
  remove(): void;
}

/**
 * Copies the layout sources into a fresh temporary root, passing each file's text through
 * `transform` (file name, text) first. Throws if `transform` asked to change text that is not
 * there, so a test never passes because its mutation silently missed.
 */
export function copyLayout(
  transform: (fileName: string, text: string) => string = (_, text) => text,
): LayoutCopy {
  const root = mkdtempSync(join(tmpdir(), 'shmr-codegen-'));
  const directory = join(root, LAYOUT_RELATIVE);
  mkdirSync(directory, { recursive: true });
  for (const fileName of readdirSync(join(REPO_ROOT, LAYOUT_RELATIVE))) {
    if (!fileName.endsWith('.ts') || fileName.endsWith('.test.ts')) continue;
    const text = readFileSync(join(REPO_ROOT, LAYOUT_RELATIVE, fileName), 'utf8');
    writeFileSync(join(directory, fileName), transform(fileName, text));
  }
  return { root, directory, remove: () => rmSync(root, { recursive: true, force: true }) };
}

/** A transform replacing `before` by `after` in `fileName`; the text must contain `before`. */
export function replaceIn(
  fileName: string,
  replacements: ReadonlyArray<readonly [string, string]>,
): (name: string, text: string) => string {
  return (name, text) => {
    if (name !== fileName) return text;
    let result = text;
    for (const [before, after] of replacements) {
      if (!result.includes(before)) throw new Error(`${fileName} has no ${JSON.stringify(before)}`);
      result = result.replace(before, after);
    }
    return result;
  };
}
