/**
 * Layout: the shard header and bucket label encode and decode exactly; every kind of damage
 * is reported as the right DecodeErrorKind; the chunk table catches any flipped payload byte.
 */
import { describe, expect, it } from 'vitest';
import { crc32c } from '../erasure/index.js';
import {
  BucketLabel, Compression, decodeShardPrefix, decodeStruct, encodeShardPrefix, encodeStruct, findBadChunk,
  shardGeometry, ShardHeader, Topology,
} from './index.js';
import { flipBits } from '../../test/helpers/bytes.js';

const INPUT = {
  topology: Topology.erasure, shard_index: 5, data_shards: 4, parity_shards: 2,
  ino: 123456789n, block_index: 2n ** 40n, generation: 2n ** 52n, block_bytes: 1 << 20,
  data_bytes: (1 << 20) - 3, payload_bytes: 10_000, compression: Compression.none, compressed_bytes: 0,
};

function makeShard(): { prefix: Buffer; payload: Buffer } {
  const payload = Buffer.alloc(INPUT.payload_bytes);
  for (let index = 0; index < payload.byteLength; index++) payload[index] = (index * 31) & 0xff;
  const prefix = Buffer.alloc(shardGeometry(payload.byteLength).payloadOffset);
  expect(encodeShardPrefix(INPUT, payload, prefix)).toBe(4096);
  return { prefix, payload };
}

describe('shard header', () => {
  it('round-trips every field', () => {
    const { prefix } = makeShard();
    const decoded = decodeShardPrefix(prefix);
    expect(decoded.ok).toBe(true);
    if (!decoded.ok) return;
    const header = decoded.value.header;
    expect(header.magic).toBe(ShardHeader.fields.magic.value);
    expect(header.ino).toBe(INPUT.ino);
    expect(header.block_index).toBe(INPUT.block_index);
    expect(header.generation).toBe(INPUT.generation);
    expect(header.shard_index).toBe(5);
    expect(header.data_bytes).toBe(INPUT.data_bytes);
    expect(header.payload_offset).toBe(4096);
    expect(header.chunk_bytes).toBe(4096);
    expect(decoded.value.chunkTable.byteLength).toBe(3 * 4);
    expect(prefix.subarray(0, 8).toString('latin1')).toBe('SHMRSHD1');
  });

  it('reports each kind of damage', () => {
    const cases: [string, (buffer: Buffer) => void, string, string][] = [
      ['short', (buffer) => buffer.fill(0, 100), 'checksum', 'header_checksum'],
      ['magic', (buffer) => flipBits(buffer, 0, 1), 'magic', 'magic'],
      ['version', (buffer) => { buffer[8] = 9; }, 'version', 'version'],
      ['header bit', (buffer) => flipBits(buffer, 20, 0x10), 'checksum', 'header_checksum'],
      ['chunk table', (buffer) => flipBits(buffer, 130, 1), 'checksum', 'chunk_table_checksum'],
    ];
    for (const [, damage, kind, field] of cases) {
      const { prefix } = makeShard();
      damage(prefix);
      const decoded = decodeShardPrefix(prefix);
      expect(decoded.ok).toBe(false);
      if (decoded.ok) continue;
      expect([decoded.kind, decoded.field]).toEqual([kind, field]);
    }
    const decoded = decodeShardPrefix(makeShard().prefix.subarray(0, 60));
    expect(decoded.ok ? 'ok' : decoded.kind).toBe('short');
  });

  it('records compression, and reads a header from before compression as uncompressed', () => {
    const payload = Buffer.alloc(5000, 7);
    const prefix = Buffer.alloc(4096);
    const input = { ...INPUT, payload_bytes: 5000, compression: Compression.zstd, compressed_bytes: 20_000 };
    encodeShardPrefix(input, payload, prefix);
    const decoded = decodeShardPrefix(prefix);
    expect(decoded.ok && [decoded.value.header.compression, decoded.value.header.compressed_bytes])
      .toEqual([Compression.zstd, 20_000]);
    // The two fields took the place of reserved bytes that older writers left zero.
    const { prefix: old } = makeShard();
    expect(old[15]).toBe(0);
    expect(old.readUInt32LE(68)).toBe(0);
    const oldDecoded = decodeShardPrefix(old);
    expect(oldDecoded.ok && oldDecoded.value.header.compression).toBe(Compression.none);
  });

  it('rejects compression fields that contradict each other', () => {
    const resealed = (change: (buffer: Buffer) => void): string => {
      const { prefix } = makeShard();
      change(prefix);
      prefix.writeUInt32LE(crc32c(prefix.subarray(0, 124)), 124);
      const decoded = decodeShardPrefix(prefix);
      return decoded.ok ? 'ok' : `${decoded.kind} ${decoded.field}`;
    };
    expect(resealed((buffer) => buffer.writeUInt32LE(100, 68))).toBe('field compressed_bytes');
    expect(resealed((buffer) => { buffer[15] = Compression.lz4; })).toBe('field compressed_bytes');
    expect(resealed((buffer) => {
      buffer[15] = Compression.zstd;
      buffer.writeUInt32LE(INPUT.data_bytes, 68);
    })).toBe('field compressed_bytes');
    expect(resealed((buffer) => { buffer[15] = 9; })).toBe('field compression');
    expect(resealed((buffer) => {
      buffer[15] = Compression.lz4;
      buffer.writeUInt32LE(999, 68);
    })).toBe('ok');
  });

  it('finds a flipped payload byte in the right chunk', () => {
    const { prefix, payload } = makeShard();
    const decoded = decodeShardPrefix(prefix);
    if (!decoded.ok) throw new Error(decoded.kind);
    expect(findBadChunk(decoded.value, payload, 0)).toBe(-1);
    flipBits(payload, 9000, 0x40);
    expect(findBadChunk(decoded.value, payload, 0)).toBe(2);
    expect(findBadChunk(decoded.value, payload.subarray(4096, 8192), 1)).toBe(-1);
  });
});

describe('bucket label', () => {
  it('round-trips and rejects reserved bytes that are not zero', () => {
    const buffer = Buffer.alloc(BucketLabel.sizeBytes);
    encodeStruct(BucketLabel, {
      filesystem_uuid: Buffer.alloc(16, 1), bucket_uuid: Buffer.alloc(16, 2), created_sec: 1700000000n,
    }, buffer);
    const decoded = decodeStruct(BucketLabel, buffer);
    expect(decoded.ok && decoded.value.created_sec).toBe(1700000000n);
    buffer[12] = 1;
    const reserved = decodeStruct(BucketLabel, buffer);
    // Reserved bytes sit under the checksum, so damage there is a checksum failure first.
    expect(reserved.ok ? 'ok' : reserved.kind).toBe('checksum');
  });
});
