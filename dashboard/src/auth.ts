import { signal } from '@preact/signals';

// The operator's credentials live in memory only: a reload signs out.
export interface Credentials {
  user: string;
  pass: string;
}

export const credentials = signal<Credentials | null>(null);

/** `base64(user:pass)`, UTF-8 safe. */
export function encodeBasic({ user, pass }: Credentials): string {
  const bytes = new TextEncoder().encode(`${user}:${pass}`);
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export function authorizationHeader(): Record<string, string> {
  const current = credentials.value;
  return current ? { Authorization: `Basic ${encodeBasic(current)}` } : {};
}

export function signOut(): void {
  credentials.value = null;
}
