/**
 * The handshake of one connection: fixed newstyle negotiation, option by option (EXPORT_NAME,
 * ABORT, LIST, STARTTLS, INFO, GO, STRUCTURED_REPLY, LIST/SET_META_CONTEXT), until the client
 * enters transmission, aborts, or breaks a rule the stream cannot recover from.
 *
 * Invariants:
 * - An option the server does not know gets NBD_REP_ERR_UNSUP; a malformed one gets
 *   NBD_REP_ERR_INVALID (or ERR_TOO_BIG); either way the next option parses.
 * - Only a bad magic, bad client flags, an unusable EXPORT_NAME (which cannot be refused
 *   otherwise) or too many options end the handshake with a hang-up.
 * - Option data is held only up to OPTION_DATA_BYTES_MAX; longer data is read and discarded.
 * - An export opened for INFO or a meta context check is released before the next option.
 */
import type { Socket } from 'node:net';
import type { ExportCatalog, ExportDescription, NbdExport } from './export.js';
import {
  BASE_ALLOCATION, BASE_ALLOCATION_ID, NBD_CLIENT_FLAGS_KNOWN, NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_HAS_FLAGS, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF, NBD_FLAG_SEND_FAST_ZERO, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES, NBD_OPTION_MAGIC, NbdInfo, NbdOption, NbdReply,
  OPTION_DATA_BYTES_MAX, OPTION_HEADER_BYTES, OPTIONS_PER_CONNECTION_MAX, PAYLOAD_BYTES_MAX,
  decodeString, encodeExportNameReply, encodeGreeting, encodeInfoBlockSize, encodeInfoExport,
  encodeInfoString, encodeMetaContext, encodeOptionError, encodeOptionReply, encodeServerReply,
  parseGoOption, parseMetaContextOption, type BlockSizes,
} from './protocol.js';
import type { ReceiveQueue } from './receive-queue.js';

/** What transmission needs to know from the handshake. */
export interface Session {
  readonly target: NbdExport;
  readonly isStructured: boolean;
  /** True when `base:allocation` was selected for this export (BLOCK_STATUS allowed). */
  readonly hasBlockStatus: boolean;
}

/** How the handshake ended. */
export type HandshakeEnd =
  | { readonly kind: 'transmit'; readonly session: Session }
  | { readonly kind: 'abort' }
  | { readonly kind: 'hang-up'; readonly reason: string };

/** The minimum block size we advertise: any byte offset and length works. */
const BLOCK_BYTES_MIN = 1;

/** NBD_INFO_BLOCK_SIZE of an export. */
export function blockSizesOf(target: ExportDescription): BlockSizes {
  const preferredBytes = Math.min(Math.max(target.preferredBlockBytes, 512), PAYLOAD_BYTES_MAX);
  return { minimumBytes: BLOCK_BYTES_MIN, preferredBytes, payloadBytesMax: PAYLOAD_BYTES_MAX };
}

/** Transmission flags of an export, given whether structured replies were negotiated. */
export function transmissionFlagsOf(target: ExportDescription, isStructured: boolean): number {
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN;
  flags |= NBD_FLAG_SEND_CACHE;
  if (target.isReadOnly) {
    flags |= NBD_FLAG_READ_ONLY;
  } else {
    flags |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
    flags |= NBD_FLAG_SEND_FAST_ZERO;
  }
  if (isStructured) flags |= NBD_FLAG_SEND_DF;
  return flags;
}

export class Handshake {
  readonly #socket: Socket;
  readonly #queue: ReceiveQueue;
  readonly #catalog: ExportCatalog;
  #isStructured = false;
  /** Export name whose `base:allocation` the last NBD_OPT_SET_META_CONTEXT selected. */
  #metaContextExport: string | undefined;
  #hasZeroes = true;

  constructor(socket: Socket, queue: ReceiveQueue, catalog: ExportCatalog) {
    this.#socket = socket;
    this.#queue = queue;
    this.#catalog = catalog;
  }

