/**
 * The systems the core benchmark compares, all on the same disk under one work folder:
 * - raw: a plain folder of the backing filesystem (the physical limit, the baseline);
 * - mergerfs: Debian's mergerfs over the backing folder that holds raw's folder (the peer);
 * - shmr: `shmr mount` with one single-topology 1 MiB write pool whose bucket is a folder there.
 *
 * Work folder layout:
 *   backing/raw/          raw's test folder
 *   backing/mergerfs/     mergerfs's test folder, seen through mnt-mergerfs/mergerfs/
 *   mnt-mergerfs/         mergerfs mount point (branch: backing/)
 *   shmr/ssd0/ shmr/meta/ shmr's bucket and metadata; shmr/mnt/ its mount point;
 *                         its test folder is shmr/mnt/bench/
 *   *.log                 daemon output, shown when a daemon fails
 *
 * Invariants:
 * - Daemons run in the foreground as our children, in their own process group (a Ctrl-C on
 *   the terminal reaches only the bench, which then unmounts them in order).
 * - `stop()` never throws and is idempotent: it unmounts (lazily as a last resort), waits
 *   for the daemon, kills it if it hangs, and reports what was not clean.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { assert } from '../src/assert.js';
import { isMountPoint, runChild } from './host.js';

export const SYSTEM_NAMES = ['raw', 'mergerfs', 'shmr'] as const;
export type SystemName = (typeof SYSTEM_NAMES)[number];

/** mergerfs options of the peer, as the issue and the FUSE ceiling probes define them. */
export const MERGERFS_OPTIONS = [
  'cache.files=partial', 'allow_other', 'use_ino', 'dropcacheonclose=true', 'category.create=mfs',
  'fsname=bench-mergerfs',
].join(',');

/** One system under test, ready to run workloads. */
export interface BenchSystem {
  readonly name: SystemName;
  /** Folder the workloads run in. */
  readonly testDir: string;
  /** Backing files or folders holding the system's data: pre-read for warm tests. */
  readonly warmPaths: (testFile: string) => readonly string[];
  /** The serving daemon, for CPU accounting; undefined for raw. */
  readonly daemonPid: number | undefined;
  /** Unmounts and stops the daemon; resolves with what went wrong, empty when clean. */
  stop(): Promise<string[]>;
}

const MOUNT_WAIT_MS_MAX = 30_000;
const MOUNT_POLL_MS = 100;
/** shmr stores every cached block at unmount; give it time. */
const EXIT_WAIT_MS_MAX = 120_000;
const KILL_WAIT_MS_MAX = 10_000;
const UNMOUNT_ATTEMPTS_MAX = 5;
const UNMOUNT_RETRY_MS = 1000;
const UNMOUNT_TIMEOUT_MS = 60_000;
const LOG_TAIL_BYTES = 2000;

/** The last lines of a daemon log, for error messages. */
function logTail(logPath: string): string {
  try {
    const text = readFileSync(logPath, 'utf8');
    return text.slice(-LOG_TAIL_BYTES).trim();
  } catch {
    return '(no log)';
  }
}

/** Resolves when the child has exited, or after `timeoutMs` with false. */
async function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  const exited = new Promise<boolean>((resolve) => child.once('exit', () => resolve(true)));
  // The timer is cancelled once the race is decided, so it never holds the process open.
  const timer = new AbortController();
  const timedOut = sleep(timeoutMs, false, { signal: timer.signal }).catch(() => false);
  try {
    return await Promise.race([exited, timedOut]);
  } finally {
    timer.abort();
  }
}

/** A FUSE daemon we started in the foreground, and its mount point. */
class Daemon {
  readonly #label: string;
  readonly #child: ChildProcess;
  readonly #mountPoint: string;
  readonly #logPath: string;
  #stopping: Promise<string[]> | undefined;

