import { createHash } from 'node:crypto';

import { afterEach, describe, expect, it } from 'vitest';

import { ApiError } from '../api/http';
import type { Envelope } from './model';
import { PageSession, type BlobContent, type Snapshot, type Transport } from './session';

let counter = 0;
function envelope(seq: number, to: string, directive: string, body: Envelope['body']): Envelope {
  counter += 1;
  return { id: `id-${counter}`, page: 'p', to, from: 'ai', directive, body, seq, sentAt: '2026-01-01T00:00:00Z' };
}

function inline(seq: number, to: string, directive: string, body: unknown): Envelope {
  return envelope(seq, to, directive, { inline: body });
}

const down = () => new ApiError('queue-gateway', 'unreachable', 0, null, 'queue-gateway is unreachable');
const http = (status: number) => new ApiError('queue-gateway', 'http', status, { status }, `HTTP ${status}`);

function bytes(text: string): ArrayBuffer {
  const encoded = new TextEncoder().encode(text);
  return encoded.buffer.slice(encoded.byteOffset, encoded.byteOffset + encoded.byteLength) as ArrayBuffer;
}

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

/** A gateway whose answers the test hands out one at a time. */
class FakeGateway implements Transport {
  states: (() => unknown)[] = [];
  polls: { after: number; wait: number; answer: (value: unknown) => void; fail: (error: unknown) => void }[] = [];
  blobs = new Map<string, BlobContent | Error>();
  blobReads: string[] = [];

  async state(): Promise<unknown> {
    const next = this.states.shift();
    if (!next) throw new Error('no state answer prepared');
    return next();
  }

  poll(after: number, wait: number, signal: AbortSignal): Promise<unknown> {
    return new Promise((answer, fail) => {
      this.polls.push({ after, wait, answer, fail });
      signal.addEventListener('abort', () => fail(new DOMException('aborted', 'AbortError')));
    });
  }

  async blob(id: string): Promise<BlobContent> {
    this.blobReads.push(id);
    const content = this.blobs.get(id);
    if (!content) throw http(404);
    if (content instanceof Error) throw content;
    return content;
  }

  /** The next poll the session makes. */
  async nextPoll() {
    for (let i = 0; i < 200 && this.polls.length === 0; i++) await new Promise((r) => setTimeout(r, 1));
    const poll = this.polls.shift();
    if (!poll) throw new Error('the session did not poll');
    return poll;
  }
}

