import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { callService, eventually, newContext, openBrowser, screenshot, signIn, stack } from './harness';

interface TaskOut {
  id: string;
  status: string;
  version: number;
  traceId: string;
}

describe('tasks: create from the schema form, follow live, find and inspect', () => {
  let browser: Browser;
  let page: Page;
  const correlationId = `tasks-e2e-${Date.now()}`;
  let taskId = '';

  beforeAll(async () => {
    // The echo agent registers its kind shortly after the stack is up.
    await eventually(
      async () => {
        const agents = await callService<{ kinds: { kind: string }[] }[]>('orchestrator', '/agents');
        return agents.status === 200 && agents.body.some((agent) => agent.kinds.some((k) => k.kind === 'echo'));
      },
      60_000,
      'the echo agent to register',
    );
    browser = await openBrowser();
    page = await (await newContext(browser)).newPage();
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('creates an echo task from the form generated from its payload schema', async () => {
    await signIn(page, '/tasks/new');
    await expect.poll(() => page.getByTestId('live-state').textContent(), { timeout: 15_000 }).toContain('Live');
    await page.getByLabel('Kind').selectOption('echo');
    expect(new URL(page.url()).search).toBe('?kind=echo');

    // Fields come from the schema, with its limits checked inline before anything is sent.
    const delay = page.getByLabel('delayMs');
    await delay.fill('-1');
    await expect.poll(() => page.getByText('must be at least 0').count()).toBe(1);
    expect(await delay.getAttribute('aria-invalid')).toBe('true');
    await delay.fill('3000');
    await expect.poll(() => page.getByText('must be at least 0').count()).toBe(0);
    await page.getByLabel('message').fill('hello from the tasks test');
    await page.getByLabel('Correlation id').fill(correlationId);
    await page.getByLabel('Priority').fill('7');
    await screenshot(page, 'tasks-new');

    await page.getByRole('button', { name: 'Create task' }).click();
    await page.waitForURL(/\/tasks\/[0-9a-f-]{36}$/, { timeout: 15_000 });
    taskId = new URL(page.url()).pathname.split('/').pop() ?? '';
    const stored = await callService<TaskOut & { payload: unknown; correlationId: string; priority: number }>(
      'orchestrator',
      `/task/${taskId}`,
    );
    expect(stored.body.payload).toEqual({ delayMs: 3000, message: 'hello from the tasks test' });
    expect(stored.body.correlationId).toBe(correlationId);
    expect(stored.body.priority).toBe(7);
  });

  it('shows the task reach succeeded without a reload', async () => {
    const status = page.getByTestId('task-status');
    await status.waitFor();
    // The agent waits 3 s before answering: the page first shows the task unfinished.
    expect(await status.textContent()).not.toBe('succeeded');
    await page.evaluate(() => {
      (window as unknown as { stillHere: boolean }).stillHere = true;
    });
    await expect.poll(() => status.textContent(), { timeout: 30_000 }).toBe('succeeded');
    expect(await page.evaluate(() => (window as unknown as { stillHere?: boolean }).stillHere)).toBe(true);
    await expect.poll(() => page.locator('.timeline > li[data-event-type="succeeded"]').count()).toBe(1);
  });

  it('finds the task in the table by kind and correlation id, with the filters in the URL', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Tasks', exact: true }).click();
    await page.getByRole('search', { name: 'Filter tasks' }).waitFor();
    await page.getByLabel('Kind').fill('echo');
    await page.getByLabel('Correlation id').fill(correlationId);
    await page.getByLabel('Correlation id').press('Enter');

    const rows = page.locator('table.tasks-table tbody tr');
    await expect.poll(() => new URL(page.url()).searchParams.get('correlationId')).toBe(correlationId);
    expect(new URL(page.url()).searchParams.get('kind')).toBe('echo');
    await expect.poll(() => rows.count()).toBe(1);
    expect(await rows.first().getAttribute('data-task-id')).toBe(taskId);
    expect(await rows.first().locator('.badge').textContent()).toBe('succeeded');

    // Another value of a filter hides it: it did not fail.
    await page.getByRole('checkbox', { name: 'failed' }).check();
    await expect.poll(() => new URL(page.url()).searchParams.get('status')).toBe('failed');
    await expect.poll(() => page.getByText('No tasks match these filters.').count()).toBe(1);
    expect(await rows.count()).toBe(0);
    await page.getByRole('checkbox', { name: 'succeeded' }).check();
    await page.getByRole('checkbox', { name: 'failed' }).uncheck();
    await expect.poll(() => new URL(page.url()).searchParams.get('status')).toBe('succeeded');
    await expect.poll(() => rows.count()).toBe(1);
    await screenshot(page, 'tasks-table');
  });

  it('restores the filters when the URL is loaded again', async () => {
    const url = page.url();
    await page.reload();
    // Credentials live in memory only: the reload asks for them again, at the same address.
    await page.getByLabel('User').fill(stack().user);
    await page.getByLabel('Password').fill(stack().pass);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('search', { name: 'Filter tasks' }).waitFor();
    expect(page.url()).toBe(url);
    expect(await page.getByLabel('Correlation id').inputValue()).toBe(correlationId);
    expect(await page.getByLabel('Kind').inputValue()).toBe('echo');
    expect(await page.getByRole('checkbox', { name: 'succeeded' }).isChecked()).toBe(true);
    const rows = page.locator('table.tasks-table tbody tr');
    await expect.poll(() => rows.count()).toBe(1);
    expect(await rows.first().getAttribute('data-task-id')).toBe(taskId);
  });

  it('opens the task from the table with its events and its logs by trace id', async () => {
    await page.getByRole('link', { name: taskId }).click();
    await page.waitForURL(`**/tasks/${taskId}`);
    const timeline = page.locator('.timeline > li');
    await expect.poll(() => timeline.first().getAttribute('data-event-type')).toBe('created');
    await expect.poll(() => timeline.last().getAttribute('data-event-type')).toBe('succeeded');
    expect(await page.locator('.timeline > li[data-event-type="dispatched"]').count()).toBeGreaterThan(0);
    // Log records reach the logging service in batches: wait for them.
    const logs = page.getByRole('list', { name: 'Log records, oldest first' }).locator('li');
    await expect.poll(() => logs.count(), { timeout: 20_000 }).toBeGreaterThan(0);
    await expect.poll(() => logs.filter({ hasText: 'echo-agent' }).count(), { timeout: 20_000 }).toBeGreaterThan(0);
    await screenshot(page, 'task-page');
  });

  it('refuses a change based on a stale version and says so, then applies it after a reload', async () => {
    await page.getByText('Change by hand').click();
    const current = await callService<TaskOut>('orchestrator', `/task/${taskId}`);
    // Someone else changes the task meanwhile.
    const meanwhile = await callService<TaskOut>('orchestrator', `/task/${taskId}`, {
      method: 'PATCH',
      body: { ifVersion: current.body.version, priority: 3, note: 'changed elsewhere' },
    });
    expect(meanwhile.status).toBe(200);
    const form = page.getByRole('form', { name: 'Change the task' });
    await form.getByLabel('Priority').fill('9');
    await form.getByRole('button', { name: /Save change/ }).click();
    const alert = form.getByRole('alert').filter({ hasText: 'The task changed meanwhile' });
    await alert.waitFor();
    expect(await alert.textContent()).toContain(`now at version ${meanwhile.body.version}`);

    await alert.getByRole('button', { name: 'Reload the task' }).click();
    await expect.poll(() => form.textContent()).toContain(`Based on version ${meanwhile.body.version}`);
    await form.getByRole('button', { name: /Save change/ }).click();
    await expect.poll(() => form.textContent()).toContain(`now at version ${meanwhile.body.version + 1}`);
    const after = await callService<TaskOut & { priority: number }>('orchestrator', `/task/${taskId}`);
    expect(after.body.priority).toBe(9);
  });

  it('names an illegal transition', async () => {
    const form = page.getByRole('form', { name: 'Change the task' });
    await form.getByLabel('Status').selectOption('running');
    await form.getByRole('button', { name: /Save change/ }).click();
    const alert = form.getByRole('alert').filter({ hasText: 'Not allowed' });
    await alert.waitFor();
    expect(await alert.textContent()).toContain('succeeded → running');
  });
});
