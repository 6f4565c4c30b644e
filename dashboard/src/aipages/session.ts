// One browser's view of one page: rebuilt from the gateway's page state, then kept current by
// long polls, in sequence order. Claim-checked bodies and routed datasets are fetched by
// reference before their directive is applied. Errors that may pass (the gateway down, a
// timeout, a 5xx) are retried with backoff from where the page was; an unknown page or a
// refused token stops the session.

import { ApiError } from '../api/http';
import { parseDataset } from './dataset';
import { decodePoll, decodeState } from './decode';
import type { BlobRef, Envelope, Table } from './model';
import { type PageModel, type Resolved, apply, fromState, neededBodies } from './reducer';

export interface BlobContent {
  bytes: ArrayBuffer;
  contentType: string;
}

/** The gateway's browser side for one page. */
export interface Transport {
  state(signal: AbortSignal): Promise<unknown>;
  poll(after: number, waitSecs: number, signal: AbortSignal): Promise<unknown>;
  blob(id: string, signal: AbortSignal): Promise<BlobContent>;
}

export type Connection = 'loading' | 'live' | 'reconnecting' | 'failed';

export interface Snapshot {
  connection: Connection;
  model: PageModel | null;
  error?: Error;
  /** When the next attempt starts (epoch ms), while reconnecting. */
  retryAt?: number;
}

export interface SessionOptions {
  /** Seconds a poll waits for a directive; the gateway caps it below its request timeout. */
  waitSecs?: number;
  /** Milliseconds to wait before attempt `n` (1-based) after a failure. */
  backoff?: (attempt: number) => number;
  now?: () => number;
}

export const DEFAULT_WAIT_SECS = 25;

export function defaultBackoff(attempt: number): number {
  return Math.min(15_000, 1000 * 2 ** (attempt - 1));
}

/** Failures that will not go away by asking again. */
export function isFatal(error: unknown): boolean {
  if (error instanceof InvalidResponse) return false;
  if (!(error instanceof ApiError)) return true;
  return !error.isDown && error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 429;
}

/** The gateway answered something this page cannot read; asking again may help. */
export class InvalidResponse extends Error {}

/** A body that cannot be used as it is; the component shows why. */
class Unusable extends Error {}

