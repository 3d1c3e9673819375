/**
 * Shard file format: building and checking the header + chunk table prefix of a shard file.
 *
 * Invariants:
 * - `payload_offset` is the first multiple of SECTOR_BYTES at or after the end of the chunk
 *   table, so payloads are page aligned and a chunk read is one aligned pread.
 * - The chunk table covers the payload exactly: ceil(payload_bytes / chunk_bytes) entries.
 * - A shard is only trusted after its header checksum, fields, chunk table checksum and the
 *   checksum of every chunk read have been verified.
 */
import { assert } from '../assert.js';
import {
  crc32c, crc32cChunks, crc32cChunksAsync, crc32cVerifyChunks, crc32cVerifyChunksAsync,
} from '../erasure/index.js';
import { CHUNK_BYTES, SECTOR_BYTES, STRIPE_SHARDS_MAX } from '../limits.js';
import { decodeStruct, encodeStruct, failure, type DecodeFailure } from './codec.js';
import { ChecksumKind, Compression, ShardHeader, Topology } from './shard-header.js';
import type { Decoded, EncodeInput } from './types.js';

export type ShardHeaderValue = Decoded<typeof ShardHeader>;
export type ShardHeaderInput = Omit<
  EncodeInput<typeof ShardHeader>,
  'payload_checksum' | 'chunk_table_checksum' | 'payload_offset' | 'chunk_bytes' | 'checksum_kind'
>;

/** The enums of the shard header's fields, by the names its layout gives them. */
export const SHARD_HEADER_ENUMS = { Topology, ChecksumKind, Compression };

/** Where the parts of a shard file lie, for a payload of `payloadBytes`. */
export interface ShardGeometry {
  readonly chunkCount: number;
  readonly tableBytes: number;
  /** Header + table + padding: the file offset of the payload. */
  readonly payloadOffset: number;
}

/** Geometry of a shard file holding `payloadBytes` of payload in `chunkBytes` chunks. */
export function shardGeometry(payloadBytes: number, chunkBytes = CHUNK_BYTES): ShardGeometry {
  assert(payloadBytes >= 0);
  assert(chunkBytes > 0);
  const chunkCount = Math.ceil(payloadBytes / chunkBytes);
  const tableBytes = chunkCount * 4;
  const prefixBytes = ShardHeader.sizeBytes + tableBytes;
  const payloadOffset = Math.ceil(prefixBytes / SECTOR_BYTES) * SECTOR_BYTES;
  return { chunkCount, tableBytes, payloadOffset };
}

/**
 * Writes header, chunk table and zero padding for `payload` into `prefix` and returns the
 * prefix length (= payload offset). `prefix` must hold at least that many bytes.
 */
export function encodeShardPrefix(
  input: ShardHeaderInput,
  payload: Uint8Array,
  prefix: Buffer,
): number {
  assert(input.payload_bytes === payload.byteLength);
  assert(input.shard_index < input.data_shards + input.parity_shards);
  assert(input.data_bytes <= input.block_bytes);
  const geometry = shardGeometry(payload.byteLength);
  assert(prefix.byteLength >= geometry.payloadOffset);
  const tableStart = ShardHeader.sizeBytes;
  const tableEnd = tableStart + geometry.tableBytes;
  const payloadChecksum = crc32cChunks(payload, CHUNK_BYTES, prefix.subarray(tableStart, tableEnd));
  return finishShardPrefix(input, prefix, { geometry, payloadChecksum });
}

/**
 * As encodeShardPrefix, with the checksums computed on the libuv thread pool: for big
 * payloads, so one large write does not stall other requests on the event loop.
 */
export async function encodeShardPrefixAsync(
  input: ShardHeaderInput,
  payload: Uint8Array,
  prefix: Buffer,
): Promise<number> {
  assert(input.payload_bytes === payload.byteLength);
  const geometry = shardGeometry(payload.byteLength);
  assert(prefix.byteLength >= geometry.payloadOffset);
  const tableStart = ShardHeader.sizeBytes;
  const table = prefix.subarray(tableStart, tableStart + geometry.tableBytes);
  const payloadChecksum = await crc32cChunksAsync(payload, CHUNK_BYTES, table);
  return finishShardPrefix(input, prefix, { geometry, payloadChecksum });
}

/**
 * Where a prefix made by encodeShardHeader gets its checksums (see writeShardFileAsync). Not
 * `as const`: codegen reads those as enums of the layout.
 */
export const SHARD_PREFIX_CHECKSUMS: Readonly<Record<
  'chunkBytes' | 'tableStart' | 'payloadChecksumAt' | 'tableChecksumAt' | 'headerChecksumAt', number
>> = {
  chunkBytes: CHUNK_BYTES,
  tableStart: ShardHeader.sizeBytes,
  payloadChecksumAt: ShardHeader.fields.payload_checksum.offset,
  tableChecksumAt: ShardHeader.fields.chunk_table_checksum.offset,
  headerChecksumAt: ShardHeader.fields.header_checksum.offset,
};

/**
 * encodeShardPrefix without computing anything from the payload: header fields and padding
 * only. The chunk table and the three checksums are left for whoever writes the file
 * (writeShardFileAsync with SHARD_PREFIX_CHECKSUMS): until then the prefix does not verify.
 * Returns the prefix length (= payload offset).
 */
