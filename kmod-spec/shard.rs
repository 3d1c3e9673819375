// SPDX-License-Identifier: GPL-2.0-only

//! Shard files: the header, the chunk checksum table and the payload, as
//! `userspace/src/layout/shard-format.ts` builds and checks them.
//!
//! Only the generated layout (`layout.rs`) knows offsets; this file adds the rules of
//! `decodeShardPrefix` (valid field combinations, chunk table checksum) and the encoder of
//! `encodeShardPrefix`, in the same order, so both sides report the same kind and field.

use crate::layout::{
    crc32c, ChecksumKind, Compression, DecodeError, DecodeErrorKind, ShardHeader, Topology,
};
use kernel::prelude::*;

/// Shard payloads start at a multiple of this (`SECTOR_BYTES` in limits.ts).
pub(crate) const SECTOR_BYTES: u64 = 4096;
/// Payload bytes per chunk table entry written by this module (`CHUNK_BYTES`).
pub(crate) const CHUNK_BYTES: u32 = 4096;
/// Largest data + parity shard count of one block (`STRIPE_SHARDS_MAX`).
const STRIPE_SHARDS_MAX: u32 = 32;
/// Bytes of one chunk table entry (a little-endian CRC32C).
const TABLE_ENTRY_BYTES: u64 = 4;

/// Where the parts of a shard file lie (`ShardGeometry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Chunk table entries: one per started chunk of payload.
    pub(crate) chunk_count: u64,
    /// Bytes of the chunk table.
    pub(crate) table_bytes: u64,
    /// File offset of the payload: header + table rounded up to a sector.
    pub(crate) payload_offset: u64,
}

/// The geometry of a shard of `payload_bytes` in `chunk_bytes` chunks (`shardGeometry`).
///
/// `chunk_bytes` must not be zero (the decoder checks it before calling).
pub(crate) fn geometry(payload_bytes: u64, chunk_bytes: u64) -> Geometry {
    let chunk_count = payload_bytes.div_ceil(chunk_bytes);
    let table_bytes = chunk_count * TABLE_ENTRY_BYTES;
    let prefix_bytes = ShardHeader::SIZE_BYTES as u64 + table_bytes;
    Geometry {
        chunk_count,
        table_bytes,
        payload_offset: prefix_bytes.div_ceil(SECTOR_BYTES) * SECTOR_BYTES,
    }
}

/// A verified header and its chunk table, borrowed from the decoded buffer (`ShardPrefix`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ShardPrefix<'a> {
    /// The header, every check passed.
    pub(crate) header: ShardHeader,
    /// The chunk table, its checksum verified.
    pub(crate) chunk_table: &'a [u8],
}

/// Decodes and verifies the prefix of a shard file at the start of `source`
/// (`decodeShardPrefix`): header, field combinations, then the chunk table checksum.
pub(crate) fn decode_prefix(source: &[u8]) -> Result<ShardPrefix<'_>, DecodeError> {
    let header = ShardHeader::decode(source)?;
    if let Some(invalid) = invalid_field(&header) {
        return Err(invalid);
    }
    let shape = geometry(
        u64::from(header.payload_bytes),
        u64::from(header.chunk_bytes),
    );
    let table_end = ShardHeader::SIZE_BYTES as u64 + shape.table_bytes;
    if (source.len() as u64) < table_end {
        return Err(DecodeError::new(DecodeErrorKind::Short, "chunk_table"));
    }
    // The bound was checked just above, so the cast cannot truncate.
    let chunk_table = &source[ShardHeader::SIZE_BYTES..table_end as usize];
    if crc32c(0, chunk_table) != header.chunk_table_checksum {
        return Err(DecodeError::new(
            DecodeErrorKind::Checksum,
            "chunk_table_checksum",
        ));
    }
    Ok(ShardPrefix {
        header,
        chunk_table,
    })
}

/// The first invalid combination of header fields, in the order of `invalidField`.
fn invalid_field(header: &ShardHeader) -> Option<DecodeError> {
    let field = |name| Some(DecodeError::new(DecodeErrorKind::Field, name));
    let shard_count = u32::from(header.data_shards) + u32::from(header.parity_shards);
    if header.data_shards < 1 || shard_count > STRIPE_SHARDS_MAX {
        return field("data_shards");
    }
    if u32::from(header.shard_index) >= shard_count {
        return field("shard_index");
    }
    if header.topology != Topology::Erasure.value() && header.parity_shards != 0 {
        return field("parity_shards");
    }
    if header.topology == Topology::Single.value() && header.data_shards != 1 {
        return field("data_shards");
    }
    if header.data_bytes > header.block_bytes {
        return field("data_bytes");
    }
    let is_compressed = header.compression != Compression::None.value();
    if !is_compressed && header.compressed_bytes != 0 {
        return field("compressed_bytes");
    }
    if is_compressed && (header.compressed_bytes == 0 || header.compressed_bytes >= header.data_bytes) {
        return field("compressed_bytes");
    }
    if header.chunk_bytes == 0 || header.chunk_bytes % 512 != 0 {
        return field("chunk_bytes");
    }
    let shape = geometry(
        u64::from(header.payload_bytes),
        u64::from(header.chunk_bytes),
    );
    if u64::from(header.payload_offset) != shape.payload_offset {
        return field("payload_offset");
    }
    None
}

