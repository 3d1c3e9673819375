/**
 * Setuid/setgid and file capabilities through a real mount. The mount negotiates the kernel's
 * killpriv v2 (no GETXATTR security.capability before every write), which leaves clearing them
 * to the daemon where the kernel flags a request: each case is compared with what Linux's own
 * filesystems do, both as the kernel shows it at once and as stored (after a remount).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { statSeries, withMount } from '../helpers/mount.js';

/** Runs a Python snippet as user nobody (without CAP_FSETID, unlike root). */
function asNobody(code: string): void {
  execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-c', code]);
}

function python(code: string): string {
  return execFileSync('python3', ['-c', code], { encoding: 'utf8' }).trim();
}

function modeOf(path: string): number {
  return statSync(path).mode & 0o7777;
}

/** A version 2 file capability (cap_net_raw+ep), as setcap(8) stores it. */
const CAPABILITY_HEX = '0100000200200000000000000000000000000000';

describe('setuid, setgid and capabilities', () => {
  it('clears setuid/setgid on writes, truncates and O_TRUNC opens by others, and on chown', async () => {
    await withMount({}, async ({ mountpoint: root, root: testRoot, remount }) => {
      chmodSync(testRoot, 0o755);
      chmodSync(root, 0o777);
      // name -> [mode before, what changes it, mode Linux leaves]
      const cases: Record<string, [number, (path: string) => void, number]> = {
        written: [0o6777, (path) => asNobody(`open('${path}', 'a').write('x')`), 0o777],
        // setgid without group execute marks mandatory locking: a write keeps it.
        lockMarked: [0o2767, (path) => asNobody(`open('${path}', 'a').write('x')`), 0o2767],
        direct: [0o6777, (path) => asNobody(`
import mmap, os
fd = os.open('${path}', os.O_WRONLY | os.O_DIRECT)
page = mmap.mmap(-1, 4096)
os.pwrite(fd, page, 0)`), 0o777],
        truncated: [0o6777, (path) => asNobody(`os = __import__('os'); os.truncate('${path}', 1)`), 0o777],
        reopened: [0o6777, (path) => asNobody(`open('${path}', 'w')`), 0o777],
        byRoot: [0o6777, (path) => writeFileSync(path, 'root may', { flag: 'a' }), 0o6777],
        chowned: [0o6777, (path) => chownSync(path, 65534, 65534), 0o777],
        chownedLockMarked: [0o2767, (path) => chownSync(path, 65534, 65534), 0o2767],
      };
      for (const [name, [before, change, after]] of Object.entries(cases)) {
        const path = join(root, name);
        writeFileSync(path, 'hello');
        chmodSync(path, before);
        change(path);
        expect([name, modeOf(path)]).toEqual([name, after]);
      }
      await remount();
      for (const [name, [, , after]] of Object.entries(cases)) {
        expect([name, modeOf(join(root, name))]).toEqual([name, after]);
      }
      expect(readFileSync(join(root, 'written'), 'utf8')).toBe('hellox');
    });
  });

  it('drops security.capability on write, truncate and chown', async () => {
    await withMount({}, async ({ mountpoint: root }) => {
      const changes: Record<string, (path: string) => void> = {
        written: (path) => writeFileSync(path, 'more', { flag: 'a' }),
        truncated: (path) => truncateSync(path, 1),
        chowned: (path) => chownSync(path, 1234, 1234),
      };
      for (const [name, change] of Object.entries(changes)) {
        const path = join(root, name);
        writeFileSync(path, 'hello');
        chmodSync(path, 0o755);
        python(`import os; os.setxattr('${path}', 'security.capability', bytes.fromhex('${CAPABILITY_HEX}'))`);
        expect(python(`import os; print(os.listxattr('${path}'))`)).toContain('security.capability');
        change(path);
        expect([name, python(`import os; print(os.listxattr('${path}'))`)]).toEqual([name, '[]']);
      }
      // Set after a write(2) whose pages are written back later (at the close): it stays, as
      // on ext4 (only write(2) drops a capability, not the write-back of earlier writes).
      const later = join(root, 'setLater');
      writeFileSync(later, 'hello');
      python(`
import os
fd = os.open('${later}', os.O_WRONLY)
os.pwrite(fd, b'new bytes', 0)
os.setxattr('${later}', 'security.capability', bytes.fromhex('${CAPABILITY_HEX}'))
os.close(fd)`);
      expect(python(`import os; print(os.listxattr('${later}'))`)).toContain('security.capability');
      expect(readFileSync(later, 'utf8')).toBe('new bytes');
    });
  });

  it('answers writes without a security.capability lookup each', async () => {
    await withMount({}, async ({ mountpoint: root }) => {
      const path = join(root, 'f');
      writeFileSync(path, Buffer.alloc(1 << 20));
      const lookups = () => statSeries(root, 'fuse_operations_total', 'op="getxattr"');
      const before = lookups();
      python(`
import os
fd = os.open('${path}', os.O_WRONLY)
for index in range(200): os.pwrite(fd, b'x' * 4096, (index * 7919 % 256) * 4096)
os.close(fd)`);
      // The kernel asks once per inode (until its attributes are refreshed), not per write.
      expect(lookups() - before).toBeLessThan(10);
    });
  });
});
