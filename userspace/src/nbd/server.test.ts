/**
 * The NBD server against an in-memory catalog, driven by a raw client written from
 * proto.md: option haggling (every option, good and malformed), transmission (every command,
 * every refusal), ordering (out-of-order replies, DISC waiting for requests in flight, FUA and
 * FLUSH reaching the export), and a bounded-time fuzz of malformed handshakes and request
 * streams after which the server still serves a clean client and the export is intact.
 *
 * Method: a real NbdServer on a Unix socket in a temp folder; the export's operations take a
 * random few milliseconds, so replies come back in a different order than requests.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RELEASED, type ExportCatalog, type NbdExport } from './export.js';
import {
  NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_REQ_ONE,
  NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_DF,
  NBD_OPTION_MAGIC, NBD_REQUEST_MAGIC, NBD_STATE_HOLE, NbdCommand, NbdError, NbdOption, NbdReply,
  NbdReplyType, PAYLOAD_BYTES_MAX, WRITE_SKIP_BYTES_MAX, type Extent,
} from './protocol.js';
import { ClosedError, ReceiveQueue } from './receive-queue.js';
import { NbdServer } from './server.js';

const VOLUME_BYTES = 4 * 1024 * 1024;
const HOLE_BLOCK_BYTES = 64 * 1024;
const FUZZ_MS = 4000;

// ---- an in-memory catalog ----

interface MemoryVolume {
  readonly data: Buffer;
  readonly isReadOnly: boolean;
  /** Blocks ever written (for block status). */
  readonly written: Set<number>;
  flushes: number;
  writes: number;
  /** When set, writes are released (as if stored behind the reply) once it resolves. */
  releaseGate?: Promise<void>;
  /** Payloads the server changed before releasing them (must stay 0). */
  reusedBeforeRelease: number;
}

class MemoryCatalog implements ExportCatalog {
  readonly volumes = new Map<string, MemoryVolume>();
  opened = 0;
  released = 0;
  /** Writes completed but not yet covered by a flush. */
  unflushedWrites = 0;

  add(name: string, options: { isReadOnly?: boolean; sizeBytes?: number } = {}): MemoryVolume {
    const volume = {
      data: Buffer.alloc(options.sizeBytes ?? VOLUME_BYTES),
      isReadOnly: options.isReadOnly ?? false,
      written: new Set<number>(), flushes: 0, writes: 0, reusedBeforeRelease: 0,
    };
    this.volumes.set(name, volume);
    return volume;
  }

  names(): string[] {
    return [...this.volumes.keys()];
  }

  open(name: string): NbdExport | undefined {
    const volume = this.volumes.get(name);
    if (volume === undefined) return undefined;
    this.opened += 1;
    let isReleased = false;
    const mark = (offset: number, length: number) => {
      const last = Math.floor((offset + length - 1) / HOLE_BLOCK_BYTES);
      for (let block = Math.floor(offset / HOLE_BLOCK_BYTES); block <= last; block++) {
        volume.written.add(block);
      }
    };
    const delay = () => new Promise((resolve) => {
      setTimeout(resolve, Math.floor(Math.random() * 4));
    });
    const check = (offset: number, length: number) => {
      // The server validates first: an out-of-range call here is a server bug.
      if (offset < 0 || length < 0 || offset + length > volume.data.byteLength) {
        throw new Error(`out of range ${offset}+${length}`);
      }
    };
    return {
      name, description: `memory ${name}`, sizeBytes: volume.data.byteLength,
      isReadOnly: volume.isReadOnly,
      preferredBlockBytes: 4096,
      read: async (offset, length, target) => {
        check(offset, length);
        await delay();
        volume.data.copy(target, 0, offset, offset + length);
      },
      write: async (offset, data) => {
        check(offset, data.byteLength);
        if (volume.isReadOnly) throw new Error('write to read-only export');
        await delay();
        data.copy(volume.data, offset);
        mark(offset, data.byteLength);
        volume.writes += 1;
        this.unflushedWrites += 1;
        const gate = volume.releaseGate;
        if (gate === undefined) return RELEASED;
        const copy = Buffer.from(data);
        const released = gate.then(() => {
          if (!data.equals(copy)) volume.reusedBeforeRelease += 1;
        });
        return { released };
      },
      flush: async () => {
        const covered = this.unflushedWrites;
        await delay();
        this.unflushedWrites -= covered;
        volume.flushes += 1;
      },
      trim: async (offset, length) => {
        check(offset, length);
        volume.data.fill(0, offset, offset + length);
      },
      zero: async (offset, length) => {
        check(offset, length);
        await delay();
        volume.data.fill(0, offset, offset + length);
      },
      blockStatus: async (offset, length, extentsMax) => {
        check(offset, length);
        const extents: Extent[] = [];
        const end = offset + length;
        for (let position = offset; position < end && extents.length < extentsMax;) {
          const block = Math.floor(position / HOLE_BLOCK_BYTES);
          const stop = Math.min(end, (block + 1) * HOLE_BLOCK_BYTES);
          const flags = volume.written.has(block) ? 0 : NBD_STATE_HOLE;
          const last = extents.at(-1);
          if (last !== undefined && last.flags === flags) {
            const lengthBytes = last.lengthBytes + stop - position;
            extents[extents.length - 1] = { lengthBytes, flags };
          } else {
            extents.push({ lengthBytes: stop - position, flags });
          }
          position = stop;
        }
        return extents;
      },
      release: () => {
        if (isReleased) throw new Error('released twice');
        isReleased = true;
        this.released += 1;
      },
    };
  }
}

