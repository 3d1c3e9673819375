/**
 * Page-aligned buffers, whose shard payloads are written past the page cache (O_DIRECT).
 *
 * Why: a rewrite to the archive pool writes gigabytes that nobody reads soon. Through the page
 * cache each byte is copied once more in the kernel and written back by whichever call fsyncs
 * it: about as much CPU as the rest of the copy together. O_DIRECT needs the memory address,
 * the length and the file offset aligned. Node has no aligned allocation, but the memory of a
 * WebAssembly.Memory is mapped by whole pages (V8's page allocator), so a buffer made on it is.
 *
 * Invariant: only buffers made here are written directly (shard-io checks `directBytes`); a
 * filesystem that refuses O_DIRECT gets the same bytes through the page cache instead.
 */
import { SECTOR_BYTES } from '../limits.js';

const WASM_PAGE_BYTES = 64 * 1024;
/** WebAssembly.Memory holds at most 65536 pages (4 GiB). */
const WASM_PAGES_MAX = 65536;

const alignedMemory = new WeakSet<ArrayBufferLike>();

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
 * How many leading bytes of `view` may be written with O_DIRECT: a whole number of sectors when
 * it lies in a buffer from allocAligned at a sector-aligned offset, else 0.
 */
export function directBytes(view: Uint8Array): number {
  if (!alignedMemory.has(view.buffer) || view.byteOffset % SECTOR_BYTES !== 0) return 0;
  return view.byteLength - (view.byteLength % SECTOR_BYTES);
}
