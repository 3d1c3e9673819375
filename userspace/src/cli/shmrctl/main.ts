/**
 * shmrctl: the operator's command line over the D-Bus API co.volf.shmr.ShmrFs1 (docs/dbus.md).
 * Every command takes --json (machine-readable output on stdout, also for errors), --mount DIR
 * and --bus system|session; exit codes are listed in exit-codes.ts.
 */
import { SHMR_VERSION } from '../../version.js';
import type { CommandResult } from './command.js';
import { flush, stat, unmount } from './commands/files.js';
import { metrics } from './commands/metrics.js';
import { status } from './commands/status.js';
import { cancel, rewrite, scrub, task, tasks } from './commands/tasks.js';
import { tombstones } from './commands/tombstones.js';
import { EXIT_CODES, failureOf } from './exit-codes.js';

const HELP = `shmrctl: control a mounted shmr filesystem over D-Bus (co.volf.shmr)

Usage:
  shmrctl status                         version, pools, buckets, cache, open handles
  shmrctl flush [PATH]                   store cached data (of PATH, or of everything)
  shmrctl rewrite PATH --pool P [--topology erasure:8+3] [--block-size 32MiB]
                  [--parallel N] [--wait]
                                         move a file to another pool, topology or block size
  shmrctl tasks | task ID | cancel ID    background tasks
  shmrctl tombstones [--purge] [--inode N] [--older-than 7d]
                                         old copies left by rewrites
  shmrctl scrub [--pool P] [--repair] [--wait]
                                         verify (and repair) every shard, as a task
  shmrctl stat PATH                      blocks, pools, topologies, shard locations, health
  shmrctl metrics NAME [LABEL=V | LABEL!=V | LABEL=~RE | LABEL!~RE]...
                  [--fn avg|min|max|sum|rate|count|last|p50|p90|p99] [--intervals N]
                                         a metric of the query engine, over the last N
                                         flush intervals (default: avg over 1)
  shmrctl unmount                        store everything, unmount, end the daemon
  shmrctl --help | --version

Options of every command:
  --json           JSON on stdout (errors too: {"error": {"name", "message"}})
  --mount DIR      the filesystem (default: the one holding PATH, or the only one mounted)
  --bus B          system (default, or $SHMR_DBUS_BUS) or session

Exit codes: 0 ok, 1 failed, 2 usage, 3 problems found (stat: degraded or lost),
4 invalid argument, 5 not found, 6 permission denied, 7 daemon unreachable, 8 not supported.
`;

const COMMANDS: Readonly<Record<string, (args: readonly string[]) => Promise<CommandResult>>> = {
  status, flush, rewrite, tasks, task, cancel, tombstones, scrub, stat, metrics, unmount,
};

/** Runs the command line; resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HELP);
    return name === undefined ? EXIT_CODES.usage : EXIT_CODES.ok;
  }
  if (name === '--version') {
    process.stdout.write(`shmrctl ${SHMR_VERSION}\n`);
    return EXIT_CODES.ok;
  }
  const isJson = rest.includes('--json');
  const command = COMMANDS[name];
  if (command === undefined) {
    return report({ name: 'Usage', message: `unknown command "${name}" (shmrctl --help lists them)`, code: EXIT_CODES.usage }, isJson);
  }
  try {
    const result = await command(rest);
    process.stdout.write(isJson ? `${JSON.stringify(result.json, null, 2)}\n` : `${result.text}\n`);
    return result.code;
  } catch (error) {
    return report(failureOf(error), isJson);
  }
}

function report(failure: { name: string; message: string; code: number }, isJson: boolean): number {
  if (isJson) process.stdout.write(`${JSON.stringify({ error: { name: failure.name, message: failure.message } }, null, 2)}\n`);
  process.stderr.write(`shmrctl: ${failure.message}${failure.name === 'Usage' || failure.name === 'Failed' ? '' : ` (${failure.name})`}\n`);
  return failure.code;
}
