/**
 * Rewrite: moves a file (or one block) to another pool, topology and block size.
 *
 * Method: plan the new block map from the committed one, copy every new block (read the old
 * blocks' bytes, verified; write new shards under fresh generations and check the written
 * buffers against the checksums in their headers, BlockWrite.recheck), then
 * hold the file (FileStore.exclusive: no read or write runs, dirty blocks are stored) and
 * commit the new map in ONE metadata transaction if the plan is still what was copied; the
 * old blocks become tombstones. Writes that landed during the copy change the plan: their new
 * blocks are copied again in the next round; the last round copies with the file held.
 *
 * Invariants:
 * - A crash at any point leaves the old or the new layout complete: new shards are rechecked,
 *   then fsynced (each round's copies in one batch) before the commit; old shards are only
 *   tombstoned by it.
 * - Before copying, each new block is marked 'pending' in the tombstones table, so the shards of
 *   a rewrite that never commits are found and purged (Tombstones.purgeInterruptedRewrites).
 * - Bytes are identical: holes stay holes (a new block wholly inside holes is not written).
 */
import { assert } from '../assert.js';
import { Errno, FsError } from '../errno.js';
import { formatTopology, type TopologySpec } from '../config/index.js';
import { allocAligned, BLOCK_PADDING_BYTES, type BlockStore } from '../block/index.js';
import type { FileStore } from '../file/index.js';
import { isRegular, isDirectory, type BlockRecord, type MetaStore } from '../meta/index.js';
import type { Pool } from '../pool/index.js';
import type { TaskContext } from '../tasks/task-manager.js';
import type { Tombstones } from './tombstones.js';

/** Copy rounds before the file is held for the whole copy. */
const ROUNDS_MAX = 3;
/** Largest parallelism of one rewrite (buffers: 2 blocks and their parity per worker). */
export const REWRITE_PARALLEL_MAX = 16;

/** Where a rewrite puts a file. */
export interface LayoutTarget {
  readonly pool: Pool;
  readonly topology: TopologySpec;
  readonly blockBytes: number;
  readonly compression?: string | undefined;
  /** The first `bytes` of the file stay on `pool` (the fast pool) with `topology`. */
  readonly head?: { readonly bytes: number; readonly pool: Pool; readonly topology: TopologySpec } | undefined;
}

/** What a rewrite needs of the open filesystem. */
export interface RewriteParts {
  readonly meta: MetaStore;
  readonly blocks: BlockStore;
  readonly files: FileStore;
  readonly tombstones: Tombstones;
}

/** What a finished rewrite did. */
export interface RewriteReport {
  ino: number;
  blocksWritten: number;
  blocksKept: number;
  bytesWritten: number;
  rounds: number;
}

interface Source {
  readonly record: BlockRecord;
  /** Range in the old block. */
  readonly start: number;
  readonly end: number;
  /** Where it lands in the new block. */
  readonly targetOffset: number;
}

interface PlannedBlock {
  readonly blockIndex: number;
  readonly dataBytes: number;
  readonly sources: Source[];
  readonly pool: Pool;
  readonly topology: TopologySpec;
  /** The old block itself, when it already is exactly what the plan wants. */
  readonly kept: BlockRecord | undefined;
  /** Identifies the old bytes this block is made of: equal signatures, equal content. */
  readonly signature: string;
}

interface Plan {
  readonly snapshot: BlockRecord[];
  readonly blocks: PlannedBlock[];
}

/** Checks that `ino` is a regular file; EISDIR or EINVAL naming it otherwise. */
export function requireRegularFile(meta: MetaStore, ino: number, operation: string): void {
  const inode = meta.requireInode(ino, operation);
  if (isDirectory(inode.mode)) throw new FsError(Errno.EISDIR, operation, `inode ${ino} is a directory`);
  if (!isRegular(inode.mode)) throw new FsError(Errno.EINVAL, operation, `inode ${ino} is not a regular file`);
}

