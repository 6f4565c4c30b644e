// Starts the real stack once for the browser tests: `autonoma up` (local Postgres, migrations,
// every service, the dashboard) on free ports with known credentials, renderctl pointed at the
// Render API fake, the sandbox at the tests' container engine. Stops it all afterwards.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { type WriteStream, chmodSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';

import type { StackInfo } from './stack-info';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const results = resolve(here, '..', 'test-results');
const STACK_TIMEOUT_MS = 300_000;

let launcher: ChildProcess | null = null;
let renderFake: ChildProcess | null = null;
let stateDir: string | null = null;
let log: WriteStream | null = null;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  mkdirSync(results, { recursive: true });
  if (!existsSync(resolve(here, '..', 'dist', 'index.html'))) {
    throw new Error('dashboard/dist is not built: run `npm run build` first');
  }
  stateDir = mkdtempSync(join(tmpdir(), 'autonoma-e2e-'));
  // The local Postgres runs as its own OS user, which must reach its data directory.
  chmodSync(stateDir, 0o755);
  const renderApi = await startRenderFake();
  const basePort = await freeBlock(7);
  const pgPort = await freePort();
  const pass = randomBytes(12).toString('hex');
  const internalKey = randomBytes(24).toString('hex');
  const dockerHost = process.env.TEST_DOCKER_HOST || null;

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    BASIC_AUTH_USER: 'operator',
    BASIC_AUTH_PASS: pass,
    INTERNAL_API_KEYS: internalKey,
  };
  delete env.DATABASE_URL;
  const sandboxImage = process.env.TEST_SANDBOX_IMAGE || (dockerHost ? 'localhost/autonoma-sandbox-base:test' : null);
  if (dockerHost) env.DOCKER_HOST = dockerHost;
  // No image can be pulled in tests: sessions run the image the test engine was given.
  if (sandboxImage) env.SANDBOX_IMAGE = sandboxImage;
  if (renderApi) {
    env.RENDER_API_BASE_URL = renderApi.baseUrl;
    env.RENDER_API_TOKEN = renderApi.token;
  }
  const args = ['up', '--state-dir', stateDir, '--base-port', String(basePort), '--pg-port', String(pgPort)];
  const [command, prefix] = process.env.AUTONOMA_BIN
    ? [process.env.AUTONOMA_BIN, [] as string[]]
    : ['cargo', ['run', '-q', '-p', 'autonoma-launcher', '--bin', 'autonoma', '--']];
  log = createWriteStream(join(results, 'stack.log'));
  launcher = spawn(command, [...prefix, ...args], { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
  launcher.stdout?.pipe(log, { end: false });
  launcher.stderr?.pipe(log, { end: false });

  const stackFile = join(stateDir, 'stack.json');
  const started = Date.now();
  while (!existsSync(stackFile)) {
    if (launcher.exitCode !== null || launcher.signalCode !== null) {
      throw new Error(`autonoma up exited (${launcher.exitCode ?? launcher.signalCode}); see test-results/stack.log`);
    }
    if (Date.now() - started > STACK_TIMEOUT_MS) {
      throw new Error('the stack did not come up in time; see test-results/stack.log');
    }
    await sleep(250);
  }
  const written = JSON.parse(readFileSync(stackFile, 'utf8')) as {
    dashboard: string;
    services: StackInfo['services'];
    user: string;
  };
  const info: StackInfo = {
    dashboard: written.dashboard,
    services: written.services,
    user: written.user,
    pass,
    internalKey,
    renderApi: renderApi?.baseUrl ?? null,
    dockerHost,
    sandboxImage,
    stateDir,
  };
  project.provide('stack', info);
  return teardown;
}

async function teardown(): Promise<void> {
  if (launcher && launcher.exitCode === null) {
    const exited = new Promise((done) => launcher?.once('exit', done));
    launcher.kill('SIGTERM');
    await Promise.race([exited, sleep(45_000)]);
    if (launcher.exitCode === null) launcher.kill('SIGKILL');
  }
  if (renderFake && renderFake.exitCode === null) {
    const exited = new Promise((done) => renderFake?.once('exit', done));
    renderFake.kill('SIGINT');
    await Promise.race([exited, sleep(10_000)]);
  }
  renderFake?.stdout?.destroy();
  renderFake?.unref();
  launcher?.unref();
  launcher?.stdout?.destroy();
  launcher?.stderr?.destroy();
  log?.end();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
}

/** The Render API fake (a contract-checked stand-in: Render's API is not reachable here). */
async function startRenderFake(): Promise<{ baseUrl: string; token: string } | null> {
  const bin = process.env.RENDER_FAKE_BIN;
  if (!bin) return null;
  renderFake = spawn(bin, [], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Record<string, string> = {};
  let buffered = '';
  await new Promise<void>((done, fail) => {
    const timer = setTimeout(() => fail(new Error('render-fake did not start')), 30_000);
    renderFake?.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      for (const line of buffered.split('\n')) {
        const [key, value] = line.split('=', 2);
        if (key && value) lines[key.trim()] = value.trim();
      }
      if (lines.RENDER_API_BASE_URL && lines.RENDER_API_TOKEN) {
        clearTimeout(timer);
        done();
      }
    });
    renderFake?.once('exit', (code) => fail(new Error(`render-fake exited (${code})`)));
  });
  return { baseUrl: lines.RENDER_API_BASE_URL, token: lines.RENDER_API_TOKEN };
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

/** The first of `count` consecutive free ports. */
async function freeBlock(count: number): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    let free = true;
    for (let i = 0; i < count && free; i++) free = await portIsFree(base + i);
    if (free) return base;
  }
  throw new Error(`no ${count} consecutive free ports`);
}

/** A pause that never keeps the test process alive by itself. */
function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms).unref());
}
