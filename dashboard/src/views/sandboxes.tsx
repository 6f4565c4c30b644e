import { useState } from 'preact/hooks';
import { useLocation, useRoute } from 'preact-iso';

import { ApiError, fieldErrors } from '../api/http';
import { credentials, encodeBasic } from '../auth';
import { ErrorNotice, Loading, Section, Time } from '../components/status';
import { useInterval, useRefetchOnReconnect, useResource } from '../hooks';
import { createSession, listSessions, readiness, SESSIONS_PAGE_SIZE, sessionState } from '../ops/api';
import { FileTree } from '../ops/FileTree';
import { FileViewer } from '../ops/FileViewer';
import {
  isNoEngine,
  isSessionStatus,
  parseSessionId,
  parseSessionListState,
  previewAvailable,
  previewMayPrompt,
  previewSandbox,
  SESSION_STATUSES,
  sessionListHref,
  withAuth,
  type SessionListState,
  type SessionSummary,
  type SessionsPage,
} from '../ops/sandbox';
import { SessionLogs } from '../ops/SessionLogs';
import { formatBytes, relativeTime } from '../ops/time';
import type { SessionState } from '../ops/types';
import '../ops/ops.css';
import '../ops/sandboxes.css';

const TEMPLATES = ['empty', 'static', 'vite-react'] as const;

const SESSION_TONE: Record<string, string> = { ready: 'ok', creating: 'info', failed: 'bad', deleted: 'muted' };

function SessionBadge({ status }: { status: string }) {
  return <span class={`badge badge-${SESSION_TONE[status] ?? 'muted'}`}>{status}</span>;
}

export function Sandboxes() {
  const { params } = useRoute();
  return params.id ? <SessionPage key={params.id} id={params.id} /> : <SessionList />;
}

/** Where the sandbox stands: ready, without a container engine, down. */
function useSandboxReadiness() {
  const ready = useResource((signal) => readiness('sandbox', signal), []);
  useInterval(ready.reload, 10_000);
  return ready;
}

function NoEngine({ error }: { error: ApiError }) {
  return (
    <div class="notice notice-down" role="alert" data-testid="no-container-engine">
      <strong>The sandbox has no container engine.</strong> Sessions run in containers, so none can be created or opened until the
      sandbox reaches a Docker or Podman API (its <code>DOCKER_HOST</code>).
      <div class="small">{error.problem?.detail ?? error.message}</div>
    </div>
  );
}

function SessionList() {
  const { query, route } = useLocation();
  const ready = useSandboxReadiness();
  const state = parseSessionListState(query);
  const href = sessionListHref(state);
  const cursor = state.trail[state.trail.length - 1];
  // Each answer says which list it is, so rows of another filter or page are never shown as this one's.
  const listed = useResource(async (signal) => ({ href, page: await listSessions({ status: state.status, cursor }, signal) }), [href]);
  useInterval(listed.reload, 10_000);
  useRefetchOnReconnect(() => {
    ready.reload();
    listed.reload();
  });

  const noEngine = ready.error && isNoEngine(ready.error) ? (ready.error as ApiError) : null;
  const down = ready.error instanceof ApiError && ready.error.isDown;
  const go = (next: SessionListState) => route(sessionListHref(next), true);

  return (
    <div class="ops">
      <header class="ops-head">
        <h1>Sandboxes</h1>
        <p class="muted">Coding sessions: each one a workspace in its own container, with a dev server whose preview shows here.</p>
      </header>
      {ready.loading && !ready.data && !ready.error && <Loading label="Asking the sandbox…" />}
      {noEngine && <NoEngine error={noEngine} />}
      {ready.error && !noEngine && <ErrorNotice error={ready.error} retry={ready.reload} />}
      {ready.data && (
        <p class="muted small" role="status">
          The sandbox is ready{ready.data.checks?.['container engine'] ? `: ${ready.data.checks['container engine']}` : ''}.
        </p>
      )}

      {!down && (
        <>
          <Section
            title="Sessions"
            actions={
              <button type="button" onClick={listed.reload}>
                Refresh
              </button>
            }
          >
            <SessionListBody
              state={state}
              answer={listed.data && (listed.data.href === href || listed.loading) ? listed.data.page : null}
              loading={listed.loading}
              error={listed.error}
              retry={listed.reload}
              go={go}
            />
          </Section>
          <div class="grid">
            <NewSession disabled={Boolean(noEngine)} onCreated={(id) => route(`/sandboxes/${id}`)} />
            <OpenSession onOpen={(id) => route(`/sandboxes/${id}`)} />
          </div>
        </>
      )}
    </div>
  );
}

