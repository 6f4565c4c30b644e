import { describe, expect, it } from 'vitest';

import {
  ajvErrorsToPointers,
  buildPayload,
  coerceField,
  compileValidator,
  deriveField,
  deriveForm,
  fieldHint,
  parsePayloadText,
  placeErrors,
  problemToErrors,
  rawFromPayload,
  type FormField,
} from './schemaform';

// The echo agent's registered payload schema, as GET /agents serves it.
const ECHO = {
  type: 'object',
  additionalProperties: true,
  description: 'Any object; these members change how the attempt behaves.',
  properties: {
    delayMs: { type: 'integer', minimum: 0, maximum: 600000, description: 'Wait this long before answering.' },
    failAlways: { type: 'boolean', description: 'Fail every attempt (retryable).' },
    failTimes: { type: 'integer', minimum: 0 },
    hangMs: { type: 'integer', minimum: 0, maximum: 86400000 },
    message: { type: 'string', description: 'Echoed like everything else.' },
  },
};

const RICH = {
  type: 'object',
  required: ['name', 'size', 'mode'],
  properties: {
    name: { type: 'string', title: 'Name', minLength: 1, maxLength: 40 },
    email: { type: 'string', format: 'email' },
    when: { type: 'string', format: 'date-time' },
    size: { type: 'number', exclusiveMinimum: 0, maximum: 10 },
    mode: { enum: ['fast', 'slow', 3] },
    fixed: { const: 'v1' },
    tags: { type: 'array', items: { type: 'string' } },
    nested: { type: 'object', properties: { a: { type: 'string' } } },
    either: { oneOf: [{ type: 'string' }, { type: 'integer' }] },
    nullable: { type: ['integer', 'null'] },
    anything: {},
  },
};

function field(model: ReturnType<typeof deriveForm>, name: string): FormField {
  const found = model.fields.find((f) => f.name === name);
  if (!found) throw new Error(`no field ${name}`);
  return found;
}

describe('deriveForm', () => {
  it('turns the echo schema into five fields with their limits and help', () => {
    const model = deriveForm(ECHO);
    expect(model.renderable).toBe(true);
    expect(model.description).toBe('Any object; these members change how the attempt behaves.');
    expect(model.fields.map((f) => [f.name, f.kind, f.inputType])).toEqual([
      ['delayMs', 'integer', 'number'],
      ['failAlways', 'boolean', 'checkbox'],
      ['failTimes', 'integer', 'number'],
      ['hangMs', 'integer', 'number'],
      ['message', 'string', 'text'],
    ]);
    const delay = field(model, 'delayMs');
    expect(delay).toMatchObject({ minimum: 0, maximum: 600000, step: 1, required: false, pointer: '/delayMs', label: 'delayMs' });
    expect(fieldHint(delay)).toBe('Wait this long before answering. (min 0, max 600000)');
    expect(model.unsupported).toEqual([]);
  });

  it('maps enums to selects, formats to inputs, marks required, and sets aside what it cannot render', () => {
    const model = deriveForm(RICH);
    expect(field(model, 'name')).toMatchObject({ label: 'Name', required: true, minLength: 1, maxLength: 40, inputType: 'text' });
    expect(field(model, 'email').inputType).toBe('email');
    expect(field(model, 'when').inputType).toBe('datetime-local');
    expect(field(model, 'size')).toMatchObject({ kind: 'number', exclusiveMinimum: 0, maximum: 10, step: undefined, required: true });
    expect(field(model, 'mode').options).toEqual([
      { label: 'fast', value: 'fast' },
      { label: 'slow', value: 'slow' },
      { label: '3', value: 3 },
    ]);
    expect(field(model, 'fixed').options).toEqual([{ label: 'v1', value: 'v1' }]);
    expect(field(model, 'nullable').kind).toBe('integer');
    expect(model.unsupported).toEqual([
      { name: 'tags', reason: 'a list', required: false },
      { name: 'nested', reason: 'a nested object', required: false },
      { name: 'either', reason: 'uses oneOf', required: false },
      { name: 'anything', reason: 'any JSON value', required: false },
    ]);
  });

  it('offers no form for schemas without named fields', () => {
    expect(deriveForm(true).renderable).toBe(false);
    expect(deriveForm({}).renderable).toBe(false);
    expect(deriveForm({ type: 'array', items: {} }).reason).toMatch(/array/);
    expect(deriveForm({ oneOf: [{ type: 'object' }] }).reason).toMatch(/oneOf/);
  });

  it('uses a textarea for long text', () => {
    const long = deriveField('body', { type: 'string', maxLength: 5000 }, false);
    expect('reason' in long ? long.reason : long.inputType).toBe('textarea');
  });
});

