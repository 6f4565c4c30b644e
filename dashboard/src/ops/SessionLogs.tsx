import { useEffect, useRef, useState } from 'preact/hooks';

import { credentials, encodeBasic } from '../auth';
import { serviceUrl } from '../config';
import { backoffDelay } from '../api/live';
import { logsSocketUrl } from './sandbox';
import type { LogLine } from './types';

const KEEP_LINES = 2_000;

type StreamState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/**
 * A session's log, live: the sandbox's WebSocket (credentials as `?auth=`, browsers cannot set
 * headers on WebSockets). After a drop it reconnects and asks only for the lines after the
 * last one it has.
 */
export function SessionLogs({ sessionId, live }: { sessionId: string; live: boolean }) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [state, setState] = useState<StreamState>('connecting');
  const [follow, setFollow] = useState(true);
  const listRef = useRef<HTMLOListElement>(null);
  const lastSeq = useRef(0);

  useEffect(() => {
    setLines([]);
    lastSeq.current = 0;
  }, [sessionId]);

  useEffect(() => {
    const current = credentials.value;
    if (!live || !current) {
      setState('closed');
      return;
    }
    let socket: WebSocket | null = null;
    let timer: ReturnType<typeof setTimeout> | null = null;
    let attempt = 0;
    let stopped = false;

    const connect = () => {
      setState(attempt === 0 ? 'connecting' : 'reconnecting');
      const ws = new WebSocket(logsSocketUrl(serviceUrl('sandbox'), sessionId, encodeBasic(current), lastSeq.current));
      socket = ws;
      ws.onopen = () => {
        attempt = 0;
        setState('open');
      };
      ws.onmessage = (message) => {
        let line: LogLine;
        try {
          line = JSON.parse(String(message.data)) as LogLine;
        } catch {
          return;
        }
        if (typeof line.seq === 'number') {
          if (line.seq <= lastSeq.current) return;
          lastSeq.current = line.seq;
        }
        setLines((previous) => {
          const next = previous.length >= KEEP_LINES ? previous.slice(previous.length - KEEP_LINES + 1) : previous.slice();
          next.push(line);
          return next;
        });
      };
      ws.onclose = () => {
        if (stopped || socket !== ws) return;
        socket = null;
        setState('reconnecting');
        timer = setTimeout(connect, backoffDelay(attempt++));
      };
    };
    connect();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      socket?.close(1000, 'left the page');
    };
  }, [sessionId, live]);

  useEffect(() => {
    const list = listRef.current;
    if (follow && list) list.scrollTop = list.scrollHeight;
  }, [lines, follow]);

  const label =
    state === 'open' ? 'live' : state === 'connecting' ? 'connecting…' : state === 'reconnecting' ? 'reconnecting…' : 'not streaming';
  return (
    <div>
      <div class="row" style={{ alignItems: 'center', marginBottom: '0.5rem' }}>
        <span class={`badge badge-${state === 'open' ? 'ok' : state === 'closed' ? 'muted' : 'warn'}`} role="status" aria-live="polite">
          log stream {label}
        </span>
        <label class="inline">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} /> Follow new lines
        </label>
        <button type="button" onClick={() => setLines([])} disabled={lines.length === 0}>
          Clear
        </button>
      </div>
      {!live && <p class="muted">The log streams while the session is ready.</p>}
      {live && lines.length === 0 && <p class="muted">No log lines yet.</p>}
      {lines.length > 0 && (
        <ol class="log-stream" ref={listRef} aria-label="Session log" tabIndex={0} data-testid="session-logs">
          {lines.map((line, index) => (
            <li key={line.seq ?? `x${index}`} class={`log-${line.stream}`}>
              <span class="log-ts">{line.ts ? new Date(line.ts).toLocaleTimeString() : ''}</span>
              <span class="log-stream-name">{line.stream}</span>
              <span>{line.line}</span>
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}
