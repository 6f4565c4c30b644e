import { describe, expect, it } from 'vitest';

import { describeEnv, describeStep, flatten, groupPlan, planSummary } from './plan';
import type { PlanStep } from './types';

const steps: PlanStep[] = [
  { action: 'createDatabase', name: 'db', plan: 'basic_256mb', version: '16' },
  { action: 'createEnvGroup', name: 'shared', env: [{ key: 'LOG_FORMAT', change: 'add', source: 'value' }] },
  {
    action: 'createService',
    name: 'api',
    serviceType: 'web_service',
    settings: { plan: 'starter', envSpecificDetails: { dockerfilePath: './Dockerfile' } },
    env: [{ key: 'DATABASE_URL', change: 'add', source: 'fromDatabase db.connectionString' }],
  },
  { action: 'updateService', name: 'web', serviceId: 'srv-2', fields: [{ field: 'plan', from: 'starter', to: 'standard' }] },
  { action: 'linkEnvGroup', group: 'shared', service: 'api' },
  { action: 'deploy', name: 'web', serviceId: 'srv-2', reason: 'settings changed' },
];

describe('groupPlan', () => {
  it('groups steps by the resource they change, in the order of their first step', () => {
    const groups = groupPlan(steps);
    expect(groups.map((g) => `${g.kind}:${g.name}:${g.steps.map((s) => s.action).join(',')}`)).toEqual([
      'database:db:createDatabase',
      'env group:shared:createEnvGroup',
      'service:api:createService,linkEnvGroup',
      'service:web:updateService,deploy',
    ]);
  });

  it('keeps a service and an env group of the same name apart', () => {
    const groups = groupPlan([
      { action: 'createEnvGroup', name: 'x', env: [] },
      { action: 'deploy', name: 'x', serviceId: 's', reason: 'r' },
    ]);
    expect(groups).toHaveLength(2);
  });
});

describe('describeStep', () => {
  it('names a setting change with its old and new value', () => {
    expect(describeStep(steps[3])).toEqual({ title: 'Change 1 setting', details: ['plan: starter → standard'] });
  });

  it('lists new service settings flattened and env keys with their source, never a value', () => {
    const text = describeStep(steps[2]);
    expect(text.title).toBe('Create web service');
    expect(text.details).toEqual(['plan: starter', 'envSpecificDetails.dockerfilePath: ./Dockerfile', '+ DATABASE_URL (fromDatabase db.connectionString)']);
  });

  it('marks removals without a source', () => {
    expect(describeEnv({ key: 'OLD', change: 'remove', source: 'value' })).toBe('− OLD');
    expect(describeEnv({ key: 'K', change: 'change', source: 'generateValue' })).toBe('~ K (generateValue)');
  });

  it('says when a link waits for its group or service to exist', () => {
    expect(describeStep(steps[4]).details).toEqual(['linked once the group and the service exist']);
    expect(describeStep({ action: 'linkEnvGroup', group: 'g', service: 's', groupId: 'evg-1', serviceId: 'srv-1' }).details).toEqual([]);
  });
});

describe('planSummary', () => {
  it('counts resources and steps', () => {
    expect(planSummary(groupPlan(steps))).toBe('2 services, 1 database, 1 env group: 6 steps');
  });

  it('says so when there is nothing to do', () => {
    expect(planSummary([])).toBe('Render matches render.yaml: nothing to change.');
  });
});

describe('flatten', () => {
  it('names nested settings with dots', () => {
    expect(flatten({ a: 1, b: { c: 'x', d: { e: true } }, f: [1] })).toEqual([
      ['a', 1],
      ['b.c', 'x'],
      ['b.d.e', true],
      ['f', [1]],
    ]);
  });
});
