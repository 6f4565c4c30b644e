// The task list's filters and page trail, as kept in the URL's query string so a view can be
// shared and a reload restores it. Pure functions: the view only wires them to the router.

import { TASK_STATUSES, type Task, type TaskStatus } from './types';

export interface TaskFilters {
  statuses: TaskStatus[];
  kind: string;
  agent: string;
  correlationId: string;
  traceId: string;
  /** RFC 3339; created at or after. */
  since: string;
  /** RFC 3339; created before. */
  until: string;
}

export const EMPTY_FILTERS: TaskFilters = {
  statuses: [],
  kind: '',
  agent: '',
  correlationId: '',
  traceId: '',
  since: '',
  until: '',
};

export interface ListState {
  filters: TaskFilters;
  /** Cursors of the pages walked through from the first; the last one is the current page. */
  trail: string[];
}

const TEXT_KEYS = ['kind', 'agent', 'correlationId', 'traceId', 'since', 'until'] as const;

function isStatus(value: string): value is TaskStatus {
  return (TASK_STATUSES as readonly string[]).includes(value);
}

/** Reads filters from a query string; `status` may repeat or be comma-separated. */
export function parseListState(search: string): ListState {
  const params = new URLSearchParams(search.startsWith('?') ? search.slice(1) : search);
  const statuses: TaskStatus[] = [];
  for (const value of params.getAll('status')) {
    for (const part of value.split(',')) {
      const status = part.trim();
      if (isStatus(status) && !statuses.includes(status)) statuses.push(status);
    }
  }
  const filters: TaskFilters = { ...EMPTY_FILTERS, statuses: sortStatuses(statuses) };
  for (const key of TEXT_KEYS) filters[key] = (params.get(key) ?? '').trim();
  const trail = (params.get('cursor') ?? '').split(',').filter(Boolean);
  return { filters, trail };
}

function sortStatuses(statuses: TaskStatus[]): TaskStatus[] {
  return TASK_STATUSES.filter((status) => statuses.includes(status));
}

/** The query string (with its `?`, or empty) that `parseListState` reads back. */
export function formatListState({ filters, trail }: ListState): string {
  const params = new URLSearchParams();
  if (filters.statuses.length) params.set('status', sortStatuses(filters.statuses).join(','));
  for (const key of TEXT_KEYS) {
    const value = filters[key].trim();
    if (value) params.set(key, value);
  }
  // Cursors are base64url: a comma cannot occur in one.
  if (trail.length) params.set('cursor', trail.join(','));
  const text = params.toString().replace(/%2C/g, ',');
  return text ? `?${text}` : '';
}

/** The orchestrator's `GET /tasks` parameters for these filters. */
export function buildApiQuery(filters: TaskFilters): Record<string, string | undefined> {
  return {
    status: filters.statuses.length ? filters.statuses.join(',') : undefined,
    kind: filters.kind || undefined,
    agent: filters.agent || undefined,
    correlationId: filters.correlationId || undefined,
    traceId: filters.traceId || undefined,
    since: filters.since || undefined,
    until: filters.until || undefined,
  };
}

export function hasFilters(filters: TaskFilters): boolean {
  return filters.statuses.length > 0 || TEXT_KEYS.some((key) => filters[key] !== '');
}

/** Whether the orchestrator would list `task` under these filters. */
export function matchesFilters(task: Task, filters: TaskFilters): boolean {
  if (filters.statuses.length && !filters.statuses.includes(task.status)) return false;
  if (filters.kind && task.kind !== filters.kind) return false;
  if (filters.agent && task.agent !== filters.agent) return false;
  if (filters.correlationId && task.correlationId !== filters.correlationId) return false;
  if (filters.traceId && task.traceId !== filters.traceId) return false;
  const created = Date.parse(task.createdAt);
  if (filters.since && !(created >= Date.parse(filters.since))) return false;
  if (filters.until && !(created < Date.parse(filters.until))) return false;
  return true;
}

export type MergeOutcome = 'updated' | 'inserted' | 'ignored';

/**
 * Folds a live task update into the rows on screen. A row already shown is replaced when the
 * update is not older than it. A task not shown is inserted at its place (newest first, by id)
 * when the first page is on screen, it matches the filters, and it falls within the page.
 */
export function mergeTask(
  rows: Task[],
  task: Task,
  options: { filters: TaskFilters; firstPage: boolean; hasMore: boolean },
): { rows: Task[]; outcome: MergeOutcome } {
  const index = rows.findIndex((row) => row.id === task.id);
  if (index >= 0) {
    if (task.version < rows[index].version) return { rows, outcome: 'ignored' };
    const next = rows.slice();
    next[index] = task;
    return { rows: next, outcome: 'updated' };
  }
  if (!options.firstPage || !matchesFilters(task, options.filters)) return { rows, outcome: 'ignored' };
  const at = rows.findIndex((row) => row.id < task.id);
  if (at < 0 && options.hasMore) return { rows, outcome: 'ignored' };
  const next = rows.slice();
  next.splice(at < 0 ? rows.length : at, 0, task);
  return { rows: next, outcome: 'inserted' };
}

const pad = (n: number) => String(n).padStart(2, '0');

/** An RFC 3339 instant as a `datetime-local` input value, in the browser's time zone. */
export function isoToLocalInput(iso: string): string {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

/** A `datetime-local` value (browser's time zone) as an RFC 3339 instant; '' stays ''. */
export function localInputToIso(local: string): string | null {
  if (!local) return '';
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(local)) return null;
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** Problems with a range before it is sent: the orchestrator would just list nothing. */
export function rangeError(filters: TaskFilters): string | null {
  if (filters.since && filters.until && Date.parse(filters.until) <= Date.parse(filters.since)) {
    return 'must be later than "since"';
  }
  return null;
}
