/**
 * Attaching a volume to a kernel NBD device (`/dev/nbdN`) with Debian's `nbd-client`, and
 * detaching it. The kernel then talks to the daemon's NBD socket directly; this only sets the
 * device up.
 *
 * Invariants:
 * - Nothing is run unless the nbd kernel module is present (loaded with modprobe when it can
 *   be); otherwise the error says what is missing.
 * - Only paths of the form /dev/nbdN are ever handed to nbd-client.
 */
import { execa } from 'execa';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { Errno, FsError } from '../errno.js';

/** A kernel NBD device path. */
export const NBD_DEVICE_PATTERN = /^\/dev\/nbd(\d+)$/;
/** How long nbd-client (or modprobe) may take. */
const COMMAND_TIMEOUT_MS = 60_000;
/** How long to wait for udev to create /dev/nbd0 after loading the module. */
const DEVICE_WAIT_MS_MAX = 5000;
/** Logical block sizes the kernel accepts for an NBD device. */
const KERNEL_BLOCK_SIZES = [512, 1024, 2048, 4096];

/** Where a volume is attached from. */
export interface AttachOptions {
  /** The daemon's NBD Unix socket. */
  readonly socketPath: string;
  readonly name: string;
  /** /dev/nbdN; the first free device when absent. */
  readonly device?: string | undefined;
  /** Logical block size of the device (512 ... 4096); default 4096. */
  readonly blockBytes?: number | undefined;
  /** Connections from the kernel (multi-connection); default 1. */
  readonly connections?: number | undefined;
  readonly isReadOnly?: boolean | undefined;
}

/** Runs a command; throws FsError naming it on failure (ENOENT when it is not installed). */
async function run(command: string, args: readonly string[], operation: string): Promise<string> {
  const result = await execa(command, args, { timeout: COMMAND_TIMEOUT_MS, reject: false });
  if (!result.failed) return result.stdout;
  if ((result.cause as { code?: unknown } | undefined)?.code === 'ENOENT') {
    const debianPackage = command === 'nbd-client' ? 'nbd-client' : 'kmod';
    throw new FsError(Errno.ENOENT, operation,
      `${command} is not installed (Debian: apt-get install ${debianPackage})`);
  }
  if (result.timedOut) {
    throw new FsError(Errno.EIO, operation, `${command} took over ${COMMAND_TIMEOUT_MS / 1000} s`);
  }
  const detail = result.stderr.trim() || result.shortMessage;
  throw new FsError(Errno.EIO, operation, `${command} ${args.join(' ')} failed: ${detail}`);
}

/** True when the kernel has the nbd driver (loaded module or built in). */
export function hasNbdDriver(): boolean {
  return existsSync('/sys/module/nbd') || existsSync('/sys/block/nbd0');
}

/** Makes sure the nbd driver is there, loading the module if possible; else ENODEV. */
async function requireNbdDriver(operation: string): Promise<void> {
  if (hasNbdDriver()) return;
  let modprobeProblem = '';
  try {
    await run('modprobe', ['nbd'], operation);
    // Loaded: udev creates the device nodes shortly after.
    const deadline = Date.now() + DEVICE_WAIT_MS_MAX;
    while (!(hasNbdDriver() && existsSync('/dev/nbd0')) && Date.now() < deadline) await sleep(100);
  } catch (error) {
    modprobeProblem = ` (${(error as Error).message})`;
  }
  if (hasNbdDriver()) return;
  throw new FsError(Errno.ENODEV, operation,
    `the nbd kernel module is not available: modprobe nbd did not load it${modprobeProblem}; ` +
    'this kernel may lack CONFIG_BLK_DEV_NBD, or its modules are not installed. ' +
    'Without it, use a userspace client: qemu-img/qemu-io, nbdcopy or nbdfuse on the NBD socket');
}

/** The first /dev/nbdN not connected to a server. */
function freeDevice(operation: string): string {
  const indexes = readdirSync('/sys/block')
    .map((name) => /^nbd(\d+)$/.exec(name)?.[1])
    .filter((index): index is string => index !== undefined)
    .map(Number)
    .sort((left, right) => left - right);
  for (const index of indexes) {
    if (!isConnected(index) && existsSync(`/dev/nbd${index}`)) return `/dev/nbd${index}`;
  }
  throw new FsError(Errno.EBUSY, operation,
    `every NBD device is in use (${indexes.length} devices; modprobe nbd nbds_max=N for more)`);
}

/** True when /dev/nbd<index> is attached (the kernel shows the client's pid or a size). */
function isConnected(index: number): boolean {
  if (existsSync(`/sys/block/nbd${index}/pid`)) return true;
  try {
    return Number(readFileSync(`/sys/block/nbd${index}/size`, 'utf8').trim()) > 0;
  } catch {
    return false;
  }
}

function deviceIndex(device: string, operation: string): number {
  const match = NBD_DEVICE_PATTERN.exec(device);
  if (match === null) {
    throw new FsError(Errno.EINVAL, operation, `"${device}" is not an NBD device (/dev/nbdN)`);
  }
  return Number(match[1]);
}

/** True when a server accepts connections on the Unix socket at `path`. */
export function isSocketLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** Attaches a volume to a kernel NBD device; returns the device. */
export async function attachVolume(options: AttachOptions): Promise<string> {
  const operation = 'volume attach';
  const blockBytes = options.blockBytes ?? 4096;
  if (!KERNEL_BLOCK_SIZES.includes(blockBytes)) {
    throw new FsError(Errno.EINVAL, operation,
      `block size ${blockBytes}: the kernel takes ${KERNEL_BLOCK_SIZES.join(', ')}`);
  }
  const connections = options.connections ?? 1;
  if (!Number.isInteger(connections) || connections < 1 || connections > 16) {
    throw new FsError(Errno.EINVAL, operation, `connections ${connections}: 1 to 16`);
  }
  if (!(await isSocketLive(options.socketPath))) {
    throw new FsError(Errno.ENOENT, operation,
      `no daemon serves NBD at ${options.socketPath}: mount the filesystem first (shmr mount)`);
  }
  await requireNbdDriver(operation);
  const device = options.device ?? freeDevice(operation);
  const index = deviceIndex(device, operation);
  if (!existsSync(device)) throw new FsError(Errno.ENOENT, operation, `${device} does not exist`);
  if (isConnected(index)) {
    throw new FsError(Errno.EBUSY, operation,
      `${device} is attached already (shmr volume detach ${device})`);
  }
  const args = ['-unix', options.socketPath, device, '-name', options.name];
  args.push('-block-size', String(blockBytes));
  if (connections > 1) args.push('-connections', String(connections));
  if (options.isReadOnly === true) args.push('-readonly');
  await run('nbd-client', args, operation);
  return device;
}

/** Detaches a kernel NBD device (flushing it first, as nbd-client -d does). */
export async function detachVolume(device: string): Promise<void> {
  const operation = 'volume detach';
  const index = deviceIndex(device, operation);
  if (!hasNbdDriver()) {
    throw new FsError(Errno.ENODEV, operation,
      'the nbd kernel module is not loaded: nothing is attached');
  }
  if (!existsSync(device)) throw new FsError(Errno.ENOENT, operation, `${device} does not exist`);
  if (!isConnected(index)) throw new FsError(Errno.EINVAL, operation, `${device} is not attached`);
  await run('nbd-client', ['-d', device], operation);
}

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}
