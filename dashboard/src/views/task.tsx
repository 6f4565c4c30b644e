import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { useRoute } from 'preact-iso';

import { ApiError, type Problem } from '../api/http';
import { ErrorNotice, Json, Loading, Section, StatusBadge, Time } from '../components/status';
import { useFrames, useRefetchOnReconnect, useResource } from '../hooks';
import { cancelTask, getTask, getTaskEvents, getTraceLogs, LOG_LIMIT, patchTask, retryTask } from '../tasks/api';
import { byTime, mergeById, newerTask } from '../tasks/live';
import { buildPatch, describeConflict, EMPTY_PATCH, PATCH_FIELDS, type Conflict, type PatchInput } from '../tasks/options';
import { problemToErrors } from '../tasks/schemaform';
import { canCancel, canRetry, nextStatuses, TASK_STATUSES, type LogRecord, type Task, type TaskEvent } from '../tasks/types';
import '../tasks/tasks.css';

/** One task: its state, audit trail and logs, live; cancel, retry or change it by hand. */
export function TaskPage() {
  const { params } = useRoute();
  const id = params.id ?? '';

  const loaded = useResource((signal) => getTask(id, signal), [id]);
  const loadedEvents = useResource((signal) => getTaskEvents(id, signal), [id]);
  const [task, setTask] = useState<Task | null>(null);
  const [events, setEvents] = useState<TaskEvent[]>([]);

  useEffect(() => {
    setTask(null);
    setEvents([]);
  }, [id]);
  useEffect(() => {
    if (loaded.data) setTask((current) => newerTask(current, loaded.data ?? null));
  }, [loaded.data]);
  useEffect(() => {
    if (loadedEvents.data) setEvents((current) => mergeById(current, loadedEvents.data ?? []));
  }, [loadedEvents.data]);

  const traceId = task?.traceId ?? '';
  const loadedLogs = useResource((signal) => (traceId ? getTraceLogs(traceId, signal) : Promise.resolve(null)), [traceId]);
  const [logs, setLogs] = useState<LogRecord[]>([]);
  useEffect(() => setLogs([]), [traceId]);
  useEffect(() => {
    if (loadedLogs.data) setLogs((current) => mergeById(current, loadedLogs.data?.items ?? [], byTime));
  }, [loadedLogs.data]);

  useFrames((frame) => {
    if (frame.type === 'task' && frame.task.id === id) {
      setTask((current) => newerTask(current, frame.task as unknown as Task));
      if (typeof frame.event.id === 'number') setEvents((current) => mergeById(current, [frame.event as unknown as TaskEvent]));
    } else if (frame.type === 'log' && traceId && frame.log.traceId === traceId) {
      setLogs((current) => mergeById(current, [frame.log as unknown as LogRecord], byTime));
    }
  });

  function reloadAll() {
    loaded.reload();
    loadedEvents.reload();
    loadedLogs.reload();
  }
  useRefetchOnReconnect(reloadAll);

  /** Reads the task again (after a conflict); its events and logs follow. */
  async function refresh(): Promise<Task> {
    const fresh = await getTask(id);
    setTask((current) => newerTask(current, fresh));
    loadedEvents.reload();
    loadedLogs.reload();
    return fresh;
  }

  if (!task) {
    if (loaded.error) {
      const notFound = loaded.error instanceof ApiError && (loaded.error.status === 404 || loaded.error.status === 400);
      return (
        <div>
          <h1>Task</h1>
          {notFound ? (
            <div class="notice notice-error" role="alert">
              <strong>No such task.</strong> {loaded.error.message} <a href="/tasks">Back to the tasks</a>
            </div>
          ) : (
            <ErrorNotice error={loaded.error} retry={loaded.reload} />
          )}
        </div>
      );
    }
    return <Loading label="Loading the task…" />;
  }

  return (
    <div>
      <p>
        <a href="/tasks">← Tasks</a>
      </p>
      <div class="task-head">
        <h1>
          Task <span class="mono">{task.kind}</span>
        </h1>
        <span data-testid="task-status">
          <StatusBadge status={task.status} />
        </span>
        <span class="mono id">{task.id}</span>
        <span class="muted">version {task.version}</span>
      </div>
      {loaded.error && <ErrorNotice error={loaded.error} retry={loaded.reload} />}
      <div class="task-grid">
        <Section title="Details">
          <TaskDetails task={task} />
        </Section>
        <Section title="Actions">
          <Actions task={task} onTask={(next) => setTask((current) => newerTask(current, next))} refresh={refresh} />
        </Section>
      </div>
      <div class="task-grid">
        <Section title="Payload">
          <Json value={task.payload} label="Payload" />
        </Section>
        <Section title={task.error != null ? 'Result and error' : 'Result'}>
          {task.result == null && task.error == null && (
            <p class="muted">{task.status === 'succeeded' ? 'The task succeeded without a result.' : 'No result yet.'}</p>
          )}
          {task.result != null && <Json value={task.result} label="Result" />}
          {task.error != null && (
            <>
              <h3>Error</h3>
              <Json value={task.error} label="Error" />
            </>
          )}
        </Section>
      </div>
      <div class="task-grid">
        <Section title="Timeline" actions={<span class="muted">{events.length} events</span>}>
          {loadedEvents.error && <ErrorNotice error={loadedEvents.error} retry={loadedEvents.reload} />}
          {loadedEvents.loading && events.length === 0 && <Loading label="Loading the events…" />}
          {!loadedEvents.loading && !loadedEvents.error && events.length === 0 && <p class="muted">No events.</p>}
          <Timeline events={events} />
        </Section>
        <Section
          title="Logs"
          actions={
            <span class="muted">
              trace <span class="mono">{task.traceId}</span>
            </span>
          }
        >
          {loadedLogs.error && <ErrorNotice error={loadedLogs.error} retry={loadedLogs.reload} />}
          {loadedLogs.loading && logs.length === 0 && <Loading label="Loading the logs…" />}
          {!loadedLogs.loading && !loadedLogs.error && logs.length === 0 && (
            <p class="muted">No log records for this trace yet; new ones appear here as they arrive.</p>
          )}
          {loadedLogs.data?.nextCursor && <p class="muted">Showing the newest {LOG_LIMIT} records of this trace.</p>}
          <LogList logs={logs} />
        </Section>
      </div>
    </div>
  );
}

