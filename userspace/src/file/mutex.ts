/**
 * Mutex: an async lock. Node runs one thread, but every `await` lets another request run;
 * a Mutex keeps a multi-step change (truncate, fsync) from interleaving with another.
 */
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  /** Runs `body` when every earlier holder has finished; returns its result. */
  async run<T>(body: () => Promise<T>): Promise<T> {
    const previous = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      await previous;
      return await body();
    } finally {
      release();
    }
  }
}
