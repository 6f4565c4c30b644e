// The task's own members around the payload: what `POST /task` and `PATCH /task/{id}` accept
// besides it, checked as the orchestrator checks them so mistakes show before sending.

import type { Problem } from '../api/http';
import { localInputToIso } from './filters';
import { TASK_STATUSES, type TaskStatus } from './types';

export interface Parsed<T> {
  value?: T;
  error?: string;
}

/** A whole number within [min, max]; empty text is "not given". */
export function parseInteger(text: string, min: number, max: number): Parsed<number> {
  const trimmed = text.trim();
  if (trimmed === '') return {};
  if (!/^[-+]?\d+$/.test(trimmed)) return { error: 'must be a whole number' };
  const value = Number(trimmed);
  if (value < min || value > max) return { error: `between ${min} and ${max}` };
  return { value };
}

/** A `datetime-local` value as RFC 3339; empty text is "not given". */
export function parseInstant(text: string): Parsed<string> {
  if (!text.trim()) return {};
  const iso = localInputToIso(text.trim());
  return iso ? { value: iso } : { error: 'must be a date and time' };
}

/** JSON text; empty text is "not given". */
export function parseJsonText(text: string): Parsed<unknown> {
  if (!text.trim()) return {};
  try {
    return { value: JSON.parse(text) as unknown };
  } catch (error) {
    return { error: `not valid JSON (${error instanceof Error ? error.message : String(error)})` };
  }
}

function boundedText(text: string, max: number): Parsed<string> {
  const trimmed = text.trim();
  if (!trimmed) return {};
  if (trimmed.length > max) return { error: `at most ${max} characters` };
  return { value: trimmed };
}

export interface TaskOptionsInput {
  correlationId: string;
  idempotencyKey: string;
  priority: string;
  maxAttempts: string;
  timeoutSecs: string;
  /** `datetime-local` value. */
  runAt: string;
}

export const EMPTY_OPTIONS: TaskOptionsInput = {
  correlationId: '',
  idempotencyKey: '',
  priority: '',
  maxAttempts: '',
  timeoutSecs: '',
  runAt: '',
};

/** Members of `POST /task` a problem can name, besides the payload. */
export const TASK_FIELDS = ['kind', 'correlationId', 'idempotencyKey', 'priority', 'maxAttempts', 'timeoutSecs', 'runAt'] as const;

/** The body of `POST /task`, or what is wrong with the options (by member name). */
export function buildTaskBody(
  kind: string,
  payload: unknown,
  input: TaskOptionsInput,
): { body: Record<string, unknown>; errors: Record<string, string> } {
  const body: Record<string, unknown> = { kind, payload };
  const errors: Record<string, string> = {};
  const take = (name: string, parsed: Parsed<unknown>) => {
    if (parsed.error) errors[name] = parsed.error;
    else if (parsed.value !== undefined) body[name] = parsed.value;
  };
  if (!kind) errors.kind = 'choose a kind';
  take('correlationId', boundedText(input.correlationId, 200));
  take('idempotencyKey', boundedText(input.idempotencyKey, 200));
  take('priority', parseInteger(input.priority, -100, 100));
  take('maxAttempts', parseInteger(input.maxAttempts, 1, 100));
  take('timeoutSecs', parseInteger(input.timeoutSecs, 1, 86_400));
  take('runAt', parseInstant(input.runAt));
  return { body, errors };
}

export interface PatchInput {
  status: '' | TaskStatus;
  priority: string;
  maxAttempts: string;
  runAt: string;
  result: string;
  error: string;
  note: string;
}

export const EMPTY_PATCH: PatchInput = { status: '', priority: '', maxAttempts: '', runAt: '', result: '', error: '', note: '' };

/** Members of `PATCH /task/{id}` a problem can name. */
export const PATCH_FIELDS = ['status', 'priority', 'maxAttempts', 'runAt', 'result', 'error', 'note', 'ifVersion'] as const;

/**
 * The body of `PATCH /task/{id}` based on version `ifVersion`: only what the operator filled in
 * is sent, so everything else stays as it is.
 */
export function buildPatch(input: PatchInput, ifVersion: number): { body: Record<string, unknown>; errors: Record<string, string> } {
  const body: Record<string, unknown> = { ifVersion };
  const errors: Record<string, string> = {};
  const take = (name: string, parsed: Parsed<unknown>) => {
    if (parsed.error) errors[name] = parsed.error;
    else if (parsed.value !== undefined) body[name] = parsed.value;
  };
  if (input.status) {
    if ((TASK_STATUSES as readonly string[]).includes(input.status)) body.status = input.status;
    else errors.status = 'not a status';
  }
  take('priority', parseInteger(input.priority, -100, 100));
  take('maxAttempts', parseInteger(input.maxAttempts, 1, 100));
  take('runAt', parseInstant(input.runAt));
  take('result', parseJsonText(input.result));
  take('error', parseJsonText(input.error));
  if (input.note.trim()) body.note = input.note.trim();
  const changes = Object.keys(body).filter((key) => key !== 'ifVersion' && key !== 'note');
  if (changes.length === 0 && Object.keys(errors).length === 0) {
    errors['/'] = 'Change at least one of status, priority, max attempts, run at, result or error.';
  }
  return { body, errors };
}

export type Conflict =
  | { kind: 'version'; message: string; currentVersion?: number; currentStatus?: string }
  | { kind: 'transition'; message: string; from?: string; to?: string }
  | { kind: 'other'; message: string };

/** A 409 from the orchestrator: a stale version, an illegal transition, or something else. */
export function describeConflict(problem: Problem | null): Conflict {
  const type = String(problem?.type ?? '');
  const detail = problem?.detail ?? problem?.title ?? 'The task is in a state that does not allow this.';
  if (type.endsWith(':version-conflict') || typeof problem?.currentVersion === 'number') {
    return {
      kind: 'version',
      message: detail,
      currentVersion: typeof problem?.currentVersion === 'number' ? problem.currentVersion : undefined,
      currentStatus: typeof problem?.currentStatus === 'string' ? problem.currentStatus : undefined,
    };
  }
  if (type.endsWith(':illegal-transition') || typeof problem?.transition === 'string') {
    return {
      kind: 'transition',
      message: detail,
      from: typeof problem?.from === 'string' ? problem.from : undefined,
      to: typeof problem?.to === 'string' ? problem.to : undefined,
    };
  }
  return { kind: 'other', message: detail };
}
