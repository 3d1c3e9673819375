/**
 * Text helpers shared by the emitters: case conversion of layout names and word wrapping of
 * doc comments.
 *
 * Invariants:
 * - Pure functions of their arguments, so generated files are byte-identical on every run.
 */

/** `ShardHeader` -> `shard_header`: C identifiers and file-level names. */
export function snakeCase(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

/** `shard_header` or `crc32c` -> `ShardHeader` / `Crc32c`: Rust type and variant names. */
export function pascalCase(name: string): string {
  return name
    .split('_')
    .map((word) => word.charAt(0).toUpperCase() + word.slice(1))
    .join('');
}

/** `ShardHeader` -> `SHARD_HEADER`: C macros and Rust constants. */
export function upperSnakeCase(name: string): string {
  return snakeCase(name).toUpperCase();
}

/**
 * Splits `text` into lines of at most `widthColumns` characters, breaking between words.
 *
 * Paragraphs (separated by a blank line) and list items (lines starting with `- `) keep their
 * own lines; a word longer than the width gets a line of its own rather than being cut.
 */
export function wrapText(text: string, widthColumns: number): string[] {
  const lines: string[] = [];
  for (const [index, block] of textBlocks(text).entries()) {
    if (index > 0 && !block.startsWith('- ')) lines.push('');
    lines.push(...wrapBlock(block, widthColumns));
  }
  return lines;
}

/** Paragraphs and list items of `text`, each with its inner whitespace collapsed. */
function textBlocks(text: string): string[] {
  const blocks: string[] = [];
  let current: string[] = [];
  const flush = (): void => {
    if (current.length > 0) blocks.push(current.join(' '));
    current = [];
  };
  for (const line of text.split('\n').map((raw) => raw.trim())) {
    if (line === '' || line.startsWith('- ')) flush();
    if (line !== '') current.push(line);
  }
  flush();
  return blocks.map((block) => block.replace(/\s+/g, ' '));
}

function wrapBlock(block: string, widthColumns: number): string[] {
  const indent = block.startsWith('- ') ? '  ' : '';
  const lines: string[] = [];
  let line = '';
  for (const word of block.split(' ')) {
    const candidate = line === '' ? word : `${line} ${word}`;
    if (candidate.length <= widthColumns || line === '') {
      line = candidate;
      continue;
    }
    lines.push(line);
    line = indent + word;
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** The first sentence of `text` (up to the first period followed by a space or the end). */
export function firstSentence(text: string): string {
  return splitFirstSentence(text)[0].replace(/\s+/g, ' ');
}

/** `text` without its first sentence, paragraphs kept. */
export function afterFirstSentence(text: string): string {
  return splitFirstSentence(text)[1];
}

function splitFirstSentence(text: string): [string, string] {
  const trimmed = text.trim();
  const match = /^([\s\S]*?\.)(\s|$)/.exec(trimmed);
  const sentence = match?.[1] ?? trimmed;
  return [sentence, trimmed.slice(sentence.length).trim()];
}
