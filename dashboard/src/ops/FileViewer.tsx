import { ApiError } from '../api/http';
import { ErrorNotice, Loading } from '../components/status';
import { useResource } from '../hooks';
import { readFile } from './api';
import { formatBytes } from './time';

export function FileViewer({ sessionId, path, generation }: { sessionId: string; path: string | null; generation: number }) {
  const file = useResource((signal) => (path === null ? Promise.resolve(null) : readFile(sessionId, path, signal)), [sessionId, path, generation]);
  if (path === null) return <p class="muted">Choose a file to see its content.</p>;
  const notText = file.error instanceof ApiError && file.error.status === 409;
  // While another file loads, the previous one's content is not shown under the new name.
  const data = file.data && (file.data.path === path || !file.loading) ? file.data : null;
  return (
    <div class="file-viewer" data-testid="file-viewer">
      <p class="row">
        <code>{path}</code>
        {data && <span class="muted small">{formatBytes(data.size)}</span>}
        {data?.truncated && <span class="badge badge-warn">truncated: only the first part is shown</span>}
      </p>
      {file.loading && !data && <Loading label="Reading…" />}
      {notText && (
        <div class="notice notice-down" role="alert">
          {(file.error as ApiError).problem?.detail ?? 'This file is not UTF-8 text and cannot be shown.'}
        </div>
      )}
      {file.error && !notText && <ErrorNotice error={file.error} retry={file.reload} />}
      {data && !file.error && (
        <pre class="file-view" tabIndex={0} aria-label={`Content of ${path}`}>
          {data.content}
        </pre>
      )}
    </div>
  );
}
