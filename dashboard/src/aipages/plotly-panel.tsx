import { useEffect, useMemo, useRef, useState } from 'preact/hooks';

import { Loading } from '../components/status';
import { traceTable } from './dataset';
import type { FigureBody, PlainObject } from './model';

type Figure = { data: PlainObject[]; layout: PlainObject; config?: PlainObject; frames?: PlainObject[] };

interface PlotlyApi {
  react(root: HTMLElement, figure: Figure): Promise<unknown>;
  purge(root: HTMLElement): void;
  Plots: { resize(root: HTMLElement): void };
}

// Plotly is most of the page's weight: it loads once, when the first chart needs it, and the
// page's text and forms do not wait for it.
let plotly: Promise<PlotlyApi> | null = null;
function loadPlotly(): Promise<PlotlyApi> {
  plotly ??= import('plotly.js-dist-min').then((module) => (module.default ?? module) as unknown as PlotlyApi);
  plotly.catch(() => {
    plotly = null;
  });
  return plotly;
}

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
  const [library, setLibrary] = useState<PlotlyApi | null>(null);
  const title = useMemo(() => titleOf(figure.layout), [figure.layout]);

  useEffect(() => {
    const element = root.current;
    if (!element) return;
    let current = true;
    // Plotly writes into what it is given (autorange, uids): it gets copies, the page model stays as sent.
    const layout = structuredClone(figure.layout);
    if (layout.autosize === undefined && layout.width === undefined) layout.autosize = true;
    const drawn = {
      data: figure.data.map((trace) => ({ ...trace })),
      layout,
      config: figure.config,
      frames: figure.frames?.map((frame) => structuredClone(frame)),
    };
    loadPlotly()
      .then((api) => {
        if (!current) return;
        setLibrary(api);
        return api.react(element, drawn).then(() => current && setError(null));
      })
      .catch((cause: unknown) => {
        if (current) setError(cause instanceof Error ? cause.message : String(cause));
      });
    return () => {
      current = false;
    };
  }, [figure]);

  useEffect(() => {
    const element = root.current;
    if (!element || !library || typeof ResizeObserver === 'undefined') return;
    // The region can change size without the window doing so (layout changes, side panels).
    const observer = new ResizeObserver(() => {
      if (element.isConnected && element.classList.contains('js-plotly-plot')) library.Plots.resize(element);
    });
    observer.observe(element);
    return () => observer.disconnect();
  }, [library]);

  useEffect(() => {
    const element = root.current;
    return () => {
      if (element && library) library.purge(element);
    };
  }, [library]);

  return (
    <figure class="ai-chart">
      {!library && !error && <Loading label="Loading the chart…" />}
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
