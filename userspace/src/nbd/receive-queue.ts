/**
 * ReceiveQueue: the bytes a socket delivered that the parser has not consumed yet, read out in
 * exact amounts straight into the caller's buffer (a request header, a write payload), so a
 * payload is copied once, from the socket's chunks into its pooled buffer.
 *
 * Invariants:
 * - At most one read is waiting at a time (the parser is a single sequential loop).
 * - Bytes buffered beyond what the waiting read needs never exceed RECEIVE_QUEUE_BYTES_MAX
 *   plus one socket chunk: past that the socket is paused until the parser catches up.
 * - Once the socket ends or fails, a read that the bytes already queued cannot satisfy
 *   rejects with `ClosedError`.
 */
import type { Socket } from 'node:net';
import { assert } from '../assert.js';
import { RECEIVE_QUEUE_BYTES_MAX } from './protocol.js';

/** The peer closed the connection (or it failed) before the bytes asked for arrived. */
export class ClosedError extends Error {
  constructor() {
    super('connection closed');
    this.name = 'ClosedError';
  }
}

interface Waiter {
  target: Buffer | undefined;
  offset: number;
  remaining: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

export class ReceiveQueue {
  readonly #socket: Socket;
  readonly #chunks: Buffer[] = [];
  /** Bytes of `#chunks[0]` already consumed. */
  #head = 0;
  #queuedBytes = 0;
  #isPaused = false;
  #isClosed = false;
  #waiter: Waiter | undefined;

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('end', () => this.#close());
    socket.on('close', () => this.#close());
    socket.on('error', () => this.#close());
  }

  /** Bytes received and not consumed yet. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Copies exactly `bytes` received bytes into `target` at `offset`. */
  read(target: Buffer, offset: number, bytes: number): Promise<void> {
    assert(offset >= 0 && bytes >= 0);
    assert(offset + bytes <= target.byteLength);
    return this.#start(target, offset, bytes);
  }

  /** Consumes and discards exactly `bytes` received bytes. */
  skip(bytes: number): Promise<void> {
    assert(bytes >= 0);
    return this.#start(undefined, 0, bytes);
  }

  #start(target: Buffer | undefined, offset: number, bytes: number): Promise<void> {
    assert(this.#waiter === undefined, 'one read at a time');
    const waiter: Waiter = {
      target, offset, remaining: bytes, resolve: () => undefined, reject: () => undefined,
    };
    this.#drainInto(waiter);
    if (waiter.remaining === 0) return Promise.resolve();
    if (this.#isClosed) return Promise.reject(new ClosedError());
    return new Promise((resolve, reject) => {
      waiter.resolve = resolve;
      waiter.reject = reject;
      this.#waiter = waiter;
      this.#updateFlow();
    });
  }

  #receive(chunk: Buffer): void {
    if (this.#isClosed) return;
    this.#chunks.push(chunk);
    this.#queuedBytes += chunk.byteLength;
    const waiter = this.#waiter;
    if (waiter !== undefined) {
      this.#drainInto(waiter);
      if (waiter.remaining === 0) {
        this.#waiter = undefined;
        waiter.resolve();
      }
    }
    this.#updateFlow();
  }

  /** Moves queued bytes into the waiter as far as both go. */
  #drainInto(waiter: Waiter): void {
    while (waiter.remaining > 0 && this.#chunks.length > 0) {
      const chunk = this.#chunks[0];
      assert(chunk !== undefined);
      const available = chunk.byteLength - this.#head;
      const taken = Math.min(available, waiter.remaining);
      if (waiter.target !== undefined) {
        chunk.copy(waiter.target, waiter.offset, this.#head, this.#head + taken);
      }
      waiter.offset += taken;
      waiter.remaining -= taken;
      this.#queuedBytes -= taken;
      this.#head += taken;
      if (this.#head === chunk.byteLength) {
        this.#chunks.shift();
        this.#head = 0;
      }
    }
    assert(this.#queuedBytes >= 0);
  }

  /** Pauses the socket while enough is buffered and nobody waits; resumes otherwise. */
  #updateFlow(): void {
    if (this.#isClosed) return;
    const shouldPause = this.#waiter === undefined && this.#queuedBytes >= RECEIVE_QUEUE_BYTES_MAX;
    if (shouldPause && !this.#isPaused) {
      this.#socket.pause();
      this.#isPaused = true;
    } else if (!shouldPause && this.#isPaused) {
      this.#socket.resume();
      this.#isPaused = false;
    }
  }

  /** No more bytes will come: bytes already queued stay readable, a read wanting more fails. */
  #close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(new ClosedError());
  }
}