// ---- a raw client ----

/** Fields of a request a test sends (defaults: zero). */
interface RequestFields {
  flags?: number;
  offset?: number | bigint;
  length?: number;
  data?: Buffer;
}

const FAST_NO_HOLE = NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE;

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

function randomBelow(limit: number): number {
  return Math.floor(Math.random() * limit);
}

interface OptionReply {
  readonly option: number;
  readonly type: number;
  readonly data: Buffer;
}

interface Reply {
  readonly cookie: bigint;
  readonly error: number;
  readonly data: Buffer;
  /** Structured chunk type of the final chunk, or undefined for a simple reply. */
  readonly chunkTypes: number[];
}

class RawClient {
  readonly socket: Socket;
  readonly #queue: ReceiveQueue;
  readonly closed: Promise<void>;
  #cookie = 1n;
  /** Length of each pending read by cookie (a simple reply carries no length). */
  readonly #reads = new Map<bigint, number>();
  isStructured = false;

  private constructor(socket: Socket, queue: ReceiveQueue) {
    this.socket = socket;
    this.#queue = queue;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const queue = new ReceiveQueue();
      const socket = createConnection({ path, onread: queue.onread });
      queue.attach(socket);
      socket.once('connect', () => resolve(new RawClient(socket, queue)));
      socket.once('error', reject);
    });
  }

  async read(bytes: number): Promise<Buffer> {
    const buffer = Buffer.alloc(bytes);
    await this.#queue.read(buffer, 0, bytes);
    return buffer;
  }

  write(data: Buffer): void {
    this.socket.write(data);
  }

  /** Reads the greeting and answers with client flags. */
  async greet(flags = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES): Promise<Buffer> {
    const greeting = await this.read(18);
    const answer = Buffer.alloc(4);
    answer.writeUInt32BE(flags >>> 0);
    this.write(answer);
    return greeting;
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0), lengthBytes = data.byteLength): void {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(NBD_OPTION_MAGIC, 0);
    header.writeUInt32BE(option >>> 0, 8);
    header.writeUInt32BE(lengthBytes >>> 0, 12);
    this.write(header);
    if (data.byteLength > 0) this.write(data);
  }

  async optionReply(): Promise<OptionReply> {
    const header = await this.read(20);
    expect(header.readBigUInt64BE(0)).toBe(0x3e889045565a9n);
    const data = await this.read(header.readUInt32BE(16));
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data };
  }

  /** Sends an option and collects replies up to the final one (ACK or an error). */
  async option(option: number, data?: Buffer): Promise<OptionReply[]> {
    this.sendOption(option, data);
    const replies: OptionReply[] = [];
    for (;;) {
      const reply = await this.optionReply();
      expect(reply.option).toBe(option);
      replies.push(reply);
      if (reply.type === NbdReply.ACK || (reply.type & 0x8000_0000) !== 0) return replies;
    }
  }

  go(name: string, infos: number[] = [], option: number = NbdOption.GO): Promise<OptionReply[]> {
    return this.option(option, goData(name, infos));
  }

  /** Greets, negotiates structured replies when asked, and enters transmission on `name`. */
  async open(
    name: string,
    options: { structured?: boolean; metaContext?: boolean } = {},
  ): Promise<{ sizeBytes: number; flags: number }> {
    await this.greet();
    if (options.structured === true) {
      expect((await this.option(NbdOption.STRUCTURED_REPLY)).at(-1)?.type).toBe(NbdReply.ACK);
      this.isStructured = true;
    }
    if (options.metaContext === true) {
      const data = metaData(name, ['base:allocation']);
      const replies = await this.option(NbdOption.SET_META_CONTEXT, data);
      expect(replies.map((reply) => reply.type)).toEqual([NbdReply.META_CONTEXT, NbdReply.ACK]);
    }
    const replies = await this.go(name);
    expect(replies.at(-1)?.type).toBe(NbdReply.ACK);
    const exportInfo = replies.find((reply) =>
      reply.type === NbdReply.INFO && reply.data.readUInt16BE(0) === 0);
    expect(exportInfo).toBeDefined();
    return {
      sizeBytes: Number(exportInfo?.data.readBigUInt64BE(2)),
      flags: exportInfo?.data.readUInt16BE(10) ?? 0,
    };
  }

  /** Sends a request; returns its cookie. */
  request(type: number, fields: RequestFields = {}): bigint {
    const cookie = this.#cookie;
    this.#cookie += 1n;
    const header = Buffer.alloc(28);
    header.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    header.writeUInt16BE(fields.flags ?? 0, 4);
    header.writeUInt16BE(type, 6);
    header.writeBigUInt64BE(cookie, 8);
    header.writeBigUInt64BE(BigInt(fields.offset ?? 0), 16);
    header.writeUInt32BE(fields.length ?? fields.data?.byteLength ?? 0, 24);
    this.write(header);
    if (fields.data !== undefined) this.write(fields.data);
    if (type === NbdCommand.READ) this.#reads.set(cookie, fields.length ?? 0);
    return cookie;
  }

  /** Reads one whole reply (all chunks of a structured one). */
  async reply(): Promise<Reply> {
    const magic = (await this.read(4)).readUInt32BE(0);
    if (magic === 0x67446698) {
      const rest = await this.read(12);
      const cookie = rest.readBigUInt64BE(4);
      const error = rest.readUInt32BE(0);
      const readBytes = this.#reads.get(cookie);
      this.#reads.delete(cookie);
      const hasData = readBytes !== undefined && error === 0;
      const data = hasData ? await this.read(readBytes) : Buffer.alloc(0);
      return { cookie, error, data, chunkTypes: [] };
    }
    expect(magic).toBe(0x668e33ef);
    const chunkTypes: number[] = [];
    const parts: Buffer[] = [];
    let error = 0;
    let cookie = 0n;
    for (let isFirst = true; ; isFirst = false) {
      const header = isFirst ? await this.read(16) : (await this.read(20)).subarray(4);
      const flags = header.readUInt16BE(0);
      const type = header.readUInt16BE(2);
      cookie = header.readBigUInt64BE(4);
      const payload = await this.read(header.readUInt32BE(12));
      chunkTypes.push(type);
      if ((type & 0x8000) !== 0) error = payload.readUInt32BE(0);
      else if (type === NbdReplyType.OFFSET_DATA) parts.push(payload.subarray(8));
      else if (type === NbdReplyType.BLOCK_STATUS) parts.push(payload);
      if ((flags & 1) !== 0) break;
    }
    this.#reads.delete(cookie);
    return { cookie, error, data: Buffer.concat(parts), chunkTypes };
  }

  /** Collects `count` replies, keyed by cookie. */
  async replies(count: number): Promise<Map<bigint, Reply>> {
    const replies = new Map<bigint, Reply>();
    for (let index = 0; index < count; index++) {
      const reply = await this.reply();
      replies.set(reply.cookie, reply);
    }
    return replies;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function goData(name: string, infos: number[]): Buffer {
  const nameBuffer = Buffer.from(name);
  const data = Buffer.alloc(4 + nameBuffer.byteLength + 2 + 2 * infos.length);
  data.writeUInt32BE(nameBuffer.byteLength, 0);
  nameBuffer.copy(data, 4);
  data.writeUInt16BE(infos.length, 4 + nameBuffer.byteLength);
  const first = 4 + nameBuffer.byteLength + 2;
  infos.forEach((info, index) => data.writeUInt16BE(info, first + 2 * index));
  return data;
}

function metaData(name: string, queries: string[]): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(8 + Buffer.byteLength(name));
  head.writeUInt32BE(Buffer.byteLength(name), 0);
  head.write(name, 4);
  head.writeUInt32BE(queries.length, 4 + Buffer.byteLength(name));
  parts.push(head);
  for (const query of queries) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(Buffer.byteLength(query));
    parts.push(length, Buffer.from(query));
  }
  return Buffer.concat(parts);
}

