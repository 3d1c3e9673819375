/**
 * VolumeCatalog: the volumes of a filesystem as NBD exports. Each connection gets its own
 * VolumeExport over the shared FileStore (one metadata owner, one block cache).
 *
 * Invariants:
 * - All connections to one volume share one group commit of durable flushes, so concurrent
 *   FLUSH and FUA requests cost one fsync pass, and each waits for a pass that started after
 *   it arrived (so it covers every write completed before it).
 * - A volume's export count is the number of exports handed out and not yet released; the
 *   daemon refuses to remove a volume while it is above zero.
 * - BLOCK_STATUS reads the block map after storing the file's cached writes: a block with no
 *   record is a hole (and reads as zeroes), everything else is data.
 */
import { assert } from '../assert.js';
import type { ExportCatalog, NbdExport, WriteAccepted } from './export.js';
import { NBD_STATE_HOLE, NBD_STATE_ZERO, type Extent } from './protocol.js';
import {
  findVolume, listVolumes, volumeBlockBytes, type VolumeInfo, type VolumeStore,
} from './volumes.js';

/** Blocks of the block map one BLOCK_STATUS looks at; the client asks again for the rest. */
const BLOCK_STATUS_BLOCKS_MAX = 65536;
/** Zeroes written per call for WRITE_ZEROES with NO_HOLE. Never written to. */
const ZEROES = Buffer.alloc(1024 * 1024);

/** Runs durable flushes of one file as a group commit (see the module invariants). */
class SyncBatcher {
  readonly #sync: () => Promise<void>;
  #running: Promise<void> | undefined;
  /** A pass not started yet: everyone arriving now is covered by it. */
  #queued: Promise<void> | undefined;

  constructor(sync: () => Promise<void>) {
    this.#sync = sync;
  }

  /** Resolves after a durable flush that started after this call. */
  run(): Promise<void> {
    if (this.#queued !== undefined) return this.#queued;
    const running = this.#running;
    if (running === undefined) return this.#start();
    const queued = running.then(() => undefined, () => undefined).then(() => {
      this.#queued = undefined;
      return this.#start();
    });
    this.#queued = queued;
    return queued;
  }

  #start(): Promise<void> {
    const running = this.#sync();
    this.#running = running;
    const clear = () => {
      if (this.#running === running) this.#running = undefined;
    };
    running.then(clear, clear);
    return running;
  }
}

interface SharedVolume {
  openCount: number;
  readonly syncs: SyncBatcher;
}

/** The volumes of a filesystem as NBD exports. */
export class VolumeCatalog implements ExportCatalog {
  readonly #store: VolumeStore;
  /** Per inode with connections: their count and shared group commit. */
  readonly #shared = new Map<number, SharedVolume>();

  /** Told when the last connection serving an inode closed (the mount may delete it then). */
  readonly #onIdle: (ino: number) => void;

  constructor(store: VolumeStore, options: { onIdle?: (ino: number) => void } = {}) {
    this.#store = store;
    this.#onIdle = options.onIdle ?? (() => undefined);
  }

