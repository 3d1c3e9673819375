/**
 * `npm run vm-test [-- TARGET...]`: the VM suite. Targets: kmod, fuse, fuse-host, nbd, blk
 * (default: all).
 *
 * 1. Builds or reuses the Rust-enabled kernel and builds the module (vm-tests/kernel/build.sh;
 *    cached under /var/cache/shmr-vm, keyed by source version, config and toolchain).
 * 2. Builds or reuses the guest initramfs (vm-tests/guest/mkinitramfs.sh) and the static
 *    ioctl helper.
 * 3. Boots one qemu per target, with no network (-nic none): the repository is shared
 *    read-only over 9p, shmr runs inside the guest (its NBD server on a Unix socket there).
 *    Each boot has a wall-clock deadline; the serial console is kept per target.
 * 4. Prints per target `TARGET: N passed, M failed (T s)` and exits non-zero on any failure,
 *    on a guest that hangs (deadline) and on a guest that ends without its result line.
 *
 * KVM is used only when the host has a VMX/SVM KVM module (kvm_intel, kvm_amd); elsewhere
 * (PVM hosts included, where stock kernels do not boot under KVM) qemu runs TCG. Override
 * with SHMR_VM_ACCEL=tcg|kvm.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CACHE = process.env['SHMR_VM_CACHE'] ?? '/var/cache/shmr-vm';
const TARGETS = ['kmod', 'fuse', 'fuse-host', 'nbd', 'blk'] as const;
type Target = (typeof TARGETS)[number];
/**
 * Wall-clock deadline of each boot, TCG on two busy cores included (measured on two cores:
 * kmod 1-2 min, fuse 6-16 min, nbd 1-3 min, blk 1-2 min). SHMR_VM_DEADLINE_S sets one for all.
 */
const DEADLINE_OVERRIDE_MS = Number(process.env['SHMR_VM_DEADLINE_S'] ?? 0) * 1000;
const DEADLINE_MS: Record<Target, number> = {
  kmod: DEADLINE_OVERRIDE_MS || 15 * 60_000,
  fuse: DEADLINE_OVERRIDE_MS || 40 * 60_000,
  'fuse-host': DEADLINE_OVERRIDE_MS || 40 * 60_000,
  nbd: DEADLINE_OVERRIDE_MS || 15 * 60_000,
  blk: DEADLINE_OVERRIDE_MS || 15 * 60_000,
};
const GUEST_MEMORY = process.env['SHMR_VM_MEMORY'] ?? '2048M';
/** Guests running at once: 2 (fuse beside the rest) unless SHMR_VM_LANES=1. */
const LANES = process.env['SHMR_VM_LANES'] === '1' ? 1 : 2;
/**
 * The host's mount tests (userspace/test/mount/NAME.test.ts) run in the guest, dealt over two
 * boots so that each lane carries about half of the run (under TCG they are most of it):
 * `fuse` runs its own cases and then these, `fuse-host` only these.
 */
const HOST_TESTS: Partial<Record<Target, string>> = {
  fuse: process.env['SHMR_VM_HOST_TESTS'] ?? 'data,errors',
  'fuse-host': process.env['SHMR_VM_HOST_TESTS_2'] ?? 'posix,topology',
};

interface Outcome {
  target: Target;
  passed: number;
  failed: number;
  seconds: number;
  failures: string[];
  notes: string[];
  problem: string;
  consolePath: string;
}

