// Shapes of the orchestrator's and the logging service's answers the task views use.

export const TASK_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export interface Task {
  id: string;
  kind: string;
  status: TaskStatus;
  payload: unknown;
  result: unknown;
  error: unknown;
  version: number;
  correlationId: string | null;
  traceId: string;
  idempotencyKey: string | null;
  agent: string | null;
  priority: number;
  attempts: number;
  maxAttempts: number;
  timeoutSecs: number;
  runAt: string;
  createdAt: string;
  updatedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface TaskEvent {
  id: number;
  taskId: string;
  /** created, dispatched, succeeded, attempt_failed, failed, timed_out, cancelled, retried, patched, lease_expired */
  type: string;
  actor: string;
  fromStatus: TaskStatus | null;
  toStatus: TaskStatus | null;
  version: number;
  changes: unknown;
  traceId: string | null;
  createdAt: string;
}

export interface TaskPage {
  items: Task[];
  nextCursor: string | null;
}

export interface LogRecord {
  id: number;
  ts: string;
  receivedAt?: string;
  level: string;
  service: string;
  message: string;
  traceId: string | null;
  correlationId: string | null;
  taskId: string | null;
  fields: Record<string, unknown> | null;
}

export interface LogPage {
  items: LogRecord[];
  nextCursor: string | null;
}

export interface AgentKind {
  kind: string;
  payloadSchema: unknown;
}

export interface Agent {
  name: string;
  live?: boolean;
  heartbeatStatus?: string;
  kinds: AgentKind[];
}

/** The orchestrator's state machine (crates/protocol TaskStatus::can_become). */
const TRANSITIONS: Record<TaskStatus, TaskStatus[]> = {
  queued: ['running', 'cancelled', 'failed'],
  running: ['succeeded', 'failed', 'queued', 'cancelled'],
  succeeded: [],
  failed: ['queued'],
  cancelled: ['queued'],
};

export function nextStatuses(from: TaskStatus): TaskStatus[] {
  return TRANSITIONS[from] ?? [];
}

export function canCancel(status: TaskStatus): boolean {
  return status === 'queued' || status === 'running';
}

/** Retry runs a failed or cancelled task again. */
export function canRetry(status: TaskStatus): boolean {
  return status === 'failed' || status === 'cancelled';
}

export function isFinal(status: TaskStatus): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}
