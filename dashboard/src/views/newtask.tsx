import { useMemo, useRef, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';

import { ApiError } from '../api/http';
import { ErrorNotice, Json, Loading } from '../components/status';
import { useResource } from '../hooks';
import { createTask, listAgents } from '../tasks/api';
import { buildTaskBody, EMPTY_OPTIONS, TASK_FIELDS, type TaskOptionsInput } from '../tasks/options';
import {
  buildPayload,
  compileValidator,
  deriveForm,
  fieldHint,
  parsePayloadText,
  placeErrors,
  problemToErrors,
  rawFromPayload,
  type FormField,
  type FormModel,
  type JsonObject,
  type ProblemErrors,
  type RawValue,
  type RawValues,
} from '../tasks/schemaform';
import type { Agent } from '../tasks/types';
import '../tasks/tasks.css';

interface KindEntry {
  kind: string;
  agent: string;
  live: boolean;
  schema: unknown;
}

function kindsOf(agents: Agent[]): KindEntry[] {
  return agents
    .flatMap((agent) =>
      agent.kinds.map((k) => ({ kind: k.kind, agent: agent.name, live: agent.live !== false, schema: k.payloadSchema })),
    )
    .sort((a, b) => a.kind.localeCompare(b.kind));
}

/** Creates a task: pick a kind, fill the form its payload schema describes (or write JSON). */
export function NewTask() {
  const { query, route } = useLocation();
  const agents = useResource((signal) => listAgents(signal), []);
  const kinds = useMemo(() => kindsOf(agents.data ?? []), [agents.data]);
  const kind = query.kind ?? '';
  const entry = kinds.find((k) => k.kind === kind);

  return (
    <div>
      <h1>New task</h1>
      {agents.error && <ErrorNotice error={agents.error} retry={agents.reload} />}
      {agents.loading && !agents.data && <Loading label="Loading the registered kinds…" />}
      {agents.data && (
        <section class="panel">
          <div class="form-field">
            <label for="task-kind" class="label">
              Kind<span class="required" aria-hidden="true">*</span>
            </label>
            <select
              id="task-kind"
              value={entry ? kind : ''}
              aria-required="true"
              aria-describedby="task-kind-hint"
              onChange={(e) => {
                const next = e.currentTarget.value;
                route(next ? `/tasks/new?kind=${encodeURIComponent(next)}` : '/tasks/new', true);
              }}
            >
              <option value="">Choose a kind…</option>
              {kinds.map((k) => (
                <option key={k.kind} value={k.kind}>
                  {k.kind} — {k.agent}
                  {k.live ? '' : ' (agent not answering)'}
                </option>
              ))}
            </select>
            <span class="hint" id="task-kind-hint">
              {kinds.length === 0
                ? 'No agent has registered a kind yet: a task needs an agent to run it.'
                : 'The kinds the registered agents serve. The form below follows the kind’s payload schema.'}
            </span>
            {kind && !entry && (
              <span class="field-error" role="alert">
                No agent serves kind “{kind}” now.
              </span>
            )}
            {entry && !entry.live && (
              <span class="notice notice-down">The agent {entry.agent} is not answering: the task will wait in the queue.</span>
            )}
          </div>
        </section>
      )}
      {entry && <TaskForm key={`${entry.kind}:${JSON.stringify(entry.schema)}`} entry={entry} />}
    </div>
  );
}

type Tab = 'form' | 'json';

const OPTION_LABELS: Record<keyof TaskOptionsInput, [string, string]> = {
  correlationId: ['Correlation id', 'Ties this task to others and to their logs (1-200 characters).'],
  idempotencyKey: ['Idempotency key', 'Creating again with the same key returns the first task.'],
  priority: ['Priority', '-100 to 100, higher runs first (default 0).'],
  maxAttempts: ['Max attempts', '1 to 100 (default 3).'],
  timeoutSecs: ['Timeout (seconds)', 'Per attempt, 1 to 86400 (default 300).'],
  runAt: ['Run at', 'Not before this time (default now).'],
};

const fieldId = (index: number) => `payload-field-${index}`;

function TaskForm({ entry }: { entry: KindEntry }) {
  const { route } = useLocation();
  const model = useMemo(() => deriveForm(entry.schema), [entry.schema]);
  const validator = useMemo(() => compileValidator(entry.schema), [entry.schema]);
  const [tab, setTab] = useState<Tab>(model.renderable ? 'form' : 'json');
  const [raw, setRaw] = useState<RawValues>(() => rawFromPayload(model, {}));
  const [base, setBase] = useState<JsonObject>({});
  const [jsonText, setJsonText] = useState('{}');
  const [options, setOptions] = useState<TaskOptionsInput>(EMPTY_OPTIONS);
  const [touched, setTouched] = useState<ReadonlySet<string>>(new Set());
  const [submitted, setSubmitted] = useState(false);
  const [server, setServer] = useState<ProblemErrors | null>(null);
  const [failure, setFailure] = useState<Error | null>(null);
  const [tabError, setTabError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const summaryRef = useRef<HTMLDivElement>(null);

  // The payload as the current tab describes it, and what is wrong with it.
  const current = useMemo(() => {
    if (tab === 'form') {
      const built = buildPayload(model, raw, base);
      return { payload: built.payload as unknown, coercion: built.errors, parseError: null as string | null };
    }
    const parsed = parsePayloadText(jsonText);
    return 'error' in parsed
      ? { payload: undefined, coercion: {}, parseError: parsed.error }
      : { payload: parsed.payload, coercion: {}, parseError: null };
  }, [tab, model, raw, base, jsonText]);
  const schemaErrors = useMemo(
    () => (current.payload !== undefined && 'validate' in validator ? validator.validate(current.payload) : {}),
    [current.payload, validator],
  );
  const placed = useMemo(() => placeErrors(model, schemaErrors), [model, schemaErrors]);
  const request = buildTaskBody(entry.kind, current.payload ?? {}, options);

  const show = (name: string) => submitted || touched.has(name);
  const touch = (name: string) => {
    if (!touched.has(name)) setTouched(new Set(touched).add(name));
  };
  const dropServer = (section: 'payload' | 'task', key: string) => {
    if (!server || !(key in server[section])) return;
    const next = { ...server, [section]: { ...server[section] } };
    delete next[section][key];
    setServer(next);
  };

  function fieldError(field: FormField): string | undefined {
    if (show(field.name)) {
      const local = current.coercion[field.name] ?? placed.fields[field.name];
      if (local) return local;
    }
    return server?.payload[field.pointer];
  }

  function optionError(name: keyof TaskOptionsInput): string | undefined {
    return (show(`opt:${name}`) ? request.errors[name] : undefined) ?? server?.task[name];
  }

  // Payload problems the form shows next to no field: nested members, members only JSON edits.
  const otherPayload: { pointer: string; message: string }[] = [];
  if (submitted || (tab === 'json' && touched.has('json'))) {
    const list = tab === 'json' ? Object.entries(schemaErrors).map(([pointer, message]) => ({ pointer: pointer || '/', message })) : placed.other;
    otherPayload.push(...list);
  }
  if (server) {
    const serverPlaced = placeErrors(tab === 'form' ? model : { ...model, fields: [] }, server.payload);
    for (const item of serverPlaced.other) {
      if (!otherPayload.some((o) => o.pointer === item.pointer && o.message === item.message)) otherPayload.push(item);
    }
  }

  function setField(field: FormField, value: RawValue) {
    setRaw({ ...raw, [field.name]: value });
    touch(field.name);
    dropServer('payload', field.pointer);
  }

  function setOption(name: keyof TaskOptionsInput, value: string) {
    setOptions({ ...options, [name]: value });
    touch(`opt:${name}`);
    dropServer('task', name);
  }

  function switchTab(next: Tab) {
    if (next === tab) return;
    setTabError(null);
    if (next === 'json') {
      if (Object.keys(current.coercion).length) {
        setTouched(new Set([...touched, ...Object.keys(current.coercion)]));
        setTabError('Fix the fields marked in red first: their text is not a value yet.');
        return;
      }
      setJsonText(JSON.stringify(current.payload ?? {}, null, 2));
    } else {
      if (current.parseError) {
        setTabError(`Fix the JSON first. ${current.parseError}`);
        return;
      }
      const payload = current.payload ?? {};
      if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
        setTabError('The form edits an object of fields; this payload is not one.');
        return;
      }
      setRaw(rawFromPayload(model, payload));
      setBase(payload as JsonObject);
    }
    setTab(next);
  }

  const problems = collectProblems();
  function collectProblems(): { href: string; text: string }[] {
    const list: { href: string; text: string }[] = [];
    if (current.parseError) list.push({ href: '#payload-json', text: current.parseError });
    if (tab === 'form') {
      model.fields.forEach((field, index) => {
        const error = current.coercion[field.name] ?? placed.fields[field.name] ?? server?.payload[field.pointer];
        if (error) list.push({ href: `#${fieldId(index)}`, text: `${field.label}: ${error}` });
      });
    }
    for (const item of otherPayload) {
      list.push({ href: tab === 'json' ? '#payload-json' : '#payload-other', text: `payload ${item.pointer}: ${item.message}` });
    }
    for (const name of Object.keys(OPTION_LABELS) as (keyof TaskOptionsInput)[]) {
      const error = request.errors[name] ?? server?.task[name];
      if (error) list.push({ href: `#opt-${name}`, text: `${OPTION_LABELS[name][0]}: ${error}` });
    }
    if (server?.task.kind) list.push({ href: '#task-kind', text: `Kind: ${server.task.kind}` });
    for (const text of server?.other ?? []) list.push({ href: '#task-form', text });
    return list;
  }

  async function submit(event: Event) {
    event.preventDefault();
    setSubmitted(true);
    setFailure(null);
    const blocked =
      current.parseError !== null ||
      Object.keys(current.coercion).length > 0 ||
      Object.keys(schemaErrors).length > 0 ||
      Object.keys(request.errors).length > 0;
    if (blocked) {
      setServer(null);
      requestAnimationFrame(() => summaryRef.current?.focus());
      return;
    }
    setBusy(true);
    try {
      const { task } = await createTask(request.body);
      route(`/tasks/${task.id}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) {
        setServer(problemToErrors(error.problem, TASK_FIELDS));
        requestAnimationFrame(() => summaryRef.current?.focus());
      } else {
        setFailure(error instanceof Error ? error : new Error(String(error)));
      }
    } finally {
      setBusy(false);
    }
  }

  const showSummary = (submitted && problems.length > 0) || (server !== null && problems.length > 0);

  return (
    <form id="task-form" onSubmit={submit} noValidate aria-label={`New ${entry.kind} task`}>
      <div ref={summaryRef} tabIndex={-1} aria-live="assertive">
        {showSummary && (
          <div class="notice notice-error error-summary" role="alert">
            <strong>
              {server ? 'The orchestrator refused the task' : 'The task is not ready to send'}: {problems.length} problem
              {problems.length === 1 ? '' : 's'}.
            </strong>
            <ul>
              {problems.map((problem, index) => (
                <li key={index}>
                  <a href={problem.href} onClick={(e) => focusTarget(e, problem.href)}>
                    {problem.text}
                  </a>
                </li>
              ))}
            </ul>
          </div>
        )}
      </div>
      <section class="panel" aria-label="Payload">
        <header class="panel-head">
          <h2>Payload</h2>
          {'error' in validator && <span class="muted">The browser cannot check this schema ({validator.error}); the orchestrator will.</span>}
        </header>
        {model.description && <p class="muted">{model.description}</p>}
        <PayloadTabs tab={tab} renderable={model.renderable} onSwitch={switchTab} />
        {tabError && (
          <p class="field-error" role="alert">
            {tabError}
          </p>
        )}
        {tab === 'form' ? (
          <div role="tabpanel" id="payload-panel-form" aria-labelledby="payload-tab-form">
            <FormFields model={model} raw={raw} error={fieldError} onChange={setField} onBlur={(field) => touch(field.name)} />
            {model.unsupported.length > 0 && (
              <p class="unsupported">
                Edit in the JSON editor:{' '}
                {model.unsupported.map((u, index) => (
                  <span key={u.name}>
                    {index > 0 && ', '}
                    <code>{u.name}</code> ({u.reason}
                    {u.required ? ', required' : ''})
                  </span>
                ))}
                .
              </p>
            )}
            {otherPayload.length > 0 && (
              <p class="field-error" id="payload-other" tabIndex={-1}>
                About members the form does not show (see the JSON editor):
              </p>
            )}
            {otherPayload.length > 0 && (
              <ul class="field-error">
                {otherPayload.map((item) => (
                  <li key={`${item.pointer}:${item.message}`}>
                    <code>{item.pointer}</code>: {item.message}
                  </li>
                ))}
              </ul>
            )}
          </div>
        ) : (
          <div role="tabpanel" id="payload-panel-json" aria-labelledby="payload-tab-json">
            {!model.renderable && <p class="muted">{model.reason} Write the payload as JSON.</p>}
            <div class="form-field">
              <label for="payload-json" class="label">
                Payload JSON
              </label>
              <textarea
                id="payload-json"
                class="json-editor"
                spellcheck={false}
                value={jsonText}
                aria-invalid={current.parseError || otherPayload.length ? true : undefined}
                aria-describedby="payload-json-errors"
                onInput={(e) => {
                  setJsonText(e.currentTarget.value);
                  setTabError(null);
                  touch('json');
                  if (server && Object.keys(server.payload).length) setServer({ ...server, payload: {} });
                }}
              />
              <div id="payload-json-errors">
                {current.parseError && <span class="field-error">{current.parseError}</span>}
                {!current.parseError && otherPayload.length > 0 && (
                  <ul class="field-error">
                    {otherPayload.map((item) => (
                      <li key={`${item.pointer}:${item.message}`}>
                        <code>{item.pointer}</code>: {item.message}
                      </li>
                    ))}
                  </ul>
                )}
                {!current.parseError && otherPayload.length === 0 && touched.has('json') && (
                  <span class="hint">Valid against the kind’s schema.</span>
                )}
              </div>
            </div>
          </div>
        )}
      </section>
      <section class="panel" aria-label="Task options">
        <header class="panel-head">
          <h2>Task options</h2>
          <span class="muted">All optional</span>
        </header>
        <div class="form-grid">
          {(Object.keys(OPTION_LABELS) as (keyof TaskOptionsInput)[]).map((name) => {
            const [label, hint] = OPTION_LABELS[name];
            const error = optionError(name);
            const numeric = name === 'priority' || name === 'maxAttempts' || name === 'timeoutSecs';
            return (
              <div class="form-field" key={name}>
                <label for={`opt-${name}`} class="label">
                  {label}
                </label>
                <input
                  id={`opt-${name}`}
                  name={name}
                  type={numeric ? 'number' : name === 'runAt' ? 'datetime-local' : 'text'}
                  step={numeric ? 1 : undefined}
                  autoComplete="off"
                  value={options[name]}
                  aria-invalid={error ? true : undefined}
                  aria-describedby={`opt-${name}-hint${error ? ` opt-${name}-error` : ''}`}
                  onInput={(e) => setOption(name, e.currentTarget.value)}
                  onBlur={() => touch(`opt:${name}`)}
                />
                <span class="hint" id={`opt-${name}-hint`}>
                  {hint}
                </span>
                {error && (
                  <span class="field-error" id={`opt-${name}-error`}>
                    {error}
                  </span>
                )}
              </div>
            );
          })}
        </div>
        <details>
          <summary>Request body</summary>
          <Json value={request.body} label="Request body" />
        </details>
      </section>
      {failure && <ErrorNotice error={failure} />}
      <div class="form-actions">
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Creating…' : 'Create task'}
        </button>
        <a href="/tasks">Cancel</a>
      </div>
    </form>
  );
}

function focusTarget(event: Event, href: string) {
  const target = document.getElementById(href.slice(1));
  if (!target) return;
  event.preventDefault();
  target.focus();
  target.scrollIntoView({ block: 'center' });
}

function PayloadTabs({ tab, renderable, onSwitch }: { tab: Tab; renderable: boolean; onSwitch: (tab: Tab) => void }) {
  const tabs: [Tab, string][] = renderable
    ? [
        ['form', 'Form'],
        ['json', 'JSON editor'],
      ]
    : [['json', 'JSON editor']];
  function onKeyDown(event: KeyboardEvent) {
    if (event.key !== 'ArrowLeft' && event.key !== 'ArrowRight') return;
    const index = tabs.findIndex(([t]) => t === tab);
    const next = tabs[(index + (event.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length][0];
    onSwitch(next);
    document.getElementById(`payload-tab-${next}`)?.focus();
  }
  return (
    <div class="tabs" role="tablist" aria-label="Payload editor" onKeyDown={onKeyDown}>
      {tabs.map(([t, label]) => (
        <button
          key={t}
          type="button"
          role="tab"
          id={`payload-tab-${t}`}
          aria-selected={tab === t}
          aria-controls={`payload-panel-${t}`}
          tabIndex={tab === t ? 0 : -1}
          onClick={() => onSwitch(t)}
        >
          {label}
        </button>
      ))}
    </div>
  );
}

function FormFields({
  model,
  raw,
  error,
  onChange,
  onBlur,
}: {
  model: FormModel;
  raw: RawValues;
  error: (field: FormField) => string | undefined;
  onChange: (field: FormField, value: RawValue) => void;
  onBlur: (field: FormField) => void;
}) {
  if (model.fields.length === 0) return <p class="muted">The form has no fields this editor can show; use the JSON editor.</p>;
  return (
    <div class="form-grid">
      {model.fields.map((field, index) => (
        <SchemaField
          key={field.name}
          id={fieldId(index)}
          field={field}
          value={raw[field.name]}
          error={error(field)}
          onChange={(value) => onChange(field, value)}
          onBlur={() => onBlur(field)}
        />
      ))}
    </div>
  );
}

function SchemaField({
  id,
  field,
  value,
  error,
  onChange,
  onBlur,
}: {
  id: string;
  field: FormField;
  value: RawValue | undefined;
  error?: string;
  onChange: (value: RawValue) => void;
  onBlur: () => void;
}) {
  const hint = fieldHint(field);
  const describedBy = [hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined;
  const common = {
    id,
    name: field.name,
    'aria-invalid': error ? true : undefined,
    'aria-describedby': describedBy,
    'aria-required': field.required ? true : undefined,
    'data-pointer': `/payload${field.pointer}`,
    onBlur,
  };
  const text = typeof value === 'string' ? value : '';
  let control;
  switch (field.inputType) {
    case 'checkbox':
      control = <input {...common} type="checkbox" checked={value === true} onChange={(e) => onChange(e.currentTarget.checked)} />;
      break;
    case 'select':
      control = (
        <select {...common} value={text} onChange={(e) => onChange(e.currentTarget.value)}>
          <option value="">{field.required ? 'Choose…' : field.default !== undefined ? `(default: ${String(field.default)})` : '(not set)'}</option>
          {field.options?.map((option, i) => (
            <option key={i} value={String(i)}>
              {option.label}
            </option>
          ))}
        </select>
      );
      break;
    case 'textarea':
      control = <textarea {...common} rows={3} value={text} maxLength={field.maxLength} onInput={(e) => onChange(e.currentTarget.value)} />;
      break;
    case 'number':
      control = (
        <input
          {...common}
          type="number"
          inputMode={field.kind === 'integer' ? 'numeric' : 'decimal'}
          min={field.minimum}
          max={field.maximum}
          step={field.step ?? 'any'}
          value={text}
          onInput={(e) => onChange(e.currentTarget.value)}
        />
      );
      break;
    default:
      control = (
        <input
          {...common}
          type={field.inputType}
          value={text}
          maxLength={field.maxLength}
          onInput={(e) => onChange(e.currentTarget.value)}
        />
      );
  }
  const label = (
    <>
      {field.label}
      {field.required && (
        <>
          <span class="required" aria-hidden="true">
            *
          </span>
        </>
      )}
      {field.label !== field.name && <span class="muted mono"> {field.name}</span>}
    </>
  );
  return (
    <div class={`form-field${field.inputType === 'checkbox' ? ' checkbox' : ''}${field.inputType === 'textarea' ? ' wide' : ''}`}>
      {field.inputType === 'checkbox' ? (
        <label>
          {control}
          <span>{label}</span>
        </label>
      ) : (
        <>
          <label for={id} class="label">
            {label}
          </label>
          {control}
        </>
      )}
      {hint && (
        <span class="hint" id={`${id}-hint`}>
          {hint}
        </span>
      )}
      {error && (
        <span class="field-error" id={`${id}-error`}>
          {error}
        </span>
      )}
    </div>
  );
}
