/**
 * Layout reader: parses the TypeScript layout module (userspace/src/layout/) with ts-morph and
 * returns a validated model of its structures and enums, for the C, Rust and Markdown emitters.
 *
 * It reads the declarations themselves, never evaluating them, so it accepts only what the
 * rules of style.md §7.10 allow and names the declaration (and field) of anything else.
 *
 * Invariants of a returned model:
 * - Every field is a u8/u16/u32/u64 of its natural width and alignment, or `bytes`.
 * - Fields are in offset order, contiguous from 0 to `sizeBytes`: no implicit padding, before,
 *   between or after them, so C and Rust lay the struct out exactly as the bytes on disk.
 * - Every struct, field, enum and member has a doc comment; every enum a field names exists in
 *   the same file and its values fit the field.
 * - The enum `DecodeErrorKind` exists and has every kind the generated decoders report.
 */
import { readdirSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import {
  Node,
  Project,
  ts,
  type Expression,
  type ObjectLiteralExpression,
  type PropertyAssignment,
  type SourceFile,
  type VariableDeclaration,
} from 'ts-morph';
import type { FieldType } from '../../userspace/src/layout/index.js';

/** Width in bytes of each scalar type; `bytes` fields have any width. */
export const SCALAR_WIDTH_BYTES: Readonly<Record<Exclude<FieldType, 'bytes'>, number>> = {
  u8: 1,
  u16: 2,
  u32: 4,
  u64: 8,
};

/** The enum of decode failures, declared in codec.ts; the generated decoders return it. */
export const DECODE_ERROR_KIND = 'DecodeErrorKind';

/** Kinds the generated struct decoders report, so DecodeErrorKind must declare them. */
export const DECODE_ERROR_KINDS_USED = [
  'short',
  'magic',
  'version',
  'checksum',
  'reserved',
  'field',
] as const;

/** One field of a structure, as declared. */
export interface LayoutField {
  readonly name: string;
  readonly offsetBytes: number;
  readonly widthBytes: number;
  readonly type: FieldType;
  readonly doc: string;
  /** A `reserved_N` field: written as zero, must read back as zero. */
  readonly isReserved: boolean;
  /** Name of the enum whose values the field holds. */
  readonly enumName: string | undefined;
  /** The value the field must hold (magic numbers, versions). */
  readonly fixedValue: bigint | undefined;
  /** The field holds the CRC32C of every byte of the structure before it. */
  readonly isChecksum: boolean;
}

/** One fixed-size on-disk structure. */
export interface LayoutStruct {
  readonly name: string;
  /** Path of the declaring file, relative to the repository root, with `/` separators. */
  readonly sourcePath: string;
  readonly sizeBytes: number;
  readonly doc: string;
  readonly fields: readonly LayoutField[];
}

/** One member of an enum. */
export interface LayoutEnumMember {
  readonly name: string;
  readonly value: number;
  readonly doc: string;
}

/** An enum: named integer values a field may hold. */
export interface LayoutEnum {
  readonly name: string;
  readonly sourcePath: string;
  readonly doc: string;
  readonly members: readonly LayoutEnumMember[];
}

/** Everything the emitters need, in a deterministic order (file name, then declaration). */
export interface LayoutModel {
  /** The layout module's own doc comment (index.ts), which states the byte order. */
  readonly moduleDoc: string;
  /** Files that declared a struct or enum, relative to the repository root, sorted. */
  readonly sourcePaths: readonly string[];
  readonly structs: readonly LayoutStruct[];
  readonly enums: readonly LayoutEnum[];
}

/** A layout declaration the generator cannot represent faithfully. */
export class LayoutError extends Error {
  /** `Struct`, `Struct.field`, `Enum` or `Enum.member`. */
  readonly declaration: string;

  constructor(sourcePath: string, declaration: string, reason: string) {
    super(`${sourcePath}: ${declaration}: ${reason}`);
    this.name = 'LayoutError';
    this.declaration = declaration;
  }
}

/** Where the layout sources are, and the root their reported paths are relative to. */
export interface ReadLayoutOptions {
  readonly directory: string;
  readonly root: string;
}

/** Reads and validates every layout declaration in `options.directory`. */
export function readLayout(options: ReadLayoutOptions): LayoutModel {
  const project = new Project({
    skipAddingFilesFromTsConfig: true,
    skipFileDependencyResolution: true,
    // Parsing needs no type information: nothing is resolved or checked, which keeps a read fast.
    skipLoadingLibFiles: true,
    compilerOptions: { allowJs: false, noResolve: true },
  });
  const fileNames = readdirSync(options.directory)
    .filter((name) => name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts'))
    .sort();
  const structs: LayoutStruct[] = [];
  const enums: LayoutEnum[] = [];
  const sourcePaths: string[] = [];
  let moduleDoc = '';
  for (const fileName of fileNames) {
    const file = project.addSourceFileAtPath(join(options.directory, fileName));
    const sourcePath = relative(options.root, file.getFilePath()).split(sep).join('/');
    const declared = readSourceFile(file, sourcePath);
    structs.push(...declared.structs);
    enums.push(...declared.enums);
    if (declared.structs.length + declared.enums.length > 0) sourcePaths.push(sourcePath);
    if (fileName === 'index.ts') moduleDoc = fileDocText(file);
  }
  const model = { moduleDoc, sourcePaths, structs, enums };
  checkModel(model);
  return model;
}

/** The structs and enums one file exports. */
function readSourceFile(
  file: SourceFile,
  sourcePath: string,
): { structs: LayoutStruct[]; enums: LayoutEnum[] } {
  const structs: LayoutStruct[] = [];
  const enums: LayoutEnum[] = [];
  for (const statement of file.getVariableStatements()) {
    if (!statement.isExported()) continue;
    for (const declaration of statement.getDeclarations()) {
      const shape = classify(declaration, sourcePath);
      if (shape === undefined) continue;
      const name = declaration.getName();
      if (shape.kind === 'struct') {
        const doc = jsDocText(declaration) || fileDocText(file);
        structs.push(readStruct({ name, sourcePath, doc, object: shape.object }));
      } else {
        const doc = jsDocText(declaration);
        enums.push(readEnum({ name, sourcePath, doc, object: shape.object }));
      }
    }
  }
  if (structs.length > 1) {
    throw new LayoutError(sourcePath, structs[1]!.name, 'one struct per file (style.md §7.10)');
  }
  for (const struct of structs) checkEnumReferences(struct, enums);
  return { structs, enums };
}

type Shape = { kind: 'struct' | 'enum'; object: ObjectLiteralExpression };

/**
 * Decides what an exported `const` declares: a struct (`{...} as const satisfies
 * StructLayout`), an enum (`{...} as const` of integers) or neither (anything else).
 */
function classify(declaration: VariableDeclaration, sourcePath: string): Shape | undefined {
  const name = declaration.getName();
  const initializer = declaration.getInitializer();
  if (initializer === undefined) return undefined;
  if (Node.isSatisfiesExpression(initializer)) {
    if (initializer.getTypeNode()?.getText() !== 'StructLayout') return undefined;
    const object = asConstObject(initializer.getExpression());
    if (object === undefined) {
      const reason = 'write it as `{ ... } as const satisfies StructLayout`';
      throw new LayoutError(sourcePath, name, reason);
    }
    return { kind: 'struct', object };
  }
  const object = asConstObject(initializer);
  const bare = Node.isObjectLiteralExpression(initializer) ? initializer : object;
  if (bare !== undefined && (bare.getProperty('fields') ?? bare.getProperty('sizeBytes'))) {
    throw new LayoutError(
      sourcePath,
      name,
      'a struct must end in `as const satisfies StructLayout`',
    );
  }
  return object === undefined ? undefined : { kind: 'enum', object };
}

/** The object literal of `{ ... } as const`, or undefined for any other expression. */
function asConstObject(expression: Expression): ObjectLiteralExpression | undefined {
  if (!Node.isAsExpression(expression)) return undefined;
  if (expression.getTypeNode()?.getText() !== 'const') return undefined;
  const inner = expression.getExpression();
  return Node.isObjectLiteralExpression(inner) ? inner : undefined;
}

interface Declared {
  readonly name: string;
  readonly sourcePath: string;
  readonly doc: string;
  readonly object: ObjectLiteralExpression;
}

function readStruct(declared: Declared): LayoutStruct {
  const { name, sourcePath, object } = declared;
  checkName(sourcePath, name, /^[A-Z][A-Za-z0-9]*$/, 'PascalCase');
  requireDoc(sourcePath, name, declared.doc);
  const properties = plainProperties(object, sourcePath, name);
  checkKeys(sourcePath, name, properties, ['sizeBytes', 'fields'], ['sizeBytes', 'fields']);
  const sizeExpression = property(properties, 'sizeBytes');
  const sizeBytes = integerLiteral(sizeExpression, sourcePath, `${name}.sizeBytes`);
  const fieldsObject = property(properties, 'fields');
  if (!Node.isObjectLiteralExpression(fieldsObject)) {
    throw new LayoutError(sourcePath, `${name}.fields`, 'must be an object literal');
  }
  const fields = plainProperties(fieldsObject, sourcePath, name).map((assignment) =>
    readField(assignment, sourcePath, name),
  );
  checkFieldSequence({ name, sourcePath, sizeBytes, doc: declared.doc, fields });
  return { name, sourcePath, sizeBytes, doc: declared.doc, fields };
}

const FIELD_KEYS = ['offset', 'width', 'type', 'enum', 'value', 'checksum'];
const FIELD_KEYS_REQUIRED = ['offset', 'width', 'type'];

function readField(
  assignment: PropertyAssignment,
  sourcePath: string,
  structName: string,
): LayoutField {
  const name = assignment.getName();
  const declaration = `${structName}.${name}`;
  checkName(sourcePath, declaration, /^[a-z][a-z0-9_]*$/, 'snake_case');
  checkNotKeyword(sourcePath, declaration, name);
  const spec = assignment.getInitializer();
  if (!Node.isObjectLiteralExpression(spec)) {
    const reason = 'must be an object literal { offset, width, type }';
    throw new LayoutError(sourcePath, declaration, reason);
  }
  const properties = plainProperties(spec, sourcePath, declaration);
  checkKeys(sourcePath, declaration, properties, FIELD_KEYS, FIELD_KEYS_REQUIRED);
  const type = readFieldType(property(properties, 'type'), sourcePath, declaration);
  const optional = (key: string): Expression | undefined =>
    properties.find((candidate) => candidate.getName() === key)?.getInitializer();
  const enumExpression = optional('enum');
  const valueExpression = optional('value');
  const checksumExpression = optional('checksum');
  const integer = (key: string): number =>
    integerLiteral(property(properties, key), sourcePath, `${declaration}.${key}`);
  const field: LayoutField = {
    name,
    offsetBytes: integer('offset'),
    widthBytes: integer('width'),
    type,
    doc: jsDocText(assignment),
    isReserved: name.startsWith('reserved_'),
    enumName: enumExpression && stringLiteral(enumExpression, sourcePath, `${declaration}.enum`),
    fixedValue:
      valueExpression && fixedValueLiteral(valueExpression, sourcePath, declaration, type),
    isChecksum:
      checksumExpression !== undefined && readChecksum(checksumExpression, sourcePath, declaration),
  };
  requireDoc(sourcePath, declaration, field.doc);
  checkFieldRules(field, sourcePath, declaration);
  return field;
}

function readFieldType(expression: Expression, sourcePath: string, declaration: string): FieldType {
  const type = stringLiteral(expression, sourcePath, `${declaration}.type`);
  if (type === 'bytes' || Object.hasOwn(SCALAR_WIDTH_BYTES, type)) return type as FieldType;
  throw new LayoutError(
    sourcePath,
    declaration,
    `unsupported field type '${type}' (expected u8, u16, u32, u64 or bytes)`,
  );
}

function readChecksum(expression: Expression, sourcePath: string, declaration: string): boolean {
  const algorithm = stringLiteral(expression, sourcePath, `${declaration}.checksum`);
  if (algorithm !== 'crc32c') {
    const reason = `unsupported checksum '${algorithm}' (crc32c only)`;
    throw new LayoutError(sourcePath, declaration, reason);
  }
  return true;
}

/** Per-field rules: fixed widths, natural alignment, what reserved and bytes fields may carry. */
function checkFieldRules(field: LayoutField, sourcePath: string, declaration: string): void {
  const fail = (reason: string): never => {
    throw new LayoutError(sourcePath, declaration, reason);
  };
  const hasExtras =
    field.enumName !== undefined || field.fixedValue !== undefined || field.isChecksum;
  if (field.type === 'bytes') {
    if (field.widthBytes < 1) fail('a bytes field needs a width of at least 1');
    if (hasExtras) fail('a bytes field cannot have enum, value or checksum');
    return;
  }
  if (field.isReserved) fail(`a reserved field must have type 'bytes', not '${field.type}'`);
  const widthBytes = SCALAR_WIDTH_BYTES[field.type];
  if (field.widthBytes !== widthBytes) {
    fail(
      `non-fixed-width number: type ${field.type} is ${widthBytes} bytes, ` +
        `width says ${field.widthBytes}`,
    );
  }
  if (field.offsetBytes % widthBytes !== 0) {
    fail(`offset ${field.offsetBytes} is not a multiple of ${widthBytes}: C and Rust would pad`);
  }
  if (field.isChecksum && field.type !== 'u32') fail('a crc32c checksum field must be a u32');
  if (field.isChecksum && (field.enumName ?? field.fixedValue) !== undefined) {
    fail('a checksum field cannot have enum or value');
  }
  if (field.enumName !== undefined && field.type === 'u64') fail('enum fields are u8, u16 or u32');
  if (field.enumName !== undefined && field.fixedValue !== undefined) {
    fail('a field cannot have both enum and value');
  }
}

/** Fields are contiguous from 0 to sizeBytes, and the struct needs no tail padding. */
function checkFieldSequence(struct: LayoutStruct): void {
  const { name, sourcePath } = struct;
  if (struct.fields.length === 0) throw new LayoutError(sourcePath, name, 'has no fields');
  let offsetExpected = 0;
  let previous = '(start)';
  for (const field of struct.fields) {
    const declaration = `${name}.${field.name}`;
    if (field.offsetBytes < offsetExpected) {
      throw new LayoutError(
        sourcePath,
        declaration,
        `offset ${field.offsetBytes} overlaps ${previous}, which ends at ${offsetExpected}`,
      );
    }
    if (field.offsetBytes > offsetExpected) {
      throw new LayoutError(
        sourcePath,
        declaration,
        `implicit padding: gap of ${field.offsetBytes - offsetExpected} bytes after ${previous} ` +
          `(offset ${offsetExpected}); declare it as a reserved_N bytes field`,
      );
    }
    offsetExpected += field.widthBytes;
    previous = field.name;
  }
  if (offsetExpected !== struct.sizeBytes) {
    throw new LayoutError(
      sourcePath,
      `${name}.sizeBytes`,
      `fields end at ${offsetExpected}, but sizeBytes is ${struct.sizeBytes}` +
        (offsetExpected < struct.sizeBytes ? ' (implicit tail padding)' : ''),
    );
  }
  const alignmentBytes = Math.max(...struct.fields.map(alignmentOf));
  if (struct.sizeBytes % alignmentBytes !== 0) {
    throw new LayoutError(
      sourcePath,
      `${name}.sizeBytes`,
      `${struct.sizeBytes} is not a multiple of ${alignmentBytes}: ` +
        'C and Rust would add tail padding',
    );
  }
}

/**
 * The DecodeErrorKind a mismatch of this fixed value reports, as codec.ts's decodeStruct
 * decides it: `version` for a field so named, `magic` for any other.
 */
export function fixedValueKind(field: LayoutField): 'version' | 'magic' {
  return field.name === 'version' ? 'version' : 'magic';
}

/** Alignment of a field in C and Rust: its width for scalars, 1 for byte arrays. */
function alignmentOf(field: LayoutField): number {
  return field.type === 'bytes' ? 1 : field.widthBytes;
}

function checkEnumReferences(struct: LayoutStruct, enums: readonly LayoutEnum[]): void {
  for (const field of struct.fields) {
    if (field.enumName === undefined) continue;
    const declaration = `${struct.name}.${field.name}`;
    const referenced = enums.find((candidate) => candidate.name === field.enumName);
    if (referenced === undefined) {
      throw new LayoutError(
        struct.sourcePath,
        declaration,
        `enum '${field.enumName}' is not exported from the same file`,
      );
    }
    const limit = 2 ** (8 * field.widthBytes);
    const tooLarge = referenced.members.find((member) => member.value >= limit);
    if (tooLarge !== undefined) {
      throw new LayoutError(
        struct.sourcePath,
        declaration,
        `${referenced.name}.${tooLarge.name} = ${tooLarge.value} does not fit a ${field.type}`,
      );
    }
  }
}

function readEnum(declared: Declared): LayoutEnum {
  const { name, sourcePath } = declared;
  checkName(sourcePath, name, /^[A-Z][A-Za-z0-9]*$/, 'PascalCase');
  requireDoc(sourcePath, name, declared.doc);
  const members = plainProperties(declared.object, sourcePath, name).map((assignment) => {
    const declaration = `${name}.${assignment.getName()}`;
    checkName(sourcePath, declaration, /^[a-z][a-z0-9_]*$/, 'snake_case');
    const value = integerLiteral(assignment.getInitializerOrThrow(), sourcePath, declaration);
    if (value > 0xffff_ffff) throw new LayoutError(sourcePath, declaration, 'does not fit a u32');
    const doc = jsDocText(assignment);
    requireDoc(sourcePath, declaration, doc);
    return { name: assignment.getName(), value, doc };
  });
  if (members.length === 0) throw new LayoutError(sourcePath, name, 'an enum needs members');
  const values = new Set(members.map((member) => member.value));
  if (values.size !== members.length) throw new LayoutError(sourcePath, name, 'duplicate values');
  return { name, sourcePath, doc: declared.doc, members };
}

/** Checks across files: unique names, and the error kinds the decoders need. */
function checkModel(model: LayoutModel): void {
  const seen = new Map<string, string>();
  for (const declared of [...model.structs, ...model.enums]) {
    const other = seen.get(declared.name);
    if (other !== undefined) {
      throw new LayoutError(declared.sourcePath, declared.name, `also declared in ${other}`);
    }
    seen.set(declared.name, declared.sourcePath);
  }
  const errorKind = model.enums.find((candidate) => candidate.name === DECODE_ERROR_KIND);
  if (errorKind === undefined) {
    throw new LayoutError('(layout)', DECODE_ERROR_KIND, 'not found: the decoders return it');
  }
  for (const kind of DECODE_ERROR_KINDS_USED) {
    if (errorKind.members.some((member) => member.name === kind)) continue;
    throw new LayoutError(errorKind.sourcePath, `${DECODE_ERROR_KIND}.${kind}`, 'missing');
  }
  if (errorKind.members.some((member) => member.value === 0)) {
    throw new LayoutError(errorKind.sourcePath, DECODE_ERROR_KIND, '0 is reserved for success');
  }
}

/**
 * The `key: value` properties of an object literal. Anything else (spreads, shorthand,
 * methods, computed or quoted keys) would make the reader evaluate code, so it is rejected.
 */
function plainProperties(
  object: ObjectLiteralExpression,
  sourcePath: string,
  declaration: string,
): PropertyAssignment[] {
  const assignments: PropertyAssignment[] = [];
  const names = new Set<string>();
  for (const candidate of object.getProperties()) {
    if (!Node.isPropertyAssignment(candidate) || !Node.isIdentifier(candidate.getNameNode())) {
      throw new LayoutError(
        sourcePath,
        declaration,
        `only \`name: literal\` properties are allowed, found \`${candidate.getText()}\``,
      );
    }
    const name = candidate.getName();
    if (names.has(name)) throw new LayoutError(sourcePath, `${declaration}.${name}`, 'duplicate');
    names.add(name);
    assignments.push(candidate);
  }
  return assignments;
}

function checkKeys(
  sourcePath: string,
  declaration: string,
  properties: readonly PropertyAssignment[],
  allowed: readonly string[],
  required: readonly string[],
): void {
  for (const assignment of properties) {
    if (allowed.includes(assignment.getName())) continue;
    throw new LayoutError(sourcePath, declaration, `unknown key '${assignment.getName()}'`);
  }
  for (const key of required) {
    if (properties.some((assignment) => assignment.getName() === key)) continue;
    throw new LayoutError(sourcePath, declaration, `missing '${key}'`);
  }
}

function property(properties: readonly PropertyAssignment[], key: string): Expression {
  const found = properties.find((assignment) => assignment.getName() === key);
  // checkKeys ran first, so a required key is always present.
  if (found === undefined) throw new Error(`internal: '${key}' not checked`);
  return found.getInitializerOrThrow();
}

function integerLiteral(expression: Expression, sourcePath: string, declaration: string): number {
  if (Node.isNumericLiteral(expression)) {
    const value = expression.getLiteralValue();
    if (Number.isSafeInteger(value) && value >= 0) return value;
  }
  throw new LayoutError(
    sourcePath,
    declaration,
    `must be a non-negative integer literal, found \`${expression.getText()}\``,
  );
}

function stringLiteral(expression: Expression, sourcePath: string, declaration: string): string {
  if (Node.isStringLiteral(expression) || Node.isNoSubstitutionTemplateLiteral(expression)) {
    return expression.getLiteralValue();
  }
  const reason = `must be a string literal, found \`${expression.getText()}\``;
  throw new LayoutError(sourcePath, declaration, reason);
}

/**
 * A fixed `value`: a bigint literal for u64 (the runtime compares bigints), a number literal
 * for narrower scalars, in range either way.
 */
function fixedValueLiteral(
  expression: Expression,
  sourcePath: string,
  declaration: string,
  type: FieldType,
): bigint {
  const fail = (reason: string): never => {
    throw new LayoutError(sourcePath, `${declaration}.value`, reason);
  };
  if (type === 'bytes') return fail('a bytes field cannot have a value');
  let value: bigint;
  if (type === 'u64') {
    if (!Node.isBigIntLiteral(expression)) {
      return fail('a u64 value must be a bigint literal (123n)');
    }
    value = BigInt(expression.getText().replace(/_/g, '').slice(0, -1));
  } else {
    value = BigInt(integerLiteral(expression, sourcePath, `${declaration}.value`));
  }
  if (value >= 2n ** BigInt(8 * SCALAR_WIDTH_BYTES[type])) fail(`does not fit a ${type}`);
  return value;
}

function checkName(sourcePath: string, declaration: string, pattern: RegExp, style: string): void {
  const name = declaration.split('.').at(-1) ?? declaration;
  if (!pattern.test(name)) throw new LayoutError(sourcePath, declaration, `name must be ${style}`);
}

/** Words C or Rust reserve; a field so named could not be emitted verbatim (style.md §7.3). */
const KEYWORDS = new Set(
  (
    'as async await auto box break case char const continue crate default do double dyn else ' +
    'enum extern false float fn for goto if impl in inline int let long loop macro match mod ' +
    'move mut priv pub ref register restrict return self short signed sizeof static struct ' +
    'super switch trait true try type typedef typeof union unsafe unsigned use virtual void ' +
    'volatile where while yield'
  ).split(' '),
);

function checkNotKeyword(sourcePath: string, declaration: string, name: string): void {
  if (KEYWORDS.has(name)) {
    throw new LayoutError(sourcePath, declaration, `'${name}' is a C or Rust keyword`);
  }
}

function requireDoc(sourcePath: string, declaration: string, doc: string): void {
  if (doc.trim() === '') {
    throw new LayoutError(sourcePath, declaration, 'needs a /** doc comment */ (style.md §7.10)');
  }
}

/**
 * The JSDoc text of a node. ts-morph has no getJsDocs() on object-literal properties (its
 * issues #1379 and #1543), so this asks the compiler node directly, which works for every node
 * kind that can carry JSDoc (style.md §7.10, rule 6).
 */
function jsDocText(node: Node): string {
  const docs = ts.getJSDocCommentsAndTags(node.compilerNode).filter(ts.isJSDoc);
  const last = docs.at(-1);
  if (last === undefined) return '';
  return (ts.getTextOfJSDocComment(last.comment) ?? '').trim();
}

/** The file's opening `/** ... *\/` block: a struct's description when it has none of its own. */
function fileDocText(file: SourceFile): string {
  const text = file.getFullText();
  const first = (ts.getLeadingCommentRanges(text, 0) ?? []).find((range) =>
    text.startsWith('/**', range.pos),
  );
  if (first === undefined) return '';
  return text
    .slice(first.pos + 3, first.end - 2)
    .split('\n')
    .map((line) => line.replace(/^\s*\* ?/, '').trimEnd())
    .join('\n')
    .trim();
}