// ---- the tests ----

let root: string;
let socketPath: string;
let catalog: MemoryCatalog;
let server: NbdServer;
const reports: string[] = [];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'shmr-nbd-'));
  socketPath = join(root, 'nbd.sock');
  catalog = new MemoryCatalog();
  catalog.add('vm');
  catalog.add('ro', { isReadOnly: true });
  catalog.add('fuzz');
  catalog.add('guard');
  const report = (message: string) => reports.push(message);
  server = await NbdServer.start(catalog, { socketPath, tcp: undefined }, report);
});

afterAll(async () => {
  await server.close();
  rmSync(root, { recursive: true, force: true });
});

async function waitForIdleServer(): Promise<void> {
  for (let round = 0; round < 200 && server.connectionCount > 0; round++) await sleep(10);
  expect(server.connectionCount).toBe(0);
  expect(catalog.released).toBe(catalog.opened);
}

describe('nbd handshake', () => {
  it('greets with fixed newstyle and closes on unknown client flags', async () => {
    const client = await RawClient.connect(socketPath);
    const greeting = await client.greet(0x80);
    expect(greeting.readBigUInt64BE(0)).toBe(0x4e42444d41474943n);
    expect(greeting.readBigUInt64BE(8)).toBe(0x49484156454f5054n);
    expect(greeting.readUInt16BE(16)).toBe(3);
    await client.closed;
  });

  it('lists exports, refuses LIST with data, answers unknown options with ERR_UNSUP', async () => {
    const client = await RawClient.connect(socketPath);
    await client.greet();
    const list = await client.option(NbdOption.LIST);
    const names = list.filter((reply) => reply.type === NbdReply.SERVER)
      .map((reply) => reply.data.subarray(4).toString());
    expect(names).toEqual(['vm', 'ro', 'fuzz', 'guard']);
    expect(list.at(-1)?.type).toBe(NbdReply.ACK);
    const withData = await client.option(NbdOption.LIST, Buffer.from('x'));
    expect(withData[0]?.type).toBe(NbdReply.ERR_INVALID);
    expect((await client.option(NbdOption.STARTTLS))[0]?.type).toBe(NbdReply.ERR_UNSUP);
    expect((await client.option(NbdOption.PEEK_EXPORT))[0]?.type).toBe(NbdReply.ERR_UNSUP);
    expect((await client.option(0xdead_beef))[0]?.type).toBe(NbdReply.ERR_UNSUP);
    expect((await client.option(NbdOption.ABORT))[0]?.type).toBe(NbdReply.ACK);
    await client.closed;
  });

  it('answers INFO with export, name and sizes; unknown or malformed names fail', async () => {
    const client = await RawClient.connect(socketPath);
    await client.greet();
    const info = await client.go('vm', [1, 2, 3], NbdOption.INFO);
    const byInfo = new Map(info.filter((reply) => reply.type === NbdReply.INFO)
      .map((reply) => [reply.data.readUInt16BE(0), reply.data]));
    expect(Number(byInfo.get(0)?.readBigUInt64BE(2))).toBe(VOLUME_BYTES);
    expect(byInfo.get(1)?.subarray(2).toString()).toBe('vm');
    expect(byInfo.get(2)?.subarray(2).toString()).toBe('memory vm');
    expect(byInfo.get(3)?.readUInt32BE(2)).toBe(1);
    expect(byInfo.get(3)?.readUInt32BE(10)).toBe(PAYLOAD_BYTES_MAX);
    expect(info.at(-1)?.type).toBe(NbdReply.ACK);
    expect((await client.go('nope', [], NbdOption.INFO)).at(-1)?.type).toBe(NbdReply.ERR_UNKNOWN);
    expect((await client.go('', [], NbdOption.GO)).at(-1)?.type).toBe(NbdReply.ERR_UNKNOWN);
    const bad = goData('vm', [3]);
    bad.writeUInt16BE(7, 6);
    expect((await client.option(NbdOption.GO, bad)).at(-1)?.type).toBe(NbdReply.ERR_INVALID);
    const short = await client.option(NbdOption.GO, Buffer.alloc(3));
    expect(short.at(-1)?.type).toBe(NbdReply.ERR_INVALID);
    // Still usable after all those errors.
    expect((await client.go('vm')).at(-1)?.type).toBe(NbdReply.ACK);
    client.request(NbdCommand.DISC);
    await client.closed;
    await waitForIdleServer();
  });

  it('discards oversized option data with ERR_TOO_BIG and goes on', async () => {
    const client = await RawClient.connect(socketPath);
    await client.greet();
    client.sendOption(NbdOption.GO, Buffer.alloc(200_000), 200_000);
    expect((await client.optionReply()).type).toBe(NbdReply.ERR_TOO_BIG);
    expect((await client.option(NbdOption.LIST)).at(-1)?.type).toBe(NbdReply.ACK);
    client.destroy();
  });

  it('negotiates meta contexts only after structured replies', async () => {
    const client = await RawClient.connect(socketPath);
    await client.greet();
    const allocation = metaData('vm', ['base:allocation']);
    const early = await client.option(NbdOption.SET_META_CONTEXT, allocation);
    expect(early[0]?.type).toBe(NbdReply.ERR_INVALID);
    await client.option(NbdOption.STRUCTURED_REPLY);
    const listed = await client.option(NbdOption.LIST_META_CONTEXT, metaData('vm', []));
    expect(listed.map((reply) => reply.type)).toEqual([NbdReply.META_CONTEXT, NbdReply.ACK]);
    expect(listed[0]?.data.subarray(4).toString()).toBe('base:allocation');
    const queries = metaData('vm', ['qemu:dirty-bitmap:x', 'base:']);
    const other = await client.option(NbdOption.SET_META_CONTEXT, queries);
    expect(other.map((reply) => reply.type)).toEqual([NbdReply.ACK]);
    const unknown = metaData('nope', ['base:allocation']);
    expect((await client.option(NbdOption.SET_META_CONTEXT, unknown))[0]?.type)
      .toBe(NbdReply.ERR_UNKNOWN);
    client.destroy();
  });

  it('enters transmission by EXPORT_NAME (zeroes or not), hangs up on unknown', async () => {
    const fixed = NBD_FLAG_C_FIXED_NEWSTYLE;
    for (const flags of [fixed, fixed | NBD_FLAG_C_NO_ZEROES]) {
      const client = await RawClient.connect(socketPath);
      await client.greet(flags);
      client.sendOption(NbdOption.EXPORT_NAME, Buffer.from('vm'));
      const reply = await client.read((flags & NBD_FLAG_C_NO_ZEROES) !== 0 ? 10 : 134);
      expect(Number(reply.readBigUInt64BE(0))).toBe(VOLUME_BYTES);
      const cookie = client.request(NbdCommand.READ, { offset: 0, length: 512 });
      expect((await client.reply()).cookie).toBe(cookie);
      client.request(NbdCommand.DISC);
      await client.closed;
    }
    const client = await RawClient.connect(socketPath);
    await client.greet();
    client.sendOption(NbdOption.EXPORT_NAME, Buffer.from('nope'));
    await client.closed;
    await waitForIdleServer();
  });

  it('hangs up on a bad option magic', async () => {
    const client = await RawClient.connect(socketPath);
    await client.greet();
    client.write(Buffer.alloc(16, 0x41));
    await client.closed;
  });
});

