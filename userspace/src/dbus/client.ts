/**
 * ShmrClient: the caller's side of co.volf.shmr.ShmrFs1, shared by shmrctl and the
 * housekeeping daemon. Finds the daemon serving a mount point, calls methods with the exact
 * signatures of the interface table, reads properties and follows signals; every value comes
 * back as plain JSON-like data (marshal.ts `fromDbus`).
 *
 * Several daemons may share a bus: the first owns co.volf.shmr and the others wait in its
 * queue, each exporting its own object. `connect` asks the bus for every queued owner
 * (ListQueuedOwners) and talks to the one that exports the mount point's object.
 */
import dbus from 'dbus-next';
import { fromDbus } from './marshal.js';
import { BUS_NAME, INTERFACE_NAME, objectPathOf } from './names.js';
import { METHODS } from './interface.js';
import { signatureOf } from './introspection.js';
import { busAddressOf, connectBus, whenConnected, type BusKind } from './service.js';

const BUS_DAEMON = { destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus' };

/** Why a client could not reach a daemon: no bus, or no daemon for that mount point. */
export class UnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnreachableError';
  }
}

export interface ClientOptions {
  readonly bus: BusKind;
  readonly mountDir: string;
  /** A bus address overriding the environment's (tests, private buses). */
  readonly address?: string;
}

/** A signal of the interface, its arguments as plain values. */
export type SignalHandler = (args: unknown[]) => void;

export class ShmrClient {
  readonly objectPath: string;
  /** Unique bus name of the daemon serving the mount point. */
  readonly destination: string;
  readonly #bus: dbus.MessageBus;
  readonly #handlers = new Map<string, Set<SignalHandler>>();

  private constructor(bus: dbus.MessageBus, destination: string, objectPath: string) {
    this.#bus = bus;
    this.destination = destination;
    this.objectPath = objectPath;
    bus.on('message', (message: dbus.Message) => this.#dispatch(message));
  }

  /** Connects to the bus and finds the daemon serving `mountDir`; throws UnreachableError. */
  static async connect(options: ClientOptions): Promise<ShmrClient> {
    let bus: dbus.MessageBus;
    try {
      bus = connectBus(options.bus, options.address);
      bus.on('error', () => undefined);
      await whenConnected(bus);
    } catch (error) {
      throw new UnreachableError(`cannot reach the ${options.bus} bus (${options.address ?? busAddressOf(options.bus)}): ` +
        (error as Error).message);
    }
    const objectPath = objectPathOf(options.mountDir);
    const owners = await queuedOwners(bus);
    for (const owner of owners) {
      if (await exportsObject(bus, owner, objectPath)) return new ShmrClient(bus, owner, objectPath);
    }
    bus.disconnect();
    throw new UnreachableError(owners.length === 0
      ? `no shmr daemon on the ${options.bus} bus (nobody owns ${BUS_NAME})`
      : `no shmr daemon on the ${options.bus} bus serves ${options.mountDir} (${owners.length} other daemon(s) do)`);
  }

  /** Calls a method of the interface by name; resolves with its out arguments as plain values. */
  async call(name: string, ...args: unknown[]): Promise<unknown[]> {
    const method = METHODS.find((spec) => spec.name === name);
    if (method === undefined) throw new Error(`unknown method ${name}`);
    const reply = await this.#bus.call(new dbus.Message({
      destination: this.destination, path: this.objectPath, interface: INTERFACE_NAME, member: name,
      signature: signatureOf(method.args), body: args,
    }));
    return (reply?.body ?? []).map(fromDbus);
  }

  /** Every property, as plain values. */
  async properties(): Promise<Record<string, unknown>> {
    const reply = await this.#bus.call(new dbus.Message({
      destination: this.destination, path: this.objectPath, interface: 'org.freedesktop.DBus.Properties',
      member: 'GetAll', signature: 's', body: [INTERFACE_NAME],
    }));
    return fromDbus(reply?.body[0] ?? {}) as Record<string, unknown>;
  }

  /** Subscribes to a signal of this filesystem; returns the unsubscribe function. */
  async onSignal(name: string, handler: SignalHandler): Promise<() => void> {
    let handlers = this.#handlers.get(name);
    if (handlers === undefined) {
      handlers = new Set();
      this.#handlers.set(name, handlers);
      await this.#bus.call(new dbus.Message({
        ...BUS_DAEMON, member: 'AddMatch', signature: 's',
        body: [`type='signal',sender='${this.destination}',path='${this.objectPath}',interface='${INTERFACE_NAME}',member='${name}'`],
      }));
    }
    handlers.add(handler);
    return () => handlers.delete(handler);
  }

  #dispatch(message: dbus.Message): void {
    if (message.type !== dbus.MessageType.SIGNAL || message.path !== this.objectPath) return;
    if (message.interface !== INTERFACE_NAME) return;
    const args = (message.body ?? []).map(fromDbus);
    for (const handler of this.#handlers.get(message.member) ?? []) handler(args);
  }

  close(): void {
    this.#bus.disconnect();
  }
}

async function queuedOwners(bus: dbus.MessageBus): Promise<string[]> {
  try {
    const reply = await bus.call(new dbus.Message({ ...BUS_DAEMON, member: 'ListQueuedOwners', signature: 's', body: [BUS_NAME] }));
    return (reply?.body[0] ?? []) as string[];
  } catch (error) {
    if (error instanceof dbus.DBusError && error.type === 'org.freedesktop.DBus.Error.NameHasNoOwner') return [];
    throw error;
  }
}

async function exportsObject(bus: dbus.MessageBus, owner: string, objectPath: string): Promise<boolean> {
  try {
    await bus.call(new dbus.Message({
      destination: owner, path: objectPath, interface: 'org.freedesktop.DBus.Properties', member: 'Get',
      signature: 'ss', body: [INTERFACE_NAME, 'MountPoint'],
    }));
    return true;
  } catch (error) {
    if (error instanceof dbus.DBusError) return false;
    throw error;
  }
}