function TaskDetails({ task }: { task: Task }) {
  return (
    <dl class="kv">
      <dt>Status</dt>
      <dd>
        <StatusBadge status={task.status} />
      </dd>
      <dt>Kind</dt>
      <dd>
        <a href={`/tasks?kind=${encodeURIComponent(task.kind)}`}>{task.kind}</a>
      </dd>
      <dt>Agent</dt>
      <dd>{task.agent ?? <span class="muted">not dispatched yet</span>}</dd>
      <dt>Correlation id</dt>
      <dd class="mono">
        {task.correlationId ? (
          <a href={`/tasks?correlationId=${encodeURIComponent(task.correlationId)}`}>{task.correlationId}</a>
        ) : (
          <span class="muted">—</span>
        )}
      </dd>
      <dt>Trace id</dt>
      <dd class="mono">
        <a href={`/tasks?traceId=${encodeURIComponent(task.traceId)}`}>{task.traceId}</a>
      </dd>
      {task.idempotencyKey && (
        <>
          <dt>Idempotency key</dt>
          <dd class="mono">{task.idempotencyKey}</dd>
        </>
      )}
      <dt>Priority</dt>
      <dd>{task.priority}</dd>
      <dt>Attempts</dt>
      <dd>
        {task.attempts} of {task.maxAttempts}
      </dd>
      <dt>Timeout</dt>
      <dd>{task.timeoutSecs} s per attempt</dd>
      <dt>Run at</dt>
      <dd>
        <Time at={task.runAt} />
      </dd>
      <dt>Created</dt>
      <dd>
        <Time at={task.createdAt} />
      </dd>
      <dt>Started</dt>
      <dd>
        <Time at={task.startedAt} />
      </dd>
      <dt>Finished</dt>
      <dd>
        <Time at={task.finishedAt} />
      </dd>
      <dt>Updated</dt>
      <dd>
        <Time at={task.updatedAt} />
      </dd>
    </dl>
  );
}

