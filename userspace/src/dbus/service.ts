/**
 * DbusService: the daemon's side of co.volf.shmr.ShmrFs1. One object per mounted filesystem,
 * at objectPathOf(mount point), under the bus name co.volf.shmr.
 *
 * A thin adapter over the control methods (daemon/methods.ts): a call is looked up in the
 * interface table, its signature and arguments are checked, the control method runs, its
 * result becomes the reply and any failure a `co.volf.shmr.Error.*` (errors.ts). Long
 * operations are control methods that return a task id at once; the event loop is never
 * blocked by a call.
 *
 * Invariants:
 * - An unreachable bus never stops the filesystem: `start` resolves undefined after one
 *   warning, and a bus lost later costs one warning.
 * - Every method call gets exactly one reply.
 * - Signals are bounded: ShardError at most SHARD_ERROR_SIGNALS_PER_SECOND_MAX, TaskProgress
 *   at most one per TASK_PROGRESS_INTERVAL_MS per task (the last state always arrives with
 *   TaskFinished).
 */
import dbus from 'dbus-next';
import type { ShardEvent } from '../block/index.js';
import type { ControlMethod } from '../daemon/control.js';
import type { OpenFilesystem } from '../daemon/open.js';
import { log } from '../log.js';
import type { TaskInfo, TaskManager } from '../tasks/task-manager.js';
import type { BucketStateChange } from '../pool/index.js';
import { apiError, toApiError } from './errors.js';
import { METHODS, PROPERTIES, type MethodSpec, type PropertySource } from './interface.js';
import { interfaceElement, signatureOf } from './introspection.js';
import { toVariantDict } from './marshal.js';
import { BUS_NAME, INTERFACE_NAME, objectPathOf } from './names.js';

const CONNECT_TIMEOUT_MS = 5000;
const SHARD_ERROR_SIGNALS_PER_SECOND_MAX = 50;
const TASK_PROGRESS_INTERVAL_MS = 250;
const PROPERTIES_INTERFACE = 'org.freedesktop.DBus.Properties';

/** Which bus; `session` reads DBUS_SESSION_BUS_ADDRESS, `system` DBUS_SYSTEM_BUS_ADDRESS. */
export type BusKind = 'system' | 'session';


export interface DbusServiceOptions {
  readonly bus: BusKind;
  readonly fs: OpenFilesystem;
  /** The control methods calls are mapped onto. */
  readonly methods: Readonly<Record<string, ControlMethod>>;
  readonly openHandleCount: () => number;
  /** The task manager, whose 'progress' and 'finished' events become signals. */
  readonly tasks?: TaskManager;
}

/** A bus connection: to `address` when given, else found from the environment. */
export function connectBus(kind: BusKind, address?: string): dbus.MessageBus {
  if (address !== undefined) return dbus.sessionBus({ busAddress: address });
  return kind === 'system' ? dbus.systemBus() : dbus.sessionBus();
}

/** Resolves once the bus accepted us (Hello answered); rejects on error or timeout. */
export function whenConnected(bus: dbus.MessageBus): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
    bus.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    bus.once('error', (error: unknown) => {
      clearTimeout(timer);
      reject(error instanceof Error ? error : new Error(String(error)));
    });
  });
}

/** Where a bus of this kind is, for messages. */
export function busAddressOf(kind: BusKind): string {
  if (kind === 'system') return process.env['DBUS_SYSTEM_BUS_ADDRESS'] ?? 'unix:path=/var/run/dbus/system_bus_socket';
  return process.env['DBUS_SESSION_BUS_ADDRESS'] ?? '(DBUS_SESSION_BUS_ADDRESS is not set)';
}

export class DbusService {
  readonly objectPath: string;
  readonly #bus: dbus.MessageBus;
  readonly #options: DbusServiceOptions;
  readonly #lastProgressMs = new Map<string, number>();
  #shardSignalsThisSecond = 0;
  #shardSecond = 0;
  #isStopped = false;

