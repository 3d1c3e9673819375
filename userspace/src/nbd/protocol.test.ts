/**
 * Wire structs and option parsers: every encoder's bytes checked against proto.md's layout,
 * every parser fed valid, truncated, oversized and garbage input (it must return a reason,
 * never throw or read past the data).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Errno } from '../errno.js';
import {
  decodeRequest, decodeString, encodeBlockStatusChunk, encodeErrorChunk, encodeExportNameReply,
  encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeMetaContext, encodeOptionError,
  encodeServerReply, META_QUERIES_MAX, NBD_REQUEST_MAGIC, NbdError, NbdOption, NbdReply,
  nbdErrorOf, parseGoOption, parseMetaContextOption, REQUEST_BYTES, STRING_BYTES_MAX,
  writeSimpleReply,
} from './protocol.js';

function goData(
  name: string,
  infos: number[],
  options: { nameBytes?: number; count?: number } = {},
): Buffer {
  const nameBuffer = Buffer.from(name);
  const data = Buffer.alloc(4 + nameBuffer.byteLength + 2 + 2 * infos.length);
  data.writeUInt32BE(options.nameBytes ?? nameBuffer.byteLength, 0);
  nameBuffer.copy(data, 4);
  data.writeUInt16BE(options.count ?? infos.length, 4 + nameBuffer.byteLength);
  const first = 4 + nameBuffer.byteLength + 2;
  infos.forEach((info, index) => data.writeUInt16BE(info, first + 2 * index));
  return data;
}

function metaData(name: string, queries: string[], options: { count?: number } = {}): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4);
  head.writeUInt32BE(Buffer.byteLength(name));
  parts.push(head, Buffer.from(name));
  const count = Buffer.alloc(4);
  count.writeUInt32BE(options.count ?? queries.length);
  parts.push(count);
  for (const query of queries) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(Buffer.byteLength(query));
    parts.push(length, Buffer.from(query));
  }
  return Buffer.concat(parts);
}

describe('nbd protocol encoders', () => {
  it('greets with NBDMAGIC, IHAVEOPT and FIXED_NEWSTYLE | NO_ZEROES', () => {
    expect(encodeGreeting().toString('hex')).toBe('4e42444d41474943' + '49484156454f5054' + '0003');
  });

  it('lays out option replies, LIST entries and INFO records', () => {
    const error = encodeOptionError(NbdOption.GO, NbdReply.ERR_UNKNOWN, 'no');
    expect(error.readBigUInt64BE(0)).toBe(0x3e889045565a9n);
    expect(error.readUInt32BE(8)).toBe(NbdOption.GO);
    expect(error.readUInt32BE(12)).toBe(0x8000_0006);
    expect(error.readUInt32BE(16)).toBe(2);
    expect(error.subarray(20).toString()).toBe('no');
    const server = encodeServerReply('vm');
    expect(server.readUInt32BE(12)).toBe(NbdReply.SERVER);
    expect(server.readUInt32BE(16)).toBe(6);
    expect(server.readUInt32BE(20)).toBe(2);
    expect(server.subarray(24).toString()).toBe('vm');
    const info = encodeInfoExport(NbdOption.INFO, 2 ** 40 + 4096, 0x1234);
    expect(info.readUInt32BE(16)).toBe(12);
    expect(info.readUInt16BE(20)).toBe(0);
    expect(info.readBigUInt64BE(22)).toBe(2n ** 40n + 4096n);
    expect(info.readUInt16BE(30)).toBe(0x1234);
    const blockSizes = { minimumBytes: 1, preferredBytes: 4096, payloadBytesMax: 2 ** 25 };
    const sizes = encodeInfoBlockSize(NbdOption.GO, blockSizes);
    expect(sizes.readUInt32BE(16)).toBe(14);
    expect(sizes.readUInt16BE(20)).toBe(3);
    expect([22, 26, 30].map((at) => sizes.readUInt32BE(at))).toEqual([1, 4096, 2 ** 25]);
    const meta = encodeMetaContext(NbdOption.SET_META_CONTEXT, 1, 'base:allocation');
    expect(meta.readUInt32BE(20)).toBe(1);
    expect(meta.subarray(24).toString()).toBe('base:allocation');
  });

  it('cuts long error messages to the string limit on a character boundary', () => {
    const message = 'é'.repeat(STRING_BYTES_MAX);
    const reply = encodeOptionError(NbdOption.LIST, NbdReply.ERR_INVALID, message);
    const text = reply.subarray(20);
    expect(text.byteLength).toBeLessThanOrEqual(STRING_BYTES_MAX);
    expect(decodeString(text)).toBeDefined();
  });

  it('pads EXPORT_NAME replies with 124 zeroes unless the client opted out', () => {
    expect(encodeExportNameReply(8192, 1, true).byteLength).toBe(134);
    const short = encodeExportNameReply(8192, 0x0d, false);
    expect(short.toString('hex')).toBe('0000000000002000' + '000d');
  });

  it('lays out simple replies and structured chunks', () => {
    const cookie = Buffer.from('0102030405060708', 'hex');
    const simple = Buffer.alloc(16, 0xff);
    writeSimpleReply(simple, 0, NbdError.EINVAL, cookie);
    expect(simple.toString('hex')).toBe('67446698' + '00000016' + '0102030405060708');
    const error = encodeErrorChunk(cookie, NbdError.ENOSPC, 'full');
    expect(error.readUInt32BE(0)).toBe(0x668e33ef);
    expect(error.readUInt16BE(4)).toBe(1);
    expect(error.readUInt16BE(6)).toBe(0x8001);
    expect(error.subarray(8, 16)).toEqual(cookie);
    expect(error.readUInt32BE(16)).toBe(10);
    expect(error.readUInt32BE(20)).toBe(28);
    expect(error.readUInt16BE(24)).toBe(4);
    const extents = [{ lengthBytes: 4096, flags: 3 }, { lengthBytes: 512, flags: 0 }];
    const status = encodeBlockStatusChunk(cookie, 1, extents);
    expect(status.readUInt16BE(6)).toBe(5);
    expect(status.readUInt32BE(16)).toBe(4 + 16);
    expect([20, 24, 28, 32].map((at) => status.readUInt32BE(at))).toEqual([1, 4096, 3, 512]);
  });
});

describe('nbd protocol decoders', () => {
  it('decodes a request and refuses a bad magic', () => {
    const header = Buffer.alloc(REQUEST_BYTES);
    header.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(6, 6);
    header.write('cookie!!', 8);
    header.writeBigUInt64BE(2n ** 40n, 16);
    header.writeUInt32BE(65536, 24);
    expect(decodeRequest(header)).toEqual({
      flags: 1, type: 6, cookie: Buffer.from('cookie!!'), offsetBytes: 2 ** 40, lengthBytes: 65536,
    });
    header.writeBigUInt64BE(2n ** 64n - 1n, 16);
    expect(decodeRequest(header)?.offsetBytes).toBe(Number.POSITIVE_INFINITY);
    header.writeUInt32BE(0x25609514, 0);
    expect(decodeRequest(header)).toBeUndefined();
  });

  it('parses INFO/GO data and explains what is wrong with bad data', () => {
    expect(parseGoOption(goData('vm', [3, 1]))).toEqual({ name: 'vm', infoRequests: [3, 1] });
    expect(parseGoOption(goData('', []))).toEqual({ name: '', infoRequests: [] });
    expect(parseGoOption(Buffer.alloc(5))).toMatch(/shorter than 6/);
    expect(parseGoOption(goData('vm', [], { nameBytes: 4000 }))).toMatch(/exceeds/);
    expect(parseGoOption(goData('vm', [3], { count: 2 }))).toMatch(/do not match/);
    expect(parseGoOption(goData('v\u0000m', []))).toMatch(/UTF-8/);
    const invalidUtf8 = goData('ab', []);
    invalidUtf8[4] = 0xff;
    expect(parseGoOption(invalidUtf8)).toMatch(/UTF-8/);
  });

  it('parses meta context data and explains what is wrong with bad data', () => {
    expect(parseMetaContextOption(metaData('vm', ['base:allocation', 'qemu:dirty-bitmap:x'])))
      .toEqual({ name: 'vm', queries: ['base:allocation', 'qemu:dirty-bitmap:x'] });
    expect(parseMetaContextOption(metaData('vm', []))).toEqual({ name: 'vm', queries: [] });
    const invalid = (data: Buffer) =>
      (parseMetaContextOption(data) as { replyType: number }).replyType;
    expect(invalid(Buffer.alloc(7))).toBe(NbdReply.ERR_INVALID);
    expect(invalid(metaData('vm', ['base:allocation'], { count: 2 }))).toBe(NbdReply.ERR_INVALID);
    expect(invalid(metaData('vm', ['no-colon']))).toBe(NbdReply.ERR_INVALID);
    const trailing = Buffer.concat([metaData('vm', ['base:']), Buffer.alloc(3)]);
    expect(invalid(trailing)).toBe(NbdReply.ERR_INVALID);
    expect(invalid(metaData('vm', [], { count: META_QUERIES_MAX + 1 }))).toBe(NbdReply.ERR_TOO_BIG);
    const truncated = metaData('vm', ['base:allocation']);
    truncated.writeUInt32BE(1000, 10);
    expect(invalid(truncated)).toBe(NbdReply.ERR_INVALID);
  });

  it('never throws on random option data', () => {
    for (let round = 0; round < 20_000; round++) {
      const data = randomBytes(Math.floor(Math.random() * 64));
      // Small random lengths make the length fields plausible now and then.
      if (data.byteLength >= 4 && Math.random() < 0.5) {
        data.writeUInt32BE(Math.floor(Math.random() * data.byteLength), 0);
      }
      expect(() => parseGoOption(data)).not.toThrow();
      expect(() => parseMetaContextOption(data)).not.toThrow();
    }
  });

  it('decodes strings only when they are valid UTF-8 without NUL and short enough', () => {
    expect(decodeString(Buffer.from('volume-1'))).toBe('volume-1');
    expect(decodeString(Buffer.from([0x61, 0x00]))).toBeUndefined();
    expect(decodeString(Buffer.from([0xc3]))).toBeUndefined();
    expect(decodeString(Buffer.alloc(STRING_BYTES_MAX + 1, 0x61))).toBeUndefined();
  });

  it('maps errno values onto the protocol error set', () => {
    expect(nbdErrorOf(Errno.ENOSPC)).toBe(NbdError.ENOSPC);
    expect(nbdErrorOf(Errno.EFBIG)).toBe(NbdError.ENOSPC);
    expect(nbdErrorOf(Errno.EROFS)).toBe(NbdError.EPERM);
    expect(nbdErrorOf(Errno.EINVAL)).toBe(NbdError.EINVAL);
    expect(nbdErrorOf(Errno.ENOENT)).toBe(NbdError.EIO);
    expect(nbdErrorOf(Errno.EOPNOTSUPP)).toBe(NbdError.ENOTSUP);
  });
});