describe('coerceField', () => {
  const model = deriveForm(RICH);
  const echo = deriveForm(ECHO);

  it('reads whole numbers and refuses anything else', () => {
    const delay = field(echo, 'delayMs');
    expect(coerceField(delay, '250')).toEqual({ value: 250 });
    expect(coerceField(delay, ' -3 ')).toEqual({ value: -3 });
    expect(coerceField(delay, '')).toEqual({});
    expect(coerceField(delay, '1.5').error).toBe('must be a whole number');
    expect(coerceField(delay, '12abc').error).toBe('must be a whole number');
    expect(coerceField(delay, '1e3')).toEqual({ value: 1000 });
  });

  it('reads decimals for number fields', () => {
    const size = field(model, 'size');
    expect(coerceField(size, '2.5')).toEqual({ value: 2.5 });
    expect(coerceField(size, 'two').error).toBe('must be a number');
  });

  it('leaves an unticked optional box out, and sends false for a required one', () => {
    const fail = field(echo, 'failAlways');
    expect(coerceField(fail, true)).toEqual({ value: true });
    expect(coerceField(fail, false)).toEqual({});
    expect(coerceField({ ...fail, required: true }, false)).toEqual({ value: false });
  });

  it('gives enum choices back with their JSON type', () => {
    const mode = field(model, 'mode');
    expect(coerceField(mode, '2')).toEqual({ value: 3 });
    expect(coerceField(mode, '0')).toEqual({ value: 'fast' });
    expect(coerceField(mode, '')).toEqual({});
    expect(coerceField(mode, '9').error).toBeDefined();
  });

  it('turns a local date-time into an RFC 3339 instant', () => {
    const when = field(model, 'when');
    const { value } = coerceField(when, '2026-03-01T10:30');
    expect(value).toBe(new Date('2026-03-01T10:30').toISOString());
    expect(coerceField(when, 'soon').error).toBe('must be a date and time');
  });
});

describe('buildPayload and rawFromPayload', () => {
  const echo = deriveForm(ECHO);

  it('builds the payload on top of members only the JSON editor knows', () => {
    const { payload, errors } = buildPayload(
      echo,
      { delayMs: '100', failAlways: true, message: 'hi', failTimes: '', hangMs: '' },
      { extra: [1, 2], message: 'old', hangMs: 5 },
    );
    expect(errors).toEqual({});
    expect(payload).toEqual({ extra: [1, 2], message: 'hi', delayMs: 100, failAlways: true });
  });

  it('reports inputs it cannot convert and leaves them out', () => {
    const { payload, errors } = buildPayload(echo, { delayMs: 'x', message: 'm' });
    expect(errors).toEqual({ delayMs: 'must be a whole number' });
    expect(payload).toEqual({ message: 'm' });
  });

  it('round-trips a payload through the inputs', () => {
    const payload = { delayMs: 7, failAlways: true, message: 'round', extra: { a: 1 } };
    const raw = rawFromPayload(echo, payload);
    expect(raw).toEqual({ delayMs: '7', failAlways: true, failTimes: '', hangMs: '', message: 'round' });
    expect(buildPayload(echo, raw, payload).payload).toEqual(payload);
  });

  it('selects the enum option that holds the value', () => {
    const model = deriveForm(RICH);
    expect(rawFromPayload(model, { mode: 3 }).mode).toBe('2');
    expect(rawFromPayload(model, { mode: 'other' }).mode).toBe('');
  });
});

