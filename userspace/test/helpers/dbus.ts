/**
 * Private message buses for tests: a real Debian dbus-daemon per test, on a Unix socket in a
 * temp folder, so tests run in parallel and never touch the machine's own buses.
 *
 * Two policies:
 * - 'session': anyone may own names and call anything (the `dbus: { bus: session }` case);
 * - 'system': the deny-by-default rules of Debian's system bus plus shmr's own policy file
 *   (scripts/dbus/co.volf.shmr.conf), so tests see what an unprivileged user sees on a real
 *   system bus.
 *
 * The socket folder is world-traversable, so clients started as `nobody` can connect.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ShmrClient, UnreachableError } from '../../src/dbus/client.js';
import { REPO_ROOT, sleep } from './mount.js';

const execFileAsync = promisify(execFile);

const DBUS_DAEMON = '/usr/bin/dbus-daemon';
const START_WAIT_MS_MAX = 10_000;

/** Path of shmr's system bus policy in the repository. */
export const POLICY_FILE = join(REPO_ROOT, 'scripts', 'dbus', 'co.volf.shmr.conf');

export type BusPolicy = 'session' | 'system';

export interface PrivateBus {
  /** The D-Bus address (unix:path=...), for DBUS_SESSION_BUS_ADDRESS or DBUS_SYSTEM_BUS_ADDRESS. */
  readonly address: string;
  /** Environment for a process that should use this bus as its session and system bus. */
  readonly env: Record<string, string>;
  stop(): Promise<void>;
}

const SYSTEM_LIKE_POLICY = `
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>${POLICY_FILE}</include>`;

const SESSION_POLICY = `
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>`;

function busConfig(socketPath: string, policy: BusPolicy): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>${policy}</type>
  <listen>unix:path=${socketPath}</listen>
  <auth>EXTERNAL</auth>
  ${policy === 'system' ? SYSTEM_LIKE_POLICY : SESSION_POLICY}
</busconfig>
`;
}

/** Fails the test (throws) when dbus-daemon is missing. */
export function requireDbusDaemon(): void {
  if (!existsSync(DBUS_DAEMON)) throw new Error(`D-Bus tests need ${DBUS_DAEMON} (apt-get install dbus-daemon; scripts/setup.sh)`);
}

/** Starts a private dbus-daemon with `policy`; stop it when done. */
export async function startBus(policy: BusPolicy): Promise<PrivateBus> {
  requireDbusDaemon();
  const folder = await mkdtemp(join(tmpdir(), 'shmr-bus-'));
  await chmod(folder, 0o755);
  const socketPath = join(folder, 'bus');
  const configPath = join(folder, 'bus.conf');
  await writeFile(configPath, busConfig(socketPath, policy));
  const daemon = spawn(DBUS_DAEMON, [`--config-file=${configPath}`, '--nofork', '--nopidfile', '--print-address=1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  daemon.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  daemon.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  try {
    await waitForAddress(daemon, () => output);
  } catch (error) {
    daemon.kill('SIGKILL');
    await rm(folder, { recursive: true, force: true });
    throw error;
  }
  await chmod(socketPath, 0o777);
  const address = `unix:path=${socketPath}`;
  return {
    address,
    env: { DBUS_SESSION_BUS_ADDRESS: address, DBUS_SYSTEM_BUS_ADDRESS: address },
    stop: async () => {
      if (daemon.exitCode === null) {
        const exited = new Promise((resolve) => daemon.once('exit', resolve));
        daemon.kill('SIGTERM');
        await exited;
      }
      await rm(folder, { recursive: true, force: true });
    },
  };
}

async function waitForAddress(daemon: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + START_WAIT_MS_MAX;
  while (!output().includes('unix:path=')) {
    if (daemon.exitCode !== null) throw new Error(`dbus-daemon exited (${daemon.exitCode}):\n${output()}`);
    if (Date.now() > deadline) throw new Error(`dbus-daemon gave no address within ${START_WAIT_MS_MAX} ms:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Runs `body` with a private bus, stopping it afterwards whatever happens. */
export async function withBus(policy: BusPolicy, body: (bus: PrivateBus) => Promise<void>): Promise<void> {
  const bus = await startBus(policy);
  try {
    await body(bus);
  } finally {
    await bus.stop();
  }
}

/**
 * A client of the daemon serving `mountpoint` on `bus`, once the daemon has registered (it
 * does so just after the mount appears).
 */
export async function connectClient(bus: PrivateBus, mountpoint: string, kind: 'system' | 'session' = 'session'): Promise<ShmrClient> {
  const deadline = Date.now() + START_WAIT_MS_MAX;
  for (;;) {
    try {
      return await ShmrClient.connect({ bus: kind, mountDir: mountpoint, address: bus.address });
    } catch (error) {
      if (!(error instanceof UnreachableError) || Date.now() > deadline) throw error;
      await sleep(50);
    }
  }
}

/** Output of a finished process. */
export interface ProcessResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program (a D-Bus tool, shmrctl); resolves with its exit code and output, never rejects on failure. */
export async function runProcess(file: string, args: string[], env: Record<string, string>, options: { isEnvComplete?: boolean } = {}): Promise<ProcessResult> {
  try {
    const { stdout, stderr } = await execFileAsync(file, args, { env: options.isEnvComplete === true ? env : { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}
