/**
 * NbdConnection: one NBD client, from the greeting to the close. The handshake (handshake.ts)
 * chooses an export; then requests are read one after the other and served concurrently, and
 * each is answered as soon as it completes, so replies may leave in another order.
 *
 * Invariants:
 * - Client input is validated, never asserted: a malformed request gets an error reply; only
 *   what the stream cannot resync from (a bad magic, a WRITE payload too large to skip)
 *   closes the connection.
 * - Every request gets exactly one reply (DISC: none), written with one socket write, so
 *   replies of concurrent requests never interleave.
 * - At most REQUESTS_IN_FLIGHT_MAX requests (a write stored behind its reply counts until
 *   stored) and IN_FLIGHT_BYTES_MAX payload bytes are held at once; beyond that the socket is
 *   not read (backpressure reaches the client through TCP or the Unix socket). A write's
 *   reply being sent as its store goes on may exceed the count by one per such reply.
 * - The export is released once, after the last request in flight completed.
 */
import type { Socket } from 'node:net';
import { assert } from '../assert.js';
import { Errno, FsError } from '../errno.js';
import type { ExportCatalog, NbdExport } from './export.js';
import { Handshake, type Session } from './handshake.js';
import type { PayloadPool } from './payload-pool.js';
import {
  BASE_ALLOCATION_ID, BLOCK_STATUS_EXTENTS_MAX, CHUNK_HEADER_BYTES, COMMAND_FLAGS_ALLOWED,
  HANDSHAKE_TIMEOUT_MS, IN_FLIGHT_BYTES_MAX, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_REQ_ONE, NBD_REPLY_FLAG_DONE, NbdCommand,
  NbdError, NbdReplyType, PAYLOAD_BYTES_MAX, REPLY_HEADROOM_BYTES, REQUEST_BYTES,
  REQUESTS_IN_FLIGHT_MAX, SIMPLE_REPLY_BYTES, WRITE_SKIP_BYTES_MAX, decodeRequest,
  encodeBlockStatusChunk, encodeErrorChunk, nbdErrorOf, writeChunkHeader, writeSimpleReply,
  type Request,
} from './protocol.js';
import { ClosedError, type ReceiveQueue } from './receive-queue.js';

/** What a connection needs from its server. */
export interface ConnectionContext {
  readonly catalog: ExportCatalog;
  readonly payloads: PayloadPool;
  /** One line for the operator: a misbehaving client or a failed operation. */
  readonly report: (message: string) => void;
}

/** An error reply decided before (or instead of) touching the export. */
export interface Refusal {
  readonly error: NbdError;
  readonly message: string;
}

const WRITING_COMMANDS: ReadonlySet<number> = new Set([
  NbdCommand.WRITE, NbdCommand.TRIM, NbdCommand.WRITE_ZEROES,
]);

/**
 * Why a request must be refused before it touches the export (flags, range, read-only,
 * negotiation), or undefined when it may run. The errors are the ones proto.md names.
 */
export function refusalOf(request: Request, session: Session): Refusal | undefined {
  const { type, flags, offsetBytes, lengthBytes } = request;
  const { target, isStructured } = session;
  const refuse = (error: NbdError, message: string): Refusal => ({ error, message });
  const allowed = COMMAND_FLAGS_ALLOWED[type];
  if (allowed === undefined) return refuse(NbdError.EINVAL, `unknown command ${type}`);
  if ((flags & ~allowed) !== 0) {
    return refuse(NbdError.EINVAL, `flags 0x${flags.toString(16)} not valid for command ${type}`);
  }
  if ((flags & NBD_CMD_FLAG_DF) !== 0 && !isStructured) {
    return refuse(NbdError.EINVAL, 'DF without structured replies');
  }
  if (WRITING_COMMANDS.has(type) && target.isReadOnly) {
    return refuse(NbdError.EPERM, `export "${target.name}" is read-only`);
  }
  const commandRefusal = commandRefusalOf(request, session);
  if (commandRefusal !== undefined) return commandRefusal;
  if (offsetBytes + lengthBytes > target.sizeBytes) {
    const isGrowing = type === NbdCommand.WRITE || type === NbdCommand.WRITE_ZEROES;
    return refuse(isGrowing ? NbdError.ENOSPC : NbdError.EINVAL,
      `range ${offsetBytes}+${lengthBytes} beyond the export size ${target.sizeBytes}`);
  }
  return undefined;
}