describe('nbd transmission', () => {
  it('writes, reads back, flushes and zeroes, with simple and structured replies', async () => {
    for (const structured of [false, true]) {
      const client = await RawClient.connect(socketPath);
      const { sizeBytes, flags } = await client.open('vm', { structured });
      expect(sizeBytes).toBe(VOLUME_BYTES);
      expect((flags & NBD_FLAG_SEND_DF) !== 0).toBe(structured);
      const data = randomBytes(200_000);
      const write = client.request(NbdCommand.WRITE, { offset: 12_345, data });
      expect((await client.reply())).toMatchObject({ cookie: write, error: 0 });
      client.request(NbdCommand.READ, { offset: 12_345, length: data.byteLength });
      expect((await client.reply()).data.equals(data)).toBe(true);
      client.request(NbdCommand.FLUSH);
      expect((await client.reply()).error).toBe(0);
      const noHole = { offset: 12_345, length: 100_000, flags: NBD_CMD_FLAG_NO_HOLE };
      client.request(NbdCommand.WRITE_ZEROES, noHole);
      expect((await client.reply()).error).toBe(0);
      client.request(NbdCommand.READ, { offset: 12_345, length: data.byteLength });
      const after = (await client.reply()).data;
      expect(after.subarray(0, 100_000).every((byte) => byte === 0)).toBe(true);
      expect(after.subarray(100_000).equals(data.subarray(100_000))).toBe(true);
      client.request(NbdCommand.READ, { offset: 0, length: 0 });
      expect((await client.reply()).error).toBe(0);
      client.request(NbdCommand.CACHE, { offset: 0, length: 4096 });
      expect((await client.reply()).error).toBe(0);
      client.request(NbdCommand.DISC);
      await client.closed;
    }
    await waitForIdleServer();
  });

  it('refuses bad requests with the protocol error and stays usable', async () => {
    const client = await RawClient.connect(socketPath);
    await client.open('vm');
    const cases: [number, RequestFields, number][] = [
      [NbdCommand.READ, { offset: VOLUME_BYTES - 10, length: 11 }, NbdError.EINVAL],
      [NbdCommand.READ, { offset: 2n ** 64n - 1n, length: 1 }, NbdError.EINVAL],
      [NbdCommand.WRITE, { offset: VOLUME_BYTES, data: Buffer.alloc(1) }, NbdError.ENOSPC],
      [NbdCommand.WRITE_ZEROES, { offset: VOLUME_BYTES - 1, length: 2 }, NbdError.ENOSPC],
      [NbdCommand.TRIM, { offset: VOLUME_BYTES, length: 1 }, NbdError.EINVAL],
      [NbdCommand.FLUSH, { offset: 1 }, NbdError.EINVAL],
      [NbdCommand.READ, { length: PAYLOAD_BYTES_MAX + 1 }, NbdError.EINVAL],
      [NbdCommand.READ, { flags: 0x40, length: 1 }, NbdError.EINVAL],
      [NbdCommand.WRITE, { flags: NBD_CMD_FLAG_NO_HOLE, data: Buffer.alloc(1) }, NbdError.EINVAL],
      // DF without structured replies.
      [NbdCommand.READ, { flags: 1 << 2, length: 1 }, NbdError.EINVAL],
      [NbdCommand.BLOCK_STATUS, { length: 4096 }, NbdError.EINVAL], // no meta context selected
      [NbdCommand.WRITE_ZEROES, { flags: FAST_NO_HOLE, length: 4096 }, NbdError.ENOTSUP],
      [9, {}, NbdError.EINVAL],
      [0xffff, { offset: 5, length: 5 }, NbdError.EINVAL],
    ];
    for (const [type, fields, error] of cases) {
      const cookie = client.request(type, fields);
      const reply = await client.reply();
      expect({ type, cookie: reply.cookie, error: reply.error }).toEqual({ type, cookie, error });
    }
    // An oversized write: its payload is skipped, and the next request parses.
    const oversized = Buffer.alloc(PAYLOAD_BYTES_MAX + 4096, 0x77);
    client.request(NbdCommand.WRITE, { offset: 0, data: oversized });
    expect((await client.reply()).error).toBe(NbdError.EINVAL);
    client.request(NbdCommand.READ, { offset: 0, length: 4096 });
    const reply = await client.reply();
    expect(reply.error).toBe(0);
    expect(reply.data.includes(0x77)).toBe(false);
    client.request(NbdCommand.DISC);
    await client.closed;
  });

  it('refuses writes to a read-only export with EPERM', async () => {
    const client = await RawClient.connect(socketPath);
    const { flags } = await client.open('ro', { structured: true });
    expect(flags & NBD_FLAG_READ_ONLY).toBe(NBD_FLAG_READ_ONLY);
    for (const type of [NbdCommand.WRITE, NbdCommand.TRIM, NbdCommand.WRITE_ZEROES]) {
      const isWrite = type === NbdCommand.WRITE;
      client.request(type, isWrite ? { data: Buffer.alloc(10, 1) } : { length: 10 });
      const reply = await client.reply();
      expect(reply.error).toBe(NbdError.EPERM);
      expect(reply.chunkTypes).toEqual([NbdReplyType.ERROR]);
    }
    expect(catalog.volumes.get('ro')?.data.every((byte) => byte === 0)).toBe(true);
    client.request(NbdCommand.DISC);
    await client.closed;
  });

  it('closes on a write too large to skip, and on a bad request magic', async () => {
    const client = await RawClient.connect(socketPath);
    await client.open('vm');
    client.request(NbdCommand.WRITE, { length: WRITE_SKIP_BYTES_MAX + 1 });
    await client.closed;
    const other = await RawClient.connect(socketPath);
    await other.open('vm');
    other.write(Buffer.alloc(28, 0x55));
    await other.closed;
    await waitForIdleServer();
  });

  it('takes a write sent in many small pieces; one cut off mid-payload writes nothing', async () => {
    const client = await RawClient.connect(socketPath);
    await client.open('vm');
    const offset = 3_000_000;
    const data = randomBytes(1_000_000);
    const write = client.request(NbdCommand.WRITE, { offset, length: data.byteLength });
    for (let at = 0; at < data.byteLength; at += 9_999) {
      client.write(data.subarray(at, at + 9_999));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await client.reply()).toMatchObject({ cookie: write, error: 0 });
    client.request(NbdCommand.READ, { offset, length: data.byteLength });
    expect((await client.reply()).data.equals(data)).toBe(true);
    const reportsBefore = reports.length;
    client.request(NbdCommand.WRITE, { offset, length: data.byteLength });
    client.write(randomBytes(data.byteLength / 2));
    client.socket.end();
    await client.closed;
    await waitForIdleServer();
    expect(reports.slice(reportsBefore)).toEqual([]);
    const reader = await RawClient.connect(socketPath);
    await reader.open('vm');
    reader.request(NbdCommand.READ, { offset, length: data.byteLength });
    expect((await reader.reply()).data.equals(data)).toBe(true);
    reader.request(NbdCommand.DISC);
    await reader.closed;
    await waitForIdleServer();
  });

  it('serves many requests in flight, replying out of order, each to its cookie', async () => {
    const client = await RawClient.connect(socketPath);
    await client.open('vm', { structured: true });
    const expected = new Map<bigint, Buffer>();
    const model = Buffer.alloc(VOLUME_BYTES);
    catalog.volumes.get('vm')?.data.copy(model);
    for (let index = 0; index < 300; index++) {
      const offset = index * 8192;
      const data = randomBytes(8192);
      data.copy(model, offset);
      const flags = index % 50 === 0 ? NBD_CMD_FLAG_FUA : 0;
      client.request(NbdCommand.WRITE, { offset, data, flags });
    }
    const writes = await client.replies(300);
    expect([...writes.values()].every((reply) => reply.error === 0)).toBe(true);
    for (let index = 0; index < 300; index++) {
      const cookie = client.request(NbdCommand.READ, { offset: index * 8192, length: 8192 });
      expect.soft(cookie).toBeGreaterThan(0n);
      expected.set(cookie, model.subarray(index * 8192, (index + 1) * 8192));
    }
    const order: bigint[] = [];
    for (let index = 0; index < 300; index++) {
      const reply = await client.reply();
      order.push(reply.cookie);
      expect(reply.data.equals(expected.get(reply.cookie) ?? Buffer.alloc(0))).toBe(true);
    }
    expect(new Set(order).size).toBe(300);
    expect(order).not.toEqual([...order].sort((left, right) => (left < right ? -1 : 1)));
    client.request(NbdCommand.DISC);
    await client.closed;
  });

  it('answers FLUSH after the writes before it are flushed, DISC after every request', async () => {
    const client = await RawClient.connect(socketPath);
    await client.open('vm');
    catalog.unflushedWrites = 0;
    const write = (index: number) =>
      client.request(NbdCommand.WRITE, { offset: index * 512, data: randomBytes(512) });
    for (let index = 0; index < 20; index++) write(index);
    await client.replies(20);
    client.request(NbdCommand.FLUSH);
    expect((await client.reply()).error).toBe(0);
    expect(catalog.unflushedWrites).toBe(0);
    const writes = Array.from({ length: 10 }, (_, index) => write(index));
    client.request(NbdCommand.DISC);
    const replies = await client.replies(10);
    expect([...replies.keys()].sort()).toEqual(writes.sort());
    await client.closed;
    await waitForIdleServer();
  });

  it('replies to writes before the export releases their payloads, reusing none early', async () => {
    const volume = catalog.add('behind');
    let openGate!: () => void;
    volume.releaseGate = new Promise((resolve) => {
      openGate = resolve;
    });
    const client = await RawClient.connect(socketPath);
    await client.open('behind');
    const chunkBytes = 64 * 1024;
    const batches = [randomBytes(16 * chunkBytes), randomBytes(16 * chunkBytes)];
    const batchOffset = (batch: number) => batch * (VOLUME_BYTES / 2);
    for (const [batch, data] of batches.entries()) {
      for (let index = 0; index < 16; index++) {
        const piece = data.subarray(index * chunkBytes, (index + 1) * chunkBytes);
        client.request(NbdCommand.WRITE, { offset: batchOffset(batch) + index * chunkBytes, data: piece });
      }
      // Every reply arrives while all payloads are still held by the export.
      const replies = await client.replies(16);
      expect([...replies.values()].map((reply) => reply.error)).toEqual(Array(16).fill(0));
    }
    let isClosed = false;
    void client.closed.then(() => {
      isClosed = true;
    });
    client.request(NbdCommand.DISC);
    await sleep(50);
    expect(isClosed).toBe(false);
    openGate();
    await client.closed;
    expect(volume.reusedBeforeRelease).toBe(0);
    for (const [batch, data] of batches.entries()) {
      const start = batchOffset(batch);
      expect(volume.data.subarray(start, start + data.byteLength).equals(data)).toBe(true);
    }
    await waitForIdleServer();
  });

  it('reports block status of the selected context, one extent with REQ_ONE', async () => {
    const client = await RawClient.connect(socketPath);
    await client.open('guard', { structured: true, metaContext: true });
    const data = Buffer.alloc(HOLE_BLOCK_BYTES, 1);
    client.request(NbdCommand.WRITE, { offset: HOLE_BLOCK_BYTES, data });
    await client.reply();
    client.request(NbdCommand.BLOCK_STATUS, { offset: 0, length: 3 * HOLE_BLOCK_BYTES });
    const status = await client.reply();
    expect(status.chunkTypes).toEqual([NbdReplyType.BLOCK_STATUS]);
    const words = Array.from({ length: (status.data.byteLength - 4) / 4 },
      (_, index) => status.data.readUInt32BE(4 + 4 * index));
    expect(status.data.readUInt32BE(0)).toBe(1);
    const block = HOLE_BLOCK_BYTES;
    expect(words).toEqual([block, NBD_STATE_HOLE, block, 0, block, NBD_STATE_HOLE]);
    const one = { offset: 0, length: 3 * block, flags: NBD_CMD_FLAG_REQ_ONE };
    client.request(NbdCommand.BLOCK_STATUS, one);
    expect((await client.reply()).data.byteLength).toBe(4 + 8);
    client.request(NbdCommand.BLOCK_STATUS, { offset: VOLUME_BYTES, length: 1 });
    expect((await client.reply()).error).toBe(NbdError.EINVAL);
    client.request(NbdCommand.DISC);
    await client.closed;
  });
});

