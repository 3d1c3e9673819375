/**
 * Volumes: block devices stored as shmr files (volume-catalog.ts serves them over NBD). A
 * volume NAME is the regular file `/.volumes/NAME` (mode 0600 in a 0700 directory), its size
 * the volume size, so it is placed, cached, scrubbed and repaired like any file.
 *
 * Invariants:
 * - A volume's name matches VOLUME_NAME_PATTERN; nothing else under /.volumes is a volume
 *   (other entries, made through the mount, are ignored).
 * - A volume's size is a positive multiple of VOLUME_SIZE_ALIGN_BYTES: every client, the
 *   kernel with 4 KiB logical blocks included, can address all of it.
 * - A volume being served is never removed (EBUSY); its blocks are freed at removal unless a
 *   handle through the mount still has it open (the mount frees it at the last close). One
 *   unlinked through the mount while served lives until its last connection closes.
 * - Volumes live in the write pool: other pools and topologies come with tiering.
 * - A volume's block size is its `user.shmr.block_size` policy xattr, set at creation before
 *   any data (so every block of it has that size, and a rewrite keeps it): the asked size, or
 *   VOLUME_BLOCK_BYTES_DEFAULT unless the pool's is larger. A volume made before volumes had
 *   their own block size has no such xattr and keeps the pool's (its blocks tell the size).
 */
import { assert } from '../assert.js';
import { formatSize, formatTopology, parseTopology } from '../config/index.js';
import { Errno, FsError } from '../errno.js';
import type { FileStore } from '../file/index.js';
import { BLOCK_BYTES_MIN, FILE_BYTES_MAX } from '../limits.js';
import {
  isDirectory, isRegular, ROOT_INO, S_IFDIR, S_IFREG, type MetaStore,
} from '../meta/index.js';
import type { Pools } from '../pool/index.js';
import { POLICY_XATTRS } from '../tiering/policy.js';
import { PAYLOAD_BYTES_MAX } from './protocol.js';

/** The root-level directory holding volumes. */
export const VOLUMES_DIRECTORY = '.volumes';
/** Volume names: also NBD export names, so kept to a portable, unambiguous alphabet. */
export const VOLUME_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
/** Volume sizes are multiples of this. */
export const VOLUME_SIZE_ALIGN_BYTES = 4096;
/** Largest volume: the largest file, rounded down to the alignment. */
export const VOLUME_BYTES_MAX =
  Math.floor(FILE_BYTES_MAX / VOLUME_SIZE_ALIGN_BYTES) * VOLUME_SIZE_ALIGN_BYTES;
/**
 * Block size of a new volume when none is asked for (the pool's when that is larger). Volumes
 * are filled and copied in long sequential runs (nbdcopy, qemu-img, a guest's writeback), and
 * every block costs a shard file per shard, a metadata record and, as NBD clients size their
 * requests by the preferred block size, a request: 4 MiB blocks take a quarter of what 1 MiB
 * ones do (nbdcopy of 1 GiB, 10 interleaved runs, daemon CPU: in 1.1-1.7 s, median 1.5 ->
 * 0.95-1.4 s, median 1.15; out median 1.0 -> 0.7 s). The price: a small write makes a whole
 * block dirty, so small random writes store 4x more than with 1 MiB blocks; `--block-size
 * 1MiB` suits a volume written that way. (Ceph RBD's objects are 4 MiB too.)
 */
export const VOLUME_BLOCK_BYTES_DEFAULT = 4 * 1024 * 1024;
/** Largest volume block size: a whole block fits in one NBD request. */
export const VOLUME_BLOCK_BYTES_MAX = PAYLOAD_BYTES_MAX;
/** Directory entries read per batch when listing. */
const LIST_BATCH_MAX = 1024;

/** The parts of an open filesystem volumes need. */
export interface VolumeStore {
  readonly meta: MetaStore;
  readonly files: FileStore;
  readonly pools: Pools;
}

/** What `shmr volume list` shows of a volume. */
export interface VolumeInfo {
  readonly name: string;
  readonly ino: number;
  readonly sizeBytes: number;
  /** Bytes held in blocks (holes excluded). */
  readonly storedBytes: number;
  readonly blockBytes: number;
  readonly pool: string;
  readonly topology: string;
  /** The file has no owner write bit (chmod 0400 through the mount): served read-only. */
  readonly isReadOnly: boolean;
}

/** What a volume is created with. */
export interface VolumeCreateInput {
  readonly name: string;
  readonly sizeBytes: number;
  readonly pool?: string | undefined;
  readonly topology?: string | undefined;
  readonly blockBytes?: number | undefined;
}

/** Who uses a volume besides NBD: a running daemon knows, an offline command has nobody. */
export interface VolumeUsers {
  /** NBD connections with the volume open. */
  exportCount(ino: number): number;
  /** True while a handle through the mount has the file open. */
  isOpenThroughMount(ino: number): boolean;
}

