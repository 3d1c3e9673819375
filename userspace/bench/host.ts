/**
 * Host helpers for the core benchmark: child processes with deadlines, page-cache control,
 * CPU accounting from /proc, the background-load gate, and where a folder lives.
 *
 * Invariants:
 * - Every child process started here has a deadline and is killed when the bench's abort
 *   signal fires; none outlives the call that started it.
 * - Nothing here scans other processes (/proc/PID/cmdline of a process blocked on a dead
 *   FUSE mount can hang the reader); only our own children's /proc/PID/stat is read.
 */
import { spawn } from 'node:child_process';
import { lstat, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { accessSync, constants, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { assert } from '../src/assert.js';

/** Read size when pulling backing files into the page cache. */
const PRE_READ_BYTES = 1024 * 1024;
/** Clock ticks per second of /proc/PID/stat times (USER_HZ; 100 on every Linux ABI). */
const USER_HZ = 100;
/** How long one background-load sample looks at the machine. */
const LOAD_SAMPLE_MS = 1000;
/** `sync` can wait on other filesystems' writeback; past this we go on without it. */
const SYNC_WAIT_MS_MAX = 120_000;

/** What a finished child process printed, and how it ended. */
export interface ChildResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly isTimedOut: boolean;
}

/** Options of `runChild`. */
export interface ChildOptions {
  readonly timeoutMs: number;
  /** Aborting kills the child (SIGKILL) and rejects with the signal's reason. */
  readonly signal: AbortSignal;
  readonly cwd?: string;
}

/**
 * Runs `file args` to completion and collects its output. Resolves also on a non-zero exit or
 * a timeout (the caller decides what that means); rejects when the bench is aborted or the
 * program cannot be started.
 */
export function runChild(
  file: string,
  args: readonly string[],
  options: ChildOptions,
): Promise<ChildResult> {
  assert(options.timeoutMs > 0);
  options.signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    });
    let stdout = '';
    let stderr = '';
    let isTimedOut = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      isTimedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    const onAbort = () => child.kill('SIGKILL');
    options.signal.addEventListener('abort', onAbort, { once: true });
    child.once('error', (error) => {
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      if (options.signal.aborted) {
        reject(options.signal.reason);
        return;
      }
      resolve({ code, signal, isTimedOut, stdout, stderr });
    });
  });
}

/** The absolute path of `name` on PATH (plus the sbin folders), or undefined. */
export function findExecutable(name: string): string | undefined {
  const folders = (process.env['PATH'] ?? '').split(delimiter).filter((folder) => folder !== '');
  for (const folder of [...folders, '/usr/local/sbin', '/usr/sbin', '/sbin']) {
    const candidate = join(folder, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this folder; try the next one.
    }
  }
  return undefined;
}

/** `sync(1)`: flushes every filesystem's dirty data; gives up (returns false) after a while. */
export async function syncAll(signal: AbortSignal): Promise<boolean> {
  const result = await runChild('sync', [], { timeoutMs: SYNC_WAIT_MS_MAX, signal });
  return result.code === 0;
}

/** `sync; echo 3 > /proc/sys/vm/drop_caches`: the next reads come from the devices. */
export async function dropCaches(signal: AbortSignal): Promise<void> {
  await syncAll(signal);
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

/** Busy and total jiffies of the whole machine, from the first line of /proc/stat. */
interface CpuTimes {
  readonly busyTicks: number;
  readonly totalTicks: number;
}

async function readCpuTimes(): Promise<CpuTimes> {
  const text = await readFile('/proc/stat', 'utf8');
  const line = text.slice(0, text.indexOf('\n'));
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user).
  const [user = 0, nice = 0, system = 0, idle = 0] = fields;
  const [iowait = 0, irq = 0, softirq = 0, steal = 0] = fields.slice(4);
  const busyTicks = user + nice + system + irq + softirq + steal;
  return { busyTicks, totalTicks: busyTicks + idle + iowait };
}