describe('validation with ajv', () => {
  it('validates against the echo schema and names the fields', () => {
    const compiled = compileValidator(ECHO);
    if (!('validate' in compiled)) throw new Error(compiled.error);
    expect(compiled.validate({ delayMs: 10, message: 'ok' })).toEqual({});
    expect(compiled.validate({ delayMs: -1, message: 3 })).toEqual({
      '/delayMs': 'must be at least 0',
      '/message': 'must be text',
    });
  });

  it('puts required and format errors on the missing or wrong field', () => {
    const compiled = compileValidator(RICH);
    if (!('validate' in compiled)) throw new Error(compiled.error);
    const errors = compiled.validate({ email: 'not-mail', size: 0, tags: [1] });
    expect(errors['/name']).toBe('required');
    expect(errors['/mode']).toBe('required');
    expect(errors['/email']).toBe('must be a valid email');
    expect(errors['/size']).toBe('must be more than 0');
    expect(errors['/tags/0']).toBe('must be text');
  });

  it('names additional members a closed schema refuses', () => {
    const compiled = compileValidator({ type: 'object', additionalProperties: false, properties: { a: { type: 'string' } } });
    if (!('validate' in compiled)) throw new Error(compiled.error);
    expect(compiled.validate({ a: 'x', b: 1 })).toEqual({ '/b': 'is not a field this kind accepts' });
  });

  it('says why it cannot check a broken schema', () => {
    const compiled = compileValidator({ type: 'object', properties: { a: { $ref: '#/nowhere' } } });
    expect('error' in compiled).toBe(true);
  });

  it('joins several messages about one value', () => {
    const errors = ajvErrorsToPointers([
      { keyword: 'minLength', instancePath: '/a', schemaPath: '', params: { limit: 3 } },
      { keyword: 'pattern', instancePath: '/a', schemaPath: '', params: { pattern: '^x' } },
      { keyword: 'anyOf', instancePath: '/a', schemaPath: '', params: {} },
    ]);
    expect(errors).toEqual({ '/a': 'must be at least 3 characters; must match ^x' });
  });
});

describe('placing errors', () => {
  const echo = deriveForm(ECHO);

  it('puts errors on form fields and keeps the rest aside', () => {
    const placed = placeErrors(echo, { '/delayMs': 'must be at least 0', '/extra/0': 'must be text', '': 'must be an object' });
    expect(placed.fields).toEqual({ delayMs: 'must be at least 0' });
    expect(placed.other).toEqual([
      { pointer: '/extra/0', message: 'must be text' },
      { pointer: '/', message: 'must be an object' },
    ]);
  });

  it('splits a 422 problem into payload, task member and other errors', () => {
    const problem = {
      status: 422,
      errors: [
        { field: '/payload/delayMs', message: '-1 is less than the minimum of 0' },
        { field: '/payload', message: 'expected an object' },
        { field: '/priority', message: 'between -100 and 100' },
        { field: '/kind', message: 'no agent serves kind "x"' },
        { field: '/mystery', message: 'odd' },
      ],
    };
    const split = problemToErrors(problem, ['kind', 'priority']);
    expect(split.payload).toEqual({ '/delayMs': '-1 is less than the minimum of 0', '': 'expected an object' });
    expect(split.task).toEqual({ priority: 'between -100 and 100', kind: 'no agent serves kind "x"' });
    expect(split.other).toEqual(['/mystery: odd']);
    expect(placeErrors(echo, split.payload).fields).toEqual({ delayMs: '-1 is less than the minimum of 0' });
  });

  it('reads pointers with escaped characters', () => {
    const model = deriveForm({ type: 'object', properties: { 'a/b': { type: 'string' } } });
    expect(model.fields[0].pointer).toBe('/a~1b');
    expect(placeErrors(model, { '/a~1b': 'bad' }).fields).toEqual({ 'a/b': 'bad' });
  });
});

describe('parsePayloadText', () => {
  it('parses JSON, treats blank as an empty object, and explains parse errors', () => {
    expect(parsePayloadText('{"a":1}')).toEqual({ payload: { a: 1 } });
    expect(parsePayloadText('  ')).toEqual({ payload: {} });
    const failed = parsePayloadText('{"a":');
    expect('error' in failed && failed.error).toMatch(/^Not valid JSON/);
  });
});
