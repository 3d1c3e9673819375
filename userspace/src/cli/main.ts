/**
 * The `shmr` command line. Every subcommand takes `--config FILE` (default: the embedded demo
 * config, with its folders under the current directory).
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { ConfigError } from '../config/index.js';
import { configFrom } from './config-option.js';
import { scrubCommand } from './commands/scrub.js';
import { fsckCommand } from './commands/fsck.js';
import { statusCommand } from './commands/status.js';
import { bucketCommand } from './commands/bucket.js';
import { volumeCommand } from './commands/volume.js';
import { rewriteCommand } from './commands/rewrite.js';
import { tasksCommand } from './commands/tasks.js';
import { tombstonesCommand } from './commands/tombstones.js';
import { crondCommand } from './commands/crond.js';
import { metricsCommand } from './commands/metrics.js';
import { ControlError } from '../daemon/control.js';
import { FsError } from '../errno.js';
import { runMount } from '../daemon/mount.js';
import { daemonOf, isAlive } from '../daemon/runtime.js';
import { SHMR_VERSION } from '../version.js';

const execFileAsync = promisify(execFile);
const UNMOUNT_WAIT_MS_MAX = 120_000;

const HELP = `shmr: a tiered, erasure-coded filesystem for SMR drives

Usage:
  shmr mount [--config FILE]      mount and serve in the foreground until unmounted
                                  (SIGINT/SIGTERM: store everything, unmount, exit 0)
  shmr unmount MOUNTPOINT         unmount from another shell and wait for the daemon
  shmr scrub [--pool P] [--repair] [--restart] [--rate 100MiB] [--json]
                                  verify every shard; --repair rewrites damaged blocks
                                  (exit 0 healthy/repaired, 3 problems remain)
  shmr status [--json]            pools, buckets (state, space), cache use
  shmr bucket replace NAME --with NEW_PATH [--json]
                                  rebuild a failed bucket's shards into an empty directory
  shmr fsck [--repair] [--json]   cross-check metadata and shard files; --repair fixes
                                  what it can without losing data (orphans quarantined)
  shmr volume create NAME --size 10GiB [--pool P] [--topology T] [--block-size B]
  shmr volume list [--json] | shmr volume rm NAME
                                  block devices stored as files in /.volumes, served by
                                  the daemon over NBD (config nbd.socket, nbd.listen)
  shmr volume attach NAME [--device /dev/nbdN] | shmr volume detach /dev/nbdN
                                  connect a volume to a kernel NBD device (nbd-client)
  shmr rewrite PATH --pool P --topology T [--block-size 32MiB] [--parallel N] [--wait] [--json]
                                  move a file to another pool, topology and block size (a task)
  shmr tasks [--cancel ID] [--json]
                                  the daemon's tasks (rewrite, mover, scrub, purge) and progress
  shmr tombstones [--inode N] [--purge [--older-than 1h]] [--json]
                                  shards of deleted files and replaced blocks awaiting purge
  shmr crond                      housekeeping: run the mover, purge and scrub on the schedule
                                  of the config's housekeeping section, through the daemon
  shmr metrics [--config FILE]    every metric: current values and recent averages
  shmr metrics query NAME [LABEL=V|LABEL!=V|LABEL=~RE|LABEL!~RE]... [--fn avg] [--intervals N]
                                  one number (fn: avg min max sum rate count last p50 p90 p99)
  shmr metrics dump [--since 1h] [--json]
                                  the metrics journal (works without the daemon)
  shmr --help | --version

Every command takes --config FILE; on a mounted filesystem commands run through
the daemon. Without --config, the embedded default config is used: a demo filesystem with
its mount point ./mnt and its data under ./data in the current directory.
`;

/** Runs the command line; resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version') {
    process.stdout.write(`shmr ${SHMR_VERSION}\n`);
    return 0;
  }
  if (command === 'mount') return mountCommand(rest);
  if (command === 'unmount' || command === 'umount') return unmountCommand(rest);
  if (command === 'scrub') return scrubCommand(rest);
  if (command === 'fsck') return fsckCommand(rest);
  if (command === 'status') return statusCommand(rest);
  if (command === 'bucket') return bucketCommand(rest);
  if (command === 'volume') return volumeCommand(rest);
  if (command === 'rewrite') return rewriteCommand(rest);
  if (command === 'tasks') return tasksCommand(rest);
  if (command === 'tombstones') return tombstonesCommand(rest);
  if (command === 'crond') return crondCommand(rest);
  if (command === 'metrics') return metricsCommand(rest);
  process.stderr.write(`shmr: unknown command "${command}"\n\n${HELP}`);
  return 2;
}

async function mountCommand(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args], options: { config: { type: 'string', short: 'c' } }, allowPositionals: false,
  });
  const config = configFrom(values.config);
  return runMount(config);
}

async function unmountCommand(args: readonly string[]): Promise<number> {
  const { positionals } = parseArgs({ args: [...args], options: {}, allowPositionals: true });
  const [target] = positionals;
  if (target === undefined) {
    process.stderr.write('shmr unmount: missing MOUNTPOINT\n');
    return 2;
  }
  const mountpoint = resolve(target);
  const pid = daemonOf(mountpoint);
  try {
    await execFileAsync('fusermount3', ['-u', mountpoint]);
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? (error as Error).message).trim();
    process.stderr.write(`shmr unmount: cannot unmount ${mountpoint}: ${stderr}\n`);
    return 1;
  }
  if (pid !== undefined) {
    const deadline = Date.now() + UNMOUNT_WAIT_MS_MAX;
    while (isAlive(pid) && Date.now() < deadline) await new Promise((done) => setTimeout(done, 100));
    if (isAlive(pid)) {
      process.stderr.write(`shmr unmount: daemon ${pid} still running after ${UNMOUNT_WAIT_MS_MAX / 1000} s\n`);
      return 1;
    }
  }
  process.stdout.write(`unmounted ${mountpoint}\n`);
  return 0;
}

/** Prints an expected failure as one clear message; anything else with its stack. */
export function reportFailure(error: unknown): number {
  if (error instanceof ConfigError || error instanceof FsError || error instanceof ControlError) {
    process.stderr.write(`shmr: ${error.message}\n`);
    return 1;
  }
  if (error instanceof Error && (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`shmr: ${error.message}\n`);
    return 2;
  }
  process.stderr.write(`shmr: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  return 1;
}
