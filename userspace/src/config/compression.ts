/**
 * Compression specs: how a pool (or one write) compresses its blocks, as written in the config
 * (`compression: { algorithm: zstd, level: 3 }`) or as one string ("zstd:3", "lz4", "none"),
 * the form a per-file policy passes down to the block store.
 */

/** Compression algorithms a pool may use. */
export const COMPRESSION_ALGORITHMS = ['none', 'zstd', 'lz4'] as const;
export type CompressionAlgorithm = (typeof COMPRESSION_ALGORITHMS)[number];

/** Lowest zstd level accepted (faster levels below 1 compress text poorly). */
export const ZSTD_LEVEL_MIN = 1;
/** Highest zstd level accepted: 20 to 22 ("ultra") need hundreds of MiB per context. */
export const ZSTD_LEVEL_MAX = 19;
/** zstd level when none is given: zstd's own default. */
export const ZSTD_LEVEL_DEFAULT = 3;

/** A parsed compression setting. */
export type CompressionSpec =
  | { readonly algorithm: 'none' }
  | { readonly algorithm: 'zstd'; readonly level: number }
  | { readonly algorithm: 'lz4' };

/** No compression: the default of every pool. */
export const COMPRESSION_NONE: CompressionSpec = Object.freeze({ algorithm: 'none' });

/**
 * Builds a spec from an algorithm name and an optional level, or returns an error message
 * saying what is wrong.
 */
export function compressionSpec(algorithm: string, level: number | undefined): CompressionSpec | string {
  if (algorithm === 'none' || algorithm === 'lz4') {
    if (level !== undefined) return `${algorithm} takes no level (only zstd has levels)`;
    return Object.freeze({ algorithm });
  }
  if (algorithm !== 'zstd') {
    return `"${algorithm}" is not a compression algorithm: use ${COMPRESSION_ALGORITHMS.join(', ')}`;
  }
  const zstdLevel = level ?? ZSTD_LEVEL_DEFAULT;
  if (!Number.isInteger(zstdLevel) || zstdLevel < ZSTD_LEVEL_MIN || zstdLevel > ZSTD_LEVEL_MAX) {
    return `zstd level ${level} is not an integer from ${ZSTD_LEVEL_MIN} to ${ZSTD_LEVEL_MAX}`;
  }
  return Object.freeze({ algorithm: 'zstd', level: zstdLevel });
}

/** Parses "none", "lz4", "zstd" or "zstd:LEVEL", or returns an error message. */
export function parseCompression(text: string): CompressionSpec | string {
  const match = /^([a-z0-9]+)(?::(-?\d+))?$/.exec(text.trim());
  if (match === null) return `"${text}" is not a compression setting: use none, lz4, zstd or zstd:LEVEL`;
  const level = match[2] === undefined ? undefined : Number(match[2]);
  return compressionSpec(match[1] ?? '', level);
}

/** The string spelling of a spec, as parseCompression reads it. */
export function formatCompression(spec: CompressionSpec): string {
  return spec.algorithm === 'zstd' ? `zstd:${spec.level}` : spec.algorithm;
}
