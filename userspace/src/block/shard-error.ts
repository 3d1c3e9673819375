/**
 * ShardError: one shard could not be read or trusted. It is an EIO for whoever cannot work
 * around it; the block layer catches it to read another copy or rebuild from parity.
 */
import { Errno, FsError } from '../errno.js';

/** Why a shard failed. */
export type ShardFailureKind = 'missing' | 'io' | 'corrupt';

export class ShardError extends FsError {
  readonly kind: ShardFailureKind;
  readonly bucket: string;
  readonly path: string;
  constructor(input: { kind: ShardFailureKind; bucket: string; path: string; detail: string }) {
    super(Errno.EIO, 'read shard', `${input.kind} shard ${input.path}: ${input.detail}`);
    this.name = 'ShardError';
    this.kind = input.kind;
    this.bucket = input.bucket;
    this.path = input.path;
  }
}
