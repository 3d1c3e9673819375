/**
 * Decoder cross-check: every shared test vector, and a few thousand seeded mutations of them,
 * decoded by the TypeScript layout module and by the kernel module's decode ioctl, with
 * identical results: the same fields and values, or the same error kind in the same field.
 *
 * Both sides are rendered to the text the ioctl writes (kmod-spec/decode.rs) and compared
 * line for line. Mutations: bit flips, byte stores, truncation, extension, and field rewrites
 * with the header (and chunk table) checksum recomputed, so the checks after the checksums
 * (reserved bytes, enum values, field combinations, payload) are reached too.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c } from '../../userspace/src/erasure/index.js';
import {
  BucketLabel,
  decodeShardPrefix,
  decodeStruct,
  findBadChunk,
  SHARD_HEADER_ENUMS,
  ShardHeader,
  type StructLayout,
} from '../../userspace/src/layout/index.js';
import { Random } from './io-suite.js';
import { check } from './report.js';

/** `enum shmr_decode_layout` of kmod-spec/shmr_ioctl.h. */
export const DecodeAs = { shardPrefix: 1, shardHeader: 2, bucketLabel: 3 } as const;
type DecodeAsValue = (typeof DecodeAs)[keyof typeof DecodeAs];

/** One buffer to decode both ways. */
export interface Sample {
  readonly name: string;
  readonly layout: DecodeAsValue;
  readonly bytes: Buffer;
}

interface ManifestVector {
  readonly name: string;
  readonly file: string;
  readonly layout: 'ShardHeader' | 'BucketLabel';
  readonly kind: 'struct' | 'shard';
  readonly expect: { readonly ok: boolean; readonly error?: string; readonly field?: string };
}


function fieldLines(layout: StructLayout, value: Record<string, unknown>): string {
  let text = '';
  for (const name of Object.keys(layout.fields)) {
    const field = value[name];
    text += Buffer.isBuffer(field)
      ? `${name}=${field.toString('hex')}\n`
      : `${name}=0x${(field as number | bigint).toString(16)}\n`;
  }
  return text;
}

/** What the TypeScript decoder makes of `sample`, in the ioctl's text form. */
export function describeInTypeScript(sample: Sample): string {
  if (sample.layout !== DecodeAs.shardPrefix) {
    const layout = sample.layout === DecodeAs.shardHeader ? ShardHeader : BucketLabel;
    const decoded = decodeStruct(
      layout,
      sample.bytes,
      sample.layout === DecodeAs.shardHeader ? SHARD_HEADER_ENUMS : {},
    );
    if (!decoded.ok) return `error kind=${decoded.kind} field=${decoded.field}\n`;
    return `ok\n${fieldLines(layout, decoded.value as Record<string, unknown>)}`;
  }
  const decoded = decodeShardPrefix(sample.bytes);
  if (!decoded.ok) return `error kind=${decoded.kind} field=${decoded.field}\n`;
  const header = decoded.value.header;
  let text = `ok\n${fieldLines(ShardHeader, header as unknown as Record<string, unknown>)}`;
  text += `chunk_count=${decoded.value.chunkTable.byteLength / 4}\n`;
  const payloadEnd = header.payload_offset + header.payload_bytes;
  if (sample.bytes.byteLength >= payloadEnd) {
    const payload = sample.bytes.subarray(header.payload_offset, payloadEnd);
    text += `bad_chunk=${findBadChunk(decoded.value, payload, 0)}\n`;
    text += `payload_checksum_ok=${crc32c(payload) === header.payload_checksum ? 1 : 0}\n`;
  }
  return text;
}