/** The rules particular to one command. */
function commandRefusalOf(request: Request, session: Session): Refusal | undefined {
  const { type, flags, offsetBytes, lengthBytes } = request;
  switch (type) {
    case NbdCommand.FLUSH:
      if (offsetBytes === 0 && lengthBytes === 0) return undefined;
      return { error: NbdError.EINVAL, message: 'FLUSH with nonzero offset or length' };
    case NbdCommand.READ:
      if (lengthBytes <= PAYLOAD_BYTES_MAX) return undefined;
      return {
        // Structured replies may refuse a large read with EOVERFLOW; simple ones have EINVAL.
        error: session.isStructured ? NbdError.EOVERFLOW : NbdError.EINVAL,
        message: `READ of ${lengthBytes} bytes exceeds ${PAYLOAD_BYTES_MAX}`,
      };
    case NbdCommand.WRITE:
      if (lengthBytes <= PAYLOAD_BYTES_MAX) return undefined;
      return {
        error: NbdError.EINVAL,
        message: `WRITE of ${lengthBytes} bytes exceeds ${PAYLOAD_BYTES_MAX}`,
      };
    case NbdCommand.BLOCK_STATUS:
      if (!session.hasBlockStatus) {
        return { error: NbdError.EINVAL, message: 'no metadata context selected for the export' };
      }
      if (lengthBytes > 0) return undefined;
      return { error: NbdError.EINVAL, message: 'BLOCK_STATUS of zero bytes' };
    case NbdCommand.WRITE_ZEROES:
      if ((flags & NBD_CMD_FLAG_FAST_ZERO) === 0) return undefined;
      if ((flags & NBD_CMD_FLAG_NO_HOLE) === 0) return undefined;
      return { error: NbdError.ENOTSUP, message: 'zeroing without holes is as slow as writing' };
    default:
      return undefined;
  }
}

export class NbdConnection {
  readonly #socket: Socket;
  readonly #queue: ReceiveQueue;
  readonly #context: ConnectionContext;
  readonly #peer: string;
  #phase: 'handshake' | 'transmission' | 'closed' = 'handshake';
  #isShuttingDown = false;
  #inFlightCount = 0;
  #inFlightBytes = 0;
  /** Wakes the request loop when room frees up (in-flight count or bytes). */
  #onRoom: (() => void) | undefined;
  /** Wakes whoever waits for the last request in flight to complete. */
  readonly #onIdle: (() => void)[] = [];
  /** True while replies are being collected for one write (see #batchReplies). */
  #isCorked = false;
  /** Structured replies were negotiated: errors go out as error chunks. */
  #isStructured = false;

  /** `queue` takes the socket's bytes (ReceiveQueue.adopt). */
  constructor(socket: Socket, queue: ReceiveQueue, context: ConnectionContext, peer: string) {
    this.#socket = socket;
    this.#queue = queue;
    this.#context = context;
    this.#peer = peer;
  }

  get phase(): 'handshake' | 'transmission' | 'closed' {
    return this.#phase;
  }

