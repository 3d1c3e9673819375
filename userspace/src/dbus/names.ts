/**
 * Names of the D-Bus API: the bus name, the interface, and the object path of a mounted
 * filesystem.
 *
 * Object path scheme: `/co/volf/shmr/fs/<mount point>`, the absolute mount point escaped as
 * systemd's `sd_bus_path_encode` does (every byte outside [A-Za-z0-9] becomes `_` and two
 * lower-case hex digits), so `/mnt/data` is `/co/volf/shmr/fs/_2fmnt_2fdata`. One mount point,
 * one path; the path can be computed by anyone who knows the mount point.
 */

/** The well-known bus name every shmr daemon requests. */
export const BUS_NAME = 'co.volf.shmr';
/** The interface of a mounted filesystem's object. */
export const INTERFACE_NAME = 'co.volf.shmr.ShmrFs1';
/** The parent of every filesystem object. */
export const OBJECT_PATH_ROOT = '/co/volf/shmr/fs';

/** The object path of the filesystem mounted at `mountDir` (an absolute path). */
export function objectPathOf(mountDir: string): string {
  let label = '';
  for (const byte of Buffer.from(mountDir, 'utf8')) {
    const isPlain = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
    label += isPlain ? String.fromCharCode(byte) : `_${byte.toString(16).padStart(2, '0')}`;
  }
  return `${OBJECT_PATH_ROOT}/${label === '' ? '_' : label}`;
}

/** The mount point an object path stands for, or undefined when it is not one of ours. */
export function mountDirOf(objectPath: string): string | undefined {
  const prefix = `${OBJECT_PATH_ROOT}/`;
  if (!objectPath.startsWith(prefix)) return undefined;
  const label = objectPath.slice(prefix.length);
  if (label === '_') return '';
  const bytes: number[] = [];
  for (let index = 0; index < label.length; index++) {
    const character = label[index] as string;
    if (character !== '_') {
      bytes.push(character.charCodeAt(0));
      continue;
    }
    const hex = label.slice(index + 1, index + 3);
    if (!/^[0-9a-f]{2}$/.test(hex)) return undefined;
    bytes.push(Number.parseInt(hex, 16));
    index += 2;
  }
  return Buffer.from(bytes).toString('utf8');
}
