/**
 * The shmr_isal native addon (userspace/native/isal): the only file that loads it.
 *
 * Located by walking up from this module until a folder holds
 * `userspace/native/isal/build/Release/shmr_isal.node`, so the same code works from source
 * (vitest) and compiled (`dist/userspace/src/erasure/native.js`).
 *
 * Invariants:
 * - Loading fails with an error that says how to build the addon, never with a bare
 *   "Cannot find module".
 * - The addon validates every argument itself (TypeError/RangeError naming the argument); this
 *   file adds only types.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where node-gyp puts the addon, relative to the repository root. */
const ADDON_PATH_RELATIVE = join(
  'userspace', 'native', 'isal', 'build', 'Release', 'shmr_isal.node',
);

/** The functions shmr_isal.c exports; `k` and `p` are dataCount and parityCount. */
export interface IsalAddon {
  crc32cChunks(data: Uint8Array, chunkBytes: number, table: Uint8Array): number;
  crc32cChunksAsync(data: Uint8Array, chunkBytes: number, table: Uint8Array): Promise<number>;
  crc32cVerifyChunks(
    data: Uint8Array,
    chunkBytes: number,
    table: Uint8Array,
    firstChunk: number,
  ): number;
  crc32cVerifyChunksAsync(
    data: Uint8Array,
    chunkBytes: number,
    table: Uint8Array,
    firstChunk: number,
  ): Promise<number>;
  crc32c(data: Uint8Array, previous: number | undefined): number;
  crc32cAsync(data: Uint8Array, previous: number | undefined): Promise<number>;
  /** -1: read from the page cache and verified; >= 0: bad chunk; -2: not all cached. */
  preadVerifyChunksNow(
    data: Uint8Array,
    chunkBytes: number,
    table: Uint8Array,
    firstChunk: number,
    fd: number,
    position: number,
  ): number;
  /** -1: read (O_DIRECT when it can) and verified; >= 0: bad chunk; -2: the file is short. */
  readShardVerifyAsync(
    path: string,
    prefix: Uint8Array,
    data: Uint8Array,
    position: number,
    chunkBytes: number,
    table: Uint8Array,
    firstChunk: number,
  ): Promise<number>;
  /** Zeroed memory on a 2 MiB boundary, advised for transparent huge pages. */
  allocHugePages(bytes: number): ArrayBuffer;
  /** The calling thread's fair-scheduler slice; false when the kernel ignores slices. */
  setThreadSlice(nanoseconds: number): boolean;
  /** Zeroed memory of its own pages (page-aligned). */
  allocPages(bytes: number): ArrayBuffer;
  /** Validates (k, p) and builds the encode tables into the addon's cache. */
  rsPrepare(k: number, p: number): void;
  rsEncode(k: number, p: number, data: readonly Uint8Array[], parity: readonly Uint8Array[]): void;
  rsEncodeAsync(
    k: number,
    p: number,
    data: readonly Uint8Array[],
    parity: readonly Uint8Array[],
  ): Promise<void>;
  rsReconstruct(
    k: number,
    p: number,
    shards: readonly Uint8Array[],
    present: readonly boolean[],
  ): void;
  rsReconstructAsync(
    k: number,
    p: number,
    shards: readonly Uint8Array[],
    present: readonly boolean[],
  ): Promise<void>;
  /**
   * Stores a whole shard file in one pool job (see "Shard files" in shmr_isal.c); `flags`
   * combines SHARD_WRITE_*. Rejects with an Error carrying `errno` (negative) and `syscall`.
   */
  writeShardFileAsync(
    path: string,
    prefix: Uint8Array,
    payload: Uint8Array,
    chunkBytes: number,
    tableStart: number,
    payloadChecksumAt: number,
    tableChecksumAt: number,
    headerChecksumAt: number,
    flags: number,
  ): Promise<void>;
  /**
   * Starts the write-back of a file's dirty pages in one pool job, not waiting for it; false
   * when the file cannot be opened or the call fails (a hint: the fsync after tells failures).
   */
  startWritebackAsync(path: string): Promise<boolean>;
}

/** Flags of writeShardFileAsync, as shmr_isal.c defines them. */
export const SHARD_WRITE_SYNC = 1;
export const SHARD_WRITE_CHECKSUM = 2;
export const SHARD_WRITE_MAKE_DIRECTORIES = 4;
export const SHARD_WRITE_DIRECT = 8;

/** The addon's absolute path: the first match walking up from this file's folder. */
function findAddonPath(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let folder = start; ; folder = dirname(folder)) {
    const candidate = join(folder, ADDON_PATH_RELATIVE);
    if (existsSync(candidate)) return candidate;
    if (dirname(folder) === folder) {
      throw new Error(
        `shmr_isal native addon not found (${ADDON_PATH_RELATIVE} in no folder above ${start}):` +
          ' run npm run build:native',
      );
    }
  }
}

function loadAddon(): IsalAddon {
  const require = createRequire(import.meta.url);
  return require(findAddonPath()) as IsalAddon;
}

/** The loaded addon, shared by every caller in this thread. */
export const isal: IsalAddon = loadAddon();
