/**
 * Slots: a counting semaphore for bounding how many async jobs of one kind run at once (shard
 * writes in the thread pool, block stores of one flush).
 */
/** A counting semaphore: at most `countMax` bodies run at once, the rest wait in order. */
export class Slots {
  #running = 0;
  readonly #waiting: (() => void)[] = [];
  constructor(readonly countMax: number) {}

  async run<T>(body: () => Promise<T>): Promise<T> {
    if (this.#running >= this.countMax) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#running += 1;
    try {
      return await body();
    } finally {
      const next = this.#waiting.shift();
      if (next === undefined) this.#running -= 1;
      else next();
    }
  }
}
