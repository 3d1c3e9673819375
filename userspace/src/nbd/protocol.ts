/**
 * The Network Block Device protocol on the wire: magic numbers, option, reply, command and
 * flag values, the fixed-size structs, and the bounds this server puts on what a client may
 * send. Everything here follows doc/proto.md of NetworkBlockDevice/nbd (fixed newstyle
 * negotiation, simple and structured replies, the `base:allocation` metadata context).
 * All integers on the wire are big-endian.
 *
 * Invariants:
 * - Every length a client sends is checked against a bound here before anything is
 *   allocated for it; no buffer grows with client input beyond these bounds.
 * - Encoders write every byte of the struct they encode (reused buffers never leak bytes).
 */
import { assert } from '../assert.js';
import { Errno } from '../errno.js';

// ---- magic numbers ----

/** 'NBDMAGIC', sent first by the server. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': the newstyle magic, and the prefix of every option the client sends. */
export const NBD_OPTION_MAGIC = 0x49484156454f5054n;
/** Prefix of every option reply. */
export const NBD_OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// ---- handshake flags (server, 16 bits) and client flags (32 bits) ----

export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;
/** Client flags this server understands; any other bit closes the connection. */
export const NBD_CLIENT_FLAGS_KNOWN = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

// ---- transmission flags (16 bits) ----

export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// ---- options ----

export const NbdOption = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

/** Option reply types; errors have bit 31 set. */
export const NbdReply = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x8000_0001,
  ERR_POLICY: 0x8000_0002,
  ERR_INVALID: 0x8000_0003,
  ERR_PLATFORM: 0x8000_0004,
  ERR_TLS_REQD: 0x8000_0005,
  ERR_UNKNOWN: 0x8000_0006,
  ERR_SHUTDOWN: 0x8000_0007,
  ERR_BLOCK_SIZE_REQD: 0x8000_0008,
  ERR_TOO_BIG: 0x8000_0009,
} as const;

export const NbdInfo = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

// ---- transmission ----

export const NbdCommand = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

/** Command flags each command accepts (FUA is valid on every command once negotiated). */
export const COMMAND_FLAGS_ALLOWED: Readonly<Record<number, number>> = {
  [NbdCommand.READ]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF,
  [NbdCommand.WRITE]: NBD_CMD_FLAG_FUA,
  [NbdCommand.DISC]: NBD_CMD_FLAG_FUA,
  [NbdCommand.FLUSH]: NBD_CMD_FLAG_FUA,
  [NbdCommand.TRIM]: NBD_CMD_FLAG_FUA,
  [NbdCommand.CACHE]: NBD_CMD_FLAG_FUA,
  [NbdCommand.WRITE_ZEROES]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO,
  [NbdCommand.BLOCK_STATUS]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE,
};

export const NBD_REPLY_FLAG_DONE = 1 << 0;

export const NbdReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;

/** Error values of the transmission phase (a restricted set, errno-like). */
export const NbdError = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdError = (typeof NbdError)[keyof typeof NbdError];

/** `base:allocation` state flags. */
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;

/** The one metadata context this server offers. */
export const BASE_ALLOCATION = 'base:allocation';
/** The id it gets when selected (ids are opaque to clients; zero is avoided). */
export const BASE_ALLOCATION_ID = 1;

// ---- struct sizes ----

/** Server greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export const GREETING_BYTES = 18;
/** Client option header: IHAVEOPT, option, data length. */
export const OPTION_HEADER_BYTES = 16;
/** Option reply header: magic, option, reply type, data length. */
export const OPTION_REPLY_HEADER_BYTES = 20;
/** Reply to NBD_OPT_EXPORT_NAME: size, transmission flags (then 124 zeroes unless NO_ZEROES). */
export const EXPORT_NAME_REPLY_BYTES = 10;
export const EXPORT_NAME_PADDING_BYTES = 124;
/** Request: magic, flags, type, cookie, offset, length. */
export const REQUEST_BYTES = 28;
/** Simple reply: magic, error, cookie. */
export const SIMPLE_REPLY_BYTES = 16;
/** Structured reply chunk header: magic, flags, type, cookie, payload length. */
export const CHUNK_HEADER_BYTES = 20;
/** Room in front of a read payload for the largest reply header (chunk + data offset). */
export const REPLY_HEADROOM_BYTES = CHUNK_HEADER_BYTES + 8;

