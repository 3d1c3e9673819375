/**
 * Runtime files: where a running daemon records its pid per mount point, so that
 * `shmr unmount MOUNTPOINT` from another shell can wait for it to finish flushing.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function runtimeDirectory(): string {
  const base = process.env['XDG_RUNTIME_DIR'] ?? (process.getuid?.() === 0 ? '/run' : tmpdir());
  return join(base, 'shmr');
}

function pidFile(mountpoint: string): string {
  const digest = createHash('sha256').update(mountpoint).digest('hex').slice(0, 32);
  return join(runtimeDirectory(), `${digest}.pid`);
}

/** Records this process as the daemon serving `mountpoint`. */
export function recordDaemon(mountpoint: string): void {
  mkdirSync(runtimeDirectory(), { recursive: true });
  writeFileSync(pidFile(mountpoint), `${process.pid}\n${mountpoint}\n`);
}

/** Removes the record (normal exit). */
export function forgetDaemon(mountpoint: string): void {
  rmSync(pidFile(mountpoint), { force: true });
}

/** Pid of the daemon serving `mountpoint`, if one recorded itself. */
export function daemonOf(mountpoint: string): number | undefined {
  try {
    const [pid] = readFileSync(pidFile(mountpoint), 'utf8').split('\n');
    const value = Number(pid);
    return Number.isInteger(value) && value > 0 ? value : undefined;
  } catch {
    return undefined;
  }
}

/** True when a process with this pid exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}
