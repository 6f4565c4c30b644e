// A form's values while the person fills it in, and what its submission sends to the AI.

import type { FormBody, FormField } from './model';

/** What the inputs hold: text for text-like fields and numbers (as typed), a flag for checkboxes. */
export type FormValues = Record<string, string | boolean>;

function initial(field: FormField): string | boolean {
  if (field.type === 'checkbox') return field.default === true || field.default === 'true';
  if (field.default === undefined) {
    // A required select starts on its first option, as the browser shows it.
    return field.type === 'select' && field.options?.length ? field.options[0].value : '';
  }
  return String(field.default);
}

export function initialValues(form: FormBody): FormValues {
  return Object.fromEntries(form.fields.map((field) => [field.name, initial(field)]));
}

/** The submitted value object: numbers as numbers (null when empty), checkboxes as booleans. */
export function submission(form: FormBody, values: FormValues): Record<string, string | number | boolean | null> {
  const out: Record<string, string | number | boolean | null> = {};
  for (const field of form.fields) {
    const value = values[field.name];
    if (field.type === 'checkbox') {
      out[field.name] = value === true;
    } else if (field.type === 'number') {
      const text = typeof value === 'string' ? value.trim() : '';
      const number = Number(text);
      out[field.name] = text === '' || !Number.isFinite(number) ? null : number;
    } else {
      out[field.name] = typeof value === 'string' ? value : '';
    }
  }
  return out;
}

/** The field a problem's JSON pointer names (`/value/<name>`), if any. */
export function fieldOfPointer(pointer: string): string | null {
  const match = /^\/value\/([^/]+)/.exec(pointer);
  return match ? match[1].replace(/~1/g, '/').replace(/~0/g, '~') : null;
}