// ---- bounds ----

/** NBD strings (export names, messages) are at most this long. */
export const STRING_BYTES_MAX = 4096;
/** Largest READ or WRITE payload; the protocol's default and portable maximum (2^25). */
export const PAYLOAD_BYTES_MAX = 32 * 1024 * 1024;
/**
 * A WRITE longer than PAYLOAD_BYTES_MAX gets EINVAL with its payload read and discarded up to
 * this length; beyond it the request is treated as a denial of service and the connection is
 * closed (the protocol allows both).
 */
export const WRITE_SKIP_BYTES_MAX = 2 * PAYLOAD_BYTES_MAX;
/** Largest option data kept in memory; longer options are discarded and get ERR_TOO_BIG. */
export const OPTION_DATA_BYTES_MAX = 64 * 1024;
/** Metadata context queries in one option. */
export const META_QUERIES_MAX = 256;
/** Options one connection may send before it is taken for a denial of service. */
export const OPTIONS_PER_CONNECTION_MAX = 4096;
/** Time a client has from connecting to entering transmission. */
export const HANDSHAKE_TIMEOUT_MS = 60_000;
/** Requests of one connection being served at once; more wait (the socket is not read). */
export const REQUESTS_IN_FLIGHT_MAX = 256;
/** Payload bytes of one connection's requests being served at once (reads and writes). */
export const IN_FLIGHT_BYTES_MAX = 48 * 1024 * 1024;
/** Connections served at once; more are closed at accept. */
export const CONNECTIONS_MAX = 32;
/** Received bytes buffered beyond what the parser asked for before the socket is paused. */
export const RECEIVE_QUEUE_BYTES_MAX = 256 * 1024;
/** Block status descriptors in one reply (the protocol asks for at most 2^20). */
export const BLOCK_STATUS_EXTENTS_MAX = 65536;

assert(PAYLOAD_BYTES_MAX === 2 ** 25);
assert(IN_FLIGHT_BYTES_MAX >= PAYLOAD_BYTES_MAX + REPLY_HEADROOM_BYTES);
assert(WRITE_SKIP_BYTES_MAX >= PAYLOAD_BYTES_MAX);
assert(OPTION_DATA_BYTES_MAX >= 4 + STRING_BYTES_MAX + 4 + 4 + STRING_BYTES_MAX);
assert(BLOCK_STATUS_EXTENTS_MAX <= 2 ** 20);

// ---- encoders ----

/** The server greeting of fixed newstyle negotiation. */
export function encodeGreeting(): Buffer {
  const buffer = Buffer.alloc(GREETING_BYTES);
  buffer.writeBigUInt64BE(NBD_MAGIC, 0);
  buffer.writeBigUInt64BE(NBD_OPTION_MAGIC, 8);
  buffer.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
  return buffer;
}

/** One option reply: header and data. */
export function encodeOptionReply(
  option: number,
  replyType: number,
  data: Buffer = Buffer.alloc(0),
): Buffer {
  assert(data.byteLength <= 0xffff_ffff);
  const buffer = Buffer.alloc(OPTION_REPLY_HEADER_BYTES + data.byteLength);
  buffer.writeBigUInt64BE(NBD_OPTION_REPLY_MAGIC, 0);
  buffer.writeUInt32BE(option >>> 0, 8);
  buffer.writeUInt32BE(replyType >>> 0, 12);
  buffer.writeUInt32BE(data.byteLength, 16);
  data.copy(buffer, OPTION_REPLY_HEADER_BYTES);
  return buffer;
}

/** An error reply carrying a message for humans (truncated to the string limit). */
export function encodeOptionError(option: number, replyType: number, message: string): Buffer {
  assert((replyType & 0x8000_0000) !== 0);
  return encodeOptionReply(option, replyType, truncatedString(message));
}

