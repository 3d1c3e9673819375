// SPDX-License-Identifier: GPL-2.0-only

//! Load-time check of the generated layout against the shared test vectors.
//!
//! Every vector file written by `npm run codegen` is compiled in (`vectors_table.rs`, made by
//! `gen_vectors.py` at build time) with what the TypeScript decoder makes of it. At load the
//! module decodes each one with the generated definitions and compares every field, error kind
//! and field name, the shard prefix rules, the chunk and payload checksums, and re-encodes the
//! valid shards byte for byte. Any difference refuses the load, naming the vector.

use crate::layout::{
    crc32c, BucketLabel, DecodeError, DecodeErrorKind, FieldValue, Layout, ShardHeader, Topology,
};
use crate::shard::{self, ShardIdentity, CHUNK_BYTES};
use kernel::prelude::*;

/// A CRC32C input and its value.
pub(crate) struct Crc32cCase {
    input: &'static [u8],
    value: u32,
}

/// One expected field value, as the manifest gives it.
pub(crate) enum FieldExpect {
    Uint(&'static str, u64),
    Bytes(&'static str, &'static [u8]),
}

/// What decoding a vector must give.
pub(crate) enum Outcome {
    /// Success, with these field values (every field of the layout).
    Decodes(&'static [FieldExpect]),
    /// Failure of this kind (TypeScript name and value) in this field.
    Fails {
        kind: &'static str,
        code: u8,
        field: &'static str,
    },
}

/// The shard-file checks beyond the header (`ShardExpectation`).
pub(crate) struct ShardExpect {
    prefix: Outcome,
    payload_included: bool,
    bad_chunk: Option<i64>,
    payload_checksum_ok: Option<bool>,
}

/// One vector file.
pub(crate) struct Vector {
    name: &'static str,
    layout: &'static str,
    bytes: &'static [u8],
    expect: Outcome,
    shard: Option<ShardExpect>,
}

include!("vectors_table.rs");

/// Checks every vector; `Err(EINVAL)` after the first failure, logged with the vector's name.
pub(crate) fn run() -> Result<usize> {
    check_tables()?;
    for vector in VECTORS {
        if let Err(problem) = check_vector(vector) {
            pr_err!("test vector {}: {}\n", vector.name, problem);
            return Err(EINVAL);
        }
    }
    Ok(VECTORS.len())
}

fn check_tables() -> Result {
    for case in CRC32C_CASES {
        if crc32c(0, case.input) != case.value {
            pr_err!(
                "test vector crc32c of {} bytes: got {:#x}\n",
                case.input.len(),
                crc32c(0, case.input)
            );
            return Err(EINVAL);
        }
    }
    for &(name, value) in DECODE_ERROR_KINDS {
        match DecodeErrorKind::from_value(u64::from(value)) {
            Some(kind) if kind.name() == name => {}
            _ => {
                pr_err!(
                    "test vector decodeErrorKinds: {} = {} is not the generated kind\n",
                    name,
                    value
                );
                return Err(EINVAL);
            }
        }
    }
    Ok(())
}

fn check_vector(vector: &Vector) -> Result<(), &'static str> {
    match vector.layout {
        "ShardHeader" => check_decode::<ShardHeader>(vector.bytes, &vector.expect)?,
        "BucketLabel" => check_decode::<BucketLabel>(vector.bytes, &vector.expect)?,
        _ => return Err("unknown layout"),
    }
    match &vector.shard {
        Some(expect) => check_shard(vector.bytes, expect),
        None => Ok(()),
    }
}

fn check_decode<L: Layout>(bytes: &[u8], expect: &Outcome) -> Result<(), &'static str> {
    match (L::decode(bytes), expect) {
        (Ok(value), Outcome::Decodes(fields)) => check_fields(&value, fields),
        (Err(error), Outcome::Fails { .. }) => check_failure(&error, expect),
        (Ok(_), Outcome::Fails { .. }) => Err("decoded, but the TypeScript decoder rejects it"),
        (Err(_), Outcome::Decodes(_)) => Err("rejected, but the TypeScript decoder decodes it"),
    }
}

