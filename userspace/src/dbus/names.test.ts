/** Object paths of mount points: the documented escaping, reversible, always a valid path. */
import dbus from 'dbus-next';
import { describe, expect, it } from 'vitest';
import { mountDirOf, objectPathOf } from './names.js';

// dbus-next exports its name validators at run time but not in its type declarations.
const { validators } = dbus as unknown as { validators: { isObjectPathValid(path: string): boolean } };

describe('objectPathOf', () => {
  it('escapes every byte outside [A-Za-z0-9] as _xx', () => {
    expect(objectPathOf('/mnt/data')).toBe('/co/volf/shmr/fs/_2fmnt_2fdata');
    expect(objectPathOf('/srv/my pool_1')).toBe('/co/volf/shmr/fs/_2fsrv_2fmy_20pool_5f1');
    expect(objectPathOf('/é')).toBe('/co/volf/shmr/fs/_2f_c3_a9');
    expect(objectPathOf('')).toBe('/co/volf/shmr/fs/_');
  });

  it('round-trips and always gives a valid D-Bus object path', () => {
    for (const mountDir of ['/', '/mnt/data', '/tmp/shmr-test-AbC9/mnt', '/a/_b/c d/ü', '']) {
      const path = objectPathOf(mountDir);
      expect(validators.isObjectPathValid(path), path).toBe(true);
      expect(mountDirOf(path)).toBe(mountDir);
    }
    expect(mountDirOf('/org/other')).toBeUndefined();
    expect(mountDirOf('/co/volf/shmr/fs/_zz')).toBeUndefined();
  });
});
