import { describe, expect, it } from 'vitest';

import { ApiError } from '../api/http';
import {
  isNoEngine,
  isSessionStatus,
  logsSocketUrl,
  parseSessionId,
  parseSessionListState,
  previewMayPrompt,
  previewSandbox,
  sessionListHref,
  sortEntries,
  withAuth,
} from './sandbox';

const ID = '0b7c6a2e-1f6d-4c43-9d0a-5b8f7e6d5c4b';

describe('isNoEngine', () => {
  it('recognises the sandbox saying its container engine is unavailable', () => {
    const ready = new ApiError('sandbox', 'http', 503, { type: 'urn:autonoma:problem:dependency-unavailable', dependency: 'container engine', detail: 'x' }, 'x');
    const create = new ApiError('sandbox', 'http', 503, { type: 'urn:autonoma:problem:engine-unreachable' }, 'x');
    expect(isNoEngine(ready)).toBe(true);
    expect(isNoEngine(create)).toBe(true);
  });

  it('does not mistake other failures for it', () => {
    expect(isNoEngine(new ApiError('sandbox', 'http', 503, { type: 'urn:autonoma:problem:database-unreachable' }, 'x'))).toBe(false);
    expect(isNoEngine(new ApiError('sandbox', 'timeout', 0, null, 'x'))).toBe(false);
    expect(isNoEngine(new Error('container engine'))).toBe(false);
  });
});

describe('URLs', () => {
  it('adds the credentials as ?auth= and keeps the rest', () => {
    expect(withAuth('http://127.0.0.1:7104/api/sessions/x/preview/proxy/?a=1', 'b3A6cA==')).toBe(
      'http://127.0.0.1:7104/api/sessions/x/preview/proxy/?a=1&auth=b3A6cA%3D%3D',
    );
  });

  it('opens the log WebSocket on the same host, wss for https', () => {
    expect(logsSocketUrl('http://127.0.0.1:7104', ID, 'abc')).toBe(`ws://127.0.0.1:7104/api/sessions/${ID}/logs?auth=abc`);
    expect(logsSocketUrl('https://sandbox.example.com', ID, 'abc', 42)).toBe(`wss://sandbox.example.com/api/sessions/${ID}/logs?after=42&auth=abc`);
  });
});

describe('previewSandbox', () => {
  it('lets a preview on its own origin keep it', () => {
    expect(previewSandbox('http://127.0.0.1:7104/p/', 'http://127.0.0.1:5173').split(' ')).toContain('allow-same-origin');
  });

  it('never gives a preview the dashboard’s origin', () => {
    const attrs = previewSandbox('https://dash.example.com/api/sessions/x/preview/proxy/', 'https://dash.example.com');
    expect(attrs.split(' ')).not.toContain('allow-same-origin');
    expect(attrs.split(' ')).toContain('allow-scripts');
    expect(previewSandbox('not a url', 'https://dash.example.com')).not.toContain('allow-same-origin');
  });
});

describe('sortEntries', () => {
  it('lists directories first, then by name', () => {
    const sorted = sortEntries([
      { name: 'b.txt', path: 'b.txt', type: 'file', size: 1 },
      { name: 'src', path: 'src', type: 'dir', size: 0 },
      { name: 'a.txt', path: 'a.txt', type: 'file', size: 1 },
      { name: 'lib', path: 'lib', type: 'dir', size: 0 },
    ]);
    expect(sorted.map((e) => e.name)).toEqual(['lib', 'src', 'a.txt', 'b.txt']);
  });
});

describe('parseSessionId', () => {
  it('accepts a UUID alone or inside a URL', () => {
    expect(parseSessionId(`  ${ID.toUpperCase()} `)).toBe(ID);
    expect(parseSessionId(`http://x/sandboxes/${ID}?a=b`)).toBe(ID);
  });

  it('refuses anything else', () => {
    expect(parseSessionId('session-1')).toBeNull();
    expect(parseSessionId('')).toBeNull();
  });
});

describe('session list state', () => {
  it('reads the status filter and the cursor trail from the address', () => {
    expect(parseSessionListState({ status: 'failed', cursor: 'c2Vzc2lvbjox,c2Vzc2lvbjoy' })).toEqual({
      status: 'failed',
      trail: ['c2Vzc2lvbjox', 'c2Vzc2lvbjoy'],
    });
    expect(parseSessionListState({})).toEqual({ status: null, trail: [] });
  });

  it('drops a status the sandbox does not have, and empty cursors', () => {
    expect(parseSessionListState({ status: 'running', cursor: ',,a,' })).toEqual({ status: null, trail: ['a'] });
    expect(isSessionStatus('deleted')).toBe(true);
    expect(isSessionStatus('READY')).toBe(false);
    expect(isSessionStatus(undefined)).toBe(false);
  });

  it('writes the address back, and round-trips', () => {
    expect(sessionListHref({ status: null, trail: [] })).toBe('/sandboxes');
    expect(sessionListHref({ status: 'ready', trail: [] })).toBe('/sandboxes?status=ready');
    const state = { status: 'deleted' as const, trail: ['c2Vzc2lvbjox', 'c2Vzc2lvbjoy'] };
    const href = sessionListHref(state);
    expect(href).toBe('/sandboxes?status=deleted&cursor=c2Vzc2lvbjox%2Cc2Vzc2lvbjoy');
    expect(parseSessionListState(Object.fromEntries(new URL(href, 'http://x').searchParams))).toEqual(state);
  });
});

describe('previewMayPrompt', () => {
  it('is false where browsers keep the preview cookie: https and loopback', () => {
    expect(previewMayPrompt('https://sandbox.example.com/api/sessions/x/preview/proxy/')).toBe(false);
    expect(previewMayPrompt('http://127.0.0.1:7104/api/sessions/x/preview/proxy/')).toBe(false);
    expect(previewMayPrompt('http://localhost:7104/p/')).toBe(false);
    expect(previewMayPrompt('http://app.localhost/p/')).toBe(false);
    expect(previewMayPrompt('http://[::1]:7104/p/')).toBe(false);
  });

  it('is true for plain http on any other host', () => {
    expect(previewMayPrompt('http://10.0.0.5:7104/p/')).toBe(true);
    expect(previewMayPrompt('http://sandbox.internal/p/')).toBe(true);
    expect(previewMayPrompt('http://127.0.0.1.example.com/p/')).toBe(true);
  });
});