export const NO_VOLUME_USERS: VolumeUsers = {
  exportCount: () => 0,
  isOpenThroughMount: () => false,
};

/** Throws EINVAL unless `name` is a valid volume name. */
export function checkVolumeName(name: string): void {
  if (!VOLUME_NAME_PATTERN.test(name)) {
    throw new FsError(Errno.EINVAL, 'volume',
      `"${name}" is not a volume name: 1 to 64 of A-Z a-z 0-9 _ . -, not starting with . or -`);
  }
}

/** Validates control-socket parameters of a create (the CLI sends the same shape). */
export function volumeCreateInput(params: Record<string, unknown>): VolumeCreateInput {
  const { name, sizeBytes, pool, topology, blockBytes } = params;
  if (typeof name !== 'string') throw new FsError(Errno.EINVAL, 'volume create', 'name missing');
  if (typeof sizeBytes !== 'number') {
    throw new FsError(Errno.EINVAL, 'volume create', 'size missing');
  }
  const optionalString = (value: unknown, key: string) => {
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'string') return value;
    throw new FsError(Errno.EINVAL, 'volume create', `${key} must be a string`);
  };
  if (blockBytes !== undefined && blockBytes !== null && typeof blockBytes !== 'number') {
    throw new FsError(Errno.EINVAL, 'volume create', 'blockBytes must be a number');
  }
  return {
    name, sizeBytes,
    pool: optionalString(pool, 'pool'), topology: optionalString(topology, 'topology'),
    blockBytes: blockBytes ?? undefined,
  };
}

/**
 * Creates a volume: a sparse file of `sizeBytes` in /.volumes, durable when this resolves.
 * Throws EEXIST, EINVAL (name, size, block size, unknown pool or topology) or EOPNOTSUPP (a
 * placement other than the write pool's, which only tiering will offer).
 */
export async function createVolume(
  store: VolumeStore,
  input: VolumeCreateInput,
): Promise<VolumeInfo> {
  checkVolumeName(input.name);
  checkPlacement(store.pools, input);
  const { sizeBytes } = input;
  const isAligned = Number.isSafeInteger(sizeBytes) && sizeBytes % VOLUME_SIZE_ALIGN_BYTES === 0;
  if (!isAligned || sizeBytes <= 0) {
    throw new FsError(Errno.EINVAL, 'volume create',
      `size ${sizeBytes} must be a positive multiple of ${VOLUME_SIZE_ALIGN_BYTES} bytes`);
  }
  if (sizeBytes > VOLUME_BYTES_MAX) {
    throw new FsError(Errno.EFBIG, 'volume create',
      `size ${sizeBytes} exceeds ${VOLUME_BYTES_MAX}`);
  }
  const directory = volumesDirectory(store.meta, { create: true });
  assert(directory !== undefined);
  const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  const mode = S_IFREG | 0o600;
  const inode = store.meta.createInode({ parent: directory, name: input.name, mode, ...owner });
  // Before the file store first sees the inode: it takes the block size from the policy then.
  const poolBlockBytes = store.pools.writePool.blockBytes;
  const blockBytes = input.blockBytes ?? Math.max(VOLUME_BLOCK_BYTES_DEFAULT, poolBlockBytes);
  store.meta.setXattr(inode.ino, POLICY_XATTRS.blockSize, Buffer.from(formatSize(blockBytes)), 0);
  await store.files.truncate(inode.ino, sizeBytes);
  await store.files.flush(inode.ino, { sync: true });
  store.files.release(inode.ino);
  const info = findVolume(store, input.name);
  assert(info !== undefined);
  return info;
}

function checkPlacement(pools: Pools, input: VolumeCreateInput): void {
  const writePool = pools.writePool;
  const later = 'volumes live in the write pool until tiering places files in other pools';
  if (input.pool !== undefined && input.pool !== writePool.name) {
    if (!pools.all.some((pool) => pool.name === input.pool)) {
      const known = pools.all.map((pool) => pool.name).join(', ');
      throw new FsError(Errno.EINVAL, 'volume create',
        `unknown pool "${input.pool}" (pools: ${known})`);
    }
    throw new FsError(Errno.EOPNOTSUPP, 'volume create',
      `--pool ${input.pool}: ${later} (write pool: ${writePool.name})`);
  }
  if (input.topology !== undefined) {
    const topology = parseTopology(input.topology);
    if (typeof topology === 'string') {
      throw new FsError(Errno.EINVAL, 'volume create', `--topology: ${topology}`);
    }
    if (formatTopology(topology) !== formatTopology(writePool.topology)) {
      throw new FsError(Errno.EOPNOTSUPP, 'volume create',
        `--topology ${input.topology}: ${later} ` +
        `(write pool ${writePool.name}: ${formatTopology(writePool.topology)})`);
    }
  }
  if (input.blockBytes !== undefined) checkVolumeBlockBytes(input.blockBytes);
}

