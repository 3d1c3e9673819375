/**
 * What every shmrctl command shares: the common options (--mount, --bus, --json), connecting
 * to the daemon, and the shape of a result (JSON for --json, text otherwise, an exit code).
 */
import { parseArgs } from 'node:util';
import { ShmrClient, type BusKind } from '../../dbus/index.js';
import { EXIT_CODES, UsageError } from './exit-codes.js';
import { chooseMount } from './mounts.js';

/** What a command hands back to main: printed as JSON or text, then the exit code. */
export interface CommandResult {
  readonly json: unknown;
  readonly text: string;
  readonly code: number;
}

type OptionSpec = { type: 'string' | 'boolean'; short?: string; multiple?: boolean };

const COMMON_OPTIONS = {
  mount: { type: 'string', short: 'm' },
  bus: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies Record<string, OptionSpec>;

/** Parsed command line of one command. */
export interface ParsedCommand {
  readonly values: Record<string, string | boolean | string[] | undefined>;
  readonly positionals: string[];
  readonly bus: BusKind;
}

/** Parses a command's arguments with the common options added; strict. */
export function parseCommand(args: readonly string[], options: Record<string, OptionSpec>, positionalsMax: number): ParsedCommand {
  const { values, positionals } = parseArgs({
    args: [...args], options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true,
  });
  if (positionals.length > positionalsMax) throw new UsageError(`unexpected argument "${positionals[positionalsMax]}"`);
  const bus = values['bus'] ?? process.env['SHMR_DBUS_BUS'] ?? 'system';
  if (bus !== 'system' && bus !== 'session') throw new UsageError(`--bus: "${String(bus)}" is not system or session`);
  return { values: values as ParsedCommand['values'], positionals, bus };
}

/** Connects to the daemon serving the chosen mount, runs `body`, closes. */
export async function withClient<T>(
  parsed: ParsedCommand,
  path: string | undefined,
  body: (client: ShmrClient, mountDir: string) => Promise<T>,
): Promise<T> {
  const mount = typeof parsed.values['mount'] === 'string' ? parsed.values['mount'] : undefined;
  const mountDir = chooseMount({ mount, path });
  const client = await ShmrClient.connect({ bus: parsed.bus, mountDir });
  try {
    return await body(client, mountDir);
  } finally {
    client.close();
  }
}

/** A positional argument that must be there. */
export function required(parsed: ParsedCommand, index: number, name: string): string {
  const value = parsed.positionals[index];
  if (value === undefined) throw new UsageError(`missing ${name}`);
  return value;
}

/** A successful result. */
export function ok(json: unknown, text: string): CommandResult {
  return { json, text, code: EXIT_CODES.ok };
}
