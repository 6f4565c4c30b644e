import type { ComponentChildren } from 'preact';

import { ApiError } from '../api/http';

export function Loading({ label = 'Loading…' }: { label?: string }) {
  return (
    <p class="loading" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" /> {label}
    </p>
  );
}

/** An error as a person reads it: a service that is down says so, with a retry. */
export function ErrorNotice({ error, retry }: { error: Error; retry?: () => void }) {
  const down = error instanceof ApiError && error.isDown;
  return (
    <div class={`notice ${down ? 'notice-down' : 'notice-error'}`} role="alert">
      <strong>{down ? `${(error as ApiError).service} is down` : 'Something went wrong'}</strong>
      <span> {error.message}</span>
      {error instanceof ApiError && error.status === 409 && <span class="badge badge-warn">409 Conflict</span>}
      {retry && (
        <button type="button" class="link-button" onClick={retry}>
          Try again
        </button>
      )}
    </div>
  );
}

const STATUS_CLASS: Record<string, string> = {
  succeeded: 'ok',
  ok: 'ok',
  live: 'ok',
  up: 'ok',
  running: 'info',
  dispatched: 'info',
  queued: 'muted',
  pending: 'muted',
  scheduled: 'muted',
  defaulted: 'muted',
  retrying: 'warn',
  missing: 'warn',
  stale: 'warn',
  failed: 'bad',
  invalid: 'bad',
  down: 'bad',
  dead: 'bad',
  cancelled: 'muted',
  timed_out: 'bad',
};

export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge badge-${STATUS_CLASS[status] ?? 'muted'}`}>{status}</span>;
}

export function Time({ at }: { at?: string | null }) {
  if (!at) return <span class="muted">—</span>;
  const date = new Date(at);
  return (
    <time dateTime={at} title={at}>
      {Number.isNaN(date.getTime()) ? at : date.toLocaleString()}
    </time>
  );
}

export function Json({ value, label }: { value: unknown; label?: string }) {
  return (
    <pre class="json" aria-label={label} tabIndex={0}>
      {value === undefined ? '—' : JSON.stringify(value, null, 2)}
    </pre>
  );
}

export function Section({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="panel" aria-label={title}>
      <header class="panel-head">
        <h2>{title}</h2>
        {actions && <div class="panel-actions">{actions}</div>}
      </header>
      {children}
    </section>
  );
}