/** NBD_REP_SERVER data: name length, name. */
export function encodeServerReply(name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const data = Buffer.alloc(4 + nameBytes.byteLength);
  data.writeUInt32BE(nameBytes.byteLength, 0);
  nameBytes.copy(data, 4);
  return encodeOptionReply(NbdOption.LIST, NbdReply.SERVER, data);
}

/** NBD_REP_INFO with NBD_INFO_EXPORT: size and transmission flags. */
export function encodeInfoExport(
  option: number,
  sizeBytes: number,
  transmissionFlags: number,
): Buffer {
  const data = Buffer.alloc(12);
  data.writeUInt16BE(NbdInfo.EXPORT, 0);
  data.writeBigUInt64BE(BigInt(sizeBytes), 2);
  data.writeUInt16BE(transmissionFlags, 10);
  return encodeOptionReply(option, NbdReply.INFO, data);
}

/** NBD_REP_INFO with NBD_INFO_NAME or NBD_INFO_DESCRIPTION. */
export function encodeInfoString(option: number, infoType: number, text: string): Buffer {
  const bytes = truncatedString(text);
  const data = Buffer.alloc(2 + bytes.byteLength);
  data.writeUInt16BE(infoType, 0);
  bytes.copy(data, 2);
  return encodeOptionReply(option, NbdReply.INFO, data);
}

/** NBD_REP_INFO with NBD_INFO_BLOCK_SIZE: minimum, preferred, maximum payload. */
export function encodeInfoBlockSize(option: number, sizes: BlockSizes): Buffer {
  const data = Buffer.alloc(14);
  data.writeUInt16BE(NbdInfo.BLOCK_SIZE, 0);
  data.writeUInt32BE(sizes.minimumBytes, 2);
  data.writeUInt32BE(sizes.preferredBytes, 6);
  data.writeUInt32BE(sizes.payloadBytesMax, 10);
  return encodeOptionReply(option, NbdReply.INFO, data);
}

/** NBD_REP_META_CONTEXT: context id and name. */
export function encodeMetaContext(option: number, id: number, name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const data = Buffer.alloc(4 + nameBytes.byteLength);
  data.writeUInt32BE(id, 0);
  nameBytes.copy(data, 4);
  return encodeOptionReply(option, NbdReply.META_CONTEXT, data);
}

/** Reply to NBD_OPT_EXPORT_NAME: size, flags, and the 124 zeroes unless the client opted out. */
export function encodeExportNameReply(
  sizeBytes: number,
  transmissionFlags: number,
  hasZeroes: boolean,
): Buffer {
  const paddingBytes = hasZeroes ? EXPORT_NAME_PADDING_BYTES : 0;
  const buffer = Buffer.alloc(EXPORT_NAME_REPLY_BYTES + paddingBytes);
  buffer.writeBigUInt64BE(BigInt(sizeBytes), 0);
  buffer.writeUInt16BE(transmissionFlags, 8);
  return buffer;
}

/** Writes a simple reply header at `offset` of `target`. The cookie is copied as 8 raw bytes. */
export function writeSimpleReply(
  target: Buffer,
  offset: number,
  error: number,
  cookie: Buffer,
): void {
  assert(cookie.byteLength === 8);
  target.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, offset);
  target.writeUInt32BE(error, offset + 4);
  cookie.copy(target, offset + 8);
}

/** Writes a structured reply chunk header at `offset` of `target`. */
export function writeChunkHeader(
  target: Buffer,
  offset: number,
  chunk: { flags: number; type: number; cookie: Buffer; payloadBytes: number },
): void {
  assert(chunk.cookie.byteLength === 8);
  assert(chunk.payloadBytes >= 0 && chunk.payloadBytes <= 0xffff_ffff);
  target.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, offset);
  target.writeUInt16BE(chunk.flags, offset + 4);
  target.writeUInt16BE(chunk.type, offset + 6);
  chunk.cookie.copy(target, offset + 8);
  target.writeUInt32BE(chunk.payloadBytes, offset + 16);
}

