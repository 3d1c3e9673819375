/**
 * Bucket label: the file `shmr-bucket` at the top of every bucket directory.
 *
 * It tells a bucket that belongs to this filesystem from an empty mount point whose drive is
 * missing: a bucket directory without its label (or with another pool's) is never written to.
 */
import type { StructLayout } from './types.js';

/**
 * Bucket label: names the filesystem a bucket directory belongs to. 64 bytes, the whole file
 * `shmr-bucket` at the top of the bucket.
 */
export const BucketLabel = {
  sizeBytes: 64,
  fields: {
    /** Identifies a bucket label: ASCII "SHMRBKT1" read as a little-endian u64. */
    magic: { offset: 0, width: 8, type: 'u64', value: 0x3154_4b42_524d_4853n },
    /** Format version. A reader refuses versions it does not know. */
    version: { offset: 8, width: 2, type: 'u16', value: 1 },
    /** Zero. */
    reserved_0: { offset: 10, width: 6, type: 'bytes' },
    /** Random identifier of the filesystem (its metadata store), shared by all its buckets. */
    filesystem_uuid: { offset: 16, width: 16, type: 'bytes' },
    /** Random identifier of this bucket. */
    bucket_uuid: { offset: 32, width: 16, type: 'bytes' },
    /** When the bucket was labelled, seconds since the Unix epoch. */
    created_sec: { offset: 48, width: 8, type: 'u64' },
    /** Zero. */
    reserved_1: { offset: 56, width: 4, type: 'bytes' },
    /** Checksum of bytes 0 to 59 of this label. */
    label_checksum: { offset: 60, width: 4, type: 'u32', checksum: 'crc32c' },
  },
} as const satisfies StructLayout;
