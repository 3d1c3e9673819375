// SPDX-License-Identifier: GPL-2.0-only

//! The decode ioctl: decodes a buffer from userspace with the generated definitions and
//! describes the result as text, in the format the VM suite derives from the TypeScript
//! decoder, so the two are compared line for line:
//!
//! ```text
//! ok                              error kind=checksum field=header_checksum
//! magic=0x31444853524d4853
//! reserved_0=00                   (bytes fields as hex)
//! ...every field, in layout order
//! chunk_count=3                   (shard prefix only)
//! bad_chunk=-1                    (shard prefix, payload in the buffer only)
//! payload_checksum_ok=1
//! ```

use crate::layout::{crc32c, BucketLabel, DecodeError, FieldType, FieldValue, Layout, ShardHeader};
use crate::shard;
use core::fmt::Write;
use kernel::prelude::*;

/// What the buffer is decoded as (`layout` of `struct shmr_decode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecodeAs {
    /// A shard file from offset 0: `decodeShardPrefix`, then the payload if it is there.
    ShardPrefix = 1,
    /// The 128-byte shard header: `decodeStruct(ShardHeader, ...)`.
    ShardHeader = 2,
    /// The 64-byte bucket label: `decodeStruct(BucketLabel, ...)`.
    BucketLabel = 3,
}

impl TryFrom<u32> for DecodeAs {
    type Error = Error;

    fn try_from(value: u32) -> Result<Self> {
        match value {
            1 => Ok(Self::ShardPrefix),
            2 => Ok(Self::ShardHeader),
            3 => Ok(Self::BucketLabel),
            _ => Err(EINVAL),
        }
    }
}

/// Text written into a kernel buffer of bounded size.
pub(crate) struct Text {
    bytes: KVec<u8>,
    limit: usize,
}

impl Text {
    /// An empty text of at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Result<Self> {
        Ok(Self {
            bytes: KVec::with_capacity(limit, GFP_KERNEL)?,
            limit,
        })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Write for Text {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        if self.bytes.len() + text.len() > self.limit {
            return Err(core::fmt::Error);
        }
        self.bytes
            .extend_from_slice(text.as_bytes(), GFP_KERNEL)
            .map_err(|_| core::fmt::Error)
    }
}

/// Decodes `input` as `what` and describes the result into `out`.
///
/// Returns 0 when it decodes, else the `DecodeErrorKind` value.
///
/// # Errors
///
/// `EOVERFLOW` when the description does not fit `out`.
pub(crate) fn describe(what: DecodeAs, input: &[u8], out: &mut Text) -> Result<u8> {
    let written = match what {
        DecodeAs::ShardHeader => describe_struct::<ShardHeader>(input, out),
        DecodeAs::BucketLabel => describe_struct::<BucketLabel>(input, out),
        DecodeAs::ShardPrefix => describe_shard(input, out),
    };
    written.map_err(|_| EOVERFLOW)
}

fn describe_struct<L: Layout>(input: &[u8], out: &mut Text) -> Result<u8, core::fmt::Error> {
    match L::decode(input) {
        Ok(value) => {
            out.write_str("ok\n")?;
            write_fields(&value, out)?;
            Ok(0)
        }
        Err(error) => write_error(&error, out),
    }
}

fn describe_shard(input: &[u8], out: &mut Text) -> Result<u8, core::fmt::Error> {
    let prefix = match shard::decode_prefix(input) {
        Ok(prefix) => prefix,
        Err(error) => return write_error(&error, out),
    };
    let header = &prefix.header;
    out.write_str("ok\n")?;
    write_fields(header, out)?;
    writeln!(out, "chunk_count={}", prefix.chunk_table.len() / 4)?;
    let payload_offset = header.payload_offset as usize;
    let payload_end = payload_offset + header.payload_bytes as usize;
    if let Some(payload) = input.get(payload_offset..payload_end) {
        let bad_chunk = shard::find_bad_chunk(&prefix, payload, 0).map_or(-1, |index| index as i64);
        writeln!(out, "bad_chunk={}", bad_chunk)?;
        let is_ok = crc32c(0, payload) == header.payload_checksum;
        writeln!(out, "payload_checksum_ok={}", u8::from(is_ok))?;
    }
    Ok(0)
}

fn write_error(error: &DecodeError, out: &mut Text) -> Result<u8, core::fmt::Error> {
    writeln!(
        out,
        "error kind={} field={}",
        error.kind.name(),
        error.field
    )?;
    Ok(error.kind.value())
}

fn write_fields<L: Layout>(value: &L, out: &mut Text) -> core::fmt::Result {
    for info in L::FIELD_INFOS {
        write!(out, "{}=", info.name)?;
        match (value.field(info.name), info.field_type) {
            (Some(FieldValue::Uint(number)), _) => write!(out, "{:#x}", number)?,
            (Some(FieldValue::Bytes(bytes)), FieldType::Bytes) => {
                for byte in bytes {
                    write!(out, "{:02x}", byte)?;
                }
            }
            _ => out.write_str("?")?,
        }
        out.write_str("\n")?;
    }
    Ok(())
}
