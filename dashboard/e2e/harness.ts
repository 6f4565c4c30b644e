// What every browser test uses: the stack global-setup started, a Chromium driven by
// playwright-core, signing in, screenshots, and the services' own APIs for setup.

import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { inject } from 'vitest';

import type { ServiceName, StackInfo } from './stack-info';

const screenshots = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'test-results', 'screenshots');

export function stack(): StackInfo {
  return inject('stack');
}

/** Debian's Chromium (a browser download is not possible here), headless. */
export function openBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-quic',
      '--no-first-run',
      '--disable-sync',
    ],
  });
}

/** A fresh browser context whose relative URLs resolve against the dashboard. */
export async function newContext(browser: Browser): Promise<BrowserContext> {
  return browser.newContext({ baseURL: stack().dashboard, viewport: { width: 1366, height: 900 } });
}

/** Opens the dashboard at `path` and signs in through the form, as an operator would. */
export async function signIn(page: Page, path = '/', pass = stack().pass): Promise<void> {
  await page.goto(path);
  await page.getByLabel('User').fill(stack().user);
  await page.getByLabel('Password').fill(pass);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Main' }).waitFor();
}

/** A full-page screenshot in dashboard/test-results/screenshots/<name>.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(screenshots, { recursive: true });
  const path = join(screenshots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** A request to a service with the internal key (setup and checks from the test's side). */
export async function callService<T = unknown>(
  service: ServiceName,
  path: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = { 'X-INTERNAL-KEY': stack().internalKey, ...init.headers };
  if (init.body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(`${stack().services[service].url}${path}`, {
    method: init.method ?? 'GET',
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: body as T };
}

/** Freezes a service (SIGSTOP): it stays up but answers nothing, as a hung or stopped one. */
export function pauseService(service: ServiceName): void {
  process.kill(stack().services[service].pid, 'SIGSTOP');
}

export function resumeService(service: ServiceName): void {
  process.kill(stack().services[service].pid, 'SIGCONT');
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `ms`. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, ms = 30_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((done) => setTimeout(done, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

