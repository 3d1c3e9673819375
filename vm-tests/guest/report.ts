/**
 * Guest-side results: one console line per case and one summary line per target, the only
 * lines the host reads from the serial console.
 *
 *   VMTEST-CASE <target> PASS|FAIL <ms> <name> [| detail]
 *   VMTEST-RESULT <target> passed=<n> failed=<m>
 *
 * A case is an async function; it passes when it resolves and fails when it throws or runs
 * past its timeout. Nothing is skipped silently: a case that cannot run fails, saying why.
 */

/** One case of the suite. */
export interface Case {
  readonly name: string;
  readonly timeoutMs: number;
  readonly run: () => Promise<void>;
}

export class Report {
  private passed = 0;
  private failed = 0;

  constructor(readonly target: string) {}

  /** Runs `cases` in order; a failure does not stop the ones after it. */
  async runAll(cases: readonly Case[]): Promise<void> {
    for (const each of cases) await this.runCase(each);
  }

  async runCase(each: Case): Promise<boolean> {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timed out after ${each.timeoutMs} ms`)),
        each.timeoutMs,
      );
    });
    try {
      await Promise.race([each.run(), deadline]);
      this.record(each.name, true, Date.now() - started, '');
      return true;
    } catch (error) {
      const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
      this.record(each.name, false, Date.now() - started, detail);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Records a result computed elsewhere (the host tests run by vitest in the guest). */
  record(name: string, isPass: boolean, elapsedMs: number, detail: string): void {
    if (isPass) this.passed++;
    else this.failed++;
    const oneLine = detail.replace(/\s*\n\s*/g, ' | ').slice(0, 2000);
    const verdict = isPass ? 'PASS' : 'FAIL';
    process.stdout.write(
      `VMTEST-CASE ${this.target} ${verdict} ${elapsedMs} ${name}${oneLine === '' ? '' : ` | ${oneLine}`}\n`,
    );
  }

  /** Prints the summary line; the exit code for the guest. */
  finish(): number {
    process.stdout.write(
      `VMTEST-RESULT ${this.target} passed=${this.passed} failed=${this.failed}\n`,
    );
    return this.failed === 0 && this.passed > 0 ? 0 : 1;
  }
}

/** Throws `message` unless `condition` holds. */
export function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(message);
}
