/**
 * `shmr volume ...`: block devices stored as shmr files and served over NBD by the daemon.
 *
 *   shmr volume create NAME --size SIZE [--pool P] [--topology T] [--block-size B] [--json]
 *   shmr volume list [--json]
 *   shmr volume rm NAME
 *   shmr volume attach NAME [--device /dev/nbdN] [--sector-size 4096] [--connections N]
 *                           [--read-only]
 *   shmr volume detach /dev/nbdN
 *
 * create, list and rm run through the daemon when mounted, on the metadata directly when not;
 * attach and detach need the daemon (the kernel connects to its NBD socket).
 * Exit codes: 0 done, 1 failure, 2 usage.
 */
import { parseArgs } from 'node:util';
import type { Config } from '../../config/index.js';
import { parseSize } from '../../config/index.js';
import { callControl } from '../../daemon/control.js';
import {
  attachVolume, createVolume, detachVolume, isSocketLive, listVolumes, NO_VOLUME_USERS,
  removeVolume, type VolumeCreateInput, type VolumeInfo,
} from '../../nbd/index.js';
import { configFrom } from '../config-option.js';
import { runOnFilesystem } from './run.js';

const USAGE = `usage:
  shmr volume create NAME --size SIZE [--pool P] [--topology T] [--block-size B] [--json]
  shmr volume list [--json]
  shmr volume rm NAME
  shmr volume attach NAME [--device /dev/nbdN] [--sector-size 512|4096] [--connections N]
                          [--read-only]
  shmr volume detach /dev/nbdN
every subcommand takes --config FILE
`;

/** A volume as listed, with the daemon's connection count when mounted. */
type ListedVolume = VolumeInfo & { connections?: number };

export async function volumeCommand(args: readonly string[]): Promise<number> {
  const [action, ...rest] = args;
  switch (action) {
    case 'create':
      return createCommand(rest);
    case 'list':
    case 'ls':
      return listCommand(rest);
    case 'rm':
    case 'remove':
      return removeCommand(rest);
    case 'attach':
      return attachCommand(rest);
    case 'detach':
      return detachCommand(rest);
    default:
      process.stderr.write(USAGE);
      return 2;
  }
}

function usage(problem: string): number {
  process.stderr.write(`shmr volume: ${problem}\n${USAGE}`);
  return 2;
}

async function createCommand(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args], allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' }, size: { type: 'string' }, pool: { type: 'string' },
      topology: { type: 'string' }, 'block-size': { type: 'string' }, json: { type: 'boolean' },
    },
  });
  const [name, extra] = positionals;
  if (name === undefined || extra !== undefined) return usage('create takes one NAME');
  if (values.size === undefined) return usage('create needs --size (e.g. --size 10GiB)');
  const sizeBytes = parseSize(values.size);
  if (sizeBytes === undefined) return usage(`--size: "${values.size}" is not a size (e.g. 10GiB)`);
  const blockSize = values['block-size'];
  const blockBytes = blockSize === undefined ? undefined : parseSize(blockSize);
  if (blockSize !== undefined && blockBytes === undefined) {
    return usage(`--block-size: "${blockSize}" is not a size (e.g. 1MiB)`);
  }
  const { pool, topology } = values;
  const input: VolumeCreateInput = { name, sizeBytes, pool, topology, blockBytes };
  const config = configFrom(values.config);
  const { result } = await runOnFilesystem<VolumeInfo>(config, {
    local: (fs) => createVolume(fs, input), method: 'volumeCreate', params: { ...input },
  });
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return 0;
  }
  const size = humanSize(result.sizeBytes);
  const where = `pool ${result.pool} (${result.topology})`;
  process.stdout.write(`created volume ${result.name}: ${size} in ${where}\n` +
    `  ${exportUri(config, result.name)}\n`);
  return 0;
}