/** A complete NBD_REPLY_TYPE_ERROR chunk (final) with a message. */
export function encodeErrorChunk(cookie: Buffer, error: NbdError, message: string): Buffer {
  const text = truncatedString(message, 1024);
  const buffer = Buffer.alloc(CHUNK_HEADER_BYTES + 6 + text.byteLength);
  writeChunkHeader(buffer, 0, {
    flags: NBD_REPLY_FLAG_DONE, type: NbdReplyType.ERROR, cookie, payloadBytes: 6 + text.byteLength,
  });
  buffer.writeUInt32BE(error, CHUNK_HEADER_BYTES);
  buffer.writeUInt16BE(text.byteLength, CHUNK_HEADER_BYTES + 4);
  text.copy(buffer, CHUNK_HEADER_BYTES + 6);
  return buffer;
}

/** A complete, final NBD_REPLY_TYPE_BLOCK_STATUS chunk for one context. */
export function encodeBlockStatusChunk(
  cookie: Buffer,
  contextId: number,
  extents: readonly Extent[],
): Buffer {
  assert(extents.length > 0);
  assert(extents.length <= BLOCK_STATUS_EXTENTS_MAX);
  const payloadBytes = 4 + 8 * extents.length;
  const buffer = Buffer.alloc(CHUNK_HEADER_BYTES + payloadBytes);
  const type = NbdReplyType.BLOCK_STATUS;
  writeChunkHeader(buffer, 0, { flags: NBD_REPLY_FLAG_DONE, type, cookie, payloadBytes });
  buffer.writeUInt32BE(contextId, CHUNK_HEADER_BYTES);
  let offset = CHUNK_HEADER_BYTES + 4;
  for (const extent of extents) {
    assert(extent.lengthBytes > 0 && extent.lengthBytes <= 0xffff_ffff);
    buffer.writeUInt32BE(extent.lengthBytes, offset);
    buffer.writeUInt32BE(extent.flags, offset + 4);
    offset += 8;
  }
  return buffer;
}

/** Size constraints advertised with NBD_INFO_BLOCK_SIZE. */
export interface BlockSizes {
  readonly minimumBytes: number;
  readonly preferredBytes: number;
  readonly payloadBytesMax: number;
}

/** One run of equal `base:allocation` state. */
export interface Extent {
  readonly lengthBytes: number;
  readonly flags: number;
}

/** A string as NBD sends it: UTF-8, cut to `bytesMax` bytes (on a character boundary). */
function truncatedString(text: string, bytesMax = STRING_BYTES_MAX): Buffer {
  let bytes = Buffer.from(text, 'utf8');
  if (bytes.byteLength <= bytesMax) return bytes;
  let end = bytesMax;
  // Step back over UTF-8 continuation bytes so that no character is cut in half.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  bytes = bytes.subarray(0, end);
  return bytes;
}

// ---- decoders (client input: validated, never asserted) ----

/** A request header as received. */
export interface Request {
  readonly flags: number;
  readonly type: number;
  /** 8 raw bytes, echoed in the reply. */
  readonly cookie: Buffer;
  /** Offset; Infinity when it does not fit a safe integer (always out of range). */
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** Decodes a request header; undefined when the magic is wrong (the stream cannot resync). */
export function decodeRequest(header: Buffer): Request | undefined {
  assert(header.byteLength >= REQUEST_BYTES);
  if (header.readUInt32BE(0) !== NBD_REQUEST_MAGIC) return undefined;
  const high = header.readUInt32BE(16);
  const low = header.readUInt32BE(20);
  // 2^53 = 2^21 * 2^32: any high word at or above 2^21 makes an unsafe integer.
  const offsetBytes = high >= 2 ** 21 ? Number.POSITIVE_INFINITY : high * 2 ** 32 + low;
  return {
    flags: header.readUInt16BE(4),
    type: header.readUInt16BE(6),
    cookie: Buffer.from(header.subarray(8, 16)),
    offsetBytes,
    lengthBytes: header.readUInt32BE(24),
  };
}

/** NBD_OPT_INFO / NBD_OPT_GO data. */
export interface GoRequest {
  readonly name: string;
  readonly infoRequests: readonly number[];
}

/** Parses NBD_OPT_INFO/GO data; a string says why it is invalid (NBD_REP_ERR_INVALID). */
export function parseGoOption(data: Buffer): GoRequest | string {
  if (data.byteLength < 6) return `option data of ${data.byteLength} bytes is shorter than 6`;
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > data.byteLength - 6) return `export name length ${nameBytes} exceeds the data`;
  const name = decodeString(data.subarray(4, 4 + nameBytes));
  if (name === undefined) return 'export name is not valid UTF-8 without NUL';
  const count = data.readUInt16BE(4 + nameBytes);
  if (data.byteLength !== 4 + nameBytes + 2 + 2 * count) {
    return `${count} information requests do not match the option length ${data.byteLength}`;
  }
  const infoRequests: number[] = [];
  for (let index = 0; index < count; index++) {
    infoRequests.push(data.readUInt16BE(4 + nameBytes + 2 + 2 * index));
  }
  return { name, infoRequests };
}

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data. */
export interface MetaContextRequest {
  readonly name: string;
  readonly queries: readonly string[];
}

