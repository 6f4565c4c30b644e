// The activity stream's model: task updates and log records merged into one list, newest
// first, deduplicated (a refetch after a reconnect overlaps what the socket already sent),
// bounded, and filterable.

export interface TaskLike {
  id: string;
  kind: string;
  status: string;
  version: number;
  updatedAt?: string;
  agent?: string | null;
  correlationId?: string | null;
  traceId?: string | null;
  error?: unknown;
}

export interface LogLike {
  id?: number | string;
  ts?: string;
  level?: string;
  service?: string;
  message?: string;
  traceId?: string | null;
  taskId?: string | null;
}

export type Entry =
  | { key: string; at: string; type: 'task'; task: TaskLike; event?: string }
  | { key: string; at: string; type: 'log'; log: LogLike };

export const MAX_ENTRIES = 500;

export function taskEntry(task: TaskLike, event?: string): Entry {
  return { key: `task:${task.id}:${task.version}`, at: task.updatedAt ?? '', type: 'task', task, event };
}

export function logEntry(log: LogLike): Entry {
  const key = log.id !== undefined ? `log:${log.id}` : `log:${log.ts}:${log.service}:${log.message}`;
  return { key, at: log.ts ?? '', type: 'log', log };
}

/** `incoming` merged into `entries`: newest first, each key once, at most `max`. */
export function merge(entries: Entry[], incoming: Entry[], max = MAX_ENTRIES): Entry[] {
  const seen = new Set(entries.map((e) => e.key));
  const fresh = incoming.filter((e) => {
    if (seen.has(e.key)) return false;
    seen.add(e.key);
    return true;
  });
  if (!fresh.length) return entries;
  return [...fresh, ...entries].sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0)).slice(0, max);
}

export interface Filter {
  show: 'all' | 'task' | 'log';
  text: string;
  level: '' | 'error' | 'warn' | 'info' | 'debug';
}

const LEVEL_RANK: Record<string, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

export function matches(entry: Entry, filter: Filter): boolean {
  if (filter.show !== 'all' && entry.type !== filter.show) return false;
  if (filter.level && entry.type === 'log') {
    if ((LEVEL_RANK[entry.log.level ?? 'info'] ?? 2) < LEVEL_RANK[filter.level]) return false;
  }
  const needle = filter.text.trim().toLowerCase();
  if (!needle) return true;
  const haystack =
    entry.type === 'task'
      ? [entry.task.id, entry.task.kind, entry.task.status, entry.task.agent, entry.task.correlationId, entry.task.traceId, entry.event]
      : [entry.log.message, entry.log.service, entry.log.level, entry.log.traceId, entry.log.taskId];
  return haystack.some((value) => typeof value === 'string' && value.toLowerCase().includes(needle));
}
