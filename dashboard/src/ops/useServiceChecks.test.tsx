import { cleanup, render, screen, waitFor } from '@testing-library/preact';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { ApiError } from '../api/http';
import type { ConfigReport, ReadyOut } from './types';

const api = vi.hoisted(() => ({
  configReport: vi.fn<(service: string, signal?: AbortSignal) => Promise<ConfigReport>>(),
  readiness: vi.fn<(service: string, signal?: AbortSignal) => Promise<ReadyOut>>(),
}));

vi.mock('./api', () => ({ CHECK_TIMEOUT_MS: 4_000, configReport: api.configReport, readiness: api.readiness }));

const { checkService } = await import('./useServiceChecks');
const { ConfigView } = await import('../views/config');

function report(service: string): ConfigReport {
  return {
    service,
    valid: true,
    problems: 0,
    keys: [{ key: 'PORT', status: 'ok', value: 7100, secret: false, required: false, description: '' }],
  };
}

const READY: ReadyOut = { status: 'ready', database: 'ok' };

beforeEach(() => {
  api.configReport.mockReset();
  api.readiness.mockReset();
});

afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

describe('checkService', () => {
  it('keeps the report and readiness of a service that answers', async () => {
    api.configReport.mockResolvedValue(report('logging'));
    api.readiness.mockResolvedValue({ status: 'ready', database: 'ok', checks: { bus: 'ok' } });
    const check = await checkService('logging', undefined, new AbortController().signal);
    expect(check.down).toBeUndefined();
    expect(check.report?.service).toBe('logging');
    expect(check.ready).toEqual({ ok: true, detail: 'database: ok · bus: ok' });
  });

  it('marks a service that does not answer as down and keeps its last report', async () => {
    const timeout = new ApiError('renderctl', 'timeout', 0, null, 'renderctl did not answer within 4s');
    api.configReport.mockRejectedValue(timeout);
    api.readiness.mockRejectedValue(timeout);
    const previous = { service: 'renderctl', report: report('renderctl'), answeredAt: 1 };
    const check = await checkService('renderctl', previous, new AbortController().signal);
    expect(check.down).toBe('renderctl did not answer within 4s');
    expect(check.report).toBe(previous.report);
    expect(check.answeredAt).toBe(1);
    expect(check.ready).toBeNull();
  });

  it('gives the reason a service is not ready', async () => {
    api.configReport.mockResolvedValue(report('sandbox'));
    api.readiness.mockRejectedValue(
      new ApiError('sandbox', 'http', 503, { detail: 'The container engine is unavailable' }, 'sandbox: The container engine is unavailable'),
    );
    const check = await checkService('sandbox', undefined, new AbortController().signal);
    expect(check.ready).toEqual({ ok: false, detail: 'The container engine is unavailable' });
  });

  it('ends a round that hangs past the timeout with the service down', async () => {
    vi.useFakeTimers();
    const hang = (_service: string, signal?: AbortSignal) =>
      new Promise<never>((_, reject) => signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
    api.configReport.mockImplementation(hang);
    api.readiness.mockImplementation(hang);
    const pending = checkService('renderctl', undefined, new AbortController().signal);
    await vi.advanceTimersByTimeAsync(5_500);
    const check = await pending;
    expect(check.down).toBe('renderctl did not answer within 4s');
  });
});

describe('ConfigView', () => {
  it('shows a service that does not answer as down, first', async () => {
    api.configReport.mockImplementation((service) =>
      service === 'renderctl'
        ? Promise.reject(new ApiError('renderctl', 'unreachable', 0, null, 'renderctl is unreachable (http://127.0.0.1:7103)'))
        : Promise.resolve(report(service)),
    );
    api.readiness.mockImplementation((service) =>
      service === 'renderctl' ? Promise.reject(new ApiError('renderctl', 'unreachable', 0, null, 'x')) : Promise.resolve(READY),
    );
    const { container } = render(<ConfigView />);
    await waitFor(() => expect(container.querySelector('[data-service="renderctl"]')?.getAttribute('data-health')).toBe('down'));
    const order = [...container.querySelectorAll('[data-service]')].map((el) => el.getAttribute('data-service'));
    expect(order[0]).toBe('renderctl');
    expect(order).toHaveLength(6);
    expect(screen.getByTestId('config-overview').textContent).toBe('down: renderctl');
  });
});