  /** Runs the handshake; rejects with ClosedError when the client goes away. */
  async run(): Promise<HandshakeEnd> {
    this.#socket.write(encodeGreeting());
    const word = Buffer.alloc(4);
    await this.#queue.read(word, 0, 4);
    const clientFlags = word.readUInt32BE(0);
    if ((clientFlags & ~NBD_CLIENT_FLAGS_KNOWN) !== 0) {
      return { kind: 'hang-up', reason: `unknown client flags 0x${clientFlags.toString(16)}` };
    }
    this.#hasZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) === 0;
    const header = Buffer.alloc(OPTION_HEADER_BYTES);
    for (let count = 0; count < OPTIONS_PER_CONNECTION_MAX; count++) {
      await this.#queue.read(header, 0, OPTION_HEADER_BYTES);
      if (header.readBigUInt64BE(0) !== NBD_OPTION_MAGIC) {
        return { kind: 'hang-up', reason: 'bad option magic' };
      }
      const option = header.readUInt32BE(8);
      const dataBytes = header.readUInt32BE(12);
      if (dataBytes > OPTION_DATA_BYTES_MAX) {
        if (option === NbdOption.EXPORT_NAME) {
          return { kind: 'hang-up', reason: `export name of ${dataBytes} bytes` };
        }
        await this.#queue.skip(dataBytes);
        this.#fail(option, NbdReply.ERR_TOO_BIG,
          `option data of ${dataBytes} bytes exceeds ${OPTION_DATA_BYTES_MAX}`);
        continue;
      }
      const data = Buffer.alloc(dataBytes);
      await this.#queue.read(data, 0, dataBytes);
      const end = this.#option(option, data);
      if (end !== undefined) return end;
    }
    return { kind: 'hang-up', reason: `more than ${OPTIONS_PER_CONNECTION_MAX} options` };
  }

  #reply(option: number, replyType: number, payload?: Buffer): void {
    this.#socket.write(encodeOptionReply(option, replyType, payload));
  }

  #fail(option: number, replyType: number, message: string): void {
    this.#socket.write(encodeOptionError(option, replyType, message));
  }

  /** Answers one option; returns how the handshake ends, or undefined to go on. */
  #option(option: number, data: Buffer): HandshakeEnd | undefined {
    switch (option) {
      case NbdOption.EXPORT_NAME:
        return this.#exportName(data);
      case NbdOption.ABORT:
        this.#reply(option, NbdReply.ACK);
        return { kind: 'abort' };
      case NbdOption.LIST:
        if (data.byteLength !== 0) {
          this.#fail(option, NbdReply.ERR_INVALID, 'NBD_OPT_LIST takes no data');
          return undefined;
        }
        for (const name of this.#catalog.names()) this.#socket.write(encodeServerReply(name));
        this.#reply(option, NbdReply.ACK);
        return undefined;
      case NbdOption.STARTTLS:
        this.#fail(option, NbdReply.ERR_UNSUP, 'TLS is not supported by this server');
        return undefined;
      case NbdOption.INFO:
      case NbdOption.GO:
        return this.#infoOrGo(option, data);
      case NbdOption.STRUCTURED_REPLY:
        if (data.byteLength !== 0) {
          this.#fail(option, NbdReply.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
          return undefined;
        }
        this.#isStructured = true;
        this.#reply(option, NbdReply.ACK);
        return undefined;
      case NbdOption.LIST_META_CONTEXT:
      case NbdOption.SET_META_CONTEXT:
        this.#metaContext(option, data);
        return undefined;
      default:
        this.#fail(option, NbdReply.ERR_UNSUP, `option ${option} is not supported`);
        return undefined;
    }
  }

  #exportName(data: Buffer): HandshakeEnd {
    const name = decodeString(data);
    if (name === undefined) return { kind: 'hang-up', reason: 'EXPORT_NAME with an invalid name' };
    const target = this.#catalog.open(name);
    // The protocol leaves no way to refuse EXPORT_NAME but hanging up.
    if (target === undefined) {
      return { kind: 'hang-up', reason: `EXPORT_NAME of unknown export "${name}"` };
    }
    const flags = transmissionFlagsOf(target, this.#isStructured);
    this.#socket.write(encodeExportNameReply(target.sizeBytes, flags, this.#hasZeroes));
    return { kind: 'transmit', session: this.#session(target) };
  }

  #infoOrGo(option: number, data: Buffer): HandshakeEnd | undefined {
    const request = parseGoOption(data);
    if (typeof request === 'string') {
      this.#fail(option, NbdReply.ERR_INVALID, request);
      return undefined;
    }
    const target = this.#catalog.open(request.name);
    if (target === undefined) {
      this.#fail(option, NbdReply.ERR_UNKNOWN, request.name === ''
        ? 'there is no default export: name a volume (shmr volume list)'
        : `no volume named "${request.name}"`);
      return undefined;
    }
    const flags = transmissionFlagsOf(target, this.#isStructured);
    this.#socket.write(encodeInfoExport(option, target.sizeBytes, flags));
    if (request.infoRequests.includes(NbdInfo.NAME)) {
      this.#socket.write(encodeInfoString(option, NbdInfo.NAME, target.name));
    }
    if (request.infoRequests.includes(NbdInfo.DESCRIPTION)) {
      this.#socket.write(encodeInfoString(option, NbdInfo.DESCRIPTION, target.description));
    }
    // Sent whether asked or not (allowed): the constraints are the defaults but for the hint.
    this.#socket.write(encodeInfoBlockSize(option, blockSizesOf(target)));
    this.#reply(option, NbdReply.ACK);
    if (option === NbdOption.GO) return { kind: 'transmit', session: this.#session(target) };
    target.release();
    return undefined;
  }

  #metaContext(option: number, data: Buffer): void {
    const isSet = option === NbdOption.SET_META_CONTEXT;
    // A SET replaces the selection even when it fails.
    if (isSet) this.#metaContextExport = undefined;
    if (!this.#isStructured) {
      this.#fail(option, NbdReply.ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY first');
      return;
    }
    const request = parseMetaContextOption(data);
    if ('replyType' in request) {
      this.#fail(option, request.replyType, request.message);
      return;
    }
    const target = this.#catalog.open(request.name);
    if (target === undefined) {
      this.#fail(option, NbdReply.ERR_UNKNOWN, `no volume named "${request.name}"`);
      return;
    }
    target.release();
    const { queries } = request;
    const matches = isSet
      ? queries.includes(BASE_ALLOCATION)
      : queries.length === 0 || queries.includes('base:') || queries.includes(BASE_ALLOCATION);
    if (matches) {
      // LIST replies carry id 0 (reserved); SET replies the id BLOCK_STATUS chunks will use.
      const id = isSet ? BASE_ALLOCATION_ID : 0;
      this.#socket.write(encodeMetaContext(option, id, BASE_ALLOCATION));
      if (isSet) this.#metaContextExport = request.name;
    }
    this.#reply(option, NbdReply.ACK);
  }

  #session(target: NbdExport): Session {
    return {
      target,
      isStructured: this.#isStructured,
      hasBlockStatus: this.#metaContextExport === target.name,
    };
  }
}