function planLayout(meta: MetaStore, ino: number, target: LayoutTarget): Plan {
  const inode = meta.requireInode(ino, 'rewrite');
  const snapshot = meta.listBlocks(ino);
  const newBytes = target.blockBytes;
  const byIndex = new Map<number, Source[]>();
  for (const record of snapshot) {
    const oldStart = record.blockIndex * inode.blockBytes;
    const dataEnd = Math.min(oldStart + record.dataBytes, inode.size);
    for (let index = Math.floor(oldStart / newBytes); index * newBytes < dataEnd; index++) {
      const newStart = index * newBytes;
      const start = Math.max(oldStart, newStart);
      const end = Math.min(dataEnd, newStart + newBytes);
      if (end <= start) continue;
      const sources = byIndex.get(index) ?? [];
      sources.push({ record, start: start - oldStart, end: end - oldStart, targetOffset: start - newStart });
      byIndex.set(index, sources);
    }
  }
  const blocks = [...byIndex.entries()].sort(([a], [b]) => a - b)
    .map(([blockIndex, sources]) => planBlock(target, inode.blockBytes, blockIndex, sources));
  return { snapshot, blocks };
}

function planBlock(target: LayoutTarget, oldBytes: number, blockIndex: number, sources: Source[]): PlannedBlock {
  const isHead = target.head !== undefined && blockIndex * target.blockBytes < target.head.bytes;
  const pool = isHead && target.head !== undefined ? target.head.pool : target.pool;
  const topology = isHead && target.head !== undefined ? target.head.topology : target.topology;
  const dataBytes = Math.max(...sources.map((source) => source.targetOffset + source.end - source.start));
  const only = sources.length === 1 ? sources[0] : undefined;
  const isInPlace = only !== undefined && oldBytes === target.blockBytes && only.start === 0 &&
    only.end === only.record.dataBytes && only.record.blockIndex === blockIndex &&
    only.record.pool === pool.name && only.record.topology === formatTopology(topology);
  const signature = sources.map((source) => `${source.record.blockIndex}@${source.record.generation}:` +
    `${source.start}-${source.end}>${source.targetOffset}`).join(',');
  return { blockIndex, dataBytes, sources, pool, topology, kept: isInPlace ? only?.record : undefined, signature };
}

/** How a file rewrite runs. */
export interface RewriteOptions {
  /** Blocks copied at once. */
  readonly parallel: number;
  readonly context: TaskContext;
  /**
   * Awaited before each block is copied, except in the last round (which holds the file and
   * must not wait): where a background copy pauses (the mover yielding to foreground writes).
   */
  readonly beforeBlock?: () => Promise<void>;
}

/** Buffers of one copy worker, reused from block to block. */
interface WorkerBuffers {
  /**
   * Block buffers; with two, the next block's sources are read into one while the block in
   * the other is written, so the drives always have reads and writes to do.
   */
  readonly data: readonly Buffer[];
  /** Room for the parity shards of the new blocks (none when no target topology is erasure). */
  readonly parity: readonly Buffer[];
}

function workerBuffers(target: LayoutTarget, blockBuffers: 1 | 2): WorkerBuffers {
  const topologies = [target.topology, target.head?.topology];
  let parityCount = 0;
  let shardBytes = 0;
  for (const topology of topologies) {
    if (topology?.kind !== 'erasure') continue;
    parityCount = Math.max(parityCount, topology.parity);
    shardBytes = Math.max(shardBytes, Math.ceil(target.blockBytes / topology.data));
  }
  // Aligned: the new shards are written past the page cache (see allocAligned).
  return {
    data: Array.from({ length: blockBuffers }, () => allocAligned(target.blockBytes + BLOCK_PADDING_BYTES)),
    parity: Array.from({ length: parityCount }, () => allocAligned(shardBytes)),
  };
}

/** Reads the new block's bytes from its (verified) sources into `data`; holes read as zeros. */
async function readSources(parts: RewriteParts, planned: PlannedBlock, data: Buffer): Promise<void> {
  assert(planned.dataBytes > 0);
  assert(planned.dataBytes <= data.byteLength);
  zeroGaps(data, planned);
  await Promise.all(planned.sources.map((source) =>
    parts.blocks.read(source.record, { start: source.start, end: source.end }, data, source.targetOffset)));
}

