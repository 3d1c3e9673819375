/** Records to a{sv} and back: fixed value types by kind, absent fields left out, exact integers. */
import dbus from 'dbus-next';
import { describe, expect, it } from 'vitest';
import { fromDbus, toVariantDict } from './marshal.js';

describe('toVariantDict / fromDbus', () => {
  it('types values by kind', () => {
    const dict = toVariantDict({
      id: 3, ratio: 0.5, name: 'rewrite', isDone: false, errors: ['a'], nested: { bytes: 2 ** 40 },
      blocks: [{ index: 0 }], mixed: [1, 'x'], gone: undefined, none: null,
    });
    const signatures = Object.fromEntries(Object.entries(dict).map(([key, variant]) => [key, variant.signature]));
    expect(signatures).toEqual({
      id: 'x', ratio: 'd', name: 's', isDone: 'b', errors: 'as', nested: 'a{sv}', blocks: 'aa{sv}', mixed: 'av',
    });
    expect(dict['id']?.value).toBe(3n);
  });

  it('comes back as the same plain data', () => {
    const record = { id: 7, target: '/f', errors: ['e1', 'e2'], doneBytes: 2 ** 50, layout: { blocks: [{ index: 1, health: 'ok' }] } };
    expect(fromDbus(toVariantDict(record))).toEqual(record);
    expect(fromDbus(new dbus.Variant('t', 5n))).toBe(5);
    expect(() => fromDbus(2n ** 60n)).toThrow(/beyond 2\^53/);
  });
});
