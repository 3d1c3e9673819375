/**
 * The one way the guest suite mounts shmr: a private root under /tmp (config, buckets,
 * metadata, mount point, daemon log), the daemon started as `node bin/shmr.js mount`, and a
 * strict unmount: `fusermount3 -u` must succeed and the daemon must exit 0 soon after, or
 * the case fails with the daemon log (libfuse's fuse_umount rule: a daemon that outlives its
 * unmount is a failure). The forced path (SIGKILL, lazy unmount) runs only after a failure.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const MOUNT_WAIT_MS_MAX = 120_000;
const EXIT_WAIT_MS_MAX = 60_000;

export interface MountOptions {
  readonly topology: string;
  readonly blockSize: string;
}

export interface ShmrMount {
  readonly root: string;
  readonly mountpoint: string;
  readonly configPath: string;
  readonly bucket: string;
  readonly socketPath: string;
  /** Unmounts strictly and mounts again (drops the daemon's caches). */
  remount(): Promise<void>;
  log(): string;
}

function isMounted(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === path);
}

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

function exitOf(daemon: ChildProcess, timeoutMs: number): Promise<number | null | 'timeout'> {
  if (daemon.exitCode !== null || daemon.signalCode !== null)
    return Promise.resolve(daemon.exitCode);
  return Promise.race([
    new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code))),
    sleep(timeoutMs).then(() => 'timeout' as const),
  ]);
}

/** Mounts a fresh shmr, runs `body`, unmounts strictly, removes the root. */
export async function withShmr(
  repo: string,
  options: MountOptions,
  body: (mount: ShmrMount) => Promise<void>,
): Promise<void> {
  const root = mkdtempSync('/tmp/shmr-vm-');
  const mountpoint = join(root, 'mnt');
  const bucket = join(root, 'buckets', 'ssd0');
  for (const path of [mountpoint, bucket]) mkdirSync(path, { recursive: true });
  const configPath = join(root, 'shmr.yaml');
  writeFileSync(
    configPath,
    [
      `mount_dir: ${mountpoint}`,
      `metadata_dir: ${root}/meta`,
      'write_pool: ssd',
      'pools:',
      '  ssd:',
      `    topology: ${options.topology}`,
      `    block_size: ${options.blockSize}`,
      '    buckets:',
      `      ssd0: { path: ${bucket} }`,
      '',
    ].join('\n'),
  );
  const logPath = join(root, 'daemon.log');
  const log = () => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  const start = async (): Promise<ChildProcess> => {
    const logFd = openSync(logPath, 'a');
    const daemon = spawn(
      process.execPath,
      [join(repo, 'bin', 'shmr.js'), 'mount', '--config', configPath],
      {
        stdio: ['ignore', logFd, logFd],
      },
    );
    closeSync(logFd);
    const deadline = Date.now() + MOUNT_WAIT_MS_MAX;
    while (!isMounted(mountpoint)) {
      if (daemon.exitCode !== null)
        throw new Error(`daemon exited (${daemon.exitCode}) before mounting:\n${log()}`);
      if (Date.now() > deadline)
        throw new Error(`not mounted after ${MOUNT_WAIT_MS_MAX} ms:\n${log()}`);
      await sleep(50);
    }
    return daemon;
  };
  const unmount = async (daemon: ChildProcess): Promise<void> => {
    await execFileAsync('fusermount3', ['-u', mountpoint]);
    const code = await exitOf(daemon, EXIT_WAIT_MS_MAX);
    if (code !== 0) throw new Error(`daemon after unmount: ${String(code)}\n${log()}`);
  };
  let daemon = await start();
  const mount: ShmrMount = {
    root,
    mountpoint,
    configPath,
    bucket,
    socketPath: join(root, 'meta', 'nbd.sock'),
    log,
    remount: async () => {
      await unmount(daemon);
      daemon = await start();
    },
  };
  let isClean = false;
  try {
    try {
      await body(mount);
    } catch (error) {
      if (error instanceof Error) error.message += `\n--- daemon log ---\n${log().slice(-4000)}`;
      throw error;
    }
    await unmount(daemon);
    isClean = true;
  } finally {
    if (!isClean) {
      daemon.kill('SIGKILL');
      await exitOf(daemon, 5000);
      await execFileAsync('fusermount3', ['-uz', mountpoint]).catch(() => undefined);
    }
    rmSync(root, { recursive: true, force: true });
  }
}

/** Runs the shmr CLI; rejects with its output when it fails. */
export async function shmrCli(repo: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(
      process.execPath,
      [join(repo, 'bin', 'shmr.js'), ...args],
      { timeout: 300_000 },
    );
    return stdout;
  } catch (error) {
    const failure = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(
      `shmr ${args.join(' ')}: ${failure.message}\n${failure.stdout ?? ''}${failure.stderr ?? ''}`,
    );
  }
}
