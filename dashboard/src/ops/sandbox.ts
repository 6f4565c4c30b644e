import { ApiError } from '../api/http';
import type { FsEntry, SessionState } from './types';

/** The sandbox answers 503 about its container engine when it has none (or cannot reach it). */
export function isNoEngine(error: unknown): boolean {
  if (!(error instanceof ApiError) || error.status !== 503) return false;
  const problem = error.problem ?? {};
  const type = typeof problem.type === 'string' ? problem.type : '';
  const dependency = typeof problem.dependency === 'string' ? problem.dependency : '';
  return dependency === 'container engine' || type.endsWith('engine-unreachable') || /container engine/i.test(problem.detail ?? '');
}

/** A URL with the operator's credentials as `?auth=` (what the sandbox accepts from browsers). */
export function withAuth(url: string, auth: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('auth', auth);
  return parsed.toString();
}

/** The WebSocket of a session's log lines, replaying those after `after`. */
export function logsSocketUrl(base: string, sessionId: string, auth: string, after = 0): string {
  const url = new URL(`/api/sessions/${encodeURIComponent(sessionId)}/logs`, base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  if (after > 0) url.searchParams.set('after', String(after));
  url.searchParams.set('auth', auth);
  return url.toString();
}

/**
 * The iframe sandbox of the preview. Code in a session runs its own scripts and talks to its
 * dev server: module scripts, fetches and hot reload need its real origin, and its own
 * requests carry the preview cookie only from there. It never gets the dashboard's origin:
 * when the preview would be served from the dashboard's own origin it runs in an opaque one.
 */
export function previewSandbox(previewUrl: string, dashboardOrigin: string): string {
  const base = ['allow-scripts', 'allow-forms', 'allow-modals', 'allow-popups'];
  let sameOrigin = true;
  try {
    sameOrigin = new URL(previewUrl).origin === dashboardOrigin;
  } catch {
    // An unparsable URL gets the strictest sandbox.
  }
  return (sameOrigin ? base : [...base, 'allow-same-origin']).join(' ');
}

/** Directories first, then by name. */
export function sortEntries(entries: readonly FsEntry[]): FsEntry[] {
  return [...entries].sort(
    (a, b) => Number(b.type === 'dir') - Number(a.type === 'dir') || a.name.localeCompare(b.name),
  );
}

/** Whether the session has a dev server the preview can show. */
export function previewAvailable(state: SessionState): boolean {
  return state.status === 'ready' && Boolean(state.dev?.running);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A session id typed or pasted by an operator: a UUID, possibly inside a URL. */
export function parseSessionId(input: string): string | null {
  const text = input.trim();
  if (UUID.test(text)) return text.toLowerCase();
  const match = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i.exec(text);
  return match ? match[0].toLowerCase() : null;
}

// The session list

export const SESSION_STATUSES = ['creating', 'ready', 'failed', 'deleted'] as const;
export type SessionStatus = (typeof SESSION_STATUSES)[number];

/** One row of `GET /api/sessions`. */
export interface SessionSummary {
  sessionId: string;
  template: string;
  status: SessionStatus;
  /** Why the session failed or ended. */
  statusReason: string | null;
  previewUrl: string;
  createdAt: string;
  lastActiveAt: string;
  /** Deleted sessions only. */
  deletedAt: string | null;
}

/** A page of `GET /api/sessions`, newest first. */
export interface SessionsPage {
  items: SessionSummary[];
  /** Pass as `cursor` for the next page; null on the last one. */
  nextCursor: string | null;
}

/** What the list shows, kept in the address: a status filter and the cursors of the pages before this one. */
export interface SessionListState {
  status: SessionStatus | null;
  /** The cursor of every page after the first, up to this one (the last one fetches this page). */
  trail: string[];
}

export function isSessionStatus(value: unknown): value is SessionStatus {
  return typeof value === 'string' && (SESSION_STATUSES as readonly string[]).includes(value);
}

/** The list's state from the address's query (`?status=ready&cursor=a,b`); anything unknown is dropped. */
export function parseSessionListState(query: Record<string, string | undefined>): SessionListState {
  const status = isSessionStatus(query.status) ? query.status : null;
  const trail = (query.cursor ?? '')
    .split(',')
    .map((cursor) => cursor.trim())
    .filter(Boolean);
  return { status, trail };
}

/** The list's address for a state: `/sandboxes`, `/sandboxes?status=failed&cursor=a`. */
export function sessionListHref({ status, trail }: SessionListState): string {
  const params = new URLSearchParams();
  if (status) params.set('status', status);
  if (trail.length) params.set('cursor', trail.join(','));
  const query = params.toString();
  return query ? `/sandboxes?${query}` : '/sandboxes';
}

/**
 * Whether the browser may still ask for the sandbox's credentials inside the preview. The
 * preview's cookie is `Secure`: browsers keep it from https and from loopback addresses
 * (which they treat as secure), and drop it from any other plain-http host.
 */
export function previewMayPrompt(previewUrl: string): boolean {
  let url: URL;
  try {
    url = new URL(previewUrl);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:') return false;
  const host = url.hostname.toLowerCase();
  const loopback =
    host === 'localhost' || host.endsWith('.localhost') || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
  return !loopback;
}
