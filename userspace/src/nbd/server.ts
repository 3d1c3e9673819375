/**
 * NbdServer: listens on a Unix socket (always) and optionally a TCP address, and serves each
 * accepted client as an NbdConnection over one shared export catalog.
 *
 * Invariants:
 * - At most CONNECTIONS_MAX clients are served at once; more are closed at accept.
 * - The Unix socket is mode 0600; a live socket of another server is never taken over, a
 *   stale one (nobody accepting) is replaced.
 * - close() stops accepting, lets every request in flight complete (and be answered), then
 *   closes the connections: after it resolves no request touches the catalog's exports.
 */
import { chmodSync, lstatSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { Errno, FsError } from '../errno.js';
import { NbdConnection } from './connection.js';
import type { ExportCatalog } from './export.js';
import { PayloadPool } from './payload-pool.js';
import { CONNECTIONS_MAX } from './protocol.js';
import { ReceiveQueue } from './receive-queue.js';

/** Free payload buffers kept for reuse across all connections. */
const POOL_RETAINED_BYTES_MAX = 64 * 1024 * 1024;
/** How long close() waits for requests in flight before closing connections anyway. */
const SHUTDOWN_WAIT_MS_MAX = 30_000;

/** Where the server listens. */
export interface NbdListenOptions {
  readonly socketPath: string;
  readonly tcp: { readonly host: string; readonly port: number } | undefined;
}

export class NbdServer {
  readonly #catalog: ExportCatalog;
  readonly #report: (message: string) => void;
  readonly #payloads = new PayloadPool({ retainedBytesMax: POOL_RETAINED_BYTES_MAX });
  readonly #listeners: Server[] = [];
  readonly #connections = new Set<NbdConnection>();
  readonly #socketPath: string;
  #nextId = 1;
  #isClosing = false;
  /** True once this server created the Unix socket file (and so removes it at close). */
  #ownsSocketFile = false;
  #hasReportedFull = false;

  private constructor(
    catalog: ExportCatalog,
    socketPath: string,
    report: (message: string) => void,
  ) {
    this.#catalog = catalog;
    this.#socketPath = socketPath;
    this.#report = report;
  }

  /** Starts listening; rejects (FsError) naming the address when it cannot. */
  static async start(
    catalog: ExportCatalog,
    options: NbdListenOptions,
    report: (message: string) => void,
  ): Promise<NbdServer> {
    const server = new NbdServer(catalog, options.socketPath, report);
    try {
      await prepareSocketPath(options.socketPath);
      const { socketPath } = options;
      await server.#listen((listener) => listener.listen(socketPath), `unix:${socketPath}`);
      server.#ownsSocketFile = true;
      chmodSync(options.socketPath, 0o600);
      if (options.tcp !== undefined) {
        const { host, port } = options.tcp;
        await server.#listen((listener) => listener.listen({ host, port }), `${host}:${port}`);
      }
    } catch (error) {
      await server.close();
      throw error;
    }
    return server;
  }

  /** Clients connected now (in handshake or transmission). */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Addresses listened on, for log lines (`unix:/path`, `127.0.0.1:10809`). */
  get addresses(): string[] {
    return this.#listeners.map((listener) => {
      const address = listener.address();
      if (typeof address === 'string') return `unix:${address}`;
      if (address === null) return '(closed)';
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      return `${host}:${address.port}`;
    });
  }

  async #listen(start: (listener: Server) => void, label: string): Promise<void> {
    // Paused: ReceiveQueue.adopt() re-makes the socket before anything is read.
    const listener = createServer({ pauseOnConnect: true }, (socket) => this.#accept(socket));
    await new Promise<void>((resolve, reject) => {
      listener.once('error', (error: NodeJS.ErrnoException) => {
        reject(new FsError(Errno.EINVAL, 'nbd listen', `${label}: ${error.code ?? error.message}`));
      });
      start(listener);
      listener.once('listening', () => resolve());
    });
    listener.on('error', (error) => this.#report(`nbd listener ${label}: ${error.message}`));
    this.#listeners.push(listener);
  }

  #accept(accepted: Socket): void {
    const peer = accepted.remoteAddress === undefined
      ? `#${this.#nextId}`
      : `${accepted.remoteAddress}:${accepted.remotePort ?? 0}`;
    this.#nextId += 1;
    accepted.on('error', () => undefined);
    if (this.#isClosing || this.#connections.size >= CONNECTIONS_MAX) {
      if (!this.#hasReportedFull && !this.#isClosing) {
        this.#report(`nbd: ${CONNECTIONS_MAX} clients connected, refusing more`);
      }
      this.#hasReportedFull = true;
      accepted.destroy();
      return;
    }
    this.#hasReportedFull = false;
    const { socket, queue } = ReceiveQueue.adopt(accepted);
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    const context = { catalog: this.#catalog, payloads: this.#payloads, report: this.#report };
    const connection = new NbdConnection(socket, queue, context, peer);
    this.#connections.add(connection);
    void connection.serve().finally(() => this.#connections.delete(connection));
  }

  /** Stops accepting, completes requests in flight, closes every connection. */
  async close(): Promise<void> {
    this.#isClosing = true;
    const closing = this.#listeners.map((listener) => new Promise<void>((resolve) => {
      listener.close(() => resolve());
    }));
    await Promise.all(closing);
    this.#listeners.length = 0;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), SHUTDOWN_WAIT_MS_MAX);
    });
    const drained = Promise.all([...this.#connections].map((connection) => connection.shutDown()));
    const outcome = await Promise.race([drained, deadline]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.#report(`nbd: requests still in flight ${SHUTDOWN_WAIT_MS_MAX / 1000} s into shutdown`);
    }
    if (this.#ownsSocketFile) removeSocketFile(this.#socketPath);
    this.#ownsSocketFile = false;
  }
}

/** Removes a stale Unix socket at `path`; refuses a live one or something that is not a socket. */
async function prepareSocketPath(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return;
  }
  if (!isSocket) {
    throw new FsError(Errno.EEXIST, 'nbd listen', `${path} exists and is not a socket`);
  }
  const isLive = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (isLive) throw new FsError(Errno.EBUSY, 'nbd listen', `${path} is in use by another server`);
  rmSync(path, { force: true });
}

function removeSocketFile(path: string): void {
  try {
    if (lstatSync(path).isSocket()) rmSync(path, { force: true });
  } catch {
    // Already gone.
  }
}
