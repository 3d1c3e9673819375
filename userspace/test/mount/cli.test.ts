/**
 * The command line as a user runs it: `shmr mount` on the embedded default config in a fresh
 * folder, `shmr unmount` from another process, SIGTERM, help and usage errors.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, requireFuse, runCli, sleep } from '../helpers/mount.js';

function isMounted(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((line) => line.split(' ')[4] === path);
}

async function startDefault(cwd: string): Promise<{ daemon: ChildProcess; exited: Promise<number | null>; output: () => string }> {
  let output = '';
  const daemon = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'shmr.js'), 'mount'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  daemon.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  daemon.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  const exited = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)));
  // Mounted, and the daemon has said so (its output arrives through a pipe, a little later).
  for (let waited = 0; !isMounted(join(cwd, 'mnt')) || !output.includes('mounted at'); waited += 50) {
    if (daemon.exitCode !== null) throw new Error(`daemon exited: ${output}`);
    if (waited > 20_000) throw new Error(`not mounted: ${output}`);
    await sleep(50);
  }
  return { daemon, exited, output: () => output };
}

describe('shmr command line', () => {
  it('mounts the embedded default, unmounts from another shell, stops on SIGTERM', async () => {
    requireFuse();
    const cwd = await mkdtemp(join(tmpdir(), 'shmr-cli-'));
    let running: ChildProcess | undefined;
    try {
      const first = await startDefault(cwd);
      running = first.daemon;
      expect(first.output()).toMatch(/mounted at .*\/mnt .*shmr unmount/);
      for (const folder of ['data/meta', 'data/ssd0', 'data/hdd5']) expect(existsSync(join(cwd, folder))).toBe(true);
      writeFileSync(join(cwd, 'mnt', 'hello'), 'world');
      const unmounted = await runCli(['unmount', join(cwd, 'mnt')]);
      expect(unmounted.code, unmounted.stderr).toBe(0);
      expect(await first.exited).toBe(0);
      expect(isMounted(join(cwd, 'mnt'))).toBe(false);

      const second = await startDefault(cwd);
      running = second.daemon;
      expect(readFileSync(join(cwd, 'mnt', 'hello'), 'utf8')).toBe('world');
      writeFileSync(join(cwd, 'mnt', 'second'), 'cached until stopped');
      second.daemon.kill('SIGTERM');
      expect(await second.exited).toBe(0);
      expect(isMounted(join(cwd, 'mnt'))).toBe(false);
      running = undefined;
      const status = await runCli(['status', '--json'], { cwd });
      expect(status.code, status.stderr).toBe(0);
      expect((JSON.parse(status.stdout) as { isMounted: boolean }).isMounted).toBe(false);
    } finally {
      running?.kill('SIGKILL');
      await runCli(['unmount', join(cwd, 'mnt')]);
      await rm(cwd, { recursive: true, force: true });
    }
  }, 120_000);

  it('prints help, and usage errors exit 2', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/shmr mount \[--config FILE\]/);
    expect((await runCli(['frobnicate'])).code).toBe(2);
    expect((await runCli(['unmount'])).code).toBe(2);
    const unknownOption = await runCli(['mount', '--bogus']);
    expect(unknownOption.code).toBe(2);
    expect(unknownOption.stderr).toMatch(/bogus/);
  });
});
