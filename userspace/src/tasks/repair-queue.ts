/**
 * RepairQueue: blocks that a read found damaged (and worked around), repaired in the
 * background at a bounded pace so that full redundancy comes back without waiting for a scrub.
 *
 * Invariants: the queue holds at most QUEUED_BLOCKS_MAX blocks (further ones are left to
 * scrub); a block is repaired only if it is still the same generation as when it was queued.
 */
import { FsError } from '../errno.js';
import { log } from '../log.js';
import type { BlockRecord } from '../meta/index.js';
import { repairBlock, type ScrubTarget } from './scrub.js';

const QUEUED_BLOCKS_MAX = 10_000;
const REPAIRS_PER_DRAIN_MAX = 16;

export class RepairQueue {
  readonly #target: ScrubTarget;
  readonly #queued = new Map<string, BlockRecord>();
  #isDraining = false;
  repairedCount = 0;

  constructor(target: ScrubTarget) {
    this.#target = target;
  }

  add(block: BlockRecord): void {
    if (this.#queued.size >= QUEUED_BLOCKS_MAX) return;
    this.#queued.set(`${block.ino}:${block.blockIndex}`, block);
  }

  get size(): number {
    return this.#queued.size;
  }

  /** Repairs up to REPAIRS_PER_DRAIN_MAX queued blocks. */
  async drain(): Promise<void> {
    if (this.#isDraining) return;
    this.#isDraining = true;
    try {
      for (const [key, block] of [...this.#queued].slice(0, REPAIRS_PER_DRAIN_MAX)) {
        this.#queued.delete(key);
        const current = this.#target.meta.getBlock(block.ino, block.blockIndex);
        if (current?.generation !== block.generation) continue;
        try {
          if (await repairBlock(this.#target, current)) {
            this.repairedCount += 1;
            log.info(`repaired ${this.#target.meta.pathOf(block.ino)} block ${block.blockIndex}`);
          }
        } catch (error) {
          if (!(error instanceof FsError)) throw error;
          log.error(`cannot repair ${this.#target.meta.pathOf(block.ino)} block ${block.blockIndex}: ${error.message}`);
        }
      }
    } finally {
      this.#isDraining = false;
    }
  }
}
