import { cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/preact';
import { LocationProvider, Route, Router } from 'preact-iso';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { ApiError } from '../api/http';
import { credentials } from '../auth';
import type { SessionSummary, SessionsPage } from './sandbox';
import type { SessionState } from './types';

const api = vi.hoisted(() => ({
  listSessions: vi.fn<(filter: { status: string | null; cursor?: string }, signal?: AbortSignal) => Promise<SessionsPage>>(),
  readiness: vi.fn(),
  createSession: vi.fn(),
  sessionState: vi.fn(),
  listFiles: vi.fn(),
  readFile: vi.fn(),
}));

vi.mock('./api', () => ({ ...api, SESSIONS_PAGE_SIZE: 25 }));

const { Sandboxes } = await import('../views/sandboxes');

const A = '0b7c6a2e-1f6d-4c43-9d0a-5b8f7e6d5c4b';
const B = '1b7c6a2e-1f6d-4c43-9d0a-5b8f7e6d5c4b';

function session(id: string, overrides: Partial<SessionSummary> = {}): SessionSummary {
  const at = new Date(Date.now() - 3 * 60_000).toISOString();
  return {
    sessionId: id,
    template: 'static',
    status: 'ready',
    statusReason: null,
    previewUrl: `http://127.0.0.1:7104/api/sessions/${id}/preview/proxy/`,
    createdAt: at,
    lastActiveAt: at,
    deletedAt: null,
    ...overrides,
  };
}

function open(url: string) {
  history.replaceState(null, '', url);
  return render(
    <LocationProvider>
      <Router>
        <Route path="/sandboxes" component={Sandboxes} />
        <Route path="/sandboxes/:id" component={Sandboxes} />
      </Router>
    </LocationProvider>,
  );
}

beforeEach(() => {
  credentials.value = { user: 'operator', pass: 'secret' };
  api.readiness.mockResolvedValue({ status: 'ready', database: 'ok', checks: { 'container engine': 'ok' } });
});

afterEach(() => {
  cleanup();
  vi.resetAllMocks();
  credentials.value = null;
});

describe('the session list', () => {
  it('shows each session with its status, template, times and a preview link when ready', async () => {
    api.listSessions.mockResolvedValue({
      items: [
        session(A),
        session(B, { status: 'failed', statusReason: 'the image is missing', template: 'vite-react' }),
      ],
      nextCursor: null,
    });
    open('/sandboxes');
    const table = await screen.findByRole('table', { name: 'Sessions' });
    expect(api.listSessions).toHaveBeenCalledWith({ status: null, cursor: undefined }, expect.anything());

    const rowA = table.querySelector(`tr[data-session="${A}"]`) as HTMLElement;
    expect(within(rowA).getByRole('link', { name: A }).getAttribute('href')).toBe(`/sandboxes/${A}`);
    expect(rowA.textContent).toContain('ready');
    expect(rowA.textContent).toContain('static');
    expect(rowA.textContent).toContain('3 min ago');
    const preview = within(rowA).getByRole('link', { name: `Preview of session ${A} (opens in a new tab)` });
    expect(preview.getAttribute('href')).toBe(`http://127.0.0.1:7104/api/sessions/${A}/preview/proxy/?auth=b3BlcmF0b3I6c2VjcmV0`);

    const rowB = table.querySelector(`tr[data-session="${B}"]`) as HTMLElement;
    expect(rowB.textContent).toContain('failed');
    expect(rowB.textContent).toContain('the image is missing');
    expect(within(rowB).queryByRole('link', { name: /Preview of session/ })).toBeNull();
    expect(screen.getByText('2 sessions on page 1')).toBeTruthy();
  });

  it('pages with the cursor and comes back to the first page', async () => {
    api.listSessions.mockImplementation(async ({ cursor }) =>
      cursor === 'c2Vzc2lvbjox' ? { items: [session(B)], nextCursor: null } : { items: [session(A)], nextCursor: 'c2Vzc2lvbjox' },
    );
    open('/sandboxes');
    await screen.findByText('1 session on page 1, more on the next page');
    expect((screen.getByRole('button', { name: 'First page' }) as HTMLButtonElement).disabled).toBe(true);

    fireEvent.click(screen.getByRole('button', { name: 'Next page' }));
    await screen.findByText('1 session on page 2');
    expect(location.search).toBe('?cursor=c2Vzc2lvbjox');
    expect(document.querySelector(`tr[data-session="${B}"]`)).not.toBeNull();
    expect(document.querySelector(`tr[data-session="${A}"]`)).toBeNull();
    expect((screen.getByRole('button', { name: 'Next page' }) as HTMLButtonElement).disabled).toBe(true);

    fireEvent.click(screen.getByRole('button', { name: 'First page' }));
    await screen.findByText('1 session on page 1, more on the next page');
    expect(location.search).toBe('');
  });

  it('filters by status from the first page, and says when nothing matches', async () => {
    api.listSessions.mockImplementation(async ({ status }) => ({ items: status ? [] : [session(A)], nextCursor: null }));
    open('/sandboxes?cursor=c2Vzc2lvbjox');
    await screen.findByText('1 session on page 2');

    fireEvent.change(screen.getByLabelText('Status'), { target: { value: 'deleted' } });
    await waitFor(() => expect(api.listSessions).toHaveBeenLastCalledWith({ status: 'deleted', cursor: undefined }, expect.anything()));
    expect(location.search).toBe('?status=deleted');
    expect((await screen.findByTestId('sessions-empty')).textContent).toContain('No deleted sessions.');

    fireEvent.click(screen.getByRole('button', { name: 'Show every session' }));
    await screen.findByRole('table', { name: 'Sessions' });
    expect(location.search).toBe('');
  });

  it('offers the first page when the cursor is refused', async () => {
    api.listSessions.mockImplementation(async ({ cursor }) => {
      if (cursor) {
        throw new ApiError('sandbox', 'http', 422, {
          title: 'Invalid request',
          errors: [{ field: 'cursor', message: 'expected the nextCursor of a previous page' }],
        }, 'The cursor is not one this service gave out.');
      }
      return { items: [session(A)], nextCursor: null };
    });
    open('/sandboxes?cursor=bm9wZQ');
    const alert = await screen.findByText(/This page can no longer be found/);
    expect(alert.textContent).toContain('expected the nextCursor of a previous page');
    fireEvent.click(screen.getByRole('button', { name: 'Go to the first page' }));
    await screen.findByRole('table', { name: 'Sessions' });
  });

  it('says when the sandbox is down, and lists nothing', async () => {
    api.readiness.mockRejectedValue(new ApiError('sandbox', 'unreachable', 0, null, 'sandbox did not answer'));
    api.listSessions.mockRejectedValue(new ApiError('sandbox', 'unreachable', 0, null, 'sandbox did not answer'));
    open('/sandboxes');
    expect((await screen.findByRole('alert')).textContent).toContain('sandbox is down');
    expect(screen.queryByRole('table', { name: 'Sessions' })).toBeNull();
  });
});

function state(id: string, previewUrl: string): SessionState {
  const at = new Date().toISOString();
  return {
    sessionId: id,
    status: 'ready',
    statusReason: null,
    template: 'static',
    previewUrl,
    container: { id: 'ab1862cdeee8aa', port: 8080 },
    snapshot: { manifest: null, packageManager: null, framework: 'static', devCommand: null, port: null },
    dev: { command: 'httpd -f -p 8080 -h /workspace', port: 8080, running: true },
    oomKills: 0,
    resources: null,
    createdAt: at,
    lastActiveAt: at,
  };
}

/** The log stream's socket, which never connects here. */
class QuietSocket {
  onopen: (() => void) | null = null;
  onmessage: ((message: { data: unknown }) => void) | null = null;
  onclose: (() => void) | null = null;
  onerror: (() => void) | null = null;
  close() {}
}

describe('the session page preview', () => {
  beforeEach(() => {
    vi.stubGlobal('WebSocket', QuietSocket);
    api.listFiles.mockResolvedValue([]);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('frames the preview with the credentials in its address, its scripts and its own origin, and no sign-in note', async () => {
    const previewUrl = `http://127.0.0.1:7104/api/sessions/${A}/preview/proxy/`;
    api.sessionState.mockResolvedValue(state(A, previewUrl));
    open(`/sandboxes/${A}`);
    const frame = (await screen.findByTitle(`Preview of session ${A}`)) as HTMLIFrameElement;
    expect(frame.getAttribute('src')).toBe(`${previewUrl}?auth=b3BlcmF0b3I6c2VjcmV0`);
    const sandbox = (frame.getAttribute('sandbox') ?? '').split(' ');
    expect(sandbox).toEqual(expect.arrayContaining(['allow-scripts', 'allow-same-origin', 'allow-forms']));
    expect(screen.queryByText(/use the operator credentials/)).toBeNull();
  });

  it('tells the operator the browser may ask to sign in on a plain-http host', async () => {
    api.sessionState.mockResolvedValue(state(A, `http://sandbox.internal:7104/api/sessions/${A}/preview/proxy/`));
    open(`/sandboxes/${A}`);
    await screen.findByTitle(`Preview of session ${A}`);
    expect(screen.getByText(/use the operator credentials/)).toBeTruthy();
  });
});
