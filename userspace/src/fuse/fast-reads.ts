/**
 * FastReads: keeps the binding's table of blocks whose READs it answers in C (fast_read.c)
 * in step with the block cache. A block is offered after JS served a read from it; the cache's
 * listener calls drop it in the same synchronous turn as any change of its bytes, its buffer,
 * its presence or its file's size, so the C side never sees a change before its drop.
 *
 * Invariants:
 * - Registered: a complete, non-borrowed cached entry, with the bytes readable from the block's
 *   start given the file size at registration (FileStore.readableBlock).
 * - `#inos` holds every inode with a registered block (maybe more): a change to any other
 *   inode costs no call into the binding.
 */
import type { BlockCacheListener } from '../cache/index.js';
import type { FileStore } from '../file/index.js';

/** The binding's side of the table (FuseSession). */
export interface FastReadTable {
  registerFastBlock(ino: number, blockIndex: number, blockBytes: number, buffer: Buffer, validBytes: number): boolean;
  /** Drops one block, or every block of `ino` with index -1; returns the blocks of `ino` left. */
  dropFastBlocks(ino: number, blockIndex: number): number;
  /** [ino, blockIndex, ...] of blocks read through the table since the last call. */
  sweepFastBlocks(): number[];
}

export class FastReads implements BlockCacheListener {
  readonly #files: FileStore;
  readonly #table: FastReadTable;
  readonly #inos = new Set<number>();

  constructor(files: FileStore, table: FastReadTable) {
    this.#files = files;
    this.#table = table;
  }

  /** A read of `ino` at `offset` was just served by JS: its block may serve the next ones. */
  offer(ino: number, offset: number): void {
    const block = this.#files.readableBlock(ino, offset);
    if (block === undefined) return;
    if (this.#table.registerFastBlock(ino, block.blockIndex, block.blockBytes, block.buffer, block.validBytes)) {
      this.#inos.add(ino);
    }
  }

  blockChanged(ino: number, blockIndex: number): void {
    if (!this.#inos.has(ino)) return;
    if (this.#table.dropFastBlocks(ino, blockIndex) === 0) this.#inos.delete(ino);
  }

  fileChanged(ino: number): void {
    if (!this.#inos.has(ino)) return;
    this.#table.dropFastBlocks(ino, -1);
    this.#inos.delete(ino);
  }

  beforeEvict(touch: (ino: number, blockIndex: number) => void): void {
    if (this.#inos.size === 0) return;
    const hits = this.#table.sweepFastBlocks();
    for (let index = 0; index + 1 < hits.length; index += 2) touch(hits[index] as number, hits[index + 1] as number);
  }
}
