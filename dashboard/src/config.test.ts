import { describe, expect, it } from 'vitest';

import { builtInUrls, mergeConfig } from './config';

describe('service addresses', () => {
  it('default to the launcher ports', () => {
    const urls = builtInUrls({});
    expect(urls.orchestrator).toBe('http://127.0.0.1:7100');
    expect(urls['queue-gateway']).toBe('http://127.0.0.1:7105');
  });

  it('come from VITE_<SERVICE>_URL at build time', () => {
    const urls = builtInUrls({ VITE_QUEUE_GATEWAY_URL: 'https://gw.example.com/' });
    expect(urls['queue-gateway']).toBe('https://gw.example.com');
    expect(urls.logging).toBe('http://127.0.0.1:7101');
  });

  it('take /config.json over them, ignoring what is not a URL', () => {
    const urls = mergeConfig(builtInUrls({}), {
      services: { sandbox: 'http://10.0.0.5:9000', logging: 'javascript:alert(1)', unknown: 'http://x' },
    });
    expect(urls.sandbox).toBe('http://10.0.0.5:9000');
    expect(urls.logging).toBe('http://127.0.0.1:7101');
    expect(mergeConfig(urls, null)).toEqual(urls);
  });
});
