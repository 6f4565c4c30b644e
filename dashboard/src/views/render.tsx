import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';

import { ApiError, fieldErrors } from '../api/http';
import { ErrorNotice, Json, Loading, Section, Time } from '../components/status';
import { useInterval, useRefetchOnReconnect, useResource } from '../hooks';
import { blueprintPlan, monitorFindings, renderChanges, renderDeploys, renderServices, triggerDeploy } from '../ops/api';
import { describeStep, groupPlan, planSummary } from '../ops/plan';
import { deployTone, findingTone, humanize, isTokenMissing } from '../ops/render';
import type { ApplyOut, DeployOut, RenderService } from '../ops/types';
import '../ops/ops.css';

export function RenderView() {
  const { query, route, path } = useLocation();
  const services = useResource((signal) => renderServices(signal), []);
  const changes = useResource((signal) => renderChanges(signal), []);
  const findings = useResource((signal) => monitorFindings(signal), []);
  useInterval(changes.reload, 15_000);
  useInterval(findings.reload, 30_000);
  useRefetchOnReconnect(() => {
    services.reload();
    changes.reload();
    findings.reload();
  });

  const tokenMissing = isTokenMissing(services.error);
  const selectedId = query.service ?? '';
  const selected = services.data?.items.find((service) => service.id === selectedId);
  // Changes name their target by id when that is all the request had (a deploy by id).
  const names = new Map((services.data?.items ?? []).map((service) => [service.id, service.name]));
  const select = (id: string | null) => route(id ? `${path}?service=${encodeURIComponent(id)}` : path, true);

  return (
    <div class="ops">
      <header class="ops-head">
        <h1>Render</h1>
        <p class="muted">The workspace's services on Render through renderctl: deploys, the render.yaml plan, and what renderctl changed.</p>
      </header>

      {tokenMissing && services.error instanceof ApiError && (
        <div class="notice notice-error render-token" role="alert" data-testid="render-token-missing">
          <h2>{services.error.problem?.title ?? 'Render API token missing'}</h2>
          <p>{services.error.problem?.detail ?? services.error.message}</p>
          <p class="small">
            Services, deploys and the blueprint plan need Render's API. renderctl's own record of changes and the deploy
            monitor's findings are shown below.
          </p>
        </div>
      )}

      <Section
        title="Services"
        actions={
          <button type="button" onClick={services.reload} disabled={services.loading}>
            Refresh
          </button>
        }
      >
        {services.error && !tokenMissing && <ErrorNotice error={services.error} retry={services.reload} />}
        {services.loading && !services.data && !services.error && <Loading label="Loading Render services…" />}
        {tokenMissing && <p class="muted">Unavailable until renderctl has a Render API token.</p>}
        {services.data && (
          <ServicesTable services={services.data.items} selectedId={selectedId} onSelect={select} more={Boolean(services.data.nextCursor)} />
        )}
      </Section>

      {selected && (
        <ServicePanel
          key={selected.id}
          service={selected}
          onClose={() => select(null)}
          onDeployed={changes.reload}
        />
      )}
      {selectedId && services.data && !selected && (
        <div class="notice notice-error" role="alert">
          No service {selectedId} in the workspace.{' '}
          <button type="button" class="link-button" onClick={() => select(null)}>
            Close
          </button>
        </div>
      )}

      <BlueprintPanel />

      <Section
        title="Recent changes"
        actions={
          <button type="button" onClick={changes.reload}>
            Refresh
          </button>
        }
      >
        {changes.error && <ErrorNotice error={changes.error} retry={changes.reload} />}
        {changes.loading && !changes.data && <Loading />}
        {changes.data && changes.data.items.length === 0 && <p class="muted">renderctl has changed nothing on Render yet.</p>}
        {changes.data && changes.data.items.length > 0 && (
          <div class="table-wrap">
            <table aria-label="Changes renderctl made on Render">
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Who</th>
                  <th scope="col">Action</th>
                  <th scope="col">Target</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">Details</th>
                </tr>
              </thead>
              <tbody>
                {changes.data.items.map((change) => (
                  <tr key={change.id}>
                    <td class="nowrap">
                      <Time at={change.at} />
                    </td>
                    <td>
                      {change.actor} <span class="muted small">({change.origin})</span>
                    </td>
                    <td>{humanize(change.action)}</td>
                    <td class="break">
                      {names.get(change.target) ?? change.target}
                      {change.targetId && (change.targetId !== change.target || names.has(change.target)) && (
                        <div class="muted small mono">{change.targetId}</div>
                      )}
                    </td>
                    <td>
                      <span class={`badge badge-${change.ok ? 'ok' : 'bad'}`}>
                        {change.ok ? 'ok' : 'failed'}
                        {change.status ? ` ${change.status}` : ''}
                      </span>
                    </td>
                    <td>
                      <details>
                        <summary>Before / after</summary>
                        <Json value={{ before: change.before, after: change.after, answer: change.answer }} label={`Change ${change.id}`} />
                      </details>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Section>

      <Section
        title="Deploy monitor findings"
        actions={
          <button type="button" onClick={findings.reload}>
            Refresh
          </button>
        }
      >
        {findings.error && <ErrorNotice error={findings.error} retry={findings.reload} />}
        {findings.loading && !findings.data && <Loading />}
        {findings.data && findings.data.length === 0 && <p class="muted">No failed deploys seen.</p>}
        {findings.data && findings.data.length > 0 && (
          <div class="table-wrap">
            <table aria-label="Deploy monitor findings">
              <thead>
                <tr>
                  <th scope="col">Seen</th>
                  <th scope="col">Service</th>
                  <th scope="col">Failure</th>
                  <th scope="col">Action</th>
                  <th scope="col">Detail</th>
                </tr>
              </thead>
              <tbody>
                {findings.data.map((finding) => (
                  <tr key={finding.deployId}>
                    <td class="nowrap">
                      <Time at={finding.seenAt} />
                    </td>
                    <td>
                      {finding.serviceName}
                      <div class="muted small mono">{finding.deployId}</div>
                    </td>
                    <td>{humanize(finding.failure)}</td>
                    <td>
                      <span class={`badge badge-${findingTone(finding.action)}`}>{humanize(finding.action)}</span>
                      {finding.fixDeployId && <div class="muted small mono">{finding.fixDeployId}</div>}
                    </td>
                    <td class="break">{finding.detail}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Section>
    </div>
  );
}

function ServicesTable({
  services,
  selectedId,
  onSelect,
  more,
}: {
  services: RenderService[];
  selectedId: string;
  onSelect: (id: string) => void;
  more: boolean;
}) {
  if (services.length === 0) {
    return <p class="muted">The workspace has no services. Apply render.yaml (below) to create them.</p>;
  }
  return (
    <div class="table-wrap">
      <table class="render-services" aria-label="Render services">
        <thead>
          <tr>
            <th scope="col">Service</th>
            <th scope="col">Type</th>
            <th scope="col">Plan / region</th>
            <th scope="col">State</th>
            <th scope="col">URL</th>
            <th scope="col">Updated</th>
            <th scope="col">
              <span class="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {services.map((service) => (
            <tr key={service.id} data-service={service.name} aria-selected={service.id === selectedId}>
              <th scope="row">
                <strong>{service.name}</strong>
                <div class="muted small mono">{service.id}</div>
              </th>
              <td>{humanize(service.type)}</td>
              <td>
                {service.serviceDetails.plan ?? '—'}
                {service.serviceDetails.region && <span class="muted"> · {service.serviceDetails.region}</span>}
              </td>
              <td>
                <span class={`badge badge-${service.suspended === 'suspended' ? 'warn' : 'ok'}`}>
                  {service.suspended === 'suspended' ? 'suspended' : 'active'}
                </span>
              </td>
              <td class="break">
                {service.serviceDetails.url ? (
                  <a href={service.serviceDetails.url} target="_blank" rel="noopener noreferrer">
                    {service.serviceDetails.url.replace(/^https?:\/\//, '')}
                  </a>
                ) : (
                  <span class="muted">—</span>
                )}
              </td>
              <td class="nowrap">
                <Time at={service.updatedAt} />
              </td>
              <td>
                <button type="button" onClick={() => onSelect(service.id)} aria-label={`Deploys of ${service.name}`}>
                  Deploys
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {more && <p class="muted small">The first 100 services are shown.</p>}
    </div>
  );
}

function ServicePanel({ service, onClose, onDeployed }: { service: RenderService; onClose: () => void; onDeployed: () => void }) {
  const deploys = useResource((signal) => renderDeploys(service.id, signal), [service.id]);
  const [confirming, setConfirming] = useState(false);
  const [clearCache, setClearCache] = useState(false);
  const [busy, setBusy] = useState(false);
  const [answer, setAnswer] = useState<{ queued: boolean; out: DeployOut } | null>(null);
  const [failure, setFailure] = useState<Error | null>(null);
  useInterval(deploys.reload, 5_000);

  async function deploy() {
    setBusy(true);
    setFailure(null);
    setAnswer(null);
    try {
      setAnswer(await triggerDeploy(service.id, clearCache));
      setConfirming(false);
      deploys.reload();
      onDeployed();
    } catch (error) {
      setFailure(error instanceof Error ? error : new Error(String(error)));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Section
      title={`Deploys of ${service.name}`}
      actions={
        <>
          {!confirming && (
            <button type="button" class="primary" onClick={() => setConfirming(true)}>
              Deploy…
            </button>
          )}
          <a href={service.dashboardUrl} target="_blank" rel="noopener noreferrer">
            Open in Render
          </a>
          <button type="button" onClick={onClose}>
            Close
          </button>
        </>
      }
    >
      {confirming && (
        <div class="confirm" role="group" aria-label="Confirm deploy">
          <strong>
            Deploy {service.name} ({service.branch ?? 'default branch'}) now?
          </strong>
          <label class="inline">
            <input type="checkbox" checked={clearCache} onChange={(e) => setClearCache(e.currentTarget.checked)} /> Clear the build
            cache first
          </label>
          <div class="confirm-actions">
            <button type="button" class="primary" onClick={deploy} disabled={busy}>
              {busy ? 'Deploying…' : 'Confirm deploy'}
            </button>
            <button type="button" onClick={() => setConfirming(false)} disabled={busy}>
              Cancel
            </button>
          </div>
        </div>
      )}
      {failure && <ErrorNotice error={failure} />}
      {answer && (
        <div class="notice notice-ok" role="status" data-testid="deploy-answer">
          {answer.queued ? 'Render queued the deploy behind the one in progress' : 'Deploy started'}
          {answer.out.deploy ? (
            <>
              : <code>{answer.out.deploy.id}</code> ({humanize(answer.out.deploy.status)})
            </>
          ) : (
            '.'
          )}
        </div>
      )}
      {deploys.error && <ErrorNotice error={deploys.error} retry={deploys.reload} />}
      {deploys.loading && !deploys.data && <Loading label="Loading deploys…" />}
      {deploys.data && deploys.data.items.length === 0 && <p class="muted">No deploys yet.</p>}
      {deploys.data && deploys.data.items.length > 0 && (
        <div class="table-wrap">
          <table aria-label={`Deploys of ${service.name}`}>
            <thead>
              <tr>
                <th scope="col">Deploy</th>
                <th scope="col">Status</th>
                <th scope="col">Trigger</th>
                <th scope="col">Created</th>
                <th scope="col">Finished</th>
              </tr>
            </thead>
            <tbody>
              {deploys.data.items.map((deploy) => (
                <tr key={deploy.id} data-deploy={deploy.id}>
                  <td class="mono">{deploy.id}</td>
                  <td>
                    <span class={`badge badge-${deployTone(deploy.status)}`}>{humanize(deploy.status)}</span>
                  </td>
                  <td>{deploy.trigger ? humanize(deploy.trigger) : '—'}</td>
                  <td class="nowrap">
                    <Time at={deploy.createdAt} />
                  </td>
                  <td class="nowrap">
                    <Time at={deploy.finishedAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Section>
  );
}

function BlueprintPanel() {
  const [plan, setPlan] = useState<ApplyOut | null>(null);
  const [failure, setFailure] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);

  async function dryRun() {
    setBusy(true);
    setFailure(null);
    try {
      setPlan(await blueprintPlan());
    } catch (error) {
      setPlan(null);
      setFailure(error instanceof Error ? error : new Error(String(error)));
    } finally {
      setBusy(false);
    }
  }

  const invalid = failure instanceof ApiError && failure.status === 422 ? fieldErrors(failure.problem) : null;
  const groups = plan ? groupPlan(plan.plan.steps) : [];

  return (
    <Section
      title="Blueprint plan (render.yaml)"
      actions={
        <button type="button" onClick={dryRun} disabled={busy}>
          {busy ? 'Planning…' : plan ? 'Plan again' : 'Plan (dry run)'}
        </button>
      }
    >
      <p class="muted small">
        What applying render.yaml would change on Render, step by step. A dry run changes nothing; env values are never shown, only keys and where
        their values come from.
      </p>
      {busy && !plan && <Loading label="Comparing render.yaml with Render…" />}
      {failure && isTokenMissing(failure) && (
        <div class="notice notice-error" role="alert">
          <strong>{(failure as ApiError).problem?.title}</strong> {(failure as ApiError).problem?.detail}
        </div>
      )}
      {failure && invalid && (
        <div class="notice notice-error" role="alert">
          <strong>render.yaml is not valid; nothing would be applied.</strong>
          <ul>
            {Object.entries(invalid).map(([field, message]) => (
              <li key={field}>
                <code>{field || '(document)'}</code>: {message}
              </li>
            ))}
          </ul>
        </div>
      )}
      {failure && !invalid && !isTokenMissing(failure) && <ErrorNotice error={failure} retry={dryRun} />}
      {plan && (
        <div data-testid="blueprint-plan">
          <p>
            <strong>{planSummary(groups)}</strong>
          </p>
          {plan.plan.warnings.length > 0 && (
            <div class="notice notice-down">
              <strong>Warnings</strong>
              <ul>
                {plan.plan.warnings.map((warning) => (
                  <li key={warning}>{warning}</li>
                ))}
              </ul>
            </div>
          )}
          {groups.map((group) => (
            <section class="plan-group" key={`${group.kind}:${group.name}`} aria-label={`${group.kind} ${group.name}`}>
              <h3>
                <span class="badge badge-muted">{group.kind}</span> {group.name}
              </h3>
              <ol class="plan-steps">
                {group.steps.map((step, index) => {
                  const text = describeStep(step);
                  return (
                    <li key={index}>
                      <strong>{text.title}</strong>
                      {text.details.length > 0 && (
                        <ul class="plan-details">
                          {text.details.map((detail, i) => (
                            <li key={i}>{detail}</li>
                          ))}
                        </ul>
                      )}
                    </li>
                  );
                })}
              </ol>
            </section>
          ))}
        </div>
      )}
    </Section>
  );
}
