/**
 * Topology specs: how a pool spreads each block over shards, as written in the config
 * ("single", "mirror:2", "erasure:4+2").
 */
import { MIRROR_COPIES_MAX, STRIPE_SHARDS_MAX } from '../limits.js';

/** A parsed topology. */
export type TopologySpec =
  | { readonly kind: 'single' }
  | { readonly kind: 'mirror'; readonly copies: number }
  | { readonly kind: 'erasure'; readonly data: number; readonly parity: number };

/** Parses a topology, or returns an error message saying what is wrong. */
export function parseTopology(text: string): TopologySpec | string {
  const trimmed = text.trim();
  if (trimmed === 'single') return { kind: 'single' };
  const mirror = /^mirror:(\d+)$/.exec(trimmed);
  if (mirror !== null) {
    const copies = Number(mirror[1]);
    if (copies < 2 || copies > MIRROR_COPIES_MAX) {
      return `mirror needs 2 to ${MIRROR_COPIES_MAX} copies, not ${copies}`;
    }
    return { kind: 'mirror', copies };
  }
  const erasure = /^erasure:(\d+)\+(\d+)$/.exec(trimmed);
  if (erasure !== null) {
    const data = Number(erasure[1]);
    const parity = Number(erasure[2]);
    if (data < 1 || parity < 1) return `erasure needs at least 1 data and 1 parity shard`;
    if (data + parity > STRIPE_SHARDS_MAX) {
      return `erasure:${data}+${parity} has more than ${STRIPE_SHARDS_MAX} shards`;
    }
    return { kind: 'erasure', data, parity };
  }
  return `"${text}" is not a topology: use single, mirror:N or erasure:D+P`;
}

/** Shards one block of this topology is stored as. */
export function shardCount(topology: TopologySpec): number {
  if (topology.kind === 'single') return 1;
  if (topology.kind === 'mirror') return topology.copies;
  return topology.data + topology.parity;
}

/** Shards needed to read a block back. */
export function shardsNeeded(topology: TopologySpec): number {
  return topology.kind === 'erasure' ? topology.data : 1;
}

/** The config spelling of a topology. */
export function formatTopology(topology: TopologySpec): string {
  if (topology.kind === 'single') return 'single';
  if (topology.kind === 'mirror') return `mirror:${topology.copies}`;
  return `erasure:${topology.data}+${topology.parity}`;
}