/// The table entry of chunk `index`; `None` when the table has no such entry.
fn table_entry(chunk_table: &[u8], index: usize) -> Option<u32> {
    let start = index.checked_mul(TABLE_ENTRY_BYTES as usize)?;
    let bytes = chunk_table.get(start..start + TABLE_ENTRY_BYTES as usize)?;
    let mut entry = [0u8; 4];
    entry.copy_from_slice(bytes);
    Some(u32::from_le_bytes(entry))
}

/// Checks `payload`, which holds whole chunks from chunk `first_chunk` on (the last one may be
/// the payload's short tail), against the table (`findBadChunk`). Returns the index, from the
/// payload's start, of the first chunk that does not match, or `None` when all match.
pub(crate) fn find_bad_chunk(
    prefix: &ShardPrefix<'_>,
    payload: &[u8],
    first_chunk: usize,
) -> Option<usize> {
    let chunk_bytes = prefix.header.chunk_bytes as usize;
    for (offset, chunk) in payload.chunks(chunk_bytes).enumerate() {
        let index = first_chunk + offset;
        if table_entry(prefix.chunk_table, index) != Some(crc32c(0, chunk)) {
            return Some(index);
        }
    }
    None
}

/// What identifies a shard; the rest of the header follows from the payload.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ShardIdentity {
    pub(crate) topology: Topology,
    pub(crate) shard_index: u8,
    pub(crate) data_shards: u8,
    pub(crate) parity_shards: u8,
    pub(crate) ino: u64,
    pub(crate) block_index: u64,
    pub(crate) generation: u64,
    pub(crate) block_bytes: u32,
    pub(crate) data_bytes: u32,
    /// A `Compression` value; `compressed_bytes` is 0 for an uncompressed block.
    pub(crate) compression: u8,
    pub(crate) compressed_bytes: u32,
}

/// Writes the header, the chunk table and the zero padding of a shard holding `payload` into
/// `prefix` (`encodeShardPrefix`) and returns the payload offset.
///
/// # Errors
///
/// `EINVAL` when the payload does not fit the header's u32 fields or `prefix` is too small.
pub(crate) fn encode_prefix(
    identity: &ShardIdentity,
    payload: &[u8],
    prefix: &mut [u8],
) -> Result<usize> {
    let payload_bytes = u32::try_from(payload.len()).map_err(|_| EINVAL)?;
    let shape = geometry(u64::from(payload_bytes), u64::from(CHUNK_BYTES));
    let table_end = ShardHeader::SIZE_BYTES + shape.table_bytes as usize;
    let payload_offset = usize::try_from(shape.payload_offset).map_err(|_| EINVAL)?;
    if prefix.len() < payload_offset || identity.data_bytes > identity.block_bytes {
        return Err(EINVAL);
    }
    for (index, chunk) in payload.chunks(CHUNK_BYTES as usize).enumerate() {
        let entry = ShardHeader::SIZE_BYTES + index * TABLE_ENTRY_BYTES as usize;
        prefix[entry..entry + 4].copy_from_slice(&crc32c(0, chunk).to_le_bytes());
    }
    let chunk_table_checksum = crc32c(0, &prefix[ShardHeader::SIZE_BYTES..table_end]);
    prefix[table_end..payload_offset].fill(0);
    let mut header = ShardHeader::ZEROED;
    header.topology = identity.topology.value();
    header.checksum_kind = ChecksumKind::Crc32c.value();
    header.shard_index = identity.shard_index;
    header.data_shards = identity.data_shards;
    header.parity_shards = identity.parity_shards;
    header.ino = identity.ino;
    header.block_index = identity.block_index;
    header.generation = identity.generation;
    header.block_bytes = identity.block_bytes;
    header.data_bytes = identity.data_bytes;
    header.compression = identity.compression;
    header.compressed_bytes = identity.compressed_bytes;
    header.payload_bytes = payload_bytes;
    header.payload_offset = u32::try_from(payload_offset).map_err(|_| EINVAL)?;
    header.chunk_bytes = CHUNK_BYTES;
    header.payload_checksum = crc32c(0, payload);
    header.chunk_table_checksum = chunk_table_checksum;
    let Some(bytes) = prefix.first_chunk_mut::<{ ShardHeader::SIZE_BYTES }>() else {
        return Err(EINVAL);
    };
    header.encode(bytes);
    Ok(payload_offset)
}
