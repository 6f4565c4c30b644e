import { signal } from '@preact/signals';

import { credentials, encodeBasic } from '../auth';
import { serviceUrl } from '../config';

// The orchestrator's WebSocket: task updates and log records, live. One connection for the
// whole app; views register listeners. After a drop it reconnects with jittered exponential
// backoff and tells `onReconnect` listeners, which refetch what they show so nothing sent
// while the socket was down is missed.

export interface TaskFrame {
  type: 'task';
  event: Record<string, unknown> & { kind?: string; at?: string; actor?: string };
  task: Record<string, unknown> & { id: string; status: string; kind: string; version: number };
}

export interface LogFrame {
  type: 'log';
  log: Record<string, unknown> & { message?: string; level?: string; service?: string; ts?: string };
}

export type Frame = TaskFrame | LogFrame;

export type LiveState = 'idle' | 'connecting' | 'open' | 'reconnecting';

export const liveState = signal<LiveState>('idle');
/** Seconds until the next attempt while reconnecting. */
export const retryIn = signal<number>(0);

const INITIAL_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 15_000;

export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** attempt);
  // Full jitter, with a floor so a flapping service is not hammered.
  return Math.max(INITIAL_BACKOFF_MS / 2, Math.round(ceiling * random()));
}

type FrameListener = (frame: Frame) => void;
type ReconnectListener = () => void;

const frameListeners = new Set<FrameListener>();
const reconnectListeners = new Set<ReconnectListener>();

let socket: WebSocket | null = null;
let attempt = 0;
let timer: ReturnType<typeof setTimeout> | null = null;
let wanted = false;
let everOpened = false;

export function wsUrl(base: string, auth: string): string {
  const url = new URL('/ws', base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('auth', auth);
  return url.toString();
}

export function connectLive(): void {
  wanted = true;
  if (socket || timer) return;
  open();
}

export function disconnectLive(): void {
  wanted = false;
  everOpened = false;
  attempt = 0;
  if (timer) clearTimeout(timer);
  timer = null;
  socket?.close(1000, 'signed out');
  socket = null;
  liveState.value = 'idle';
}

function open(): void {
  const current = credentials.value;
  if (!wanted || !current) return;
  liveState.value = everOpened || attempt > 0 ? 'reconnecting' : 'connecting';
  const ws = new WebSocket(wsUrl(serviceUrl('orchestrator'), encodeBasic(current)));
  socket = ws;
  ws.onopen = () => {
    const reconnected = everOpened || attempt > 0;
    everOpened = true;
    attempt = 0;
    liveState.value = 'open';
    if (reconnected) for (const listener of reconnectListeners) listener();
  };
  ws.onmessage = (message) => {
    let frame: unknown;
    try {
      frame = JSON.parse(String(message.data));
    } catch {
      return;
    }
    const type = (frame as { type?: string })?.type;
    if (type !== 'task' && type !== 'log') return;
    for (const listener of frameListeners) listener(frame as Frame);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    if (!wanted) return;
    const delay = backoffDelay(attempt++);
    liveState.value = 'reconnecting';
    retryIn.value = Math.ceil(delay / 1000);
    timer = setTimeout(() => {
      timer = null;
      open();
    }, delay);
  };
}

export function onFrame(listener: FrameListener): () => void {
  frameListeners.add(listener);
  return () => frameListeners.delete(listener);
}

export function onReconnect(listener: ReconnectListener): () => void {
  reconnectListeners.add(listener);
  return () => reconnectListeners.delete(listener);
}
