import { describe, expect, it } from 'vitest';

import { fieldOfPointer, initialValues, submission } from './form-values';

describe('form values', () => {
  const form = {
    fields: [
      { name: 'q', type: 'text' as const, required: true },
      { name: 'n', type: 'number' as const, required: false, default: 4 },
      { name: 'pick', type: 'select' as const, required: false, options: [{ value: 'a' }, { value: 'b' }] },
      { name: 'ok', type: 'checkbox' as const, required: false },
    ],
  };

  it('starts from the defaults the AI gave', () => {
    expect(initialValues(form)).toEqual({ q: '', n: '4', pick: 'a', ok: false });
  });

  it('submits numbers as numbers, empty numbers as null and checkboxes as booleans', () => {
    expect(submission(form, { q: 'why?', n: '2.5', pick: 'b', ok: true })).toEqual({ q: 'why?', n: 2.5, pick: 'b', ok: true });
    expect(submission(form, { q: '', n: ' ', pick: 'a', ok: false })).toEqual({ q: '', n: null, pick: 'a', ok: false });
  });

  it('finds the field a problem pointer names', () => {
    expect(fieldOfPointer('/value/q')).toBe('q');
    expect(fieldOfPointer('/component')).toBeNull();
  });
});
