/** instrumentOps: counts, times and measures every op, and passes results and errors through. */
import { describe, expect, it } from 'vitest';
import { Errno, FsError } from '../errno.js';
import { Registry } from '../metrics/registry.js';
import type { LowLevelOps } from './binding.js';
import { instrumentOps } from './instrument.js';

const REQ = { uid: 0, gid: 0, pid: 1, umask: 0 };

function recorders() {
  const registry = new Registry();
  const count = registry.counter('ops', 'ops', ['op']);
  const errors = registry.counter('errors', 'errors', ['op']);
  const duration = registry.histogram('duration', 'duration', ['op']);
  const bytes = registry.counter('bytes', 'bytes', ['op']);
  return {
    of: (op: string) => ({ count: count.series(op), errors: errors.series(op), duration: duration.series(op), bytes: bytes.series(op) }),
  };
}

describe('instrumentOps', () => {
  it('records sync and async results, errors and bytes, and returns them unchanged', async () => {
    const failure = new FsError(Errno.ENOENT, 'lookup', 'x');
    const data = Buffer.from('hello');
    const inner: LowLevelOps = {
      lookup: () => { throw failure; },
      read: async () => data,
      // The seventh parameter (killSuidgid) must come through the fixed-arity wrapper.
      write: async (_req, _ino, buffer, _offset, _fh, _flags, killSuidgid) => (killSuidgid ? buffer.byteLength : -1),
      unlink: async () => { throw failure; },
      statfs: function (this: LowLevelOps) {
        expect(this).toBe(inner); // `this` is the wrapped object, as the binding calls it
        return { bsize: 1, frsize: 1, blocks: 1, bfree: 1, bavail: 1, files: 1, ffree: 1, favail: 1, namemax: 255 };
      },
    };
    const { of } = recorders();
    const ops = instrumentOps(inner, of);
    expect(() => ops.lookup?.(REQ, 1, 'x')).toThrow(failure);
    expect(await ops.read?.(REQ, 2, 5, 0, 1)).toBe(data);
    expect(await ops.write?.(REQ, 2, Buffer.alloc(3), 0, 1, 0, true)).toBe(3);
    await expect(ops.unlink?.(REQ, 1, 'x')).rejects.toBe(failure);
    expect(ops.statfs?.(REQ, 1)).toMatchObject({ namemax: 255 });
    expect(ops.getattr).toBeUndefined();
    expect(of('lookup').errors.value).toBe(1);
    expect(of('lookup').count.value).toBe(1);
    expect(of('read').bytes.value).toBe(5);
    expect(of('write').bytes.value).toBe(3);
    expect(of('unlink').errors.value).toBe(1);
    expect(of('read').duration.count).toBe(1);
    expect(of('statfs').count.value).toBe(1);
  });

  it('passes releaseReadBuffer through, so READ reply buffers go back to their pool', () => {
    const released: Uint8Array[] = [];
    const inner: LowLevelOps = { read: () => Buffer.alloc(1), releaseReadBuffer: (data) => { released.push(data); } };
    const ops = instrumentOps(inner, recorders().of);
    const data = Buffer.alloc(8);
    ops.releaseReadBuffer?.(data);
    expect(released).toEqual([data]);
  });
});
