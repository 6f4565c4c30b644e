import { useState } from 'preact/hooks';

import { SERVICES } from '../config';
import { useInterval, useRefetchOnReconnect } from '../hooks';
import {
  displayValue,
  isProblem,
  keySummary,
  overview,
  serviceHealth,
  sortKeys,
  sortServices,
  type ServiceCheck,
  type ServiceHealth,
} from '../ops/config-report';
import { relativeTime } from '../ops/time';
import type { KeyReport } from '../ops/types';
import { CHECK_EVERY_MS, useServiceChecks } from '../ops/useServiceChecks';
import '../ops/ops.css';

// The configuration verdict; readiness has a badge of its own.
const HEALTH_LABEL: Record<ServiceHealth, [string, string]> = {
  down: ['DOWN', 'bad'],
  invalid: ['config invalid', 'bad'],
  error: ['report unavailable', 'warn'],
  'not-ready': ['config valid', 'ok'],
  checking: ['checking…', 'muted'],
  ok: ['config valid', 'ok'],
};

const KEY_TONE: Record<string, string> = { invalid: 'bad', missing: 'bad', defaulted: 'muted', unset: 'muted', ok: 'ok' };

export function ConfigView() {
  const { checks, checkNow } = useServiceChecks(SERVICES);
  const [now, setNow] = useState(Date.now());
  const [hideOk, setHideOk] = useState(false);
  const [descriptions, setDescriptions] = useState(false);
  useInterval(() => setNow(Date.now()), 1000);
  useRefetchOnReconnect(checkNow);

  const sorted = sortServices(checks);
  const summary = overview(checks);

  return (
    <div class="ops">
      <header class="ops-head">
        <h1>Configuration</h1>
        <p class="muted">
          Every service's <code>/config/validate</code> report and <code>/health/ready</code> verdict, checked every{' '}
          {CHECK_EVERY_MS / 1000} s. Services that need attention come first. Secret values are never shown.
        </p>
      </header>
      <div class={`notice ${summary.tone === 'ok' ? 'notice-ok' : summary.tone === 'muted' ? '' : summary.tone === 'bad' ? 'notice-error' : 'notice-down'}`} role="status" aria-live="polite" data-testid="config-overview">
        {summary.text}
      </div>
      <div class="ops-toolbar">
        <label class="inline">
          <input type="checkbox" checked={hideOk} onChange={(e) => setHideOk(e.currentTarget.checked)} /> Hide ok keys
        </label>
        <label class="inline">
          <input type="checkbox" checked={descriptions} onChange={(e) => setDescriptions(e.currentTarget.checked)} /> Show descriptions
        </label>
        <button type="button" onClick={checkNow}>
          Check now
        </button>
      </div>
      <div class="config-grid" data-testid="config-services">
        {sorted.map((check) => (
          <ServiceCard key={check.service} check={check} now={now} hideOk={hideOk} descriptions={descriptions} />
        ))}
      </div>
    </div>
  );
}

function ServiceCard({ check, now, hideOk, descriptions }: { check: ServiceCheck; now: number; hideOk: boolean; descriptions: boolean }) {
  const health = serviceHealth(check);
  const [label, tone] = HEALTH_LABEL[health];
  const report = check.report;
  const keys = report ? sortKeys(report.keys) : [];
  const shown = hideOk ? keys.filter((key) => key.status !== 'ok') : keys;
  const headingId = `config-${check.service}`;
  return (
    <section
      class={`panel config-card config-${health}`}
      aria-labelledby={headingId}
      data-service={check.service}
      data-health={health}
    >
      <header class="config-card-head">
        <h2 id={headingId}>{check.service}</h2>
        <span class={`badge badge-${tone}`} data-testid="service-health">
          {label}
        </span>
        {check.ready !== undefined && check.ready !== null && (
          <span class={`badge badge-${check.ready.ok ? 'ok' : 'warn'}`} title={check.ready.detail}>
            {check.ready.ok ? 'ready' : 'not ready'}
          </span>
        )}
      </header>
      {check.checkedAt && <p class="muted small">checked {relativeTime(new Date(check.checkedAt).toISOString(), now)}</p>}

      {check.down && (
        <div class="notice notice-down" role="alert">
          <strong>Down.</strong> {check.down}.{' '}
          {check.answeredAt
            ? `It last answered ${relativeTime(new Date(check.answeredAt).toISOString(), now)}.`
            : 'It has not answered since this page opened.'}{' '}
          Checking again every {CHECK_EVERY_MS / 1000} s.
        </div>
      )}
      {check.error && !check.down && (
        <div class="notice notice-error" role="alert">
          {check.error}
        </div>
      )}
      {check.ready && !check.ready.ok && !check.down && (
        <p class="config-ready">
          <strong>Not ready:</strong> {check.ready.detail}
        </p>
      )}
      {check.ready?.ok && <p class="muted small">Ready: {check.ready.detail}</p>}

      {!report && !check.down && !check.error && <p class="loading" role="status"><span class="spinner" aria-hidden="true" /> Asking {check.service}…</p>}

      {report && check.down && (
        <details>
          <summary>Last report before it stopped answering</summary>
          <KeyTable keys={shown} descriptions={descriptions} service={check.service} />
        </details>
      )}
      {report && !check.down && (
        <>
          <p class="config-summary">
            {report.valid ? 'Valid' : <strong class="text-bad">Invalid: the service would not start with this</strong>} · {keySummary(report.keys)}
          </p>
          {shown.length ? (
            <KeyTable keys={shown} descriptions={descriptions} service={check.service} />
          ) : (
            <p class="muted">Every key is ok.</p>
          )}
        </>
      )}
    </section>
  );
}

function KeyTable({ keys, descriptions, service }: { keys: KeyReport[]; descriptions: boolean; service: string }) {
  return (
    <table class="config-keys" aria-label={`${service} configuration keys`}>
      <thead>
        <tr>
          <th scope="col">Key</th>
          <th scope="col">Status</th>
          <th scope="col">Value / reason</th>
        </tr>
      </thead>
      <tbody>
        {keys.map((key) => (
          <KeyRow key={key.key} item={key} descriptions={descriptions} />
        ))}
      </tbody>
    </table>
  );
}

function KeyRow({ item, descriptions }: { item: KeyReport; descriptions: boolean }) {
  const value = displayValue(item);
  return (
    <tr class={isProblem(item.status) ? 'config-problem' : undefined} data-key={item.key}>
      <th scope="row" class="config-key" title={item.description}>
        <code>{breakable(item.key)}</code>
        {item.required && <span class="muted small"> required</span>}
        {descriptions && item.description && <span class="config-desc">{item.description}</span>}
      </th>
      <td>
        <span class={`badge badge-${KEY_TONE[item.status] ?? 'muted'}`}>{item.status}</span>
      </td>
      <td class="config-value">
        {item.reason && <span class={isProblem(item.status) ? 'text-bad' : undefined}>{item.reason}</span>}
        {item.reason && (value !== null || item.secret) && <br />}
        {item.secret ? (
          item.status === 'ok' || item.status === 'defaulted' ? <span class="muted">secret, set (hidden)</span> : item.status === 'unset' ? <span class="muted">secret, not set</span> : null
        ) : value !== null ? (
          <code>{value}</code>
        ) : (
          !item.reason && <span class="muted">—</span>
        )}
      </td>
    </tr>
  );
}

/** Long variable names wrap after an underscore rather than mid-word. */
function breakable(key: string) {
  const parts = key.split('_');
  return parts.map((part, index) => (index < parts.length - 1 ? [part, '_', <wbr key={index} />] : part));
}