  /** Serves the client until the connection ends. Never rejects. */
  async serve(): Promise<void> {
    const timer = setTimeout(() => {
      if (this.#phase !== 'handshake') return;
      this.#report(`no export chosen within ${HANDSHAKE_TIMEOUT_MS / 1000} s, closing`);
      this.#socket.destroy();
    }, HANDSHAKE_TIMEOUT_MS);
    let session: Session | undefined;
    try {
      const end = await new Handshake(this.#socket, this.#queue, this.#context.catalog).run();
      clearTimeout(timer);
      if (end.kind === 'hang-up') {
        this.#report(`${end.reason}; closing`);
        this.#socket.destroy();
      } else if (end.kind === 'abort') {
        this.#socket.end();
      } else {
        session = end.session;
        this.#isStructured = session.isStructured;
        this.#phase = 'transmission';
        await this.#transmit(session);
      }
    } catch (error) {
      if (!(error instanceof ClosedError)) this.#report(`connection failed: ${describe(error)}`);
      this.#socket.destroy();
    } finally {
      clearTimeout(timer);
      await this.#idle();
      session?.target.release();
      this.#phase = 'closed';
    }
  }

  /**
   * Server shutdown: requests arriving from now on get ESHUTDOWN, those in flight complete,
   * then the connection is closed.
   */
  async shutDown(): Promise<void> {
    this.#isShuttingDown = true;
    if (this.#phase === 'transmission') await this.#idle();
    this.#socket.destroy();
  }

  async #transmit(session: Session): Promise<void> {
    const header = Buffer.alloc(REQUEST_BYTES);
    for (;;) {
      await this.#room(0);
      await this.#queue.read(header, 0, REQUEST_BYTES);
      const request = decodeRequest(header);
      if (request === undefined) {
        this.#report('bad request magic; closing');
        this.#socket.destroy();
        return;
      }
      if (request.type === NbdCommand.DISC) {
        await this.#idle();
        this.#socket.end();
        return;
      }
      const refusal = this.#isShuttingDown
        ? { error: NbdError.ESHUTDOWN, message: 'the server is shutting down' }
        : refusalOf(request, session);
      if (request.type === NbdCommand.WRITE) {
        const isClosing = await this.#receiveWrite(session, request, refusal);
        if (isClosing) return;
        continue;
      }
      const isRead = request.type === NbdCommand.READ && refusal === undefined;
      const replyBytes = isRead ? request.lengthBytes : 0;
      await this.#room(replyBytes);
      this.#begin(replyBytes);
      void this.#run(session, request, refusal);
    }
  }

  /**
   * Reads a WRITE's payload (or skips a refused one) and starts it. Returns true when the
   * payload is too large to skip and the connection was closed.
   */
  async #receiveWrite(
    session: Session,
    request: Request,
    refusal: Refusal | undefined,
  ): Promise<boolean> {
    const payloadBytes = request.lengthBytes;
    if (refusal !== undefined) {
      if (payloadBytes > WRITE_SKIP_BYTES_MAX) {
        this.#report(`refused WRITE of ${payloadBytes} bytes is too large to skip; closing`);
        this.#socket.destroy();
        return true;
      }
      await this.#queue.skip(payloadBytes);
      await this.#room(0);
      this.#begin(0);
      this.#sendStatus(request, refusal, 0);
      return false;
    }
    await this.#room(payloadBytes);
    this.#begin(payloadBytes);
    const payload = this.#context.payloads.acquire(payloadBytes);
    try {
      await this.#queue.read(payload, 0, payloadBytes);
    } catch (error) {
      this.#context.payloads.release(payload);
      this.#end(payloadBytes);
      throw error;
    }
    void this.#runWrite(session.target, request, payload);
    return false;
  }

  /**
   * WRITE: replied to once the export has taken the bytes. The payload buffer goes back to
   * the pool when the export releases it; a store still running behind the reply counts as
   * one more request in flight, holding the payload's bytes.
   */
  async #runWrite(target: NbdExport, request: Request, payload: Buffer): Promise<void> {
    const payloadBytes = request.lengthBytes;
    let outcome: Refusal | undefined;
    let released: Promise<void> | undefined;
    try {
      ({ released } = await target.write(request.offsetBytes, payload.subarray(0, payloadBytes)));
      // flush() covers the stores still running behind this write.
      if ((request.flags & NBD_CMD_FLAG_FUA) !== 0) await target.flush();
    } catch (error) {
      outcome = this.#failure(error, request);
    }
    if (released === undefined) {
      this.#context.payloads.release(payload);
      this.#sendStatus(request, outcome, payloadBytes);
      return;
    }
    this.#begin(0);
    this.#sendStatus(request, outcome, 0);
    await released;
    this.#context.payloads.release(payload);
    this.#end(payloadBytes);
  }

