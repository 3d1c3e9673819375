/**
 * ChunkReads: keeps the binding's table of blocks whose READs it answers in C from page-cached
 * shard chunks (native/fuse3/chunk_read.c) in step with the file system. A block is offered
 * after JS served a small read of it while it read as its stored record (FileStore.readNow: no
 * cache entry, or a clean complete one); it is dropped in the same synchronous turn as anything
 * that changes what the block reads as or where it lives: its block row changing or going
 * (MetaStore.onBlockRowChange: flush of a written block, the mover, rewrites, repairs,
 * truncation, hole punching, deletion) and a cache entry being made for it or turning dirty
 * (BlockCache.onChange: any write, and truncation, in the turn they change a byte).
 *
 * Invariants:
 * - Registered: the first copy of an uncompressed Single or Mirror block, as its record names
 *   it, with the chunk checksums of its verified prefix; bytes [0, record.dataBytes) only.
 * - `#inos` holds every inode with a registered block (maybe more): a change to any other
 *   inode costs no call into the binding.
 */
import type { BlockStore } from '../block/index.js';
import type { FileStore, ShardReadListener } from '../file/index.js';
import type { BlockRecord, MetaStore } from '../meta/index.js';
import type { ChunkSource } from './binding.js';

/** Largest read the binding answers itself (chunk_read.c's CHUNK_READ_BYTES_MAX). */
const CHUNK_READ_BYTES_MAX = 128 * 1024;

/** The binding's side of the table (FuseSession). */
export interface ChunkReadTable {
  registerChunkBlock(ino: number, blockIndex: number, blockBytes: number, source: ChunkSource): boolean;
  /** Drops one block, or every block of `ino` with index -1; returns the blocks of `ino` left. */
  dropChunkBlocks(ino: number, blockIndex: number): number;
}

export class ChunkReads implements ShardReadListener {
  readonly #blocks: BlockStore;
  readonly #table: ChunkReadTable;
  readonly #inos = new Set<number>();
  readonly readBytesMax = CHUNK_READ_BYTES_MAX;

  constructor(blocks: BlockStore, table: ChunkReadTable) {
    this.#blocks = blocks;
    this.#table = table;
  }

  /** Wires `reads` to what changes blocks: the metadata store's rows and the file store's cache. */
  static attach(parts: { meta: MetaStore; files: FileStore; blocks: BlockStore }, table: ChunkReadTable): ChunkReads {
    const reads = new ChunkReads(parts.blocks, table);
    parts.meta.onBlockRowChange = (ino, blockIndex) => reads.#drop(ino, blockIndex);
    parts.files.shardReadListener = reads;
    return reads;
  }

  servedFromRecord(ino: number, blockIndex: number, blockBytes: number, record: BlockRecord): void {
    const shard = this.#blocks.cachedFirstCopy(record);
    if (shard === undefined) {
      // Served from the block cache: the shard was not read since it was written.
      this.#blocks.warmFirstCopy(record);
      return;
    }
    const { header, chunkTable } = shard.prefix;
    const source = {
      fd: shard.fd, payloadOffset: header.payload_offset, dataBytes: Math.min(record.dataBytes, header.payload_bytes),
      chunkBytes: header.chunk_bytes, crcs: chunkTable,
    };
    if (source.dataBytes > 0 && this.#table.registerChunkBlock(ino, blockIndex, blockBytes, source)) this.#inos.add(ino);
  }

  blockChanging(ino: number, blockIndex: number): void {
    this.#drop(ino, blockIndex);
  }

  #drop(ino: number, blockIndex: number): void {
    if (!this.#inos.has(ino)) return;
    if (this.#table.dropChunkBlocks(ino, blockIndex) === 0) this.#inos.delete(ino);
  }
}
