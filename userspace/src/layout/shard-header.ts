/**
 * Shard header: the first 128 bytes of every shard file.
 *
 * A shard file is this header, then the chunk checksum table (one little-endian u32 CRC32C
 * per `chunk_bytes` of payload, the last chunk possibly short), then zero padding up to
 * `payload_offset`, then the payload. The header alone says which block of which file the
 * shard belongs to, so a bucket can be checked and rebuilt without the metadata.
 */
import type { StructLayout } from './types.js';

/** How a block is spread over its shards. */
export const Topology = {
  /** One shard holding the whole block. */
  single: 1,
  /** `data_shards` identical full copies. */
  mirror: 2,
  /** Reed-Solomon: `data_shards` data shards and `parity_shards` parity shards. */
  erasure: 3,
} as const;

/** Checksum algorithm of the payload, the chunk table and the header. */
export const ChecksumKind = {
  /** CRC32C (Castagnoli), as iSCSI and ext4 metadata use. */
  crc32c: 1,
} as const;

/** How the block was compressed before it was split into shards. */
export const Compression = {
  /** Stored raw: the block's bytes as written (every shard written before compression). */
  none: 0,
  /** A zstd frame, its content size in the frame header. */
  zstd: 1,
  /** An lz4 block preceded by its decompressed length as a little-endian u32. */
  lz4: 2,
} as const;

/**
 * Shard header: identifies the block, shard and layout of one shard file, and carries the
 * checksums of its chunk table and payload. 128 bytes at file offset 0.
 */
export const ShardHeader = {
  sizeBytes: 128,
  fields: {
    /** Identifies a shard file: ASCII "SHMRSHD1" read as a little-endian u64. */
    magic: { offset: 0, width: 8, type: 'u64', value: 0x3144_4853_524d_4853n },
    /** Format version. A reader refuses versions it does not know. */
    version: { offset: 8, width: 2, type: 'u16', value: 1 },
    /** How the block is spread over shards, a `Topology`. */
    topology: { offset: 10, width: 1, type: 'u8', enum: 'Topology' },
    /** Algorithm of every checksum in this file, a `ChecksumKind`. */
    checksum_kind: { offset: 11, width: 1, type: 'u8', enum: 'ChecksumKind' },
    /** Position of this shard in the block: data shards first, then parity shards. */
    shard_index: { offset: 12, width: 1, type: 'u8' },
    /** Data shards of the block (mirror: copies; single: 1). */
    data_shards: { offset: 13, width: 1, type: 'u8' },
    /** Parity shards of the block (0 unless erasure). */
    parity_shards: { offset: 14, width: 1, type: 'u8' },
    /** How the block was compressed, a `Compression` (none in shards older than compression). */
    compression: { offset: 15, width: 1, type: 'u8', enum: 'Compression' },
    /** Inode number of the file the block belongs to. */
    ino: { offset: 16, width: 8, type: 'u64' },
    /** Index of the block in the file: it holds bytes [index * block_bytes, ...). */
    block_index: { offset: 24, width: 8, type: 'u64' },
    /** Write generation of the block; each rewrite of a block makes new shard files. */
    generation: { offset: 32, width: 8, type: 'u64' },
    /** Block size of the file. */
    block_bytes: { offset: 40, width: 4, type: 'u32' },
    /**
     * Bytes of the block stored, from its start; the rest of the block reads as zeros. When
     * the block is compressed, its length after decompression, which a reader checks.
     */
    data_bytes: { offset: 44, width: 4, type: 'u32' },
    /** Bytes of payload in this shard file. */
    payload_bytes: { offset: 48, width: 4, type: 'u32' },
    /** File offset of the payload: a multiple of 4096 after the header and chunk table. */
    payload_offset: { offset: 52, width: 4, type: 'u32' },
    /** Payload bytes covered by one chunk table entry. */
    chunk_bytes: { offset: 56, width: 4, type: 'u32' },
    /** Checksum of the whole payload. */
    payload_checksum: { offset: 60, width: 4, type: 'u32' },
    /** Checksum of the chunk table (its entries in order, little-endian). */
    chunk_table_checksum: { offset: 64, width: 4, type: 'u32' },
    /**
     * Bytes of the compressed block: the stream that was split into the shards (the payloads
     * of the data shards, concatenated, start with it). Zero when `compression` is none;
     * otherwise less than `data_bytes`, since a block that does not shrink is stored raw.
     */
    compressed_bytes: { offset: 68, width: 4, type: 'u32' },
    /** Zero. Room for new fields. */
    reserved_1: { offset: 72, width: 52, type: 'bytes' },
    /** Checksum of bytes 0 to 123 of this header. */
    header_checksum: { offset: 124, width: 4, type: 'u32', checksum: 'crc32c' },
  },
} as const satisfies StructLayout;
