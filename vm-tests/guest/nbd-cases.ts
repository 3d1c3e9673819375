/**
 * The nbd target: a shmr volume served by the daemon inside the guest on its Unix socket,
 * attached to /dev/nbdN with Debian's nbd-client through `shmr volume attach` (the execFile
 * wrapper of userspace/src/nbd/attach.ts), then the I/O suite and the ext4 round on it.
 * Until the NBD server is in the tree, the target fails with "not built".
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ext4Case } from './ext4.js';
import { ioCases } from './io-suite.js';
import { check, type Case } from './report.js';
import { shmrCli, withShmr } from './shmr-mount.js';
import { blockDeviceBytes, isBlockDevice, type Context } from './tools.js';

const MiB = 1024 * 1024;
const VOLUME_MIB = 64;

export function nbdCases(context: Context): Case[] {
  const attach = join(context.repo, 'dist', 'userspace', 'src', 'nbd', 'attach.js');
  if (!existsSync(attach)) {
    return [
      {
        name: 'nbd',
        timeoutMs: 1000,
        run: () => Promise.reject(new Error('not built: no NBD server in this tree')),
      },
    ];
  }
  let device = '';
  return [
    {
      name: 'nbd volume create, attach, detach',
      timeoutMs: 2_400_000,
      run: () =>
        withShmr(context.repo, { topology: 'single', blockSize: '64KiB' }, async (mount) => {
          const config = ['--config', mount.configPath];
          await shmrCli(context.repo, [
            'volume',
            'create',
            'vm',
            '--size',
            `${VOLUME_MIB}MiB`,
            ...config,
          ]);
          device = (await shmrCli(context.repo, ['volume', 'attach', 'vm', ...config])).trim();
          check(isBlockDevice(device), `attach printed "${device}", not a block device`);
          try {
            check(
              blockDeviceBytes(device) === VOLUME_MIB * MiB,
              `${device} has ${blockDeviceBytes(device)} bytes`,
            );
            const target = {
              name: 'nbd',
              path: device,
              kind: 'device' as const,
              sizeBytes: VOLUME_MIB * MiB,
              blockBytes: 64 * 1024,
            };
            await context.report.runAll([
              ...ioCases(target, 5, 250),
              ext4Case('nbd', () => device, context.repo),
            ]);
          } finally {
            await shmrCli(context.repo, ['volume', 'detach', device, ...config]);
          }
        }),
    },
  ];
}