describe('nbd fuzz', () => {
  it(`survives ${FUZZ_MS} ms of malformed handshakes and requests, export intact`, async () => {
    const guard = catalog.volumes.get('guard');
    expect(guard).toBeDefined();
    const guardCopy = Buffer.from(guard?.data ?? Buffer.alloc(0));
    const reportsBefore = reports.length;
    const deadline = Date.now() + FUZZ_MS;
    let sessions = 0;
    while (Date.now() < deadline) {
      sessions += 1;
      await fuzzSession(Math.random());
    }
    expect(sessions).toBeGreaterThan(20);
    // The fuzz reached the transmission phase, and some of its requests were served.
    expect(catalog.volumes.get('fuzz')?.writes).toBeGreaterThan(0);
    await waitForIdleServer();
    // Misbehaviour is logged, but no request ever reached a bug.
    expect(reports.length).toBeGreaterThan(reportsBefore);
    const bugs = reports.filter((line) => /bug|connection failed/.test(line));
    expect(bugs).toEqual([]);
    // The guard export was never opened by the fuzzer: not one byte changed.
    expect(guard?.data.equals(guardCopy)).toBe(true);
    // And a well-behaved client is served as before.
    const client = await RawClient.connect(socketPath);
    await client.open('guard');
    client.request(NbdCommand.READ, { offset: 0, length: VOLUME_BYTES });
    expect((await client.reply()).data.equals(guardCopy)).toBe(true);
    client.request(NbdCommand.DISC);
    await client.closed;
  }, FUZZ_MS + 60_000);
});

