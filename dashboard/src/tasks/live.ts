// Folding live frames and refetched lists together without going backwards.

import type { Task } from './types';

/** The later of two states of a task (by version); a different task replaces the old one. */
export function newerTask(current: Task | null, incoming: Task | null): Task | null {
  if (!incoming) return current;
  if (!current || current.id !== incoming.id) return incoming;
  return incoming.version >= current.version ? incoming : current;
}

/** The union of two lists of records with numeric ids, in id order, no duplicates; an incoming
 * record replaces the one with its id. The same list comes back when nothing changes. */
export function mergeById<T extends { id: number }>(
  current: T[],
  incoming: T[],
  order: (a: T, b: T) => number = (a, b) => a.id - b.id,
): T[] {
  if (incoming.every((item) => current.includes(item))) return current;
  const byId = new Map<number, T>();
  for (const item of current) byId.set(item.id, item);
  for (const item of incoming) byId.set(item.id, item);
  return [...byId.values()].sort(order);
}

/** Log records of one trace in the order things happened (services deliver in batches). */
export function byTime(a: { id: number; ts: string }, b: { id: number; ts: string }): number {
  const at = Date.parse(a.ts);
  const bt = Date.parse(b.ts);
  if (at !== bt && !Number.isNaN(at) && !Number.isNaN(bt)) return at - bt;
  return a.id - b.id;
}
