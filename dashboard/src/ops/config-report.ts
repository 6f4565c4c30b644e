// How the Config view orders and summarises the services' `/config/validate` reports:
// problems first, across services and within each one.

import type { ConfigReport, KeyReport, KeyStatus } from './types';

/** What the last round of checks found for one service. */
export interface ServiceCheck {
  service: string;
  /** The newest report the service answered with (kept while it is down, marked stale). */
  report?: ConfigReport;
  /** Set while the service does not answer: why (timeout, unreachable). */
  down?: string;
  /** Set when the service answered `/config/validate` with an error status. */
  error?: string;
  /** `/health/ready`: null until known. */
  ready?: { ok: boolean; detail: string } | null;
  /** When the service last answered, ms since the epoch. */
  answeredAt?: number;
  /** When the last check finished. */
  checkedAt?: number;
}

export type ServiceHealth = 'down' | 'invalid' | 'error' | 'not-ready' | 'checking' | 'ok';

const KEY_ORDER: Record<KeyStatus, number> = {
  invalid: 0,
  missing: 1,
  defaulted: 2,
  unset: 3,
  ok: 4,
};

export const KEY_STATUSES: KeyStatus[] = ['invalid', 'missing', 'defaulted', 'unset', 'ok'];

export function isProblem(status: KeyStatus): boolean {
  return status === 'invalid' || status === 'missing';
}

/** Invalid, then missing, then defaulted, unset, ok; by name within a status. */
export function sortKeys(keys: readonly KeyReport[]): KeyReport[] {
  return [...keys].sort(
    (a, b) => (KEY_ORDER[a.status] ?? 5) - (KEY_ORDER[b.status] ?? 5) || a.key.localeCompare(b.key),
  );
}

export function countKeys(keys: readonly KeyReport[]): Record<KeyStatus, number> {
  const counts: Record<KeyStatus, number> = { invalid: 0, missing: 0, defaulted: 0, unset: 0, ok: 0 };
  for (const key of keys) if (key.status in counts) counts[key.status] += 1;
  return counts;
}

/** "2 invalid · 1 missing · 5 defaulted · 12 ok" (statuses with no keys left out). */
export function keySummary(keys: readonly KeyReport[]): string {
  const counts = countKeys(keys);
  return KEY_STATUSES.filter((status) => counts[status] > 0)
    .map((status) => `${counts[status]} ${status}`)
    .join(' · ');
}

export function reportHasProblems(report: ConfigReport): boolean {
  return !report.valid || report.problems > 0 || report.keys.some((key) => isProblem(key.status));
}

export function serviceHealth(check: ServiceCheck): ServiceHealth {
  if (check.down) return 'down';
  if (check.report && reportHasProblems(check.report)) return 'invalid';
  if (check.error) return 'error';
  if (!check.report) return 'checking';
  if (check.ready && !check.ready.ok) return 'not-ready';
  return 'ok';
}

const HEALTH_ORDER: Record<ServiceHealth, number> = {
  down: 0,
  invalid: 1,
  error: 2,
  'not-ready': 3,
  checking: 4,
  ok: 5,
};

/** Services that need attention first (down, then invalid configuration, …); otherwise the given order. */
export function sortServices<T extends ServiceCheck>(checks: readonly T[]): T[] {
  return checks
    .map((check, index) => ({ check, index }))
    .sort((a, b) => HEALTH_ORDER[serviceHealth(a.check)] - HEALTH_ORDER[serviceHealth(b.check)] || a.index - b.index)
    .map(({ check }) => check);
}

/**
 * What the value column shows. Secrets never show a value, whatever the report carries;
 * unset keys have none.
 */
export function displayValue(key: KeyReport): string | null {
  if (key.secret) return null;
  if (key.value === undefined || key.value === null) return null;
  if (typeof key.value === 'string') return key.value;
  return JSON.stringify(key.value);
}

/** One line over all services: what needs attention. */
export function overview(checks: readonly ServiceCheck[]): { tone: 'ok' | 'warn' | 'bad' | 'muted'; text: string } {
  const by = (health: ServiceHealth) => checks.filter((check) => serviceHealth(check) === health).map((c) => c.service);
  const down = by('down');
  const invalid = by('invalid');
  const failing = by('error');
  const notReady = by('not-ready');
  const checking = by('checking');
  const parts: string[] = [];
  if (down.length) parts.push(`down: ${down.join(', ')}`);
  if (invalid.length) parts.push(`invalid configuration: ${invalid.join(', ')}`);
  if (failing.length) parts.push(`report unavailable: ${failing.join(', ')}`);
  if (notReady.length) parts.push(`not ready: ${notReady.join(', ')}`);
  if (parts.length) return { tone: down.length || invalid.length ? 'bad' : 'warn', text: parts.join(' · ') };
  if (checking.length) return { tone: 'muted', text: `Checking ${checking.join(', ')}…` };
  return { tone: 'ok', text: `All ${checks.length} services answer with a valid configuration and are ready.` };
}