/** Throws EINVAL unless `blockBytes` is a power of two in [BLOCK_BYTES_MIN, VOLUME_BLOCK_BYTES_MAX]. */
function checkVolumeBlockBytes(blockBytes: number): void {
  const isPowerOfTwo = Number.isSafeInteger(blockBytes) && blockBytes > 0 &&
    (blockBytes & (blockBytes - 1)) === 0;
  if (isPowerOfTwo && blockBytes >= BLOCK_BYTES_MIN && blockBytes <= VOLUME_BLOCK_BYTES_MAX) return;
  throw new FsError(Errno.EINVAL, 'volume create', `--block-size ${blockBytes} must be a power of two ` +
    `from ${formatSize(BLOCK_BYTES_MIN)} to ${formatSize(VOLUME_BLOCK_BYTES_MAX)}`);
}

/** The block size of a volume: its blocks', or (none written yet) the one its writes get. */
export function volumeBlockBytes(store: VolumeStore, ino: number): number {
  const inode = store.meta.requireInode(ino, 'volume');
  return inode.blockBytes !== 0 ? inode.blockBytes : store.files.writeTarget(ino).blockBytes;
}

/** The inode of /.volumes; created (mode 0700) when asked; undefined when absent. */
function volumesDirectory(meta: MetaStore, options: { create: boolean }): number | undefined {
  const ino = meta.lookup(ROOT_INO, VOLUMES_DIRECTORY);
  if (ino !== undefined) {
    if (!isDirectory(meta.requireInode(ino, 'volume').mode)) {
      throw new FsError(Errno.ENOTDIR, 'volume', `/${VOLUMES_DIRECTORY} is not a directory`);
    }
    return ino;
  }
  if (!options.create) return undefined;
  const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  const mode = S_IFDIR | 0o700;
  return meta.createInode({ parent: ROOT_INO, name: VOLUMES_DIRECTORY, mode, ...owner }).ino;
}

/** A volume by name; undefined when there is none (or the name is not a volume name). */
export function findVolume(store: VolumeStore, name: string): VolumeInfo | undefined {
  if (!VOLUME_NAME_PATTERN.test(name)) return undefined;
  const directory = volumesDirectory(store.meta, { create: false });
  if (directory === undefined) return undefined;
  const ino = store.meta.lookup(directory, name);
  return ino === undefined ? undefined : infoOf(store, name, ino);
}

function infoOf(store: VolumeStore, name: string, ino: number): VolumeInfo | undefined {
  const inode = store.meta.getInode(ino);
  if (inode === undefined || !isRegular(inode.mode)) return undefined;
  const writePool = store.pools.writePool;
  return {
    name, ino,
    sizeBytes: store.files.overlay(ino)?.size ?? inode.size,
    storedBytes: inode.storedBytes,
    blockBytes: volumeBlockBytes(store, ino),
    pool: writePool.name,
    topology: formatTopology(writePool.topology),
    isReadOnly: (inode.mode & 0o200) === 0,
  };
}

/** Every volume, in creation order. */
export function listVolumes(store: VolumeStore): VolumeInfo[] {
  const directory = volumesDirectory(store.meta, { create: false });
  if (directory === undefined) return [];
  const volumes: VolumeInfo[] = [];
  for (let afterId = 0; ;) {
    const entries = store.meta.readDirectory(directory, afterId, LIST_BATCH_MAX);
    for (const entry of entries) {
      if (!VOLUME_NAME_PATTERN.test(entry.name)) continue;
      const info = infoOf(store, entry.name, entry.ino);
      if (info !== undefined) volumes.push(info);
    }
    const last = entries.at(-1);
    if (last === undefined || entries.length < LIST_BATCH_MAX) return volumes;
    afterId = last.id;
  }
}

/** Removes a volume and frees its blocks (durably). Throws ENOENT, or EBUSY while served. */
export async function removeVolume(
  store: VolumeStore,
  name: string,
  users: VolumeUsers,
): Promise<void> {
  checkVolumeName(name);
  const info = findVolume(store, name);
  if (info === undefined) throw new FsError(Errno.ENOENT, 'volume rm', `no volume named "${name}"`);
  const connections = users.exportCount(info.ino);
  if (connections > 0) {
    throw new FsError(Errno.EBUSY, 'volume rm',
      `volume "${name}" is in use by ${connections} NBD connection(s)`);
  }
  const directory = volumesDirectory(store.meta, { create: false });
  assert(directory !== undefined);
  const inode = store.meta.unlink(directory, name);
  if (inode.nlink === 0 && !users.isOpenThroughMount(inode.ino)) {
    store.meta.deleteInode(inode.ino);
    await store.files.deleteFile(inode.ino);
  }
  store.meta.syncDurable();
}
