/**
 * fsck: cross-checks the metadata against itself and against the shard files.
 *
 * Checks: every inode reachable from the root; nlink equal to the entries (directories:
 * 2 + subdirectories); no entry naming a missing inode; every block's shards present, with
 * headers that agree with the metadata (inode, block, generation, shard, sizes, topology); no
 * block record of a missing inode; no orphan shard files in the buckets.
 *
 * Repairs (with `repair`), none of which deletes data: nlink corrected; entries to missing
 * inodes removed; unreachable inodes linked into /lost+found; block records of missing
 * inodes dropped (their shards become orphans); orphan shard files moved to the bucket's
 * `quarantine/` folder; blocks with missing or bad shards rewritten from what survives.
 */
import { mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FsError } from '../errno.js';
import { u64ToNumber } from '../layout/index.js';
import { formatTopology } from '../config/index.js';
import { isDirectory, now, ROOT_INO, S_IFDIR, type BlockRecord } from '../meta/index.js';
import { ShardError } from '../block/index.js';
import { repairBlock, type ScrubTarget } from './scrub.js';

const QUARANTINE = 'quarantine';
/** Shard files younger than this may belong to a write in flight: never orphans. */
const ORPHAN_AGE_MS_MIN = 60_000;

export interface FsckReport {
  inodes: number;
  blocks: number;
  shardFiles: number;
  problems: string[];
  repaired: string[];
  isClean: boolean;
}

/** Runs every check; with `repair`, fixes what can be fixed without losing data. */
export async function fsck(target: ScrubTarget, options: { repair: boolean }): Promise<FsckReport> {
  const report: FsckReport = { inodes: 0, blocks: 0, shardFiles: 0, problems: [], repaired: [], isClean: false };
  checkTree(target, report, options.repair);
  const referenced = await checkBlocks(target, report, options.repair);
  addTombstoned(target, referenced);
  checkOrphanShards(target, referenced, report, options.repair);
  report.isClean = report.problems.length === 0;
  return report;
}

function checkTree(target: ScrubTarget, report: FsckReport, repair: boolean): void {
  const { meta } = target;
  const inodes = new Map<number, { mode: number; nlink: number }>();
  for (const inode of meta.allInodes()) inodes.set(inode.ino, { mode: inode.mode, nlink: inode.nlink });
  report.inodes = inodes.size;
  const links = new Map<number, number>();
  const children = new Map<number, number[]>();
  for (const dirent of meta.allDirents()) {
    const inode = inodes.get(dirent.ino);
    if (inode === undefined) {
      report.problems.push(`entry ${meta.pathOf(dirent.parent)}/${dirent.name} names missing inode ${dirent.ino}`);
      if (repair) {
        meta.removeDirent(dirent.parent, dirent.name);
        report.repaired.push(`removed entry ${dirent.name} (missing inode ${dirent.ino})`);
      }
      continue;
    }
    links.set(dirent.ino, (links.get(dirent.ino) ?? 0) + 1);
    if (isDirectory(inode.mode)) {
      links.set(dirent.parent, (links.get(dirent.parent) ?? 0) + 1);
      if ((links.get(dirent.ino) ?? 0) > 1) report.problems.push(`directory inode ${dirent.ino} has several entries`);
    }
    const list = children.get(dirent.parent) ?? [];
    list.push(dirent.ino);
    children.set(dirent.parent, list);
  }
  const reachable = reachableFrom(ROOT_INO, children);
  for (const [ino, inode] of inodes) {
    if (inode.nlink === 0) continue;
    if (!reachable.has(ino)) {
      report.problems.push(`inode ${ino} is not reachable from the root`);
      if (repair) reattach(target, ino, inode.mode, report);
      continue;
    }
    const expected = isDirectory(inode.mode) ? 2 + (links.get(ino) ?? 0) - (ino === ROOT_INO ? 0 : 1) : (links.get(ino) ?? 0);
    if (expected !== inode.nlink) {
      report.problems.push(`inode ${ino} (${meta.pathOf(ino)}) has nlink ${inode.nlink}, entries say ${expected}`);
      if (repair) {
        meta.setLinkCount(ino, expected);
        report.repaired.push(`inode ${ino}: nlink ${inode.nlink} -> ${expected}`);
      }
    }
  }
}

