/**
 * Reads of a metadata store's SQLite file behind MetaStore's back, for tests that check what
 * it wrote (schema, hints, soundness). The store must be closed: it holds its file locked.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';

/** Runs `read` on a read-only connection to the closed store in `folder`. */
export function readClosedStore<T>(folder: string, read: (db: Database.Database) => T): T {
  const db = new Database(join(folder, 'shmr-meta.sqlite'), { readonly: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

/** PRAGMA integrity_check of the closed store in `folder`: 'ok' when SQLite finds it sound. */
export function integrityOf(folder: string): string {
  return readClosedStore(folder, (db) => db.pragma('integrity_check', { simple: true }) as string);
}

/** The stored entry hints [entry_parent, entry_name] of `inodes` in the closed store. */
export function entryHintsOf(folder: string, inodes: readonly number[]): unknown[] {
  return readClosedStore(folder, (db) => {
    const hint = db.prepare('SELECT entry_parent, entry_name FROM inodes WHERE ino = ?').raw();
    return inodes.map((ino) => hint.get(ino));
  });
}
