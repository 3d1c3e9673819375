/**
 * The SQLite schema of the metadata store. The only SQL outside store.ts and schema-upgrade.ts.
 *
 * Tables:
 * - inodes: one row per inode; ino 1 is the root directory. Numbers are never reused, so the
 *   FUSE generation can stay 0: they come from a NumberSource whose mark is the setting
 *   `next_ino` (no AUTOINCREMENT, whose sqlite_sequence row cost a page per create).
 *   (entry_parent, entry_name) names one entry of the inode (a directory's only one), where it
 *   was created, linked or renamed to: a hint for finding parents and paths, checked against
 *   dirents before use, since unlinking that entry of a hard-linked file leaves it stale. It
 *   replaces an index of dirents by ino, which cost a page per create and per unlink.
 * - dirents: directory entries, keyed by (parent, name) without a rowid (the key is the
 *   table: no separate unique index); `id` is the stable readdir cookie of the entry, from a
 *   NumberSource whose mark is the setting `next_dirent_id`.
 * - xattrs: extended attributes.
 * - blocks: the block map of regular files; `buckets` lists the bucket of each shard in shard
 *   order, comma-separated; `stored_bytes` is the compressed length of a compressed block
 *   (NULL, in rows older than compression, means `data_bytes`).
 * - tombstones: shards no block map references any more (deleted files, blocks replaced by a
 *   rewrite), kept until their grace period ends or an explicit purge; one row per block.
 */

/**
 * Bumped on every incompatible schema change; a store of another version is refused.
 * 1: the first. 2: added the tombstones table. 3: inodes without AUTOINCREMENT and with entry
 * hints, dirents WITHOUT ROWID keyed by (parent, name) and not indexed by ino; numbers from the
 * `next_ino` and `next_dirent_id` marks.
 */
export const SCHEMA_VERSION = 3;

/** Versions a store may have and be upgraded from (see schema-upgrade.ts). */
export const SCHEMA_VERSIONS_UPGRADABLE: readonly number[] = [1, 2];

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS inodes (
  ino INTEGER PRIMARY KEY,
  mode INTEGER NOT NULL,
  nlink INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  rdev INTEGER NOT NULL DEFAULT 0,
  size INTEGER NOT NULL DEFAULT 0,
  block_bytes INTEGER NOT NULL DEFAULT 0,
  stored_bytes INTEGER NOT NULL DEFAULT 0,
  atime_sec INTEGER NOT NULL, atime_nsec INTEGER NOT NULL,
  mtime_sec INTEGER NOT NULL, mtime_nsec INTEGER NOT NULL,
  ctime_sec INTEGER NOT NULL, ctime_nsec INTEGER NOT NULL,
  target BLOB,
  entry_parent INTEGER,
  entry_name TEXT
);
CREATE INDEX IF NOT EXISTS inodes_orphans ON inodes(nlink) WHERE nlink = 0;
CREATE TABLE IF NOT EXISTS dirents (
  parent INTEGER NOT NULL,
  name TEXT NOT NULL,
  id INTEGER NOT NULL,
  ino INTEGER NOT NULL,
  PRIMARY KEY (parent, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dirents_by_parent_id ON dirents(parent, id);
CREATE TABLE IF NOT EXISTS xattrs (
  ino INTEGER NOT NULL,
  name TEXT NOT NULL,
  value BLOB NOT NULL,
  PRIMARY KEY (ino, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
  ino INTEGER NOT NULL,
  block_index INTEGER NOT NULL,
  pool TEXT NOT NULL,
  topology TEXT NOT NULL,
  generation INTEGER NOT NULL,
  data_bytes INTEGER NOT NULL,
  buckets TEXT NOT NULL,
  stored_bytes INTEGER,
  PRIMARY KEY (ino, block_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tombstones (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ino INTEGER NOT NULL,
  block_index INTEGER NOT NULL,
  pool TEXT NOT NULL,
  topology TEXT NOT NULL,
  generation INTEGER NOT NULL,
  data_bytes INTEGER NOT NULL,
  stored_bytes INTEGER,
  buckets TEXT NOT NULL,
  reason TEXT NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_by_ino ON tombstones(ino);
CREATE INDEX IF NOT EXISTS tombstones_by_time ON tombstones(created_ms);
`;