function reachableFrom(root: number, children: Map<number, number[]>): Set<number> {
  const seen = new Set<number>([root]);
  const stack = [root];
  while (stack.length > 0) {
    const current = stack.pop() as number;
    for (const child of children.get(current) ?? []) {
      if (seen.has(child)) continue;
      seen.add(child);
      stack.push(child);
    }
  }
  return seen;
}

function reattach(target: ScrubTarget, ino: number, mode: number, report: FsckReport): void {
  const { meta } = target;
  let lostFound = meta.lookup(ROOT_INO, 'lost+found');
  if (lostFound === undefined) {
    lostFound = meta.createInode({ parent: ROOT_INO, name: 'lost+found', mode: S_IFDIR | 0o700, uid: 0, gid: 0 }).ino;
  }
  meta.addDirent(lostFound, `#${ino}`, ino);
  if (isDirectory(mode)) meta.setLinkCount(lostFound, (meta.getInode(lostFound)?.nlink ?? 2) + 1);
  meta.setAttributes(lostFound, { mtime: now() });
  report.repaired.push(`inode ${ino} linked as /lost+found/#${ino}`);
}

/** Checks every block's shards; returns the set of shard paths the metadata references. */
async function checkBlocks(target: ScrubTarget, report: FsckReport, repair: boolean): Promise<Set<string>> {
  const { meta, blocks } = target;
  const referenced = new Set<string>();
  const damaged: BlockRecord[] = [];
  for (const block of [...meta.allBlocks()]) {
    report.blocks += 1;
    const inode = meta.getInode(block.ino);
    if (inode === undefined) {
      report.problems.push(`block ${block.blockIndex} of missing inode ${block.ino}`);
      if (repair) {
        meta.removeBlockRecord(block.ino, block.blockIndex);
        report.repaired.push(`dropped block record ${block.ino}/${block.blockIndex} (its shards go to quarantine)`);
      } else {
        for (let index = 0; index < block.buckets.length; index++) referenced.add(blocks.location(block, index).path);
      }
      continue;
    }
    let isDamaged = false;
    for (let shardIndex = 0; shardIndex < block.buckets.length; shardIndex++) {
      referenced.add(blocks.location(block, shardIndex).path);
      const problem = await shardProblem(target, block, shardIndex, inode.blockBytes);
      if (problem === undefined) continue;
      // On a mounted filesystem the block may have been rewritten while we looked.
      if (meta.getBlock(block.ino, block.blockIndex)?.generation !== block.generation) break;
      isDamaged = true;
      report.problems.push(`${meta.pathOf(block.ino)} block ${block.blockIndex} shard ${shardIndex}: ${problem}`);
    }
    if (isDamaged) damaged.push(block);
  }
  if (repair) await repairDamaged(target, damaged, report);
  return referenced;
}

/** What is wrong with one shard of a block (missing, unreadable, header disagreeing), or undefined. */
export async function shardProblem(target: ScrubTarget, block: BlockRecord, shardIndex: number, blockBytes: number): Promise<string | undefined> {
  let header;
  try {
    header = (await target.blocks.header(block, shardIndex)).header;
  } catch (error) {
    if (error instanceof ShardError) return error.message;
    throw error;
  }
  const topology = target.blocks.topologyOf(block);
  const disagreements: string[] = [];
  if (header.data_bytes !== block.dataBytes) disagreements.push(`data_bytes ${header.data_bytes} != ${block.dataBytes}`);
  const compressedBytes = block.storedBytes < block.dataBytes ? block.storedBytes : 0;
  if (header.compressed_bytes !== compressedBytes) {
    disagreements.push(`compressed_bytes ${header.compressed_bytes} != ${compressedBytes}`);
  }
  if (header.block_bytes !== blockBytes) disagreements.push(`block_bytes ${header.block_bytes} != ${blockBytes}`);
  const shardTotal = header.data_shards + header.parity_shards;
  if (shardTotal !== block.buckets.length) disagreements.push(`${shardTotal} shards != ${block.buckets.length}`);
  if (formatTopology(topology) !== block.topology) disagreements.push('topology');
  if (u64ToNumber(header.generation) !== block.generation) disagreements.push('generation');
  return disagreements.length === 0 ? undefined : `header disagrees with metadata: ${disagreements.join(', ')}`;
}

