/**
 * The attribute cache's side in JS (attr-cache.ts, filesystem.ts): which replies hand their
 * attributes to the binding, and that every change drops the copy of each inode it touches.
 * Method: a real metadata and file store in a temp folder, the filesystem's ops called as the
 * kernel calls them, and a table that records what the binding would be told (registrations
 * and drops); the binding's own part is tested in binding.test.ts, the whole in
 * test/mount/attributes.test.ts.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/index.js';
import { openFilesystem, type OpenFilesystem } from '../daemon/open.js';
import { ROOT_INO } from '../meta/index.js';
import { AttrCache, type AttrTable } from './attr-cache.js';
import type { Attr } from './binding.js';
import { ShmrFilesystem } from './filesystem.js';

const REQUEST = { uid: 0, gid: 0, pid: 1, umask: 0 };
const S_IFREG = 0o100000;
const O_WRONLY = 0o1;

/** What the binding was told since the last `take()`. */
class RecordingTable implements AttrTable {
  readonly dropped = new Set<number>();
  readonly registered: Attr[] = [];
  /** Inodes handed over with ownsTimes, ever. */
  readonly owned: Attr[] = [];

  registerAttributes(attr: Attr, _attrTimeoutSec: number, ownsTimes = false): void {
    this.registered.push(attr);
    if (ownsTimes) this.owned.push(attr);
  }

  dropAttributes(ino: number): void {
    this.dropped.add(ino);
  }

  take(): { dropped: number[]; registered: number[] } {
    const taken = { dropped: [...this.dropped].sort(), registered: this.registered.map((attr) => attr.ino) };
    this.dropped.clear();
    this.registered.length = 0;
    return taken;
  }
}

let root: string;
let opened: OpenFilesystem;
let filesystem: ShmrFilesystem;
let table: RecordingTable;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'attr-cache-test-'));
  mkdirSync(join(root, 'ssd0'));
  const pools = '{ ssd: { topology: single, block_size: 1MiB, buckets: { ssd0: { path: ./ssd0 } } } }';
  const yaml = `mount_dir: ./mnt\nmetadata_dir: ./meta\nwrite_pool: ssd\npools: ${pools}\n`;
  opened = openFilesystem(parseConfig(yaml, { source: 'test', baseDir: root }));
  filesystem = new ShmrFilesystem({
    meta: opened.meta, files: opened.files, pools: opened.pools, options: { entryTimeoutSec: 60, attrTimeoutSec: 60 },
  });
  table = new RecordingTable();
  filesystem.attrCache = AttrCache.attach(opened, table);
});

afterEach(() => {
  opened.close();
  rmSync(root, { recursive: true, force: true });
});

describe('attribute cache (JS side)', () => {
  it('drops the copy of every inode a change touches, and hands over only attributes of the stored row', async () => {
    const d = filesystem.mkdir(REQUEST, ROOT_INO, 'd', 0o755);
    expect(d.isAttrReusable).toBe(true);
    expect(table.take()).toEqual({ dropped: [ROOT_INO, d.ino].sort(), registered: [ROOT_INO] });

    const f = filesystem.create(REQUEST, d.ino, 'f', S_IFREG | 0o644, O_WRONLY);
    expect(f.isAttrReusable).toBe(true);
    expect(table.take()).toEqual({ dropped: [d.ino, f.ino].sort(), registered: [d.ino] });
    expect(filesystem.getattr(REQUEST, f.ino).isAttrReusable).toBe(true);

    // Data written and not stored: size and blocks come from memory, so nothing is handed over.
    await filesystem.write(REQUEST, f.ino, Buffer.alloc(5000, 1), 0);
    expect(table.take().dropped).toEqual([f.ino]);
    expect(filesystem.getattr(REQUEST, f.ino)).toMatchObject({ isAttrReusable: false, attr: { size: 5000, blocks: 10 } });
    expect(filesystem.setattr(REQUEST, f.ino, { mode: 0o600 })).toMatchObject({ isAttrReusable: false });
    await filesystem.release(REQUEST, f.ino, f.fh);
    expect(table.take().dropped).toEqual([f.ino]);
    expect(filesystem.getattr(REQUEST, f.ino)).toMatchObject({ isAttrReusable: true, attr: { size: 5000, blocks: 10 } });

    const steps: [string, () => unknown, number[]][] = [
      ['chmod', () => filesystem.setattr(REQUEST, f.ino, { mode: 0o640 }), [f.ino]],
      ['utimens', () => filesystem.setattr(REQUEST, f.ino, { atime: { sec: 1, nsec: 0 }, mtime: { sec: 2, nsec: 0 } }), [f.ino]],
      ['link', () => filesystem.link(REQUEST, f.ino, ROOT_INO, 'g'), [ROOT_INO, f.ino]],
      ['unlink a link', () => filesystem.unlink(REQUEST, ROOT_INO, 'g'), [ROOT_INO, f.ino]],
      ['rename', () => filesystem.rename(REQUEST, d.ino, 'f', ROOT_INO, 'f2', 0), [ROOT_INO, d.ino, f.ino]],
      ['setxattr', () => filesystem.setxattr(REQUEST, f.ino, 'user.a', Buffer.from('1'), 0), [f.ino]],
      ['removexattr', () => filesystem.removexattr(REQUEST, f.ino, 'user.a'), [f.ino]],
    ];
    for (const [name, change, inos] of steps) {
      await change();
      expect([name, table.take().dropped]).toEqual([name, [...inos].sort()]);
    }

    // relatime: the first read through a handle moves an access time older than mtime.
    const { fh } = await filesystem.open(REQUEST, f.ino, 0);
    table.take();
    await filesystem.read(REQUEST, f.ino, 100, 0, fh);
    expect(table.take().dropped).toContain(f.ino);
    await filesystem.release(REQUEST, f.ino, fh);
    table.take();

    // A truncation stores the new size and stored bytes.
    await filesystem.setattr(REQUEST, f.ino, { size: 100 });
    expect(table.take().dropped).toContain(f.ino);

    // The last link goes while the kernel still knows the inode: its row is gone, so it is handed
    // over for good, times included (the kernel's SETATTR of the unlink's ctime comes next).
    expect(table.owned).toEqual([]);
    await filesystem.unlink(REQUEST, ROOT_INO, 'f2');
    expect(table.take()).toEqual({ dropped: [ROOT_INO, f.ino].sort(), registered: [ROOT_INO, f.ino] });
    expect(table.owned).toMatchObject([{ ino: f.ino, nlink: 0 }]);
    expect(filesystem.setattr(REQUEST, f.ino, { ctime: { sec: 9, nsec: 0 } })).toMatchObject({ isAttrReusable: false });
    expect(filesystem.getattr(REQUEST, f.ino)).toMatchObject({ isAttrReusable: false, attr: { nlink: 0 } });
    filesystem.forget(f.ino, 2);
    expect(table.take().dropped).toEqual([f.ino]);

    await filesystem.rmdir(REQUEST, ROOT_INO, 'd');
    expect(table.take().dropped).toEqual([ROOT_INO, d.ino].sort());
  }, 30_000);
});
