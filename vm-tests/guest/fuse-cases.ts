/**
 * The fuse target: the I/O suite on a file in a shmr mount, a rotten shard of a Single pool
 * reading as EIO, and a share of the host's file-level mount tests run by vitest inside the
 * guest; the fuse-host target: the other share, in a boot of its own.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { digest, ioCases } from './io-suite.js';
import { check, type Case } from './report.js';
import { withShmr } from './shmr-mount.js';
import type { Context } from './tools.js';

const MiB = 1024 * 1024;
const BLOCK_BYTES = 64 * 1024;
/**
 * The host's file-level mount tests (userspace/test/mount/) run in the guest; the host deals
 * them over the fuse and fuse-host boots (vm-tests/run.ts) and passes each its share as
 * `vmhosttests=` on the kernel command line. durability.test.ts is left out by default: under
 * TCG (about 20 times slower than the host) it takes 4 minutes and two of its cases fail on
 * timing (repair counts, a read during bucket replace); name it to run it.
 */
const HOST_TESTS = (process.env['vmhosttests'] ?? '')
  .split(',')
  .filter((name) => name !== '');
/**
 * Left out in the guest, by name: opening 10,000 files through FUSE takes over the test's
 * 300 s under TCG. It runs on the host with the rest of the mount tests.
 */
const TOO_SLOW_UNDER_TCG = ['handles 10,000 files open at once and many small files'];

/** Every shard file under a bucket directory (bucket/xx/yy/<ino>-<block>-...). */
function shardFiles(bucket: string): string[] {
  const files: string[] = [];
  for (const level1 of readdirSync(bucket)) {
    if (level1 === 'shmr-bucket') continue;
    for (const level2 of readdirSync(join(bucket, level1))) {
      for (const name of readdirSync(join(bucket, level1, level2)))
        files.push(join(bucket, level1, level2, name));
    }
  }
  return files;
}

function readOutcome(path: string): Buffer | string {
  try {
    return readFileSync(path);
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

function corruptCase(context: Context): Case {
  return {
    name: 'corrupt fuse single: EIO, never wrong data',
    timeoutMs: 300_000,
    run: () =>
      withShmr(context.repo, { topology: 'single', blockSize: '64KiB' }, async (mount) => {
        const rotten = Buffer.alloc(3 * BLOCK_BYTES + 123, 0x33);
        const intact = Buffer.alloc(BLOCK_BYTES + 5, 0x44);
        writeFileSync(join(mount.mountpoint, 'rotten'), rotten);
        writeFileSync(join(mount.mountpoint, 'intact'), intact);
        await mount.remount();
        const ino = statSync(join(mount.mountpoint, 'rotten')).ino;
        const shard = shardFiles(mount.bucket).find((path) => path.includes(`/${ino}-1-`));
        check(shard !== undefined, `no shard of block 1 of inode ${ino}`);
        const bytes = readFileSync(shard);
        bytes[bytes.byteLength - 10] = (bytes[bytes.byteLength - 10] ?? 0) ^ 0xff;
        writeFileSync(shard, bytes);
        await mount.remount();
        const outcome = readOutcome(join(mount.mountpoint, 'rotten'));
        check(
          outcome === 'EIO',
          `reading a file with a rotten shard: ${Buffer.isBuffer(outcome) ? 'data' : outcome}, not EIO`,
        );
        const other = readOutcome(join(mount.mountpoint, 'intact'));
        check(
          Buffer.isBuffer(other) && digest(other) === digest(intact),
          'the intact file changed',
        );
      }),
  };
}

interface VitestReport {
  testResults?: {
    name: string;
    assertionResults: {
      fullName: string;
      status: string;
      duration?: number;
      failureMessages: string[];
    }[];
  }[];
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Runs vitest on `files`, its verbose output copied to the console; resolves with its exit. */
function runVitest(
  repo: string,
  files: readonly string[],
  output: string,
  timeoutMs: number,
): Promise<number | null> {
  const child = spawn(
    process.execPath,
    [
      // One test file at a time: two vCPUs under TCG are slow enough without daemons competing.
      join(repo, 'node_modules', 'vitest', 'vitest.mjs'),
      'run',
      '--no-file-parallelism',
      '--reporter=verbose',
      '--reporter=json',
      `--outputFile.json=${output}`,
      `--testNamePattern=^(?!.*(${TOO_SLOW_UNDER_TCG.map(escapeRegExp).join('|')}))`,
      ...files,
    ],
    { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // Through pipes, not the console itself: on a TTY vitest redraws its progress endlessly.
  child.stdout.pipe(process.stdout, { end: false });
  child.stderr.pipe(process.stdout, { end: false });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    }),
  );
}

/** Runs the host's mount tests with vitest; one recorded case per test. */
function hostTestsCase(context: Context): Case {
  const timeoutMs = 2_700_000;
  return {
    name: `host mount tests (${HOST_TESTS.join(', ')}) ran`,
    timeoutMs: timeoutMs + 60_000,
    run: async () => {
      const output = '/tmp/vitest.json';
      const files = HOST_TESTS.map((name) => `userspace/test/mount/${name}.test.ts`);
      const code = await runVitest(context.repo, files, output, timeoutMs);
      let report: VitestReport;
      try {
        report = JSON.parse(readFileSync(output, 'utf8')) as VitestReport;
      } catch {
        throw new Error(
          `vitest wrote no report (exit ${String(code)}; its output is in the console log)`,
        );
      }
      let count = 0;
      for (const file of report.testResults ?? []) {
        for (const test of file.assertionResults) {
          count++;
          if (
            test.status === 'skipped' &&
            TOO_SLOW_UNDER_TCG.some((slow) => test.fullName.endsWith(slow))
          ) {
            process.stdout.write(
              `VMTEST-NOTE ${context.report.target} left out under TCG: ${test.fullName}\n`,
            );
            continue;
          }
          const name = `host-test ${file.name.replace(`${context.repo}/`, '')}: ${test.fullName}`;
          const detail =
            test.status === 'passed'
              ? ''
              : `${test.status} ${test.failureMessages.join('\n').slice(0, 1500)}`;
          context.report.record(
            name,
            test.status === 'passed',
            Math.round(test.duration ?? 0),
            detail,
          );
        }
      }
      check(count > 0, `vitest ran no tests (exit ${String(code)})`);
    },
  };
}

export function fuseCases(context: Context): Case[] {
  return [
    {
      name: 'fuse mount, I/O suite, strict unmount',
      timeoutMs: 1_800_000,
      run: () =>
        withShmr(context.repo, { topology: 'single', blockSize: '64KiB' }, async (mount) => {
          const target = {
            name: 'fuse',
            path: join(mount.mountpoint, 'io-file'),
            kind: 'file' as const,
            sizeBytes: 24 * MiB,
            blockBytes: BLOCK_BYTES,
          };
          await context.report.runAll(ioCases(target, 4, 250));
        }),
    },
    corruptCase(context),
    ...fuseHostCases(context),
  ];
}

/** The fuse-host target: only the host's mount tests (the share the host gave this boot). */
export function fuseHostCases(context: Context): Case[] {
  return HOST_TESTS.length === 0 ? [] : [hostTestsCase(context)];
}
