/**
 * ReceiveQueue: the bytes a socket delivered that the parser has not consumed yet, read out in
 * exact amounts straight into the caller's buffer (a request header, a write payload).
 *
 * The socket reads into buffers this queue picks (Node's `onread` socket option), not into a
 * fresh Buffer per 64 KiB chunk behind a 'data' event: while a read waits with nothing queued,
 * the kernel copies straight into the waiting buffer (a write payload lands in its pooled
 * buffer with one kernel copy and reads as large as the socket holds); otherwise bytes land in
 * a per-connection staging buffer and are copied out from there.
 *
 * Invariants:
 * - At most one read is waiting at a time (the parser is a single sequential loop).
 * - The buffer handed to the socket for its next read never holds queued bytes, and a direct
 *   one is the waiting read's unfilled rest, so a read can neither overwrite nor overshoot.
 * - Bytes buffered beyond what the waiting read needs never exceed RECEIVE_QUEUE_BYTES_MAX
 *   plus one socket read: past that the socket is paused until the parser catches up.
 * - Once the socket ends or fails, a read that the bytes already queued cannot satisfy
 *   rejects with `ClosedError`.
 */
import { Socket } from 'node:net';
import { assert } from '../assert.js';
import { RECEIVE_QUEUE_BYTES_MAX } from './protocol.js';

/** Largest read into the staging buffer. */
const STAGE_READ_BYTES = RECEIVE_QUEUE_BYTES_MAX;
/** Queued bytes are below RECEIVE_QUEUE_BYTES_MAX plus one read, so compacted they leave room. */
const STAGE_BYTES = RECEIVE_QUEUE_BYTES_MAX + 2 * STAGE_READ_BYTES;
/** A waiting read at least this large is read into directly; smaller ones go through the stage. */
const DIRECT_READ_BYTES_MIN = 4096;

/** The peer closed the connection (or it failed) before the bytes asked for arrived. */
export class ClosedError extends Error {
  constructor() {
    super('connection closed');
    this.name = 'ClosedError';
  }
}

/** Node's `onread` socket option (net.connect, new Socket). */
export interface OnRead {
  readonly buffer: () => Buffer;
  readonly callback: (bytes: number, buffer: Buffer) => boolean;
}

interface Waiter {
  target: Buffer | undefined;
  offset: number;
  remaining: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

export class ReceiveQueue {
  /** Pass as the `onread` option of the socket, then attach() it. */
  readonly onread: OnRead;
  #socket: Socket | undefined;
  readonly #stage = Buffer.allocUnsafeSlow(STAGE_BYTES);
  /** Queued bytes are `#stage[#head, #tail)`. */
  #head = 0;
  #tail = 0;
  /** Where the socket's next read lands: `#stage` past `#tail`, or the waiter's target. */
  #next: Buffer;
  #isNextDirect = false;
  #isPaused = false;
  #isClosed = false;
  #waiter: Waiter | undefined;

  constructor() {
    this.#next = this.#stage.subarray(0, STAGE_READ_BYTES);
    this.onread = {
      buffer: () => this.#next,
      callback: (bytes) => this.#receive(bytes),
    };
  }

  /**
   * A server's accepted socket (from a server with `pauseOnConnect`, so nothing was read yet)
   * re-made as a socket whose reads this queue directs. Node offers `onread` only when a
   * socket is made, so the accepted one gives up its handle.
   */
  static adopt(accepted: Socket): { socket: Socket; queue: ReceiveQueue } {
    const holder = accepted as unknown as { _handle: object | null };
    const handle = holder._handle;
    assert(handle !== null, 'accepted socket without a handle');
    holder._handle = null;
    // Without a handle destroy() closes nothing; it lets the server count the connection gone.
    accepted.destroy();
    const queue = new ReceiveQueue();
    const options = { handle, onread: queue.onread, readable: true, writable: true };
    const socket = new Socket(options as ConstructorParameters<typeof Socket>[0]);
    queue.attach(socket);
    return { socket, queue };
  }

  /** Starts taking the socket's bytes; its `onread` must be this queue's. */
  attach(socket: Socket): void {
    assert(this.#socket === undefined);
    this.#socket = socket;
    socket.on('end', () => this.#close());
    socket.on('close', () => this.#close());
    socket.on('error', () => this.#close());
  }

  /** Bytes received and not consumed yet. */
  get queuedBytes(): number {
    return this.#tail - this.#head;
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
      if (this.#isPaused) {
        this.#isPaused = false;
        this.#socket?.resume();
      }
    });
  }

  /** The socket read `bytes` into `#next`. Returns false to pause the socket. */
  #receive(bytes: number): boolean {
    if (this.#isClosed) return false;
    const waiter = this.#waiter;
    if (this.#isNextDirect) {
      assert(waiter !== undefined && bytes <= waiter.remaining);
      waiter.offset += bytes;
      waiter.remaining -= bytes;
    } else {
      this.#tail += bytes;
      assert(this.#tail <= STAGE_BYTES);
      if (waiter !== undefined) this.#drainInto(waiter);
    }
    if (waiter !== undefined && waiter.remaining === 0) {
      this.#waiter = undefined;
      waiter.resolve();
    }
    this.#planNextRead();
    return !this.#isPaused;
  }

  /** Picks where the next read lands, and pauses while enough is queued and nobody waits. */
  #planNextRead(): void {
    const waiter = this.#waiter;
    const queued = this.#tail - this.#head;
    if (queued === 0) {
      this.#head = 0;
      this.#tail = 0;
    }
    if (waiter?.target !== undefined && queued === 0 && waiter.remaining >= DIRECT_READ_BYTES_MIN) {
      this.#next = waiter.target.subarray(waiter.offset, waiter.offset + waiter.remaining);
      this.#isNextDirect = true;
      this.#isPaused = false;
      return;
    }
    if (STAGE_BYTES - this.#tail < STAGE_READ_BYTES) {
      this.#stage.copyWithin(0, this.#head, this.#tail);
      this.#head = 0;
      this.#tail = queued;
    }
    const end = Math.min(STAGE_BYTES, this.#tail + STAGE_READ_BYTES);
    assert(end > this.#tail);
    this.#next = this.#stage.subarray(this.#tail, end);
    this.#isNextDirect = false;
    this.#isPaused = waiter === undefined && queued >= RECEIVE_QUEUE_BYTES_MAX;
  }

  /** Moves queued bytes into the waiter as far as both go. */
  #drainInto(waiter: Waiter): void {
    const taken = Math.min(this.#tail - this.#head, waiter.remaining);
    if (taken === 0) return;
    if (waiter.target !== undefined) {
      this.#stage.copy(waiter.target, waiter.offset, this.#head, this.#head + taken);
    }
    waiter.offset += taken;
    waiter.remaining -= taken;
    this.#head += taken;
    assert(this.#head <= this.#tail);
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
