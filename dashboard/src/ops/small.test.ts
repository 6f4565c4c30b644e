import { describe, expect, it } from 'vitest';

import { ApiError } from '../api/http';
import { agentLiveness, livenessSummary } from './agents';
import { deployTone, isTokenMissing } from './render';
import { formatBytes, relativeTime } from './time';
import type { Agent } from './types';

const NOW = Date.parse('2026-01-01T12:00:00Z');

describe('relativeTime', () => {
  it('reads seconds, minutes, hours and days', () => {
    expect(relativeTime('2026-01-01T11:59:48Z', NOW)).toBe('12 s ago');
    expect(relativeTime('2026-01-01T11:57:00Z', NOW)).toBe('3 min ago');
    expect(relativeTime('2026-01-01T09:00:00Z', NOW)).toBe('3 h ago');
    expect(relativeTime('2025-12-28T12:00:00Z', NOW)).toBe('4 d ago');
  });

  it('treats a small skew into the future as now, and says never for nothing', () => {
    expect(relativeTime('2026-01-01T12:00:03Z', NOW)).toBe('just now');
    expect(relativeTime('2026-01-01T12:01:00Z', NOW)).toBe('in 1 min');
    expect(relativeTime(null, NOW)).toBe('never');
  });
});

describe('formatBytes', () => {
  it('uses binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(300 * 1024 * 1024)).toBe('300 MiB');
    expect(formatBytes(undefined)).toBe('—');
  });
});

function agent(extra: Partial<Agent>): Agent {
  return {
    name: 'echo-agent',
    transport: 'http',
    baseUrl: 'http://x',
    queueUrl: null,
    kinds: [],
    registeredAt: '2026-01-01T00:00:00Z',
    lastHeartbeat: '2026-01-01T00:00:00Z',
    heartbeatStatus: 'ok',
    live: true,
    ...extra,
  };
}

describe('agentLiveness', () => {
  it('follows the orchestrator’s verdict and the heartbeat’s status', () => {
    expect(agentLiveness(agent({})).label).toBe('live');
    expect(agentLiveness(agent({ live: false })).label).toBe('dead');
    expect(agentLiveness(agent({ live: false, lastHeartbeat: null })).label).toBe('no heartbeat');
    expect(agentLiveness(agent({ heartbeatStatus: 'draining' }))).toMatchObject({ label: 'live · draining', tone: 'warn' });
  });

  it('counts the live ones', () => {
    expect(livenessSummary([agent({}), agent({ live: false })])).toBe('1 of 2 agents live');
  });
});

describe('render helpers', () => {
  it('recognises renderctl without a Render token', () => {
    const missing = new ApiError('renderctl', 'http', 503, { type: 'urn:autonoma:problem:render-token-missing' }, 'x');
    const limited = new ApiError('renderctl', 'http', 503, { type: 'urn:autonoma:problem:render-rate-limited' }, 'x');
    expect(isTokenMissing(missing)).toBe(true);
    expect(isTokenMissing(limited)).toBe(false);
    expect(isTokenMissing(new Error('x'))).toBe(false);
  });

  it('colours deploys by outcome', () => {
    expect(deployTone('live')).toBe('ok');
    expect(deployTone('build_failed')).toBe('bad');
    expect(deployTone('build_in_progress')).toBe('info');
    expect(deployTone(undefined)).toBe('muted');
  });
});