/** Machine CPU use between two samples, in percent of one core (2 busy cores = 200). */
export class MachineCpu {
  readonly #start: CpuTimes;
  private constructor(start: CpuTimes) {
    this.#start = start;
  }
  static async start(): Promise<MachineCpu> {
    return new MachineCpu(await readCpuTimes());
  }
  async busyCorePercent(): Promise<number> {
    const end = await readCpuTimes();
    const totalTicks = end.totalTicks - this.#start.totalTicks;
    if (totalTicks <= 0) return 0;
    return ((end.busyTicks - this.#start.busyTicks) / totalTicks) * 100 * cpus().length;
  }
}

/** CPU seconds (user + system, all threads) a process of ours has used so far. */
export function processCpuSeconds(pid: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name may contain spaces and parentheses: fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After the name, utime and stime are the 12th and 13th fields (14 and 15 of the man page).
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? ticks / USER_HZ : undefined;
}

/** Result of waiting for a quiet machine. */
export interface GateResult {
  /** CPU use of everything else, percent of one core, in the last sample before the test. */
  readonly backgroundCorePercent: number;
  readonly waitedMs: number;
}

/**
 * Waits until the rest of the machine is below `busyCorePercentMax` (percent of one core) or
 * `waitMsMax` has passed, so a test does not start in the middle of someone else's burst.
 */
export async function waitForQuiet(
  options: { busyCorePercentMax: number; waitMsMax: number },
  signal: AbortSignal,
): Promise<GateResult> {
  const startMs = performance.now();
  for (;;) {
    const sample = await MachineCpu.start();
    await sleep(LOAD_SAMPLE_MS, undefined, { signal });
    const backgroundCorePercent = await sample.busyCorePercent();
    const waitedMs = performance.now() - startMs;
    if (backgroundCorePercent < options.busyCorePercentMax || waitedMs >= options.waitMsMax) {
      return { backgroundCorePercent, waitedMs };
    }
  }
}

/** One line of /proc/self/mountinfo, the fields we use. */
export interface MountEntry {
  readonly mountPoint: string;
  readonly fsType: string;
  readonly source: string;
}

/** Undoes mountinfo's octal escapes (\040 for a space, ...). */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCharCode(parseInt(octal, 8)));
}

/** The mount table as this process sees it. */
export function readMounts(): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (line === '') continue;
    const [left = '', right = ''] = line.split(' - ');
    const mountPoint = unescapeMountField(left.split(' ')[4] ?? '');
    const [fsType = '', source = ''] = right.split(' ');
    entries.push({ mountPoint, fsType, source: unescapeMountField(source) });
  }
  return entries;
}

/** The mount that holds `path` (longest mount point that prefixes it). */
export function mountOf(path: string): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const entry of readMounts()) {
    const isPrefix = entry.mountPoint === '/' || path === entry.mountPoint ||
      path.startsWith(`${entry.mountPoint}/`);
    if (isPrefix && (best === undefined || entry.mountPoint.length >= best.mountPoint.length)) {
      best = entry;
    }
  }
  return best;
}

/** Whether `path` is currently a mount point. */
export function isMountPoint(path: string): boolean {
  return readMounts().some((entry) => entry.mountPoint === path);
}

/**
 * Reads every regular file under `paths` (files or folders, recursively) once, so that their
 * pages are in the page cache; returns the bytes read. Missing paths are skipped.
 */
export async function readIntoPageCache(paths: readonly string[]): Promise<number> {
  const buffer = Buffer.allocUnsafeSlow(PRE_READ_BYTES);
  let totalBytes = 0;
  const visit = async (path: string): Promise<void> => {
    const stats = await lstat(path).catch(() => undefined);
    if (stats === undefined) return;
    if (stats.isDirectory()) {
      for (const name of await readdir(path)) await visit(join(path, name));
      return;
    }
    if (!stats.isFile()) return;
    const handle = await open(path, 'r');
    try {
      for (;;) {
        const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, null);
        if (bytesRead === 0) break;
        totalBytes += bytesRead;
      }
    } finally {
      await handle.close();
    }
  };
  for (const path of paths) await visit(path);
  return totalBytes;
}