function hex(buffer: ArrayBuffer): string {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function verify(content: BlobContent, ref: BlobRef): Promise<void> {
  const subtle = globalThis.crypto?.subtle;
  // Outside a secure context there is no digest; the bytes are then taken as they come.
  if (!subtle || !ref.sha256) return;
  const digest = hex(await subtle.digest('SHA-256', content.bytes));
  if (digest !== ref.sha256.toLowerCase()) throw new Unusable(`blob ${ref.blobId} does not match its SHA-256`);
}

function unusableBlob(error: unknown, id: string): Error {
  if (error instanceof ApiError && error.status === 404) return new Unusable(`blob ${id} is not available to this page`);
  return error instanceof Error ? error : new Error(String(error));
}

export class PageSession {
  private snapshot: Snapshot = { connection: 'loading', model: null };
  private listeners = new Set<(snapshot: Snapshot) => void>();
  private controller: AbortController | null = null;
  private wake: (() => void) | null = null;
  private datasets = new Map<string, Promise<Table>>();
  private readonly waitSecs: number;
  private readonly backoff: (attempt: number) => number;
  private readonly now: () => number;

  constructor(
    private readonly transport: Transport,
    options: SessionOptions = {},
  ) {
    this.waitSecs = options.waitSecs ?? DEFAULT_WAIT_SECS;
    this.backoff = options.backoff ?? defaultBackoff;
    this.now = options.now ?? Date.now;
  }

  get current(): Snapshot {
    return this.snapshot;
  }

  subscribe(listener: (snapshot: Snapshot) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Starts (or, after a fatal failure, restarts) following the page. */
  start(): void {
    if (this.controller && !this.controller.signal.aborted) return;
    const controller = new AbortController();
    this.controller = controller;
    void this.run(controller.signal);
  }

  stop(): void {
    this.controller?.abort();
    this.controller = null;
    this.wake?.();
  }

  /** Skips the rest of a backoff wait. */
  retryNow(): void {
    if (this.snapshot.connection === 'failed') {
      this.controller = null;
      this.start();
    } else {
      this.wake?.();
    }
  }

  private emit(next: Snapshot): void {
    this.snapshot = next;
    for (const listener of this.listeners) listener(next);
  }

  private async run(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    if (this.snapshot.connection === 'failed') this.emit({ connection: 'loading', model: this.snapshot.model });
    while (!signal.aborted) {
      try {
        const model = this.snapshot.model;
        if (!model) {
          const state = decodeState(await this.transport.state(signal));
          if (!state.ok) throw new InvalidResponse(`The page state is not readable: ${state.error}`);
          const resolved = await this.resolveAll(state.value.components, signal);
          if (signal.aborted) return;
          this.emit({ connection: 'live', model: fromState(state.value.seq, resolved) });
        } else {
          // After a failure, a poll that does not wait tells at once whether the gateway is back.
          const live = this.snapshot.connection === 'live';
          const poll = decodePoll(await this.transport.poll(model.seq, live ? this.waitSecs : 0, signal));
          if (!poll.ok) throw new InvalidResponse(`A poll answer is not readable: ${poll.error}`);
          let next = model;
          if (poll.value.messages.length > 0) {
            const resolved = await this.resolveAll(poll.value.messages, signal);
            if (signal.aborted) return;
            for (const message of resolved) next = apply(next, message);
          }
          if (next !== model || !live) this.emit({ connection: 'live', model: next });
        }
        attempt = 0;
      } catch (error) {
        if (signal.aborted) return;
        const cause = error instanceof Error ? error : new Error(String(error));
        if (isFatal(error)) {
          this.emit({ connection: 'failed', model: this.snapshot.model, error: cause });
          this.controller = null;
          return;
        }
        attempt += 1;
        const delay = this.backoff(attempt);
        this.emit({ connection: 'reconnecting', model: this.snapshot.model, error: cause, retryAt: this.now() + delay });
        await this.pause(delay, signal);
      }
    }
  }

  private pause(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((done) => {
      const finish = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', finish);
        this.wake = null;
        done();
      };
      const timer = setTimeout(finish, ms);
      signal.addEventListener('abort', finish);
      this.wake = finish;
    });
  }

  /** Reads every body the batch needs, all at once, and hands them back in order. */
  private async resolveAll(messages: Envelope[], signal: AbortSignal): Promise<Resolved[]> {
    const needed = neededBodies(messages);
    return Promise.all(
      messages.map((message) =>
        needed.has(message.seq)
          ? this.resolve(message, signal)
          : { seq: message.seq, to: message.to, directive: message.directive, superseded: true },
      ),
    );
  }

  private async resolve(message: Envelope, signal: AbortSignal): Promise<Resolved> {
    const resolved: Resolved = { seq: message.seq, to: message.to, directive: message.directive };
    if ('inline' in message.body) {
      resolved.body = message.body.inline;
    } else {
      const ref = message.body.blob;
      try {
        const content = await this.transport.blob(ref.blobId, signal).catch((error: unknown) => {
          throw isFatal(error) && !signal.aborted ? unusableBlob(error, ref.blobId) : error;
        });
        await verify(content, ref);
        try {
          resolved.body = JSON.parse(new TextDecoder().decode(content.bytes));
        } catch {
          throw new Unusable(`the stored body (blob ${ref.blobId}) is not JSON`);
        }
      } catch (error) {
        if (!(error instanceof Unusable)) throw error;
        resolved.failure = error.message;
        return resolved;
      }
    }
    const dataset = datasetBlob(message.directive, resolved.body);
    if (dataset) {
      try {
        resolved.dataset = { table: await this.dataset(dataset, signal) };
      } catch (error) {
        if (!(error instanceof Unusable)) throw error;
        resolved.dataset = { error: error.message };
      }
    }
    return resolved;
  }

  /** A stored dataset as columns; each is fetched once per session. */
  private dataset(id: string, signal: AbortSignal): Promise<Table> {
    let pending = this.datasets.get(id);
    if (!pending) {
      pending = (async () => {
        const content = await this.transport.blob(id, signal).catch((error: unknown) => {
          throw isFatal(error) && !signal.aborted ? unusableBlob(error, id) : error;
        });
        try {
          return parseDataset(new TextDecoder().decode(content.bytes), content.contentType);
        } catch (error) {
          throw new Unusable(`dataset ${id}: ${error instanceof Error ? error.message : String(error)}`);
        }
      })();
      this.datasets.set(id, pending);
      // Only a dataset that was read (or can never be) stays cached; a failed fetch is retried.
      pending.catch((error: unknown) => {
        if (!(error instanceof Unusable)) this.datasets.delete(id);
      });
    }
    return pending;
  }
}

function datasetBlob(directive: string, body: unknown): string | null {
  if (directive !== 'dataset.route' || typeof body !== 'object' || body === null) return null;
  const dataset = (body as { dataset?: unknown }).dataset;
  if (typeof dataset !== 'object' || dataset === null) return null;
  const blobId = (dataset as { blobId?: unknown }).blobId;
  return typeof blobId === 'string' ? blobId : null;
}