function SessionListBody({
  state,
  answer,
  loading,
  error,
  retry,
  go,
}: {
  state: SessionListState;
  answer: SessionsPage | null;
  loading: boolean;
  error: Error | undefined;
  retry: () => void;
  go: (next: SessionListState) => void;
}) {
  const { status, trail } = state;
  const problems = error instanceof ApiError && error.status === 422 ? fieldErrors(error.problem) : {};
  const statusError = problems.status;
  const cursorError = problems.cursor;
  const nextCursor = answer?.nextCursor ?? null;
  const pageNumber = trail.length + 1;

  return (
    <>
      <div class="row sessions-filter">
        <label>
          Status
          <select
            value={status ?? ''}
            onChange={(e) => {
              const value = e.currentTarget.value;
              go({ status: isSessionStatus(value) ? value : null, trail: [] });
            }}
            aria-invalid={statusError ? 'true' : undefined}
            aria-describedby={statusError ? 'session-status-error' : undefined}
          >
            <option value="">All</option>
            {SESSION_STATUSES.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
          {statusError && (
            <span id="session-status-error" class="field-error">
              {statusError}
            </span>
          )}
        </label>
        {answer && (
          <span class="muted small" role="status" aria-live="polite">
            {loading
              ? 'Refreshing…'
              : `${answer.items.length} session${answer.items.length === 1 ? '' : 's'} on page ${pageNumber}${nextCursor ? ', more on the next page' : ''}`}
          </span>
        )}
      </div>
      {cursorError && (
        <div class="notice notice-error" role="alert">
          This page can no longer be found ({cursorError}).{' '}
          <button type="button" class="link-button" onClick={() => go({ status, trail: [] })}>
            Go to the first page
          </button>
        </div>
      )}
      {error && !statusError && !cursorError && <ErrorNotice error={error} retry={retry} />}
      {loading && !answer && !error && <Loading label="Loading sessions…" />}
      {answer &&
        (answer.items.length === 0 ? (
          <p class="muted" data-testid="sessions-empty">
            {status ? (
              <>
                No {status} sessions{trail.length ? ' on this page' : ''}.{' '}
                <button type="button" class="link-button" onClick={() => go({ status: null, trail: [] })}>
                  Show every session
                </button>
              </>
            ) : trail.length ? (
              'No more sessions.'
            ) : (
              'No sessions yet: create one below.'
            )}
          </p>
        ) : (
          <SessionTable sessions={answer.items} busy={loading} />
        ))}
      {(answer || trail.length > 0) && (
        <nav class="sessions-pager" aria-label="Session pages">
          <button type="button" disabled={trail.length === 0} onClick={() => go({ status, trail: [] })}>
            First page
          </button>
          <button
            type="button"
            disabled={!nextCursor || loading}
            onClick={() => nextCursor && go({ status, trail: [...trail, nextCursor] })}
          >
            Next page
          </button>
          <span class="muted small">
            Page {pageNumber} · {SESSIONS_PAGE_SIZE} per page, newest first
          </span>
        </nav>
      )}
    </>
  );
}

function SessionTable({ sessions, busy }: { sessions: SessionSummary[]; busy: boolean }) {
  const current = credentials.value;
  return (
    <div class="table-wrap">
      <table aria-label="Sessions" aria-busy={busy} class={busy ? 'sessions-busy' : undefined}>
        <thead>
          <tr>
            <th scope="col">Session</th>
            <th scope="col">Status</th>
            <th scope="col">Template</th>
            <th scope="col">Created</th>
            <th scope="col">Last active</th>
            <th scope="col">Preview</th>
          </tr>
        </thead>
        <tbody>
          {sessions.map((session) => (
            <tr key={session.sessionId} data-session={session.sessionId}>
              <th scope="row">
                <a href={`/sandboxes/${session.sessionId}`} class="mono">
                  {session.sessionId}
                </a>
              </th>
              <td>
                <SessionBadge status={session.status} />
                {session.statusReason && <div class="small muted break session-reason">{session.statusReason}</div>}
              </td>
              <td>{session.template}</td>
              <td class="nowrap">
                <Ago at={session.createdAt} />
              </td>
              <td class="nowrap">
                {session.deletedAt ? (
                  <>
                    deleted <Ago at={session.deletedAt} />
                  </>
                ) : (
                  <Ago at={session.lastActiveAt} />
                )}
              </td>
              <td>
                {session.status === 'ready' && current ? (
                  <a
                    href={withAuth(session.previewUrl, encodeBasic(current))}
                    target="_blank"
                    rel="noopener noreferrer"
                    aria-label={`Preview of session ${session.sessionId} (opens in a new tab)`}
                    title="The dev server's page, when one runs"
                  >
                    Open preview
                  </a>
                ) : (
                  <span class="muted">—</span>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** "3 min ago", with the exact time on hover. */
function Ago({ at }: { at: string }) {
  return (
    <time dateTime={at} title={new Date(at).toLocaleString()}>
      {relativeTime(at)}
    </time>
  );
}

function NewSession({ disabled, onCreated }: { disabled: boolean; onCreated: (id: string) => void }) {
  const [template, setTemplate] = useState<string>('static');
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<Error | null>(null);
  const errors = failure instanceof ApiError ? fieldErrors(failure.problem) : {};
  const templateError = errors['/template'] ?? errors.template;

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setFailure(null);
    try {
      const created = await createSession(template);
      onCreated(created.sessionId);
    } catch (error) {
      setFailure(error instanceof Error ? error : new Error(String(error)));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Section title="New session">
      <form class="row" onSubmit={submit}>
        <label>
          Template
          <select
            value={template}
            onChange={(e) => setTemplate(e.currentTarget.value)}
            aria-invalid={templateError ? 'true' : undefined}
            aria-describedby={templateError ? 'template-error' : undefined}
          >
            {TEMPLATES.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
          {templateError && (
            <span id="template-error" class="field-error">
              {templateError}
            </span>
          )}
        </label>
        <button type="submit" class="primary" disabled={disabled || busy}>
          {busy ? 'Creating…' : 'Create session'}
        </button>
      </form>
      {disabled && <p class="muted small">Needs a container engine.</p>}
      {failure && isNoEngine(failure) && <NoEngine error={failure as ApiError} />}
      {failure && !isNoEngine(failure) && !templateError && <ErrorNotice error={failure} />}
    </Section>
  );
}

function OpenSession({ onOpen }: { onOpen: (id: string) => void }) {
  const [text, setText] = useState('');
  const [error, setError] = useState<string | null>(null);
  function submit(event: Event) {
    event.preventDefault();
    const id = parseSessionId(text);
    if (!id) {
      setError('A session id is a UUID, e.g. 0b7c…-…');
      return;
    }
    onOpen(id);
  }
  return (
    <Section title="Open a session">
      <form class="row" onSubmit={submit}>
        <label>
          Session id
          <input
            value={text}
            onInput={(e) => {
              setText(e.currentTarget.value);
              setError(null);
            }}
            placeholder="UUID or a URL containing it"
            size={40}
            aria-invalid={error ? 'true' : undefined}
            aria-describedby={error ? 'open-session-error' : undefined}
          />
          {error && (
            <span id="open-session-error" class="field-error">
              {error}
            </span>
          )}
        </label>
        <button type="submit">Open</button>
      </form>
    </Section>
  );
}

function SessionPage({ id }: { id: string }) {
  const state = useResource((signal) => sessionState(id, signal), [id]);
  const [file, setFile] = useState<string | null>(null);
  const [generation, setGeneration] = useState(0);
  useInterval(state.reload, 5_000);
  useRefetchOnReconnect(() => {
    state.reload();
    setGeneration((g) => g + 1);
  });
  const session = state.data;
  const notFound = state.error instanceof ApiError && state.error.status === 404;
  const ready = session?.status === 'ready';

  return (
    <div class="ops">
      <p>
        <a href="/sandboxes">← Sandboxes</a>
      </p>
      <header class="ops-head">
        <h1>
          Session <span class="mono">{id}</span>
        </h1>
      </header>
      {state.loading && !session && !state.error && <Loading label="Loading the session…" />}
      {notFound && (
        <div class="notice notice-error" role="alert">
          No session {id}. {(state.error as ApiError).problem?.detail}
        </div>
      )}
      {state.error && !notFound && <ErrorNotice error={state.error} retry={state.reload} />}
      {session && (
        <>
          <SessionSummaryPanel session={session} />
          <Section
            title="Files"
            actions={
              ready && (
                <button type="button" onClick={() => setGeneration((g) => g + 1)}>
                  Refresh files
                </button>
              )
            }
          >
            {ready ? (
              <div class="session-layout">
                <FileTree sessionId={id} selected={file} onSelect={setFile} generation={generation} />
                <FileViewer sessionId={id} path={file} generation={generation} />
              </div>
            ) : (
              <p class="muted">The workspace can be read while the session is ready (it is {session.status}).</p>
            )}
          </Section>
          <Section title="Log">
            <SessionLogs sessionId={id} live={ready} />
          </Section>
          <Section title="Preview">
            <Preview session={session} />
          </Section>
        </>
      )}
    </div>
  );
}

function SessionSummaryPanel({ session }: { session: SessionState }) {
  const resources = session.resources;
  return (
    <Section title="Session" actions={<SessionBadge status={session.status} />}>
      {session.statusReason && (
        <div class={`notice ${session.status === 'failed' ? 'notice-error' : 'notice-down'}`} role="status">
          {session.statusReason}
        </div>
      )}
      <dl class="kv">
        <dt>Template</dt>
        <dd>{session.template}</dd>
        <dt>Created</dt>
        <dd>
          <Time at={session.createdAt} />
        </dd>
        <dt>Last active</dt>
        <dd>{relativeTime(session.lastActiveAt)}</dd>
        <dt>Container</dt>
        <dd class="mono">{session.container.id ? session.container.id.slice(0, 12) : '—'}</dd>
        <dt>Dev server</dt>
        <dd>
          {session.dev ? (
            <>
              <code>{session.dev.command}</code> on port {session.dev.port}{' '}
              <span class={`badge badge-${session.dev.running ? 'ok' : 'muted'}`}>{session.dev.running ? 'running' : 'stopped'}</span>
            </>
          ) : (
            <span class="muted">not started</span>
          )}
        </dd>
        <dt>Project</dt>
        <dd>
          {[session.snapshot.framework, session.snapshot.packageManager, session.snapshot.manifest].filter(Boolean).join(' · ') || (
            <span class="muted">no manifest</span>
          )}
          {session.snapshot.devCommand && (
            <span class="muted">
              {' '}
              (dev: <code>{session.snapshot.devCommand}</code>)
            </span>
          )}
        </dd>
        {resources && (
          <>
            <dt>Resources</dt>
            <dd>
              {formatBytes(resources.memoryBytes)} of {formatBytes(resources.memoryLimit)} memory · {resources.pids} processes · CPU{' '}
              {(resources.cpuTotalNs / 1e9).toFixed(1)} s
            </dd>
          </>
        )}
        {session.oomKills > 0 && (
          <>
            <dt>Out of memory</dt>
            <dd class="text-bad">{session.oomKills} process(es) killed</dd>
          </>
        )}
      </dl>
    </Section>
  );
}

function Preview({ session }: { session: SessionState }) {
  const [reloads, setReloads] = useState(0);
  const current = credentials.value;
  if (!previewAvailable(session) || !current) {
    return (
      <p class="muted">
        No dev server runs in this session; its preview appears here when one starts (the preview address is{' '}
        <code class="break">{session.previewUrl}</code>).
      </p>
    );
  }
  const src = withAuth(session.previewUrl, encodeBasic(current));
  return (
    <>
      <div class="row" style={{ alignItems: 'center', marginBottom: '0.5rem' }}>
        <span class="muted small">
          Port {session.dev?.port} · <code class="break">{session.previewUrl}</code>
        </span>
        <button type="button" onClick={() => setReloads((n) => n + 1)}>
          Reload preview
        </button>
        <a href={src} target="_blank" rel="noopener noreferrer">
          Open in a new tab
        </a>
      </div>
      {previewMayPrompt(session.previewUrl) && (
        <p class="muted small">
          This sandbox is served over plain HTTP, where browsers do not keep the preview's sign-in: if the browser asks to sign in to its
          address, use the operator credentials.
        </p>
      )}
      <iframe
        key={reloads}
        class="preview"
        title={`Preview of session ${session.sessionId}`}
        src={src}
        sandbox={previewSandbox(session.previewUrl, window.location.origin)}
        referrerpolicy="no-referrer"
      />
    </>
  );
}
