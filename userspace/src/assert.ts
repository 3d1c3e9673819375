/**
 * Assertions: invariants that hold unless the code is wrong.
 *
 * Assertions stay on in production. They are never used on untrusted input (disk contents,
 * config, NBD or D-Bus requests): that is validated and reported as an error instead.
 */
import assert from 'node:assert/strict';

export { assert };

/** Ends the process on a bug: log the stack, then abort. */
export function crash(error: unknown): never {
  process.stderr.write(`fatal: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.abort();
}
