import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

import { ApiError } from '../api/http';
import type { ServiceName } from '../config';
import { CHECK_TIMEOUT_MS, configReport, readiness } from './api';
import type { ServiceCheck } from './config-report';
import type { ConfigReport, ReadyOut } from './types';

function fulfilled<T>(value: T): PromiseSettledResult<T> {
  return { status: 'fulfilled', value };
}

function rejected<T>(reason: unknown): PromiseSettledResult<T> {
  return { status: 'rejected', reason };
}

export const CHECK_EVERY_MS = 5_000;

/**
 * Asks one service for its configuration report and readiness; never throws (except when
 * `signal` ends the check). A round that outlives the request timeout is cut short here too,
 * so a frozen service always shows as down.
 */
export async function checkService(service: ServiceName, previous: ServiceCheck | undefined, signal: AbortSignal): Promise<ServiceCheck> {
  const round = new AbortController();
  const stop = () => round.abort();
  signal.addEventListener('abort', stop);
  const guard = setTimeout(stop, CHECK_TIMEOUT_MS + 1_000);
  let settled: [PromiseSettledResult<ConfigReport>, PromiseSettledResult<ReadyOut>];
  try {
    settled = await Promise.all([
      configReport(service, round.signal).then(fulfilled<ConfigReport>, rejected<ConfigReport>),
      readiness(service, round.signal).then(fulfilled<ReadyOut>, rejected<ReadyOut>),
    ]);
  } finally {
    clearTimeout(guard);
    signal.removeEventListener('abort', stop);
  }
  if (signal.aborted) throw new DOMException('The check was stopped.', 'AbortError');
  const [report, ready] = settled;
  const now = Date.now();
  const next: ServiceCheck = { service, report: previous?.report, answeredAt: previous?.answeredAt, checkedAt: now };
  if (report.status === 'fulfilled') {
    next.report = report.value;
    next.answeredAt = now;
  } else {
    const error = report.reason;
    if (error instanceof ApiError && error.isDown) next.down = error.message;
    else if (round.signal.aborted) next.down = `${service} did not answer within ${CHECK_TIMEOUT_MS / 1000}s`;
    else {
      next.error = error instanceof Error ? error.message : String(error);
      next.answeredAt = now;
    }
  }
  if (ready.status === 'fulfilled') {
    const checks = Object.entries(ready.value.checks ?? {}).map(([name, detail]) => `${name}: ${detail}`);
    next.ready = { ok: true, detail: [`database: ${ready.value.database}`, ...checks].join(' · ') };
  } else if (next.down || round.signal.aborted) {
    next.ready = null;
  } else {
    const error = ready.reason;
    const detail =
      error instanceof ApiError
        ? (error.problem?.detail ?? error.message)
        : error instanceof Error
          ? error.message
          : String(error);
    next.ready = { ok: false, detail };
  }
  return next;
}

/**
 * Every service's report and readiness, checked again every few seconds, each service on its
 * own so that a frozen one does not hold the others back.
 */
export function useServiceChecks(services: readonly ServiceName[], everyMs = CHECK_EVERY_MS) {
  const [checks, setChecks] = useState<Record<string, ServiceCheck>>({});
  const latest = useRef(checks);
  latest.current = checks;
  const wake = useRef<Map<string, () => void>>(new Map());

  useEffect(() => {
    const controller = new AbortController();
    for (const service of services) {
      void (async () => {
        while (!controller.signal.aborted) {
          let result: ServiceCheck;
          try {
            result = await checkService(service, latest.current[service], controller.signal);
          } catch {
            return;
          }
          if (controller.signal.aborted) return;
          setChecks((current) => ({ ...current, [service]: result }));
          await new Promise<void>((done) => {
            const timer = setTimeout(finish, everyMs);
            function finish() {
              clearTimeout(timer);
              wake.current.delete(service);
              controller.signal.removeEventListener('abort', finish);
              done();
            }
            wake.current.set(service, finish);
            controller.signal.addEventListener('abort', finish);
          });
        }
      })();
    }
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [services.join(','), everyMs]);

  /** Checks every service now instead of waiting for the next round. */
  const checkNow = useCallback(() => {
    for (const finish of [...wake.current.values()]) finish();
  }, []);

  return { checks: services.map((service) => checks[service] ?? { service }), checkNow };
}
