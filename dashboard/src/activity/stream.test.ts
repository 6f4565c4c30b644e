import { describe, expect, it } from 'vitest';

import { type Filter, logEntry, matches, merge, taskEntry } from './stream';

const task = (id: string, version: number, at: string, status = 'running') =>
  taskEntry({ id, kind: 'echo', status, version, updatedAt: at });

const all: Filter = { show: 'all', text: '', level: '' };

describe('merge', () => {
  it('keeps the newest first and each update once', () => {
    const first = merge([], [task('a', 1, '2026-01-01T00:00:01Z'), task('b', 1, '2026-01-01T00:00:03Z')]);
    const again = merge(first, [task('a', 1, '2026-01-01T00:00:01Z'), task('a', 2, '2026-01-01T00:00:05Z')]);
    expect(again.map((e) => e.key)).toEqual(['task:a:2', 'task:b:1', 'task:a:1']);
  });

  it('is bounded', () => {
    const many = Array.from({ length: 20 }, (_, i) => task(`t${i}`, 1, `2026-01-01T00:00:${String(i).padStart(2, '0')}Z`));
    const merged = merge([], many, 5);
    expect(merged).toHaveLength(5);
    expect(merged[0].key).toBe('task:t19:1');
  });

  it('returns the same list when nothing is new', () => {
    const entries = merge([], [task('a', 1, '2026-01-01T00:00:01Z')]);
    expect(merge(entries, [task('a', 1, '2026-01-01T00:00:01Z')])).toBe(entries);
  });
});

describe('matches', () => {
  const log = logEntry({ id: 7, ts: '2026-01-01T00:00:00Z', level: 'warn', service: 'echo-agent', message: 'slow answer' });
  const debug = logEntry({ id: 8, ts: '2026-01-01T00:00:00Z', level: 'debug', service: 'logging', message: 'flushed' });

  it('filters by type', () => {
    expect(matches(log, { ...all, show: 'task' })).toBe(false);
    expect(matches(log, { ...all, show: 'log' })).toBe(true);
  });

  it('filters logs by minimum level', () => {
    expect(matches(log, { ...all, level: 'warn' })).toBe(true);
    expect(matches(debug, { ...all, level: 'info' })).toBe(false);
  });

  it('filters by text in the fields a person reads', () => {
    expect(matches(log, { ...all, text: 'ECHO' })).toBe(true);
    expect(matches(task('x', 1, '', 'failed'), { ...all, text: 'fail' })).toBe(true);
    expect(matches(task('x', 1, '', 'succeeded'), { ...all, text: 'fail' })).toBe(false);
  });
});