/** Writes the new block from `data` as uncommitted shards, rechecked against their headers. */
function writeCopy(parts: RewriteParts, ino: number, planned: PlannedBlock, context: {
  target: LayoutTarget; data: Buffer; parity: readonly Buffer[];
}): Promise<BlockRecord> {
  assert(planned.dataBytes <= context.target.blockBytes);
  return parts.blocks.write({
    ino, blockIndex: planned.blockIndex, blockBytes: context.target.blockBytes, dataBytes: planned.dataBytes,
    data: context.data, pool: planned.pool, topology: planned.topology, compression: context.target.compression,
    sync: false, recheck: true, parity: context.parity,
  });
}

/** Zeros the bytes of the new block that no source covers (holes); sources fill the rest. */
function zeroGaps(data: Buffer, planned: PlannedBlock): void {
  const sources = [...planned.sources].sort((a, b) => a.targetOffset - b.targetOffset);
  let covered = 0;
  for (const source of sources) {
    if (source.targetOffset > covered) data.fill(0, covered, source.targetOffset);
    covered = Math.max(covered, source.targetOffset + source.end - source.start);
  }
  if (covered < planned.dataBytes) data.fill(0, covered, planned.dataBytes);
}

/** A block whose sources are being read: `read` settles with the failure, or undefined. */
interface Reading {
  readonly planned: PlannedBlock;
  readonly data: Buffer;
  readonly read: Promise<unknown>;
}

/** The state of one file rewrite across its rounds. */
class FileRewrite {
  readonly #parts: RewriteParts;
  readonly #ino: number;
  readonly #target: LayoutTarget;
  readonly #context: TaskContext;
  readonly #beforeBlock: (() => Promise<void>) | undefined;
  readonly #workers: WorkerBuffers[];
  /** New blocks copied and not committed, by block index. */
  readonly copies = new Map<number, { signature: string; record: BlockRecord }>();
  readonly #noted = new Set<number>();
  readonly report: RewriteReport;

  constructor(parts: RewriteParts, ino: number, target: LayoutTarget, options: RewriteOptions) {
    this.#parts = parts;
    this.#ino = ino;
    this.#target = target;
    this.#context = options.context;
    this.#beforeBlock = options.beforeBlock;
    this.#workers = Array.from({ length: options.parallel }, () => workerBuffers(target, 2));
    this.report = { ino, blocksWritten: 0, blocksKept: 0, bytesWritten: 0, rounds: 0 };
  }

