// The operations views against the real stack: every service's configuration (and a frozen
// renderctl showing as down, then recovering by itself), the agent registry, Render through
// renderctl (with the Render API fake when it runs) and sandbox sessions (with a container
// engine when there is one).

import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  callService,
  eventually,
  newContext,
  openBrowser,
  pauseService,
  resumeService,
  screenshot,
  signIn,
  stack,
} from './harness';
import { SERVICE_NAMES } from './stack-info';

let browser: Browser;
let context: BrowserContext;
let page: Page;
let renderctlPaused = false;

/** Client-side navigation through the main menu (a reload would sign the operator out). */
async function open(label: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label, exact: true }).click();
}

async function cardOrder(): Promise<{ service: string; health: string }[]> {
  return page.locator('[data-testid="config-services"] > [data-service]').evaluateAll((cards) =>
    cards.map((card) => ({ service: card.getAttribute('data-service') ?? '', health: card.getAttribute('data-health') ?? '' })),
  );
}

beforeAll(async () => {
  browser = await openBrowser();
  context = await newContext(browser);
  page = await context.newPage();
  await signIn(page, '/config');
});

afterAll(async () => {
  if (renderctlPaused) resumeService('renderctl');
  await browser?.close();
});

describe('Config', () => {
  it("shows every service's report", async () => {
    await expect.poll(async () => (await cardOrder()).length).toBe(SERVICE_NAMES.length);
    await eventually(
      async () => (await cardOrder()).every((card) => card.health !== 'checking' && card.health !== 'down'),
      30_000,
      'every service to answer',
    );
    for (const service of SERVICE_NAMES) {
      const table = page.getByRole('table', { name: `${service} configuration keys` });
      await table.waitFor();
      // Each report lists the keys every service has; secrets show no value.
      const pass = table.locator('tr[data-key="BASIC_AUTH_PASS"]');
      await expect.poll(() => pass.textContent()).toContain('hidden');
      expect(await pass.textContent()).not.toContain(stack().pass);
    }
    expect(await page.locator('body').textContent()).not.toContain(stack().internalKey);
    await screenshot(page, 'config');
  });

  it('shows a frozen renderctl as down, first, and recovers by itself', async () => {
    // A reload would sign out; this marker proves the page is the same one throughout.
    await page.evaluate(() => ((window as unknown as { opsMarker: number }).opsMarker = 1));
    pauseService('renderctl');
    renderctlPaused = true;
    try {
      await eventually(
        async () => {
          const [first] = await cardOrder();
          return first?.service === 'renderctl' && first.health === 'down';
        },
        30_000,
        'renderctl shown as down at the top',
      );
      const card = page.locator('[data-service="renderctl"]');
      expect(await card.getByTestId('service-health').textContent()).toBe('DOWN');
      expect(await card.getByRole('alert').textContent()).toMatch(/did not answer|unreachable/);
      await screenshot(page, 'config-service-down');
    } finally {
      resumeService('renderctl');
      renderctlPaused = false;
    }
    await eventually(
      async () => (await cardOrder()).find((card) => card.service === 'renderctl')?.health !== 'down',
      30_000,
      'renderctl to recover',
    );
    expect(await page.evaluate(() => (window as unknown as { opsMarker?: number }).opsMarker)).toBe(1);
    await page.getByRole('table', { name: 'renderctl configuration keys' }).waitFor();
  });
});

describe('Agents', () => {
  it('shows echo-agent live', async () => {
    await open('Agents');
    const row = page.locator('tr[data-agent="echo-agent"]');
    await row.waitFor();
    await expect.poll(() => row.getByTestId('agent-liveness').textContent(), { timeout: 30_000 }).toBe('live');
    expect(await row.textContent()).toContain('echo');
    expect(await row.textContent()).toMatch(/\d+ s ago|just now/);
    await screenshot(page, 'agents');
  });
});

