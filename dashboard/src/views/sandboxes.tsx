import { useEffect, useState } from 'preact/hooks';
import { useLocation, useRoute } from 'preact-iso';

import { ApiError, fieldErrors } from '../api/http';
import { credentials, encodeBasic } from '../auth';
import { ErrorNotice, Loading, Section, Time } from '../components/status';
import { useInterval, useRefetchOnReconnect, useResource } from '../hooks';
import { createSession, listSessions, readiness, sessionState } from '../ops/api';
import { FileTree } from '../ops/FileTree';
import { FileViewer } from '../ops/FileViewer';
import {
  forgetSession,
  isNoEngine,
  normalizeSessions,
  parseSessionId,
  previewAvailable,
  previewSandbox,
  rememberSession,
  rememberedSessions,
  withAuth,
  type SessionSummary,
} from '../ops/sandbox';
import { SessionLogs } from '../ops/SessionLogs';
import { formatBytes, relativeTime } from '../ops/time';
import type { SessionState } from '../ops/types';
import '../ops/ops.css';

const TEMPLATES = ['empty', 'static', 'vite-react'] as const;

const SESSION_TONE: Record<string, string> = { ready: 'ok', creating: 'info', failed: 'bad', deleted: 'muted', 'not found': 'bad' };

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
  const { route } = useLocation();
  const ready = useSandboxReadiness();
  const listed = useResource(async (signal) => {
    try {
      return { supported: true, sessions: normalizeSessions(await listSessions(signal)) };
    } catch (error) {
      // A sandbox without a session list answers 405 (or 404): the sessions known here stand in.
      if (error instanceof ApiError && (error.status === 405 || error.status === 404)) return { supported: false, sessions: [] as SessionSummary[] };
      throw error;
    }
  }, []);
  const [remembered, setRemembered] = useState<string[]>(() => rememberedSessions());
  const [round, setRound] = useState(0);
  const refresh = () => {
    // A sandbox without a session list is not asked again; the remembered sessions are.
    if (listed.data?.supported !== false) listed.reload();
    setRound((n) => n + 1);
  };
  useInterval(refresh, 10_000);
  useRefetchOnReconnect(() => {
    ready.reload();
    refresh();
  });

  const noEngine = ready.error && isNoEngine(ready.error) ? (ready.error as ApiError) : null;
  const down = ready.error instanceof ApiError && ready.error.isDown;

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
          {!noEngine && (
            <Section
              title="Sessions"
              actions={
                <button type="button" onClick={refresh}>
                  Refresh
                </button>
              }
            >
              {listed.error && <ErrorNotice error={listed.error} retry={listed.reload} />}
              {listed.loading && !listed.data && <Loading label="Loading sessions…" />}
              {listed.data?.supported && <SessionTable sessions={listed.data.sessions} />}
              {listed.data && !listed.data.supported && (
                <RememberedSessions ids={remembered} round={round} onForget={(id) => setRemembered(forgetSession(id))} />
              )}
            </Section>
          )}
          <div class="grid">
            <NewSession
              disabled={Boolean(noEngine)}
              onCreated={(id) => {
                setRemembered(rememberSession(id));
                route(`/sandboxes/${id}`);
              }}
            />
            <OpenSession onOpen={(id) => route(`/sandboxes/${id}`)} />
          </div>
        </>
      )}
    </div>
  );
}

function SessionTable({ sessions }: { sessions: SessionSummary[] }) {
  if (sessions.length === 0) return <p class="muted">No sessions.</p>;
  return (
    <div class="table-wrap">
      <table aria-label="Sessions">
        <thead>
          <tr>
            <th scope="col">Session</th>
            <th scope="col">Status</th>
            <th scope="col">Template</th>
            <th scope="col">Created</th>
            <th scope="col">Last active</th>
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
              <td>{session.status ? <SessionBadge status={session.status} /> : '—'}</td>
              <td>{session.template ?? '—'}</td>
              <td class="nowrap">
                <Time at={session.createdAt} />
              </td>
              <td class="nowrap">{session.lastActiveAt ? relativeTime(session.lastActiveAt) : '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The sandbox does not list its sessions: the ones opened from this browser, each asked for its state. */
function RememberedSessions({ ids, round, onForget }: { ids: string[]; round: number; onForget: (id: string) => void }) {
  const states = useResource(
    (signal) =>
      Promise.all(
        ids.map((id) =>
          sessionState(id, signal).then(
            (state): SessionSummary => ({ sessionId: id, status: state.status, template: state.template, createdAt: state.createdAt, lastActiveAt: state.lastActiveAt }),
            (error: unknown): SessionSummary => ({
              sessionId: id,
              status: error instanceof ApiError && error.status === 404 ? 'not found' : 'unknown',
            }),
          ),
        ),
      ),
    [ids.join(','), round],
  );
  return (
    <>
      <p class="muted small">
        The sandbox service does not list its sessions. These are the sessions created or opened from this browser; open any other by its id
        below.
      </p>
      {ids.length === 0 && <p class="muted">No sessions opened from this browser yet.</p>}
      {states.loading && !states.data && ids.length > 0 && <Loading />}
      {states.data && states.data.length > 0 && (
        <div class="table-wrap">
          <table aria-label="Sessions">
            <thead>
              <tr>
                <th scope="col">Session</th>
                <th scope="col">Status</th>
                <th scope="col">Template</th>
                <th scope="col">Created</th>
                <th scope="col">Last active</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {states.data.map((session) => (
                <tr key={session.sessionId} data-session={session.sessionId}>
                  <th scope="row">
                    <a href={`/sandboxes/${session.sessionId}`} class="mono">
                      {session.sessionId}
                    </a>
                  </th>
                  <td>{session.status ? <SessionBadge status={session.status} /> : '—'}</td>
                  <td>{session.template ?? '—'}</td>
                  <td class="nowrap">
                    <Time at={session.createdAt} />
                  </td>
                  <td class="nowrap">{session.lastActiveAt ? relativeTime(session.lastActiveAt) : '—'}</td>
                  <td>
                    <button type="button" class="link-button" onClick={() => onForget(session.sessionId)} aria-label={`Forget session ${session.sessionId}`}>
                      Forget
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
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
  useEffect(() => {
    if (state.data) rememberSession(id);
  }, [id, Boolean(state.data)]);

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
      <p class="muted small">
        The page's own files (styles, scripts) are fetched without the dashboard's sign-in: if the browser asks to sign in to the sandbox's
        address, use the operator credentials.
      </p>
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
