import { ApiError } from '../api/http';

/** renderctl answers 503 `render-token-missing` to every Render call when it has no API token. */
export function isTokenMissing(error: unknown): boolean {
  return (
    error instanceof ApiError &&
    error.status === 503 &&
    typeof error.problem?.type === 'string' &&
    error.problem.type.endsWith('render-token-missing')
  );
}

export type Tone = 'ok' | 'info' | 'warn' | 'bad' | 'muted';

/** Badge colour of a Render deploy status. */
export function deployTone(status: string | undefined): Tone {
  switch (status) {
    case 'live':
      return 'ok';
    case 'build_failed':
    case 'update_failed':
    case 'pre_deploy_failed':
      return 'bad';
    case 'canceled':
    case 'deactivated':
      return 'muted';
    case 'created':
    case 'queued':
    case 'build_in_progress':
    case 'update_in_progress':
    case 'pre_deploy_in_progress':
      return 'info';
    default:
      return 'muted';
  }
}

/** What a monitor finding's action means for the operator. */
export function findingTone(action: string): Tone {
  if (action === 'fixed') return 'ok';
  if (action === 'fix_failed') return 'bad';
  if (action === 'fixing') return 'info';
  return 'warn';
}

export function humanize(status: string | undefined): string {
  return status ? status.replace(/_/g, ' ') : 'unknown';
}
