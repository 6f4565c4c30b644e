import { authorizationHeader } from '../auth';
import { serviceUrl, type ServiceName } from '../config';

/** An RFC 9457 problem document as the services send it. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: { field?: string; pointer?: string; message?: string; reason?: string }[];
  [key: string]: unknown;
}

export type Failure = 'http' | 'unreachable' | 'timeout';

export class ApiError extends Error {
  constructor(
    readonly service: ServiceName,
    readonly failure: Failure,
    readonly status: number,
    readonly problem: Problem | null,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The service did not answer at all (stopped, crashed, unreachable). */
  get isDown(): boolean {
    return this.failure !== 'http';
  }
}

export const DEFAULT_TIMEOUT_MS = 10_000;

export interface RequestOptions {
  method?: string;
  /** Sent as JSON. */
  body?: unknown;
  query?: Record<string, string | number | boolean | string[] | undefined | null>;
  headers?: Record<string, string>;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export function buildQuery(query: RequestOptions['query']): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue;
    if (Array.isArray(value)) {
      for (const item of value) params.append(key, item);
    } else {
      params.append(key, String(value));
    }
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

export interface ApiResponse<T> {
  status: number;
  headers: Headers;
  body: T;
}

/** One request to a service, authenticated with the operator's credentials. */
export async function request<T>(
  service: ServiceName,
  path: string,
  options: RequestOptions = {},
): Promise<ApiResponse<T>> {
  const url = `${serviceUrl(service)}${path}${buildQuery(options.query)}`;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const headers: Record<string, string> = {
    Accept: 'application/json',
    ...authorizationHeader(),
    ...options.headers,
  };
  let body: string | undefined;
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  let response: Response;
  try {
    response = await fetch(url, { method: options.method ?? 'GET', headers, body, signal });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    const timedOut = timeout.aborted;
    throw new ApiError(
      service,
      timedOut ? 'timeout' : 'unreachable',
      0,
      null,
      timedOut
        ? `${service} did not answer within ${Math.round(timeoutMs / 1000)}s`
        : `${service} is unreachable (${serviceUrl(service)})`,
    );
  }
  const text = await response.text();
  let parsed: unknown = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (!response.ok) {
    const problem = parsed && typeof parsed === 'object' ? (parsed as Problem) : null;
    throw new ApiError(service, 'http', response.status, problem, describe(service, response.status, problem));
  }
  return { status: response.status, headers: response.headers, body: parsed as T };
}

export async function api<T>(service: ServiceName, path: string, options?: RequestOptions): Promise<T> {
  return (await request<T>(service, path, options)).body;
}

function describe(service: ServiceName, status: number, problem: Problem | null): string {
  if (status === 401) return 'Wrong user name or password';
  const title = problem?.detail || problem?.title || `HTTP ${status}`;
  return `${service}: ${title}`;
}

/** Field-level messages of a problem, keyed by field name or JSON pointer. */
export function fieldErrors(problem: Problem | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const error of problem?.errors ?? []) {
    const key = error.field ?? error.pointer ?? '';
    const message = error.message ?? error.reason ?? 'invalid';
    out[key] = out[key] ? `${out[key]}; ${message}` : message;
  }
  return out;
}
