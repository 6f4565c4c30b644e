// A blueprint plan (renderctl's `POST /render/blueprint/apply`) as a person reads it: the
// steps grouped by the resource they touch, each step in words. Plans carry env keys and
// where their values come from, never the values.

import type { EnvChange, PlanStep } from './types';

export type ResourceKind = 'service' | 'database' | 'env group';

export interface ResourceGroup {
  kind: ResourceKind;
  name: string;
  steps: PlanStep[];
}

/** The resource a step changes. Linking an env group to a service is listed under the service. */
export function stepResource(step: PlanStep): { kind: ResourceKind; name: string } {
  switch (step.action) {
    case 'createDatabase':
      return { kind: 'database', name: step.name };
    case 'createEnvGroup':
    case 'updateEnvGroup':
      return { kind: 'env group', name: step.name };
    case 'linkEnvGroup':
      return { kind: 'service', name: step.service };
    default:
      return { kind: 'service', name: step.name };
  }
}

/** Groups in the order their first step appears in the plan (the order apply follows). */
export function groupPlan(steps: readonly PlanStep[]): ResourceGroup[] {
  const groups = new Map<string, ResourceGroup>();
  for (const step of steps) {
    const { kind, name } = stepResource(step);
    const id = `${kind}\u0000${name}`;
    let group = groups.get(id);
    if (!group) {
      group = { kind, name, steps: [] };
      groups.set(id, group);
    }
    group.steps.push(step);
  }
  return [...groups.values()];
}

const ENV_MARK: Record<EnvChange['change'], string> = { add: '+', change: '~', remove: '−' };

export function describeEnv(change: EnvChange): string {
  const source = change.change === 'remove' ? '' : ` (${change.source})`;
  return `${ENV_MARK[change.change] ?? '?'} ${change.key}${source}`;
}

function show(value: unknown): string {
  if (value === null || value === undefined) return '(none)';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Nested settings as dotted names: `envSpecificDetails.dockerfilePath`. */
export function flatten(settings: Record<string, unknown>, prefix = ''): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [field, value] of Object.entries(settings)) {
    const name = prefix ? `${prefix}.${field}` : field;
    if (value && typeof value === 'object' && !Array.isArray(value)) out.push(...flatten(value as Record<string, unknown>, name));
    else out.push([name, value]);
  }
  return out;
}

export interface StepText {
  title: string;
  details: string[];
}

export function describeStep(step: PlanStep): StepText {
  switch (step.action) {
    case 'createDatabase':
      return { title: 'Create Postgres database', details: [`plan ${step.plan}`, `version ${step.version}`] };
    case 'createEnvGroup':
      return { title: `Create env group with ${count(step.env.length, 'variable')}`, details: step.env.map(describeEnv) };
    case 'updateEnvGroup':
      return { title: `Update ${count(step.env.length, 'variable')}`, details: step.env.map(describeEnv) };
    case 'createService':
      return {
        title: `Create ${step.serviceType.replace(/_/g, ' ')}`,
        details: [
          ...flatten(step.settings).map(([field, value]) => `${field}: ${show(value)}`),
          ...step.env.map(describeEnv),
        ],
      };
    case 'updateService':
      return {
        title: `Change ${count(step.fields.length, 'setting')}`,
        details: step.fields.map((field) => `${field.field}: ${show(field.from)} → ${show(field.to)}`),
      };
    case 'updateEnv':
      return { title: `Update ${count(step.env.length, 'env variable')}`, details: step.env.map(describeEnv) };
    case 'linkEnvGroup':
      return {
        title: `Link env group ${step.group}`,
        details: step.groupId && step.serviceId ? [] : ['linked once the group and the service exist'],
      };
    case 'deploy':
      return { title: 'Deploy', details: [step.reason] };
    default: {
      const unknown = step as { action?: string };
      return { title: unknown.action ?? 'Unknown step', details: [] };
    }
  }
}

/** "3 services, 1 database: 9 steps". */
export function planSummary(groups: readonly ResourceGroup[]): string {
  const steps = groups.reduce((sum, group) => sum + group.steps.length, 0);
  if (steps === 0) return 'Render matches render.yaml: nothing to change.';
  const kinds: [ResourceKind, string][] = [
    ['service', 'service'],
    ['database', 'database'],
    ['env group', 'env group'],
  ];
  const parts = kinds
    .map(([kind, noun]) => [groups.filter((group) => group.kind === kind).length, noun] as const)
    .filter(([n]) => n > 0)
    .map(([n, noun]) => count(n, noun));
  return `${parts.join(', ')}: ${count(steps, 'step')}`;
}

export function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
