/**
 * The control socket: how `shmr` subcommands reach a running daemon (the metadata store is
 * locked by the daemon, so they cannot open it themselves). A Unix socket in the metadata
 * directory, mode 0600 (root or the daemon's owner only), speaking JSON lines:
 *
 *   -> {"id": 1, "method": "scrub", "params": {...}}
 *   <- {"id": 1, "progress": {...}}            zero or more
 *   <- {"id": 1, "result": {...}}              or {"id": 1, "error": {"code", "message"}}
 *
 * Invariants: one bad request never takes the daemon down; requests are bounded in size.
 */
import { chmodSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { FsError } from '../errno.js';
import { log } from '../log.js';

const REQUEST_BYTES_MAX = 64 * 1024;

/** A method: gets params and a progress callback, resolves with a JSON-able result. */
export type ControlMethod = (params: Record<string, unknown>, progress: (value: unknown) => void) => Promise<unknown>;

/** Path of the control socket of a filesystem with this metadata directory. */
export function controlSocketPath(metadataDir: string): string {
  return join(metadataDir, 'control.sock');
}

/** Starts serving `methods`; returns the server (close it at shutdown). */
export function serveControl(metadataDir: string, methods: Readonly<Record<string, ControlMethod>>): Server {
  const path = controlSocketPath(metadataDir);
  rmSync(path, { force: true });
  const server = createServer((socket) => handleConnection(socket, methods));
  server.listen(path, () => chmodSync(path, 0o600));
  server.on('error', (error) => log.error(`control socket ${path}: ${error.message}`));
  return server;
}

function handleConnection(socket: Socket, methods: Readonly<Record<string, ControlMethod>>): void {
  let pending = '';
  socket.setEncoding('utf8');
  socket.on('error', () => undefined);
  socket.on('data', (chunk: string) => {
    pending += chunk;
    if (pending.length > REQUEST_BYTES_MAX) {
      socket.end(`${JSON.stringify({ id: null, error: { code: 'EINVAL', message: 'request too large' } })}\n`);
      return;
    }
    for (let newline = pending.indexOf('\n'); newline >= 0; newline = pending.indexOf('\n')) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      void answer(socket, line, methods);
    }
  });
}

async function answer(socket: Socket, line: string, methods: Readonly<Record<string, ControlMethod>>): Promise<void> {
  let id: unknown = null;
  const send = (message: Record<string, unknown>) => {
    if (!socket.destroyed) socket.write(`${JSON.stringify({ id, ...message })}\n`);
  };
  try {
    const request = JSON.parse(line) as { id?: unknown; method?: unknown; params?: unknown };
    id = request.id ?? null;
    const method = typeof request.method === 'string' ? methods[request.method] : undefined;
    if (method === undefined) throw new FsError(22, 'control', `unknown method ${String(request.method)}`);
    const params = (typeof request.params === 'object' && request.params !== null ? request.params : {}) as Record<string, unknown>;
    send({ result: await method(params, (value) => send({ progress: value })) });
  } catch (error) {
    const code = error instanceof FsError ? error.code : error instanceof SyntaxError ? 'EINVAL' : 'EIO';
    send({ error: { code, message: error instanceof Error ? error.message : String(error) } });
  }
}

/** An error answered by the daemon. */
export class ControlError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ControlError';
    this.code = code;
  }
}

/** Calls a method of the daemon serving `metadataDir`; undefined when no daemon listens. */
export function callControl(
  metadataDir: string,
  method: string,
  params: Record<string, unknown>,
  onProgress?: (value: unknown) => void,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(controlSocketPath(metadataDir));
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify({ id: 1, method, params })}\n`));
    socket.on('error', (error) => reject(error));
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      for (let newline = buffered.indexOf('\n'); newline >= 0; newline = buffered.indexOf('\n')) {
        const message = JSON.parse(buffered.slice(0, newline)) as {
          progress?: unknown; result?: unknown; error?: { code: string; message: string };
        };
        buffered = buffered.slice(newline + 1);
        if (message.progress !== undefined) onProgress?.(message.progress);
        else if (message.error !== undefined) {
          socket.end();
          reject(new ControlError(message.error.code, message.error.message));
        } else {
          socket.end();
          resolve(message.result);
        }
      }
    });
  });
}
