/**
 * The one way tests mount shmr. Each call gets a private temp root (config, buckets, metadata,
 * mount point, daemon log), so test files run in parallel.
 *
 * Strict on the normal path: unmount must succeed and the daemon must exit 0 within
 * UNMOUNT_WAIT_MS_MAX, else the test fails with the daemon log. The forced path (lazy unmount,
 * SIGKILL) runs only after a failure, so it can never hide one.
 *
 * Mount tests need root and /dev/fuse: without them they fail loudly, naming what is missing.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const UNMOUNT_WAIT_MS_MAX = 60_000;
// A liveness bound, not a speed target: node starts slowly under TCG in the VM suite on busy cores.
const MOUNT_WAIT_MS_MAX = 90_000;

/** Repository root (this file is userspace/test/helpers/mount.ts). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CLI = join(REPO_ROOT, 'bin', 'shmr.js');

export interface PoolSpec {
  topology: string;
  blockSize: string;
  /** Bucket count (directories created under the root), or explicit paths. */
  buckets: number | string[];
  /** The pool's `compression:` setting; none when absent. */
  compression?: { algorithm: string; level?: number };
  /** head_size of the pool (files moved into it keep this much on the write pool). */
  headSize?: string;
}

export interface MountOptions {
  /** Pools by name; default: one `ssd` pool, single, 1MiB, one bucket. */
  pools?: Record<string, PoolSpec>;
  writePool?: string;
  /** Extra YAML appended to the config (cache:, fuse:, dbus: sections). */
  extraYaml?: string;
  /** Extra environment of the daemon (a private bus's DBUS_*_BUS_ADDRESS). */
  env?: Record<string, string>;
}

export interface Mount {
  readonly root: string;
  readonly mountpoint: string;
  readonly configPath: string;
  readonly logPath: string;
  /** Bucket directories by bucket name. */
  readonly buckets: Record<string, string>;
  /** The running daemon (changes after remount). */
  daemon: ChildProcess;
  /** Unmounts cleanly and mounts again with the same config. */
  remount(): Promise<void>;
  /**
   * SIGKILLs the daemon, cleans the dead mount, mounts again. `beforeDetach` runs once the
   * daemon is dead but the dead mount still covers the mount point (stop writers there, or
   * they would write into the bare directory underneath).
   */
  killAndRemount(beforeDetach?: () => Promise<void>): Promise<void>;
  /**
   * Mounts again after the daemon ended by itself (an Unmount through the D-Bus API): the
   * daemon must have exited 0.
   */
  mountAgain(): Promise<void>;
  /** Reads the daemon log. */
  log(): Promise<string>;
}

/** Fails the test (throws) when this machine cannot mount FUSE filesystems. */
export function requireFuse(): void {
  if (process.getuid?.() !== 0) throw new Error('mount tests need root (run as root)');
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    throw new Error('mount tests need /dev/fuse (load the fuse module; in a container pass --device /dev/fuse)');
  }
  for (const tool of ['/usr/bin/fusermount3']) {
    if (!existsSync(tool)) throw new Error(`mount tests need ${tool} (apt-get install fuse3)`);
  }
  if (!existsSync(join(REPO_ROOT, 'dist', 'userspace', 'src', 'cli', 'main.js'))) {
    throw new Error('mount tests need the build: run npm run build');
  }
}

function configYaml(root: string, options: MountOptions): { yaml: string; buckets: Record<string, string> } {
  const pools = options.pools ?? { ssd: { topology: 'single', blockSize: '1MiB', buckets: 1 } };
  const buckets: Record<string, string> = {};
  const lines = [`mount_dir: ${root}/mnt`, `metadata_dir: ${root}/meta`,
    `write_pool: ${options.writePool ?? Object.keys(pools)[0]}`, 'pools:'];
  for (const [name, pool] of Object.entries(pools)) {
    lines.push(`  ${name}:`, `    topology: ${pool.topology}`, `    block_size: ${pool.blockSize}`);
    if (pool.compression !== undefined) lines.push(`    compression: ${JSON.stringify(pool.compression)}`);
    if (pool.headSize !== undefined) lines.push(`    head_size: ${pool.headSize}`);
    lines.push('    buckets:');
    const paths = typeof pool.buckets === 'number'
      ? Array.from({ length: pool.buckets }, (_, index) => `${root}/buckets/${name}${index}`)
      : pool.buckets;
    paths.forEach((path, index) => {
      const bucketName = `${name}${index}`;
      buckets[bucketName] = path;
      lines.push(`      ${bucketName}: { path: ${path} }`);
    });
  }
  return { yaml: `${lines.join('\n')}\n${options.extraYaml ?? ''}`, buckets };
}

function startDaemon(configPath: string, logPath: string, env: Record<string, string> = {}): ChildProcess {
  const logFd = openSync(logPath, 'a');
  const daemon = spawn(process.execPath, [CLI, 'mount', '--config', configPath], {
    stdio: ['ignore', logFd, logFd], env: { ...process.env, ...env },
  });
  closeSync(logFd);
  return daemon;
}

