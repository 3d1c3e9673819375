/**
 * Disk space of shard files: what blocks under a topology take in their buckets, headers and
 * chunk tables included. Estimates for space accounting (statfs), not for placement.
 */
import { parseTopology } from '../config/index.js';
import { shardGeometry } from '../layout/index.js';

/**
 * Bytes that `blocks` blocks of `storedBytes` stored bytes in all take in the shard files of
 * `topology` ("single", "mirror:2", "erasure:4+2"); 0 for a topology that does not parse (a
 * pending tombstone records none: its shards are still being written).
 */
export function shardFileBytes(topology: string, blocks: number, storedBytes: number): number {
  const spec = parseTopology(topology);
  if (typeof spec === 'string' || blocks === 0) return 0;
  const shards = spec.kind === 'single' ? 1 : spec.kind === 'mirror' ? spec.copies : spec.data + spec.parity;
  const dataShards = spec.kind === 'erasure' ? spec.data : 1;
  const payloadBytesPerShard = Math.ceil(storedBytes / blocks / dataShards);
  return blocks * shards * (shardGeometry(payloadBytesPerShard).payloadOffset + payloadBytesPerShard);
}