async function until(session: PageSession, check: (s: Snapshot) => boolean): Promise<Snapshot> {
  for (let i = 0; i < 500; i++) {
    if (check(session.current)) return session.current;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error(`session stuck in ${JSON.stringify({ ...session.current, model: undefined })}`);
}

const sessions: PageSession[] = [];
function follow(gateway: FakeGateway): PageSession {
  const session = new PageSession(gateway, { waitSecs: 25, backoff: () => 5 });
  sessions.push(session);
  session.start();
  return session;
}

afterEach(() => {
  for (const session of sessions.splice(0)) session.stop();
});

describe('PageSession', () => {
  it('rebuilds from the state, then long-polls after its seq and applies what arrives in order', async () => {
    const gateway = new FakeGateway();
    gateway.states.push(() => ({ seq: 3, components: [inline(2, 'text-component-a', 'text.set', { text: 'from state' })] }));
    const session = follow(gateway);

    const first = await gateway.nextPoll();
    expect(session.current.connection).toBe('live');
    expect(session.current.model?.components['text-component-a'].content).toMatchObject({ text: { text: 'from state' } });
    expect([first.after, first.wait]).toEqual([3, 25]);

    first.answer({
      messages: [inline(4, 'text-component-a', 'text.set', { text: 'four' }), inline(5, 'text-component-a', 'text.set', { text: 'five' })],
      next: 5,
    });
    const second = await gateway.nextPoll();
    expect(second.after).toBe(5);
    expect(session.current.model?.components['text-component-a'].content).toMatchObject({ text: { text: 'five' } });
  });

  it('reconnects with backoff after the gateway goes away and continues where it was', async () => {
    const gateway = new FakeGateway();
    gateway.states.push(() => ({ seq: 1, components: [inline(1, 'text-component-a', 'text.set', { text: 'one' })] }));
    const session = follow(gateway);
    (await gateway.nextPoll()).fail(down());
    await until(session, (s) => s.connection === 'reconnecting');
    expect(session.current.error?.message).toMatch(/unreachable/);
    // The page keeps what it showed.
    expect(session.current.model?.components['text-component-a']).toBeDefined();

    // The first poll after a failure does not wait, so the page learns at once that it is back.
    const probe = await gateway.nextPoll();
    expect([probe.after, probe.wait]).toEqual([1, 0]);
    probe.answer({ messages: [inline(2, 'text-component-a', 'text.set', { text: 'two' })], next: 2 });
    await until(session, (s) => s.connection === 'live');
    expect(session.current.model?.components['text-component-a'].content).toMatchObject({ text: { text: 'two' } });
    const next = await gateway.nextPoll();
    expect([next.after, next.wait]).toEqual([2, 25]);
  });

  it('retries the first load while the gateway is down', async () => {
    const gateway = new FakeGateway();
    gateway.states.push(
      () => {
        throw down();
      },
      () => ({ seq: 0, components: [] }),
    );
    const session = follow(gateway);
    await gateway.nextPoll();
    expect(session.current).toMatchObject({ connection: 'live', model: { seq: 0 } });
  });

  it('stops on an unknown page or a refused token, and starts again on request', async () => {
    const gateway = new FakeGateway();
    gateway.states.push(() => {
      throw http(404);
    });
    const session = follow(gateway);
    const failed = await until(session, (s) => s.connection === 'failed');
    expect((failed.error as ApiError).status).toBe(404);
    expect(gateway.polls).toHaveLength(0);

    gateway.states.push(() => ({ seq: 0, components: [] }));
    session.retryNow();
    await gateway.nextPoll();
    expect(session.current.connection).toBe('live');
  });

  it('stops polling when stopped', async () => {
    const gateway = new FakeGateway();
    gateway.states.push(() => ({ seq: 0, components: [] }));
    const session = follow(gateway);
    await gateway.nextPoll();
    session.stop();
    await new Promise((r) => setTimeout(r, 20));
    expect(gateway.polls).toHaveLength(0);
  });

  it('reads claim-checked bodies and routed datasets by reference, checking the SHA-256', async () => {
    const gateway = new FakeGateway();
    const figure = JSON.stringify({ data: [{ type: 'scatter' }], layout: { title: { text: 'Big' } } });
    gateway.blobs.set('11111111-1111-4111-8111-111111111111', { bytes: bytes(figure), contentType: 'application/json' });
    gateway.blobs.set('22222222-2222-4222-8222-222222222222', { bytes: bytes('x,y\n1,2\n2,4\n3,8\n'), contentType: 'text/csv' });
    gateway.blobs.set('33333333-3333-4333-8333-333333333333', { bytes: bytes('{"data":[],"layout":{}}'), contentType: 'application/json' });
    gateway.states.push(() => ({
      seq: 3,
      components: [
        envelope(1, 'plotly-panel-a', 'plotly.figure', {
          blob: { blobId: '11111111-1111-4111-8111-111111111111', sha256: sha(figure), size: figure.length, contentType: 'application/json' },
        }),
        inline(2, 'dataset-router', 'dataset.route', {
          dataset: { blobId: '22222222-2222-4222-8222-222222222222' },
          to: ['plotly-panel-a'],
          mapping: { x: 'x', y: 'y' },
        }),
        envelope(3, 'plotly-panel-b', 'plotly.figure', {
          blob: { blobId: '33333333-3333-4333-8333-333333333333', sha256: sha('something else'), size: 10, contentType: 'application/json' },
        }),
      ],
    }));
    const session = follow(gateway);
    await gateway.nextPoll();
    const model = session.current.model!;
    expect(model.components['plotly-panel-a'].content).toMatchObject({ type: 'figure', figure: { layout: { title: { text: 'Big' } } } });
    expect(model.route?.table).toEqual({ columns: { x: [1, 2, 3], y: [2, 4, 8] }, length: 3 });
    expect(model.components['plotly-panel-b'].content).toEqual({
      type: 'failed',
      directive: 'plotly.figure',
      reason: 'blob 33333333-3333-4333-8333-333333333333 does not match its SHA-256',
    });
  });

  it('shows a blob the page may not read on its component, and retries one the gateway failed to send', async () => {
    const gateway = new FakeGateway();
    const id = '44444444-4444-4444-8444-444444444444';
    gateway.blobs.set(id, http(503));
    gateway.states.push(() => ({
      seq: 2,
      components: [
        inline(1, 'dataset-router', 'dataset.route', { dataset: { blobId: id }, to: ['plotly-panel-a'], mapping: { y: 'y' } }),
        inline(2, 'plotly-panel-a', 'plotly.figure', { data: [], layout: {} }),
      ],
    }));
    gateway.states.push(() => ({
      seq: 3,
      components: [inline(3, 'dataset-router', 'dataset.route', { dataset: { blobId: '55555555-5555-4555-8555-555555555555' }, to: ['plotly-panel-a'], mapping: { y: 'y' } })],
    }));
    const session = follow(gateway);
    // The 503 is passing: the whole state is read again rather than the page shown without its data.
    await until(session, (s) => s.connection === 'reconnecting');
    await gateway.nextPoll();
    expect(session.current.model?.route).toMatchObject({ error: 'blob 55555555-5555-4555-8555-555555555555 is not available to this page' });
    expect(gateway.blobReads).toEqual([id, '55555555-5555-4555-8555-555555555555']);
  });

  it('does not fetch the blobs of directives a later one in the same batch overwrites', async () => {
    const gateway = new FakeGateway();
    gateway.states.push(() => ({ seq: 0, components: [] }));
    const session = follow(gateway);
    const poll = await gateway.nextPoll();
    const ref = (blobId: string) => ({ blob: { blobId, sha256: '', size: 2, contentType: 'application/json' } });
    gateway.blobs.set('66666666-6666-4666-8666-666666666666', { bytes: bytes('{"text":"final"}'), contentType: 'application/json' });
    poll.answer({
      messages: [
        envelope(1, 'text-component-a', 'text.set', ref('77777777-7777-4777-8777-777777777777')),
        envelope(2, 'text-component-a', 'text.set', ref('66666666-6666-4666-8666-666666666666')),
      ],
      next: 2,
    });
    await gateway.nextPoll();
    expect(gateway.blobReads).toEqual(['66666666-6666-4666-8666-666666666666']);
    expect(session.current.model?.components['text-component-a'].content).toMatchObject({ text: { text: 'final' } });
  });

  it('treats an unreadable answer as passing and asks again', async () => {
    const gateway = new FakeGateway();
    gateway.states.push(
      () => ({ seq: 'x' }),
      () => ({ seq: 0, components: [] }),
    );
    const session = follow(gateway);
    await gateway.nextPoll();
    expect(session.current.connection).toBe('live');
  });
});
