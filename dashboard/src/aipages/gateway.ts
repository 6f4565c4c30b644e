// The queue gateway's browser side for one page, as the operator (Basic Auth) or with the
// page's sharing token (`Authorization: Bearer`).

import { ApiError, api } from '../api/http';
import { authorizationHeader } from '../auth';
import { serviceUrl } from '../config';
import type { EventIn } from './model';
import type { BlobContent, Transport } from './session';

const SERVICE = 'queue-gateway';
/** A poll's request outlives its wait by this much, so an answered wait is never cut short. */
const POLL_MARGIN_MS = 10_000;
/** Datasets can be tens of megabytes. */
const BLOB_TIMEOUT_MS = 120_000;

export interface PageClient extends Transport {
  sendEvent(event: EventIn): Promise<{ id: string }>;
}

export function pagePath(page: string): string {
  return `/pages/${encodeURIComponent(page)}`;
}

export function pageClient(page: string, token?: string): PageClient {
  const headers = token ? { Authorization: `Bearer ${token}` } : undefined;
  const base = pagePath(page);
  return {
    state: (signal) => api<unknown>(SERVICE, `${base}/state`, { headers, signal }),
    poll: (after, waitSecs, signal) =>
      api<unknown>(SERVICE, `${base}/poll`, {
        query: { after, wait: waitSecs },
        headers,
        signal,
        timeoutMs: waitSecs * 1000 + POLL_MARGIN_MS,
      }),
    blob: (id, signal) => fetchBlob(`${base}/blobs/${encodeURIComponent(id)}`, headers, signal),
    sendEvent: (event) => api<{ id: string }>(SERVICE, `${base}/events`, { method: 'POST', body: event, headers }),
  };
}

/** A blob's raw bytes (not parsed: it may be CSV, and its SHA-256 is checked on the bytes). A
 * presigned redirect (S3 backend) is followed by the browser. */
async function fetchBlob(path: string, headers: Record<string, string> | undefined, signal: AbortSignal): Promise<BlobContent> {
  const timeout = AbortSignal.timeout(BLOB_TIMEOUT_MS);
  let response: Response;
  try {
    response = await fetch(`${serviceUrl(SERVICE)}${path}`, {
      headers: { ...authorizationHeader(), ...headers },
      signal: AbortSignal.any([signal, timeout]),
    });
  } catch (error) {
    if (signal.aborted) throw error;
    const timedOut = timeout.aborted;
    throw new ApiError(
      SERVICE,
      timedOut ? 'timeout' : 'unreachable',
      0,
      null,
      timedOut ? `${SERVICE} did not send the blob within ${BLOB_TIMEOUT_MS / 1000}s` : `${SERVICE} is unreachable (${serviceUrl(SERVICE)})`,
    );
  }
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      // not a problem document
    }
    const detail = problem && typeof problem === 'object' ? (problem as { detail?: string }).detail : undefined;
    throw new ApiError(SERVICE, 'http', response.status, problem, `${SERVICE}: ${detail ?? `HTTP ${response.status}`}`);
  }
  return { bytes: await response.arrayBuffer(), contentType: response.headers.get('content-type') ?? '' };
}
