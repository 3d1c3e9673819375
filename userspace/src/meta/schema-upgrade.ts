/**
 * Upgrades a metadata store of an older schema version to SCHEMA_VERSION, in one transaction
 * (a crash leaves the old store, which the next open upgrades again).
 *
 * Versions 1 and 2 numbered inodes and directory entries with AUTOINCREMENT and kept dirents
 * in a rowid table with a unique (parent, name) index and an index by ino. Version 3 rebuilds
 * both tables in the new shape (SCHEMA_SQL) with every row kept as it was, each inode's entry
 * hint set to its first entry, and stores as the numbers' marks what their AUTOINCREMENT
 * sequences had reached: a number handed out before is not handed out again.
 * Version 1 also lacked the tombstones table, which SCHEMA_SQL creates.
 */
import type Database from 'better-sqlite3';
import { assert } from '../assert.js';
import { SCHEMA_SQL, SCHEMA_VERSION, SCHEMA_VERSIONS_UPGRADABLE } from './schema.js';

const INODE_COLUMNS = `ino, mode, nlink, uid, gid, rdev, size, block_bytes, stored_bytes,
  atime_sec, atime_nsec, mtime_sec, mtime_nsec, ctime_sec, ctime_nsec, target`;

/** The settings keys of the number marks (see NumberSource). */
export const NEXT_INO_KEY = 'next_ino';
export const NEXT_DIRENT_ID_KEY = 'next_dirent_id';

/** The first number above both the table's highest key and its AUTOINCREMENT sequence. */
function markOf(db: Database.Database, table: 'inodes' | 'dirents', key: 'ino' | 'id'): number {
  const sequence = db.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?').pluck().get(table) as number | undefined;
  const highest = db.prepare(`SELECT max(${key}) FROM ${table}`).pluck().get() as number | null;
  return Math.max(sequence ?? 0, highest ?? 0) + 1;
}

/** Upgrades the store from `version` (one of SCHEMA_VERSIONS_UPGRADABLE) to SCHEMA_VERSION. */
export function upgradeSchema(db: Database.Database, version: number): void {
  assert(SCHEMA_VERSIONS_UPGRADABLE.includes(version), `schema version ${version} is not upgradable`);
  db.transaction(() => {
    const nextIno = markOf(db, 'inodes', 'ino');
    const nextDirentId = markOf(db, 'dirents', 'id');
    // The old index by ino stays until the hints are copied; version 3 has no index of that name.
    db.exec(`
      ALTER TABLE inodes RENAME TO inodes_old;
      ALTER TABLE dirents RENAME TO dirents_old;
      DROP INDEX inodes_orphans;
      DROP INDEX dirents_by_parent_id;
    `);
    db.exec(SCHEMA_SQL);
    // A bare column beside min() comes from the row holding the minimum: the first entry.
    db.exec(`
      INSERT INTO inodes (${INODE_COLUMNS}, entry_parent, entry_name)
        SELECT ${INODE_COLUMNS}, first.parent, first.name FROM inodes_old
        LEFT JOIN (SELECT ino AS entry_ino, parent, name, min(id) FROM dirents_old GROUP BY ino) AS first
          ON first.entry_ino = inodes_old.ino;
      INSERT INTO dirents (parent, name, id, ino) SELECT parent, name, id, ino FROM dirents_old;
      DROP TABLE inodes_old;
      DROP TABLE dirents_old;
    `);
    const put = db.prepare('INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)');
    put.run(NEXT_INO_KEY, String(nextIno));
    put.run(NEXT_DIRENT_ID_KEY, String(nextDirentId));
    put.run('schema_version', String(SCHEMA_VERSION));
  })();
}
