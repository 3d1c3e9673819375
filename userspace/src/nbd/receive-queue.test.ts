import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RECEIVE_QUEUE_BYTES_MAX } from './protocol.js';
import { ClosedError, ReceiveQueue } from './receive-queue.js';

/** A Unix socket pair: the server side adopted by a ReceiveQueue, the client side plain. */
interface Pair {
  readonly queue: ReceiveQueue;
  readonly served: Socket;
  readonly client: Socket;
}

let root: string;
let server: Server;
let accepted: Promise<{ socket: Socket; queue: ReceiveQueue }>;

beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), 'shmr-receive-queue-'));
  server = createServer({ pauseOnConnect: true });
  accepted = new Promise((resolve) => {
    server.once('connection', (socket) => resolve(ReceiveQueue.adopt(socket)));
  });
  await new Promise<void>((resolve) => server.listen(join(root, 'q.sock'), resolve));
});

afterEach(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(root, { recursive: true, force: true });
});

async function connect(): Promise<Pair> {
  const client = createConnection(join(root, 'q.sock'));
  client.on('error', () => undefined);
  const { socket, queue } = await accepted;
  socket.on('error', () => undefined);
  return { queue, served: socket, client };
}

/** Writes `data` in pieces of `pieceBytes`, each its own socket write after the last drained. */
async function writeInPieces(socket: Socket, data: Buffer, pieceBytes: number): Promise<void> {
  for (let at = 0; at < data.byteLength; at += pieceBytes) {
    const piece = data.subarray(at, Math.min(data.byteLength, at + pieceBytes));
    await new Promise<void>((resolve, reject) => {
      socket.write(piece, (error) => (error ? reject(error) : resolve()));
    });
  }
}

describe('ReceiveQueue', () => {
  it('reads exact headers and payloads written in many small pieces, skipping between', async () => {
    const { queue, served, client } = await connect();
    const messages = [1, 28, 4096, 4097, 300_000, 2 * 1024 * 1024 + 3].map((n) => randomBytes(n));
    const stream = Buffer.concat(messages.flatMap((m) => [m, randomBytes(7)]));
    const writing = writeInPieces(client, stream, 997);
    for (const message of messages) {
      const target = Buffer.alloc(message.byteLength + 10);
      await queue.read(target, 5, message.byteLength);
      expect(target.subarray(5, 5 + message.byteLength).equals(message)).toBe(true);
      expect(target.subarray(0, 5).equals(Buffer.alloc(5))).toBe(true);
      expect(target.subarray(5 + message.byteLength).equals(Buffer.alloc(5))).toBe(true);
      await queue.skip(7);
    }
    await writing;
    expect(queue.queuedBytes).toBe(0);
    served.destroy();
  });

  it('reads a large payload sent in one write, then what follows it', async () => {
    const { queue, served, client } = await connect();
    const payload = randomBytes(8 * 1024 * 1024);
    const after = randomBytes(28);
    client.write(Buffer.concat([payload, after]));
    const target = Buffer.alloc(payload.byteLength);
    await queue.read(target, 0, payload.byteLength);
    expect(target.equals(payload)).toBe(true);
    const tail = Buffer.alloc(28);
    await queue.read(tail, 0, 28);
    expect(tail.equals(after)).toBe(true);
    served.destroy();
  });

  it('stops reading the socket while enough is queued and nobody reads', async () => {
    const { queue, served, client } = await connect();
    const data = randomBytes(16 * RECEIVE_QUEUE_BYTES_MAX);
    let isWritten = false;
    client.write(data, () => {
      isWritten = true;
    });
    const first = Buffer.alloc(1);
    await queue.read(first, 0, 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Paused: at most the bound plus one read is queued; the rest waits in the kernel.
    expect(queue.queuedBytes).toBeGreaterThan(0);
    expect(queue.queuedBytes).toBeLessThan(3 * RECEIVE_QUEUE_BYTES_MAX);
    expect(isWritten).toBe(false);
    const rest = Buffer.alloc(data.byteLength - 1);
    await queue.read(rest, 0, rest.byteLength);
    expect(Buffer.concat([first, rest]).equals(data)).toBe(true);
    served.destroy();
  });

  it('rejects a read the peer closed in the middle of, keeping what came before', async () => {
    const { queue, client } = await connect();
    const header = randomBytes(28);
    const partial = randomBytes(100_000);
    await writeInPieces(client, Buffer.concat([header, partial]), 4096);
    const got = Buffer.alloc(28);
    await queue.read(got, 0, 28);
    expect(got.equals(header)).toBe(true);
    const payload = Buffer.alloc(1024 * 1024);
    const reading = queue.read(payload, 0, payload.byteLength);
    client.end();
    await expect(reading).rejects.toBeInstanceOf(ClosedError);
    expect(payload.subarray(0, partial.byteLength).equals(partial)).toBe(true);
    await expect(queue.read(got, 0, 1)).rejects.toBeInstanceOf(ClosedError);
  });

  it('lets bytes queued before the close be read, then fails', async () => {
    const { queue, client } = await connect();
    const data = randomBytes(5000);
    client.end(data);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const got = Buffer.alloc(5000);
    await queue.read(got, 0, 5000);
    expect(got.equals(data)).toBe(true);
    await expect(queue.skip(1)).rejects.toBeInstanceOf(ClosedError);
  });
});
