import { api, request } from '../api/http';
import { buildApiQuery, type TaskFilters } from './filters';
import type { Agent, LogPage, Task, TaskEvent, TaskPage } from './types';

export const PAGE_SIZE = 50;
export const LOG_LIMIT = 500;

export function listTasks(filters: TaskFilters, cursor: string | undefined, signal?: AbortSignal): Promise<TaskPage> {
  return api<TaskPage>('orchestrator', '/tasks', {
    query: { ...buildApiQuery(filters), limit: PAGE_SIZE, cursor },
    signal,
  });
}

const taskPath = (id: string) => `/task/${encodeURIComponent(id)}`;

export function getTask(id: string, signal?: AbortSignal): Promise<Task> {
  return api<Task>('orchestrator', taskPath(id), { signal });
}

export function getTaskEvents(id: string, signal?: AbortSignal): Promise<TaskEvent[]> {
  return api<TaskEvent[]>('orchestrator', `${taskPath(id)}/events`, { signal });
}

/** The newest records of one trace, oldest first. */
export async function getTraceLogs(traceId: string, signal?: AbortSignal): Promise<LogPage> {
  const page = await api<LogPage>('logging', '/logs', { query: { traceId, limit: LOG_LIMIT }, signal });
  return { ...page, items: [...page.items].reverse() };
}

export function cancelTask(id: string): Promise<Task> {
  return api<Task>('orchestrator', `${taskPath(id)}/cancel`, { method: 'POST' });
}

export function retryTask(id: string): Promise<Task> {
  return api<Task>('orchestrator', `${taskPath(id)}/retry`, { method: 'POST' });
}

export function patchTask(id: string, body: Record<string, unknown>): Promise<Task> {
  return api<Task>('orchestrator', taskPath(id), { method: 'PATCH', body });
}

/** 201 when created, 200 when a task with the same idempotency key existed already. */
export async function createTask(body: Record<string, unknown>): Promise<{ task: Task; created: boolean }> {
  const response = await request<Task>('orchestrator', '/task', { method: 'POST', body });
  return { task: response.body, created: response.status === 201 };
}

export function listAgents(signal?: AbortSignal): Promise<Agent[]> {
  return api<Agent[]>('orchestrator', '/agents', { signal });
}