  names(): string[] {
    return listVolumes(this.#store).map((volume) => volume.name);
  }

  open(name: string): NbdExport | undefined {
    const info = findVolume(this.#store, name);
    if (info === undefined) return undefined;
    let shared = this.#shared.get(info.ino);
    if (shared === undefined) {
      const { files } = this.#store;
      files.markVolume(info.ino);
      const syncs = new SyncBatcher(() => files.flush(info.ino, { sync: true }));
      shared = { openCount: 0, syncs };
      this.#shared.set(info.ino, shared);
    }
    shared.openCount += 1;
    return new VolumeExport(this.#store, info, shared.syncs, () => this.#release(info.ino));
  }

  /** Connections (and INFO replies being built) with this inode open. */
  exportCount(ino: number): number {
    return this.#shared.get(ino)?.openCount ?? 0;
  }

  #release(ino: number): void {
    const shared = this.#shared.get(ino);
    assert(shared !== undefined);
    shared.openCount -= 1;
    assert(shared.openCount >= 0);
    if (shared.openCount > 0) return;
    this.#shared.delete(ino);
    // Drops the file's in-memory state if nothing is dirty; the mount recreates it on demand.
    this.#store.files.release(ino);
    this.#onIdle(ino);
  }
}

/** One connection's view of a volume. */
class VolumeExport implements NbdExport {
  readonly name: string;
  readonly description: string;
  readonly sizeBytes: number;
  readonly isReadOnly: boolean;
  readonly preferredBlockBytes: number;
  readonly #store: VolumeStore;
  readonly #ino: number;
  readonly #syncs: SyncBatcher;
  readonly #onRelease: () => void;
  #isReleased = false;

  constructor(store: VolumeStore, info: VolumeInfo, syncs: SyncBatcher, onRelease: () => void) {
    this.name = info.name;
    this.description = `shmr volume ${info.name} (pool ${info.pool}, ${info.topology})`;
    this.sizeBytes = info.sizeBytes;
    this.isReadOnly = info.isReadOnly;
    this.preferredBlockBytes = info.blockBytes;
    this.#store = store;
    this.#ino = info.ino;
    this.#syncs = syncs;
    this.#onRelease = onRelease;
  }

  /**
   * Reads the blocks as asked, nothing ahead. Reading the next blocks' shards into the page
   * cache ahead of a sequential reader was measured and taken out again (commits 3224d6b,
   * 489fb79): posix_fadvise WILLNEED (and an mmap populated with MADV_SEQUENTIAL) fills the
   * cache with 4 KiB folios where a read's own readahead makes large ones, and reading those
   * back cost about 0.25 s more daemon CPU per GiB (LRU and page-batch work per folio), which
   * ate what hiding the disk waits gained (nbdcopy copy-out after copy-in, 1 GiB: cold 514-617
   * against 563-615 MB/s). MADV_HUGEPAGE on the mapping gives huge folios, but their
   * allocation compacts memory: cold copy-out fell to 386-443 MB/s. Blocks this daemon stored
   * are still in the page cache (BlockWrite.keepCached), so reading them back right after
   * waits for no disk.
   */
  async read(offsetBytes: number, lengthBytes: number, target: Buffer): Promise<void> {
    const bytesRead = await this.#store.files.read(this.#ino, offsetBytes, lengthBytes, target);
    // Shorter only if the file shrank under us (a truncate through the mount): zeroes.
    if (bytesRead < lengthBytes) target.fill(0, bytesRead, lengthBytes);
  }

  /**
   * Whole blocks are stored from `data` behind the reply: the client waits for durability
   * only at FLUSH and FUA, and a reply held until the store would cap it at its queue depth
   * divided by the store latency.
   */
  async write(offsetBytes: number, data: Buffer): Promise<WriteAccepted> {
    const { stored } = await this.#store.files.writeBehind(this.#ino, offsetBytes, data);
    return { released: stored };
  }

  flush(): Promise<void> {
    return this.#syncs.run();
  }

  /** Whole blocks only (the protocol lets a trim round inward): no zero-writing for a hint. */
  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    const blockBytes = this.#blockBytes();
    const start = Math.ceil(offsetBytes / blockBytes) * blockBytes;
    const end = Math.floor((offsetBytes + lengthBytes) / blockBytes) * blockBytes;
    if (end > start) await this.#store.files.punchHole(this.#ino, start, end - start);
  }

  async zero(
    offsetBytes: number,
    lengthBytes: number,
    options: { mayPunch: boolean },
  ): Promise<void> {
    if (options.mayPunch) {
      await this.#store.files.punchHole(this.#ino, offsetBytes, lengthBytes);
      return;
    }
    const end = offsetBytes + lengthBytes;
    for (let position = offsetBytes; position < end; position += ZEROES.byteLength) {
      const chunkBytes = Math.min(ZEROES.byteLength, end - position);
      await this.#store.files.write(this.#ino, position, ZEROES.subarray(0, chunkBytes));
    }
  }

  async blockStatus(
    offsetBytes: number,
    lengthBytes: number,
    extentsMax: number,
  ): Promise<Extent[]> {
    assert(lengthBytes > 0);
    assert(extentsMax > 0);
    // Cached writes become blocks first, so the block map tells every completed write.
    await this.#store.files.flush(this.#ino, { sync: false });
    const blockBytes = this.#blockBytes();
    const end = offsetBytes + lengthBytes;
    const firstBlock = Math.floor(offsetBytes / blockBytes);
    const lastBlock = Math.floor((end - 1) / blockBytes);
    const blockCount = Math.min(lastBlock - firstBlock + 1, BLOCK_STATUS_BLOCKS_MAX);
    const stored = new Set<number>();
    const cursor = { ino: this.#ino, blockIndex: firstBlock - 1 };
    const records = this.#store.meta.blocksAfter(cursor, blockCount);
    for (const record of records) {
      if (record.ino === this.#ino && record.blockIndex <= lastBlock) stored.add(record.blockIndex);
    }
    const extents: Extent[] = [];
    let runStart = offsetBytes;
    let runFlags = -1;
    for (let blockIndex = firstBlock; blockIndex <= lastBlock; blockIndex++) {
      const flags = stored.has(blockIndex) ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO;
      const blockStart = Math.max(blockIndex * blockBytes, offsetBytes);
      if (runFlags !== -1 && flags !== runFlags) {
        extents.push({ lengthBytes: blockStart - runStart, flags: runFlags });
        if (extents.length === extentsMax) return extents;
        runStart = blockStart;
      }
      runFlags = flags;
      if (blockIndex - firstBlock + 1 >= blockCount) {
        // Scanned as far as one query goes: report up to here, the client asks again.
        const scanEnd = Math.min((blockIndex + 1) * blockBytes, end);
        extents.push({ lengthBytes: scanEnd - runStart, flags: runFlags });
        return extents;
      }
    }
    extents.push({ lengthBytes: end - runStart, flags: runFlags });
    return extents;
  }

  release(): void {
    assert(!this.#isReleased);
    this.#isReleased = true;
    this.#onRelease();
  }

  #blockBytes(): number {
    return volumeBlockBytes(this.#store, this.#ino);
  }
}
