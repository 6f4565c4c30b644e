import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { useLocation, useRoute } from 'preact-iso';

import { ApiError } from '../api/http';
import { ErrorNotice, Loading } from '../components/status';
import { useInterval } from '../hooks';
import { pageClient } from '../aipages/gateway';
import { ID_PATTERN } from '../aipages/model';
import { PageView, type SendFor } from '../aipages/page-view';
import { arrange } from '../aipages/reducer';
import { rememberPage } from '../aipages/recent';
import { PageSession, type Snapshot } from '../aipages/session';
import '../aipages/aipages.css';

/** Errors as the person opening the page reads them: a refused token is not a wrong password. */
function explain(error: Error, shared: boolean, page: string): Error {
  if (error instanceof ApiError && error.status === 404) {
    return new Error(`There is no page "${page}" on the queue gateway. Check the id, or try again once the AI has created it.`);
  }
  if (error instanceof ApiError && error.status === 401) {
    return new Error(
      shared
        ? 'This link no longer opens the page: its token has expired or was revoked.'
        : 'The queue gateway did not accept the operator sign-in.',
    );
  }
  return error;
}

function ConnectionStatus({ snapshot, retry }: { snapshot: Snapshot; retry: () => void }) {
  const [now, setNow] = useState(Date.now());
  useInterval(() => setNow(Date.now()), 1000);
  if (snapshot.connection === 'live') {
    return (
      <span class="live live-open" role="status" aria-live="polite" data-testid="page-connection">
        <span class="dot" aria-hidden="true" /> Live
      </span>
    );
  }
  if (snapshot.connection === 'reconnecting') {
    const seconds = Math.max(0, Math.ceil(((snapshot.retryAt ?? now) - now) / 1000));
    return (
      <span class="live live-reconnecting" data-testid="page-connection">
        <span class="dot" aria-hidden="true" /> <span role="status">Reconnecting…</span>
        {/* The countdown is for the eye; announcing it every second would drown everything else. */}
        {seconds > 0 && <span aria-hidden="true">(in {seconds}s)</span>}
        <button type="button" class="link-button" onClick={retry}>
          Retry now
        </button>
      </span>
    );
  }
  if (snapshot.connection === 'failed') {
    return (
      <span class="live live-closed" role="status" aria-live="polite" data-testid="page-connection">
        <span class="dot" aria-hidden="true" /> Stopped
      </span>
    );
  }
  return (
    <span class="live live-connecting" role="status" aria-live="polite" data-testid="page-connection">
      <span class="dot" aria-hidden="true" /> Connecting…
    </span>
  );
}

/** One AI page, rebuilt from the gateway's page state and kept current by long polls. */
export function AiPage() {
  const { params } = useRoute();
  const { query } = useLocation();
  const page = params.page ?? '';
  const token = query.token || undefined;
  const shared = Boolean(token);
  const client = useMemo(() => pageClient(page, token), [page, token]);
  const session = useRef<PageSession | null>(null);
  const [snapshot, setSnapshot] = useState<Snapshot>({ connection: 'loading', model: null });
  const [showAddresses, setShowAddresses] = useState(false);
  const valid = ID_PATTERN.test(page);

  useEffect(() => {
    if (!valid) return;
    const current = new PageSession(client);
    session.current = current;
    setSnapshot(current.current);
    const unsubscribe = current.subscribe(setSnapshot);
    current.start();
    return () => {
      unsubscribe();
      current.stop();
      session.current = null;
    };
  }, [client, valid]);

  const loaded = snapshot.model !== null;
  useEffect(() => {
    // Only the operator's own list: a shared link leaves nothing behind in the browser.
    if (loaded && !shared) rememberPage(page);
  }, [loaded, shared, page]);

  const model = snapshot.model;
  const title = useMemo(() => (model ? arrange(model).title : undefined), [model]);
  useEffect(() => {
    const previous = document.title;
    document.title = `${title || `AI page ${page}`} · Autonoma`;
    return () => {
      document.title = previous;
    };
  }, [title, page]);

  const sendFor: SendFor = useMemo(
    () => (address) => async (value) => {
      try {
        await client.sendEvent({ component: address, kind: 'submit', value });
      } catch (error) {
        throw error instanceof Error ? explain(error, shared, page) : error;
      }
    },
    [client, shared, page],
  );

  if (!valid) {
    return (
      <div class="ai-page-view">
        <h1>No such page</h1>
        <p class="notice notice-error" role="alert">
          "{page}" is not a page id: page ids have lowercase letters, digits, "_" and "-".
        </p>
        {!shared && <a href="/pages">All AI pages</a>}
      </div>
    );
  }

  const retry = () => session.current?.retryNow();
  const error = snapshot.error ? explain(snapshot.error, shared, page) : null;
  return (
    <div class={`ai-page-view${shared ? ' ai-shared' : ''}`}>
      <header class="ai-page-head">
        <div>
          {!shared && (
            <nav aria-label="Breadcrumb" class="muted ai-crumbs">
              <a href="/pages">AI pages</a> / <code>{page}</code>
            </nav>
          )}
          <h1>{title || `AI page ${page}`}</h1>
        </div>
        <div class="ai-page-tools">
          {!shared && model && (
            <label class="inline">
              <input type="checkbox" checked={showAddresses} onChange={(e) => setShowAddresses((e.currentTarget as HTMLInputElement).checked)} />
              Show component addresses
            </label>
          )}
          {model && <span class="muted">Directive #{model.seq}</span>}
          <ConnectionStatus snapshot={snapshot} retry={retry} />
        </div>
      </header>
      {error && snapshot.connection === 'reconnecting' && (
        <p class="notice notice-down" role="alert">
          {error instanceof ApiError && error.isDown ? 'The queue gateway is not answering' : 'Reading the page failed'} ({error.message}).{' '}
          {model ? 'The page shows what it had and catches up when the gateway answers again.' : 'Trying again.'}
        </p>
      )}
      {error && snapshot.connection === 'failed' && <ErrorNotice error={error} retry={retry} />}
      {model ? (
        <PageView model={model} sendFor={sendFor} showAddresses={showAddresses} />
      ) : (
        snapshot.connection !== 'failed' && <Loading label="Loading the page…" />
      )}
    </div>
  );
}
