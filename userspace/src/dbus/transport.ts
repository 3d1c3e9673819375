/**
 * The D-Bus API as a ControlTransport (daemon/control-transport.ts), so callers written
 * against control methods (the housekeeping daemon `shmr crond`) can go through D-Bus with
 * the same client code as shmrctl.
 *
 * A control call is turned into the D-Bus method that maps onto it (the interface table):
 * each argument is taken from the control parameter of the same name in camelCase
 * (`older_than_seconds` <- `olderThanSeconds`, `inode_or_path` <- `path` or `ino`), and the
 * reply back into the control result (a single record as is, else one key per out argument).
 * Every call connects, calls and disconnects: housekeeping calls are rare, and a daemon that
 * restarted in between is found again.
 */
import type { ControlTransport } from '../daemon/control-transport.js';
import { ShmrClient, type ClientOptions } from './client.js';
import { METHODS, type ArgumentSpec, type MethodSpec } from './interface.js';

const camelCase = (name: string): string => name.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());

function argumentOf(spec: ArgumentSpec, params: Record<string, unknown>): unknown {
  const value = spec.name === 'inode_or_path' ? (params['path'] ?? params['ino']) : params[camelCase(spec.name)];
  if (spec.type === 't') return BigInt(Number(value ?? 0));
  if (spec.type === 'u') return Number(value ?? 0);
  if (spec.type === 'b') return value === true;
  if (spec.type === 's') return value === undefined ? '' : String(value);
  return value ?? [];
}

function resultOf(method: MethodSpec, out: unknown[]): unknown {
  const [first] = method.results;
  if (method.results.length === 1 && first?.type === 'a{sv}') return out[0];
  return Object.fromEntries(method.results.map((spec, index) => [camelCase(spec.name), out[index]]));
}

/** Control calls over D-Bus to the daemon serving `options.mountDir`. */
export function dbusTransport(options: ClientOptions): ControlTransport {
  return {
    call: async (control, params) => {
      const method = METHODS.find((spec) => spec.control === control);
      if (method === undefined) throw new Error(`no D-Bus method calls the control method ${control}`);
      const client = await ShmrClient.connect(options);
      try {
        return resultOf(method, await client.call(method.name, ...method.args.map((spec) => argumentOf(spec, params))));
      } finally {
        client.close();
      }
    },
  };
}