  constructor(options: {
    label: string; command: string; args: string[]; mountPoint: string; logPath: string;
  }) {
    this.#label = options.label;
    this.#mountPoint = options.mountPoint;
    this.#logPath = options.logPath;
    const logFd = openSync(options.logPath, 'a');
    try {
      this.#child = spawn(options.command, options.args, {
        stdio: ['ignore', logFd, logFd],
        detached: true,
      });
    } finally {
      closeSync(logFd);
    }
    // An 'error' (cannot spawn) surfaces through waitMounted as an early exit.
    this.#child.on('error', () => undefined);
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Waits until the mount point is mounted; throws with the log if the daemon exits first. */
  async waitMounted(): Promise<void> {
    const deadline = performance.now() + MOUNT_WAIT_MS_MAX;
    while (!isMountPoint(this.#mountPoint)) {
      const where = `${this.#label} at ${this.#mountPoint}`;
      if (this.#hasExited() || this.#child.pid === undefined) {
        throw new Error(`${where} exited before mounting:\n${logTail(this.#logPath)}`);
      }
      if (performance.now() > deadline) {
        throw new Error(`${where} did not mount in time:\n${logTail(this.#logPath)}`);
      }
      await sleep(MOUNT_POLL_MS);
    }
  }

  #hasExited(): boolean {
    return this.#child.exitCode !== null || this.#child.signalCode !== null;
  }

  stop(): Promise<string[]> {
    this.#stopping ??= this.#stopOnce();
    return this.#stopping;
  }

  async #unmount(extraArgs: readonly string[]): Promise<string | undefined> {
    const never = new AbortController().signal;
    const result = await runChild('fusermount3', [...extraArgs, '-u', this.#mountPoint], {
      timeoutMs: UNMOUNT_TIMEOUT_MS, signal: never,
    });
    return result.code === 0 ? undefined : result.stderr.trim() || `exit ${String(result.code)}`;
  }

  async #stopOnce(): Promise<string[]> {
    const problems: string[] = [];
    let lastError: string | undefined;
    for (let attempt = 0; attempt < UNMOUNT_ATTEMPTS_MAX; attempt++) {
      if (!isMountPoint(this.#mountPoint)) break;
      lastError = await this.#unmount([]);
      if (lastError !== undefined) await sleep(UNMOUNT_RETRY_MS);
    }
    if (isMountPoint(this.#mountPoint)) {
      problems.push(`${this.#label}: unmount failed (${lastError ?? '?'}); unmounting lazily`);
      await this.#unmount(['-z']);
    }
    if (!(await waitExit(this.#child, EXIT_WAIT_MS_MAX))) {
      const waitSec = EXIT_WAIT_MS_MAX / 1000;
      problems.push(`${this.#label}: daemon still running ${waitSec} s after unmount; killed`);
      this.#child.kill('SIGTERM');
      if (!(await waitExit(this.#child, KILL_WAIT_MS_MAX))) this.#child.kill('SIGKILL');
      await waitExit(this.#child, KILL_WAIT_MS_MAX);
    } else if (this.#child.exitCode !== 0 && this.#child.exitCode !== null) {
      const code = this.#child.exitCode;
      problems.push(`${this.#label}: daemon exited with ${code}:\n${logTail(this.#logPath)}`);
    }
    return problems;
  }
}

/** The folder above this module that holds `relative`, for source and dist alike. */
function findUpwards(relative: string): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let folder = start; ; folder = dirname(folder)) {
    if (existsSync(join(folder, relative))) return join(folder, relative);
    if (dirname(folder) === folder) throw new Error(`${relative} not found above ${start}`);
  }
}

/** The compiled daemon entry; throws naming the build step when it is missing. */
export function shmrEntry(): string {
  const cli = findUpwards(join('bin', 'shmr.js'));
  const compiled = join(dirname(cli), '..', 'dist', 'userspace', 'src', 'cli', 'main.js');
  if (!existsSync(compiled)) throw new Error(`${compiled} missing: run npm run build first`);
  return cli;
}

/**
 * Writes `configLines` as `root`/shmr.yaml (its mount_dir must be `root`/mnt), starts the
 * daemon and waits for the mount. Used by the sections that need one shmr of their own.
 */
export async function startShmrAt(root: string, configLines: readonly string[], section: string): Promise<ChildProcess> {
  await writeFile(join(root, 'shmr.yaml'), `${configLines.join('\n')}\n`);
  const daemon = spawn(process.execPath, [shmrEntry(), 'mount', '--config', join(root, 'shmr.yaml')], { stdio: 'ignore' });
  for (let waited = 0; !isMountPoint(join(root, 'mnt')); waited += 100) {
    if (daemon.exitCode !== null || waited > 30_000) throw new Error(`${section} bench: shmr did not mount`);
    await sleep(100);
  }
  return daemon;
}

/** Unmounts what `startShmrAt` mounted (lazily if it must), waits for the daemon, removes `root`. */
export async function stopShmrAt(root: string, daemon: ChildProcess | undefined): Promise<void> {
  const mountpoint = join(root, 'mnt');
  const options = { timeoutMs: 60_000, signal: new AbortController().signal };
  const unmount = await runChild('fusermount3', ['-u', mountpoint], options);
  if (unmount.code !== 0) await runChild('fusermount3', ['-uz', mountpoint], options);
  if (daemon !== undefined && daemon.exitCode === null) await new Promise((resolve) => daemon.once('exit', resolve));
  await rm(root, { recursive: true, force: true });
}

function startRaw(root: string): Promise<BenchSystem> {
  const testDir = join(root, 'backing', 'raw');
  return mkdir(testDir, { recursive: true }).then(() => ({
    name: 'raw' as const,
    testDir,
    warmPaths: (testFile: string) => [join(testDir, testFile)],
    daemonPid: undefined,
    stop: () => Promise.resolve([]),
  }));
}

async function startMergerfs(
  root: string,
  register: (stop: () => Promise<string[]>) => void,
): Promise<BenchSystem> {
  const backing = join(root, 'backing');
  const mountPoint = join(root, 'mnt-mergerfs');
  await mkdir(join(backing, 'mergerfs'), { recursive: true });
  await mkdir(mountPoint, { recursive: true });
  const daemon = new Daemon({
    label: 'mergerfs',
    command: 'mergerfs',
    args: ['-f', '-o', MERGERFS_OPTIONS, backing, mountPoint],
    mountPoint,
    logPath: join(root, 'mergerfs.log'),
  });
  register(() => daemon.stop());
  await daemon.waitMounted();
  return {
    name: 'mergerfs',
    testDir: join(mountPoint, 'mergerfs'),
    warmPaths: (testFile: string) => [join(backing, 'mergerfs', testFile)],
    daemonPid: daemon.pid,
    stop: () => daemon.stop(),
  };
}

/** One setting of the shmr config given on the command line (--shmr-set). */
export interface ShmrSetting {
  readonly path: readonly string[];
  readonly value: unknown;
}

/**
 * The shmr config of the bench: one single-topology 1 MiB pool on one bucket folder, with
 * `settings` applied (the daemon's config check names any that is wrong).
 */
function shmrConfig(folder: string, settings: readonly ShmrSetting[]): object {
  const config: Record<string, unknown> = {
    mount_dir: join(folder, 'mnt'),
    metadata_dir: join(folder, 'meta'),
    write_pool: 'ssd',
    pools: {
      ssd: {
        topology: 'single', block_size: '1MiB', buckets: { ssd0: { path: join(folder, 'ssd0') } },
      },
    },
  };
  for (const setting of settings) {
    let node = config;
    for (const key of setting.path.slice(0, -1)) {
      const child = node[key];
      node = typeof child === 'object' && child !== null ? child as Record<string, unknown> : (node[key] = {});
    }
    node[setting.path.at(-1) ?? ''] = setting.value;
  }
  return config;
}

async function startShmr(
  root: string,
  options: { nodeOptions: readonly string[]; settings: readonly ShmrSetting[] },
  register: (stop: () => Promise<string[]>) => void,
): Promise<BenchSystem> {
  const folder = join(root, 'shmr');
  for (const name of ['ssd0', 'meta', 'mnt']) await mkdir(join(folder, name), { recursive: true });
  const configPath = join(folder, 'shmr.yaml');
  // JSON is YAML: no quoting questions for paths.
  await writeFile(configPath, `${JSON.stringify(shmrConfig(folder, options.settings), undefined, 2)}\n`);
  const mountPoint = join(folder, 'mnt');
  const daemon = new Daemon({
    label: 'shmr',
    command: process.execPath,
    args: [...options.nodeOptions, shmrEntry(), 'mount', '--config', configPath],
    mountPoint,
    logPath: join(root, 'shmr.log'),
  });
  register(() => daemon.stop());
  await daemon.waitMounted();
  const testDir = join(mountPoint, 'bench');
  await mkdir(testDir);
  return {
    name: 'shmr',
    testDir,
    warmPaths: () => [join(folder, 'ssd0'), join(folder, 'meta')],
    daemonPid: daemon.pid,
    stop: () => daemon.stop(),
  };
}

/** Options of `startSystem`. */
export interface StartOptions {
  readonly root: string;
  /** Extra Node options for the shmr daemon (e.g. --cpu-prof). */
  readonly shmrNodeOptions: readonly string[];
  /** Settings of the shmr config (--shmr-set). */
  readonly shmrSettings: readonly ShmrSetting[];
  /** Receives each daemon's stop function as soon as it is started, before it has mounted. */
  readonly register: (stop: () => Promise<string[]>) => void;
}

/** Prepares and (for mergerfs and shmr) mounts one system under `options.root`. */
export async function startSystem(name: SystemName, options: StartOptions): Promise<BenchSystem> {
  assert(options.root.startsWith('/'));
  switch (name) {
    case 'raw':
      return startRaw(options.root);
    case 'mergerfs':
      return startMergerfs(options.root, options.register);
    case 'shmr':
      return startShmr(options.root, { nodeOptions: options.shmrNodeOptions, settings: options.shmrSettings }, options.register);
  }
}
