/**
 * The interface table against its documentation and its introspection: docs/dbus.md names
 * every method, property, signal and error with its signature, and the generated
 * introspection data lists exactly the table's members with argument names.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERROR_NAMES } from './errors.js';
import { METHODS, PROPERTIES, SIGNALS } from './interface.js';
import { interfaceElement } from './introspection.js';

const DOC = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'docs', 'dbus.md'), 'utf8');

describe('co.volf.shmr.ShmrFs1', () => {
  it('is documented member by member in docs/dbus.md', () => {
    for (const method of METHODS) {
      const inArgs = method.args.map((arg) => `${arg.type} ${arg.name}`).join(', ');
      const row = DOC.split('\n').find((line) => line.startsWith(`| \`${method.name}\` |`));
      expect(row, method.name).toBeDefined();
      if (inArgs !== '') expect(row, method.name).toContain(`\`${inArgs}\``);
      for (const result of method.results) expect(row, method.name).toContain(`${result.type} ${result.name}`);
    }
    for (const property of PROPERTIES) expect(DOC).toContain(`| \`${property.name}\` | \`${property.type}\` |`);
    for (const signal of SIGNALS) {
      expect(DOC).toContain(`| \`${signal.name}\` | \`${signal.args.map((arg) => `${arg.type} ${arg.name}`).join(', ')}\` |`);
    }
    for (const name of Object.keys(ERROR_NAMES)) expect(DOC).toContain(`| \`${name}\` |`);
  });

  it('introspects with named arguments and no member twice', () => {
    const element = interfaceElement() as unknown as { method: { $: { name: string }; arg: { $: { name: string } }[] }[] };
    const names = element.method.map((method) => method.$.name);
    expect(names).toEqual(METHODS.map((method) => method.name));
    expect(new Set(names).size).toBe(names.length);
    for (const method of element.method) for (const arg of method.arg) expect(arg.$.name).toMatch(/^[a-z_]+$/);
    expect(new Set(METHODS.map((method) => method.control)).size).toBe(METHODS.length);
  });
});
