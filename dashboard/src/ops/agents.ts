import type { Agent } from './types';

export interface Liveness {
  label: string;
  tone: 'ok' | 'warn' | 'bad' | 'muted';
  hint: string;
}

/**
 * The orchestrator decides liveness (a heartbeat within its AGENT_LIVENESS window); the
 * heartbeat's own status says whether a live agent is degraded or draining.
 */
export function agentLiveness(agent: Agent): Liveness {
  if (!agent.lastHeartbeat) {
    return { label: 'no heartbeat', tone: 'bad', hint: 'Registered, but no heartbeat has arrived yet.' };
  }
  if (!agent.live) {
    return { label: 'dead', tone: 'bad', hint: 'No heartbeat within the orchestrator’s liveness window.' };
  }
  if (agent.heartbeatStatus === 'degraded') {
    return { label: 'live · degraded', tone: 'warn', hint: 'Alive, reporting itself degraded.' };
  }
  if (agent.heartbeatStatus === 'draining') {
    return { label: 'live · draining', tone: 'warn', hint: 'Alive, finishing its work before stopping.' };
  }
  return { label: 'live', tone: 'ok', hint: 'A heartbeat arrived within the liveness window.' };
}

/** "2 of 3 agents live". */
export function livenessSummary(agents: readonly Agent[]): string {
  const live = agents.filter((agent) => agent.live).length;
  return `${live} of ${agents.length} agent${agents.length === 1 ? '' : 's'} live`;
}