/** One client session: garbage, a mutated handshake, or a mutated request stream. */
async function fuzzSession(choice: number): Promise<void> {
  const client = await RawClient.connect(socketPath);
  client.socket.on('data', () => undefined);
  const pieces: Buffer[] = [];
  if (choice < 0.2) {
    pieces.push(randomBytes(Math.floor(Math.random() * 200)));
  } else {
    pieces.push(u32(Math.random() < 0.9 ? 3 : Math.floor(Math.random() * 2 ** 32)));
    const options = Math.floor(Math.random() * 6);
    for (let index = 0; index < options; index++) pieces.push(mutate(randomOption()));
    if (choice > 0.5) {
      pieces.push(optionBytes(NbdOption.STRUCTURED_REPLY, Buffer.alloc(0)));
      pieces.push(optionBytes(NbdOption.SET_META_CONTEXT, metaData('fuzz', ['base:allocation'])));
      pieces.push(optionBytes(NbdOption.GO, goData('fuzz', [3])));
      const requests = Math.floor(Math.random() * 40);
      for (let index = 0; index < requests; index++) pieces.push(mutate(randomRequest()));
    }
  }
  // Dribble the bytes out in random slices, as a network would.
  const stream = Buffer.concat(pieces);
  for (let at = 0; at < stream.byteLength;) {
    const slice = Math.max(1, Math.floor(Math.random() * 4096));
    client.write(stream.subarray(at, at + slice));
    at += slice;
  }
  // Leave some sessions half-open, hang up on others at once.
  await new Promise((resolve) => setTimeout(resolve, Math.random() < 0.5 ? 0 : 20));
  client.destroy();
  await client.closed.catch((error: unknown) => {
    if (!(error instanceof ClosedError)) throw error;
  });
}

