import Plotly from 'plotly.js-dist-min';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';

import { traceTable } from './dataset';
import type { FigureBody, PlainObject } from './model';

type React = (root: HTMLElement, figure: { data: PlainObject[]; layout: PlainObject; config?: PlainObject; frames?: PlainObject[] }) => Promise<unknown>;

function titleOf(layout: PlainObject): string | null {
  const title = layout.title;
  const text = typeof title === 'string' ? title : typeof title === 'object' && title !== null ? (title as PlainObject).text : null;
  return typeof text === 'string' && text ? text.replace(/<[^>]*>/g, '').trim() || null : null;
}

function DataTables({ data }: { data: PlainObject[] }) {
  const tables = data.map((trace, i) => traceTable(trace, i)).filter((table) => table.columns.length > 0);
  if (tables.length === 0) return null;
  return (
    <details class="ai-data">
      <summary>Data</summary>
      {tables.map((table, t) => (
        <div key={t} class="ai-table-wrap" tabIndex={0}>
          <table>
            <caption>
              {table.name}
              {table.total > table.rows.length && ` (first ${table.rows.length} of ${table.total} points)`}
            </caption>
            <thead>
              <tr>
                {table.columns.map((column) => (
                  <th key={column} scope="col">
                    {column}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {table.rows.map((row, r) => (
                <tr key={r}>
                  {row.map((value, c) => (
                    <td key={c}>{value === null || value === undefined ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value)}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </details>
  );
}

/** A Plotly chart of an already sanitised figure; redrawn in place with Plotly.react. */
export function PlotlyPanel({ address, figure }: { address: string; figure: FigureBody }) {
  const root = useRef<HTMLDivElement>(null);
  const [error, setError] = useState<string | null>(null);
  const title = useMemo(() => titleOf(figure.layout), [figure.layout]);

  useEffect(() => {
    const element = root.current;
    if (!element) return;
    // Plotly writes into what it is given (autorange, uids): it gets copies, the page model stays as sent.
    const layout = structuredClone(figure.layout);
    if (layout.autosize === undefined && layout.width === undefined) layout.autosize = true;
    (Plotly.react as unknown as React)(element, {
      data: figure.data.map((trace) => ({ ...trace })),
      layout,
      config: figure.config,
      frames: figure.frames?.map((frame) => structuredClone(frame)),
    }).then(
      () => setError(null),
      (cause: unknown) => setError(cause instanceof Error ? cause.message : String(cause)),
    );
  }, [figure]);

  useEffect(() => {
    const element = root.current;
    if (!element) return;
    // The region can change size without the window doing so (layout changes, side panels).
    const observer = new ResizeObserver(() => {
      if (element.isConnected && element.classList.contains('js-plotly-plot')) Plotly.Plots.resize(element);
    });
    observer.observe(element);
    return () => {
      observer.disconnect();
      Plotly.purge(element);
    };
  }, []);

  return (
    <figure class="ai-chart">
      <div ref={root} class="ai-plot" role="group" aria-label={title ? `Chart: ${title}` : `Chart ${address}`} data-testid={`plot-${address}`} />
      {error && (
        <p class="notice notice-error" role="alert">
          The chart could not be drawn: {error}
        </p>
      )}
      <DataTables data={figure.data} />
    </figure>
  );
}
