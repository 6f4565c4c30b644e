import { describe, expect, it } from 'vitest';

import { byTime, mergeById, newerTask } from './live';
import type { Task } from './types';

const base = { id: 't1', version: 2, status: 'running' } as Task;

describe('newerTask', () => {
  it('keeps the later version and takes a different task as is', () => {
    expect(newerTask(base, { ...base, version: 3 })?.version).toBe(3);
    expect(newerTask(base, { ...base, version: 1 })).toBe(base);
    expect(newerTask(null, base)).toBe(base);
    expect(newerTask(base, null)).toBe(base);
    expect(newerTask(base, { ...base, id: 't2', version: 1 })?.id).toBe('t2');
  });
});

describe('mergeById', () => {
  it('adds new records in id order without duplicates', () => {
    const a = { id: 1 };
    const b = { id: 2 };
    const c = { id: 3 };
    expect(mergeById([a, c], [b, c])).toEqual([a, b, c]);
  });

  it('returns the same list when nothing is new', () => {
    const list = [{ id: 1 }, { id: 2 }];
    expect(mergeById(list, [list[1]])).toBe(list);
    expect(mergeById(list, [])).toBe(list);
  });

  it('orders log records by when they happened, then by id', () => {
    const logs = mergeById(
      [{ id: 5, ts: '2026-11-21T10:00:02Z' }],
      [
        { id: 6, ts: '2026-11-21T10:00:01Z' },
        { id: 4, ts: '2026-11-21T10:00:02Z' },
      ],
      byTime,
    );
    expect(logs.map((l) => l.id)).toEqual([6, 4, 5]);
  });
});
