/**
 * The metadata store alone, without FUSE: CPU per create and per unlink of a MetaStore loop
 * (the calls the daemon makes for `open(O_CREAT)` and `unlink` of an empty file), and WAL
 * frames (pages) each of those transactions appends. A diagnostic for work on the store's
 * schema; the bench's meta test measures the whole round trip.
 *
 * Usage: node dist/userspace/bench/meta-store-loop.js FOLDER [ROUNDS] [STORE_MODULE]
 * FOLDER is emptied and reused; STORE_MODULE (a built meta/store.js, default this tree's) lets
 * one build's loop time another's store. Prints one line per round and the medians.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { MetaStore as MetaStoreType } from '../src/meta/store.js';

const FILES_PER_ROUND = 5000;
/** Transactions whose WAL frames are counted: the WAL must not wrap (4 MiB) meanwhile. */
const FRAMED_OPS = 200;
const DIR_MODE = 0o040755;
const FILE_MODE = 0o100644;
const OWNER = { uid: 0, gid: 0 };
const WAL_HEADER_BYTES = 32;
const WAL_FRAME_HEADER_BYTES = 24;

type Store = typeof MetaStoreType;

const names = Array.from({ length: FILES_PER_ROUND }, (_, index) => `f${String(index).padStart(7, '0')}`);

function cpuMicros(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return used.user + used.system;
}

/** Opens a fresh store in `folder` with one directory; returns it and the directory's inode. */
function freshStore(Meta: Store, folder: string): { meta: MetaStoreType; directory: number } {
  rmSync(folder, { recursive: true, force: true });
  const meta = Meta.open(folder, OWNER);
  return { meta, directory: meta.createInode({ parent: 1, name: 'd', mode: DIR_MODE, ...OWNER }).ino };
}

/** CPU microseconds per create and per unlink over FILES_PER_ROUND files. */
function timeRound(Meta: Store, folder: string): { create: number; unlink: number } {
  const { meta, directory } = freshStore(Meta, folder);
  let start = process.cpuUsage();
  for (const name of names) meta.createInode({ parent: directory, name, mode: FILE_MODE, ...OWNER });
  const create = cpuMicros(start) / names.length;
  start = process.cpuUsage();
  for (const name of names) meta.unlinkAndDeleteUnused(directory, name, () => true);
  const unlink = cpuMicros(start) / names.length;
  meta.close();
  return { create, unlink };
}

/** WAL bytes and page size of an open store (the page size is in the WAL header, bytes 8-11). */
function walOf(folder: string): { bytes: number; pageBytes: number } {
  const wal = readFileSync(join(folder, 'shmr-meta.sqlite-wal'));
  return { bytes: wal.byteLength, pageBytes: wal.readUInt32BE(8) };
}

/** WAL frames appended per create and per unlink, each counted from a truncated WAL. */
function countFrames(Meta: Store, folder: string): { create: number; unlink: number } {
  const first = freshStore(Meta, folder);
  const { directory } = first;
  for (const name of names.slice(FRAMED_OPS)) first.meta.createInode({ parent: directory, name, mode: FILE_MODE, ...OWNER });
  first.meta.close();
  // Closing truncates the WAL: what the next transactions write is all there is in it.
  let meta = Meta.open(folder, OWNER);
  for (const name of names.slice(0, FRAMED_OPS)) meta.createInode({ parent: directory, name, mode: FILE_MODE, ...OWNER });
  const created = walOf(folder);
  meta.close();
  meta = Meta.open(folder, OWNER);
  for (const name of names.slice(0, FRAMED_OPS)) meta.unlinkAndDeleteUnused(directory, name, () => true);
  const unlinked = walOf(folder);
  meta.close();
  const framesOf = (wal: { bytes: number; pageBytes: number }) =>
    (wal.bytes - WAL_HEADER_BYTES) / (wal.pageBytes + WAL_FRAME_HEADER_BYTES) / FRAMED_OPS;
  return { create: framesOf(created), unlink: framesOf(unlinked) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1] ?? Number.NaN;
}

async function main(): Promise<void> {
  const [folder, roundsText = '5', modulePath] = process.argv.slice(2);
  if (folder === undefined) {
    process.stderr.write('usage: meta-store-loop.js FOLDER [ROUNDS] [STORE_MODULE]\n');
    process.exit(2);
  }
  const module = (await import(modulePath === undefined ? '../src/meta/store.js' : pathToFileURL(modulePath).href)) as {
    MetaStore: Store;
  };
  const creates: number[] = [];
  const unlinks: number[] = [];
  for (let round = 0; round < Number(roundsText); round++) {
    const { create, unlink } = timeRound(module.MetaStore, folder);
    creates.push(create);
    unlinks.push(unlink);
    process.stdout.write(`round ${round}: create ${create.toFixed(1)} us, unlink ${unlink.toFixed(1)} us CPU\n`);
  }
  const frames = countFrames(module.MetaStore, folder);
  rmSync(folder, { recursive: true, force: true });
  process.stdout.write(
    `median of ${creates.length}: create ${median(creates).toFixed(1)} us, unlink ${median(unlinks).toFixed(1)} us CPU; `
    + `WAL frames per create ${frames.create.toFixed(2)}, per unlink ${frames.unlink.toFixed(2)}\n`,
  );
}

await main();
