import { describe, expect, it } from 'vitest';

import { MAX_RECENT, forgetPage, pageIdProblem, readRecent, rememberPage } from './recent';

function memoryStorage() {
  const items = new Map<string, string>();
  return {
    getItem: (key: string) => items.get(key) ?? null,
    setItem: (key: string, value: string) => void items.set(key, value),
  };
}

describe('recent pages', () => {
  it('keeps the newest opening first, once per page, up to a limit', () => {
    const storage = memoryStorage();
    rememberPage('a', 1, storage);
    rememberPage('b', 2, storage);
    rememberPage('a', 3, storage);
    expect(readRecent(storage)).toEqual([
      { page: 'a', openedAt: 3 },
      { page: 'b', openedAt: 2 },
    ]);
    for (let i = 0; i < MAX_RECENT + 5; i++) rememberPage(`p${i}`, 10 + i, storage);
    expect(readRecent(storage)).toHaveLength(MAX_RECENT);
    expect(forgetPage('p24', storage).map((r) => r.page)).not.toContain('p24');
  });

  it('ignores what is not a page id and survives a broken store', () => {
    const storage = memoryStorage();
    rememberPage('Not A Page', 1, storage);
    expect(readRecent(storage)).toEqual([]);
    storage.setItem('autonoma.aiPages.recent', '{not json');
    expect(readRecent(storage)).toEqual([]);
    expect(readRecent(null)).toEqual([]);
  });

  it('explains what is wrong with a page id', () => {
    expect(pageIdProblem('')).toBe('Enter the page id.');
    expect(pageIdProblem('Sales')).toMatch(/lowercase/);
    expect(pageIdProblem('a'.repeat(65))).toMatch(/at most 64/);
    expect(pageIdProblem('sales-2026_q1')).toBeNull();
  });
});