fn check_failure(error: &DecodeError, expect: &Outcome) -> Result<(), &'static str> {
    let Outcome::Fails { kind, code, field } = expect else {
        return Err("failure expected");
    };
    if error.kind.name() != *kind || error.kind.value() != *code {
        return Err("wrong error kind");
    }
    if error.field != *field {
        return Err("error in the wrong field");
    }
    Ok(())
}

fn check_fields<L: Layout>(value: &L, fields: &[FieldExpect]) -> Result<(), &'static str> {
    if fields.len() != L::FIELD_INFOS.len() {
        return Err("field count differs from the layout");
    }
    for expect in fields {
        let matches = match *expect {
            FieldExpect::Uint(name, want) => value.field(name) == Some(FieldValue::Uint(want)),
            FieldExpect::Bytes(name, want) => value.field(name) == Some(FieldValue::Bytes(want)),
        };
        if !matches {
            return Err("a field differs");
        }
    }
    Ok(())
}

fn check_shard(bytes: &[u8], expect: &ShardExpect) -> Result<(), &'static str> {
    let prefix = match (shard::decode_prefix(bytes), &expect.prefix) {
        (Ok(prefix), Outcome::Decodes(_)) => prefix,
        (Err(error), Outcome::Fails { .. }) => return check_failure(&error, &expect.prefix),
        (Ok(_), Outcome::Fails { .. }) => {
            return Err("shard prefix decoded, but TypeScript rejects it")
        }
        (Err(_), Outcome::Decodes(_)) => {
            return Err("shard prefix rejected, but TypeScript decodes it")
        }
    };
    let payload_offset = prefix.header.payload_offset as usize;
    let payload_end = payload_offset + prefix.header.payload_bytes as usize;
    if (bytes.len() >= payload_end) != expect.payload_included {
        return Err("payload presence differs");
    }
    if !expect.payload_included {
        return Ok(());
    }
    let payload = &bytes[payload_offset..payload_end];
    let bad_chunk = shard::find_bad_chunk(&prefix, payload, 0).map_or(-1, |index| index as i64);
    if expect.bad_chunk != Some(bad_chunk) {
        return Err("bad chunk index differs");
    }
    let checksum_ok = crc32c(0, payload) == prefix.header.payload_checksum;
    if expect.payload_checksum_ok != Some(checksum_ok) {
        return Err("payload checksum verdict differs");
    }
    if checksum_ok && prefix.header.chunk_bytes == CHUNK_BYTES {
        check_reencode(bytes, &prefix.header, payload)?;
    }
    Ok(())
}

/// Encodes the payload again from the header's identity: the prefix must come out identical.
fn check_reencode(bytes: &[u8], header: &ShardHeader, payload: &[u8]) -> Result<(), &'static str> {
    let Ok(topology) = Topology::try_from(header.topology) else {
        return Err("topology");
    };
    let identity = ShardIdentity {
        topology,
        shard_index: header.shard_index,
        data_shards: header.data_shards,
        parity_shards: header.parity_shards,
        ino: header.ino,
        block_index: header.block_index,
        generation: header.generation,
        block_bytes: header.block_bytes,
        data_bytes: header.data_bytes,
        compression: header.compression,
        compressed_bytes: header.compressed_bytes,
    };
    let payload_offset = header.payload_offset as usize;
    let mut prefix =
        KVec::from_elem(0xa5u8, payload_offset, GFP_KERNEL).map_err(|_| "out of memory")?;
    match shard::encode_prefix(&identity, payload, &mut prefix) {
        Ok(offset) if offset == payload_offset && prefix[..] == bytes[..payload_offset] => Ok(()),
        _ => Err("re-encoding the shard gives different bytes"),
    }
}