function log(message: string): void {
  process.stdout.write(`[vm-test ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** Runs a build step with its stderr shown; returns stdout. */
function step(what: string, command: string, args: string[]): { stdout: string; seconds: number } {
  const started = Date.now();
  const result = spawnSync(command, args, {
    cwd: REPO,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  const seconds = (Date.now() - started) / 1000;
  if (result.status !== 0) throw new Error(`${what} failed (exit ${String(result.status)})`);
  log(`${what}: ${seconds.toFixed(1)} s`);
  return { stdout: result.stdout, seconds };
}

function keyValues(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^([A-Z_]+)=(.*)$/.exec(line);
    if (match?.[1] !== undefined && match[2] !== undefined) values[match[1]] = match[2];
  }
  return values;
}

/** The static ioctl helper, cached by its source. */
function buildHelper(): string {
  const source = join(REPO, 'vm-tests', 'guest', 'shmr-ioctl.c');
  const header = join(REPO, 'kmod-spec', 'shmr_ioctl.h');
  const key = createHash('sha256')
    .update(readFileSync(source))
    .update(readFileSync(header))
    .digest('hex')
    .slice(0, 16);
  const binary = join(CACHE, `shmr-ioctl-${key}`);
  if (!existsSync(binary))
    step('ioctl helper', 'gcc', ['-O2', '-static', '-Wall', '-o', binary, source]);
  return binary;
}

function accelerator(): string {
  const forced = process.env['SHMR_VM_ACCEL'];
  if (forced !== undefined) return forced;
  const hasVmx = existsSync('/sys/module/kvm_intel') || existsSync('/sys/module/kvm_amd');
  return hasVmx && existsSync('/dev/kvm') ? 'kvm' : 'tcg';
}

/** Boots the guest for `target` and collects its result lines. */
function boot(
  target: Target,
  paths: { bzImage: string; initramfs: string; share: string; runDir: string },
): Promise<Outcome> {
  const consolePath = join(paths.runDir, `${target}.console.log`);
  const console = createWriteStream(consolePath);
  const accel = accelerator();
  const args = [
    '-accel',
    accel,
    '-cpu',
    accel === 'kvm' ? 'host' : 'max',
    '-smp',
    '2',
    '-m',
    GUEST_MEMORY,
    '-display',
    'none',
    '-serial',
    'stdio',
    '-monitor',
    'none',
    '-no-reboot',
    '-nic',
    'none',
    '-kernel',
    paths.bzImage,
    '-initrd',
    paths.initramfs,
    '-append',
    `console=ttyS0 panic=-1 loglevel=4 vmtarget=${target} vmrepo=${REPO}` +
      (HOST_TESTS[target] === undefined ? '' : ` vmhosttests=${HOST_TESTS[target]}`),
    '-virtfs',
    `local,path=${REPO},mount_tag=repo,security_model=none,readonly=on`,
    '-virtfs',
    `local,path=${paths.share},mount_tag=repo-run,security_model=none,readonly=on`,
  ];
  const started = Date.now();
  const outcome: Outcome = {
    target,
    passed: 0,
    failed: 0,
    seconds: 0,
    failures: [],
    notes: [],
    problem: '',
    consolePath,
  };
  return new Promise((resolve) => {
    const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let pending = '';
    let result = false;
    let exitCode: string | undefined;
    const onLine = (line: string): void => {
      const caseMatch = /^VMTEST-CASE \S+ (PASS|FAIL) (\d+) (.*)$/.exec(line);
      if (caseMatch !== null) {
        const [, verdict, ms, rest] = caseMatch;
        log(
          `${target}: ${verdict} ${rest?.split(' | ')[0] ?? ''} (${(Number(ms) / 1000).toFixed(1)} s)`,
        );
        if (verdict === 'FAIL') outcome.failures.push(rest ?? '');
        if (verdict === 'PASS') outcome.passed++;
        else outcome.failed++;
      }
      const resultMatch = /^VMTEST-RESULT \S+ passed=(\d+) failed=(\d+)/.exec(line);
      if (resultMatch !== null) {
        result = true;
        outcome.passed = Number(resultMatch[1]);
        outcome.failed = Number(resultMatch[2]);
      }
      const noteMatch = /^VMTEST-NOTE \S+ (.*)$/.exec(line);
      if (noteMatch?.[1] !== undefined) outcome.notes.push(noteMatch[1]);
      const rcMatch = /^VMTEST-RC=(\d+)/.exec(line);
      if (rcMatch !== null) exitCode = rcMatch[1];
    };
    const onData = (chunk: Buffer): void => {
      console.write(chunk);
      pending += chunk.toString('latin1');
      const lines = pending.split(/\r?\n/);
      pending = lines.pop() ?? '';
      for (const line of lines) onLine(line.replace(/\r$/, ''));
    };
    qemu.stdout.on('data', onData);
    qemu.stderr.on('data', onData);
    const timer = setTimeout(() => {
      outcome.problem = `hung: no power-off within ${DEADLINE_MS[target] / 1000} s (qemu killed)`;
      qemu.kill('SIGKILL');
    }, DEADLINE_MS[target]);
    qemu.once('exit', (code) => {
      clearTimeout(timer);
      console.end();
      outcome.seconds = (Date.now() - started) / 1000;
      if (outcome.problem === '' && !result) {
        outcome.problem = `no result line from the guest (qemu exit ${String(code)}, guest rc ${exitCode ?? 'none'})`;
      }
      // The hang or the missing result line counts as one more failure.
      if (outcome.problem !== '') outcome.failed++;
      resolve(outcome);
    });
  });
}

/** Keeps the console logs of the last RUNS_KEPT runs. */
const RUNS_KEPT = 20;

function pruneRuns(runsDir: string): void {
  if (!existsSync(runsDir)) return;
  const runs = readdirSync(runsDir).sort();
  for (const old of runs.slice(0, Math.max(0, runs.length - RUNS_KEPT + 1))) {
    rmSync(join(runsDir, old), { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const requested = process.argv.slice(2);
  const unknown = requested.filter((name) => !(TARGETS as readonly string[]).includes(name));
  if (unknown.length > 0) {
    process.stderr.write(
      `vm-test: unknown target ${unknown.join(', ')} (targets: ${TARGETS.join(', ')})\n`,
    );
    return 2;
  }
  const targets = (requested.length > 0 ? requested : [...TARGETS]) as Target[];
  mkdirSync(CACHE, { recursive: true });
  const started = Date.now();
  const kernel = keyValues(
    step('kernel + module (vm-tests/kernel/build.sh)', 'bash', [
      join(REPO, 'vm-tests', 'kernel', 'build.sh'),
      'all',
    ]).stdout,
  );
  const helper = buildHelper();
  const initramfs = step('guest initramfs', 'bash', [
    join(REPO, 'vm-tests', 'guest', 'mkinitramfs.sh'),
    REPO,
    CACHE,
  ]).stdout.trim();
  pruneRuns(join(CACHE, 'runs'));
  const runDir = join(CACHE, 'runs', new Date().toISOString().replace(/[:.]/g, '-'));
  const share = join(runDir, 'share');
  mkdirSync(share, { recursive: true });
  const files: [string | undefined, string][] = [
    [kernel['MODULE'], 'shmr.ko'],
    [kernel['MODULE_BADVECTOR'], 'shmr-badvector.ko'],
    [helper, 'shmr-ioctl'],
  ];
  for (const [from, to] of files) {
    if (from === undefined) throw new Error(`the build printed no path for ${to}`);
    copyFileSync(from, join(share, to));
  }
  const bzImage = kernel['BZIMAGE'];
  if (bzImage === undefined) throw new Error('the build printed no BZIMAGE');
  log(
    `build and cache checks: ${((Date.now() - started) / 1000).toFixed(1)} s; kernel ${kernel['KERNEL_VERSION'] ?? '?'}, ` +
      `accelerator ${accelerator()}; console logs in ${runDir}`,
  );
  const paths = { bzImage, initramfs, share, runDir };
  const bootAll = async (lane: readonly Target[]): Promise<Outcome[]> => {
    const done: Outcome[] = [];
    for (const target of lane) {
      log(`${target}: booting`);
      done.push(await boot(target, paths));
    }
    return done;
  };
  // Two lanes: the fuse target (the long one) boots beside the others, which end with the
  // second share of the host's mount tests. SHMR_VM_LANES=1: one after another.
  const lanes: Target[][] = LANES === 1
    ? [targets]
    : [targets.filter((target) => target === 'fuse'), targets.filter((target) => target !== 'fuse')];
  const finished = (await Promise.all(lanes.map(bootAll))).flat();
  const outcomes = targets.map((target) => finished.find((outcome) => outcome.target === target))
    .filter((outcome): outcome is Outcome => outcome !== undefined);
  process.stdout.write('\n');
  for (const outcome of outcomes) {
    process.stdout.write(
      `${outcome.target.toUpperCase()}: ${outcome.passed} passed, ${outcome.failed} failed (${outcome.seconds.toFixed(0)} s)\n`,
    );
    for (const failure of outcome.failures)
      process.stdout.write(`  FAIL ${failure.slice(0, 1500)}\n`);
    for (const note of outcome.notes) process.stdout.write(`  note: ${note}\n`);
    if (outcome.problem !== '')
      process.stdout.write(`  ${outcome.problem}; console: ${outcome.consolePath}\n`);
  }
  process.stdout.write(`total: ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  return outcomes.every((outcome) => outcome.failed === 0 && outcome.passed > 0) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`vm-test: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
