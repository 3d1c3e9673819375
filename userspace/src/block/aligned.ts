/**
 * Page-aligned buffers, whose shard payloads are written past the page cache (O_DIRECT).
 *
 * Why: a rewrite to the archive pool writes gigabytes that nobody reads soon. Through the page
 * cache each byte is copied once more in the kernel and written back by whichever call fsyncs
 * it: about as much CPU as the rest of the copy together. O_DIRECT needs the memory address,
 * the length and the file offset aligned. Node has no aligned allocation, but the memory of a
 * WebAssembly.Memory is mapped by whole pages (V8's page allocator), so a buffer made on it is.
 *
 * Invariant: of the buffers made here, those of allocAligned and allocAlignedSlab are written and
 * read directly by shard-io's own calls (`directBytes`); a filesystem that refuses O_DIRECT gets
 * the same bytes through the page cache instead. Shards of whole pages up to 1 MiB, from any
 * buffer, are written directly by the addon's at-once job (writeShardFileAtOnce).
 */
import { assert } from '../assert.js';
import { allocHugePages, allocPages } from '../erasure/index.js';
import { SECTOR_BYTES } from '../limits.js';

const WASM_PAGE_BYTES = 64 * 1024;
/** WebAssembly.Memory holds at most 65536 pages (4 GiB). */
const WASM_PAGES_MAX = 65536;

const alignedMemory = new WeakSet<ArrayBufferLike>();
/** Memory of allocPageAligned: page aligned, but not for directBytes (see there). */
const pageAlignedMemory = new WeakSet<ArrayBufferLike>();

/**
 * A buffer of `bytes` whose start is page aligned; a plain one when no such memory can be had
 * (the engine's reservation for WebAssembly memories is spent): then it is written buffered.
 */
export function allocAligned(bytes: number): Buffer {
  const pages = Math.max(1, Math.ceil(bytes / WASM_PAGE_BYTES));
  if (pages > WASM_PAGES_MAX) return Buffer.allocUnsafeSlow(bytes);
  let memory: WebAssembly.Memory;
  try {
    memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  } catch {
    return Buffer.allocUnsafeSlow(bytes);
  }
  alignedMemory.add(memory.buffer);
  return Buffer.from(memory.buffer, 0, bytes);
}

/**
 * A page-aligned buffer of any size on memory of its own (not a WebAssembly reservation, so
 * many may live at once): cache blocks, whose shards writeShardFileAtOnce writes with
 * O_DIRECT without copying them first. Not for directBytes: reads into such buffers (a cache
 * block's gaps) stay buffered, as other readers of the same shards may come soon.
 */
export function allocPageAligned(bytes: number): Buffer {
  const memory = allocPages(bytes);
  pageAlignedMemory.add(memory);
  return Buffer.from(memory, 0, bytes);
}

/**
 * True when `view` is whole pages of allocPageAligned memory (start and length page multiples):
 * an O_DIRECT write can take it where it is, without a copy.
 */
export function isWholePages(view: Uint8Array): boolean {
  if (!pageAlignedMemory.has(view.buffer)) return false;
  return view.byteOffset % SECTOR_BYTES === 0 && view.byteLength % SECTOR_BYTES === 0;
}

/** Huge pages are 2 MiB (x86-64, arm64 with 4 KiB pages): slabs are made of whole ones. */
const HUGE_PAGE_BYTES = 2 * 1024 * 1024;

/**
 * Long-lived aligned memory (reply slabs) of `bytes`, a multiple of 2 MiB: on transparent huge
 * pages when the kernel grants them, so that pinning its pages for O_DIRECT and FUSE replies
 * costs one pin per 2 MiB instead of one per 4 KiB; else as allocAligned.
 */
export function allocAlignedSlab(bytes: number): Buffer {
  assert(bytes > 0 && bytes % HUGE_PAGE_BYTES === 0);
  let memory: ArrayBuffer;
  try {
    memory = allocHugePages(bytes);
  } catch {
    return allocAligned(bytes);
  }
  alignedMemory.add(memory);
  return Buffer.from(memory, 0, bytes);
}

/**
 * How many leading bytes of `view` may be written with O_DIRECT: a whole number of sectors when
 * it lies in a buffer from allocAligned at a sector-aligned offset, else 0.
 */
export function directBytes(view: Uint8Array): number {
  if (!alignedMemory.has(view.buffer) || view.byteOffset % SECTOR_BYTES !== 0) return 0;
  return view.byteLength - (view.byteLength % SECTOR_BYTES);
}
