// SPDX-License-Identifier: GPL-2.0-only

//! vectors_test: the generated Rust layout (kmod-spec/generated/shmr_layout.rs) against the
//! test vectors the TypeScript encoder wrote (kmod-spec/generated/vectors/).
//!
//! Goal: prove Rust reads and writes the on-disk format exactly as TypeScript does.
//! Method, for every vector of manifest.json, through `visit_layout` and the `Layout` trait (no
//! code per struct, so a new struct or field needs no edit here):
//! - decode with the generated decoder; check every field against the manifest, or that a
//!   corrupt vector fails with the same DecodeErrorKind and field as the TypeScript decoder;
//! - for shard files, check the chunk table (count, CRC32C), each chunk and the payload CRC,
//!   which shard-format.ts checks by hand-written code the generator does not emit;
//! - encode every good vector from the manifest's field values (shard files: recomputing the
//!   table, checksums and payload offset from the payload), compare with the TypeScript bytes
//!   and write the result to OUT_DIR, where the vitest test decodes it with TypeScript.
//!
//! Also checks CRC32C against ISA-L's values and DecodeErrorKind numbers against TypeScript's.
//!
//! The generated module is used as the kernel module uses it (`mod`), with std only here, in
//! the test harness. Usage: vectors_test VECTORS_DIR OUT_DIR; exits 0 only if nothing failed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// The harness uses part of the generated API; the rest is for the kernel module.
#[allow(dead_code)]
#[path = "../../../kmod-spec/generated/shmr_layout.rs"]
mod shmr_layout;

use shmr_layout::{
    crc32c, visit_layout, DecodeErrorKind, FieldInfo, FieldType, FieldValue, Layout, LayoutVisitor,
    ShardHeader, LAYOUT_NAMES,
};

/// A parsed JSON value; numbers keep their text, which the manifest uses for small integers.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

const NULL: Json = Json::Null;

impl Json {
    /// The value of `key`, or Null when absent or not an object.
    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Object(members) => members
                .iter()
                .find(|(name, _)| name == key)
                .map_or(&NULL, |(_, value)| value),
            _ => &NULL,
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Json::String(text) | Json::Number(text) => text,
            _ => "",
        }
    }

    fn is_true(&self) -> bool {
        matches!(self, Json::Bool(true))
    }

    fn as_array(&self) -> &[Json] {
        match self {
            Json::Array(items) => items,
            _ => &[],
        }
    }

    /// An integer given as a JSON number or as a "0x..." string.
    fn as_u64(&self) -> Option<u64> {
        let text = self.as_str();
        match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => text.parse().ok(),
        }
    }
}

/// A recursive-descent JSON parser over the manifest text.
struct Parser<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.position < self.bytes.len() && self.bytes[self.position].is_ascii_whitespace() {
            self.position += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_space();
        if self.bytes.get(self.position) != Some(&byte) {
            return Err(format!(
                "expected '{}' at byte {}",
                byte as char, self.position
            ));
        }
        self.position += 1;
        Ok(())
    }

    fn value(&mut self) -> Result<Json, String> {
        self.skip_space();
        match self.bytes.get(self.position) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(_) => self.primitive(),
            None => Err("unexpected end".to_string()),
        }
    }

    fn object(&mut self) -> Result<Json, String> {
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.skip_space();
        if self.bytes.get(self.position) == Some(&b'}') {
            self.position += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_space();
            let key = self.string()?;
            self.expect(b':')?;
            members.push((key, self.value()?));
            self.skip_space();
            self.position += 1;
            match self.bytes.get(self.position - 1) {
                Some(b',') => continue,
                Some(b'}') => return Ok(Json::Object(members)),
                _ => return Err(format!("bad object at byte {}", self.position)),
            }
        }
    }

    fn array(&mut self) -> Result<Json, String> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.skip_space();
        if self.bytes.get(self.position) == Some(&b']') {
            self.position += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_space();
            self.position += 1;
            match self.bytes.get(self.position - 1) {
                Some(b',') => continue,
                Some(b']') => return Ok(Json::Array(items)),
                _ => return Err(format!("bad array at byte {}", self.position)),
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut text = String::new();
        loop {
            let byte = *self.bytes.get(self.position).ok_or("unterminated string")?;
            self.position += 1;
            match byte {
                b'"' => return Ok(text),
                b'\\' => {
                    let escaped = *self.bytes.get(self.position).ok_or("bad escape")?;
                    self.position += 1;
                    text.push(match escaped {
                        b'n' => '\n',
                        b't' => '\t',
                        other => other as char,
                    });
                }
                _ => text.push(byte as char),
            }
        }
    }

    fn primitive(&mut self) -> Result<Json, String> {
        let start = self.position;
        while self.position < self.bytes.len()
            && !b",}] \t\r\n".contains(&self.bytes[self.position])
        {
            self.position += 1;
        }
        let text = String::from_utf8_lossy(&self.bytes[start..self.position]).into_owned();
        Ok(match text.as_str() {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            "null" => Json::Null,
            _ => Json::Number(text),
        })
    }
}

