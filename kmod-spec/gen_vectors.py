#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Writes vectors_table.rs: the shared test vectors and what the TypeScript decoder makes of
each (generated/vectors/manifest.json), as Rust statics the module checks at load.

Run by Kbuild before the module is compiled: python3 gen_vectors.py MANIFEST OUT.
The vector bytes are not copied: the table names each file with include_bytes!, relative to
this directory, so the module compiles in exactly the files `npm run codegen` wrote.
"""
import json
import os
import sys


def rust_bytes(data: bytes) -> str:
    return 'b"' + ''.join(f'\\x{byte:02x}' for byte in data) + '"'


def rust_str(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII is a valid Rust string literal


def outcome(expect: dict, layout_fields: dict) -> str:
    if not expect['ok']:
        return (f'Outcome::Fails {{ kind: {rust_str(expect["error"])}, code: {expect["errorCode"]}, '
                f'field: {rust_str(expect["field"])} }}')
    fields = []
    for name, value in expect['fields'].items():
        if value.startswith('0x'):
            fields.append(f'FieldExpect::Uint({rust_str(name)}, {value})')
        else:
            fields.append(f'FieldExpect::Bytes({rust_str(name)}, {rust_bytes(bytes.fromhex(value))})')
    return 'Outcome::Decodes(&[\n            ' + ',\n            '.join(fields) + ',\n        ])'


def shard_expect(shard: dict) -> str:
    prefix = shard['prefix']
    prefix_rust = 'Outcome::Decodes(&[])' if prefix['ok'] else outcome(prefix, {})
    bad = shard['badChunkIndex']
    bad_rust = 'None' if bad is None else f'Some({bad})'
    ok = shard['payloadChecksumOk']
    ok_rust = 'None' if ok is None else f'Some({"true" if ok else "false"})'
    return (f'Some(ShardExpect {{ prefix: {prefix_rust}, payload_included: '
            f'{"true" if shard["payloadIncluded"] else "false"}, bad_chunk: {bad_rust}, '
            f'payload_checksum_ok: {ok_rust} }})')


def main() -> None:
    manifest_path, out_path = sys.argv[1], sys.argv[2]
    with open(manifest_path, encoding='utf-8') as file:
        manifest = json.load(file)
    vector_dir = os.path.relpath(os.path.dirname(manifest_path), os.path.dirname(out_path))
    lines = [
        '// SPDX-License-Identifier: GPL-2.0-only',
        '// GENERATED at build time by gen_vectors.py from generated/vectors/manifest.json.',
        '',
        '/// The CRC32C check values of the manifest.',
        'pub(crate) static CRC32C_CASES: &[Crc32cCase] = &[',
    ]
    for case in manifest['crc32c']:
        lines.append(f'    Crc32cCase {{ input: {rust_bytes(bytes.fromhex(case["input"]))}, '
                     f'value: {case["value"]} }},')
    lines += ['];', '', '/// Every vector of the manifest, in its order.', 'pub(crate) static VECTORS: &[Vector] = &[']
    for vector in manifest['vectors']:
        shard = vector.get('shard')
        lines += [
            '    Vector {',
            f'        name: {rust_str(vector["name"])},',
            f'        layout: {rust_str(vector["layout"])},',
            f'        bytes: include_bytes!({rust_str(vector_dir + "/" + vector["file"])}),',
            f'        expect: {outcome(vector["expect"], {})},',
            f'        shard: {"None" if shard is None else shard_expect(shard)},',
            '    },',
        ]
    lines += ['];', '']
    decode_kinds = manifest['decodeErrorKinds']
    lines.append('/// The DecodeErrorKind values of the manifest, checked against the generated enum.')
    lines.append('pub(crate) static DECODE_ERROR_KINDS: &[(&str, u8)] = &[')
    for name, value in decode_kinds.items():
        lines.append(f'    ({rust_str(name)}, {value}),')
    lines += ['];', '']
    temporary = out_path + '.tmp'
    with open(temporary, 'w', encoding='utf-8') as file:
        file.write('\n'.join(lines))
    os.replace(temporary, out_path)


if __name__ == '__main__':
    main()
