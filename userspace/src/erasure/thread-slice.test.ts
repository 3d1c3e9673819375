/**
 * setThreadSlice: the calling thread's fair-scheduler slice (sched_setattr's sched_runtime).
 *
 * Method: in a child process (the slice stays with the thread that set it), set a slice and
 * read it back from /proc/thread-self/sched, where the kernel reports it (se.slice); kernels
 * before 6.12 ignore slices, and the call must say so (false) rather than claim it. Arguments
 * outside the kernel's range are refused with errors naming them.
 */
import { execFileSync } from 'node:child_process';
import { release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { setThreadSlice } from './index.js';

const ADDON_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'isal', 'build', 'Release', 'shmr_isal.node');

/** Whether this kernel takes per-task slices (EEVDF custom slices came with Linux 6.12). */
function kernelTakesSlices(): boolean {
  const [major = 0, minor = 0] = release().split('.').map((part) => Number.parseInt(part, 10));
  return major > 6 || (major === 6 && minor >= 12);
}

describe('setThreadSlice', () => {
  it('sets the calling thread\'s slice where the kernel takes one, and says when it does not', () => {
    const output = execFileSync(process.execPath, ['-e', `
      const isal = require(${JSON.stringify(ADDON_PATH)});
      const taken = isal.setThreadSlice(250000);
      // The kernel reports the slice there when built with CONFIG_SCHED_DEBUG (Debian's is).
      const fs = require('node:fs');
      const sched = fs.existsSync('/proc/thread-self/sched') ? fs.readFileSync('/proc/thread-self/sched', 'utf8') : '';
      const slice = /^se\\.slice\\s*:\\s*(\\d+)/m.exec(sched);
      console.log(taken, slice === null ? 'none' : slice[1]);`], { encoding: 'utf8' });
    const [taken, slice] = output.trim().split(' ');
    expect(taken).toBe(String(kernelTakesSlices()));
    if (kernelTakesSlices() && slice !== 'none') expect(slice).toBe('250000');
  });

  it('refuses slices outside the kernel\'s range, and what is not a number', () => {
    expect(() => setThreadSlice(99_999)).toThrow(/nanoseconds must be an integer from 100000 to 100000000, got 99999/);
    expect(() => setThreadSlice(1e9)).toThrow(RangeError);
    expect(() => setThreadSlice('1' as unknown as number)).toThrow(/nanoseconds must be a number/);
  });
});