fn hex_decode(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&hex[index..index + 2], 16).ok())
        .collect()
}

/// Counts and prints failures, and what was checked.
#[derive(Default)]
struct Report {
    failure_count: usize,
    vector_count: usize,
    encoded_count: usize,
}

impl Report {
    fn fail(&mut self, vector: &str, message: String) {
        eprintln!("FAIL {vector}: {message}");
        self.failure_count += 1;
    }
}

/// What every check needs: the manifest's global values and where to write.
struct Context {
    sector_bytes: usize,
    chunk_bytes: usize,
    vectors_dir: PathBuf,
    out_dir: PathBuf,
}

/// Whether the field is an input of encode (not reserved, fixed or a checksum).
fn is_input(info: &FieldInfo) -> bool {
    !info.is_reserved && info.fixed_value.is_none() && !info.is_checksum
}

/// The manifest's value of a field, as the generated `FieldValue`.
fn manifest_value<'a>(
    info: &FieldInfo,
    text: &str,
    storage: &'a mut Vec<u8>,
) -> Option<FieldValue<'a>> {
    if info.field_type == FieldType::Bytes {
        *storage = hex_decode(text)?;
        return Some(FieldValue::Bytes(storage));
    }
    let value = u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()?;
    Some(FieldValue::Uint(value))
}

/// Checks one vector against a layout type chosen by name.
struct CheckVector<'a> {
    context: &'a Context,
    vector: &'a Json,
    bytes: &'a [u8],
    report: &'a mut Report,
}

impl CheckVector<'_> {
    fn name(&self) -> String {
        self.vector.get("name").as_str().to_string()
    }

    fn check_fields<L: Layout>(&mut self, value: &L, fields: &Json) {
        let name = self.name();
        let expected_count = match fields {
            Json::Object(members) => members.len(),
            _ => 0,
        };
        if expected_count != L::FIELD_INFOS.len() {
            self.report
                .fail(&name, format!("manifest has {expected_count} fields"));
        }
        for info in L::FIELD_INFOS {
            let mut storage = Vec::new();
            let expected = manifest_value(info, fields.get(info.name).as_str(), &mut storage);
            if value.field(info.name) != expected {
                let decoded = value.field(info.name);
                self.report.fail(
                    &name,
                    format!("{}: decoded {decoded:?}, manifest {expected:?}", info.name),
                );
            }
        }
    }

    fn check_failure(&mut self, error_kind: DecodeErrorKind, field: &str, expect: &Json) {
        let name = self.name();
        if Some(u64::from(error_kind.value())) != expect.get("errorCode").as_u64() {
            self.report
                .fail(&name, format!("decode returned {error_kind:?}"));
        }
        if error_kind.name() != expect.get("error").as_str() {
            self.report
                .fail(&name, format!("kind name {} differs", error_kind.name()));
        }
        if field != expect.get("field").as_str() {
            self.report
                .fail(&name, format!("failed in field '{field}'"));
        }
    }

    /// Re-encodes a good struct vector from the manifest's values; it must equal the vector.
    fn encode<L: Layout>(&mut self, fields: &Json) {
        let name = self.name();
        let mut value = L::ZEROED;
        for info in L::FIELD_INFOS.iter().filter(|info| is_input(info)) {
            let mut storage = Vec::new();
            let field = manifest_value(info, fields.get(info.name).as_str(), &mut storage);
            if !field.is_some_and(|field| value.set_field(info.name, field)) {
                self.report.fail(&name, format!("cannot set {}", info.name));
            }
        }
        let mut encoded = vec![0u8; L::SIZE_BYTES];
        let short = value.encode_into(&mut encoded[..L::SIZE_BYTES - 1]);
        if short.map_err(|error| error.kind) != Err(DecodeErrorKind::Short) {
            self.report.fail(
                &name,
                "encode into a short target does not fail".to_string(),
            );
        }
        if value.encode_into(&mut encoded).is_err() || encoded != self.bytes {
            self.report.fail(
                &name,
                "encoded bytes differ from the TypeScript encoder's".to_string(),
            );
        }
        write_output(self.context, &name, &encoded);
        self.report.encoded_count += 1;
    }
}

