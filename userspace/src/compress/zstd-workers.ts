/**
 * ZstdWorkers: zstd compression and decompression on worker threads, so that a big block does
 * not hold the event loop (zstd-napi's calls are synchronous; a 32 MiB block takes tens of
 * milliseconds at level 3).
 *
 * A job's input is copied into a SharedArrayBuffer and the worker writes its output into
 * another one; the copies cost a memcpy on this thread, a small fraction of the (de)compression
 * they move off it.
 *
 * Invariants:
 * - At most ZSTD_WORKERS_MAX threads; each runs one job at a time, in arrival order.
 * - A worker holds the process open only while it has jobs: idle workers are unref'd, so the
 *   daemon exits after unmount without closing them.
 * - A worker that dies fails its pending jobs (they reject) and is replaced on the next job.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { assert } from '../assert.js';

/** Worker threads for zstd. Two: the machine class this runs on has few cores to share. */
export const ZSTD_WORKERS_MAX = 2;

/**
 * The worker's code. It is evaluated (not loaded from a file) so that it runs the same from
 * the TypeScript sources (vitest) and the compiled tree; it loads the binding by absolute path.
 * A compression whose output does not fit the target (it would not shrink) answers -1.
 */
const WORKER_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const binding = require(workerData.bindingPath);
const compressor = new binding.CCtx();
const decompressor = new binding.DCtx();
parentPort.on('message', (job) => {
  const source = new Uint8Array(job.source, 0, job.sourceBytes);
  const target = new Uint8Array(job.target, 0, job.targetBytes);
  try {
    const bytes = job.isCompress
      ? compressor.compress(target, source, job.level)
      : decompressor.decompress(target, source);
    parentPort.postMessage({ id: job.id, bytes, message: '' });
  } catch (error) {
    parentPort.postMessage({ id: job.id, bytes: -1, message: String(error && error.message) });
  }
});
`;

/** One (de)compression request. `source` and `target` are SharedArrayBuffer-backed. */
export interface ZstdJob {
  readonly isCompress: boolean;
  readonly level: number;
  readonly source: SharedArrayBuffer;
  readonly sourceBytes: number;
  readonly target: SharedArrayBuffer;
  readonly targetBytes: number;
}

/** What a worker answered: bytes written into the target, or -1 and the library's message. */
export interface ZstdResult {
  readonly bytes: number;
  readonly message: string;
}

interface Pending {
  readonly resolve: (result: ZstdResult) => void;
  readonly reject: (error: Error) => void;
}

interface WorkerSlot {
  readonly worker: Worker;
  readonly pending: Map<number, Pending>;
}

export class ZstdWorkers {
  readonly #slots: WorkerSlot[] = [];
  readonly #bindingPath = createRequire(import.meta.url).resolve('zstd-napi/binding');
  #nextId = 0;

  /** Runs one job on the least busy worker. */
  run(job: ZstdJob): Promise<ZstdResult> {
    assert(job.sourceBytes <= job.source.byteLength);
    assert(job.targetBytes <= job.target.byteLength);
    const slot = this.#pick();
    const id = this.#nextId++;
    return new Promise<ZstdResult>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      if (slot.pending.size === 1) slot.worker.ref();
      slot.worker.postMessage({ id, ...job });
    });
  }

  #pick(): WorkerSlot {
    if (this.#slots.length < ZSTD_WORKERS_MAX) {
      const idle = this.#slots.find((slot) => slot.pending.size === 0);
      if (idle !== undefined) return idle;
      return this.#start();
    }
    let best = this.#slots[0];
    assert(best !== undefined);
    for (const slot of this.#slots) if (slot.pending.size < best.pending.size) best = slot;
    return best;
  }

  #start(): WorkerSlot {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { bindingPath: this.#bindingPath } });
    const slot: WorkerSlot = { worker, pending: new Map() };
    worker.unref();
    worker.on('message', (reply: { id: number; bytes: number; message: string }) => {
      const waiting = slot.pending.get(reply.id);
      assert(waiting !== undefined);
      slot.pending.delete(reply.id);
      if (slot.pending.size === 0) worker.unref();
      waiting.resolve({ bytes: reply.bytes, message: reply.message });
    });
    const fail = (error: Error) => {
      const index = this.#slots.indexOf(slot);
      if (index >= 0) this.#slots.splice(index, 1);
      for (const waiting of slot.pending.values()) waiting.reject(error);
      slot.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`zstd worker exited with code ${code}`)));
    this.#slots.push(slot);
    return slot;
  }
}