async function listCommand(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args], allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } },
  });
  if (positionals.length > 0) return usage('list takes no arguments');
  const config = configFrom(values.config);
  const { result, viaDaemon } = await runOnFilesystem<ListedVolume[]>(config, {
    local: async (fs) => listVolumes(fs), method: 'volumeList', params: {},
  });
  if (values.json === true) {
    const listing = { socket: config.nbd.socketPath, isServing: viaDaemon, volumes: result };
    process.stdout.write(`${JSON.stringify(listing, null, 2)}\n`);
    return 0;
  }
  if (result.length === 0) {
    process.stdout.write('no volumes (create one: shmr volume create NAME --size 10GiB)\n');
    return 0;
  }
  const lines = table(result, viaDaemon);
  const { listen, socketPath } = config.nbd;
  const tcp = listen === undefined ? '' : ` and ${listen.host}:${listen.port}`;
  lines.push(viaDaemon
    ? `served over NBD at ${socketPath}${tcp}, e.g. ${exportUri(config, result[0]?.name ?? 'NAME')}`
    : 'not mounted: volumes are served over NBD while the filesystem is mounted');
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

/** The lines of `shmr volume list`, columns aligned. */
function table(volumes: readonly ListedVolume[], isServing: boolean): string[] {
  const rows = [['NAME', 'SIZE', 'STORED', 'MODE', 'POOL', 'CONNECTIONS']];
  for (const volume of volumes) {
    rows.push([
      volume.name, humanSize(volume.sizeBytes), humanSize(volume.storedBytes),
      volume.isReadOnly ? 'ro' : 'rw', `${volume.pool} (${volume.topology})`,
      isServing ? String(volume.connections ?? 0) : '-',
    ]);
  }
  const widths = (rows[0] ?? []).map((_, column) =>
    Math.max(...rows.map((row) => (row[column] ?? '').length)));
  return rows.map((row) =>
    row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd());
}

async function removeCommand(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args], allowPositionals: true, options: { config: { type: 'string', short: 'c' } },
  });
  const [name, extra] = positionals;
  if (name === undefined || extra !== undefined) return usage('rm takes one NAME');
  await runOnFilesystem(configFrom(values.config), {
    local: (fs) => removeVolume(fs, name, NO_VOLUME_USERS),
    method: 'volumeRemove', params: { name },
  });
  process.stdout.write(`removed volume ${name}\n`);
  return 0;
}

async function attachCommand(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args], allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' }, device: { type: 'string' },
      'sector-size': { type: 'string' }, connections: { type: 'string' },
      'read-only': { type: 'boolean' },
    },
  });
  const [name, extra] = positionals;
  if (name === undefined || extra !== undefined) return usage('attach takes one NAME');
  const config = configFrom(values.config);
  const socketPath = config.nbd.socketPath;
  if (!(await isSocketLive(socketPath))) {
    process.stderr.write(`shmr volume attach: no daemon serves NBD at ${socketPath}: ` +
      'mount the filesystem first (shmr mount)\n');
    return 1;
  }
  const volumes = (await callControl(config.metadataDir, 'volumeList', {})) as ListedVolume[];
  const volume = volumes.find((candidate) => candidate.name === name);
  if (volume === undefined) {
    process.stderr.write(`shmr volume attach: no volume named "${name}" (shmr volume list)\n`);
    return 1;
  }
  const device = await attachVolume({
    socketPath, name, device: values.device,
    blockBytes: values['sector-size'] === undefined ? undefined : Number(values['sector-size']),
    connections: values.connections === undefined ? undefined : Number(values.connections),
    isReadOnly: values['read-only'] === true || volume.isReadOnly,
  });
  process.stdout.write(`${device}\n`);
  return 0;
}

async function detachCommand(args: readonly string[]): Promise<number> {
  const { positionals } = parseArgs({
    args: [...args], allowPositionals: true, options: { config: { type: 'string', short: 'c' } },
  });
  const [device, extra] = positionals;
  if (device === undefined || extra !== undefined) return usage('detach takes one /dev/nbdN');
  await detachVolume(device);
  process.stdout.write(`detached ${device}\n`);
  return 0;
}

/** The NBD URI of a volume on the daemon's Unix socket (as qemu, nbdinfo and nbdcopy take it). */
function exportUri(config: Config, name: string): string {
  return `nbd+unix:///${name}?socket=${config.nbd.socketPath}`;
}

/** 10GiB, 1.5GiB, 512KiB, 0B: binary units, one decimal when not exact. */
function humanSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const text = Number.isInteger(value) ? String(value) : value.toFixed(1);
  return `${text}${units[unit]}`;
}