/**
 * Parses meta context option data. Returns a reply type and message when it is invalid
 * (ERR_INVALID for bad syntax, ERR_TOO_BIG for too many queries).
 */
export function parseMetaContextOption(
  data: Buffer,
): MetaContextRequest | { replyType: number; message: string } {
  const invalid = (message: string) => ({ replyType: NbdReply.ERR_INVALID, message });
  if (data.byteLength < 8) return invalid(`option data of ${data.byteLength} bytes, not 8`);
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > data.byteLength - 8) {
    return invalid(`export name length ${nameBytes} exceeds the option data`);
  }
  const name = decodeString(data.subarray(4, 4 + nameBytes));
  if (name === undefined) return invalid('export name is not valid UTF-8 without NUL');
  let offset = 4 + nameBytes;
  const count = data.readUInt32BE(offset);
  offset += 4;
  if (count > META_QUERIES_MAX) {
    return { replyType: NbdReply.ERR_TOO_BIG, message: `more than ${META_QUERIES_MAX} queries` };
  }
  const queries: string[] = [];
  for (let index = 0; index < count; index++) {
    if (offset + 4 > data.byteLength) return invalid(`query ${index} lies beyond the option data`);
    const queryBytes = data.readUInt32BE(offset);
    offset += 4;
    if (queryBytes > data.byteLength - offset) {
      return invalid(`query ${index} length ${queryBytes} exceeds the option data`);
    }
    const query = decodeString(data.subarray(offset, offset + queryBytes));
    offset += queryBytes;
    if (query === undefined) return invalid(`query ${index} is not valid UTF-8 without NUL`);
    if (!query.includes(':')) return invalid(`query "${query}" has no namespace`);
    queries.push(query);
  }
  if (offset !== data.byteLength) {
    return invalid(`${data.byteLength - offset} bytes follow the last query`);
  }
  return { name, queries };
}

/** Decodes an NBD string: valid UTF-8, no NUL, at most STRING_BYTES_MAX bytes. */
export function decodeString(bytes: Buffer): string | undefined {
  if (bytes.byteLength > STRING_BYTES_MAX) return undefined;
  if (bytes.includes(0)) return undefined;
  const text = bytes.toString('utf8');
  // A round trip that changes the bytes means invalid UTF-8 was replaced.
  return Buffer.from(text, 'utf8').equals(bytes) ? text : undefined;
}

/** The NBD error value for an errno (the protocol's mapping: EFBIG and EDQUOT are ENOSPC). */
export function nbdErrorOf(errno: number): NbdError {
  switch (errno) {
    case Errno.EPERM:
    case Errno.EACCES:
    case Errno.EROFS:
      return NbdError.EPERM;
    case Errno.ENOMEM:
      return NbdError.ENOMEM;
    case Errno.EINVAL:
      return NbdError.EINVAL;
    case Errno.ENOSPC:
    case Errno.EFBIG:
    case 122: // EDQUOT
      return NbdError.ENOSPC;
    case Errno.EOVERFLOW:
      return NbdError.EOVERFLOW;
    case Errno.EOPNOTSUPP:
      return NbdError.ENOTSUP;
    default:
      return NbdError.EIO;
  }
}
