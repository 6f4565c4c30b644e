import { describe, expect, it } from 'vitest';

import { buildPatch, buildTaskBody, describeConflict, EMPTY_OPTIONS, EMPTY_PATCH, parseInteger } from './options';

describe('buildTaskBody', () => {
  it('sends only the options filled in, converted', () => {
    const { body, errors } = buildTaskBody('echo', { message: 'hi' }, {
      ...EMPTY_OPTIONS,
      correlationId: ' order-1 ',
      priority: '5',
      maxAttempts: '2',
      runAt: '2026-11-21T10:30',
    });
    expect(errors).toEqual({});
    expect(body).toEqual({
      kind: 'echo',
      payload: { message: 'hi' },
      correlationId: 'order-1',
      priority: 5,
      maxAttempts: 2,
      runAt: new Date('2026-11-21T10:30').toISOString(),
    });
  });

  it('checks the ranges the orchestrator enforces', () => {
    const { errors } = buildTaskBody('', {}, {
      ...EMPTY_OPTIONS,
      correlationId: 'x'.repeat(201),
      priority: '101',
      maxAttempts: '0',
      timeoutSecs: '1.5',
    });
    expect(errors).toEqual({
      kind: 'choose a kind',
      correlationId: 'at most 200 characters',
      priority: 'between -100 and 100',
      maxAttempts: 'between 1 and 100',
      timeoutSecs: 'must be a whole number',
    });
  });

  it('reads integers strictly', () => {
    expect(parseInteger('', 0, 1)).toEqual({});
    expect(parseInteger('-100', -100, 100)).toEqual({ value: -100 });
    expect(parseInteger('7e1', 0, 100).error).toBe('must be a whole number');
  });
});

describe('buildPatch', () => {
  it('always carries the version the change is based on', () => {
    const { body, errors } = buildPatch({ ...EMPTY_PATCH, status: 'cancelled', priority: '3', note: ' by hand ' }, 4);
    expect(errors).toEqual({});
    expect(body).toEqual({ ifVersion: 4, status: 'cancelled', priority: 3, note: 'by hand' });
  });

  it('parses result and error as JSON', () => {
    expect(buildPatch({ ...EMPTY_PATCH, result: '{"ok":true}', error: 'null' }, 1).body).toEqual({
      ifVersion: 1,
      result: { ok: true },
      error: null,
    });
    expect(buildPatch({ ...EMPTY_PATCH, result: '{oops' }, 1).errors.result).toMatch(/^not valid JSON/);
  });

  it('refuses a patch that changes nothing (a note alone included)', () => {
    expect(buildPatch(EMPTY_PATCH, 1).errors['/']).toMatch(/at least one/);
    expect(buildPatch({ ...EMPTY_PATCH, note: 'just a note' }, 1).errors['/']).toMatch(/at least one/);
  });
});

describe('describeConflict', () => {
  it('recognises a stale version with the current version and status', () => {
    expect(
      describeConflict({
        type: 'urn:autonoma:problem:version-conflict',
        status: 409,
        detail: 'The task is at version 3, not 1; read it again and reapply the change.',
        currentVersion: 3,
        currentStatus: 'succeeded',
      }),
    ).toEqual({
      kind: 'version',
      message: 'The task is at version 3, not 1; read it again and reapply the change.',
      currentVersion: 3,
      currentStatus: 'succeeded',
    });
  });

  it('recognises an illegal transition and names it', () => {
    expect(
      describeConflict({
        type: 'urn:autonoma:problem:illegal-transition',
        status: 409,
        detail: 'A task cannot go from succeeded to running.',
        transition: 'succeeded -> running',
        from: 'succeeded',
        to: 'running',
      }),
    ).toEqual({ kind: 'transition', message: 'A task cannot go from succeeded to running.', from: 'succeeded', to: 'running' });
  });

  it('keeps any other conflict as it came', () => {
    expect(describeConflict({ status: 409, title: 'Conflict' })).toEqual({ kind: 'other', message: 'Conflict' });
    expect(describeConflict(null).kind).toBe('other');
  });
});
