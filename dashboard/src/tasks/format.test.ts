import { describe, expect, it } from 'vitest';

import { compactTime } from './format';

describe('compactTime', () => {
  const now = new Date(2026, 10, 21, 18, 0, 0);

  it('shows only the time for today', () => {
    const today = new Date(2026, 10, 21, 9, 5, 7);
    expect(compactTime(today.toISOString(), now)).toBe(today.toLocaleTimeString());
  });

  it('adds the date for other days', () => {
    const earlier = new Date(2026, 10, 20, 9, 5, 7);
    const text = compactTime(earlier.toISOString(), now);
    expect(text).not.toBe(earlier.toLocaleTimeString());
    expect(text).toContain(earlier.toLocaleTimeString());
  });

  it('leaves what is not a time as it is', () => {
    expect(compactTime('soon', now)).toBe('soon');
  });
});
