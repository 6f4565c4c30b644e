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
 * dev server (module scripts and hot reload need its real origin), but it never gets the
 * dashboard's origin: when the preview would be served from the dashboard's own origin it
 * runs in an opaque one.
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

export interface SessionSummary {
  sessionId: string;
  status?: string;
  template?: string;
  createdAt?: string;
  lastActiveAt?: string;
}

/**
 * A session list as the sandbox may answer it: an array, or `{items}` / `{sessions}`, each item
 * naming its id as `sessionId` or `id`.
 */
export function normalizeSessions(body: unknown): SessionSummary[] {
  const list = Array.isArray(body)
    ? body
    : Array.isArray((body as { items?: unknown })?.items)
      ? (body as { items: unknown[] }).items
      : Array.isArray((body as { sessions?: unknown })?.sessions)
        ? (body as { sessions: unknown[] }).sessions
        : [];
  const out: SessionSummary[] = [];
  for (const item of list) {
    if (!item || typeof item !== 'object') continue;
    const record = item as Record<string, unknown>;
    const id = typeof record.sessionId === 'string' ? record.sessionId : typeof record.id === 'string' ? record.id : null;
    if (!id) continue;
    out.push({
      sessionId: id,
      status: str(record.status),
      template: str(record.template),
      createdAt: str(record.createdAt),
      lastActiveAt: str(record.lastActiveAt),
    });
  }
  return out;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A session id typed or pasted by an operator: a UUID, possibly inside a URL. */
export function parseSessionId(input: string): string | null {
  const text = input.trim();
  if (UUID.test(text)) return text.toLowerCase();
  const match = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i.exec(text);
  return match ? match[0].toLowerCase() : null;
}

const REMEMBERED_KEY = 'autonoma.sandbox.sessions';
const REMEMBERED_MAX = 20;

/** Sessions opened or created from this browser, newest first (ids only). */
export function rememberedSessions(storage: Pick<Storage, 'getItem'> | undefined = globalThis.localStorage): string[] {
  try {
    const parsed: unknown = JSON.parse(storage?.getItem(REMEMBERED_KEY) ?? '[]');
    return Array.isArray(parsed) ? parsed.filter((id): id is string => typeof id === 'string' && UUID.test(id)) : [];
  } catch {
    return [];
  }
}

export function rememberSession(id: string, storage: Pick<Storage, 'getItem' | 'setItem'> | undefined = globalThis.localStorage): string[] {
  const next = [id, ...rememberedSessions(storage).filter((known) => known !== id)].slice(0, REMEMBERED_MAX);
  try {
    storage?.setItem(REMEMBERED_KEY, JSON.stringify(next));
  } catch {
    // Storage full or disabled: the list just is not kept.
  }
  return next;
}

export function forgetSession(id: string, storage: Pick<Storage, 'getItem' | 'setItem'> | undefined = globalThis.localStorage): string[] {
  const next = rememberedSessions(storage).filter((known) => known !== id);
  try {
    storage?.setItem(REMEMBERED_KEY, JSON.stringify(next));
  } catch {
    // as above
  }
  return next;
}
