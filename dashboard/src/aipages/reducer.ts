// The page as directives build it: (model, directive) -> model, pure.
//
// Every address keeps only what its latest directive says, which is exactly what the
// gateway's page state holds (the latest directive of each live component), so applying the
// state's directives in order gives the same page as having applied the whole history live.
// That is why a `dataset.route` replaces the router's previous routing, and why routed data
// is combined with a panel's figure only when the page is drawn: the order in which a figure
// and its routing arrived does not matter.

import { applyMapping, rowsToTable } from './dataset';
import { decodeFigure, decodeForm, decodeLayout, decodeRemove, decodeRoute, decodeText, AREA_NAME } from './decode';
import {
  REMOVE_DIRECTIVE,
  parseAddress,
  type FigureBody,
  type FormBody,
  type LayoutBody,
  type Region,
  type Table,
  type TextBody,
} from './model';
import { sanitizeFigure, sanitizeTable } from './sanitize';

/** A directive with its body read (from its blob when it was claim-checked). */
export interface Resolved {
  seq: number;
  to: string;
  directive: string;
  body?: unknown;
  /** Why the body could not be read; the component shows it instead of its content. */
  failure?: string;
  /** For a `dataset.route` naming a stored dataset: its content, or why it could not be read. */
  dataset?: { table: Table } | { error: string };
  /** A later directive in the same batch overwrites this one: only its number counts. */
  superseded?: boolean;
}

export type Content =
  | { type: 'text'; text: TextBody }
  | { type: 'form'; form: FormBody }
  | { type: 'figure'; figure: FigureBody }
  | { type: 'failed'; directive: string; reason: string };

export interface ComponentEntry {
  address: string;
  kind: 'text' | 'plotly';
  id: string;
  /** Sequence number of the directive that set the content. */
  seq: number;
  content: Content;
}

export interface LayoutEntry {
  seq: number;
  layout?: LayoutBody;
  error?: string;
}

export interface RouteEntry {
  seq: number;
  to: string[];
  mapping: Record<string, string>;
  table?: Table;
  error?: string;
}

export interface PageModel {
  /** The last sequence number applied: poll after it. */
  seq: number;
  layout: LayoutEntry | null;
  route: RouteEntry | null;
  components: Readonly<Record<string, ComponentEntry>>;
}

export const EMPTY_PAGE: PageModel = { seq: 0, layout: null, route: null, components: {} };

function withComponent(model: PageModel, entry: ComponentEntry): PageModel {
  return { ...model, components: { ...model.components, [entry.address]: entry } };
}

/** Applies one directive. A directive at or before the model's sequence number changes nothing,
 * so overlapping reads (state, then polls) apply each directive once. */
export function apply(model: PageModel, message: Resolved): PageModel {
  if (message.seq <= model.seq) return model;
  const next: PageModel = { ...model, seq: message.seq };
  const address = parseAddress(message.to);
  if (!address || message.superseded) return next;
  const { seq, directive } = message;
  const failure = message.failure ?? (message.body === undefined ? 'the directive has no body' : undefined);

  if (address.kind === 'layout') {
    if (directive === REMOVE_DIRECTIVE) {
      const removal = failure ? null : decodeRemove(message.body);
      if (!removal?.ok || !Object.hasOwn(next.components, removal.value.component)) return next;
      const components = { ...next.components };
      delete components[removal.value.component];
      return { ...next, components };
    }
    if (failure) return { ...next, layout: { seq, error: failure } };
    if (directive !== 'layout.set') return { ...next, layout: { seq, error: `layout-manager does not know ${directive}` } };
    const layout = decodeLayout(message.body);
    return { ...next, layout: layout.ok ? { seq, layout: layout.value } : { seq, error: layout.error } };
  }

  if (address.kind === 'router') {
    if (failure) return { ...next, route: { seq, to: [], mapping: {}, error: failure } };
    if (directive !== 'dataset.route') return { ...next, route: { seq, to: [], mapping: {}, error: `dataset-router does not know ${directive}` } };
    const route = decodeRoute(message.body);
    if (!route.ok) return { ...next, route: { seq, to: [], mapping: {}, error: route.error } };
    const { dataset, to, mapping } = route.value;
    const entry: RouteEntry = { seq, to, mapping };
    if ('rows' in dataset) entry.table = sanitizeTable(rowsToTable(dataset.rows));
    else if (message.dataset && 'table' in message.dataset) entry.table = message.dataset.table;
    else entry.error = message.dataset?.error ?? `dataset ${dataset.blobId} was not loaded`;
    return { ...next, route: entry };
  }

  const id = address.id as string;
  const kind = address.kind;
  const failed = (reason: string): PageModel =>
    withComponent(next, { address: message.to, kind, id, seq, content: { type: 'failed', directive, reason } });
  if (failure) return failed(failure);

  if (kind === 'text' && directive === 'text.set') {
    const text = decodeText(message.body);
    return text.ok ? withComponent(next, { address: message.to, kind, id, seq, content: { type: 'text', text: text.value } }) : failed(text.error);
  }
  if (kind === 'text' && directive === 'form.set') {
    const form = decodeForm(message.body);
    return form.ok ? withComponent(next, { address: message.to, kind, id, seq, content: { type: 'form', form: form.value } }) : failed(form.error);
  }
  if (kind === 'plotly' && directive === 'plotly.figure') {
    const figure = decodeFigure(message.body);
    return figure.ok
      ? withComponent(next, { address: message.to, kind, id, seq, content: { type: 'figure', figure: sanitizeFigure(figure.value) } })
      : failed(figure.error);
  }
  return failed(`${message.to} does not know ${directive}`);
}

