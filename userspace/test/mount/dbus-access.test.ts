/**
 * Who may use the D-Bus API, and a filesystem without it.
 *
 * Method: a private dbus-daemon with the deny-by-default rules of a system bus plus shmr's
 * own policy file (scripts/dbus/co.volf.shmr.conf); the daemon runs as root on it
 * (`dbus: { bus: system }`), and clients run as `nobody` through setpriv with Debian's gdbus
 * and dbus-send (system binaries, so the unprivileged user needs no access to this checkout).
 * Then `dbus: none` (the daemon never connects) and an unreachable bus (the filesystem mounts
 * and works, with exactly one warning).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import dbus from 'dbus-next';
import { describe, expect, it } from 'vitest';
import { BUS_NAME, INTERFACE_NAME, objectPathOf } from '../../src/dbus/names.js';
import { connectClient, runProcess, withBus, type PrivateBus, type ProcessResult } from '../helpers/dbus.js';
import { sleep, withMount } from '../helpers/mount.js';

/** Runs a command as nobody:nogroup with no supplementary groups (or only `groups`). */
function asNobody(bus: PrivateBus, command: string[], groups = ''): Promise<ProcessResult> {
  const identity = ['--reuid=nobody', '--regid=nogroup', groups === '' ? '--clear-groups' : `--groups=${groups}`];
  return runProcess('/usr/bin/setpriv', [...identity, ...command],
    { PATH: '/usr/bin:/bin', DBUS_SYSTEM_BUS_ADDRESS: bus.address }, { isEnvComplete: true });
}

describe('D-Bus access control on a system-like bus', () => {
  it('lets anyone introspect and read properties, and only root and group shmr call methods', async () => {
    await withBus('system', async (bus) => {
      await withMount({ extraYaml: 'dbus: { bus: system }\n', env: { DBUS_SYSTEM_BUS_ADDRESS: bus.address } }, async (mount) => {
        writeFileSync(join(mount.mountpoint, 'file'), 'kept');
        const root = await connectClient(bus, mount.mountpoint, 'system');
        const path = objectPathOf(mount.mountpoint);
        const gdbus = ['/usr/bin/gdbus', 'call', '--system', '--dest', BUS_NAME, '--object-path', path, '--method'];
        try {
          await root.call('FlushAll');

          const introspection = await asNobody(bus, ['/usr/bin/gdbus', 'introspect', '--system', '--dest', BUS_NAME, '--object-path', path]);
          expect(introspection.code, introspection.stderr).toBe(0);
          expect(introspection.stdout).toMatch(/RewriteFile\(in {2}s inode_or_path/);
          const property = await asNobody(bus, [...gdbus, 'org.freedesktop.DBus.Properties.Get', INTERFACE_NAME, 'MountPoint']);
          expect(property.code, property.stderr).toBe(0);
          expect(property.stdout).toContain(mount.mountpoint);
          const all = await asNobody(bus, [...gdbus, 'org.freedesktop.DBus.Properties.GetAll', INTERFACE_NAME]);
          expect(all.code, all.stderr).toBe(0);
          expect(all.stdout).toContain("'Pools'");

          for (const call of [
            [`${INTERFACE_NAME}.FlushAll`], [`${INTERFACE_NAME}.Unmount`],
            [`${INTERFACE_NAME}.Stat`, join(mount.mountpoint, 'file')], [`${INTERFACE_NAME}.ListTasks`],
            [`${INTERFACE_NAME}.Scrub`, '', 'true'],
          ]) {
            const refused = await asNobody(bus, [...gdbus, ...call]);
            expect(refused.code, call.join(' ')).not.toBe(0);
            expect(refused.stderr).toMatch(/org\.freedesktop\.DBus\.Error\.AccessDenied/);
          }
          const sent = await asNobody(bus, ['/usr/bin/dbus-send', '--system', '--print-reply', `--dest=${BUS_NAME}`, path,
            `${INTERFACE_NAME}.FlushInode`, 'uint64:1']);
          expect(sent.code).not.toBe(0);
          expect(sent.stderr).toMatch(/AccessDenied/);
          const setProperty = await asNobody(bus, [...gdbus, 'org.freedesktop.DBus.Properties.Set', INTERFACE_NAME, 'MountPoint', "<'/x'>"]);
          expect(setProperty.code).not.toBe(0);

          // A member of the group shmr may call methods (the group comes from scripts/setup.sh).
          const member = await asNobody(bus, [...gdbus, `${INTERFACE_NAME}.FlushAll`], 'shmr');
          expect(member.code, `${member.stderr} (is the group shmr there? scripts/setup.sh creates it)`).toBe(0);

          // Refused calls changed nothing: still mounted, still answering, the data there.
          expect((await root.properties())['MountPoint']).toBe(mount.mountpoint);
          expect(readFileSync(join(mount.mountpoint, 'file'), 'utf8')).toBe('kept');
        } finally {
          root.close();
        }
      });
    });
  }, 120_000);
});

describe('a filesystem without its D-Bus API', () => {
  it('dbus: none never connects; an unreachable bus costs one warning and nothing else', async () => {
    await withBus('session', async (bus) => {
      await withMount({ extraYaml: 'dbus: { bus: none }\n', env: bus.env }, async (mount) => {
        writeFileSync(join(mount.mountpoint, 'a'), 'works');
        await sleep(500);
        const probe = dbus.sessionBus({ busAddress: bus.address });
        try {
          const reply = await probe.call(new dbus.Message({
            destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus',
            member: 'NameHasOwner', signature: 's', body: [BUS_NAME],
          }));
          expect(reply?.body[0]).toBe(false);
        } finally {
          probe.disconnect();
        }
        expect(await mount.log()).not.toMatch(/D-Bus/);
      });
    });
    for (const extraYaml of ['dbus: { bus: session }\n', '']) {
      const env = { DBUS_SESSION_BUS_ADDRESS: 'unix:path=/nonexistent/shmr-bus', DBUS_SYSTEM_BUS_ADDRESS: 'unix:path=/nonexistent/shmr-bus' };
      await withMount({ extraYaml, env }, async (mount) => {
        writeFileSync(join(mount.mountpoint, 'a'), 'works');
        expect(readFileSync(join(mount.mountpoint, 'a'), 'utf8')).toBe('works');
        const bus = extraYaml === '' ? 'system' : 'session';
        const warnings = (await mount.log()).split('\n').filter((line) => line.includes('D-Bus'));
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toMatch(new RegExp(`^shmr warn: D-Bus: cannot serve co.volf.shmr on the ${bus} bus \\(unix:path=/nonexistent/shmr-bus\\): .*ENOENT`));
      });
    }
  }, 120_000);
});