function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value >>> 0);
  return buffer;
}

function optionBytes(option: number, data: Buffer, lengthBytes = data.byteLength): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(NBD_OPTION_MAGIC, 0);
  header.writeUInt32BE(option >>> 0, 8);
  header.writeUInt32BE(lengthBytes >>> 0, 12);
  return Buffer.concat([header, data]);
}

function randomOption(): Buffer {
  const option = Math.floor(Math.random() * 13);
  const name = ['fuzz', '', 'nope', 'guard\u0000'][Math.floor(Math.random() * 4)] ?? '';
  if (option === NbdOption.GO || option === NbdOption.INFO) {
    // GO of anything but 'fuzz' fails; a 'guard' GO would be a fuzz bug, so it never is one.
    const code = option === NbdOption.GO ? NbdOption.INFO : option;
    return optionBytes(code, goData(name, [0, 1, 2, 3, 9]));
  }
  if (option === NbdOption.SET_META_CONTEXT || option === NbdOption.LIST_META_CONTEXT) {
    return optionBytes(option, metaData(name, ['base:allocation', 'base:', 'x:y']));
  }
  if (option === NbdOption.EXPORT_NAME) return optionBytes(option, Buffer.from('nope'));
  return optionBytes(option, randomBytes(Math.floor(Math.random() * 8)));
}

