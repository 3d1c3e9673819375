/**
 * NbdConnection: one NBD client, from the server greeting to the close: fixed newstyle option
 * haggling (EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY, LIST/SET_META_CONTEXT),
 * then the transmission phase with many requests in flight and replies sent as each request
 * completes (possibly out of order).
 *
 * Invariants:
 * - Client input is validated, never asserted: a malformed option gets an error reply, a
 *   malformed request an error reply, and only what the protocol cannot resync from (a bad
 *   magic, an unusable EXPORT_NAME, a WRITE payload too large to skip) closes the connection.
 * - Every request gets exactly one reply (DISC: none), written with one socket write, so
 *   replies of concurrent requests never interleave.
 * - At most REQUESTS_IN_FLIGHT_MAX requests and IN_FLIGHT_BYTES_MAX payload bytes are held at
 *   once; beyond that the socket is not read (backpressure reaches the client through TCP or
 *   the Unix socket).
 * - The export is released once, after the last in-flight request completed.
 */
import type { Socket } from 'node:net';
import { Errno, FsError } from '../errno.js';
import type { ExportDescription, NbdExport, ExportCatalog } from './export.js';
import type { PayloadPool } from './payload-pool.js';
import {
  BASE_ALLOCATION, BASE_ALLOCATION_ID, BLOCK_STATUS_EXTENTS_MAX, CHUNK_HEADER_BYTES, COMMAND_FLAGS_ALLOWED,
  HANDSHAKE_TIMEOUT_MS, IN_FLIGHT_BYTES_MAX, NBD_CLIENT_FLAGS_KNOWN, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_REQ_ONE, NBD_FLAG_C_NO_ZEROES, NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_CACHE, NBD_FLAG_SEND_DF, NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES, NBD_OPTION_MAGIC,
  NBD_REPLY_FLAG_DONE, NbdCommand, NbdError, NbdInfo, NbdOption, NbdReply, NbdReplyType, OPTION_DATA_BYTES_MAX,
  OPTION_HEADER_BYTES, OPTIONS_PER_CONNECTION_MAX, PAYLOAD_BYTES_MAX, REPLY_HEADROOM_BYTES, REQUEST_BYTES,
  REQUESTS_IN_FLIGHT_MAX, SIMPLE_REPLY_BYTES, WRITE_SKIP_BYTES_MAX, decodeRequest, decodeString,
  encodeBlockStatusChunk, encodeErrorChunk, encodeExportNameReply, encodeGreeting, encodeInfoBlockSize,
  encodeInfoExport, encodeInfoString, encodeMetaContext, encodeOptionError, encodeOptionReply, encodeServerReply,
  nbdErrorOf, parseGoOption, parseMetaContextOption, writeChunkHeader, writeSimpleReply, type BlockSizes,
  type Request,
} from './protocol.js';
import { ClosedError, ReceiveQueue } from './receive-queue.js';
import { assert } from '../assert.js';

/** What a connection needs from its server. */
export interface ConnectionContext {
  readonly catalog: ExportCatalog;
  readonly payloads: PayloadPool;
  /** One line for the operator: a misbehaving client or a failed operation. */
  readonly report: (message: string) => void;
}

/** How the handshake ended. */
type HandshakeEnd =
  | { readonly kind: 'transmit'; readonly target: NbdExport }
  | { readonly kind: 'abort' }
  | { readonly kind: 'hang-up'; readonly reason: string };

/** An error reply decided before (or instead of) touching the export. */
interface Refusal {
  readonly error: NbdError;
  readonly message: string;
}

/** The minimum block size we advertise: any byte offset and length works. */
const BLOCK_BYTES_MIN = 1;

