import { useState } from 'preact/hooks';

import { ApiError, api } from '../api/http';
import { credentials, encodeBasic, type Credentials } from '../auth';

/** Checks the credentials against the orchestrator before keeping them (in memory only). */
export function SignIn() {
  const [user, setUser] = useState('operator');
  const [pass, setPass] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const candidate: Credentials = { user, pass };
    try {
      await api('orchestrator', '/tasks', {
        query: { limit: 1 },
        headers: { Authorization: `Basic ${encodeBasic(candidate)}` },
      });
      credentials.value = candidate;
    } catch (cause) {
      if (cause instanceof ApiError && cause.status === 401) {
        setError('Wrong user name or password.');
      } else if (cause instanceof ApiError && cause.isDown) {
        setError(`The orchestrator is not answering (${cause.message}). Is the stack running?`);
      } else {
        setError(cause instanceof Error ? cause.message : String(cause));
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <main class="signin" id="main">
      <form onSubmit={submit} aria-labelledby="signin-title" class="card">
        <h1 id="signin-title">Sign in to Autonoma</h1>
        <label>
          User
          <input name="user" autoComplete="username" value={user} onInput={(e) => setUser(e.currentTarget.value)} required />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            value={pass}
            onInput={(e) => setPass(e.currentTarget.value)}
            required
          />
        </label>
        {error && (
          <p class="notice notice-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
