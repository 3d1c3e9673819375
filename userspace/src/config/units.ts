/**
 * Parsing and formatting of the human units used in config files and on the command line:
 * sizes ("32MiB"), shares ("12.5%") and durations ("5s").
 */

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1, B: 1,
  KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4,
  KB: 1000, MB: 1000 ** 2, GB: 1000 ** 3, TB: 1000 ** 4,
};

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000,
};

/** Bytes of "32MiB", "1.5 GiB", "4096" or 4096; undefined when not a size. */
export function parseSize(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isSafeInteger(text) && text >= 0 ? text : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(text);
  if (match === null) return undefined;
  const factor = SIZE_UNITS[match[2] ?? ''];
  if (factor === undefined) return undefined;
  const bytes = Number(match[1]) * factor;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** 12.5 for "12.5%"; undefined when `text` is not a percentage. */
export function parsePercent(text: string | number): number | undefined {
  if (typeof text === 'number') return undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(text);
  return match === null ? undefined : Number(match[1]);
}

/** Milliseconds of "5s", "100ms", "1h" or a number of seconds; undefined when not a duration. */
export function parseDuration(text: string | number): number | undefined {
  if (typeof text === 'number') return text >= 0 ? text * 1000 : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(text);
  if (match === null) return undefined;
  return Number(match[1]) * (DURATION_UNITS[match[2] ?? ''] ?? Number.NaN);
}

/** "32MiB" for 33554432; exact binary units where they divide, else bytes. */
export function formatSize(bytes: number): string {
  for (const unit of ['TiB', 'GiB', 'MiB', 'KiB'] as const) {
    const factor = SIZE_UNITS[unit] ?? 1;
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}B`;
}
