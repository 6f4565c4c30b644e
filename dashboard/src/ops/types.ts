// The shapes the operations views read, as the services serialise them.

/** `GET /agents` on the orchestrator. */
export interface Agent {
  name: string;
  transport: 'http' | 'sqs';
  baseUrl: string | null;
  queueUrl: string | null;
  kinds: { kind: string; payloadSchema: unknown }[];
  registeredAt: string;
  lastHeartbeat: string | null;
  heartbeatStatus: string | null;
  live: boolean;
}

export type KeyStatus = 'ok' | 'defaulted' | 'unset' | 'missing' | 'invalid';

/** One variable of `GET /config/validate`. Secret values are never included. */
export interface KeyReport {
  key: string;
  status: KeyStatus;
  reason?: string;
  value?: unknown;
  secret: boolean;
  required: boolean;
  description: string;
}

export interface ConfigReport {
  service: string;
  valid: boolean;
  problems: number;
  keys: KeyReport[];
}

/** `GET /health/ready` when ready. */
export interface ReadyOut {
  status: string;
  database: string;
  checks?: Record<string, string>;
}

// renderctl

export interface RenderService {
  id: string;
  name: string;
  type: string;
  slug: string;
  repo?: string;
  branch?: string;
  autoDeploy: string;
  rootDir: string;
  dashboardUrl: string;
  suspended: string;
  createdAt: string;
  updatedAt: string;
  serviceDetails: {
    url?: string;
    plan?: string;
    region?: string;
    runtime?: string;
    healthCheckPath?: string;
    numInstances?: number;
  };
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface Deploy {
  id: string;
  status?: string;
  trigger?: string;
  createdAt?: string;
  updatedAt?: string;
  finishedAt?: string;
}

export interface DeployOut {
  serviceId: string;
  deploy: Deploy | null;
}

export interface EnvChange {
  key: string;
  change: 'add' | 'change' | 'remove';
  source: string;
}

export interface FieldChange {
  field: string;
  from: unknown;
  to: unknown;
}

export type PlanStep =
  | { action: 'createDatabase'; name: string; plan: string; version: string }
  | { action: 'createEnvGroup'; name: string; env: EnvChange[] }
  | { action: 'updateEnvGroup'; name: string; groupId: string; env: EnvChange[] }
  | { action: 'createService'; name: string; serviceType: string; settings: Record<string, unknown>; env: EnvChange[] }
  | { action: 'updateService'; name: string; serviceId: string; fields: FieldChange[] }
  | { action: 'updateEnv'; name: string; serviceId: string; env: EnvChange[] }
  | { action: 'linkEnvGroup'; group: string; service: string; groupId?: string; serviceId?: string }
  | { action: 'deploy'; name: string; serviceId: string; reason: string };

export interface Plan {
  steps: PlanStep[];
  warnings: string[];
}

export interface ApplyOut {
  dryRun: boolean;
  plan: Plan;
  applied?: { action: string; target: string; result: unknown }[];
  rounds?: number;
  remaining?: Plan;
}

export interface Change {
  id: number;
  at: string;
  actor: string;
  origin: string;
  action: string;
  target: string;
  targetId: string | null;
  before: unknown;
  after: unknown;
  ok: boolean;
  status: number | null;
  answer: unknown;
}

export interface Finding {
  deployId: string;
  serviceId: string;
  serviceName: string;
  failure: string;
  action: string;
  fixDeployId: string | null;
  detail: string;
  seenAt: string;
  updatedAt: string;
}

// sandbox

export interface SessionState {
  sessionId: string;
  status: string;
  statusReason: string | null;
  template: string;
  previewUrl: string;
  container: { id: string | null; port: number | null };
  snapshot: {
    manifest: string | null;
    packageManager: string | null;
    framework: string | null;
    devCommand: string | null;
    port: number | null;
  };
  dev: { command: string; port: number; running: boolean } | null;
  oomKills: number;
  resources: { memoryBytes: number; memoryLimit: number; pids: number; cpuTotalNs: number } | null;
  createdAt: string;
  lastActiveAt: string;
}

export interface SessionCreated {
  sessionId: string;
  previewUrl: string;
}

export interface FsEntry {
  name: string;
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
}

export interface FileOut {
  path: string;
  content: string;
  size: number;
  truncated: boolean;
}

export interface LogLine {
  seq?: number;
  ts?: string;
  stream: string;
  line: string;
}
