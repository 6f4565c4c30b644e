import { afterEach, describe, expect, it } from 'vitest';

import { sanitizeConfig, sanitizeFigure, sanitizeMarkup, sanitizeValue, safeUrl } from './sanitize';

declare global {
  interface Window {
    __pwned?: number;
  }
}

afterEach(() => {
  delete window.__pwned;
});

describe('safeUrl', () => {
  it('keeps http, https and mailto links', () => {
    expect(safeUrl('https://example.com/a?b=1')).toBe('https://example.com/a?b=1');
    expect(safeUrl('http://example.com')).toBe('http://example.com/');
    expect(safeUrl('mailto:ops@example.com')).toBe('mailto:ops@example.com');
  });

  it('refuses script, data and disguised schemes', () => {
    for (const url of ['javascript:alert(1)', 'JavaScript:alert(1)', ' java\tscript:alert(1)', 'jav\u0000ascript:alert(1)', 'data:text/html,<script>alert(1)</script>', 'vbscript:x', '/relative', '//evil.example']) {
      expect(safeUrl(url), url).toBeNull();
    }
  });
});

describe('sanitizeMarkup', () => {
  it('removes scripts, event handlers and javascript: links from Plotly text', () => {
    expect(sanitizeMarkup('Revenue<script>window.__pwned=1</script>')).toBe('Revenue');
    expect(sanitizeMarkup('<img src=x onerror="window.__pwned=2">Sales')).toBe('Sales');
    expect(sanitizeMarkup('<a href="javascript:alert(1)">click</a>')).toBe('<a>click</a>');
    expect(sanitizeMarkup('<b onmouseover="x()">bold</b>')).toBe('<b>bold</b>');
    expect(window.__pwned).toBeUndefined();
  });

  it("keeps Plotly's own markup and plain text as it is", () => {
    expect(sanitizeMarkup('%{y:.2f}<extra></extra>')).toBe('%{y:.2f}<extra></extra>');
    expect(sanitizeMarkup('line 1<br>line <b>2</b><sup>3</sup>')).toBe('line 1<br>line <b>2</b><sup>3</sup>');
    expect(sanitizeMarkup('<a href="https://example.com">docs</a>')).toBe('<a href="https://example.com">docs</a>');
    expect(sanitizeMarkup('lines+markers')).toBe('lines+markers');
  });
});

describe('sanitizeValue', () => {
  it('copies deeply, cleaning every string and dropping prototype keys', () => {
    const input = JSON.parse('{"a": ["<script>x</script>ok", 1, null], "__proto__": {"polluted": true}, "b": {"c": "<img src=x onerror=alert(1)>"}}');
    const out = sanitizeValue(input) as Record<string, unknown>;
    expect(out).toEqual({ a: ['ok', 1, null], b: { c: '' } });
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('copies numeric columns without walking them one by one', () => {
    const column = [1, 2, 3, null];
    const out = sanitizeValue(column);
    expect(out).toEqual(column);
    expect(out).not.toBe(column);
  });
});

describe('sanitizeConfig', () => {
  it('keeps display options and turns off everything that sends data away', () => {
    const config = sanitizeConfig({
      displayModeBar: false,
      scrollZoom: true,
      showLink: true,
      sendData: true,
      plotlyServerURL: 'https://evil.example',
      linkText: 'steal',
      setBackground: 'function',
      modeBarButtonsToRemove: ['lasso2d'],
    });
    expect(config).toEqual({
      responsive: true,
      displaylogo: false,
      displayModeBar: false,
      scrollZoom: true,
      modeBarButtonsToRemove: ['lasso2d'],
      showLink: false,
      sendData: false,
      showEditInChartStudio: false,
      showSendToCloud: false,
      plotlyServerURL: '',
    });
  });
});

describe('sanitizeFigure', () => {
  it('cleans titles, trace names, hover templates and layout images', () => {
    const figure = sanitizeFigure({
      data: [{ type: 'bar', name: '<script>window.__pwned=1</script>Q1', hovertemplate: '%{y}<extra></extra>', y: [1, 2] }],
      layout: {
        title: { text: 'Sales <img src=x onerror="window.__pwned=2">' },
        annotations: [{ text: '<a href="javascript:alert(1)">more</a>' }],
        images: [{ source: 'https://example.com/logo.png' }, { source: 'javascript:alert(1)' }, { source: 'data:image/svg+xml;base64,PHN2Zz4=' }, { source: 'data:image/png;base64,iVBOR' }],
      },
    });
    expect(figure.data[0]).toEqual({ type: 'bar', name: 'Q1', hovertemplate: '%{y}<extra></extra>', y: [1, 2] });
    expect(figure.layout.title).toEqual({ text: 'Sales ' });
    expect(figure.layout.annotations).toEqual([{ text: '<a>more</a>' }]);
    expect(figure.layout.images).toEqual([{ source: 'https://example.com/logo.png' }, { source: 'data:image/png;base64,iVBOR' }]);
    expect(figure.config).toMatchObject({ showLink: false, sendData: false });
    expect(window.__pwned).toBeUndefined();
  });
});
