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
export function mergeById<T extends { id: number }>(current: T[], incoming: T[]): T[] {
  if (incoming.every((item) => current.includes(item))) return current;
  const byId = new Map<number, T>();
  for (const item of current) byId.set(item.id, item);
  for (const item of incoming) byId.set(item.id, item);
  return [...byId.values()].sort((a, b) => a.id - b.id);
}
