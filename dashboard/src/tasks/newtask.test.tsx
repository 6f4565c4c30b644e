import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/preact';
import { LocationProvider } from 'preact-iso';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { ApiError } from '../api/http';
import { NewTask } from '../views/newtask';
import * as api from './api';

vi.mock('./api', () => ({
  listAgents: vi.fn(),
  createTask: vi.fn(),
}));

const ECHO_AGENT = {
  name: 'echo-agent',
  live: true,
  kinds: [
    {
      kind: 'echo',
      payloadSchema: {
        type: 'object',
        required: ['message'],
        properties: {
          delayMs: { type: 'integer', minimum: 0, maximum: 600000, description: 'Wait this long before answering.' },
          failAlways: { type: 'boolean' },
          message: { type: 'string', title: 'Message' },
        },
      },
    },
  ],
};

function open(url: string) {
  history.replaceState(null, '', url);
  return render(
    <LocationProvider>
      <NewTask />
    </LocationProvider>,
  );
}

describe('NewTask', () => {
  beforeEach(() => {
    vi.mocked(api.listAgents).mockResolvedValue([ECHO_AGENT]);
  });
  afterEach(() => {
    cleanup();
    vi.resetAllMocks();
  });

  it('renders the kind’s schema as labelled fields and checks them as they are typed', async () => {
    open('/tasks/new?kind=echo');
    const delay = (await screen.findByLabelText('delayMs')) as HTMLInputElement;
    expect(delay.type).toBe('number');
    expect(screen.getByText('Wait this long before answering. (min 0, max 600000)')).toBeTruthy();
    expect((screen.getByLabelText('failAlways') as HTMLInputElement).type).toBe('checkbox');
    expect(screen.getByLabelText(/Message/).getAttribute('aria-required')).toBe('true');

    fireEvent.input(delay, { target: { value: '-4' } });
    expect(await screen.findByText('must be at least 0')).toBeTruthy();
    expect(delay.getAttribute('aria-invalid')).toBe('true');
    fireEvent.input(delay, { target: { value: '40' } });
    await waitFor(() => expect(screen.queryByText('must be at least 0')).toBeNull());
  });

  it('does not send an invalid task and lists what to fix', async () => {
    open('/tasks/new?kind=echo');
    fireEvent.click(await screen.findByRole('button', { name: 'Create task' }));
    expect(await screen.findByText(/not ready to send: 1 problem/)).toBeTruthy();
    expect(screen.getByRole('link', { name: 'Message: required' })).toBeTruthy();
    expect(api.createTask).not.toHaveBeenCalled();
  });

  it('sends the payload and options, and shows a 422’s field errors next to the fields', async () => {
    vi.mocked(api.createTask).mockRejectedValue(
      new ApiError('orchestrator', 'http', 422, {
        status: 422,
        errors: [
          { field: '/payload/message', message: 'too rude' },
          { field: '/correlationId', message: '1-200 characters' },
        ],
      }, 'orchestrator: The task is not valid.'),
    );
    open('/tasks/new?kind=echo');
    fireEvent.input(await screen.findByLabelText(/Message/), { target: { value: 'hello' } });
    fireEvent.input(screen.getByLabelText('delayMs'), { target: { value: '25' } });
    fireEvent.input(screen.getByLabelText('Correlation id'), { target: { value: 'c-1' } });
    fireEvent.click(screen.getByRole('button', { name: 'Create task' }));

    await waitFor(() => expect(api.createTask).toHaveBeenCalledTimes(1));
    expect(vi.mocked(api.createTask).mock.calls[0][0]).toEqual({
      kind: 'echo',
      payload: { message: 'hello', delayMs: 25 },
      correlationId: 'c-1',
    });
    const message = screen.getByLabelText(/Message/);
    expect(await screen.findByText('too rude')).toBeTruthy();
    expect(message.getAttribute('aria-describedby')).toContain(screen.getByText('too rude').id);
    expect(screen.getByLabelText('Correlation id').getAttribute('aria-invalid')).toBe('true');
  });

  it('goes to the new task’s page once created', async () => {
    vi.mocked(api.createTask).mockResolvedValue({ task: { id: 'new-task-id' } as never, created: true });
    open('/tasks/new?kind=echo');
    fireEvent.input(await screen.findByLabelText(/Message/), { target: { value: 'hi' } });
    fireEvent.click(screen.getByRole('button', { name: 'Create task' }));
    await waitFor(() => expect(location.pathname).toBe('/tasks/new-task-id'));
  });

  it('falls back to the JSON editor and shows parse and schema errors there', async () => {
    open('/tasks/new?kind=echo');
    fireEvent.click(await screen.findByRole('tab', { name: 'JSON editor' }));
    const editor = screen.getByLabelText('Payload JSON');
    fireEvent.input(editor, { target: { value: '{"message": ' } });
    expect(await screen.findByText(/^Not valid JSON/)).toBeTruthy();
    fireEvent.input(editor, { target: { value: '{"message": 5}' } });
    expect(await screen.findByText(/must be text/)).toBeTruthy();
  });
});
