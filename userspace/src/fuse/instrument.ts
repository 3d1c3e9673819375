/**
 * instrumentOps: wraps a LowLevelOps so that every FUSE request is counted and timed per
 * operation, with the bytes of reads and writes, in one place. The op series are resolved when
 * the wrapper is built; a request costs two clock reads and a few additions. Results and
 * errors pass through unchanged (same value, same thrown object).
 */
import type { LowLevelOps, Result } from './binding.js';

/** The per-op series the wrapper records into (see metrics/instruments.ts). */
export interface OpRecorder {
  readonly count: { inc(amount?: number): void };
  readonly errors: { inc(amount?: number): void };
  readonly duration: { observe(seconds: number): void };
  readonly bytes: { inc(amount: number): void };
}

type OpName = Exclude<keyof LowLevelOps, 'init' | 'destroy'>;
/** Seven parameters: the most any op takes (write); fewer get undefined. */
type AnyOp = (a: unknown, b: unknown, c: unknown, d: unknown, e: unknown, f: unknown, g: unknown) => Result<unknown>;

const OP_NAMES: readonly OpName[] = [
  'lookup', 'forget', 'getattr', 'setattr', 'readlink', 'mknod', 'mkdir', 'unlink', 'rmdir', 'symlink',
  'rename', 'link', 'open', 'read', 'write', 'flush', 'release', 'fsync', 'opendir', 'readdir',
  'releasedir', 'fsyncdir', 'statfs', 'setxattr', 'getxattr', 'listxattr', 'removexattr', 'access',
  'create', 'fallocate',
];

/** Bytes a reply carries: reads return a buffer, writes the count written. */
function bytesOf(op: OpName, value: unknown): number {
  if (op === 'read') return (value as Uint8Array).byteLength;
  if (op === 'write') return value as number;
  return 0;
}

/** Builds the timed version of one op. */
function timed(op: OpName, inner: LowLevelOps, recorder: OpRecorder): AnyOp {
  const handler = inner[op] as unknown as AnyOp;
  const hasBytes = op === 'read' || op === 'write';
  const succeeded = (startMs: number, value: unknown): void => {
    recorder.count.inc();
    recorder.duration.observe((performance.now() - startMs) / 1000);
    if (hasBytes) recorder.bytes.inc(bytesOf(op, value));
  };
  const failed = (startMs: number): void => {
    recorder.count.inc();
    recorder.errors.inc();
    recorder.duration.observe((performance.now() - startMs) / 1000);
  };
  // Fixed arity instead of rest parameters: no arguments array per request.
  return (a, b, c, d, e, f, g) => {
    const startMs = performance.now();
    let result: Result<unknown>;
    try {
      result = handler.call(inner, a, b, c, d, e, f, g);
    } catch (error) {
      failed(startMs);
      throw error;
    }
    if (!(result instanceof Promise)) {
      succeeded(startMs, result);
      return result;
    }
    return result.then(
      (value) => { succeeded(startMs, value); return value; },
      (error: unknown) => { failed(startMs); throw error; },
    );
  };
}

/**
 * `inner` with every op it implements counted and timed; init, destroy and releaseReadBuffer
 * pass through.
 */
export function instrumentOps(inner: LowLevelOps, recorderOf: (op: string) => OpRecorder): LowLevelOps {
  const wrapped: Record<string, unknown> = {};
  if (inner.init !== undefined) wrapped['init'] = inner.init.bind(inner);
  if (inner.destroy !== undefined) wrapped['destroy'] = inner.destroy.bind(inner);
  if (inner.releaseReadBuffer !== undefined) wrapped['releaseReadBuffer'] = inner.releaseReadBuffer.bind(inner);
  for (const op of OP_NAMES) {
    if (typeof inner[op] === 'function') wrapped[op] = timed(op, inner, recorderOf(op));
  }
  return wrapped as LowLevelOps;
}
