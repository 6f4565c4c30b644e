import { useState } from 'preact/hooks';

import { ErrorNotice, Json, Loading, Section, Time } from '../components/status';
import { useInterval, useRefetchOnReconnect, useResource } from '../hooks';
import { listAgents } from '../ops/api';
import { agentLiveness, livenessSummary } from '../ops/agents';
import { relativeTime } from '../ops/time';
import type { Agent } from '../ops/types';
import '../ops/ops.css';

const REFRESH_MS = 5_000;

export function Agents() {
  const agents = useResource((signal) => listAgents(signal), []);
  const [now, setNow] = useState(Date.now());
  useInterval(agents.reload, REFRESH_MS);
  useInterval(() => setNow(Date.now()), 1000);
  useRefetchOnReconnect(agents.reload);

  const list = agents.data;
  return (
    <div class="ops">
      <header class="ops-head">
        <h1>Agents</h1>
        <p class="muted">
          The orchestrator's registry: who serves which task kinds, and whether their heartbeats arrive. Refreshed every{' '}
          {REFRESH_MS / 1000} s.
        </p>
      </header>
      {agents.error && <ErrorNotice error={agents.error} retry={agents.reload} />}
      {!list && agents.loading && <Loading label="Loading agents…" />}
      {list && (
        <Section
          title="Registered agents"
          actions={
            <>
              <span class="muted" role="status" aria-live="polite">
                {livenessSummary(list)}
              </span>
              <button type="button" onClick={agents.reload}>
                Refresh
              </button>
            </>
          }
        >
          {list.length === 0 ? (
            <p class="muted">No agent has registered. Agents register with the orchestrator when they start.</p>
          ) : (
            <div class="table-wrap">
              <table aria-label="Agents">
                <thead>
                  <tr>
                    <th scope="col">Agent</th>
                    <th scope="col">Liveness</th>
                    <th scope="col">Transport</th>
                    <th scope="col">Base URL / queue</th>
                    <th scope="col">Kinds</th>
                    <th scope="col">Last heartbeat</th>
                    <th scope="col">Registered</th>
                  </tr>
                </thead>
                <tbody>
                  {list.map((agent) => (
                    <AgentRow key={agent.name} agent={agent} now={now} />
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </Section>
      )}
    </div>
  );
}

function AgentRow({ agent, now }: { agent: Agent; now: number }) {
  const liveness = agentLiveness(agent);
  return (
    <tr data-agent={agent.name} class={liveness.tone === 'bad' ? 'agent-dead' : undefined}>
      <th scope="row" class="nowrap">
        <strong>{agent.name}</strong>
      </th>
      <td>
        <span class={`badge badge-${liveness.tone}`} data-testid="agent-liveness" title={liveness.hint}>
          {liveness.label}
        </span>
      </td>
      <td>{agent.transport}</td>
      <td class="break">
        <code>{agent.transport === 'sqs' ? (agent.queueUrl ?? '—') : (agent.baseUrl ?? '—')}</code>
      </td>
      <td>
        <ul class="chips" aria-label={`Kinds served by ${agent.name}`}>
          {agent.kinds.map((kind) => (
            <li key={kind.kind}>
              <details>
                <summary class="chip">{kind.kind}</summary>
                <Json value={kind.payloadSchema} label={`Payload schema of ${kind.kind}`} />
              </details>
            </li>
          ))}
        </ul>
      </td>
      <td class="nowrap">
        {agent.lastHeartbeat ? (
          <time dateTime={agent.lastHeartbeat} title={new Date(agent.lastHeartbeat).toLocaleString()}>
            {relativeTime(agent.lastHeartbeat, now)}
          </time>
        ) : (
          <span class="muted">never</span>
        )}
        {agent.heartbeatStatus && agent.heartbeatStatus !== 'ok' && (
          <>
            {' '}
            <span class="badge badge-warn">{agent.heartbeatStatus}</span>
          </>
        )}
      </td>
      <td class="nowrap">
        <Time at={agent.registeredAt} />
      </td>
    </tr>
  );
}