export class NbdConnection {
  readonly #socket: Socket;
  readonly #queue: ReceiveQueue;
  readonly #context: ConnectionContext;
  readonly #peer: string;
  #isStructured = false;
  /** Export name whose `base:allocation` the last NBD_OPT_SET_META_CONTEXT selected. */
  #metaContextExport: string | undefined;
  #phase: 'handshake' | 'transmission' | 'closed' = 'handshake';
  #isShuttingDown = false;
  #inFlightCount = 0;
  #inFlightBytes = 0;
  /** Wakes the request loop when room frees up (in-flight count or bytes). */
  #onRoom: (() => void) | undefined;
  /** Wakes whoever waits for the last in-flight request to complete. */
  readonly #onIdle: (() => void)[] = [];

  constructor(socket: Socket, context: ConnectionContext, peer: string) {
    this.#socket = socket;
    this.#queue = new ReceiveQueue(socket);
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
    let target: NbdExport | undefined;
    try {
      const end = await this.#handshake();
      clearTimeout(timer);
      if (end.kind === 'hang-up') {
        this.#report(`${end.reason}; closing`);
        this.#socket.destroy();
      } else if (end.kind === 'abort') {
        this.#socket.end();
      } else {
        target = end.target;
        this.#phase = 'transmission';
        await this.#transmit(target);
      }
    } catch (error) {
      if (!(error instanceof ClosedError)) {
        this.#report(`connection failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      }
      this.#socket.destroy();
    } finally {
      clearTimeout(timer);
      await this.#idle();
      target?.release();
      this.#phase = 'closed';
    }
  }

  /**
   * Server shutdown: requests arriving from now on get ESHUTDOWN, those in flight complete,
   * then the connection is closed. Resolves when it is closed.
   */
  async shutDown(): Promise<void> {
    this.#isShuttingDown = true;
    if (this.#phase === 'handshake') {
      this.#socket.destroy();
      return;
    }
    await this.#idle();
    this.#socket.destroy();
  }

  // ---- handshake ----

  async #handshake(): Promise<HandshakeEnd> {
    this.#socket.write(encodeGreeting());
    const word = Buffer.alloc(4);
    await this.#queue.read(word, 0, 4);
    const clientFlags = word.readUInt32BE(0);
    if ((clientFlags & ~NBD_CLIENT_FLAGS_KNOWN) !== 0) {
      return { kind: 'hang-up', reason: `unknown client flags 0x${clientFlags.toString(16)}` };
    }
    const hasZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) === 0;
    const header = Buffer.alloc(OPTION_HEADER_BYTES);
    for (let count = 0; count < OPTIONS_PER_CONNECTION_MAX; count++) {
      await this.#queue.read(header, 0, OPTION_HEADER_BYTES);
      if (header.readBigUInt64BE(0) !== NBD_OPTION_MAGIC) return { kind: 'hang-up', reason: 'bad option magic' };
      const option = header.readUInt32BE(8);
      const dataBytes = header.readUInt32BE(12);
      if (dataBytes > OPTION_DATA_BYTES_MAX) {
        if (option === NbdOption.EXPORT_NAME) return { kind: 'hang-up', reason: `export name of ${dataBytes} bytes` };
        await this.#queue.skip(dataBytes);
        this.#socket.write(encodeOptionError(option, NbdReply.ERR_TOO_BIG,
          `option data of ${dataBytes} bytes exceeds ${OPTION_DATA_BYTES_MAX}`));
        continue;
      }
      const data = Buffer.alloc(dataBytes);
      await this.#queue.read(data, 0, dataBytes);
      const end = this.#option(option, data, hasZeroes);
      if (end !== undefined) return end;
    }
    return { kind: 'hang-up', reason: `more than ${OPTIONS_PER_CONNECTION_MAX} options` };
  }

  /** Answers one option; returns how the handshake ends, or undefined to go on. */
  #option(option: number, data: Buffer, hasZeroes: boolean): HandshakeEnd | undefined {
    const reply = (replyType: number, payload?: Buffer) => this.#socket.write(encodeOptionReply(option, replyType, payload));
    const fail = (replyType: number, message: string) => this.#socket.write(encodeOptionError(option, replyType, message));
    switch (option) {
      case NbdOption.EXPORT_NAME: {
        const name = decodeString(data);
        if (name === undefined) return { kind: 'hang-up', reason: 'EXPORT_NAME with an invalid name' };
        const target = this.#context.catalog.open(name);
        // The protocol leaves no way to refuse EXPORT_NAME but hanging up.
        if (target === undefined) return { kind: 'hang-up', reason: `EXPORT_NAME of unknown export "${name}"` };
        this.#socket.write(encodeExportNameReply(target.sizeBytes, this.#transmissionFlags(target), hasZeroes));
        return { kind: 'transmit', target };
      }
      case NbdOption.ABORT:
        reply(NbdReply.ACK);
        return { kind: 'abort' };
      case NbdOption.LIST:
        if (data.byteLength !== 0) {
          fail(NbdReply.ERR_INVALID, 'NBD_OPT_LIST takes no data');
          return undefined;
        }
        for (const name of this.#context.catalog.names()) this.#socket.write(encodeServerReply(name));
        reply(NbdReply.ACK);
        return undefined;
      case NbdOption.STARTTLS:
        fail(NbdReply.ERR_UNSUP, 'TLS is not supported by this server');
        return undefined;
      case NbdOption.INFO:
      case NbdOption.GO:
        return this.#infoOrGo(option, data);
      case NbdOption.STRUCTURED_REPLY:
        if (data.byteLength !== 0) {
          fail(NbdReply.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
          return undefined;
        }
        this.#isStructured = true;
        reply(NbdReply.ACK);
        return undefined;
      case NbdOption.LIST_META_CONTEXT:
      case NbdOption.SET_META_CONTEXT:
        this.#metaContext(option, data);
        return undefined;
      default:
        fail(NbdReply.ERR_UNSUP, `option ${option} is not supported`);
        return undefined;
    }
  }

  #infoOrGo(option: number, data: Buffer): HandshakeEnd | undefined {
    const fail = (replyType: number, message: string) => this.#socket.write(encodeOptionError(option, replyType, message));
    const request = parseGoOption(data);
    if (typeof request === 'string') {
      fail(NbdReply.ERR_INVALID, request);
      return undefined;
    }
    const target = this.#context.catalog.open(request.name);
    if (target === undefined) {
      fail(NbdReply.ERR_UNKNOWN, request.name === ''
        ? 'there is no default export: name a volume (shmr volume list)'
        : `no volume named "${request.name}"`);
      return undefined;
    }
    this.#socket.write(encodeInfoExport(option, target.sizeBytes, this.#transmissionFlags(target)));
    if (request.infoRequests.includes(NbdInfo.NAME)) {
      this.#socket.write(encodeInfoString(option, NbdInfo.NAME, target.name));
    }
    if (request.infoRequests.includes(NbdInfo.DESCRIPTION)) {
      this.#socket.write(encodeInfoString(option, NbdInfo.DESCRIPTION, target.description));
    }
    // Sent whether asked or not (allowed): our constraints are the defaults but for the hint.
    this.#socket.write(encodeInfoBlockSize(option, blockSizesOf(target)));
    this.#socket.write(encodeOptionReply(option, NbdReply.ACK));
    if (option === NbdOption.GO) return { kind: 'transmit', target };
    target.release();
    return undefined;
  }

  #metaContext(option: number, data: Buffer): void {
    const fail = (replyType: number, message: string) => this.#socket.write(encodeOptionError(option, replyType, message));
    const isSet = option === NbdOption.SET_META_CONTEXT;
    // A SET replaces the selection even when it fails.
    if (isSet) this.#metaContextExport = undefined;
    if (!this.#isStructured) {
      fail(NbdReply.ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY first');
      return;
    }
    const request = parseMetaContextOption(data);
    if ('replyType' in request) {
      fail(request.replyType, request.message);
      return;
    }
    const target = this.#context.catalog.open(request.name);
    if (target === undefined) {
      fail(NbdReply.ERR_UNKNOWN, `no volume named "${request.name}"`);
      return;
    }
    target.release();
    const matches = isSet
      ? request.queries.some((query) => query === BASE_ALLOCATION)
      : request.queries.length === 0 || request.queries.some((query) => query === 'base:' || query === BASE_ALLOCATION);
    if (matches) {
      // LIST replies carry id 0 (reserved); SET replies the id BLOCK_STATUS chunks will use.
      this.#socket.write(encodeMetaContext(option, isSet ? BASE_ALLOCATION_ID : 0, BASE_ALLOCATION));
      if (isSet) this.#metaContextExport = request.name;
    }
    this.#socket.write(encodeOptionReply(option, NbdReply.ACK));
  }

  #transmissionFlags(target: ExportDescription): number {
    let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;
    if (target.isReadOnly) flags |= NBD_FLAG_READ_ONLY;
    else flags |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    if (this.#isStructured) flags |= NBD_FLAG_SEND_DF;
    return flags;
  }

  // ---- transmission ----

  async #transmit(target: NbdExport): Promise<void> {
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
      if (request.type === NbdCommand.WRITE) {
        const isDone = await this.#receiveWrite(target, request);
        if (isDone) return;
        continue;
      }
      const refusal = this.#refusal(target, request);
      const replyBytes = request.type === NbdCommand.READ && refusal === undefined ? request.lengthBytes : 0;
      await this.#room(replyBytes);
      this.#begin(replyBytes);
      void this.#run(target, request, refusal);
    }
  }

  /** Reads a WRITE's payload and starts it; returns true when the connection must close. */
  async #receiveWrite(target: NbdExport, request: Request): Promise<boolean> {
    const payloadBytes = request.lengthBytes;
    if (payloadBytes > PAYLOAD_BYTES_MAX) {
      if (payloadBytes > WRITE_SKIP_BYTES_MAX) {
        this.#report(`WRITE of ${payloadBytes} bytes is too large to skip; closing`);
        this.#socket.destroy();
        return true;
      }
      await this.#queue.skip(payloadBytes);
      await this.#room(0);
      this.#begin(0);
      void this.#run(target, request, { error: NbdError.EINVAL, message: `WRITE of ${payloadBytes} bytes exceeds ${PAYLOAD_BYTES_MAX}` });
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
    void this.#runWrite(target, request, payload);
    return false;
  }

  /** Why a request is refused before it touches the export, or undefined when it is valid. */
  #refusal(target: NbdExport, request: Request): Refusal | undefined {
    const { type, flags, offsetBytes, lengthBytes } = request;
    const allowed = COMMAND_FLAGS_ALLOWED[type];
    if (this.#isShuttingDown) return { error: NbdError.ESHUTDOWN, message: 'the server is shutting down' };
    if (allowed === undefined) return { error: NbdError.EINVAL, message: `unknown command ${type}` };
    if ((flags & ~allowed) !== 0) return { error: NbdError.EINVAL, message: `flags 0x${flags.toString(16)} not valid for command ${type}` };
    if ((flags & NBD_CMD_FLAG_DF) !== 0 && !this.#isStructured) return { error: NbdError.EINVAL, message: 'DF without structured replies' };
    const isWrite = type === NbdCommand.WRITE || type === NbdCommand.TRIM || type === NbdCommand.WRITE_ZEROES;
    if (isWrite && target.isReadOnly) return { error: NbdError.EPERM, message: `export "${target.name}" is read-only` };
    switch (type) {
      case NbdCommand.FLUSH:
        if (offsetBytes !== 0 || lengthBytes !== 0) return { error: NbdError.EINVAL, message: 'FLUSH with nonzero offset or length' };
        return undefined;
      case NbdCommand.READ:
        if (lengthBytes > PAYLOAD_BYTES_MAX) {
          return { error: this.#isStructured ? NbdError.EOVERFLOW : NbdError.EINVAL, message: `READ of ${lengthBytes} bytes exceeds ${PAYLOAD_BYTES_MAX}` };
        }
        break;
      case NbdCommand.BLOCK_STATUS:
        if (this.#metaContextExport !== target.name) return { error: NbdError.EINVAL, message: 'no metadata context selected for this export' };
        if (lengthBytes === 0) return { error: NbdError.EINVAL, message: 'BLOCK_STATUS of zero bytes' };
        break;
      case NbdCommand.WRITE_ZEROES:
        if ((flags & NBD_CMD_FLAG_FAST_ZERO) !== 0 && (flags & NBD_CMD_FLAG_NO_HOLE) !== 0) {
          return { error: NbdError.ENOTSUP, message: 'zeroing without holes is no faster than writing' };
        }
        break;
      default:
        break;
    }
    if (offsetBytes + lengthBytes > target.sizeBytes) {
      const isGrowing = type === NbdCommand.WRITE || type === NbdCommand.WRITE_ZEROES;
      return {
        error: isGrowing ? NbdError.ENOSPC : NbdError.EINVAL,
        message: `range ${offsetBytes}+${lengthBytes} beyond the export size ${target.sizeBytes}`,
      };
    }
    return undefined;
  }

  async #runWrite(target: NbdExport, request: Request, payload: Buffer): Promise<void> {
    const refusal = this.#refusal(target, request);
    let outcome: Refusal | undefined = refusal;
    if (outcome === undefined) {
      try {
        await target.write(request.offsetBytes, payload.subarray(0, request.lengthBytes));
        if ((request.flags & NBD_CMD_FLAG_FUA) !== 0) await target.flush();
      } catch (error) {
        outcome = this.#failure(error, request);
      }
    }
    this.#context.payloads.release(payload);
    this.#sendStatus(request, outcome, request.lengthBytes);
  }

  /** Serves a request other than WRITE and DISC, and replies. */
  async #run(target: NbdExport, request: Request, refusal: Refusal | undefined): Promise<void> {
    if (refusal !== undefined) {
      this.#sendStatus(request, refusal, 0);
      return;
    }
    const { type, flags, offsetBytes, lengthBytes } = request;
    try {
      switch (type) {
        case NbdCommand.READ:
          await this.#read(target, request);
          return;
        case NbdCommand.FLUSH:
          await target.flush();
          break;
        case NbdCommand.TRIM:
          if (lengthBytes > 0) await target.trim(offsetBytes, lengthBytes);
          if ((flags & NBD_CMD_FLAG_FUA) !== 0) await target.flush();
          break;
        case NbdCommand.WRITE_ZEROES:
          if (lengthBytes > 0) await target.zero(offsetBytes, lengthBytes, { mayPunch: (flags & NBD_CMD_FLAG_NO_HOLE) === 0 });
          if ((flags & NBD_CMD_FLAG_FUA) !== 0) await target.flush();
          break;
        case NbdCommand.CACHE:
          // A hint; the block cache fills on reads anyway.
          break;
        case NbdCommand.BLOCK_STATUS: {
          const extentsMax = (flags & NBD_CMD_FLAG_REQ_ONE) !== 0 ? 1 : BLOCK_STATUS_EXTENTS_MAX;
          const extents = await target.blockStatus(offsetBytes, lengthBytes, extentsMax);
          assert(extents.length > 0);
          this.#sendBuffer(encodeBlockStatusChunk(request.cookie, BASE_ALLOCATION_ID, extents), 0);
          return;
        }
        default:
          assert.fail(`unvalidated command ${type}`);
      }
      this.#sendStatus(request, undefined, 0);
    } catch (error) {
      this.#sendStatus(request, this.#failure(error, request), type === NbdCommand.READ ? lengthBytes : 0);
    }
  }

  /** READ: the data lands right behind its reply header and goes out in one write. */
  async #read(target: NbdExport, request: Request): Promise<void> {
    const { cookie, offsetBytes, lengthBytes } = request;
    if (this.#isStructured && lengthBytes === 0) {
      const buffer = Buffer.alloc(CHUNK_HEADER_BYTES);
      writeChunkHeader(buffer, 0, { flags: NBD_REPLY_FLAG_DONE, type: NbdReplyType.NONE, cookie, payloadBytes: 0 });
      this.#sendBuffer(buffer, 0);
      return;
    }
    const buffer = this.#context.payloads.acquire(lengthBytes);
    const headerBytes = this.#isStructured ? CHUNK_HEADER_BYTES + 8 : SIMPLE_REPLY_BYTES;
    const start = REPLY_HEADROOM_BYTES - headerBytes;
    try {
      await target.read(offsetBytes, lengthBytes, buffer.subarray(REPLY_HEADROOM_BYTES, REPLY_HEADROOM_BYTES + lengthBytes));
    } catch (error) {
      this.#context.payloads.release(buffer);
      throw error;
    }
    if (this.#isStructured) {
      writeChunkHeader(buffer, start, {
        flags: NBD_REPLY_FLAG_DONE, type: NbdReplyType.OFFSET_DATA, cookie, payloadBytes: 8 + lengthBytes,
      });
      buffer.writeBigUInt64BE(BigInt(offsetBytes), start + CHUNK_HEADER_BYTES);
    } else {
      writeSimpleReply(buffer, start, 0, cookie);
    }
    this.#sendPooled(buffer, start, REPLY_HEADROOM_BYTES + lengthBytes, lengthBytes);
  }

  /** The error reply for an operation that threw. */
  #failure(error: unknown, request: Request): Refusal {
    const errno = (error as { errno?: unknown } | null)?.errno;
    if (error instanceof FsError || (typeof errno === 'number' && Number.isInteger(errno) && errno > 0 && errno < 512)) {
      const message = error instanceof Error ? error.message : String(error);
      if (errno === Errno.EIO) this.#report(`command ${request.type} at ${request.offsetBytes}: ${message}`);
      return { error: nbdErrorOf(errno as number), message };
    }
    // Not an expected failure: a bug. The request fails with EIO and serving goes on, as the
    // FUSE binding does; the stack goes to the log.
    this.#report(`bug in command ${request.type}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return { error: NbdError.EIO, message: 'internal error' };
  }

  /** A reply without data: success, or the error (structured when negotiated). */
  #sendStatus(request: Request, outcome: Refusal | undefined, heldBytes: number): void {
    if (outcome !== undefined && this.#isStructured) {
      this.#sendBuffer(encodeErrorChunk(request.cookie, outcome.error, outcome.message), heldBytes);
      return;
    }
    const buffer = Buffer.alloc(SIMPLE_REPLY_BYTES);
    writeSimpleReply(buffer, 0, outcome?.error ?? 0, request.cookie);
    this.#sendBuffer(buffer, heldBytes);
  }

  #sendBuffer(buffer: Buffer, heldBytes: number): void {
    this.#socket.write(buffer, () => this.#end(heldBytes));
  }

  #sendPooled(buffer: Buffer, start: number, end: number, heldBytes: number): void {
    this.#socket.write(buffer.subarray(start, end), () => {
      this.#context.payloads.release(buffer);
      this.#end(heldBytes);
    });
  }

  // ---- in-flight accounting ----

  /** Waits until one more request holding `bytes` fits. */
  async #room(bytes: number): Promise<void> {
    while (this.#inFlightCount >= REQUESTS_IN_FLIGHT_MAX || this.#inFlightBytes + bytes > IN_FLIGHT_BYTES_MAX) {
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

/** NBD_INFO_BLOCK_SIZE of an export. */
export function blockSizesOf(target: ExportDescription): BlockSizes {
  const preferredBytes = Math.min(Math.max(target.preferredBlockBytes, 512), PAYLOAD_BYTES_MAX);
  return { minimumBytes: BLOCK_BYTES_MIN, preferredBytes, payloadBytesMax: PAYLOAD_BYTES_MAX };
}
