import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { callService, newContext, openBrowser, screenshot, signIn } from './harness';

describe('signing in and the activity stream', () => {
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    browser = await openBrowser();
    page = await (await newContext(browser)).newPage();
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
});