export function encodeShardHeader(input: ShardHeaderInput, payloadBytes: number, prefix: Buffer): number {
  assert(input.payload_bytes === payloadBytes);
  const geometry = shardGeometry(payloadBytes);
  assert(prefix.byteLength >= geometry.payloadOffset);
  return finishShardPrefix(input, prefix, { geometry, payloadChecksum: 0 });
}

function finishShardPrefix(
  input: ShardHeaderInput,
  prefix: Buffer,
  computed: { geometry: ShardGeometry; payloadChecksum: number },
): number {
  const { geometry, payloadChecksum } = computed;
  assert(input.shard_index < input.data_shards + input.parity_shards);
  assert(input.data_bytes <= input.block_bytes);
  // Pairs with invalidField: what the reader rejects, the writer never writes.
  if (input.compression === Compression.none) assert(input.compressed_bytes === 0);
  if (input.compression !== Compression.none) assert(input.compressed_bytes > 0);
  assert(input.compressed_bytes < input.data_bytes || input.compressed_bytes === 0);
  const tableStart = ShardHeader.sizeBytes;
  const tableEnd = tableStart + geometry.tableBytes;
  prefix.fill(0, tableEnd, geometry.payloadOffset);
  encodeStruct(
    ShardHeader,
    {
      ...input,
      checksum_kind: ChecksumKind.crc32c,
      chunk_bytes: CHUNK_BYTES,
      payload_offset: geometry.payloadOffset,
      payload_checksum: payloadChecksum,
      chunk_table_checksum: crc32c(prefix.subarray(tableStart, tableEnd)),
    },
    prefix,
  );
  return geometry.payloadOffset;
}

/** A verified header and its chunk table (a view into the decoded buffer). */
export interface ShardPrefix {
  readonly header: ShardHeaderValue;
  readonly chunkTable: Buffer;
}

/**
 * Decodes and verifies a shard prefix: header checksum, fixed values, fields and the chunk
 * table checksum. `source` must start at file offset 0 and hold the whole prefix; a shorter
 * source is reported as `short` with the length needed in `detail`.
 */
export function decodeShardPrefix(
  source: Buffer,
): { ok: true; value: ShardPrefix } | DecodeFailure {
  const decoded = decodeStruct(ShardHeader, source, SHARD_HEADER_ENUMS);
  if (!decoded.ok) return decoded;
  const header = decoded.value;
  const invalid = invalidField(header);
  if (invalid !== undefined) return invalid;
  const geometry = shardGeometry(header.payload_bytes, header.chunk_bytes);
  const tableEnd = ShardHeader.sizeBytes + geometry.tableBytes;
  if (source.byteLength < tableEnd) return failure('short', 'chunk_table', String(tableEnd));
  const chunkTable = source.subarray(ShardHeader.sizeBytes, tableEnd);
  if (crc32c(chunkTable) !== header.chunk_table_checksum) {
    return failure('checksum', 'chunk_table_checksum', 'chunk table does not match');
  }
  return { ok: true, value: { header, chunkTable } };
}

function invalidField(header: ShardHeaderValue): DecodeFailure | undefined {
  const shardCount = header.data_shards + header.parity_shards;
  if (header.data_shards < 1 || shardCount > STRIPE_SHARDS_MAX) {
    return failure('field', 'data_shards', `${header.data_shards}+${header.parity_shards}`);
  }
  if (header.shard_index >= shardCount) {
    return failure('field', 'shard_index', `${header.shard_index} >= ${shardCount}`);
  }
  if (header.topology !== Topology.erasure && header.parity_shards !== 0) {
    return failure('field', 'parity_shards', 'parity without erasure topology');
  }
  if (header.topology === Topology.single && header.data_shards !== 1) {
    return failure('field', 'data_shards', 'single topology with several shards');
  }
  if (header.data_bytes > header.block_bytes) {
    return failure('field', 'data_bytes', `${header.data_bytes} > ${header.block_bytes}`);
  }
  if (header.compression === Compression.none && header.compressed_bytes !== 0) {
    return failure('field', 'compressed_bytes', `${header.compressed_bytes} without compression`);
  }
  if (header.compression !== Compression.none &&
    (header.compressed_bytes === 0 || header.compressed_bytes >= header.data_bytes)) {
    return failure('field', 'compressed_bytes', `${header.compressed_bytes} of ${header.data_bytes}`);
  }
  if (header.chunk_bytes === 0 || header.chunk_bytes % 512 !== 0) {
    return failure('field', 'chunk_bytes', String(header.chunk_bytes));
  }
  const expected = shardGeometry(header.payload_bytes, header.chunk_bytes).payloadOffset;
  if (header.payload_offset !== expected) {
    return failure('field', 'payload_offset', `${header.payload_offset} != ${expected}`);
  }
  return undefined;
}

/**
 * Verifies the chunks of `payload`, which holds payload bytes starting at chunk `firstChunk`
 * (whole chunks, the last one possibly the payload's short tail). Returns the index of the
 * first bad chunk, or -1 when all match.
 */
export function findBadChunk(prefix: ShardPrefix, payload: Uint8Array, firstChunk: number): number {
  assert(firstChunk >= 0);
  return crc32cVerifyChunks(payload, prefix.header.chunk_bytes, prefix.chunkTable, firstChunk);
}

/** As findBadChunk, computed on the libuv thread pool (for big ranges). */
export function findBadChunkAsync(prefix: ShardPrefix, payload: Uint8Array, firstChunk: number): Promise<number> {
  assert(firstChunk >= 0);
  return crc32cVerifyChunksAsync(payload, prefix.header.chunk_bytes, prefix.chunkTable, firstChunk);
}
