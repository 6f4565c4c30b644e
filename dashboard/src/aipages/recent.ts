// Pages this browser has opened, newest first. The gateway has no way to list pages, so the
// list of pages is what the operator has opened here (ids only, never tokens).

import { ID_PATTERN } from './model';

export interface RecentPage {
  page: string;
  /** Epoch milliseconds of the last opening. */
  openedAt: number;
}

const KEY = 'autonoma.aiPages.recent';
export const MAX_RECENT = 20;

type Store = Pick<Storage, 'getItem' | 'setItem'>;

function store(): Store | null {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    // Storage can be switched off; the list is then empty.
    return null;
  }
}

export function readRecent(storage: Store | null = store()): RecentPage[] {
  try {
    const parsed: unknown = JSON.parse(storage?.getItem(KEY) ?? '[]');
    if (!Array.isArray(parsed)) return [];
    return parsed
      .filter(
        (item): item is RecentPage =>
          typeof item === 'object' && item !== null && typeof item.page === 'string' && ID_PATTERN.test(item.page) && typeof item.openedAt === 'number',
      )
      .sort((a, b) => b.openedAt - a.openedAt)
      .slice(0, MAX_RECENT);
  } catch {
    return [];
  }
}

function write(list: RecentPage[], storage: Store | null): RecentPage[] {
  try {
    storage?.setItem(KEY, JSON.stringify(list));
  } catch {
    // Full or switched off: the list just is not kept.
  }
  return list;
}

export function rememberPage(page: string, at = Date.now(), storage: Store | null = store()): RecentPage[] {
  if (!ID_PATTERN.test(page)) return readRecent(storage);
  const rest = readRecent(storage).filter((item) => item.page !== page);
  return write([{ page, openedAt: at }, ...rest].slice(0, MAX_RECENT), storage);
}

export function forgetPage(page: string, storage: Store | null = store()): RecentPage[] {
  return write(
    readRecent(storage).filter((item) => item.page !== page),
    storage,
  );
}

/** Why `raw` is not a page id, or null. */
export function pageIdProblem(raw: string): string | null {
  if (!raw) return 'Enter the page id.';
  if (raw.length > 64) return 'A page id has at most 64 characters.';
  if (!ID_PATTERN.test(raw)) return 'A page id has lowercase letters, digits, "_" and "-", and starts with a letter or digit.';
  return null;
}
