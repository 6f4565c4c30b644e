import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/preact';
import { afterEach, describe, expect, it, vi } from 'vitest';

import type { FsEntry } from './types';

const listFiles = vi.hoisted(() => vi.fn<(id: string, path: string) => Promise<FsEntry[]>>());
vi.mock('./api', () => ({ listFiles }));

const { FileTree } = await import('./FileTree');

const TREE: Record<string, FsEntry[]> = {
  '': [
    { name: 'index.html', path: 'index.html', type: 'file', size: 385 },
    { name: 'notes', path: 'notes', type: 'dir', size: 0 },
  ],
  notes: [{ name: 'hello.txt', path: 'notes/hello.txt', type: 'file', size: 32 }],
};

afterEach(cleanup);

describe('FileTree', () => {
  it('lists the root, opens a directory on demand and selects a file', async () => {
    listFiles.mockImplementation((_id, path) => Promise.resolve(TREE[path] ?? []));
    const onSelect = vi.fn();
    render(<FileTree sessionId="s1" selected={null} onSelect={onSelect} generation={0} />);
    const dir = await screen.findByRole('button', { name: 'notes/' });
    expect(dir.getAttribute('aria-expanded')).toBe('false');
    expect(listFiles).toHaveBeenCalledTimes(1);

    fireEvent.click(dir);
    const file = await screen.findByRole('button', { name: /hello\.txt/ });
    expect(dir.getAttribute('aria-expanded')).toBe('true');
    expect(listFiles).toHaveBeenLastCalledWith('s1', 'notes');

    fireEvent.click(file);
    expect(onSelect).toHaveBeenCalledWith('notes/hello.txt');

    fireEvent.click(dir);
    await waitFor(() => expect(screen.queryByRole('button', { name: /hello\.txt/ })).toBeNull());
  });
});
