import { describe, expect, it } from 'vitest';

import { ApiError } from '../api/http';
import {
  forgetSession,
  isNoEngine,
  logsSocketUrl,
  normalizeSessions,
  parseSessionId,
  previewSandbox,
  rememberSession,
  rememberedSessions,
  sortEntries,
  withAuth,
} from './sandbox';

const ID = '0b7c6a2e-1f6d-4c43-9d0a-5b8f7e6d5c4b';

function memoryStorage() {
  const items = new Map<string, string>();
  return { getItem: (k: string) => items.get(k) ?? null, setItem: (k: string, v: string) => void items.set(k, v) };
}

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

describe('normalizeSessions', () => {
  it('reads an array, {items} or {sessions}, with sessionId or id', () => {
    expect(normalizeSessions([{ sessionId: 'a', status: 'ready' }]).map((s) => s.sessionId)).toEqual(['a']);
    expect(normalizeSessions({ items: [{ id: 'b' }] }).map((s) => s.sessionId)).toEqual(['b']);
    expect(normalizeSessions({ sessions: [{ sessionId: 'c', template: 'static' }] })[0]).toMatchObject({ sessionId: 'c', template: 'static' });
  });

  it('skips what is not a session', () => {
    expect(normalizeSessions([null, 3, { name: 'x' }, { id: 'ok' }]).map((s) => s.sessionId)).toEqual(['ok']);
    expect(normalizeSessions('nope')).toEqual([]);
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

describe('remembered sessions', () => {
  it('keeps ids newest first, without duplicates, and forgets on request', () => {
    const storage = memoryStorage();
    const other = ID.replace('0b7c', '1111');
    rememberSession(ID, storage);
    rememberSession(other, storage);
    expect(rememberSession(ID, storage)).toEqual([ID, other]);
    expect(rememberedSessions(storage)).toEqual([ID, other]);
    expect(forgetSession(ID, storage)).toEqual([other]);
  });

  it('ignores what is stored when it is not a list of ids', () => {
    const storage = memoryStorage();
    storage.setItem('autonoma.sandbox.sessions', '{broken');
    expect(rememberedSessions(storage)).toEqual([]);
    storage.setItem('autonoma.sandbox.sessions', JSON.stringify(['not-an-id', ID]));
    expect(rememberedSessions(storage)).toEqual([ID]);
  });
});
