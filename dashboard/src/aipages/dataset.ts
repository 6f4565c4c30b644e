// Datasets the dataset-router hands to Plotly panels: inline rows or a stored blob (JSON rows,
// JSON columns, or CSV/TSV), turned into columns and mapped onto trace attributes.

import type { PlainObject, Table } from './model';
import { UNSAFE_KEYS, sanitizeTable } from './sanitize';

/** Rows of objects as columns; a key missing from a row is null there. */
export function rowsToTable(rows: PlainObject[]): Table {
  const names: string[] = [];
  const seen = new Set<string>();
  for (const row of rows) {
    for (const key of Object.keys(row)) {
      if (!seen.has(key) && !UNSAFE_KEYS.has(key)) {
        seen.add(key);
        names.push(key);
      }
    }
  }
  const columns: Record<string, unknown[]> = {};
  for (const name of names) columns[name] = rows.map((row) => (Object.hasOwn(row, name) ? row[name] : null));
  return { columns, length: rows.length };
}

function isRowArray(value: unknown): value is PlainObject[] {
  return Array.isArray(value) && value.every((row) => typeof row === 'object' && row !== null && !Array.isArray(row));
}

/** A dataset from JSON: `[{…}, …]`, `{"rows": [{…}, …]}` or `{"column": […], …}`. */
export function tableFromJson(value: unknown): Table {
  if (isRowArray(value)) return rowsToTable(value);
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const record = value as PlainObject;
    if (isRowArray(record.rows)) return rowsToTable(record.rows);
    const entries = Object.entries(record).filter(([name]) => !UNSAFE_KEYS.has(name));
    if (entries.length > 0 && entries.every(([, column]) => Array.isArray(column))) {
      const columns = Object.fromEntries(entries) as Record<string, unknown[]>;
      return { columns, length: Math.max(...entries.map(([, column]) => (column as unknown[]).length)) };
    }
  }
  throw new Error('the dataset is neither a list of rows nor an object of columns');
}

const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

function cell(text: string): unknown {
  if (text === '') return null;
  return NUMBER.test(text.trim()) ? Number(text) : text;
}

/** RFC 4180 CSV (quoted fields, doubled quotes, CRLF), or TSV with `delimiter` = tab. */
export function parseDelimited(text: string, delimiter = ','): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let quoted = false;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  for (; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          quoted = false;
        }
      } else {
        field += c;
      }
    } else if (c === '"' && field === '') {
      quoted = true;
    } else if (c === delimiter) {
      record.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      record.push(field);
      records.push(record);
      record = [];
      field = '';
    } else {
      field += c;
    }
  }
  if (field !== '' || record.length > 0) {
    record.push(field);
    records.push(record);
  }
  return records.filter((r) => !(r.length === 1 && r[0] === ''));
}

/** A CSV/TSV with a header row as columns; numeric cells become numbers. */
export function tableFromDelimited(text: string, delimiter = ','): Table {
  const [header, ...records] = parseDelimited(text, delimiter);
  if (!header) throw new Error('the dataset is empty');
  const columns: Record<string, unknown[]> = {};
  header.forEach((name, i) => {
    if (!UNSAFE_KEYS.has(name)) columns[name] = records.map((record) => cell(record[i] ?? ''));
  });
  return { columns, length: records.length };
}

/** A stored dataset's content as columns, by its content type (JSON unless it says CSV/TSV). */
export function parseDataset(text: string, contentType: string): Table {
  const type = contentType.split(';')[0].trim().toLowerCase();
  let table: Table;
  if (type === 'text/csv') table = tableFromDelimited(text, ',');
  else if (type === 'text/tab-separated-values') table = tableFromDelimited(text, '\t');
  else {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new Error(`the dataset (${type || 'no content type'}) is not JSON, CSV or TSV`);
    }
    table = tableFromJson(value);
  }
  return sanitizeTable(table);
}

const FORBIDDEN_SEGMENTS = UNSAFE_KEYS;

/** Sets `path` (`marker.color`) on `target`, creating plain objects along the way; only
 * own properties are followed, so no path reaches a prototype. */
export function setPath(target: PlainObject, path: string, value: unknown): boolean {
  const segments = path.split('.');
  if (segments.some((segment) => !segment || FORBIDDEN_SEGMENTS.has(segment))) return false;
  let node = target;
  for (const segment of segments.slice(0, -1)) {
    const next = Object.hasOwn(node, segment) ? node[segment] : undefined;
    if (typeof next === 'object' && next !== null && !Array.isArray(next)) {
      const copy = { ...(next as PlainObject) };
      node[segment] = copy;
      node = copy;
    } else {
      const created: PlainObject = {};
      node[segment] = created;
      node = created;
    }
  }
  node[segments[segments.length - 1]] = value;
  return true;
}

export interface Routed {
  data: PlainObject[];
  /** Why part of the mapping could not be applied, for the panel to show. */
  notes: string[];
}

/** The traces with the dataset's columns set on the mapped attributes of every trace; a
 * figure without traces gets one scatter trace. The traces passed in are not changed. */
export function applyMapping(traces: PlainObject[], table: Table, mapping: Record<string, string>): Routed {
  const notes: string[] = [];
  const base = traces.length > 0 ? traces : [{ type: 'scatter' }];
  const data = base.map((trace) => ({ ...trace }));
  for (const [attribute, column] of Object.entries(mapping)) {
    if (!Object.hasOwn(table.columns, column)) {
      const available = Object.keys(table.columns).join(', ') || 'none';
      notes.push(`The dataset has no column "${column}" for ${attribute} (columns: ${available}).`);
      continue;
    }
    for (const trace of data) {
      if (!setPath(trace, attribute, table.columns[column].slice())) {
        notes.push(`${attribute} is not a trace attribute that can be set.`);
        break;
      }
    }
  }
  return { data, notes };
}

const TABLE_ATTRIBUTES = ['x', 'y', 'z', 'labels', 'values', 'text', 'lat', 'lon', 'r', 'theta', 'open', 'high', 'low', 'close'];

export interface TraceTable {
  name: string;
  columns: string[];
  rows: unknown[][];
  /** Points in the trace; `rows` holds at most the limit. */
  total: number;
}

/** A trace's points as a table, for reading a chart without seeing it. */
export function traceTable(trace: PlainObject, index: number, limit = 100): TraceTable {
  const columns = TABLE_ATTRIBUTES.filter((attribute) => Array.isArray(trace[attribute]));
  const total = Math.max(0, ...columns.map((attribute) => (trace[attribute] as unknown[]).length));
  const rows: unknown[][] = [];
  for (let i = 0; i < Math.min(total, limit); i++) rows.push(columns.map((attribute) => (trace[attribute] as unknown[])[i]));
  // Plotly's text markup is shown as plain words here.
  const plain = typeof trace.name === 'string' ? trace.name.replace(/<[^>]*>/g, '').trim() : '';
  const name = plain || `Trace ${index + 1}`;
  return { name, columns, rows, total };
}
