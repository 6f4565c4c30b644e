// The services' operations endpoints the Agents, Config, Render and Sandboxes views call.

import { api, request } from '../api/http';
import type { ServiceName } from '../config';
import type {
  Agent,
  ApplyOut,
  Change,
  ConfigReport,
  Deploy,
  DeployOut,
  FileOut,
  Finding,
  FsEntry,
  Page,
  ReadyOut,
  RenderService,
  SessionCreated,
  SessionState,
} from './types';
import type { SessionStatus, SessionsPage } from './sandbox';

/** A frozen service should show as down quickly, not after the default 10 s. */
export const CHECK_TIMEOUT_MS = 4_000;

export function listAgents(signal?: AbortSignal): Promise<Agent[]> {
  return api<Agent[]>('orchestrator', '/agents', { signal });
}

export function configReport(service: ServiceName, signal?: AbortSignal): Promise<ConfigReport> {
  return api<ConfigReport>(service, '/config/validate', { signal, timeoutMs: CHECK_TIMEOUT_MS });
}

export function readiness(service: ServiceName, signal?: AbortSignal): Promise<ReadyOut> {
  return api<ReadyOut>(service, '/health/ready', { signal, timeoutMs: CHECK_TIMEOUT_MS });
}

// renderctl

export function renderServices(signal?: AbortSignal): Promise<Page<RenderService>> {
  return api<Page<RenderService>>('renderctl', '/render/services', { signal, query: { limit: 100 } });
}

export function renderDeploys(serviceId: string, signal?: AbortSignal): Promise<Page<Deploy>> {
  return api<Page<Deploy>>('renderctl', `/render/services/${encodeURIComponent(serviceId)}/deploys`, {
    signal,
    query: { limit: 20 },
  });
}

/** 201 with the new deploy, or 202 when Render queued it behind one in progress. */
export async function triggerDeploy(serviceId: string, clearCache: boolean): Promise<{ queued: boolean; out: DeployOut }> {
  const response = await request<DeployOut>('renderctl', `/render/deploy/${encodeURIComponent(serviceId)}`, {
    method: 'POST',
    body: { clearCache },
    timeoutMs: 30_000,
  });
  return { queued: response.status === 202, out: response.body };
}

export function blueprintPlan(signal?: AbortSignal): Promise<ApplyOut> {
  return api<ApplyOut>('renderctl', '/render/blueprint/apply', {
    method: 'POST',
    body: { dryRun: true },
    signal,
    timeoutMs: 30_000,
  });
}

export function renderChanges(signal?: AbortSignal): Promise<{ items: Change[]; nextBefore: number | null }> {
  return api('renderctl', '/render/changes', { signal, query: { limit: 25 } });
}

export function monitorFindings(signal?: AbortSignal): Promise<Finding[]> {
  return api<Finding[]>('renderctl', '/render/monitor', { signal, query: { limit: 25 } });
}

// sandbox

function sessionPath(id: string, rest: string): string {
  return `/api/sessions/${encodeURIComponent(id)}${rest}`;
}

/** Sessions per page of the list (the sandbox takes 1 to 200). */
export const SESSIONS_PAGE_SIZE = 25;

/** A page of sessions, newest first: `cursor` is the previous page's `nextCursor`. */
export function listSessions(
  filter: { status: SessionStatus | null; cursor?: string },
  signal?: AbortSignal,
): Promise<SessionsPage> {
  return api<SessionsPage>('sandbox', '/api/sessions', {
    signal,
    query: { status: filter.status, limit: SESSIONS_PAGE_SIZE, cursor: filter.cursor },
  });
}

export function createSession(template: string): Promise<SessionCreated> {
  return api<SessionCreated>('sandbox', '/api/sessions', { method: 'POST', body: { template }, timeoutMs: 120_000 });
}

export function sessionState(id: string, signal?: AbortSignal): Promise<SessionState> {
  return api<SessionState>('sandbox', sessionPath(id, '/state'), { signal });
}

export async function listFiles(id: string, path: string, signal?: AbortSignal): Promise<FsEntry[]> {
  const body = await api<{ entries: FsEntry[] }>('sandbox', sessionPath(id, '/fs/list'), { signal, query: { path } });
  return body.entries ?? [];
}

export function readFile(id: string, path: string, signal?: AbortSignal): Promise<FileOut> {
  return api<FileOut>('sandbox', sessionPath(id, '/fs/read'), { signal, query: { path } });
}
