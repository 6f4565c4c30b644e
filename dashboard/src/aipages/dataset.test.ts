import { describe, expect, it } from 'vitest';

import { applyMapping, parseDataset, parseDelimited, rowsToTable, setPath, tableFromJson, traceTable } from './dataset';

describe('tables', () => {
  it('turns rows into columns, null where a row lacks a key', () => {
    expect(rowsToTable([{ x: 1, y: 2 }, { x: 2 }, { y: 8, z: 'a' }])).toEqual({
      columns: { x: [1, 2, null], y: [2, null, 8], z: [null, null, 'a'] },
      length: 3,
    });
  });

  it('reads JSON rows, {rows} and column objects', () => {
    const expected = { columns: { x: [1, 2], y: [3, 4] }, length: 2 };
    expect(tableFromJson([{ x: 1, y: 3 }, { x: 2, y: 4 }])).toEqual(expected);
    expect(tableFromJson({ rows: [{ x: 1, y: 3 }, { x: 2, y: 4 }] })).toEqual(expected);
    expect(tableFromJson({ x: [1, 2], y: [3, 4] })).toEqual(expected);
    expect(() => tableFromJson(42)).toThrow(/neither a list of rows nor an object of columns/);
    expect(() => tableFromJson({ x: 1 })).toThrow();
  });

  it('parses CSV with quotes, doubled quotes, CRLF and a BOM', () => {
    expect(parseDelimited('\ufeffa,b\r\n"x, y","say ""hi"""\r\n1,\n')).toEqual([
      ['a', 'b'],
      ['x, y', 'say "hi"'],
      ['1', ''],
    ]);
  });

  it('reads a stored dataset by its content type, numbers as numbers', () => {
    expect(parseDataset('x,y,label\n1,2.5,a\n2,-4e2,\n', 'text/csv; charset=utf-8')).toEqual({
      columns: { x: [1, 2], y: [2.5, -400], label: ['a', null] },
      length: 2,
    });
    expect(parseDataset('x\ty\n1\t2\n', 'text/tab-separated-values')).toEqual({ columns: { x: [1], y: [2] }, length: 1 });
    expect(parseDataset('[{"x":1,"y":2}]', 'application/json')).toEqual({ columns: { x: [1], y: [2] }, length: 1 });
    expect(() => parseDataset('x;y', 'application/octet-stream')).toThrow(/not JSON, CSV or TSV/);
  });

  it('cleans markup out of dataset strings', () => {
    expect(parseDataset('[{"label":"<img src=x onerror=alert(1)>A"}]', 'application/json').columns.label).toEqual(['A']);
  });
});

describe('setPath', () => {
  it('sets nested attributes without touching the objects it was given', () => {
    const marker = { size: 4 };
    const trace: Record<string, unknown> = { marker };
    expect(setPath(trace, 'marker.color', [1])).toBe(true);
    expect(trace.marker).toEqual({ size: 4, color: [1] });
    expect(marker).toEqual({ size: 4 });
  });

  it('refuses paths through prototypes', () => {
    const trace: Record<string, unknown> = {};
    expect(setPath(trace, '__proto__.polluted', 1)).toBe(false);
    expect(setPath(trace, 'constructor.prototype.polluted', 1)).toBe(false);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('applyMapping', () => {
  const table = { columns: { t: [1, 2, 3], v: [2, 4, 8] }, length: 3 };

  it('maps columns onto every trace and leaves the given traces unchanged', () => {
    const traces = [{ type: 'scatter' }, { type: 'bar' }];
    const routed = applyMapping(traces, table, { x: 't', y: 'v' });
    expect(routed.data).toEqual([
      { type: 'scatter', x: [1, 2, 3], y: [2, 4, 8] },
      { type: 'bar', x: [1, 2, 3], y: [2, 4, 8] },
    ]);
    expect(traces).toEqual([{ type: 'scatter' }, { type: 'bar' }]);
  });

  it('gives a figure without traces one scatter trace', () => {
    expect(applyMapping([], table, { y: 'v' }).data).toEqual([{ type: 'scatter', y: [2, 4, 8] }]);
  });
});

describe('traceTable', () => {
  it("lists a trace's point arrays as rows, up to a limit", () => {
    expect(traceTable({ name: '<b>Sales</b>', x: [1, 2, 3], y: [2, 4, 8], mode: 'lines' }, 0, 2)).toEqual({
      name: 'Sales',
      columns: ['x', 'y'],
      rows: [
        [1, 2],
        [2, 4],
      ],
      total: 3,
    });
    expect(traceTable({ type: 'pie' }, 1).name).toBe('Trace 2');
  });
});
