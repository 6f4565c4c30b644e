import type { Browser, Page, WebSocketRoute } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { callService, newContext, openBrowser, screenshot, signIn } from './harness';

describe('signing in and the activity stream', () => {
  let browser: Browser;
  let page: Page;

  // The page's WebSocket runs through the test, which can drop it (as a network failure
  // would) and refuse new ones for a while, while the orchestrator itself keeps running.
  let socket: WebSocketRoute | null = null;
  let refuseSockets = false;

  beforeAll(async () => {
    browser = await openBrowser();
    const context = await newContext(browser);
    await context.routeWebSocket(/\/ws\?/, (ws) => {
      if (refuseSockets) {
        void ws.close({ code: 1006, reason: 'network down' });
        return;
      }
      ws.connectToServer();
      socket = ws;
    });
    page = await context.newPage();
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('refuses a wrong password', async () => {
    await page.goto('/');
    await page.getByLabel('User').fill('operator');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('Wrong user name or password');
    expect(await page.getByRole('navigation', { name: 'Main' }).count()).toBe(0);
    await screenshot(page, 'signin-refused');
  });

  it('signs in and goes live', async () => {
    await signIn(page);
    await expect.poll(() => page.getByTestId('live-state').textContent(), { timeout: 15_000 }).toContain('Live');
  });

  it('shows a task created elsewhere as it happens, without reloading', async () => {
    const correlationId = `activity-${Date.now()}`;
    const created = await callService<{ id: string }>('orchestrator', '/task', {
      method: 'POST',
      body: { kind: 'echo', payload: { note: 'from the activity test' }, correlationId },
    });
    expect(created.status).toBe(201);
    const stream = page.getByTestId('activity');
    await page.getByLabel('Filter').fill(created.body.id);
    await expect
      .poll(() => stream.locator('li', { hasText: 'succeeded' }).count(), { timeout: 30_000 })
      .toBeGreaterThan(0);
    await page.getByLabel('Filter').fill('');
    await screenshot(page, 'activity');
  });

  it('holds arrivals while paused and shows them on resume', async () => {
    await page.getByRole('button', { name: 'Pause' }).click();
    const created = await callService<{ id: string }>('orchestrator', '/task', {
      method: 'POST',
      body: { kind: 'echo', payload: {} },
    });
    expect(created.status).toBe(201);
    await expect
      .poll(() => page.getByRole('button', { name: /Resume \(\d+ new\)/ }).count(), { timeout: 30_000 })
      .toBe(1);
    await page.getByLabel('Filter').fill(created.body.id);
    expect(await page.getByTestId('activity').count()).toBe(0);
    await page.getByRole('button', { name: /Resume/ }).click();
    await expect.poll(() => page.getByTestId('activity').locator('li').count()).toBeGreaterThan(0);
  });

  it('reconnects after losing the connection and shows what it missed', async () => {
    await page.getByLabel('Filter').fill('');
    refuseSockets = true;
    await socket?.close({ code: 1006, reason: 'network down' });
    await expect.poll(() => page.getByTestId('live-state').textContent(), { timeout: 20_000 }).toContain('Reconnecting');
    const missed = await callService<{ id: string }>('orchestrator', '/task', {
      method: 'POST',
      body: { kind: 'echo', payload: { note: 'sent while the dashboard was offline' } },
    });
    expect(missed.status).toBe(201);
    await new Promise((done) => setTimeout(done, 1500));
    refuseSockets = false;
    await expect.poll(() => page.getByTestId('live-state').textContent(), { timeout: 30_000 }).toContain('Live');
    await page.getByLabel('Filter').fill(missed.body.id);
    await expect
      .poll(() => page.getByTestId('activity').locator('li').count(), { timeout: 15_000 })
      .toBeGreaterThan(0);
  });
});