function isMounted(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((line) => line.split(' ')[4] === path);
}

async function waitForMount(mount: Mount): Promise<void> {
  const deadline = Date.now() + MOUNT_WAIT_MS_MAX;
  while (Date.now() < deadline) {
    if (mount.daemon.exitCode !== null) {
      throw new Error(`daemon exited (${mount.daemon.exitCode}) before mounting:\n${await mount.log()}`);
    }
    if (isMounted(mount.mountpoint)) return;
    await sleep(25);
  }
  throw new Error(`not mounted after ${MOUNT_WAIT_MS_MAX} ms:\n${await mount.log()}`);
}

function exitOf(daemon: ChildProcess): Promise<number | null> {
  if (daemon.exitCode !== null || daemon.signalCode !== null) return Promise.resolve(daemon.exitCode);
  return new Promise((resolve) => daemon.once('exit', (code) => resolve(code)));
}

/** Unmounts strictly: fusermount3 -u must work and the daemon must exit 0. */
async function unmountStrict(mount: Mount): Promise<void> {
  await execFileAsync('fusermount3', ['-u', mount.mountpoint]);
  const code = await Promise.race([exitOf(mount.daemon), sleep(UNMOUNT_WAIT_MS_MAX).then(() => 'timeout' as const)]);
  if (code !== 0) throw new Error(`daemon exit after unmount: ${String(code)}\n${await mount.log()}`);
}

async function forceUnmount(mount: Mount, beforeDetach?: () => Promise<void>): Promise<void> {
  mount.daemon.kill('SIGKILL');
  await exitOf(mount.daemon);
  await beforeDetach?.();
  await execFileAsync('fusermount3', ['-uz', mount.mountpoint]).catch(() => undefined);
  await execFileAsync('umount', ['-l', mount.mountpoint]).catch(() => undefined);
}

/** Mounts a fresh shmr in a temp root, runs `body`, unmounts strictly, removes the root. */
export async function withMount(options: MountOptions, body: (mount: Mount) => Promise<void>): Promise<void> {
  requireFuse();
  const root = await mkdtemp(join(tmpdir(), 'shmr-test-'));
  const { yaml, buckets } = configYaml(root, options);
  for (const path of [`${root}/mnt`, ...Object.values(buckets)]) mkdirSync(path, { recursive: true });
  const configPath = join(root, 'shmr.yaml');
  await writeFile(configPath, yaml);
  const logPath = join(root, 'daemon.log');
  const mount: Mount = {
    root, mountpoint: `${root}/mnt`, configPath, logPath, buckets,
    daemon: startDaemon(configPath, logPath, options.env),
    log: () => readFile(logPath, 'utf8').catch(() => ''),
    remount: async () => {
      await unmountStrict(mount);
      mount.daemon = startDaemon(configPath, logPath, options.env);
      await waitForMount(mount);
    },
    mountAgain: async () => {
      const code = await Promise.race([exitOf(mount.daemon), sleep(UNMOUNT_WAIT_MS_MAX).then(() => 'timeout' as const)]);
      if (code !== 0 || isMounted(mount.mountpoint)) {
        throw new Error(`daemon exit ${String(code)}, still mounted: ${isMounted(mount.mountpoint)}\n${await mount.log()}`);
      }
      mount.daemon = startDaemon(configPath, logPath, options.env);
      await waitForMount(mount);
    },
    killAndRemount: async (beforeDetach) => {
      await forceUnmount(mount, beforeDetach);
      mount.daemon = startDaemon(configPath, logPath, options.env);
      await waitForMount(mount);
    },
  };
  let isClean = false;
  try {
    await waitForMount(mount);
    try {
      await body(mount);
    } catch (error) {
      // The daemon's side of the story belongs in the failure report.
      if (error instanceof Error) error.message += `\n--- daemon log ---\n${await mount.log()}`;
      throw error;
    }
    await unmountStrict(mount);
    isClean = true;
  } finally {
    if (!isClean) await forceUnmount(mount);
    await rm(root, { recursive: true, force: true });
  }
}

/** Runs the shmr CLI; resolves with exit code and output (never rejects on non-zero). */
export async function runCli(args: string[], options: { cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [CLI, ...args], { cwd: options.cwd });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

export function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

/** The value of the series `family{labels}` (`family` alone without labels) in the mount's _stat view. */
export function statSeries(mountpoint: string, family: string, labels?: string): number {
  const text = readFileSync(join(mountpoint, '_stat', family), 'utf8');
  const name = labels === undefined ? family : `${family}{${labels}}`;
  const line = text.split('\n').find((row) => row.startsWith(`${name} `));
  if (line === undefined) throw new Error(`no series ${name} in ${text}`);
  return Number(line.split(/\s+/)[1]);
}
