import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';

import { ApiError, api } from '../api/http';
import { Section, Time } from '../components/status';
import { useResource } from '../hooks';
import { pagePath } from '../aipages/gateway';
import { forgetPage, pageIdProblem, readRecent, type RecentPage } from '../aipages/recent';
import '../aipages/aipages.css';

interface StateSummary {
  seq: number;
  components: { to?: unknown }[];
}

/** The page's own components: the layout-manager and dataset-router entries are not among them. */
function componentCount(state: StateSummary): number {
  return Array.isArray(state.components)
    ? state.components.filter((c) => typeof c?.to === 'string' && /^(plotly-panel|text-component)-/.test(c.to)).length
    : 0;
}

/** What the gateway says about a page now: its component count and last directive. */
function PageSummary({ page }: { page: string }) {
  const { data, error, loading, reload } = useResource(
    (signal) => api<StateSummary>('queue-gateway', `${pagePath(page)}/state`, { signal }),
    [page],
  );
  if (loading && !data) return <span class="muted">Checking…</span>;
  if (error) {
    const gone = error instanceof ApiError && error.status === 404;
    const down = error instanceof ApiError && error.isDown;
    return (
      <span>
        <span class={`badge ${gone ? 'badge-muted' : 'badge-bad'}`} title={error.message}>
          {gone ? 'no longer exists' : down ? 'gateway down' : 'error'}
        </span>
        {!gone && (
          <button type="button" class="link-button" onClick={reload} aria-label={`Check ${page} again`}>
            Check again
          </button>
        )}
      </span>
    );
  }
  if (!data) return null;
  const count = componentCount(data);
  return (
    <span>
      {count} component{count === 1 ? '' : 's'} · {data.seq} directive{data.seq === 1 ? '' : 's'}
    </span>
  );
}

function OpenPage() {
  const { route } = useLocation();
  const [id, setId] = useState('');
  const [error, setError] = useState<string | null>(null);
  function submit(event: Event) {
    event.preventDefault();
    const page = id.trim();
    const problem = pageIdProblem(page);
    setError(problem);
    if (!problem) route(`/pages/${page}`);
  }
  return (
    <form class="row" onSubmit={submit} aria-label="Open a page">
      <label for="open-page-id">
        Page id
        <input
          id="open-page-id"
          value={id}
          onInput={(e) => setId((e.currentTarget as HTMLInputElement).value)}
          placeholder="e.g. sales-report"
          autoComplete="off"
          spellcheck={false}
          aria-invalid={error ? 'true' : undefined}
          aria-describedby={error ? 'open-page-id-error' : undefined}
        />
      </label>
      <button type="submit" class="primary">
        Open
      </button>
      {error && (
        <span id="open-page-id-error" class="field-error" role="alert">
          {error}
        </span>
      )}
    </form>
  );
}

/** The AI pages this operator has opened in this browser, and a way to open any by id. */
export function AiPages() {
  const [recent, setRecent] = useState<RecentPage[]>(() => readRecent());
  return (
    <div class="ai-pages">
      <h1>AI pages</h1>
      <p class="muted">
        An AI builds these pages through the queue gateway, and every browser showing one follows it live. The
        gateway does not list its pages: open one by the id the AI gave it. Pages opened here are listed below.
      </p>
      <Section title="Open a page">
        <OpenPage />
      </Section>
      <Section title="Opened in this browser">
        {recent.length === 0 ? (
          <p class="muted">No pages opened yet. Once you open a page, it is listed here.</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th scope="col">Page</th>
                <th scope="col">On the gateway</th>
                <th scope="col">Last opened</th>
                <th scope="col">
                  <span class="ai-visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {recent.map((item) => (
                <tr key={item.page}>
                  <td>
                    <a href={`/pages/${item.page}`}>{item.page}</a>
                  </td>
                  <td>
                    <PageSummary page={item.page} />
                  </td>
                  <td>
                    <Time at={new Date(item.openedAt).toISOString()} />
                  </td>
                  <td>
                    <button type="button" onClick={() => setRecent(forgetPage(item.page))} aria-label={`Remove ${item.page} from this list`}>
                      Remove
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
    </div>
  );
}