  /**
   * Plans from the committed map and copies every block not copied with this content yet.
   * `isHeld`: the round runs with the file held, so it never waits in `beforeBlock`.
   */
  async copyRound(options: { isHeld: boolean }): Promise<void> {
    const plan = planLayout(this.#parts.meta, this.#ino, this.#target);
    const stale = plan.blocks.filter((planned) =>
      planned.kept === undefined && this.copies.get(planned.blockIndex)?.signature !== planned.signature);
    const unnoted = stale.map((planned) => planned.blockIndex).filter((index) => !this.#noted.has(index));
    if (unnoted.length > 0) {
      this.#parts.meta.notePendingBlocks(this.#ino, unnoted, this.#target.pool.name);
      for (const index of unnoted) this.#noted.add(index);
    }
    this.#context.addTotal({ bytes: stale.reduce((sum, planned) => sum + planned.dataBytes, 0), blocks: stale.length });
    let next = 0;
    const startNext = async (data: Buffer): Promise<Reading | undefined> => {
      const planned = stale[next++];
      if (planned === undefined) return undefined;
      if (!options.isHeld && this.#beforeBlock !== undefined) await this.#beforeBlock();
      if (this.#context.signal.aborted) throw new FsError(Errno.ECANCELED, 'rewrite', `inode ${this.#ino}: cancelled`);
      const read = readSources(this.#parts, planned, data).then(() => undefined, (error: unknown) => error);
      return { planned, data, read };
    };
    await Promise.all(this.#workers.map(async (buffers) => {
      let turn = 0;
      let reading = await startNext(buffers.data[0] as Buffer);
      while (reading !== undefined) {
        const current = reading;
        const failure = await current.read;
        turn += 1;
        // The next block is read into the other buffer while this one is written.
        reading = await startNext(buffers.data[turn % buffers.data.length] as Buffer);
        await this.#store(current.planned, failure, { data: current.data, parity: buffers.parity });
      }
    }));
    // Copies are written without fsync; they become durable together, before any commit. Their
    // payloads went to the drives as they were written (O_DIRECT from the aligned worker
    // buffers), so this batch commits metadata and flushes drive caches once: an fsync per
    // block would flush the drive cache each time, and reads of the next sources wait behind.
    await this.#parts.blocks.syncBlocks([...this.copies.values()].map((copy) => copy.record));
  }

  /** Writes a block whose sources were read (or failed to), and keeps it as a copy. */
  async #store(planned: PlannedBlock, readFailure: unknown, buffers: { data: Buffer; parity: readonly Buffer[] }): Promise<void> {
    let record: BlockRecord;
    try {
      if (readFailure !== undefined) throw readFailure;
      record = await writeCopy(this.#parts, this.#ino, planned, { target: this.#target, ...buffers });
    } catch (error) {
      // A write replaced a source block (and deleted its shards) under the copy: the next
      // round copies the new content.
      if (this.#isStale(planned)) return;
      throw error;
    }
    const superseded = this.copies.get(planned.blockIndex);
    this.copies.set(planned.blockIndex, { signature: planned.signature, record });
    if (superseded !== undefined) await this.#parts.blocks.delete(superseded.record);
    this.report.blocksWritten += 1;
    this.report.bytesWritten += planned.dataBytes;
    this.#context.addDone({ bytes: planned.dataBytes, blocks: 1 });
  }

  #isStale(planned: PlannedBlock): boolean {
    return planned.sources.some((source) =>
      this.#parts.meta.getBlock(this.#ino, source.record.blockIndex)?.generation !== source.record.generation);
  }

  /** Commits if the committed map still matches the copies (call with the file held). */
  commitIfUnchanged(): boolean {
    const plan = planLayout(this.#parts.meta, this.#ino, this.#target);
    const records: BlockRecord[] = [];
    for (const planned of plan.blocks) {
      const copy = this.copies.get(planned.blockIndex);
      if (planned.kept !== undefined) records.push(planned.kept);
      else if (copy !== undefined && copy.signature === planned.signature) records.push(copy.record);
      else return false;
    }
    const isCommitted = this.#parts.meta.replaceFileBlocks({
      ino: this.#ino, expected: plan.snapshot, blockBytes: this.#target.blockBytes, blocks: records,
    });
    if (!isCommitted) throw new FsError(Errno.ENOENT, 'rewrite', `inode ${this.#ino} was deleted meanwhile`);
    this.#parts.meta.syncDurable();
    const used = new Set(records.map((record) => record.generation));
    for (const [index, copy] of this.copies) if (used.has(copy.record.generation)) this.copies.delete(index);
    this.report.blocksKept = plan.blocks.filter((planned) => planned.kept !== undefined).length;
    return true;
  }

  /** Deletes copies that were not committed and forgets the pending marks. */
  async cleanUp(): Promise<void> {
    for (const copy of this.copies.values()) await this.#parts.blocks.delete(copy.record);
    this.copies.clear();
    this.#parts.meta.clearPendingBlocks(this.#ino);
  }
}

/**
 * Rewrites file `ino` to `target`, `parallel` blocks at a time. Resolves when the new layout is
 * committed and durable; throws (leaving the old layout) on failure or cancellation.
 */
export async function rewriteFile(
  parts: RewriteParts,
  ino: number,
  target: LayoutTarget,
  options: RewriteOptions,
): Promise<RewriteReport> {
  requireRegularFile(parts.meta, ino, 'rewrite');
  assert(options.parallel >= 1);
  assert(options.parallel <= REWRITE_PARALLEL_MAX);
  if (parts.tombstones.rewritesInProgress.has(ino)) {
    throw new FsError(Errno.EBUSY, 'rewrite', `inode ${ino} is being rewritten already`);
  }
  parts.tombstones.rewritesInProgress.add(ino);
  const rewrite = new FileRewrite(parts, ino, target, options);
  try {
    for (let round = 0; round < ROUNDS_MAX; round++) {
      rewrite.report.rounds = round + 1;
      const isHeldRound = round === ROUNDS_MAX - 1;
      if (!isHeldRound) {
        await parts.files.flush(ino, { sync: false });
        await rewrite.copyRound({ isHeld: false });
      }
      const isCommitted = await parts.files.exclusive(ino, async () => {
        if (isHeldRound) await rewrite.copyRound({ isHeld: true });
        return rewrite.commitIfUnchanged();
      });
      if (isCommitted) return rewrite.report;
    }
    assert.fail('the held round always commits');
  } finally {
    await rewrite.cleanUp();
    parts.tombstones.rewritesInProgress.delete(ino);
  }
}

/**
 * Rewrites one block of `ino` to `pool` with `topology`, keeping the file's block size. The
 * block is committed only if it did not change meanwhile (else copied again); the old block
 * becomes a tombstone.
 */
export async function rewriteBlock(
  parts: RewriteParts,
  request: { ino: number; blockIndex: number; pool: Pool; topology: TopologySpec },
  context: TaskContext,
): Promise<RewriteReport> {
  const { ino, blockIndex } = request;
  requireRegularFile(parts.meta, ino, 'rewrite block');
  if (parts.tombstones.rewritesInProgress.has(ino)) {
    throw new FsError(Errno.EBUSY, 'rewrite block', `inode ${ino} is being rewritten already`);
  }
  parts.tombstones.rewritesInProgress.add(ino);
  parts.meta.notePendingBlocks(ino, [blockIndex], request.pool.name);
  try {
    return await rewriteBlockRounds(parts, request, context);
  } finally {
    parts.meta.clearPendingBlocks(ino);
    parts.tombstones.rewritesInProgress.delete(ino);
  }
}

async function rewriteBlockRounds(
  parts: RewriteParts,
  request: { ino: number; blockIndex: number; pool: Pool; topology: TopologySpec },
  context: TaskContext,
): Promise<RewriteReport> {
  const { ino, blockIndex } = request;
  const report: RewriteReport = { ino, blocksWritten: 0, blocksKept: 0, bytesWritten: 0, rounds: 0 };
  for (let round = 0; round < ROUNDS_MAX * 3; round++) {
    report.rounds = round + 1;
    const inode = parts.meta.requireInode(ino, 'rewrite block');
    const record = parts.meta.getBlock(ino, blockIndex);
    if (record === undefined) throw new FsError(Errno.ENOENT, 'rewrite block', `block ${blockIndex} of inode ${ino} is a hole`);
    const target: LayoutTarget = { pool: request.pool, topology: request.topology, blockBytes: inode.blockBytes };
    const planned: PlannedBlock = {
      blockIndex, dataBytes: record.dataBytes, pool: request.pool, topology: request.topology, kept: undefined,
      sources: [{ record, start: 0, end: record.dataBytes, targetOffset: 0 }], signature: '',
    };
    const buffers = workerBuffers(target, 1);
    const data = buffers.data[0] as Buffer;
    context.addTotal({ bytes: record.dataBytes, blocks: 1 });
    await readSources(parts, planned, data);
    const next = await writeCopy(parts, ino, planned, { target, data, parity: buffers.parity });
    await parts.blocks.syncBlocks([next]);
    if (parts.meta.replaceBlock(record, next, { tombstone: true })) {
      parts.meta.syncDurable();
      report.blocksWritten = 1;
      report.bytesWritten = record.dataBytes;
      context.addDone({ bytes: record.dataBytes, blocks: 1 });
      return report;
    }
    await parts.blocks.delete(next);
  }
  throw new FsError(Errno.EBUSY, 'rewrite block', `block ${blockIndex} of inode ${ino} keeps changing`);
}
