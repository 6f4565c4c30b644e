import { describe, expect, it } from 'vitest';

import {
  EMPTY_FILTERS,
  buildApiQuery,
  formatListState,
  hasFilters,
  isoToLocalInput,
  localInputToIso,
  matchesFilters,
  mergeTask,
  parseListState,
  rangeError,
} from './filters';
import type { Task } from './types';

function task(over: Partial<Task>): Task {
  return {
    id: '01a20060-0000-7000-8000-000000000000',
    kind: 'echo',
    status: 'queued',
    payload: {},
    result: null,
    error: null,
    version: 1,
    correlationId: null,
    traceId: 'a'.repeat(32),
    idempotencyKey: null,
    agent: null,
    priority: 0,
    attempts: 0,
    maxAttempts: 3,
    timeoutSecs: 300,
    runAt: '2026-11-21T10:00:00Z',
    createdAt: '2026-11-21T10:00:00Z',
    updatedAt: '2026-11-21T10:00:00Z',
    startedAt: null,
    finishedAt: null,
    ...over,
  };
}

describe('list state in the URL', () => {
  it('reads statuses given repeated or comma-separated, in a stable order, dropping unknown ones', () => {
    const { filters } = parseListState('?status=failed,queued&status=bogus&status=queued&kind=echo');
    expect(filters.statuses).toEqual(['queued', 'failed']);
    expect(filters.kind).toBe('echo');
  });

  it('round-trips filters and the cursor trail', () => {
    const state = {
      filters: {
        ...EMPTY_FILTERS,
        statuses: ['running' as const, 'queued' as const],
        correlationId: 'order 42/a',
        since: '2026-11-21T10:00:00.000Z',
      },
      trail: ['dGFzazox', 'dGFzazoy'],
    };
    const search = formatListState(state);
    expect(search).toBe(
      '?status=queued,running&correlationId=order+42%2Fa&since=2026-11-21T10%3A00%3A00.000Z&cursor=dGFzazox,dGFzazoy',
    );
    expect(parseListState(search)).toEqual({
      filters: { ...state.filters, statuses: ['queued', 'running'] },
      trail: ['dGFzazox', 'dGFzazoy'],
    });
  });

  it('is empty without filters', () => {
    expect(formatListState({ filters: EMPTY_FILTERS, trail: [] })).toBe('');
    expect(hasFilters(EMPTY_FILTERS)).toBe(false);
    expect(hasFilters({ ...EMPTY_FILTERS, agent: 'a' })).toBe(true);
  });

  it('asks the orchestrator with its own parameter names and nothing for unset filters', () => {
    expect(buildApiQuery({ ...EMPTY_FILTERS, statuses: ['failed', 'cancelled'], traceId: 'abc' })).toEqual({
      status: 'failed,cancelled',
      kind: undefined,
      agent: undefined,
      correlationId: undefined,
      traceId: 'abc',
      since: undefined,
      until: undefined,
    });
  });
});

describe('matchesFilters', () => {
  it('applies every filter as the orchestrator does', () => {
    const t = task({ status: 'running', agent: 'echo-agent', correlationId: 'c1', createdAt: '2026-11-21T10:00:00Z' });
    expect(matchesFilters(t, EMPTY_FILTERS)).toBe(true);
    expect(matchesFilters(t, { ...EMPTY_FILTERS, statuses: ['running', 'queued'] })).toBe(true);
    expect(matchesFilters(t, { ...EMPTY_FILTERS, statuses: ['queued'] })).toBe(false);
    expect(matchesFilters(t, { ...EMPTY_FILTERS, kind: 'other' })).toBe(false);
    expect(matchesFilters(t, { ...EMPTY_FILTERS, agent: 'echo-agent', correlationId: 'c1' })).toBe(true);
    expect(matchesFilters(t, { ...EMPTY_FILTERS, correlationId: 'c2' })).toBe(false);
    expect(matchesFilters(t, { ...EMPTY_FILTERS, since: '2026-11-21T10:00:00Z' })).toBe(true);
    // `until` is exclusive.
    expect(matchesFilters(t, { ...EMPTY_FILTERS, until: '2026-11-21T10:00:00Z' })).toBe(false);
    expect(matchesFilters(t, { ...EMPTY_FILTERS, since: '2026-11-21T10:00:01Z' })).toBe(false);
  });
});

describe('mergeTask', () => {
  const older = task({ id: '01a20060-0000-7000-8000-000000000001' });
  const newer = task({ id: '01a20060-0000-7000-8000-000000000003' });
  const rows = [newer, older];
  const base = { filters: EMPTY_FILTERS, firstPage: true, hasMore: false };

  it('updates a shown row in place, never with an older version', () => {
    const updated = mergeTask(rows, { ...older, status: 'running', version: 2 }, base);
    expect(updated.outcome).toBe('updated');
    expect(updated.rows[1].status).toBe('running');
    expect(updated.rows[0]).toBe(newer);
    const stale = mergeTask(updated.rows, { ...older, version: 1 }, base);
    expect(stale.outcome).toBe('ignored');
    expect(stale.rows[1].version).toBe(2);
  });

  it('puts a new matching task first on the first page', () => {
    const created = task({ id: '01a20060-0000-7000-8000-000000000009' });
    const merged = mergeTask(rows, created, base);
    expect(merged.outcome).toBe('inserted');
    expect(merged.rows.map((r) => r.id)).toEqual([created.id, newer.id, older.id]);
  });

  it('inserts a task that starts matching at its place by id', () => {
    const between = task({ id: '01a20060-0000-7000-8000-000000000002', status: 'failed' });
    const merged = mergeTask(rows, between, { ...base, filters: { ...EMPTY_FILTERS, statuses: ['failed'] } });
    expect(merged.rows.map((r) => r.id)).toEqual([newer.id, between.id, older.id]);
  });

  it('leaves out tasks that do not match, pages after the first, and tasks past a full page', () => {
    const created = task({ id: '01a20060-0000-7000-8000-000000000009', kind: 'other' });
    expect(mergeTask(rows, created, { ...base, filters: { ...EMPTY_FILTERS, kind: 'echo' } }).outcome).toBe('ignored');
    expect(mergeTask(rows, task({ id: '01a20060-0000-7000-8000-000000000009' }), { ...base, firstPage: false }).outcome).toBe('ignored');
    const oldest = task({ id: '01a20060-0000-7000-8000-000000000000' });
    expect(mergeTask(rows, oldest, { ...base, hasMore: true }).outcome).toBe('ignored');
    expect(mergeTask(rows, oldest, base).rows.at(-1)?.id).toBe(oldest.id);
  });
});

describe('time inputs', () => {
  it('converts between datetime-local values and RFC 3339 instants in the local zone', () => {
    const iso = localInputToIso('2026-11-21T10:30');
    expect(iso).toBe(new Date(2026, 10, 21, 10, 30).toISOString());
    expect(isoToLocalInput(iso ?? '')).toBe('2026-11-21T10:30');
    expect(localInputToIso('')).toBe('');
    expect(localInputToIso('tomorrow')).toBeNull();
    expect(isoToLocalInput('garbage')).toBe('');
  });

  it('refuses a range that ends before it starts', () => {
    expect(rangeError({ ...EMPTY_FILTERS, since: '2026-11-21T10:00:00Z', until: '2026-11-21T09:00:00Z' })).toMatch(/later/);
    expect(rangeError({ ...EMPTY_FILTERS, since: '2026-11-21T10:00:00Z', until: '2026-11-21T11:00:00Z' })).toBeNull();
  });
});
