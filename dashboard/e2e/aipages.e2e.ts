import type { Browser, BrowserContext, Page, Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { callService, eventually, newContext, openBrowser, screenshot, signIn, stack } from './harness';

// An AI builds a page through the queue gateway's HTTP API (the internal key); browsers show
// it, send input back and stay in step with each other.

interface InputEvent {
  page: string;
  component: string;
  kind: string;
  value: Record<string, unknown>;
}

const page = `e2e-${Date.now().toString(36)}`;
const XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">';

async function send(to: string, directive: string, body: unknown): Promise<{ seq: number; body: Record<string, unknown> }> {
  const sent = await callService<{ seq: number; body: Record<string, unknown> }>('queue-gateway', `/pages/${page}/messages`, {
    method: 'POST',
    body: { to, directive, body },
  });
  expect(sent.status, JSON.stringify(sent.body)).toBe(201);
  return sent.body;
}

/** The data of the Plotly chart in a component, as Plotly holds it on its graph div. */
function chartData(tab: Page, address: string): Promise<{ x?: unknown[]; y?: unknown[] }[] | null> {
  return tab.evaluate((selector) => {
    const graph = document.querySelector(selector) as (HTMLElement & { data?: { x?: unknown[]; y?: unknown[] }[] }) | null;
    return graph?.data ? graph.data.map((trace) => ({ x: trace.x, y: trace.y })) : null;
  }, `[data-address="${address}"] .js-plotly-plot`);
}

function component(tab: Page, address: string) {
  return tab.locator(`[data-address="${address}"]`);
}

/** Takes the AI's side of the input queue until an event matching `match` arrives. */
async function inputArrives(match: (event: InputEvent) => boolean): Promise<InputEvent> {
  return eventually(
    async () => {
      const taken = await callService<{ events: InputEvent[] }>('queue-gateway', `/pages/${page}/input?wait=5`);
      expect(taken.status).toBe(200);
      return taken.body.events.find(match);
    },
    30_000,
    'the input to reach the AI',
  );
}

describe('AI pages', () => {
  let browser: Browser;
  let first: Page;
  let second: Page;
  let firstContext: BrowserContext;
  // Gateway requests of the first browser pass through here, so the test can cut its network.
  let networkDown = false;
  const inFlight = new Set<Route>();

  beforeAll(async () => {
    const created = await callService('queue-gateway', '/pages', { method: 'POST', body: { page } });
    expect(created.status).toBe(201);
    // The dataset goes to blob storage; only its id travels in the directive (claim check).
    const dataset = await callService<{ id: string }>('queue-gateway', `/blobs?kind=dataset&name=${page}/growth`, {
      method: 'POST',
      body: [
        { quarter: 1, revenue: 2 },
        { quarter: 2, revenue: 4 },
        { quarter: 3, revenue: 8 },
      ],
    });
    expect(dataset.status).toBe(201);

    await send('layout-manager', 'layout.set', {
      title: 'Revenue review',
      areas: ['intro intro', 'chart ask', 'notes notes'],
      columns: ['2fr', '1fr'],
      gap: '1rem',
      regions: [
        { area: 'intro', component: 'text-component-intro' },
        { area: 'chart', component: 'plotly-panel-growth', title: 'Growth' },
        { area: 'ask', component: 'text-component-ask', title: 'Ask the AI' },
        { area: 'notes', component: 'text-component-notes' },
      ],
    });
    await send('text-component-intro', 'text.set', {
      label: 'Summary',
      format: 'markdown',
      text: 'Revenue **doubled** every quarter.',
    });
    await send('text-component-ask', 'form.set', {
      submitLabel: 'Send',
      fields: [
        { name: 'question', label: 'Question', type: 'text', required: true },
        { name: 'quarters', label: 'Quarters ahead', type: 'number', default: 2 },
      ],
    });
    await send('plotly-panel-growth', 'plotly.figure', {
      data: [{ type: 'scatter', mode: 'lines+markers', name: 'revenue' }],
      layout: { title: { text: 'Revenue per quarter' }, height: 320 },
    });
    await send('dataset-router', 'dataset.route', {
      dataset: { blobId: dataset.body.id },
      to: ['plotly-panel-growth'],
      mapping: { x: 'quarter', y: 'revenue' },
    });

    browser = await openBrowser();
    firstContext = await newContext(browser);
    const gateway = new URL(stack().services['queue-gateway'].url).origin;
    await firstContext.route(
      (url) => url.origin === gateway && url.pathname.startsWith(`/pages/${page}/`),
      async (route) => {
        if (networkDown) return route.abort('connectionrefused');
        inFlight.add(route);
        try {
          const response = await route.fetch();
          await route.fulfill({ response });
        } catch {
          // Cut while in flight (the test aborted it), or the page went away.
        } finally {
          inFlight.delete(route);
        }
      },
    );
    first = await firstContext.newPage();
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('shows the text, the form and the chart of the dataset routed to it by blob reference', async () => {
    await signIn(first, `/pages/${page}`);
    await first.getByRole('heading', { name: 'Revenue review' }).waitFor();
    await expect.poll(() => component(first, 'text-component-intro').innerText()).toContain('Revenue doubled every quarter.');
    expect(await component(first, 'text-component-intro').locator('strong').innerText()).toBe('doubled');
    await first.getByLabel('Question').waitFor();
    await expect.poll(() => chartData(first, 'plotly-panel-growth'), { timeout: 30_000 }).toEqual([{ x: [1, 2, 3], y: [2, 4, 8] }]);
    // Plotly drew the three points.
    expect(await component(first, 'plotly-panel-growth').locator('.scatterlayer .point').count()).toBe(3);
    expect(await first.getByTestId('page-connection').innerText()).toContain('Live');
    await screenshot(first, 'ai-page');
  });

  it('sends what the person types in the form to the AI', async () => {
    await first.getByLabel('Question').fill('Why did revenue double?');
    await first.getByLabel('Quarters ahead').fill('3');
    await first.getByRole('button', { name: 'Send' }).click();
    await first.getByText(/^Sent at /).waitFor();
    const event = await inputArrives((e) => e.component === 'text-component-ask');
    expect(event).toMatchObject({
      page,
      component: 'text-component-ask',
      kind: 'submit',
      value: { question: 'Why did revenue double?', quarters: 3 },
    });
  });

  it('shows a second browser the same page, and later directives reach both', async () => {
    const context = await newContext(browser);
    second = await context.newPage();
    await signIn(second, `/pages/${page}`);
    await second.getByRole('heading', { name: 'Revenue review' }).waitFor();
    await expect.poll(() => chartData(second, 'plotly-panel-growth'), { timeout: 30_000 }).toEqual(await chartData(first, 'plotly-panel-growth'));
    const addresses = (tab: Page) => tab.locator('[data-address]').evaluateAll((els) => els.map((el) => el.getAttribute('data-address')));
    expect(await addresses(second)).toEqual(await addresses(first));
    expect(await component(second, 'text-component-intro').innerText()).toBe(await component(first, 'text-component-intro').innerText());

    await send('text-component-notes', 'text.set', { label: 'Answer', text: 'Two new markets opened in Q2.' });
    await send('dataset-router', 'dataset.route', {
      dataset: { rows: [{ q: 1, r: 2 }, { q: 2, r: 4 }, { q: 3, r: 8 }, { q: 4, r: 16 }] },
      to: ['plotly-panel-growth'],
      mapping: { x: 'q', y: 'r' },
    });
    for (const tab of [first, second]) {
      await expect.poll(() => component(tab, 'text-component-notes').innerText(), { timeout: 30_000 }).toContain('Two new markets opened in Q2.');
      await expect.poll(() => chartData(tab, 'plotly-panel-growth'), { timeout: 30_000 }).toEqual([{ x: [1, 2, 3, 4], y: [2, 4, 8, 16] }]);
    }
    await screenshot(second, 'ai-page-second-context');
  });

  it('shows script payloads as plain text without running them', async () => {
    await send('text-component-xss', 'text.set', { label: 'Untrusted', text: XSS });
    await send('text-component-xss-md', 'text.set', { format: 'markdown', text: `**bold** ${XSS} [link](javascript:window.__pwned=3)` });
    await send('plotly-panel-xss', 'plotly.figure', { data: [{ type: 'bar', x: [1], y: [1], name: XSS }], layout: { title: { text: `Chart ${XSS}` } } });
    for (const tab of [first, second]) {
      await expect.poll(() => component(tab, 'text-component-xss').innerText(), { timeout: 30_000 }).toContain('<script>window.__pwned=1</script>');
      await expect.poll(() => component(tab, 'text-component-xss-md').innerText(), { timeout: 30_000 }).toContain('onerror="window.__pwned=2"');
      await component(tab, 'plotly-panel-xss').locator('.js-plotly-plot').waitFor();
      await component(tab, 'text-component-xss-md').getByText('link').click();
      expect(await tab.evaluate(() => (window as { __pwned?: unknown }).__pwned)).toBeUndefined();
      expect(await tab.locator('.ai-page img, .ai-page script, .ai-page [onerror]').count()).toBe(0);
    }
    await component(first, 'text-component-xss').scrollIntoViewIfNeeded();
    await screenshot(first, 'ai-page-untrusted-text');
  });

  it('takes a component off every browser when the AI removes it', async () => {
    const removed = await callService('queue-gateway', `/pages/${page}/components/text-component-xss`, { method: 'DELETE' });
    expect(removed.status).toBe(201);
    for (const tab of [first, second]) {
      await expect.poll(() => component(tab, 'text-component-xss').count(), { timeout: 30_000 }).toBe(0);
    }
  });

  it('shows that it is reconnecting when the gateway cannot be reached, and catches up afterwards', async () => {
    networkDown = true;
    for (const route of inFlight) await route.abort('connectionreset').catch(() => {});
    await expect.poll(() => first.getByTestId('page-connection').innerText(), { timeout: 30_000 }).toContain('Reconnecting');
    // What the page showed stays.
    expect(await component(first, 'text-component-intro').innerText()).toContain('Revenue doubled');
    await send('text-component-notes', 'text.set', { label: 'Answer', text: 'Sent while the first browser was offline.' });
    networkDown = false;
    await first.getByRole('button', { name: 'Retry now' }).click();
    await expect.poll(() => component(first, 'text-component-notes').innerText(), { timeout: 30_000 }).toContain('Sent while the first browser was offline.');
    await expect.poll(() => first.getByTestId('page-connection').innerText()).toContain('Live');
  });

  it('opens the page from a sharing link without signing in, and takes input with the token', async () => {
    const shared = await callService<{ token: string }>('queue-gateway', `/pages/${page}/tokens`, { method: 'POST', body: {} });
    expect(shared.status).toBe(201);
    const context = await newContext(browser);
    const guest = await context.newPage();
    await guest.goto(`/pages/${page}?token=${encodeURIComponent(shared.body.token)}`);
    await guest.getByRole('heading', { name: 'Revenue review' }).waitFor();
    expect(await guest.getByRole('navigation', { name: 'Main' }).count()).toBe(0);
    await expect.poll(() => chartData(guest, 'plotly-panel-growth'), { timeout: 30_000 }).toEqual([{ x: [1, 2, 3, 4], y: [2, 4, 8, 16] }]);
    await screenshot(guest, 'ai-page-shared-link');
    await guest.getByLabel('Question').fill('Asked through a shared link');
    await guest.getByRole('button', { name: 'Send' }).click();
    await guest.getByText(/^Sent at /).waitFor();
    await inputArrives((e) => e.value.question === 'Asked through a shared link');
    await context.close();
  });

  it('lists the page among those opened in this browser', async () => {
    await first.getByRole('link', { name: 'AI pages' }).first().click();
    await first.getByRole('heading', { name: 'AI pages', level: 1 }).waitFor();
    const row = first.getByRole('row', { name: new RegExp(page) });
    await expect.poll(() => row.innerText(), { timeout: 15_000 }).toMatch(/\d+ components · \d+ directives/);
    await screenshot(first, 'ai-pages-list');
    await row.getByRole('link', { name: page }).click();
    await first.getByRole('heading', { name: 'Revenue review' }).waitFor();
  });
});