/** Decodes every sample with the module, through one shmr-ioctl process. */
export async function describeInKernel(
  helper: string,
  device: string,
  samples: readonly Sample[],
): Promise<string[]> {
  const child = spawn(helper, ['decode', device], { stdio: ['pipe', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  for (const sample of samples) {
    const head = Buffer.alloc(8);
    head.writeUInt32LE(sample.layout, 0);
    head.writeUInt32LE(sample.bytes.byteLength, 4);
    if (!child.stdin.write(Buffer.concat([head, sample.bytes]))) {
      await new Promise((resolve) => child.stdin.once('drain', resolve));
    }
  }
  child.stdin.end();
  const code = await exited;
  check(code === 0, `shmr-ioctl decode exited with ${String(code)}: ${stderr}`);
  const output = Buffer.concat(chunks);
  const texts: string[] = [];
  let at = 0;
  while (at < output.byteLength) {
    const status = output.readInt32LE(at);
    const length = output.readUInt32LE(at + 8);
    const text = output.subarray(at + 12, at + 12 + length).toString('latin1');
    texts.push(status === 0 ? text : `ioctl errno ${status}\n`);
    at += 12 + length;
  }
  check(texts.length === samples.length, `${texts.length} replies for ${samples.length} buffers`);
  return texts;
}

/** The shared vectors as samples: shard files both as a prefix and as a bare header. */
export function vectorSamples(repo: string): { samples: Sample[]; vectors: ManifestVector[] } {
  const directory = join(repo, 'kmod-spec', 'generated', 'vectors');
  const manifest = JSON.parse(readFileSync(join(directory, 'manifest.json'), 'utf8')) as {
    vectors: ManifestVector[];
  };
  const samples: Sample[] = [];
  for (const vector of manifest.vectors) {
    const bytes = readFileSync(join(directory, vector.file));
    if (vector.layout === 'BucketLabel') {
      samples.push({ name: vector.name, layout: DecodeAs.bucketLabel, bytes });
      continue;
    }
    samples.push({ name: `${vector.name} (header)`, layout: DecodeAs.shardHeader, bytes });
    if (vector.kind === 'shard')
      samples.push({ name: `${vector.name} (shard)`, layout: DecodeAs.shardPrefix, bytes });
  }
  return { samples, vectors: manifest.vectors };
}

/** Recomputes the header checksum (bytes 0..123 at 124) and, if whole, the chunk table's. */
function fixChecksums(bytes: Buffer, layout: DecodeAsValue, isTableToo: boolean): void {
  const size = layout === DecodeAs.bucketLabel ? BucketLabel.sizeBytes : ShardHeader.sizeBytes;
  if (bytes.byteLength < size) return;
  if (isTableToo && layout === DecodeAs.shardPrefix) {
    const payloadBytes = bytes.readUInt32LE(48);
    const chunkBytes = bytes.readUInt32LE(56);
    if (chunkBytes > 0) {
      const tableEnd = ShardHeader.sizeBytes + Math.ceil(payloadBytes / chunkBytes) * 4;
      if (tableEnd <= bytes.byteLength)
        bytes.writeUInt32LE(crc32c(bytes.subarray(ShardHeader.sizeBytes, tableEnd)), 64);
    }
  }
  bytes.writeUInt32LE(crc32c(bytes.subarray(0, size - 4)), size - 4);
}

/** Field offsets and widths of a layout, for rewrites of whole fields. */
function fieldsOf(layout: DecodeAsValue): { offset: number; width: number }[] {
  const struct = layout === DecodeAs.bucketLabel ? BucketLabel : ShardHeader;
  return Object.values(struct.fields).map((field) => ({
    offset: field.offset,
    width: field.width,
  }));
}

/** One seeded mutation of `base`. */
function mutate(base: Sample, random: Random, serial: number): Sample {
  const bytes = Buffer.from(base.bytes);
  const headerBytes = Math.min(
    bytes.byteLength,
    base.layout === DecodeAs.bucketLabel ? 64 : 4096 + 64,
  );
  const kind = random.below(7);
  let out = bytes;
  if (kind === 0 && headerBytes > 0) {
    const at = random.below(headerBytes);
    bytes[at] = (bytes[at] ?? 0) ^ (1 << random.below(8));
  } else if (kind === 1) {
    out = bytes.subarray(0, random.below(bytes.byteLength + 1));
  } else if (kind === 2) {
    out = Buffer.concat([bytes, random.bytes(1 + random.below(64))]);
  } else {
    // Rewrite one field (small values often, to hit enum and range checks), then fix sums.
    const fields = fieldsOf(base.layout);
    const field = fields[random.below(fields.length)];
    if (field !== undefined && field.offset + field.width <= bytes.byteLength) {
      const value =
        random.below(4) === 0 ? random.bytes(field.width) : Buffer.from([random.below(6)]);
      bytes.fill(0, field.offset, field.offset + field.width);
      value.copy(bytes, field.offset, 0, Math.min(field.width, value.byteLength));
    }
    if (kind !== 3) fixChecksums(bytes, base.layout, kind !== 4);
  }
  return {
    name: `${base.name} mutation ${serial} (kind ${kind})`,
    layout: base.layout,
    bytes: out,
  };
}

/** `count` mutations of the vector samples, seeded. */
export function mutationSamples(bases: readonly Sample[], count: number, seed: number): Sample[] {
  const random = new Random(seed);
  const samples: Sample[] = [];
  for (let serial = 0; serial < count; serial++) {
    const base = bases[random.below(bases.length)];
    if (base !== undefined) samples.push(mutate(base, random, serial));
  }
  return samples;
}

/** Decodes `samples` both ways; throws naming the first differences. */
export async function crossCheck(
  helper: string,
  device: string,
  samples: readonly Sample[],
): Promise<Map<string, number>> {
  const kernel = await describeInKernel(helper, device, samples);
  const differences: string[] = [];
  const outcomes = new Map<string, number>();
  samples.forEach((sample, index) => {
    const expected = describeInTypeScript(sample);
    const actual = kernel[index] ?? '';
    const outcome = expected.split('\n')[0] ?? '';
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    if (actual !== expected && differences.length < 5) {
      differences.push(
        `${sample.name} [${sample.bytes.subarray(0, 160).toString('hex')}]: ` +
          `TypeScript ${JSON.stringify(expected)} kernel ${JSON.stringify(actual)}`,
      );
    }
  });
  check(differences.length === 0, `decoders differ:\n${differences.join('\n')}`);
  return outcomes;
}
