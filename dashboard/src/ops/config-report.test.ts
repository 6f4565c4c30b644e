import { describe, expect, it } from 'vitest';

import { displayValue, keySummary, overview, serviceHealth, sortKeys, sortServices, type ServiceCheck } from './config-report';
import type { ConfigReport, KeyReport, KeyStatus } from './types';

function key(name: string, status: KeyStatus, extra: Partial<KeyReport> = {}): KeyReport {
  return { key: name, status, secret: false, required: false, description: '', ...extra };
}

function report(service: string, keys: KeyReport[]): ConfigReport {
  const problems = keys.filter((k) => k.status === 'invalid' || k.status === 'missing').length;
  return { service, valid: problems === 0, problems, keys };
}

describe('sortKeys', () => {
  it('puts invalid and missing keys first, then defaulted, unset, ok; by name within a status', () => {
    const keys = [
      key('A_OK', 'ok'),
      key('B_DEFAULTED', 'defaulted'),
      key('Z_MISSING', 'missing'),
      key('C_UNSET', 'unset'),
      key('Y_INVALID', 'invalid'),
      key('A_DEFAULTED', 'defaulted'),
      key('A_MISSING', 'missing'),
    ];
    expect(sortKeys(keys).map((k) => k.key)).toEqual([
      'Y_INVALID',
      'A_MISSING',
      'Z_MISSING',
      'A_DEFAULTED',
      'B_DEFAULTED',
      'C_UNSET',
      'A_OK',
    ]);
  });

  it('does not reorder the report it was given', () => {
    const keys = [key('B', 'ok'), key('A', 'invalid')];
    sortKeys(keys);
    expect(keys.map((k) => k.key)).toEqual(['B', 'A']);
  });
});

describe('keySummary', () => {
  it('counts keys by status, problems first, leaving out statuses with none', () => {
    expect(keySummary([key('A', 'ok'), key('B', 'ok'), key('C', 'missing'), key('D', 'defaulted')])).toBe('1 missing · 1 defaulted · 2 ok');
  });
});

describe('serviceHealth and sortServices', () => {
  const healthy: ServiceCheck = { service: 'orchestrator', report: report('orchestrator', [key('A', 'ok')]), ready: { ok: true, detail: '' } };
  const notReady: ServiceCheck = { service: 'sandbox', report: report('sandbox', [key('A', 'ok')]), ready: { ok: false, detail: 'no engine' } };
  const invalid: ServiceCheck = { service: 'logging', report: report('logging', [key('PORT', 'invalid', { reason: 'not a port' })]) };
  const down: ServiceCheck = { service: 'renderctl', report: healthy.report, down: 'renderctl did not answer within 4s' };
  const checking: ServiceCheck = { service: 'queue-gateway' };

  it('judges a service by what the last check found', () => {
    expect(serviceHealth(healthy)).toBe('ok');
    expect(serviceHealth(notReady)).toBe('not-ready');
    expect(serviceHealth(invalid)).toBe('invalid');
    expect(serviceHealth(down)).toBe('down');
    expect(serviceHealth(checking)).toBe('checking');
    expect(serviceHealth({ service: 'x', error: 'HTTP 500' })).toBe('error');
  });

  it('a down service is down even though its last report was fine', () => {
    expect(serviceHealth({ ...healthy, down: 'unreachable' })).toBe('down');
  });

  it('orders down, invalid, not ready, then the rest in the given order', () => {
    const order = sortServices([healthy, checking, notReady, down, invalid]).map((c) => c.service);
    expect(order).toEqual(['renderctl', 'logging', 'sandbox', 'queue-gateway', 'orchestrator']);
  });

  it('keeps the given order among services in the same state', () => {
    const a = { ...healthy, service: 'a' };
    const b = { ...healthy, service: 'b' };
    const c = { ...healthy, service: 'c' };
    expect(sortServices([b, c, a]).map((x) => x.service)).toEqual(['b', 'c', 'a']);
    expect(sortServices([b, { ...c, down: 'x' }, a]).map((x) => x.service)).toEqual(['c', 'b', 'a']);
  });

  it('summarises what needs attention', () => {
    expect(overview([healthy, down, notReady]).text).toBe('down: renderctl · not ready: sandbox');
    expect(overview([healthy, down]).tone).toBe('bad');
    expect(overview([healthy, notReady]).tone).toBe('warn');
    expect(overview([healthy]).tone).toBe('ok');
  });
});

describe('displayValue', () => {
  it('never shows a value for a secret key, even when the report carries one', () => {
    expect(displayValue(key('BASIC_AUTH_PASS', 'ok', { secret: true, value: 'hunter22' }))).toBeNull();
  });

  it('shows strings as they are and other values as JSON', () => {
    expect(displayValue(key('HOST', 'ok', { value: '127.0.0.1' }))).toBe('127.0.0.1');
    expect(displayValue(key('PORT', 'ok', { value: 7100 }))).toBe('7100');
    expect(displayValue(key('ORIGINS', 'ok', { value: ['a', 'b'] }))).toBe('["a","b"]');
    expect(displayValue(key('UNSET', 'unset'))).toBeNull();
  });
});
