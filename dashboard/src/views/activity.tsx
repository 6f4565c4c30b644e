import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

import { api } from '../api/http';
import { type Entry, type Filter, type LogLike, type TaskLike, logEntry, matches, merge, taskEntry } from '../activity/stream';
import { ErrorNotice, Loading, StatusBadge, Time } from '../components/status';
import { useFrames, useRefetchOnReconnect } from '../hooks';

const RECENT_TASKS = 50;
const RECENT_LOGS = 100;

interface Page<T> {
  items: T[];
}

/** The live stream: task updates and log records as they happen, pausable and filterable. */
export function Activity() {
  const [entries, setEntries] = useState<Entry[]>([]);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<Error | null>(null);
  const [paused, setPaused] = useState(false);
  const [filter, setFilter] = useState<Filter>({ show: 'all', text: '', level: '' });
  // While paused, arrivals wait here so nothing is lost when the stream resumes.
  const held = useRef<Entry[]>([]);
  const [heldCount, setHeldCount] = useState(0);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;

  const add = useCallback((incoming: Entry[]) => {
    if (pausedRef.current) {
      held.current.push(...incoming);
      setHeldCount(held.current.length);
    } else {
      setEntries((current) => merge(current, incoming));
    }
  }, []);

  // What happened before this view opened, and whatever the socket missed while it was down.
  const backfill = useCallback(async () => {
    try {
      const [tasks, logs] = await Promise.allSettled([
        api<Page<TaskLike>>('orchestrator', '/tasks', { query: { limit: RECENT_TASKS } }),
        api<Page<LogLike>>('logging', '/logs', { query: { limit: RECENT_LOGS } }),
      ]);
      const incoming: Entry[] = [];
      if (tasks.status === 'fulfilled') incoming.push(...tasks.value.items.map((t) => taskEntry(t)));
      if (logs.status === 'fulfilled') incoming.push(...logs.value.items.map(logEntry));
      const failed = [tasks, logs].find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
      setError(failed ? (failed.reason as Error) : null);
      add(incoming);
    } finally {
      setLoading(false);
    }
  }, [add]);

  useEffect(() => {
    void backfill();
  }, [backfill]);
  useRefetchOnReconnect(() => void backfill());
  useFrames((frame) => {
    if (frame.type === 'task') add([taskEntry(frame.task as TaskLike, frame.event.kind)]);
    else add([logEntry(frame.log as LogLike)]);
  });

  function togglePause() {
    if (paused) {
      const waiting = held.current;
      held.current = [];
      setHeldCount(0);
      setEntries((current) => merge(current, waiting));
    }
    setPaused(!paused);
  }

  const visible = entries.filter((entry) => matches(entry, filter));
  return (
    <div>
      <h1>Activity</h1>
      <div class="panel">
        <div class="row" role="group" aria-label="Stream controls">
          <label>
            Show
            <select value={filter.show} onChange={(e) => setFilter({ ...filter, show: e.currentTarget.value as Filter['show'] })}>
              <option value="all">Tasks and logs</option>
              <option value="task">Task updates</option>
              <option value="log">Log records</option>
            </select>
          </label>
          <label>
            Log level at least
            <select value={filter.level} onChange={(e) => setFilter({ ...filter, level: e.currentTarget.value as Filter['level'] })}>
              <option value="">any</option>
              <option value="debug">debug</option>
              <option value="info">info</option>
              <option value="warn">warn</option>
              <option value="error">error</option>
            </select>
          </label>
          <label>
            Filter
            <input
              type="search"
              placeholder="kind, status, service, text, id…"
              value={filter.text}
              onInput={(e) => setFilter({ ...filter, text: e.currentTarget.value })}
            />
          </label>
          <button type="button" onClick={togglePause} aria-pressed={paused}>
            {paused ? `Resume${heldCount ? ` (${heldCount} new)` : ''}` : 'Pause'}
          </button>
          <span class="muted" aria-live="polite">
            {visible.length} of {entries.length} shown
          </span>
        </div>
      </div>
      {error && <ErrorNotice error={error} retry={() => void backfill()} />}
      {loading ? (
        <Loading label="Loading recent activity…" />
      ) : visible.length === 0 ? (
        <p class="muted">Nothing yet. Task updates and log records appear here as they happen.</p>
      ) : (
        <ul class="stream panel" aria-label="Activity stream" data-testid="activity">
          {visible.map((entry) => (
            <li key={entry.key}>
              <Time at={entry.at} />
              {entry.type === 'task' ? <TaskLine task={entry.task} event={entry.event} /> : <LogLine log={entry.log} />}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function TaskLine({ task, event }: { task: TaskLike; event?: string }) {
  return (
    <span>
      <span class="badge badge-info">task</span> <a href={`/tasks/${task.id}`}>{task.kind}</a> <StatusBadge status={task.status} />{' '}
      <span class="muted mono">
        v{task.version}
        {event ? ` · ${event}` : ''}
        {task.agent ? ` · ${task.agent}` : ''}
      </span>
    </span>
  );
}

function LogLine({ log }: { log: LogLike }) {
  const level = log.level ?? 'info';
  const tone = level === 'error' ? 'bad' : level === 'warn' ? 'warn' : 'muted';
  return (
    <span>
      <span class={`badge badge-${tone}`}>{level}</span> <span class="mono">{log.service}</span> {log.message}
      {log.taskId && (
        <>
          {' '}
          <a class="muted" href={`/tasks/${log.taskId}`}>
            task
          </a>
        </>
      )}
    </span>
  );
}
