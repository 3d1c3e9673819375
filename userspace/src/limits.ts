/**
 * Limits: every fixed bound of shmr in one place, with the relations between them asserted at
 * import (our `comptime`).
 */
import { assert } from './assert.js';

/** Device sector and checksum chunk; shard payloads start at a multiple of it. */
export const SECTOR_BYTES = 4096;
/** Bytes covered by one entry of a shard's chunk checksum table. */
export const CHUNK_BYTES = 4096;
/** Smallest block size a pool may use. */
export const BLOCK_BYTES_MIN = 64 * 1024;
/** Largest block size a pool may use; also bounds one dirty block buffer. */
export const BLOCK_BYTES_MAX = 256 * 1024 * 1024;
/**
 * Consecutive blocks of a file whose shard files share a directory of a bucket, in filesystems
 * made since (older ones record 1: see MetaStore.shardDirectoryBlocks). A new directory costs
 * a mkdir and, at fsync, a directory fsync: once per 64 blocks instead of per block.
 */
export const SHARD_DIRECTORY_BLOCKS = 64;
/** Largest data + parity shard count of one block (Reed-Solomon over GF(2^8) allows 255). */
export const STRIPE_SHARDS_MAX = 32;
/** Largest mirror copy count. */
export const MIRROR_COPIES_MAX = 8;
/** Longest name of a directory entry, as Linux. */
export const NAME_BYTES_MAX = 255;
/** Longest symlink target, as Linux PATH_MAX less the NUL. */
export const SYMLINK_BYTES_MAX = 4095;
/** Largest extended attribute value, as Linux XATTR_SIZE_MAX. */
export const XATTR_VALUE_BYTES_MAX = 65536;
/** Largest file: 2^53 - 1 keeps every byte offset an exact JS number. */
export const FILE_BYTES_MAX = Number.MAX_SAFE_INTEGER;
/** Largest read or write request the kernel sends (negotiated max_read / max_write). */
export const IO_REQUEST_BYTES_MAX = 1024 * 1024;
/**
 * Kernel readahead of the mount (set after INIT; the kernel offers 128 KiB): sequential reads
 * arrive as IO_REQUEST_BYTES_MAX requests, this many bytes of them in flight.
 */
export const FUSE_READAHEAD_BYTES = 8 * 1024 * 1024;
/**
 * Dirty and under-writeback bytes the kernel may hold for the mount (its bdi's max_bytes; the
 * kernel's default for FUSE is 1 % of the dirty limit, 44 MB on a 24 GB machine): with the
 * write-back cache these become up to that many 1 MiB WRITE requests queued ahead of any READ.
 * See fuse/writeback-limit.ts.
 */
export const FUSE_WRITEBACK_BYTES_MAX = 8 * 1024 * 1024;
/** Shard file descriptors kept open at once (LRU); the rest are reopened on demand. */
export const SHARD_FDS_MAX = 1024;
/** Cached shard chunk tables (LRU); each costs 4 bytes per CHUNK_BYTES of shard. */
export const CHUNK_TABLES_MAX = 8192;
/**
 * Decompressed data of compressed blocks kept for the reads that follow the first one (LRU);
 * at least the newest block is kept whatever its size.
 */
export const DECOMPRESSED_BYTES_MAX = 128 * 1024 * 1024;
/** Open file handles through the mount. */
export const OPEN_HANDLES_MAX = 1 << 20;
/**
 * Inode records the metadata store keeps in memory (meta/inode-cache.ts). About 400 bytes
 * each: 64 MiB at most.
 */
export const INODE_CACHE_ENTRIES_MAX = 1 << 17;
/** Hard links to one inode, as ext4. */
export const LINKS_MAX = 65000;

assert(CHUNK_BYTES % 512 === 0);
assert(FUSE_READAHEAD_BYTES % IO_REQUEST_BYTES_MAX === 0);
assert(FUSE_WRITEBACK_BYTES_MAX % IO_REQUEST_BYTES_MAX === 0);
assert(SECTOR_BYTES % CHUNK_BYTES === 0 || CHUNK_BYTES % SECTOR_BYTES === 0);
assert(BLOCK_BYTES_MAX % BLOCK_BYTES_MIN === 0);
assert(STRIPE_SHARDS_MAX <= 255);
// A whole block is addressed with 32-bit lengths in the shard header.
assert(BLOCK_BYTES_MAX <= 2 ** 32 - 1);
// A few blocks of the common sizes fit the decompressed cache (32 MiB archive blocks: 4).
assert(DECOMPRESSED_BYTES_MAX >= 4 * 32 * 1024 * 1024);

/** Blocks of a file that Stat (D-Bus, shmrctl stat) lists one by one; the rest are counted. */
export const STAT_BLOCKS_MAX = 4096;
/** Longest path the D-Bus API accepts, as Linux PATH_MAX. */
export const PATH_BYTES_MAX = 4096;

assert(STAT_BLOCKS_MAX > 0);
