// The operations views against the real stack: every service's configuration (and a frozen
// renderctl showing as down, then recovering by itself), the agent registry, Render through
// renderctl (with the Render API fake when it runs) and sandbox sessions (with a container
// engine when there is one).

import type { Browser, BrowserContext, Dialog, Page, Response } from 'playwright-core';
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
  it('lists a session, opens it, and shows its files and its preview with the page’s own stylesheet', async () => {
    if (!stack().dockerHost) {
      await open('Sandboxes');
      const notice = page.getByTestId('no-container-engine');
      await notice.waitFor();
      expect(await notice.textContent()).toContain('no container engine');
      await screenshot(page, 'sandboxes');
      return;
    }
    const created = await callService<{ sessionId: string; previewUrl: string }>('sandbox', '/api/sessions', {
      method: 'POST',
      body: { template: 'static' },
    });
    expect(created.status, `creating a session (image ${stack().sandboxImage}): ${JSON.stringify(created.body)}`).toBe(201);
    const id = created.body.sessionId;
    const previewPath = `/api/sessions/${id}/preview/`;

    // The preview must never ask for credentials: no dialog, and no request of its own refused.
    const dialogs: string[] = [];
    const refused: string[] = [];
    const onDialog = (dialog: Dialog) => {
      dialogs.push(`${dialog.type()}: ${dialog.message()}`);
      void dialog.dismiss();
    };
    const previewResponses: { url: string; status: number }[] = [];
    const onResponse = (response: Response) => {
      if (!response.url().includes(previewPath)) return;
      previewResponses.push({ url: response.url(), status: response.status() });
      if (response.status() === 401) refused.push(response.url());
    };
    page.on('dialog', onDialog);
    page.on('response', onResponse);
    try {
      const html =
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>ops e2e</title><link rel="stylesheet" href="style.css"></head>\n' +
        '<body><h1>Preview from the operations e2e</h1></body></html>\n';
      const css = 'body { background: rgb(1, 2, 3); color: rgb(250, 250, 250); }\n';
      for (const [path, content] of [
        ['index.html', html],
        ['style.css', css],
      ]) {
        const written = await callService('sandbox', `/api/sessions/${id}/fs/write`, { method: 'POST', body: { path, content } });
        expect(written.status, `writing ${path}: ${JSON.stringify(written.body)}`).toBe(200);
      }
      const dev = await callService('sandbox', `/api/sessions/${id}/dev/start`, {
        method: 'POST',
        body: { cmd: 'httpd -f -p 8080 -h /workspace', port: 8080 },
      });
      expect(dev.status, JSON.stringify(dev.body)).toBe(200);
      await eventually(
        async () => {
          const served = await callService<string>('sandbox', `${previewPath}proxy/style.css`);
          return served.status === 200 && String(served.body).includes('rgb(1, 2, 3)');
        },
        30_000,
        'the dev server to serve style.css',
      );

      // The list: the session's row, found by its id.
      await open('Sandboxes');
      const row = page.locator(`tr[data-session="${id}"]`);
      await row.waitFor();
      expect(await row.locator('.badge').textContent()).toBe('ready');
      expect(await row.textContent()).toContain('static');
      expect(await row.locator('time').first().textContent()).toMatch(/s ago|just now/);
      const previewLink = row.getByRole('link', { name: `Preview of session ${id} (opens in a new tab)` });
      expect(await previewLink.getAttribute('href')).toBe(`${created.body.previewUrl}?auth=${encodeURIComponent(basicOf(stack().user, stack().pass))}`);
      await page.getByText(/^The sandbox is ready/).waitFor();
      await screenshot(page, 'sandboxes');

      await row.getByRole('link', { name: id, exact: true }).click();
      await page.getByRole('heading', { name: new RegExp(id) }).waitFor();
      expect(new URL(page.url()).pathname).toBe(`/sandboxes/${id}`);

      // The files written through the API, and one of them in the viewer.
      const tree = page.getByTestId('file-tree');
      await tree.getByRole('button', { name: /index\.html/ }).waitFor();
      await tree.getByRole('button', { name: /style\.css/ }).click();
      const viewer = page.getByLabel('Content of style.css');
      await viewer.waitFor();
      expect(await viewer.textContent()).toBe(css);

      // The preview: index.html, styled by its own stylesheet (fetched with the preview cookie alone).
      const iframe = page.locator('iframe.preview');
      await iframe.waitFor();
      expect(await iframe.getAttribute('sandbox')).toContain('allow-scripts');
      const background = await eventually(
        async () => {
          const frame = await (await iframe.elementHandle())?.contentFrame();
          if (!frame) return undefined;
          const heading = await frame.evaluate(() => document.querySelector('h1')?.textContent ?? '');
          if (heading !== 'Preview from the operations e2e') return undefined;
          const color = await frame.evaluate(() => getComputedStyle(document.body).backgroundColor);
          return color === 'rgb(1, 2, 3)' ? { color, url: frame.url() } : undefined;
        },
        30_000,
        'the preview to show index.html with style.css applied',
      );
      expect(background.color).toBe('rgb(1, 2, 3)');
      // The sandbox sent the frame on without the credentials in its address.
      expect(background.url).not.toContain('auth=');
      expect(await page.getByText(/use the operator credentials/).count()).toBe(0);
      // The iframe's `?auth=` navigation was answered with a redirect (and the cookie); the
      // stylesheet then came without credentials in its address.
      expect(previewResponses.some((r) => r.status === 303 && r.url.includes('auth=')), JSON.stringify(previewResponses)).toBe(true);
      expect(previewResponses.find((r) => r.url.endsWith('/proxy/style.css')), JSON.stringify(previewResponses)).toEqual({
        url: `${created.body.previewUrl}style.css`,
        status: 200,
      });

      // The writes and the dev server went through the API before the page opened: the log replays them.
      const log = page.getByTestId('session-logs');
      await expect.poll(() => log.textContent(), { timeout: 15_000 }).toContain('fs_write');
      expect(await log.textContent()).toContain('dev_start');

      await iframe.scrollIntoViewIfNeeded();
      await screenshot(page, 'sandbox-session');
      expect(dialogs, 'dialogs while the preview loaded').toEqual([]);
      expect(refused, 'preview requests refused (401)').toEqual([]);
    } finally {
      page.off('dialog', onDialog);
      page.off('response', onResponse);
      await callService('sandbox', `/api/sessions/${id}`, { method: 'DELETE' });
    }
  });
});

/** `base64(user:pass)`, as the dashboard puts it in `?auth=`. */
function basicOf(user: string, pass: string): string {
  return Buffer.from(`${user}:${pass}`, 'utf8').toString('base64');
}
