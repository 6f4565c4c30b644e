import { useState } from 'preact/hooks';

import { ApiError, fieldErrors } from '../api/http';
import { ErrorNotice } from '../components/status';
import { fieldOfPointer, initialValues, submission, type FormValues } from './form-values';
import type { FormBody, FormField } from './model';

export type SendInput = (value: Record<string, unknown>) => Promise<void>;

interface Props {
  address: string;
  form: FormBody;
  send: SendInput;
}

function Field({
  id,
  field,
  value,
  error,
  onChange,
}: {
  id: string;
  field: FormField;
  value: string | boolean;
  error?: string;
  onChange: (value: string | boolean) => void;
}) {
  const label = field.label || field.name;
  const errorId = `${id}-error`;
  const common = {
    id,
    name: field.name,
    required: field.required,
    'aria-invalid': error ? ('true' as const) : undefined,
    'aria-describedby': error ? errorId : undefined,
  };
  const text = (event: Event) => onChange((event.currentTarget as HTMLInputElement).value);
  const message = error && (
    <span id={errorId} class="field-error">
      {error}
    </span>
  );
  if (field.type === 'checkbox') {
    return (
      <div class="ai-field">
        <label class="inline" for={id}>
          <input {...common} type="checkbox" checked={value === true} onChange={(e) => onChange((e.currentTarget as HTMLInputElement).checked)} />
          {label}
        </label>
        {message}
      </div>
    );
  }
  return (
    <div class="ai-field">
      <label for={id}>
        <span>
          {label}
          {field.required && <span class="ai-required"> (required)</span>}
        </span>
      </label>
      {field.type === 'textarea' ? (
        <textarea {...common} placeholder={field.placeholder} value={String(value)} onInput={text} />
      ) : field.type === 'select' ? (
        <select {...common} value={String(value)} onChange={text}>
          {field.options?.map((option) => (
            <option key={option.value} value={option.value}>
              {option.label ?? option.value}
            </option>
          ))}
        </select>
      ) : (
        <input
          {...common}
          type={field.type === 'number' ? 'number' : 'text'}
          step={field.type === 'number' ? 'any' : undefined}
          placeholder={field.placeholder}
          value={String(value)}
          onInput={text}
        />
      )}
      {message}
    </div>
  );
}

/** A form the AI put on the page; its submission goes back to the AI as user input. Keyed by
 * the directive's sequence number, so a new form.set starts from its own defaults. */
export function FormView({ address, form, send }: Props) {
  const [values, setValues] = useState<FormValues>(() => initialValues(form));
  const [busy, setBusy] = useState(false);
  const [sentAt, setSentAt] = useState<Date | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setErrors({});
    try {
      await send(submission(form, values));
      setSentAt(new Date());
    } catch (cause) {
      setSentAt(null);
      const failure = cause instanceof Error ? cause : new Error(String(cause));
      setError(failure);
      if (failure instanceof ApiError) {
        const byField: Record<string, string> = {};
        for (const [pointer, message] of Object.entries(fieldErrors(failure.problem))) {
          const name = fieldOfPointer(pointer);
          if (name) byField[name] = message;
        }
        setErrors(byField);
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <form class="ai-form" onSubmit={submit} aria-label={form.title || `Form ${address}`}>
      <fieldset disabled={busy}>
        {form.title && <legend>{form.title}</legend>}
        {form.fields.map((field) => (
          <Field
            key={field.name}
            id={`${address}-${field.name}`}
            field={field}
            value={values[field.name]}
            error={errors[field.name]}
            onChange={(value) => {
              setSentAt(null);
              setValues((current) => ({ ...current, [field.name]: value }));
            }}
          />
        ))}
        <div class="row">
          <button type="submit" class="primary">
            {busy ? 'Sending…' : form.submitLabel || 'Submit'}
          </button>
          <span role="status" aria-live="polite" class="ai-sent">
            {sentAt && `Sent at ${sentAt.toLocaleTimeString()}`}
          </span>
        </div>
      </fieldset>
      {error && <ErrorNotice error={error} />}
    </form>
  );
}
