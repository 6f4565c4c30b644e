// Reads directive bodies into typed values. The gateway checks inline bodies against the
// directive schemas on send, but a claim-checked body is only read here, in the browser, so
// every body is checked again before it reaches the page.

import type {
  Envelope,
  FieldType,
  FigureBody,
  FormBody,
  FormField,
  LayoutBody,
  PageStateWire,
  PlainObject,
  PollOut,
  Region,
  RouteBody,
  TextBody,
} from './model';

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

class Invalid extends Error {}

function fail(path: string, message: string): never {
  throw new Invalid(`${path || 'the body'} ${message}`);
}

function run<T>(read: () => T): Decoded<T> {
  try {
    return { ok: true, value: read() };
  } catch (error) {
    if (error instanceof Invalid) return { ok: false, error: error.message };
    throw error;
  }
}

export function isPlainObject(value: unknown): value is PlainObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function object(value: unknown, path: string): PlainObject {
  if (!isPlainObject(value)) fail(path, 'must be an object');
  return value;
}

function string(value: unknown, path: string, max?: number, pattern?: RegExp): string {
  if (typeof value !== 'string') fail(path, 'must be a string');
  if (max !== undefined && value.length > max) fail(path, `must be at most ${max} characters`);
  if (pattern && !pattern.test(value)) fail(path, `does not match ${pattern.source}`);
  return value;
}

function optionalString(value: unknown, path: string, max?: number, pattern?: RegExp): string | undefined {
  return value === undefined ? undefined : string(value, path, max, pattern);
}

function array(value: unknown, path: string, min = 0, max = Infinity): unknown[] {
  if (!Array.isArray(value)) fail(path, 'must be an array');
  if (value.length < min) fail(path, `must have at least ${min} item${min === 1 ? '' : 's'}`);
  if (value.length > max) fail(path, `must have at most ${max} items`);
  return value;
}

function known(body: PlainObject, allowed: string[], path: string): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) fail(`${path}/${key}`, 'is not an allowed property');
  }
}

export const COMPONENT_ADDRESS = /^(plotly-panel|text-component)-[a-z0-9][a-z0-9_-]{0,63}$/;
export const PANEL_ADDRESS = /^plotly-panel-[a-z0-9][a-z0-9_-]{0,63}$/;
export const AREA_ROW = /^(?:[a-z][a-z0-9_-]*|\.)(?: +(?:[a-z][a-z0-9_-]*|\.))*$/;
export const AREA_NAME = /^[a-z][a-z0-9_-]*$/;
export const TRACK = /^(?:auto|min-content|max-content|0|[0-9]+(?:\.[0-9]+)?(?:px|rem|em|%|fr))$/;
export const LENGTH = /^(?:0|[0-9]+(?:\.[0-9]+)?(?:px|rem|em|%))$/;
const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const MAPPING_KEY = /^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FIELD_TYPES: FieldType[] = ['text', 'number', 'select', 'checkbox', 'textarea'];

export function decodeText(raw: unknown): Decoded<TextBody> {
  return run(() => {
    const body = object(raw, '');
    known(body, ['text', 'format', 'label'], '');
    const format = body.format ?? 'text';
    if (format !== 'text' && format !== 'markdown') fail('/format', 'must be "text" or "markdown"');
    return {
      text: string(body.text, '/text', 65536),
      format,
      label: optionalString(body.label, '/label', 200),
    };
  });
}

function decodeField(raw: unknown, path: string): FormField {
  const field = object(raw, path);
  known(field, ['name', 'label', 'type', 'options', 'required', 'placeholder', 'default'], path);
  const type = field.type as FieldType;
  if (!FIELD_TYPES.includes(type)) fail(`${path}/type`, `must be one of ${FIELD_TYPES.join(', ')}`);
  let options: FormField['options'];
  if (type === 'select') {
    options = array(field.options, `${path}/options`, 1, 500).map((rawOption, i) => {
      const option = object(rawOption, `${path}/options/${i}`);
      known(option, ['value', 'label'], `${path}/options/${i}`);
      return {
        value: string(option.value, `${path}/options/${i}/value`, 200),
        label: optionalString(option.label, `${path}/options/${i}/label`, 200),
      };
    });
  } else if (field.options !== undefined) {
    fail(`${path}/options`, 'is only allowed on select fields');
  }
  if (field.required !== undefined && typeof field.required !== 'boolean') fail(`${path}/required`, 'must be a boolean');
  const fallback = field.default;
  if (fallback !== undefined && !['string', 'number', 'boolean'].includes(typeof fallback)) {
    fail(`${path}/default`, 'must be a string, number or boolean');
  }
  return {
    name: string(field.name, `${path}/name`, undefined, FIELD_NAME),
    label: optionalString(field.label, `${path}/label`, 200),
    type,
    options,
    required: field.required === true,
    placeholder: optionalString(field.placeholder, `${path}/placeholder`, 200),
    default: fallback as FormField['default'],
  };
}

export function decodeForm(raw: unknown): Decoded<FormBody> {
  return run(() => {
    const body = object(raw, '');
    known(body, ['title', 'submitLabel', 'fields'], '');
    const fields = array(body.fields, '/fields', 1, 100).map((field, i) => decodeField(field, `/fields/${i}`));
    const names = new Set<string>();
    for (const [i, field] of fields.entries()) {
      if (names.has(field.name)) fail(`/fields/${i}/name`, `repeats the field name ${field.name}`);
      names.add(field.name);
    }
    return {
      title: optionalString(body.title, '/title', 200),
      submitLabel: optionalString(body.submitLabel, '/submitLabel', 100),
      fields,
    };
  });
}