function changeText(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function Timeline({ events }: { events: TaskEvent[] }) {
  if (events.length === 0) return null;
  return (
    <ol class="timeline" aria-label="Events, oldest first">
      {events.map((event) => {
        const changes =
          event.changes && typeof event.changes === 'object' && !Array.isArray(event.changes)
            ? Object.entries(event.changes as Record<string, unknown>)
            : [];
        return (
          <li key={event.id} data-event-type={event.type}>
            <div class="event-head">
              <span class="event-type">{event.type.replace(/_/g, ' ')}</span>
              {event.toStatus && (
                <span>
                  {event.fromStatus && event.fromStatus !== event.toStatus ? `${event.fromStatus} → ` : ''}
                  <StatusBadge status={event.toStatus} />
                </span>
              )}
              <span class="muted">by {event.actor}</span>
              <Time at={event.createdAt} />
              <span class="muted">v{event.version}</span>
            </div>
            {changes.length > 0 && (
              <ul class="changes" aria-label="What changed">
                {changes.map(([key, value]) => (
                  <li key={key}>
                    <span class="muted">{key}:</span> <span class="mono">{changeText(value)}</span>
                  </li>
                ))}
              </ul>
            )}
          </li>
        );
      })}
    </ol>
  );
}

function LogList({ logs }: { logs: LogRecord[] }) {
  if (logs.length === 0) return null;
  return (
    <ol class="stream logs" aria-label="Log records, oldest first" tabIndex={0}>
      {logs.map((log) => {
        const fields = log.fields && Object.keys(log.fields).length ? JSON.stringify(log.fields) : '';
        return (
          <li key={log.id}>
            <Time at={log.ts} />
            <span class={`level level-${log.level}`}>{log.level}</span>
            <span class="service">{log.service}</span>
            <span>
              {log.message}
              {fields && <span class="fields"> {fields}</span>}
            </span>
          </li>
        );
      })}
    </ol>
  );
}

/** A failed action in words: stale version, illegal transition, or the error as it came. */
function ActionFailure({ error, basedOn, onReload }: { error: Error; basedOn?: number; onReload: () => void }) {
  if (error instanceof ApiError && error.status === 409) {
    return <ConflictNotice conflict={describeConflict(error.problem)} basedOn={basedOn} onReload={onReload} />;
  }
  return <ErrorNotice error={error} />;
}

function ConflictNotice({ conflict, basedOn, onReload }: { conflict: Conflict; basedOn?: number; onReload: () => void }) {
  return (
    <div class="notice notice-error conflict" role="alert">
      {conflict.kind === 'version' ? (
        <>
          <strong>The task changed meanwhile.</strong>
          <span>
            {basedOn !== undefined && <>Your change was based on version {basedOn}; </>}
            {conflict.currentVersion !== undefined ? (
              <>
                the task is now at version {conflict.currentVersion}
                {conflict.currentStatus && <> ({conflict.currentStatus})</>}.
              </>
            ) : (
              <>{conflict.message}</>
            )}{' '}
            Nothing was changed. Reload it, check what changed, and apply your change again if it still makes sense.
          </span>
        </>
      ) : conflict.kind === 'transition' ? (
        <>
          <strong>
            Not allowed: {conflict.from ?? '?'} → {conflict.to ?? '?'}
          </strong>
          <span>{conflict.message} Nothing was changed.</span>
        </>
      ) : (
        <>
          <strong>Refused (409 Conflict).</strong>
          <span>{conflict.message}</span>
        </>
      )}
      <button type="button" onClick={onReload}>
        Reload the task
      </button>
    </div>
  );
}

interface ActionProps {
  task: Task;
  onTask: (task: Task) => void;
  refresh: () => Promise<Task>;
}

function Actions({ task, onTask, refresh }: ActionProps) {
  const [busy, setBusy] = useState<'cancel' | 'retry' | null>(null);
  const [failure, setFailure] = useState<Error | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const [reloading, setReloading] = useState(false);

  async function reload() {
    setReloading(true);
    try {
      await refresh();
      setFailure(null);
    } catch (error) {
      setFailure(error instanceof Error ? error : new Error(String(error)));
    } finally {
      setReloading(false);
    }
  }

  async function run(action: 'cancel' | 'retry') {
    setBusy(action);
    setFailure(null);
    setDone(null);
    try {
      const next = action === 'cancel' ? await cancelTask(task.id) : await retryTask(task.id);
      onTask(next);
      setDone(
        action === 'cancel'
          ? next.status === 'cancelled'
            ? 'Cancelled.'
            : `Cancel sent; the task is ${next.status}.`
          : 'Queued again with a fresh set of attempts.',
      );
    } catch (error) {
      setFailure(error instanceof Error ? error : new Error(String(error)));
    } finally {
      setBusy(null);
    }
  }

  return (
    <div>
      <div class="task-actions">
        <button
          type="button"
          class="danger"
          disabled={busy !== null || !canCancel(task.status)}
          aria-describedby="cancel-hint"
          onClick={() => run('cancel')}
        >
          {busy === 'cancel' ? 'Cancelling…' : 'Cancel task'}
        </button>
        <button type="button" disabled={busy !== null || !canRetry(task.status)} aria-describedby="retry-hint" onClick={() => run('retry')}>
          {busy === 'retry' ? 'Retrying…' : 'Retry'}
        </button>
      </div>
      <p class="muted" id="cancel-hint">
        {canCancel(task.status) ? 'Cancel stops a queued or running task.' : `A ${task.status} task cannot be cancelled.`}{' '}
        <span id="retry-hint">
          {canRetry(task.status) ? 'Retry queues it again with a fresh set of attempts.' : 'Retry is for failed or cancelled tasks.'}
        </span>
      </p>
      <div aria-live="polite">
        {done && <p class="notice notice-ok">{done}</p>}
        {failure && <ActionFailure error={failure} onReload={reload} />}
        {reloading && <Loading label="Reloading…" />}
      </div>
      <PatchForm task={task} onTask={onTask} refresh={refresh} />
    </div>
  );
}

/**
 * A change by hand, sent with the version it was based on: the task's version when the form was
 * opened (or last reloaded), so a change made meanwhile by anyone is refused, not overwritten.
 */
function PatchForm({ task, onTask, refresh }: ActionProps) {
  const [open, setOpen] = useState(false);
  const [input, setInput] = useState<PatchInput>(EMPTY_PATCH);
  const [basedOn, setBasedOn] = useState(task.version);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [failure, setFailure] = useState<Error | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const set = (name: keyof PatchInput, value: string) => {
    setInput({ ...input, [name]: value });
    if (errors[name] || errors['/']) {
      const next = { ...errors };
      delete next[name];
      delete next['/'];
      setErrors(next);
    }
  };

  function toggle(event: Event) {
    const isOpen = (event.currentTarget as HTMLDetailsElement).open;
    setOpen(isOpen);
    if (isOpen && !busy) setBasedOn(task.version);
  }

  async function reload() {
    setBusy(true);
    try {
      const fresh = await refresh();
      setBasedOn(fresh.version);
      setFailure(null);
    } catch (error) {
      setFailure(error instanceof Error ? error : new Error(String(error)));
    } finally {
      setBusy(false);
    }
  }

  async function submit(event: Event) {
    event.preventDefault();
    setSaved(null);
    setFailure(null);
    const { body, errors: problems } = buildPatch(input, basedOn);
    setErrors(problems);
    if (Object.keys(problems).length) return;
    setBusy(true);
    try {
      const next = await patchTask(task.id, body);
      onTask(next);
      setBasedOn(next.version);
      setInput(EMPTY_PATCH);
      setSaved(`Saved: the task is now at version ${next.version} (${next.status}).`);
    } catch (error) {
      if (error instanceof ApiError && (error.status === 422 || error.status === 400)) {
        const placed = problemToErrors(error.problem as Problem, PATCH_FIELDS);
        const next: Record<string, string> = { ...placed.task };
        if (placed.other.length) next['/'] = placed.other.join('; ');
        if (Object.keys(next).length === 0) next['/'] = error.message;
        setErrors(next);
      } else {
        setFailure(error instanceof Error ? error : new Error(String(error)));
      }
    } finally {
      setBusy(false);
    }
  }

  const allowed = nextStatuses(task.status);
  const others = TASK_STATUSES.filter((status) => status !== task.status && !allowed.includes(status));
  const pickedIllegal = input.status !== '' && input.status !== task.status && !allowed.includes(input.status);
  const stale = task.version !== basedOn;

  const field = (name: keyof PatchInput, label: string, control: JSX.Element, hint?: string) => (
    <div class="form-field">
      <label for={`patch-${name}`} class="label">
        {label}
      </label>
      {control}
      {hint && (
        <span class="hint" id={`patch-${name}-hint`}>
          {hint}
        </span>
      )}
      {errors[name] && (
        <span class="field-error" id={`patch-${name}-error`}>
          {errors[name]}
        </span>
      )}
    </div>
  );
  const describedBy = (name: string, hint?: boolean) =>
    [hint ? `patch-${name}-hint` : '', errors[name] ? `patch-${name}-error` : ''].filter(Boolean).join(' ') || undefined;

  return (
    <details class="patch-form" open={open} onToggle={toggle}>
      <summary>Change by hand</summary>
      <form onSubmit={submit} aria-label="Change the task" noValidate>
        <p class="muted">
          Only the fields you fill in are changed. Based on version <strong>{basedOn}</strong>
          {stale ? '.' : ' (the current one).'}
        </p>
        {stale && (
          <div class="notice notice-down" role="status">
            The task has changed since you started (it is now at version {task.version}). Saving will be refused as a conflict.{' '}
            <button type="button" class="link-button" onClick={() => setBasedOn(task.version)}>
              Base the change on version {task.version}
            </button>
          </div>
        )}
        <div class="form-grid">
          {field(
            'status',
            'Status',
            <select
              id="patch-status"
              value={input.status}
              aria-invalid={errors.status ? true : undefined}
              aria-describedby={describedBy('status', true)}
              onChange={(e) => set('status', e.currentTarget.value)}
            >
              <option value="">Keep {task.status}</option>
              {allowed.length > 0 && (
                <optgroup label={`Allowed from ${task.status}`}>
                  {allowed.map((status) => (
                    <option key={status} value={status}>
                      {status}
                    </option>
                  ))}
                </optgroup>
              )}
              <optgroup label={`Not allowed from ${task.status}`}>
                {others.map((status) => (
                  <option key={status} value={status}>
                    {status}
                  </option>
                ))}
              </optgroup>
            </select>,
            pickedIllegal
              ? `${task.status} → ${input.status} is not an allowed transition: the orchestrator will refuse it.`
              : 'Statuses the orchestrator allows from the current one come first.',
          )}
          {field(
            'priority',
            'Priority',
            <input
              id="patch-priority"
              type="number"
              min={-100}
              max={100}
              step={1}
              placeholder={String(task.priority)}
              value={input.priority}
              aria-invalid={errors.priority ? true : undefined}
              aria-describedby={describedBy('priority', true)}
              onInput={(e) => set('priority', e.currentTarget.value)}
            />,
            '-100 to 100, higher runs first',
          )}
          {field(
            'maxAttempts',
            'Max attempts',
            <input
              id="patch-maxAttempts"
              type="number"
              min={1}
              max={100}
              step={1}
              placeholder={String(task.maxAttempts)}
              value={input.maxAttempts}
              aria-invalid={errors.maxAttempts ? true : undefined}
              aria-describedby={describedBy('maxAttempts', true)}
              onInput={(e) => set('maxAttempts', e.currentTarget.value)}
            />,
            `1 to 100, at least the ${task.attempts} made`,
          )}
          {field(
            'runAt',
            'Run at',
            <input
              id="patch-runAt"
              type="datetime-local"
              value={input.runAt}
              aria-invalid={errors.runAt ? true : undefined}
              aria-describedby={describedBy('runAt')}
              onInput={(e) => set('runAt', e.currentTarget.value)}
            />,
          )}
          {field(
            'result',
            'Result (JSON)',
            <textarea
              id="patch-result"
              value={input.result}
              placeholder="Leave empty to keep"
              aria-invalid={errors.result ? true : undefined}
              aria-describedby={describedBy('result')}
              onInput={(e) => set('result', e.currentTarget.value)}
            />,
          )}
          {field(
            'error',
            'Error (JSON)',
            <textarea
              id="patch-error"
              value={input.error}
              placeholder="Leave empty to keep"
              aria-invalid={errors.error ? true : undefined}
              aria-describedby={describedBy('error')}
              onInput={(e) => set('error', e.currentTarget.value)}
            />,
          )}
          {field(
            'note',
            'Note',
            <input
              id="patch-note"
              value={input.note}
              aria-describedby={describedBy('note', true)}
              onInput={(e) => set('note', e.currentTarget.value)}
            />,
            'Why: kept with the change in the timeline',
          )}
        </div>
        {errors['/'] && (
          <p class="field-error" role="alert">
            {errors['/']}
          </p>
        )}
        <div class="form-actions">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Saving…' : `Save change (if still version ${basedOn})`}
          </button>
          <button type="button" disabled={busy} onClick={() => { setInput(EMPTY_PATCH); setErrors({}); setFailure(null); }}>
            Reset
          </button>
        </div>
        <div aria-live="polite">
          {saved && <p class="notice notice-ok">{saved}</p>}
          {failure && <ActionFailure error={failure} basedOn={basedOn} onReload={reload} />}
        </div>
      </form>
    </details>
  );
}