impl LayoutVisitor for CheckVector<'_> {
    type Output = ();

    fn visit<L: Layout>(mut self) {
        let name = self.name();
        let expect = self.vector.get("expect");
        let is_shard = self.vector.get("kind").as_str() == "shard";
        let is_good = expect.get("ok").is_true() && self.vector.get("case").as_str() != "corrupt";
        match L::decode(self.bytes) {
            Ok(value) if expect.get("ok").is_true() => {
                self.check_fields(&value, expect.get("fields"))
            }
            Ok(_) => self.report.fail(
                &name,
                "decoded, but the manifest expects a failure".to_string(),
            ),
            Err(error) => self.check_failure(error.kind, error.field, expect),
        }
        if is_shard {
            check_shard(self.context, self.vector, self.bytes, self.report);
        }
        if is_good && !is_shard {
            self.encode::<L>(expect.get("fields"));
        }
        if is_good && is_shard && self.vector.get("shard").get("payloadIncluded").is_true() {
            encode_shard(self.context, self.vector, self.bytes, self.report);
        }
        self.report.vector_count += 1;
    }
}

fn write_output(context: &Context, name: &str, bytes: &[u8]) {
    let path = context.out_dir.join(format!("{name}.bin"));
    fs::write(&path, bytes).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
}

/// Result of the shard-format checks of a shard file, as in manifest "shard".
struct ShardResult {
    failure: Option<(DecodeErrorKind, &'static str)>,
    bad_chunk_index: i64,
    is_payload_checksum_ok: bool,
}

/// Chunk table entries of a payload: the CRC32C of each `chunk_bytes` piece.
fn chunk_table(payload: &[u8], chunk_bytes: usize) -> Vec<u8> {
    payload
        .chunks(chunk_bytes)
        .flat_map(|chunk| crc32c(0, chunk).to_le_bytes())
        .collect()
}

/// The chunk table, chunk and payload checks of shard-format.ts, on a decoded header.
fn check_shard_file(
    context: &Context,
    header: &ShardHeader,
    bytes: &[u8],
    is_payload_included: bool,
) -> Result<ShardResult, String> {
    let payload_bytes = header.payload_bytes as usize;
    let chunk_bytes = header.chunk_bytes as usize;
    let chunk_count = payload_bytes.div_ceil(chunk_bytes.max(1));
    let table_end = ShardHeader::SIZE_BYTES + 4 * chunk_count;
    let mut result = ShardResult {
        failure: None,
        bad_chunk_index: -1,
        is_payload_checksum_ok: true,
    };
    let Some(table) = bytes.get(ShardHeader::SIZE_BYTES..table_end) else {
        result.failure = Some((DecodeErrorKind::Short, "chunk_table"));
        return Ok(result);
    };
    if crc32c(0, table) != header.chunk_table_checksum {
        result.failure = Some((DecodeErrorKind::Checksum, "chunk_table_checksum"));
        return Ok(result);
    }
    let payload_offset = header.payload_offset as usize;
    if payload_offset != table_end.div_ceil(context.sector_bytes) * context.sector_bytes {
        return Err(format!(
            "payload_offset {payload_offset} is not the sector after the table"
        ));
    }
    if !is_payload_included {
        return Ok(result);
    }
    let payload = &bytes[payload_offset..payload_offset + payload_bytes];
    let computed = chunk_table(payload, chunk_bytes);
    result.bad_chunk_index = (0..chunk_count)
        .find(|&chunk| computed[4 * chunk..4 * chunk + 4] != table[4 * chunk..4 * chunk + 4])
        .map_or(-1, |chunk| chunk as i64);
    result.is_payload_checksum_ok = crc32c(0, payload) == header.payload_checksum;
    Ok(result)
}

fn check_shard(context: &Context, vector: &Json, bytes: &[u8], report: &mut Report) {
    let name = vector.get("name").as_str();
    let shard = vector.get("shard");
    let prefix = shard.get("prefix");
    let is_payload_included = shard.get("payloadIncluded").is_true();
    let Ok(header) = ShardHeader::decode(bytes) else {
        return; // The struct-level check has compared the failure with the manifest.
    };
    let result = match check_shard_file(context, &header, bytes, is_payload_included) {
        Ok(result) => result,
        Err(message) => return report.fail(name, message),
    };
    match result.failure {
        None if prefix.get("ok").is_true() => {}
        Some((kind, field))
            if kind.name() == prefix.get("error").as_str()
                && field == prefix.get("field").as_str() => {}
        failure => report.fail(name, format!("shard prefix check gives {failure:?}")),
    }
    if !is_payload_included {
        return;
    }
    if shard.get("badChunkIndex").as_str().parse::<i64>() != Ok(result.bad_chunk_index) {
        report.fail(
            name,
            format!(
                "bad chunk {} differs from the manifest",
                result.bad_chunk_index
            ),
        );
    }
    if shard.get("payloadChecksumOk").is_true() != result.is_payload_checksum_ok {
        report.fail(
            name,
            "payload checksum verdict differs from the manifest".to_string(),
        );
    }
}

/// Rebuilds a shard file: header from the manifest, table and checksums from the payload.
fn encode_shard(context: &Context, vector: &Json, bytes: &[u8], report: &mut Report) {
    let name = vector.get("name").as_str();
    let fields = vector.get("expect").get("fields");
    let payload_bytes = fields.get("payload_bytes").as_u64().unwrap_or(0) as usize;
    let chunk_count = payload_bytes.div_ceil(context.chunk_bytes);
    let table_end = ShardHeader::SIZE_BYTES + 4 * chunk_count;
    let payload_offset = table_end.div_ceil(context.sector_bytes) * context.sector_bytes;
    if bytes.len() != payload_offset + payload_bytes {
        return report.fail(
            name,
            format!("file length {} is not prefix + payload", bytes.len()),
        );
    }
    let payload = &bytes[payload_offset..];
    let table = chunk_table(payload, context.chunk_bytes);
    let mut header = ShardHeader::ZEROED;
    for info in ShardHeader::FIELDS.iter().filter(|info| is_input(info)) {
        let mut storage = Vec::new();
        let value = manifest_value(info, fields.get(info.name).as_str(), &mut storage);
        if !value.is_some_and(|value| header.set_field(info.name, value)) {
            report.fail(name, format!("cannot set {}", info.name));
        }
    }
    header.chunk_bytes = context.chunk_bytes as u32;
    header.payload_offset = payload_offset as u32;
    header.payload_checksum = crc32c(0, payload);
    header.chunk_table_checksum = crc32c(0, &table);
    let mut file = vec![0u8; bytes.len()];
    let Some(header_bytes) = file.first_chunk_mut::<{ ShardHeader::SIZE_BYTES }>() else {
        return report.fail(name, "file shorter than a header".to_string());
    };
    header.encode(header_bytes);
    file[ShardHeader::SIZE_BYTES..table_end].copy_from_slice(&table);
    file[payload_offset..].copy_from_slice(payload);
    if file != bytes {
        report.fail(
            name,
            "rebuilt shard file differs from the TypeScript encoder's".to_string(),
        );
    }
    write_output(context, name, &file);
    report.encoded_count += 1;
}

/// CRC32C equals ISA-L's on the manifest's inputs; DecodeErrorKind names match TypeScript.
fn check_constants(manifest: &Json, report: &mut Report) {
    for entry in manifest.get("crc32c").as_array() {
        let input = hex_decode(entry.get("input").as_str()).unwrap_or_default();
        if Some(u64::from(crc32c(0, &input))) != entry.get("value").as_u64() {
            report.fail(
                "constants",
                format!("crc32c of {}", entry.get("input").as_str()),
            );
        }
    }
    let Json::Object(kinds) = manifest.get("decodeErrorKinds") else {
        return report.fail("constants", "no decodeErrorKinds".to_string());
    };
    for (name, code) in kinds {
        let kind = code.as_u64().and_then(DecodeErrorKind::from_value);
        if kind.map(DecodeErrorKind::name) != Some(name.as_str()) {
            report.fail("constants", format!("DecodeErrorKind {name}"));
        }
    }
    for layout in LAYOUT_NAMES {
        let has_vector = manifest
            .get("vectors")
            .as_array()
            .iter()
            .any(|vector| vector.get("layout").as_str() == layout);
        if !has_vector {
            report.fail("constants", format!("no vector for {layout}"));
        }
    }
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().collect();
    if arguments.len() != 3 {
        eprintln!("usage: {} VECTORS_DIR OUT_DIR", arguments[0]);
        return ExitCode::from(2);
    }
    let vectors_dir = Path::new(&arguments[1]);
    let text = fs::read(vectors_dir.join("manifest.json")).expect("manifest.json");
    let manifest = match (Parser {
        bytes: &text,
        position: 0,
    })
    .value()
    {
        Ok(manifest) => manifest,
        Err(message) => {
            eprintln!("manifest.json: {message}");
            return ExitCode::from(2);
        }
    };
    let context = Context {
        sector_bytes: manifest.get("sectorBytes").as_u64().unwrap_or(4096) as usize,
        chunk_bytes: manifest.get("chunkBytes").as_u64().unwrap_or(4096) as usize,
        vectors_dir: vectors_dir.to_path_buf(),
        out_dir: PathBuf::from(&arguments[2]),
    };
    let mut report = Report::default();
    check_constants(&manifest, &mut report);
    for vector in manifest.get("vectors").as_array() {
        let name = vector.get("name").as_str();
        let path = context.vectors_dir.join(vector.get("file").as_str());
        let bytes = fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let check = CheckVector {
            context: &context,
            vector,
            bytes: &bytes,
            report: &mut report,
        };
        if visit_layout(vector.get("layout").as_str(), check).is_none() {
            report.fail(name, "no generated layout of that name".to_string());
        }
    }
    println!(
        "rust: {} vectors decoded, {} encoded, {} failures",
        report.vector_count, report.encoded_count, report.failure_count
    );
    if report.failure_count == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