  /** Serves a request other than WRITE and DISC, and replies. */
  async #run(session: Session, request: Request, refusal: Refusal | undefined): Promise<void> {
    if (refusal !== undefined) {
      this.#sendStatus(request, refusal, 0);
      return;
    }
    const { target } = session;
    const { type, flags, offsetBytes, lengthBytes } = request;
    try {
      if (type === NbdCommand.READ) {
        await this.#read(session, request);
        return;
      }
      if (type === NbdCommand.BLOCK_STATUS) {
        const extentsMax = (flags & NBD_CMD_FLAG_REQ_ONE) !== 0 ? 1 : BLOCK_STATUS_EXTENTS_MAX;
        const extents = await target.blockStatus(offsetBytes, lengthBytes, extentsMax);
        assert(extents.length > 0 && extents.length <= extentsMax);
        const chunk = encodeBlockStatusChunk(request.cookie, BASE_ALLOCATION_ID, extents);
        this.#sendBuffer(chunk, 0);
        return;
      }
      if (type === NbdCommand.FLUSH) await target.flush();
      if (type === NbdCommand.TRIM && lengthBytes > 0) await target.trim(offsetBytes, lengthBytes);
      if (type === NbdCommand.WRITE_ZEROES && lengthBytes > 0) {
        const mayPunch = (flags & NBD_CMD_FLAG_NO_HOLE) === 0;
        await target.zero(offsetBytes, lengthBytes, { mayPunch });
      }
      // CACHE is a hint: the block cache fills on reads anyway.
      const isWriting = type === NbdCommand.TRIM || type === NbdCommand.WRITE_ZEROES;
      if (isWriting && (flags & NBD_CMD_FLAG_FUA) !== 0) await target.flush();
      this.#sendStatus(request, undefined, 0);
    } catch (error) {
      const heldBytes = type === NbdCommand.READ ? lengthBytes : 0;
      this.#sendStatus(request, this.#failure(error, request), heldBytes);
    }
  }

  /** READ: the data lands right behind its reply header and goes out in one write. */
  async #read(session: Session, request: Request): Promise<void> {
    const { cookie, offsetBytes, lengthBytes } = request;
    if (session.isStructured && lengthBytes === 0) {
      const buffer = Buffer.alloc(CHUNK_HEADER_BYTES);
      const type = NbdReplyType.NONE;
      writeChunkHeader(buffer, 0, { flags: NBD_REPLY_FLAG_DONE, type, cookie, payloadBytes: 0 });
      this.#sendBuffer(buffer, 0);
      return;
    }
    // Owned here until the read fails, then by the socket write (released in its callback).
    const buffer = this.#context.payloads.acquire(lengthBytes);
    const headerBytes = session.isStructured ? CHUNK_HEADER_BYTES + 8 : SIMPLE_REPLY_BYTES;
    const start = REPLY_HEADROOM_BYTES - headerBytes;
    const end = REPLY_HEADROOM_BYTES + lengthBytes;
    try {
      const target = buffer.subarray(REPLY_HEADROOM_BYTES, end);
      await session.target.read(offsetBytes, lengthBytes, target);
    } catch (error) {
      this.#context.payloads.release(buffer);
      throw error;
    }
    if (session.isStructured) {
      const payloadBytes = 8 + lengthBytes;
      const type = NbdReplyType.OFFSET_DATA;
      writeChunkHeader(buffer, start, { flags: NBD_REPLY_FLAG_DONE, type, cookie, payloadBytes });
      buffer.writeBigUInt64BE(BigInt(offsetBytes), start + CHUNK_HEADER_BYTES);
    } else {
      writeSimpleReply(buffer, start, 0, cookie);
    }
    this.#sendPooled(buffer, start, end, lengthBytes);
  }

  /** The error reply for an operation that threw. */
  #failure(error: unknown, request: Request): Refusal {
    const errno = (error as { errno?: unknown } | null)?.errno;
    const isErrno = typeof errno === 'number' && Number.isInteger(errno) && errno > 0;
    if (error instanceof FsError || isErrno) {
      const message = error instanceof Error ? error.message : String(error);
      if (errno === Errno.EIO) {
        this.#report(`command ${request.type} at ${request.offsetBytes}: ${message}`);
      }
      return { error: nbdErrorOf(errno as number), message };
    }
    // Not an expected failure: a bug. The request fails with EIO and serving goes on, as in
    // the FUSE binding; the stack goes to the log.
    this.#report(`bug in command ${request.type}: ${describe(error)}`);
    return { error: NbdError.EIO, message: 'internal error' };
  }

  /** A reply without data: success, or the error (structured when negotiated). */
  #sendStatus(request: Request, outcome: Refusal | undefined, heldBytes: number): void {
    if (outcome !== undefined && this.#isStructured) {
      const chunk = encodeErrorChunk(request.cookie, outcome.error, outcome.message);
      this.#sendBuffer(chunk, heldBytes);
      return;
    }
    // writeSimpleReply fills all 16 bytes.
    const buffer = Buffer.allocUnsafe(SIMPLE_REPLY_BYTES);
    writeSimpleReply(buffer, 0, outcome?.error ?? 0, request.cookie);
    this.#sendBuffer(buffer, heldBytes);
  }

  #sendBuffer(buffer: Buffer, heldBytes: number): void {
    this.#batchReplies();
    this.#socket.write(buffer, () => this.#end(heldBytes));
  }

  #sendPooled(buffer: Buffer, start: number, end: number, heldBytes: number): void {
    this.#batchReplies();
    this.#socket.write(buffer.subarray(start, end), () => {
      this.#context.payloads.release(buffer);
      this.#end(heldBytes);
    });
  }

  /**
   * Replies finishing in the same turn of the event loop go out in one writev: the socket is
   * corked at the first and uncorked once the turn's I/O callbacks have run.
   */
  #batchReplies(): void {
    if (this.#isCorked) return;
    this.#isCorked = true;
    this.#socket.cork();
    setImmediate(() => {
      this.#isCorked = false;
      this.#socket.uncork();
    });
  }

  // ---- in-flight accounting ----

  /** Waits until one more request holding `bytes` fits. */
  async #room(bytes: number): Promise<void> {
    for (;;) {
      const isFull = this.#inFlightCount >= REQUESTS_IN_FLIGHT_MAX;
      if (!isFull && this.#inFlightBytes + bytes <= IN_FLIGHT_BYTES_MAX) return;
      await new Promise<void>((resolve) => {
        this.#onRoom = resolve;
      });
    }
  }

  #begin(bytes: number): void {
    this.#inFlightCount += 1;
    this.#inFlightBytes += bytes;
  }

  /** A request is complete (its reply handed to the socket); releases what it held. */
  #end(heldBytes: number): void {
    this.#inFlightCount -= 1;
    this.#inFlightBytes -= heldBytes;
    assert(this.#inFlightCount >= 0);
    assert(this.#inFlightBytes >= 0);
    const onRoom = this.#onRoom;
    this.#onRoom = undefined;
    onRoom?.();
    if (this.#inFlightCount === 0) for (const resolve of this.#onIdle.splice(0)) resolve();
  }

  /** Resolves when no request is in flight. */
  #idle(): Promise<void> {
    if (this.#inFlightCount === 0) return Promise.resolve();
    return new Promise((resolve) => this.#onIdle.push(resolve));
  }

  #report(message: string): void {
    this.#context.report(`nbd ${this.#peer}: ${message}`);
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
