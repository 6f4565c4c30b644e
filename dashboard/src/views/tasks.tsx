import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';

import { ApiError, fieldErrors } from '../api/http';
import { ErrorNotice, Loading, StatusBadge } from '../components/status';
import { useFrames, useRefetchOnReconnect, useResource } from '../hooks';
import { listAgents, listTasks, PAGE_SIZE } from '../tasks/api';
import { compactTime } from '../tasks/format';
import {
  EMPTY_FILTERS,
  formatListState,
  hasFilters,
  isoToLocalInput,
  localInputToIso,
  mergeTask,
  parseListState,
  rangeError,
  type ListState,
  type TaskFilters,
} from '../tasks/filters';
import { TASK_STATUSES, type Task, type TaskStatus } from '../tasks/types';
import '../tasks/tasks.css';

const FLASH_MS = 1200;

/** The task list: filters and page in the URL, rows kept current by the live feed. */
export function Tasks() {
  const { url, route } = useLocation();
  const search = url.includes('?') ? url.slice(url.indexOf('?')) : '';
  const state = useMemo(() => parseListState(search), [search]);
  const key = formatListState(state);
  const { filters, trail } = state;
  const cursor = trail[trail.length - 1];

  const page = useResource((signal) => listTasks(filters, cursor, signal), [key]);
  useRefetchOnReconnect(page.reload);
  const [rows, setRows] = useState<Task[] | null>(null);
  // The query the rows answer: while another one loads they stay (dimmed); if it fails they go.
  const [rowsKey, setRowsKey] = useState('');
  const [flashing, setFlashing] = useState<ReadonlySet<string>>(new Set());
  const timers = useRef(new Map<string, ReturnType<typeof setTimeout>>());
  // Updates that arrive while a page loads are folded into it once it is there.
  const pending = useRef(new Map<string, Task>());
  const mergeOptions = {
    filters,
    firstPage: trail.length === 0,
    hasMore: Boolean(page.data?.nextCursor),
  };

  useEffect(() => {
    if (!page.data) return;
    let next = page.data.items;
    for (const task of pending.current.values()) {
      next = mergeTask(next, task, { ...mergeOptions, hasMore: Boolean(page.data.nextCursor) }).rows;
    }
    pending.current.clear();
    setRows(next);
    setRowsKey(key);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [page.data]);
  useEffect(() => () => timers.current.forEach(clearTimeout), []);

  function flash(id: string) {
    setFlashing((current) => new Set(current).add(id));
    clearTimeout(timers.current.get(id));
    timers.current.set(
      id,
      setTimeout(() => {
        timers.current.delete(id);
        setFlashing((current) => {
          const next = new Set(current);
          next.delete(id);
          return next;
        });
      }, FLASH_MS),
    );
  }

  useFrames((frame) => {
    if (frame.type !== 'task') return;
    const task = frame.task as unknown as Task;
    if (page.loading || !rows) {
      const seen = pending.current.get(task.id);
      if (!seen || seen.version <= task.version) pending.current.set(task.id, task);
      return;
    }
    const merged = mergeTask(rows, task, mergeOptions);
    if (merged.outcome === 'ignored') return;
    setRows(merged.rows);
    flash(task.id);
  });

  const go = (next: ListState) => route(`/tasks${formatListState(next)}`, true);
  const applyFilters = (next: TaskFilters) => go({ filters: next, trail: [] });

  const queryErrors = page.error instanceof ApiError && page.error.status === 400 ? fieldErrors(page.error.problem) : {};
  const nextCursor = page.data?.nextCursor ?? null;
  const shown = rows && (rowsKey === key || page.loading) ? rows : null;

  return (
    <div>
      <div class="task-head">
        <h1>Tasks</h1>
        <a class="button" href="/tasks/new">
          New task
        </a>
      </div>
      <section class="panel" aria-label="Filters">
        <FilterBar filters={filters} serverErrors={queryErrors} onApply={applyFilters} />
      </section>
      <section class="panel" aria-label="Task list">
        {page.error && <ErrorNotice error={page.error} retry={page.reload} />}
        {page.loading && !shown && <Loading label="Loading tasks…" />}
        {shown && (
          <>
            <div class="tasks-summary">
              <span role="status" aria-live="polite">
                {page.loading
                  ? 'Refreshing…'
                  : `${shown.length} task${shown.length === 1 ? '' : 's'} on page ${trail.length + 1}${nextCursor ? ', more on the next page' : ''}`}
              </span>
              {trail.length > 0 && <span>New tasks appear on the first page; rows here update live.</span>}
            </div>
            {shown.length === 0 && !page.loading ? (
              <EmptyState filtered={hasFilters(filters)} onClear={() => applyFilters(EMPTY_FILTERS)} />
            ) : (
              <TaskTable rows={shown} flashing={flashing} busy={page.loading} />
            )}
            <nav class="pager" aria-label="Pages">
              <button type="button" disabled={trail.length === 0} onClick={() => go({ filters, trail: [] })}>
                First page
              </button>
              <button type="button" disabled={trail.length === 0} onClick={() => go({ filters, trail: trail.slice(0, -1) })}>
                Previous page
              </button>
              <button
                type="button"
                disabled={!nextCursor || page.loading}
                onClick={() => nextCursor && go({ filters, trail: [...trail, nextCursor] })}
              >
                Next page
              </button>
              <span class="muted">Page {trail.length + 1} · {PAGE_SIZE} per page</span>
            </nav>
          </>
        )}
      </section>
    </div>
  );
}

function EmptyState({ filtered, onClear }: { filtered: boolean; onClear: () => void }) {
  return (
    <p class="empty">
      {filtered ? (
        <>
          No tasks match these filters.{' '}
          <button type="button" class="link-button" onClick={onClear}>
            Clear the filters
          </button>
        </>
      ) : (
        <>
          No tasks yet. <a href="/tasks/new">Create one</a>.
        </>
      )}
    </p>
  );
}

function TaskTable({ rows, flashing, busy }: { rows: Task[]; flashing: ReadonlySet<string>; busy: boolean }) {
  return (
    <div class="tasks-table-wrap">
      <table class="tasks-table" aria-busy={busy}>
        <caption class="skip">Tasks, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Task</th>
            <th scope="col">Kind</th>
            <th scope="col">Status</th>
            <th scope="col">Agent</th>
            <th scope="col">Correlation id</th>
            <th scope="col" class="num">Priority</th>
            <th scope="col" class="num">Attempts</th>
            <th scope="col" class="num">Version</th>
            <th scope="col">Created</th>
            <th scope="col">Updated</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((task) => (
            <tr key={task.id} class={flashing.has(task.id) ? 'flash' : undefined} data-task-id={task.id}>
              <td class="mono">
                <a href={`/tasks/${task.id}`} title={task.id}>
                  {task.id}
                </a>
              </td>
              <td>{task.kind}</td>
              <td class="nowrap">
                <StatusBadge status={task.status} />
              </td>
              <td class="nowrap">{task.agent ?? <span class="muted">—</span>}</td>
              <td class="mono">{task.correlationId ?? <span class="muted">—</span>}</td>
              <td class="num">{task.priority}</td>
              <td class="num">
                {task.attempts}/{task.maxAttempts}
              </td>
              <td class="num">{task.version}</td>
              <td class="nowrap">
                <CellTime at={task.createdAt} />
              </td>
              <td class="nowrap">
                <CellTime at={task.updatedAt} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function CellTime({ at }: { at: string }) {
  return (
    <time dateTime={at} title={new Date(at).toLocaleString()}>
      {compactTime(at)}
    </time>
  );
}

interface Draft {
  statuses: TaskStatus[];
  kind: string;
  agent: string;
  correlationId: string;
  traceId: string;
  /** `datetime-local` values. */
  since: string;
  until: string;
}

function toDraft(filters: TaskFilters): Draft {
  return { ...filters, since: isoToLocalInput(filters.since), until: isoToLocalInput(filters.until) };
}

const PRESETS: [string, number][] = [
  ['Last 15 minutes', 15 * 60_000],
  ['Last hour', 3_600_000],
  ['Last 24 hours', 86_400_000],
  ['Last 7 days', 7 * 86_400_000],
];

/** Filter controls. Status boxes and presets apply at once; text fields on Enter or "Apply". */
function FilterBar({
  filters,
  serverErrors,
  onApply,
}: {
  filters: TaskFilters;
  serverErrors: Record<string, string>;
  onApply: (filters: TaskFilters) => void;
}) {
  const [draft, setDraft] = useState<Draft>(() => toDraft(filters));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const agents = useResource((signal) => listAgents(signal), []);
  const applied = formatListState({ filters, trail: [] });
  useEffect(() => {
    setDraft(toDraft(filters));
    setErrors({});
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [applied]);

  const kinds = useMemo(
    () => [...new Set((agents.data ?? []).flatMap((agent) => agent.kinds.map((k) => k.kind)))].sort(),
    [agents.data],
  );
  const agentNames = useMemo(() => (agents.data ?? []).map((agent) => agent.name).sort(), [agents.data]);

  function apply(next: Draft) {
    const since = localInputToIso(next.since);
    const until = localInputToIso(next.until);
    const problems: Record<string, string> = {};
    if (since === null) problems.since = 'not a date and time';
    if (until === null) problems.until = 'not a date and time';
    const filters: TaskFilters = {
      statuses: next.statuses,
      kind: next.kind.trim(),
      agent: next.agent.trim(),
      correlationId: next.correlationId.trim(),
      traceId: next.traceId.trim(),
      since: since ?? '',
      until: until ?? '',
    };
    const range = rangeError(filters);
    if (range) problems.until = range;
    setErrors(problems);
    if (Object.keys(problems).length === 0) onApply(filters);
  }

  function toggleStatus(status: TaskStatus, on: boolean) {
    const statuses = on ? [...draft.statuses, status] : draft.statuses.filter((s) => s !== status);
    const next = { ...draft, statuses };
    setDraft(next);
    apply(next);
  }

  function preset(ms: number) {
    const next = { ...draft, since: isoToLocalInput(new Date(Date.now() - ms).toISOString()), until: '' };
    setDraft(next);
    apply(next);
  }

  const text = (name: 'kind' | 'agent' | 'correlationId' | 'traceId', label: string, list?: string) => {
    const error = errors[name] ?? serverErrors[name];
    return (
      <div class="filter-field">
        <label for={`filter-${name}`}>{label}</label>
        <input
          id={`filter-${name}`}
          name={name}
          value={draft[name]}
          list={list}
          autoComplete="off"
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? `filter-${name}-error` : undefined}
          onInput={(e) => setDraft({ ...draft, [name]: e.currentTarget.value })}
        />
        {error && (
          <span id={`filter-${name}-error`} class="field-error">
            {error}
          </span>
        )}
      </div>
    );
  };

  const time = (name: 'since' | 'until', label: string) => {
    const error = errors[name] ?? serverErrors[name];
    return (
      <div class="filter-field">
        <label for={`filter-${name}`}>{label}</label>
        <input
          id={`filter-${name}`}
          type="datetime-local"
          name={name}
          value={draft[name]}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? `filter-${name}-error` : undefined}
          onInput={(e) => setDraft({ ...draft, [name]: e.currentTarget.value })}
        />
        {error && (
          <span id={`filter-${name}-error`} class="field-error">
            {error}
          </span>
        )}
      </div>
    );
  };

  return (
    <form
      class="tasks-filters"
      role="search"
      aria-label="Filter tasks"
      onSubmit={(e) => {
        e.preventDefault();
        apply(draft);
      }}
    >
      <fieldset>
        <legend>Status</legend>
        {TASK_STATUSES.map((status) => (
          <label class="inline" key={status}>
            <input
              type="checkbox"
              name="status"
              value={status}
              checked={draft.statuses.includes(status)}
              onChange={(e) => toggleStatus(status, e.currentTarget.checked)}
            />
            {status}
          </label>
        ))}
        {serverErrors.status && <span class="field-error">{serverErrors.status}</span>}
      </fieldset>
      {text('kind', 'Kind', 'filter-kinds')}
      {text('agent', 'Agent', 'filter-agents')}
      {text('correlationId', 'Correlation id')}
      {text('traceId', 'Trace id')}
      {time('since', 'Created since')}
      {time('until', 'Created before')}
      <div class="filter-field">
        <label for="filter-preset">Quick range</label>
        <select
          id="filter-preset"
          value=""
          onChange={(e) => {
            const ms = Number(e.currentTarget.value);
            if (ms) preset(ms);
            e.currentTarget.value = '';
          }}
        >
          <option value="">Choose…</option>
          {PRESETS.map(([label, ms]) => (
            <option key={ms} value={String(ms)}>
              {label}
            </option>
          ))}
        </select>
      </div>
      <div class="actions">
        <button type="submit" class="primary">
          Apply filters
        </button>
        <button type="button" disabled={!hasFilters(filters)} onClick={() => onApply(EMPTY_FILTERS)}>
          Clear
        </button>
      </div>
      <datalist id="filter-kinds">
        {kinds.map((kind) => (
          <option key={kind} value={kind} />
        ))}
      </datalist>
      <datalist id="filter-agents">
        {agentNames.map((name) => (
          <option key={name} value={name} />
        ))}
      </datalist>
    </form>
  );
}
