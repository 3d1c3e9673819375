/**
 * FdCache: a bounded LRU of read-only file descriptors of shard files.
 *
 * Invariants:
 * - At most `countMax` descriptors are open, except while more than that are in use at once
 *   (a descriptor in use is never closed; it is closed when released if over the bound).
 * - `acquire` and `release` pair exactly; the reference count never goes negative.
 */
import { close, open, constants } from 'node:fs';
import { assert } from '../assert.js';

interface FdEntry {
  fd: number;
  users: number;
  path: string;
  /** Used by peek since eviction last passed it: eviction moves it to the recent end instead. */
  isPeeked: boolean;
}

/** A shard file opened for reading, held until released. */
export interface HeldFd {
  readonly fd: number;
  readonly path: string;
}

export class FdCache {
  readonly #entries = new Map<string, FdEntry>();
  readonly #opening = new Map<string, Promise<FdEntry>>();
  readonly #countMax: number;

  constructor(countMax: number) {
    assert(countMax > 0);
    this.#countMax = countMax;
  }

  /** Opens (or reuses) a descriptor for `path`; rejects with the fs error on failure. */
  async acquire(path: string): Promise<HeldFd> {
    let entry = this.#entries.get(path);
    if (entry === undefined) {
      let pending = this.#opening.get(path);
      if (pending === undefined) {
        pending = openEntry(path);
        this.#opening.set(path, pending);
      }
      try {
        entry = await pending;
      } finally {
        this.#opening.delete(path);
      }
      const raced = this.#entries.get(path);
      if (raced !== undefined && raced !== entry) {
        if (entry.users === 0) close(entry.fd, () => undefined);
        entry = raced;
      } else {
        this.#entries.set(path, entry);
      }
    } else {
      // Move to the most recently used end.
      this.#entries.delete(path);
      this.#entries.set(path, entry);
    }
    entry.users += 1;
    this.#evict();
    return entry;
  }

  /**
   * The descriptor of `path` if one is open, else undefined (nothing is opened). For a caller
   * that uses it synchronously and keeps no reference: nothing can close it meanwhile.
   */
  peek(path: string): number | undefined {
    const entry = this.#entries.get(path);
    if (entry === undefined) return undefined;
    // A mark instead of a move to the recent end (a delete and an insert per warm read, and the
    // map's rehashing): eviction gives a marked entry a second chance (see #evict).
    entry.isPeeked = true;
    return entry.fd;
  }

  release(held: HeldFd): void {
    const entry = held as FdEntry;
    assert(entry.users > 0);
    entry.users -= 1;
    if (entry.users === 0 && this.#entries.get(entry.path) !== entry) close(entry.fd, () => undefined);
    this.#evict();
  }

  /** Forgets `path` (its file was deleted or replaced); closes it once unused. */
  forget(path: string): void {
    const entry = this.#entries.get(path);
    if (entry === undefined) return;
    this.#entries.delete(path);
    if (entry.users === 0) close(entry.fd, () => undefined);
  }

  /** Closes every unused descriptor. */
  clear(): void {
    for (const [path, entry] of this.#entries) {
      if (entry.users > 0) continue;
      this.#entries.delete(path);
      close(entry.fd, () => undefined);
    }
  }

  get openCount(): number {
    return this.#entries.size;
  }

  #evict(): void {
    if (this.#entries.size <= this.#countMax) return;
    for (const [path, entry] of this.#entries) {
      if (this.#entries.size <= this.#countMax) return;
      if (entry.users > 0) continue;
      this.#entries.delete(path);
      if (entry.isPeeked) {
        // Second chance: to the recent end, unmarked (the loop meets it again at most once).
        entry.isPeeked = false;
        this.#entries.set(path, entry);
        continue;
      }
      close(entry.fd, () => undefined);
    }
  }
}

function openEntry(path: string): Promise<FdEntry> {
  return new Promise((resolve, reject) => {
    open(path, constants.O_RDONLY, (error, fd) => {
      if (error !== null) reject(error);
      else resolve({ fd, users: 0, path, isPeeked: false });
    });
  });
}