export function decodeFigure(raw: unknown): Decoded<FigureBody> {
  return run(() => {
    const body = object(raw, '');
    known(body, ['data', 'layout', 'config', 'frames'], '');
    const data = array(body.data, '/data').map((trace, i) => object(trace, `/data/${i}`));
    data.forEach((trace, i) => optionalString(trace.type, `/data/${i}/type`));
    return {
      data,
      layout: object(body.layout, '/layout'),
      config: body.config === undefined ? undefined : object(body.config, '/config'),
      frames: body.frames === undefined ? undefined : array(body.frames, '/frames').map((f, i) => object(f, `/frames/${i}`)),
    };
  });
}

export function decodeLayout(raw: unknown): Decoded<LayoutBody> {
  return run(() => {
    const body = object(raw, '');
    known(body, ['title', 'areas', 'columns', 'rows', 'gap', 'regions'], '');
    const tracks = (value: unknown, path: string) =>
      value === undefined ? undefined : array(value, path, 0, 24).map((t, i) => string(t, `${path}/${i}`, undefined, TRACK));
    const regions: Region[] = array(body.regions, '/regions', 0, 64).map((rawRegion, i) => {
      const region = object(rawRegion, `/regions/${i}`);
      known(region, ['area', 'component', 'title'], `/regions/${i}`);
      return {
        area: string(region.area, `/regions/${i}/area`, undefined, AREA_NAME),
        component: string(region.component, `/regions/${i}/component`, undefined, COMPONENT_ADDRESS),
        title: optionalString(region.title, `/regions/${i}/title`, 200),
      };
    });
    return {
      title: optionalString(body.title, '/title', 200),
      areas: array(body.areas, '/areas', 1, 24).map((row, i) => string(row, `/areas/${i}`, undefined, AREA_ROW)),
      columns: tracks(body.columns, '/columns'),
      rows: tracks(body.rows, '/rows'),
      gap: optionalString(body.gap, '/gap', undefined, LENGTH),
      regions,
    };
  });
}

export function decodeRemove(raw: unknown): Decoded<{ component: string }> {
  return run(() => {
    const body = object(raw, '');
    known(body, ['component'], '');
    return { component: string(body.component, '/component', undefined, COMPONENT_ADDRESS) };
  });
}

export function decodeRoute(raw: unknown): Decoded<RouteBody> {
  return run(() => {
    const body = object(raw, '');
    known(body, ['dataset', 'to', 'mapping'], '');
    const source = object(body.dataset, '/dataset');
    let dataset: RouteBody['dataset'];
    if ('blobId' in source) {
      known(source, ['blobId'], '/dataset');
      dataset = { blobId: string(source.blobId, '/dataset/blobId', undefined, UUID) };
    } else {
      known(source, ['rows'], '/dataset');
      dataset = { rows: array(source.rows, '/dataset/rows').map((row, i) => object(row, `/dataset/rows/${i}`)) };
    }
    const to = array(body.to, '/to', 1).map((panel, i) => string(panel, `/to/${i}`, undefined, PANEL_ADDRESS));
    if (new Set(to).size !== to.length) fail('/to', 'must not repeat a panel');
    const rawMapping = object(body.mapping, '/mapping');
    const mapping: Record<string, string> = {};
    for (const [attribute, column] of Object.entries(rawMapping)) {
      if (!MAPPING_KEY.test(attribute)) fail(`/mapping/${attribute}`, 'is not a trace attribute path');
      mapping[attribute] = string(column, `/mapping/${attribute}`, 200);
      if (!column) fail(`/mapping/${attribute}`, 'must name a column');
    }
    if (Object.keys(mapping).length === 0) fail('/mapping', 'must map at least one attribute');
    return { dataset, to, mapping };
  });
}

// Wire documents from the gateway.

function decodeEnvelope(raw: unknown, path: string): Envelope {
  const envelope = object(raw, path);
  const body = object(envelope.body, `${path}/body`);
  const seq = envelope.seq;
  if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 1) fail(`${path}/seq`, 'must be a positive integer');
  let decodedBody: Envelope['body'];
  if ('blob' in body) {
    const blob = object(body.blob, `${path}/body/blob`);
    decodedBody = {
      blob: {
        blobId: string(blob.blobId, `${path}/body/blob/blobId`, undefined, UUID),
        sha256: string(blob.sha256 ?? '', `${path}/body/blob/sha256`),
        size: typeof blob.size === 'number' ? blob.size : 0,
        contentType: string(blob.contentType ?? 'application/json', `${path}/body/blob/contentType`),
      },
    };
  } else if ('inline' in body) {
    decodedBody = { inline: body.inline };
  } else {
    fail(`${path}/body`, 'must be inline or a blob reference');
  }
  return {
    id: string(envelope.id, `${path}/id`),
    page: string(envelope.page, `${path}/page`),
    to: string(envelope.to, `${path}/to`),
    from: string(envelope.from ?? 'ai', `${path}/from`),
    directive: string(envelope.directive, `${path}/directive`),
    body: decodedBody,
    seq,
    sentAt: string(envelope.sentAt ?? '', `${path}/sentAt`),
  };
}

function sequence(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) fail(path, 'must be a sequence number');
  return value;
}

export function decodeState(raw: unknown): Decoded<PageStateWire> {
  return run(() => {
    const state = object(raw, '');
    return {
      seq: sequence(state.seq, '/seq'),
      components: array(state.components, '/components').map((c, i) => decodeEnvelope(c, `/components/${i}`)),
    };
  });
}

export function decodePoll(raw: unknown): Decoded<PollOut> {
  return run(() => {
    const poll = object(raw, '');
    return {
      messages: array(poll.messages, '/messages').map((m, i) => decodeEnvelope(m, `/messages/${i}`)),
      next: sequence(poll.next, '/next'),
    };
  });
}