function randomRequest(): Buffer {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  header.writeUInt16BE(Math.random() < 0.8 ? randomBelow(2) : randomBelow(0x10000), 4);
  const type = Math.random() < 0.9 ? randomBelow(8) : randomBelow(0x10000);
  header.writeUInt16BE(type, 6);
  header.writeBigUInt64BE(BigInt(Math.floor(Math.random() * 2 ** 53)), 8);
  const offset = Math.random() < 0.8 ? randomBelow(VOLUME_BYTES) : randomBelow(2 ** 53);
  header.writeBigUInt64BE(BigInt(offset), 16);
  const length = Math.random() < 0.8 ? randomBelow(65536) : randomBelow(2 ** 32);
  header.writeUInt32BE(length, 24);
  if (type === NbdCommand.WRITE && length <= 65536) {
    return Buffer.concat([header, randomBytes(length)]);
  }
  return header;
}

/** Flips, drops or duplicates a few bytes now and then. */
function mutate(bytes: Buffer): Buffer {
  if (Math.random() < 0.6) return bytes;
  const copy = Buffer.from(bytes);
  const edits = 1 + Math.floor(Math.random() * 3);
  for (let index = 0; index < edits && copy.byteLength > 0; index++) {
    copy[Math.floor(Math.random() * copy.byteLength)] = Math.floor(Math.random() * 256);
  }
  if (Math.random() < 0.2) return copy.subarray(0, Math.floor(Math.random() * copy.byteLength));
  return copy;
}
