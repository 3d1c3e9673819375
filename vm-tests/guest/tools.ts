/**
 * Small helpers of the guest suite: running programs, block device facts, the case context.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import type { Report } from './report.js';

const execFileAsync = promisify(execFile);

/** What every target's cases get. */
export interface Context {
  readonly repo: string;
  readonly runDir: string;
  readonly report: Report;
}

/** Runs a program; rejects with its output on a non-zero exit. */
export async function run(
  command: string,
  args: readonly string[],
  timeoutMs = 600_000,
): Promise<string> {
  try {
    const { stdout, stderr } = await execFileAsync(command, [...args], {
      timeout: timeoutMs,
      maxBuffer: 64 << 20,
    });
    return stdout + stderr;
  } catch (error) {
    const failure = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(
      `${command} ${args.join(' ')}: ${failure.message}\n${failure.stdout ?? ''}${failure.stderr ?? ''}`,
    );
  }
}

/** The exit status and output of a program, for checks that expect it to fail. */
export function status(
  command: string,
  args: readonly string[],
): { code: number | null; output: string } {
  const result = spawnSync(command, [...args], { encoding: 'utf8' });
  return { code: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}` };
}

export function dmesg(): string {
  return status('dmesg', []).output;
}

/** Size in bytes of a block device (from sysfs: 512-byte sectors). */
export function blockDeviceBytes(device: string): number {
  const name = device.replace('/dev/', '');
  return Number(readFileSync(`/sys/block/${name}/size`, 'utf8').trim()) * 512;
}

export function isBlockDevice(path: string): boolean {
  return existsSync(path) && statSync(path).isBlockDevice();
}