async function repairDamaged(target: ScrubTarget, damaged: BlockRecord[], report: FsckReport): Promise<void> {
  for (const block of damaged) {
    try {
      if (await repairBlock(target, block)) report.repaired.push(`rewrote ${target.meta.pathOf(block.ino)} block ${block.blockIndex}`);
    } catch (error) {
      if (!(error instanceof FsError)) throw error;
      report.problems.push(`${target.meta.pathOf(block.ino)} block ${block.blockIndex}: cannot repair: ${error.message}`);
    }
  }
}

/**
 * Tombstoned shards are referenced until their purge. A pending tombstone (a rewrite running or
 * cut short) covers every generation of its block: its name prefix goes into the set.
 */
function addTombstoned(target: ScrubTarget, referenced: Set<string>): void {
  for (const tombstone of target.meta.listTombstones()) {
    if (tombstone.reason === 'pending') {
      referenced.add(`${tombstone.ino}-${tombstone.blockIndex}-*`);
      continue;
    }
    for (let index = 0; index < tombstone.buckets.length; index++) referenced.add(target.blocks.location(tombstone, index).path);
  }
}

function isReferenced(referenced: Set<string>, path: string): boolean {
  if (referenced.has(path)) return true;
  const [ino, blockIndex] = (path.split('/').pop() ?? '').split('-');
  return referenced.has(`${ino}-${blockIndex}-*`);
}

/**
 * True when the block record as it is now names this shard file: on a mounted filesystem a
 * read repair or the mover may replace a block after the walk listed it, and on a big store
 * its new shards are older than ORPHAN_AGE_MS_MIN by the time the walk ends.
 */
function isCurrentShard(target: ScrubTarget, path: string): boolean {
  const [ino, blockIndex, generation, shardIndex] = (path.split('/').pop() ?? '').split('-').map(Number);
  if (ino === undefined || blockIndex === undefined || shardIndex === undefined) return false;
  const block = target.meta.getBlock(ino, blockIndex);
  if (block === undefined || block.generation !== generation || shardIndex >= block.buckets.length) return false;
  return target.blocks.location(block, shardIndex).path === path;
}

function checkOrphanShards(target: ScrubTarget, referenced: Set<string>, report: FsckReport, repair: boolean): void {
  const cutoffMs = Date.now() - ORPHAN_AGE_MS_MIN;
  for (const bucket of target.pools.buckets) {
    for (const path of shardFilesOf(bucket.path)) {
      report.shardFiles += 1;
      if (isReferenced(referenced, path)) continue;
      if (statSync(path).mtimeMs > cutoffMs) continue;
      if (isCurrentShard(target, path)) continue;
      report.problems.push(`orphan shard file ${path}`);
      if (!repair) continue;
      const quarantine = join(bucket.path, QUARANTINE);
      mkdirSync(quarantine, { recursive: true });
      const name = path.slice(bucket.path.length + 1).replaceAll('/', '_');
      renameSync(path, join(quarantine, name));
      report.repaired.push(`moved ${path} to ${quarantine}/`);
    }
  }
}

/** Every file in a bucket's two-level shard tree. */
export function shardFilesOf(bucketPath: string): string[] {
  const files: string[] = [];
  const isLevel = (name: string) => /^[0-9a-f]{2}$/.test(name);
  let level1Names: string[];
  try {
    level1Names = readdirSync(bucketPath).filter(isLevel);
  } catch {
    return files;
  }
  for (const level1 of level1Names) {
    for (const level2 of readdirSync(join(bucketPath, level1)).filter(isLevel)) {
      for (const name of readdirSync(join(bucketPath, level1, level2))) files.push(join(bucketPath, level1, level2, name));
    }
  }
  return files;
}
