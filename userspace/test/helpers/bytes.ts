/** Byte-level helpers for tests that damage stored data on purpose. */
import { assert } from '../../src/assert.js';

/** XORs `mask` into the byte at `index` (which must exist): a deliberate bit flip. */
export function flipBits(buffer: Uint8Array, index: number, mask: number): void {
  const value = buffer[index];
  assert(value !== undefined, `flipBits: index ${index} is outside a buffer of ${buffer.byteLength} bytes`);
  buffer[index] = value ^ mask;
}
