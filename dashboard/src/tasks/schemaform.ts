// A form model derived from a kind's payload JSON Schema: which fields a generated form can
// offer, how an input's text becomes a JSON value, and where validation messages (from ajv in
// the browser, or from the orchestrator's 422 problem) belong. The view renders this model;
// anything the model cannot express is left to the JSON editor.

import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';

import { fieldErrors, type Problem } from '../api/http';
import { isoToLocalInput, localInputToIso } from './filters';

export type JsonObject = Record<string, unknown>;

export type FieldKind = 'string' | 'integer' | 'number' | 'boolean' | 'enum';

export type InputType = 'text' | 'textarea' | 'email' | 'url' | 'date' | 'datetime-local' | 'number' | 'checkbox' | 'select';

export interface EnumOption {
  label: string;
  value: unknown;
}

export interface FormField {
  name: string;
  /** JSON pointer of the field within the payload. */
  pointer: string;
  kind: FieldKind;
  inputType: InputType;
  label: string;
  description?: string;
  required: boolean;
  format?: string;
  options?: EnumOption[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  step?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  default?: unknown;
}

export interface FormModel {
  /** False when the schema does not describe an object of named fields. */
  renderable: boolean;
  /** Why no form can be generated. */
  reason?: string;
  title?: string;
  description?: string;
  fields: FormField[];
  /** Properties only the JSON editor can edit, with why. */
  unsupported: { name: string; reason: string; required: boolean }[];
}

/** What an input holds: text (numbers too, so a half-typed value is not lost) or a checkbox. */
export type RawValue = string | boolean;
export type RawValues = Record<string, RawValue>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const COMBINATORS = ['oneOf', 'anyOf', 'allOf', 'not', 'if', '$ref', '$dynamicRef', 'patternProperties'] as const;

/** The single non-null type a property declares, if it declares exactly one. */
function singleType(schema: JsonObject): string | undefined {
  const type = schema.type;
  if (typeof type === 'string') return type;
  if (Array.isArray(type)) {
    const rest = type.filter((t) => t !== 'null');
    if (rest.length === 1 && typeof rest[0] === 'string') return rest[0];
  }
  return undefined;
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() ? value : undefined;
}

const INPUT_FOR_FORMAT: Record<string, InputType> = {
  email: 'email',
  uri: 'url',
  url: 'url',
  date: 'date',
  'date-time': 'datetime-local',
};

export function escapePointer(name: string): string {
  return name.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function unescapePointer(token: string): string {
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}

function enumLabel(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** One property as a form field, or why it cannot be one. */
export function deriveField(name: string, schema: unknown, required: boolean): FormField | { reason: string } {
  if (schema === true || (isObject(schema) && Object.keys(schema).length === 0)) return { reason: 'any JSON value' };
  if (!isObject(schema)) return { reason: 'not described by the schema' };
  const combinator = COMBINATORS.find((key) => key in schema);
  if (combinator) return { reason: `uses ${combinator}` };
  const base = {
    name,
    pointer: `/${escapePointer(name)}`,
    label: str(schema.title) ?? name,
    description: str(schema.description),
    required,
    default: schema.default,
  };
  const choices = Array.isArray(schema.enum) ? schema.enum : 'const' in schema ? [schema.const] : undefined;
  if (choices) {
    if (choices.length === 0 || choices.some((value) => isObject(value) || Array.isArray(value))) {
      return { reason: 'a choice of structured values' };
    }
    return {
      ...base,
      kind: 'enum',
      inputType: 'select',
      options: choices.map((value) => ({ label: enumLabel(value), value })),
    };
  }
  const type = singleType(schema);
  switch (type) {
    case 'string': {
      const format = str(schema.format);
      const maxLength = num(schema.maxLength);
      const inputType: InputType =
        (format && INPUT_FOR_FORMAT[format]) || (maxLength !== undefined && maxLength > 200 ? 'textarea' : 'text');
      return {
        ...base,
        kind: 'string',
        inputType,
        format,
        minLength: num(schema.minLength),
        maxLength,
        pattern: str(schema.pattern),
      };
    }
    case 'integer':
    case 'number':
      return {
        ...base,
        kind: type,
        inputType: 'number',
        minimum: num(schema.minimum),
        maximum: num(schema.maximum),
        exclusiveMinimum: num(schema.exclusiveMinimum),
        exclusiveMaximum: num(schema.exclusiveMaximum),
        step: num(schema.multipleOf) ?? (type === 'integer' ? 1 : undefined),
      };
    case 'boolean':
      return { ...base, kind: 'boolean', inputType: 'checkbox' };
    case 'object':
      return { reason: 'a nested object' };
    case 'array':
      return { reason: 'a list' };
    case undefined:
      return { reason: Array.isArray(schema.type) ? 'several types' : 'any JSON value' };
    default:
      return { reason: `type ${type}` };
  }
}

/** The form a payload schema allows. */
export function deriveForm(schema: unknown): FormModel {
  const empty = (reason: string): FormModel => ({ renderable: false, reason, fields: [], unsupported: [] });
  if (!isObject(schema)) return empty('The schema accepts any JSON value.');
  const type = singleType(schema);
  if (type !== undefined && type !== 'object') return empty(`The payload is a ${type}, not an object of fields.`);
  for (const key of ['oneOf', 'anyOf', '$ref'] as const) {
    if (key in schema) return empty(`The schema uses ${key}, which the form cannot express.`);
  }
  const properties = isObject(schema.properties) ? schema.properties : {};
  const names = Object.keys(properties);
  if (names.length === 0) return empty('The schema names no fields.');
  const required = new Set(Array.isArray(schema.required) ? schema.required.filter((r): r is string => typeof r === 'string') : []);
  const model: FormModel = {
    renderable: true,
    title: str(schema.title),
    description: str(schema.description),
    fields: [],
    unsupported: [],
  };
  for (const name of names) {
    const field = deriveField(name, properties[name], required.has(name));
    if ('reason' in field) model.unsupported.push({ name, reason: field.reason, required: required.has(name) });
    else model.fields.push(field);
  }
  return model;
}

/** The input state that shows `payload`'s values (when switching from the JSON editor). */
export function rawFromPayload(model: FormModel, payload: unknown): RawValues {
  const raw: RawValues = {};
  const source = isObject(payload) ? payload : {};
  for (const field of model.fields) {
    const value = source[field.name];
    if (field.kind === 'boolean') {
      raw[field.name] = value === true;
    } else if (value === undefined || value === null) {
      raw[field.name] = '';
    } else if (field.kind === 'enum') {
      const index = field.options?.findIndex((option) => JSON.stringify(option.value) === JSON.stringify(value)) ?? -1;
      raw[field.name] = index >= 0 ? String(index) : '';
    } else if (field.inputType === 'datetime-local' && typeof value === 'string') {
      raw[field.name] = isoToLocalInput(value) || value;
    } else {
      raw[field.name] = typeof value === 'string' ? value : JSON.stringify(value);
    }
  }
  return raw;
}

export interface Coerced {
  /** Absent: the field is left out of the payload. */
  value?: unknown;
  /** The input cannot be turned into the field's type. */
  error?: string;
}

/** An input's state as the JSON value it stands for. Empty inputs leave the field out. */
export function coerceField(field: FormField, raw: RawValue | undefined): Coerced {
  if (field.kind === 'boolean') {
    // An unticked optional box leaves the field out (the agent's default applies).
    if (raw === true) return { value: true };
    return field.required ? { value: false } : {};
  }
  const text = typeof raw === 'string' ? raw : '';
  if (field.kind === 'enum') {
    if (text === '') return {};
    const option = field.options?.[Number(text)];
    return option ? { value: option.value } : { error: 'not one of the choices' };
  }
  if (field.kind === 'integer' || field.kind === 'number') {
    const trimmed = text.trim();
    if (trimmed === '') return {};
    const value = Number(trimmed);
    if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(trimmed) || !Number.isFinite(value)) {
      return { error: field.kind === 'integer' ? 'must be a whole number' : 'must be a number' };
    }
    if (field.kind === 'integer' && !Number.isInteger(value)) return { error: 'must be a whole number' };
    return { value };
  }
  if (text === '') return {};
  if (field.inputType === 'datetime-local') {
    const iso = localInputToIso(text);
    return iso ? { value: iso } : { error: 'must be a date and time' };
  }
  return { value: text };
}

/**
 * The payload the form's inputs describe, on top of `base` (so members the form does not show,
 * set in the JSON editor, are kept). Inputs that cannot be converted are reported by field name.
 */
export function buildPayload(model: FormModel, raw: RawValues, base: unknown = {}): { payload: JsonObject; errors: Record<string, string> } {
  const payload: JsonObject = isObject(base) ? { ...base } : {};
  const errors: Record<string, string> = {};
  for (const field of model.fields) {
    const { value, error } = coerceField(field, raw[field.name]);
    if (error) {
      errors[field.name] = error;
      delete payload[field.name];
    } else if (value === undefined) {
      delete payload[field.name];
    } else {
      payload[field.name] = value;
    }
  }
  return { payload, errors };
}

export type Validator = (payload: unknown) => Record<string, string>;

/**
 * A validator for `schema` (draft 2020-12 unless the schema names an older draft), or the reason
 * the browser cannot check it; the orchestrator checks every payload anyway.
 */
export function compileValidator(schema: unknown): { validate: Validator } | { error: string } {
  const declared = isObject(schema) && typeof schema.$schema === 'string' ? schema.$schema : '';
  const ajv = /draft-0[4-7]/.test(declared)
    ? new Ajv({ allErrors: true, strict: false, validateSchema: false })
    : new Ajv2020({ allErrors: true, strict: false, validateSchema: false });
  addFormats(ajv);
  let check: ValidateFunction;
  try {
    check = ajv.compile(typeof schema === 'boolean' ? schema : isObject(schema) ? schema : {});
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
  return {
    validate: (payload) => (check(payload) ? {} : ajvErrorsToPointers(check.errors ?? [])),
  };
}

const TYPE_WORDS: Record<string, string> = {
  string: 'text',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  object: 'an object',
  array: 'a list',
  null: 'null',
};

/** One ajv error in words an operator reads. */
export function describeAjvError(error: ErrorObject): string {
  const p = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return 'required';
    case 'type': {
      const types = String(p.type ?? '').split(',');
      return `must be ${types.map((t) => TYPE_WORDS[t] ?? t).join(' or ')}`;
    }
    case 'minimum':
      return `must be at least ${String(p.limit)}`;
    case 'maximum':
      return `must be at most ${String(p.limit)}`;
    case 'exclusiveMinimum':
      return `must be more than ${String(p.limit)}`;
    case 'exclusiveMaximum':
      return `must be less than ${String(p.limit)}`;
    case 'minLength':
      return p.limit === 1 ? 'must not be empty' : `must be at least ${String(p.limit)} characters`;
    case 'maxLength':
      return `must be at most ${String(p.limit)} characters`;
    case 'pattern':
      return `must match ${String(p.pattern)}`;
    case 'format':
      return `must be a valid ${String(p.format)}`;
    case 'enum':
      return `must be one of: ${((p.allowedValues as unknown[]) ?? []).map(enumLabel).join(', ')}`;
    case 'const':
      return `must be ${enumLabel(p.allowedValue)}`;
    case 'additionalProperties':
      return 'is not a field this kind accepts';
    case 'multipleOf':
      return `must be a multiple of ${String(p.multipleOf)}`;
    default:
      return error.message ?? 'is not valid';
  }
}

/** ajv's errors keyed by the JSON pointer (within the payload) of the value they are about. */
export function ajvErrorsToPointers(errors: ErrorObject[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const error of errors) {
    // Combinator summaries ("must match a schema in anyOf") repeat what the errors before said.
    if (error.keyword === 'if' || error.keyword === 'anyOf' || error.keyword === 'oneOf') continue;
    const p = error.params as Record<string, unknown>;
    let pointer = error.instancePath;
    if (error.keyword === 'required' && typeof p.missingProperty === 'string') {
      pointer += `/${escapePointer(p.missingProperty)}`;
    } else if (error.keyword === 'additionalProperties' && typeof p.additionalProperty === 'string') {
      pointer += `/${escapePointer(p.additionalProperty)}`;
    }
    const message = describeAjvError(error);
    if (!out[pointer]) out[pointer] = message;
    else if (!out[pointer].split('; ').includes(message)) out[pointer] = `${out[pointer]}; ${message}`;
  }
  return out;
}

export interface PlacedErrors {
  /** By field name, for the generated form's fields. */
  fields: Record<string, string>;
  /** Everything else (the payload as a whole, nested members, members the form does not show). */
  other: { pointer: string; message: string }[];
}

/** Puts payload errors (keyed by pointer within the payload) next to the form field they name. */
export function placeErrors(model: FormModel, byPointer: Record<string, string>): PlacedErrors {
  const placed: PlacedErrors = { fields: {}, other: [] };
  const names = new Set(model.fields.map((field) => field.name));
  for (const [pointer, message] of Object.entries(byPointer)) {
    const first = pointer.split('/')[1];
    const name = first === undefined ? undefined : unescapePointer(first);
    // An error inside a field's value belongs to the field only when the field is the value.
    if (name !== undefined && names.has(name) && pointer === `/${first}`) {
      placed.fields[name] = placed.fields[name] ? `${placed.fields[name]}; ${message}` : message;
    } else {
      placed.other.push({ pointer: pointer || '/', message });
    }
  }
  return placed;
}

export interface ProblemErrors {
  /** Payload errors by pointer within the payload ('' is the payload itself). */
  payload: Record<string, string>;
  /** Errors about the task's own members, by member name (kind, correlationId, priority, …). */
  task: Record<string, string>;
  /** Errors that name no field this form shows. */
  other: string[];
}

/** Splits a 422 problem's `errors` (pointers like `/payload/x`, `/priority`) by where they go. */
export function problemToErrors(problem: Problem | null, taskFields: readonly string[]): ProblemErrors {
  const out: ProblemErrors = { payload: {}, task: {}, other: [] };
  for (const [field, message] of Object.entries(fieldErrors(problem))) {
    if (field === '/payload' || field.startsWith('/payload/')) {
      out.payload[field.slice('/payload'.length)] = message;
      continue;
    }
    const name = field.startsWith('/') ? unescapePointer(field.slice(1)) : field;
    if (taskFields.includes(name)) out.task[name] = message;
    else out.other.push(field && field !== '/' ? `${field}: ${message}` : message);
  }
  return out;
}

/** Help text for a field: its description and the limits the schema sets. */
export function fieldHint(field: FormField): string {
  const parts: string[] = [];
  if (field.description) parts.push(field.description);
  const limits: string[] = [];
  if (field.minimum !== undefined) limits.push(`min ${field.minimum}`);
  if (field.exclusiveMinimum !== undefined) limits.push(`more than ${field.exclusiveMinimum}`);
  if (field.maximum !== undefined) limits.push(`max ${field.maximum}`);
  if (field.exclusiveMaximum !== undefined) limits.push(`less than ${field.exclusiveMaximum}`);
  if (field.minLength !== undefined) limits.push(`at least ${field.minLength} characters`);
  if (field.maxLength !== undefined) limits.push(`at most ${field.maxLength} characters`);
  if (field.format && field.inputType === 'text') limits.push(`format ${field.format}`);
  if (field.default !== undefined) limits.push(`default ${enumLabel(field.default)}`);
  if (limits.length) parts.push(`(${limits.join(', ')})`);
  return parts.join(' ');
}

/** Parses the JSON editor's text: an object payload, or the parse error in words. */
export function parsePayloadText(text: string): { payload: unknown } | { error: string } {
  if (!text.trim()) return { payload: {} };
  try {
    return { payload: JSON.parse(text) as unknown };
  } catch (error) {
    return { error: `Not valid JSON: ${error instanceof Error ? error.message : String(error)}` };
  }
}
