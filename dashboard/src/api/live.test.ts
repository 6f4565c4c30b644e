import { describe, expect, it } from 'vitest';

import { backoffDelay, wsUrl } from './live';

describe('the live connection', () => {
  it('carries the credentials in ?auth= on a ws: or wss: URL', () => {
    expect(wsUrl('http://127.0.0.1:7100', 'b3A6cHc=')).toBe('ws://127.0.0.1:7100/ws?auth=b3A6cHc%3D');
    expect(wsUrl('https://orchestrator.example.com', 'x')).toBe('wss://orchestrator.example.com/ws?auth=x');
  });

  it('backs off exponentially with jitter, within bounds', () => {
    expect(backoffDelay(0, () => 1)).toBe(500);
    expect(backoffDelay(3, () => 1)).toBe(4000);
    expect(backoffDelay(20, () => 1)).toBe(15_000);
    // Never a tight loop, whatever the jitter draws.
    expect(backoffDelay(5, () => 0)).toBe(250);
  });
});
