/**
 * A one-line progress bar on a terminal (stderr); silent when stderr is not a terminal.
 */
export class ProgressBar {
  readonly #label: string;
  readonly #isTerminal = process.stderr.isTTY === true;
  #lastDrawMs = 0;

  constructor(label: string) {
    this.#label = label;
  }

  update(done: number, total: number, detail = ''): void {
    if (!this.#isTerminal) return;
    const nowMs = Date.now();
    if (nowMs - this.#lastDrawMs < 100 && done < total) return;
    this.#lastDrawMs = nowMs;
    const width = 30;
    const fraction = total > 0 ? Math.min(1, done / total) : 1;
    const filled = Math.round(fraction * width);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
    process.stderr.write(`\r${this.#label} [${bar}] ${(fraction * 100).toFixed(0)}% ${done}/${total} ${detail}`);
  }

  finish(): void {
    if (this.#isTerminal) process.stderr.write('\n');
  }
}
