/**
 * Introspection data of co.volf.shmr.ShmrFs1, generated from the interface table, with
 * argument names and one doc string per member (dbus-next's own introspection has neither).
 * The same data, as XML, is what `gdbus introspect` and `busctl introspect` show.
 */
import { INTERFACE_NAME } from './names.js';
import { METHODS, PROPERTIES, SIGNALS, type ArgumentSpec } from './interface.js';

/** An XML element in xml2js's object form: attributes under `$`, children by tag name. */
export interface XmlElement {
  $: Record<string, string>;
  [tag: string]: unknown;
}

const docString = (text: string): XmlElement => ({ $: { name: 'org.freedesktop.DBus.DocString', value: text } });

function argumentsOf(list: readonly ArgumentSpec[], direction?: 'in' | 'out'): XmlElement[] {
  return list.map((argument) => ({
    $: { name: argument.name, type: argument.type, ...(direction === undefined ? {} : { direction }) },
  }));
}

/** The interface element, as dbus-next's `$introspect()` returns it. */
export function interfaceElement(): XmlElement {
  return {
    $: { name: INTERFACE_NAME },
    method: METHODS.map((method) => ({
      $: { name: method.name },
      arg: [...argumentsOf(method.args, 'in'), ...argumentsOf(method.results, 'out')],
      annotation: [docString(method.doc)],
    })),
    property: PROPERTIES.map((property) => ({
      $: { name: property.name, type: property.type, access: 'read' },
      annotation: [
        docString(property.doc),
        // Values are read on demand; no PropertiesChanged is sent.
        { $: { name: 'org.freedesktop.DBus.Property.EmitsChangedSignal', value: 'false' } },
      ],
    })),
    signal: SIGNALS.map((signal) => ({
      $: { name: signal.name },
      arg: argumentsOf(signal.args),
      annotation: [docString(signal.doc)],
    })),
  };
}

/** The D-Bus signature of a list of arguments. */
export function signatureOf(list: readonly ArgumentSpec[]): string {
  return list.map((argument) => argument.type).join('');
}
