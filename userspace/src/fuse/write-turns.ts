/**
 * WriteTurns: large WRITE requests run one per event-loop turn, after the requests that
 * arrived in the same batch from /dev/fuse.
 *
 * Why: the kernel hands requests over in the order it queued them, and during a large write
 * (with the write-back cache) dozens of 1 MiB WRITEs sit ahead of any small READ. Each costs the
 * request thread a copy of its bytes into the block cache (about 0.1 ms per MiB). Run at once,
 * a READ behind 30 of them waited for all 30 copies; taken out of the batch and run one per turn
 * (setImmediate: the loop polls /dev/fuse again between two of them), a READ waits for the
 * kernel's hand-over of the WRITEs ahead of it and at most one copy.
 *
 * Order: writes run in arrival order, and a write that arrives while others wait here waits
 * too, small or not, so no write overtakes an earlier one. Requests of other kinds may overtake
 * a waiting write: the kernel sends nothing that must see a write's bytes (a READ of its range,
 * FLUSH, FSYNC, a truncate) before that write was answered, and the write is answered after it
 * ran. The queue is bounded by the kernel: it sends at most max_background writes at once.
 */
import { assert } from '../assert.js';

/** Writes at least this large wait for their turn; smaller ones cost less than the turn. */
export const WRITE_TURN_BYTES_MIN = 256 * 1024;

/** More writes waiting than the kernel can send at once is a bug (see mount.ts maxBackground). */
const WAITING_MAX = 4096;

export class WriteTurns {
  readonly #waiting: (() => void)[] = [];
  #head = 0;
  #isScheduled = false;

  /** False for a write to run at once: a small one while no write waits (the common case). */
  mustWait(bytes: number): boolean {
    return bytes >= WRITE_TURN_BYTES_MIN || this.#head !== this.#waiting.length;
  }

  /** Runs `body` in a later turn, after the writes waiting already. */
  run<T>(body: () => T | Promise<T>): Promise<T> {
    assert(this.#waiting.length - this.#head < WAITING_MAX);
    return new Promise<T>((resolve, reject) => {
      this.#waiting.push(() => {
        try {
          resolve(body());
        } catch (error) {
          reject(error);
        }
      });
      if (!this.#isScheduled) this.#schedule();
    });
  }

  #schedule(): void {
    this.#isScheduled = true;
    setImmediate(this.#next);
  }

  readonly #next = (): void => {
    this.#isScheduled = false;
    const turn = this.#waiting[this.#head];
    assert(turn !== undefined);
    this.#head += 1;
    if (this.#head === this.#waiting.length) {
      this.#waiting.length = 0;
      this.#head = 0;
    } else {
      this.#schedule();
    }
    turn();
  };
}
