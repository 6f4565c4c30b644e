import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

import { ApiError } from '../api/http';
import type { ServiceName } from '../config';
import { configReport, readiness } from './api';
import type { ServiceCheck } from './config-report';

export const CHECK_EVERY_MS = 5_000;

/** Asks one service for its configuration report and readiness; never throws. */
export async function checkService(service: ServiceName, previous: ServiceCheck | undefined, signal: AbortSignal): Promise<ServiceCheck> {
  const [report, ready] = await Promise.allSettled([configReport(service, signal), readiness(service, signal)]);
  const now = Date.now();
  const next: ServiceCheck = { service, report: previous?.report, answeredAt: previous?.answeredAt, checkedAt: now };
  if (report.status === 'fulfilled') {
    next.report = report.value;
    next.answeredAt = now;
  } else {
    const error = report.reason;
    if (error instanceof ApiError && error.isDown) next.down = error.message;
    else {
      next.error = error instanceof Error ? error.message : String(error);
      next.answeredAt = now;
    }
  }
  if (ready.status === 'fulfilled') {
    const checks = Object.entries(ready.value.checks ?? {}).map(([name, detail]) => `${name}: ${detail}`);
    next.ready = { ok: true, detail: [`database: ${ready.value.database}`, ...checks].join(' · ') };
  } else if (next.down) {
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
          const result = await checkService(service, latest.current[service], controller.signal);
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
