/**
 * Byte ranges of a block: sorted, disjoint, non-touching [start, end) pairs kept flat in one
 * number array ([s0, e0, s1, e1, ...]) so that adding a range to a block allocates nothing in
 * the common cases (appending, extending the last range).
 *
 * Invariants: for every pair start < end; pairs are in ascending order and separated by a
 * gap of at least one byte (touching or overlapping pairs are merged on insertion).
 */
import { assert } from '../assert.js';

/** Adds [start, end) to `ranges`, merging what it overlaps or touches. */
export function addRange(ranges: number[], start: number, end: number): void {
  assert(start >= 0 && start <= end);
  if (start === end) return;
  const count = ranges.length;
  const lastEnd = count > 0 ? ranges[count - 1] as number : -1;
  if (start > lastEnd) {
    ranges.push(start, end);
    return;
  }
  if (start >= (ranges[count - 2] as number)) {
    // Inside or extending the last range: sequential writers land here.
    ranges[count - 1] = Math.max(lastEnd, end);
    return;
  }
  // First pair that ends at or after `start`, last pair that starts at or before `end`.
  let first = 0;
  while ((ranges[first + 1] as number) < start) first += 2;
  let last = first;
  while (last + 2 < count && (ranges[last + 2] as number) <= end) last += 2;
  if ((ranges[first] as number) > end) {
    ranges.splice(first, 0, start, end);
    return;
  }
  const merged = [Math.min(start, ranges[first] as number), Math.max(end, ranges[last + 1] as number)];
  ranges.splice(first, last - first + 2, ...merged);
}

/** True when one range of `ranges` holds all of [start, end). */
export function coversRange(ranges: readonly number[], start: number, end: number): boolean {
  for (let index = 0; index < ranges.length; index += 2) {
    if ((ranges[index] as number) > start) return false;
    if ((ranges[index + 1] as number) >= end) return true;
  }
  return false;
}

/** Calls `gap` for every maximal piece of [0, end) that no range holds. */
export function forEachGap(ranges: readonly number[], end: number, gap: (start: number, end: number) => void): void {
  let position = 0;
  for (let index = 0; index < ranges.length && position < end; index += 2) {
    const start = ranges[index] as number;
    if (start > position) gap(position, Math.min(start, end));
    position = Math.max(position, ranges[index + 1] as number);
  }
  if (position < end) gap(position, end);
}