export function applyAll(model: PageModel, messages: Resolved[]): PageModel {
  return messages.reduce(apply, model);
}

/** The page rebuilt from the gateway's state: its components' latest directives in order. */
export function fromState(seq: number, components: Resolved[]): PageModel {
  const model = applyAll(EMPTY_PAGE, components);
  return model.seq >= seq ? model : { ...model, seq };
}

/** Sequence numbers in `messages` whose bodies matter: a directive followed in the same batch by
 * another to the same address (other than a removal) is overwritten, so its blob need not be
 * fetched. Removals always matter. */
export function neededBodies(messages: { seq: number; to: string; directive: string }[]): Set<number> {
  const latest = new Map<string, number>();
  for (const message of messages) {
    if (message.directive !== REMOVE_DIRECTIVE) latest.set(message.to, message.seq);
  }
  const needed = new Set<number>();
  for (const message of messages) {
    if (message.directive === REMOVE_DIRECTIVE || latest.get(message.to) === message.seq) needed.add(message.seq);
  }
  return needed;
}

// Drawing the page.

/** Why `grid-template-areas` rows do not form a grid (same width, rectangular areas), or null. */
export function gridProblem(rows: string[]): string | null {
  const cells = rows.map((row) => row.trim().split(/ +/));
  const width = cells[0]?.length ?? 0;
  const ragged = cells.findIndex((row) => row.length !== width);
  if (ragged >= 0) return `row ${ragged + 1} has ${cells[ragged].length} cells, the first row has ${width}`;
  const bounds = new Map<string, { top: number; bottom: number; left: number; right: number; count: number }>();
  cells.forEach((row, r) =>
    row.forEach((name, c) => {
      if (name === '.') return;
      const box = bounds.get(name);
      if (!box) bounds.set(name, { top: r, bottom: r, left: c, right: c, count: 1 });
      else {
        box.top = Math.min(box.top, r);
        box.bottom = Math.max(box.bottom, r);
        box.left = Math.min(box.left, c);
        box.right = Math.max(box.right, c);
        box.count += 1;
      }
    }),
  );
  for (const [name, box] of bounds) {
    if ((box.bottom - box.top + 1) * (box.right - box.left + 1) !== box.count) return `area "${name}" is not a rectangle`;
  }
  return null;
}

export interface PlacedRegion extends Region {
  /** The component filling the area, absent while it has no content (or was removed). */
  entry?: ComponentEntry;
}

export interface Arrangement {
  title?: string;
  grid?: {
    areas: string[];
    columns?: string[];
    rows?: string[];
    gap?: string;
    regions: PlacedRegion[];
  };
  /** Why the layout could not be used; the components are then shown one after another. */
  layoutError?: string;
  /** Components no region places, in a stable order: by id (numbers in ids compare as
   * numbers), texts before panels on equal ids. */
  unplaced: ComponentEntry[];
}

export function compareComponents(a: ComponentEntry, b: ComponentEntry): number {
  return a.id.localeCompare(b.id, 'en', { numeric: true }) || (a.kind === b.kind ? 0 : a.kind === 'text' ? -1 : 1);
}

export function arrange(model: PageModel): Arrangement {
  const entries = Object.values(model.components);
  const layoutError = model.layout?.error;
  const layout = model.layout?.layout;
  const problem = layout ? gridProblem(layout.areas) : null;
  if (!layout || problem) {
    return {
      title: layout?.title,
      layoutError: layoutError ?? (problem ? `The layout is not a grid: ${problem}.` : undefined),
      unplaced: entries.sort(compareComponents),
    };
  }
  const names = new Set(layout.areas.flatMap((row) => row.trim().split(/ +/)).filter((name) => AREA_NAME.test(name)));
  const placed = new Set<string>();
  const usedAreas = new Set<string>();
  const regions: PlacedRegion[] = [];
  for (const region of layout.regions) {
    // One component per area and one area per component: the first region wins.
    if (!names.has(region.area) || usedAreas.has(region.area) || placed.has(region.component)) continue;
    usedAreas.add(region.area);
    placed.add(region.component);
    regions.push({ ...region, entry: model.components[region.component] });
  }
  return {
    title: layout.title,
    grid: { areas: layout.areas, columns: layout.columns, rows: layout.rows, gap: layout.gap, regions },
    unplaced: entries.filter((entry) => !placed.has(entry.address)).sort(compareComponents),
  };
}

export interface PanelFigure {
  figure: FigureBody;
  /** What the routed dataset could not do for this panel. */
  notes: string[];
  /** The dataset routed here could not be loaded. */
  datasetError?: string;
}

/** A panel's figure with the dataset the router sends it, if any, applied to its traces. */
export function panelFigure(route: RouteEntry | null, entry: ComponentEntry): PanelFigure | null {
  if (entry.content.type !== 'figure') return null;
  const figure = entry.content.figure;
  if (!route || !route.to.includes(entry.address)) return { figure, notes: [] };
  if (!route.table) return { figure, notes: [], datasetError: route.error };
  const routed = applyMapping(figure.data, route.table, route.mapping);
  return { figure: { ...figure, data: routed.data }, notes: routed.notes };
}
