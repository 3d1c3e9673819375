/**
 * Marshalling between the JSON-like results of control methods and D-Bus values.
 *
 * Records (a task, a tombstone, a file's layout) travel as `a{sv}` dictionaries, lists of them
 * as `aa{sv}`, so that fields can be added without breaking callers and any D-Bus tool can
 * read them. Value types are fixed by kind: every integer is `x` (int64), other numbers `d`,
 * strings `s`, booleans `b`, records `a{sv}`, lists of records `aa{sv}`, lists of strings
 * `as`, other lists `av`. Absent (undefined, null) fields are left out.
 */
import dbus from 'dbus-next';
import { assert } from '../assert.js';

/** A D-Bus dictionary of variants. */
export type VariantDict = Record<string, dbus.Variant>;

/** The `a{sv}` form of a plain object. */
export function toVariantDict(record: object): VariantDict {
  const dict: VariantDict = {};
  for (const [key, value] of Object.entries(record)) {
    const variant = toVariant(value);
    if (variant !== undefined) dict[key] = variant;
  }
  return dict;
}

/** The variant of one value, or undefined for an absent one. */
export function toVariant(value: unknown): dbus.Variant | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'bigint') return new dbus.Variant('x', value);
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) ? new dbus.Variant('x', BigInt(value)) : new dbus.Variant('d', value);
  }
  if (typeof value === 'string') return new dbus.Variant('s', value);
  if (typeof value === 'boolean') return new dbus.Variant('b', value);
  if (Array.isArray(value)) return arrayVariant(value);
  if (typeof value === 'object') return new dbus.Variant('a{sv}', toVariantDict(value));
  return new dbus.Variant('s', String(value));
}

function arrayVariant(values: readonly unknown[]): dbus.Variant {
  const present = values.filter((value) => value !== undefined && value !== null);
  if (present.length > 0 && present.every((value) => typeof value === 'string')) return new dbus.Variant('as', present);
  const isRecord = (value: unknown) => typeof value === 'object' && value !== null && !Array.isArray(value);
  if (present.every(isRecord)) return new dbus.Variant('aa{sv}', present.map((value) => toVariantDict(value as object)));
  return new dbus.Variant('av', present.map((value) => toVariant(value) as dbus.Variant));
}

/**
 * The plain value of a D-Bus value (what a client gets): variants unwrapped, int64 and
 * uint64 as numbers (asserted exact), dictionaries as objects.
 */
export function fromDbus(value: unknown): unknown {
  if (value instanceof dbus.Variant) return fromDbus(value.value);
  if (typeof value === 'bigint') {
    const number = Number(value);
    assert(Number.isSafeInteger(number), `integer ${value} is beyond 2^53`);
    return number;
  }
  if (Array.isArray(value)) return value.map(fromDbus);
  if (typeof value === 'object' && value !== null && !Buffer.isBuffer(value)) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, fromDbus(item)]));
  }
  return value;
}
