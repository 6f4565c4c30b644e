import { useEffect, useState } from 'preact/hooks';

import { ErrorNotice } from '../components/status';
import { listFiles } from './api';
import { sortEntries } from './sandbox';
import { formatBytes } from './time';
import type { FsEntry } from './types';

interface Dir {
  entries?: FsEntry[];
  error?: Error;
  loading: boolean;
}

/** A session's workspace, one directory at a time: directories open and close, files open in the viewer. */
export function FileTree({
  sessionId,
  selected,
  onSelect,
  generation,
}: {
  sessionId: string;
  selected: string | null;
  onSelect: (path: string) => void;
  /** Bumped to list every open directory again. */
  generation: number;
}) {
  const [dirs, setDirs] = useState<Record<string, Dir>>({});
  const [open, setOpen] = useState<Set<string>>(new Set(['']));

  async function load(path: string) {
    setDirs((current) => ({ ...current, [path]: { ...current[path], loading: true } }));
    try {
      const entries = sortEntries(await listFiles(sessionId, path));
      setDirs((current) => ({ ...current, [path]: { entries, loading: false } }));
    } catch (error) {
      setDirs((current) => ({
        ...current,
        [path]: { ...current[path], error: error instanceof Error ? error : new Error(String(error)), loading: false },
      }));
    }
  }

  useEffect(() => {
    for (const path of open) void load(path);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [sessionId, generation]);

  function toggle(path: string) {
    const next = new Set(open);
    if (next.has(path)) next.delete(path);
    else {
      next.add(path);
      if (!dirs[path]?.entries) void load(path);
    }
    setOpen(next);
  }

  function renderDir(path: string) {
    const dir = dirs[path];
    if (!dir || (dir.loading && !dir.entries)) {
      return (
        <p class="muted small" role="status">
          Listing…
        </p>
      );
    }
    if (dir.error && !dir.entries) {
      return <ErrorNotice error={dir.error} retry={() => void load(path)} />;
    }
    const entries = dir.entries ?? [];
    if (entries.length === 0) return <p class="muted small">{path ? 'Empty directory' : 'The workspace is empty.'}</p>;
    return (
      <ul>
        {entries.map((entry) => (
          <li key={entry.path}>
            {entry.type === 'dir' ? (
              <>
                <button type="button" aria-expanded={open.has(entry.path)} onClick={() => toggle(entry.path)}>
                  <span aria-hidden="true">{open.has(entry.path) ? '▾' : '▸'}</span> {entry.name}/
                </button>
                {open.has(entry.path) && renderDir(entry.path)}
              </>
            ) : entry.type === 'file' ? (
              <button type="button" aria-current={selected === entry.path ? 'true' : undefined} onClick={() => onSelect(entry.path)}>
                <span aria-hidden="true">·</span> {entry.name} <span class="size">{formatBytes(entry.size)}</span>
              </button>
            ) : (
              <span class="muted" title={entry.type}>
                {entry.name} <span class="size">({entry.type})</span>
              </span>
            )}
          </li>
        ))}
      </ul>
    );
  }

  return (
    <nav class="file-tree" aria-label="Workspace files" data-testid="file-tree">
      {renderDir('')}
    </nav>
  );
}
