// What global-setup hands the test files: where the stack answers and how to sign in.

export const SERVICE_NAMES = ['orchestrator', 'logging', 'echo-agent', 'renderctl', 'sandbox', 'queue-gateway'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export interface StackInfo {
  /** Where the launcher serves the dashboard, e.g. http://127.0.0.1:7206. */
  dashboard: string;
  services: Record<ServiceName, { url: string; pid: number }>;
  user: string;
  pass: string;
  internalKey: string;
  /** Base URL (…/v1) of the Render API fake renderctl talks to, when it runs. */
  renderApi: string | null;
  /** The container engine the sandbox uses, when there is one. */
  dockerHost: string | null;
  /** An image the container engine has, for sandbox sessions. */
  sandboxImage: string | null;
  stateDir: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    stack: StackInfo;
  }
}