  private constructor(bus: dbus.MessageBus, options: DbusServiceOptions) {
    this.#bus = bus;
    this.#options = options;
    this.objectPath = objectPathOf(options.fs.config.mountDir);
  }

  /**
   * Connects, exports the filesystem's object and requests the bus name. Resolves undefined
   * (after one warning) when the bus cannot be reached or refuses us.
   */
  static async start(options: DbusServiceOptions): Promise<DbusService | undefined> {
    let bus: dbus.MessageBus | undefined;
    try {
      bus = connectBus(options.bus);
      // Errors after start are reported once by the service; this keeps them from throwing.
      bus.on('error', () => undefined);
      await whenConnected(bus);
      const service = new DbusService(bus, options);
      service.#export();
      await bus.requestName(BUS_NAME, 0);
      service.#watch();
      return service;
    } catch (error) {
      const reason = error instanceof dbus.DBusError ? `${error.type}: ${error.text}` : (error as Error).message;
      log.warn(`D-Bus: cannot serve ${BUS_NAME} on the ${options.bus} bus (${busAddressOf(options.bus)}): ${reason}; ` +
        'the filesystem works without its D-Bus API (config dbus.bus: none silences this)');
      bus?.disconnect();
      return undefined;
    }
  }

  /** Stops answering and emitting, and disconnects. */
  stop(): void {
    if (this.#isStopped) return;
    this.#isStopped = true;
    this.#options.tasks?.off('progress', this.#onTaskProgress);
    this.#options.tasks?.off('finished', this.#onTaskFinished);
    this.#bus.disconnect();
  }

  #export(): void {
    const source: PropertySource = { fs: this.#options.fs, openHandleCount: this.#options.openHandleCount };
    this.#bus.export(this.objectPath, createInterfaceObject(source));
    this.#bus.addMethodHandler((message: dbus.Message) => this.#handle(message));
  }

  #watch(): void {
    const { fs, tasks } = this.#options;
    const reportShardError = fs.blocks.onShardError;
    fs.blocks.onShardError = (event) => {
      reportShardError(event);
      this.#signalShardError(event);
    };
    for (const bucket of fs.pools.buckets) {
      const reportStateChange = bucket.onStateChange;
      bucket.onStateChange = (change) => {
        reportStateChange(change);
        this.#signalBucketState(change);
      };
    }
    tasks?.on('progress', this.#onTaskProgress);
    tasks?.on('finished', this.#onTaskFinished);
    this.#bus.on('error', (error: unknown) => {
      if (this.#isStopped) return;
      log.warn(`D-Bus: connection lost (${(error as Error).message}); the D-Bus API is gone until the next mount`);
      this.stop();
    });
  }

  /** Method handler: true when the message was ours (and has been or will be answered). */
  #handle(message: dbus.Message): boolean {
    if (message.path !== this.objectPath || this.#isStopped) return false;
    if (message.interface === PROPERTIES_INTERFACE && message.member === 'Set') {
      // dbus-next would answer twice for a read-only property; every property here is one.
      this.#bus.send(errorReply(message, 'org.freedesktop.DBus.Error.PropertyReadOnly',
        'every property of co.volf.shmr.ShmrFs1 is read-only'));
      return true;
    }
    const isOurs = message.interface === INTERFACE_NAME || (message.interface ?? '') === '';
    const method = isOurs ? METHODS.find((spec) => spec.name === message.member) : undefined;
    if (method === undefined) return false;
    void this.#call(method, message);
    return true;
  }

  async #call(method: MethodSpec, message: dbus.Message): Promise<void> {
    let reply: dbus.Message;
    try {
      const expected = signatureOf(method.args);
      if ((message.signature ?? '') !== expected) {
        throw apiError('InvalidArguments',
          `${method.name} takes (${expected}), got (${message.signature ?? ''})`);
      }
      const params = method.params(this.#argumentContext(), message.body ?? []);
      const control = this.#options.methods[method.control];
      if (control === undefined) {
        throw apiError('NotSupported', `${method.name}: this daemon has no ${method.control} operation`);
      }
      const result = await control(params, () => undefined);
      const body = method.reply((result ?? {}) as Record<string, unknown>);
      reply = dbus.Message.newMethodReturn(message, signatureOf(method.results), body);
    } catch (error) {
      const apiFailure = toApiError(error);
      reply = errorReply(message, apiFailure.type, apiFailure.text);
    }
    this.#send(reply, message);
  }

  #send(reply: dbus.Message, request: dbus.Message): void {
    if (this.#isStopped) return;
    try {
      this.#bus.send(reply);
    } catch (error) {
      // A reply that cannot be marshalled is our bug; the caller still gets an answer.
      this.#bus.send(errorReply(request, 'co.volf.shmr.Error.Failed',
        `reply could not be encoded: ${(error as Error).message}`));
    }
  }

  #argumentContext(): { meta: OpenFilesystem['meta']; pools: OpenFilesystem['pools']; mountDir: string } {
    const { fs } = this.#options;
    return { meta: fs.meta, pools: fs.pools, mountDir: fs.config.mountDir };
  }

  #signal(name: string, signature: string, body: unknown[]): void {
    if (this.#isStopped) return;
    try {
      this.#bus.send(dbus.Message.newSignal(this.objectPath, INTERFACE_NAME, name, signature, body));
    } catch (error) {
      log.warn(`D-Bus: signal ${name} not sent: ${(error as Error).message}`);
    }
  }

  #signalShardError(event: ShardEvent): void {
    const second = Math.floor(Date.now() / 1000);
    if (second !== this.#shardSecond) {
      this.#shardSecond = second;
      this.#shardSignalsThisSecond = 0;
    }
    if (++this.#shardSignalsThisSecond > SHARD_ERROR_SIGNALS_PER_SECOND_MAX) return;
    const { error, block } = event;
    this.#signal('ShardError', 'ttssss', [
      BigInt(block.ino), BigInt(block.blockIndex), error.bucket, error.kind, error.path, error.message,
    ]);
  }

  #signalBucketState(change: BucketStateChange): void {
    const { bucket, previous } = change;
    this.#signal('BucketStateChanged', 'sssss', [bucket.name, bucket.pool, bucket.state, previous, bucket.failure]);
  }

  readonly #onTaskProgress = (task: TaskInfo): void => {
    const id = String(task.id);
    const nowMs = Date.now();
    if (nowMs - (this.#lastProgressMs.get(id) ?? 0) < TASK_PROGRESS_INTERVAL_MS) return;
    this.#lastProgressMs.set(id, nowMs);
    this.#signal('TaskProgress', 'sa{sv}', [id, toVariantDict(task)]);
  };

  readonly #onTaskFinished = (task: TaskInfo): void => {
    const id = String(task.id);
    this.#lastProgressMs.delete(id);
    this.#signal('TaskFinished', 'ssa{sv}', [id, task.state, toVariantDict(task)]);
  };
}

/** An error reply (dbus-next's typings declare the request as a string; it is the message). */
function errorReply(request: dbus.Message, name: string, text: string): dbus.Message {
  return dbus.Message.newError(request as unknown as string, name, text);
}

/** The exported object: properties (read through dbus-next) and our introspection data. */
function createInterfaceObject(source: PropertySource): dbus.interface.Interface {
  class ShmrFs1 extends dbus.interface.Interface {
    $introspect(): unknown {
      return interfaceElement();
    }
  }
  for (const property of PROPERTIES) {
    Object.defineProperty(ShmrFs1.prototype, property.name, {
      get: () => {
        try {
          return property.read(source);
        } catch (error) {
          return toApiError(error);
        }
      },
    });
  }
  ShmrFs1.configureMembers({
    properties: Object.fromEntries(PROPERTIES.map((property) =>
      [property.name, { signature: property.type, access: 'read' as const }])),
  });
  return new ShmrFs1(INTERFACE_NAME);
}
