/**
 * DecompressedCache: the data of recently read compressed blocks, so that the many small reads
 * the kernel makes of one block (128 KiB each) decompress it once, not once per read.
 *
 * Invariants:
 * - Keyed by inode, block index and generation: a rewritten block has a new generation, so a
 *   stale entry is never served, and delete() forgets a block's entry at once.
 * - Concurrent reads of one block share one decompression (the entry exists from its start).
 * - Holds at most DECOMPRESSED_BYTES_MAX, oldest use dropped first, but always the newest
 *   entry, so a block larger than the limit still decompresses once per burst of reads.
 * - A failed decompression is not kept: the next read tries again.
 */
import { assert } from '../assert.js';
import { DECOMPRESSED_BYTES_MAX } from '../limits.js';
import type { BlockRecord } from '../meta/index.js';

interface Entry {
  readonly loading: Promise<Buffer>;
  readonly bytes: number;
  /** The data once decompressed (what `peek` serves without waiting). */
  data: Buffer | undefined;
}

export class DecompressedCache {
  /** In order of last use, oldest first (a Map keeps insertion order). */
  readonly #entries = new Map<string, Entry>();
  #bytes = 0;

  /** The block's data: cached, being decompressed, or decompressed now by `decompress`. */
  load(block: BlockRecord, decompress: () => Promise<Buffer>): Promise<Buffer> {
    const key = keyOf(block);
    const cached = this.#entries.get(key);
    if (cached !== undefined) {
      this.#entries.delete(key);
      this.#entries.set(key, cached);
      return cached.loading;
    }
    const entry: Entry = { loading: decompress(), bytes: block.dataBytes, data: undefined };
    this.#entries.set(key, entry);
    this.#bytes += entry.bytes;
    entry.loading.then((data) => {
      entry.data = data;
      this.#trim();
    }, () => this.#remove(key, entry));
    return entry.loading;
  }

  /** The block's data if it is decompressed and cached now, else undefined (marks it used). */
  peek(block: BlockRecord): Buffer | undefined {
    const key = keyOf(block);
    const cached = this.#entries.get(key);
    if (cached?.data === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, cached);
    return cached.data;
  }

  /** Drops the entry of a block whose shards are going away. */
  forget(block: BlockRecord): void {
    const key = keyOf(block);
    const entry = this.#entries.get(key);
    if (entry !== undefined) this.#remove(key, entry);
  }

  #trim(): void {
    while (this.#bytes > DECOMPRESSED_BYTES_MAX && this.#entries.size > 1) {
      const [oldestKey, oldest] = this.#entries.entries().next().value as [string, Entry];
      this.#remove(oldestKey, oldest);
    }
  }

  #remove(key: string, entry: Entry): void {
    if (this.#entries.get(key) !== entry) return;
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
    assert(this.#bytes >= 0);
  }
}

function keyOf(block: BlockRecord): string {
  return `${block.ino}/${block.blockIndex}/${block.generation}`;
}