describe('Render', () => {
  it('lists the services, plans the blueprint and deploys', async () => {
    if (!stack().renderApi) {
      // No Render API here: renderctl says what is missing, and the view shows it.
      await open('Render');
      const notice = page.getByTestId('render-token-missing');
      await notice.waitFor();
      expect(await notice.textContent()).toContain('RENDER_API_TOKEN');
      await screenshot(page, 'render');
      return;
    }
    const applied = await callService<{ dryRun: boolean }>('renderctl', '/render/blueprint/apply', {
      method: 'POST',
      body: { dryRun: false },
    });
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);

    await open('Render');
    const row = page.locator('tr[data-service="autonoma-orchestrator"]');
    await row.waitFor();
    expect(await page.locator('table[aria-label="Render services"] tbody tr').count()).toBeGreaterThanOrEqual(6);

    await page.getByRole('button', { name: 'Plan (dry run)' }).click();
    const plan = page.getByTestId('blueprint-plan');
    await plan.waitFor();
    expect(await plan.textContent()).toMatch(/\d+ steps?|nothing to change/);

    await row.getByRole('button', { name: 'Deploys of autonoma-orchestrator' }).click();
    const deploys = page.getByRole('region', { name: 'Deploys of autonoma-orchestrator' });
    await deploys.waitFor();
    await deploys.getByRole('button', { name: 'Deploy…' }).click();
    await deploys.getByRole('group', { name: 'Confirm deploy' }).getByRole('button', { name: 'Confirm deploy' }).click();
    const answer = deploys.getByTestId('deploy-answer');
    await answer.waitFor();
    const deployId = (await answer.locator('code').textContent())?.trim();
    expect(deployId).toMatch(/^dep-/);
    await deploys.locator(`tr[data-deploy="${deployId}"]`).waitFor();
    await screenshot(page, 'render');
  });
});

describe('Sandboxes', () => {
  it('browses a session: its files, a file’s content, its log', async () => {
    if (!stack().dockerHost) {
      await open('Sandboxes');
      const notice = page.getByTestId('no-container-engine');
      await notice.waitFor();
      expect(await notice.textContent()).toContain('no container engine');
      await screenshot(page, 'sandbox-session');
      return;
    }
    const created = await callService<{ sessionId: string }>('sandbox', '/api/sessions', {
      method: 'POST',
      body: { template: 'static' },
    });
    expect(created.status, `creating a session (image ${stack().sandboxImage}): ${JSON.stringify(created.body)}`).toBe(201);
    const id = created.body.sessionId;
    try {
      const content = 'Written by the operations e2e test.\nSecond line.\n';
      const written = await callService(`sandbox`, `/api/sessions/${id}/fs/write`, {
        method: 'POST',
        body: { path: 'notes/ops-e2e.txt', content },
      });
      expect(written.status, JSON.stringify(written.body)).toBe(200);

      await open('Sandboxes');
      // The session list when the sandbox has one; otherwise the session is opened by its id.
      const listed = await callService('sandbox', '/api/sessions');
      if (listed.status === 200) {
        await page.locator(`tr[data-session="${id}"] a`).click();
      } else {
        await page.getByLabel('Session id').fill(id);
        await page.getByRole('button', { name: 'Open', exact: true }).click();
      }
      await page.getByRole('heading', { name: new RegExp(id) }).waitFor();

      const tree = page.getByTestId('file-tree');
      await tree.getByRole('button', { name: 'notes/' }).click();
      await tree.getByRole('button', { name: /ops-e2e\.txt/ }).click();
      const viewer = page.getByLabel('Content of notes/ops-e2e.txt');
      await viewer.waitFor();
      expect(await viewer.textContent()).toBe(content);

      // The write went through the API before the page opened: the log replays it.
      const log = page.getByTestId('session-logs');
      await expect.poll(() => log.textContent(), { timeout: 15_000 }).toContain('fs_write');
      await screenshot(page, 'sandbox-session');
    } finally {
      await callService('sandbox', `/api/sessions/${id}`, { method: 'DELETE' });
    }
  });
});
