import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/preact';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { ApiError } from '../api/http';
import { PageView } from './page-view';
import { EMPTY_PAGE, applyAll, type Resolved } from './reducer';

const drawn: { data: unknown[]; layout: Record<string, unknown> }[] = [];
vi.mock('plotly.js-dist-min', () => ({
  default: {
    react: async (root: HTMLElement, figure: { data: unknown[]; layout: Record<string, unknown> }) => {
      drawn.push(figure);
      root.classList.add('js-plotly-plot');
      return root;
    },
    purge: () => {},
    Plots: { resize: () => {} },
  },
}));

declare global {
  interface Window {
    __pwned?: number;
  }
}

afterEach(() => {
  cleanup();
  drawn.length = 0;
  delete window.__pwned;
});

function page(messages: Omit<Resolved, 'seq'>[]) {
  return applyAll(
    EMPTY_PAGE,
    messages.map((m, i) => ({ ...m, seq: i + 1 })),
  );
}

const XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">';

describe('PageView', () => {
  it('shows hostile text as text: no script, no image, no handler', () => {
    const { container } = render(
      <PageView
        model={page([
          { to: 'text-component-plain', directive: 'text.set', body: { text: XSS, label: XSS } },
          { to: 'text-component-md', directive: 'text.set', body: { text: `# ${XSS}\n\n[go](javascript:window.__pwned=3) ${XSS}`, format: 'markdown' } },
          { to: 'text-component-form', directive: 'form.set', body: { title: XSS, fields: [{ name: 'a', label: XSS, type: 'text', placeholder: XSS }] } },
        ])}
        sendFor={() => async () => {}}
        showAddresses={false}
      />,
    );
    expect(container.querySelectorAll('script, img, [onerror]')).toHaveLength(0);
    expect(container.querySelector('a[href^="javascript"]')).toBeNull();
    expect(screen.getAllByText(XSS, { exact: false }).length).toBeGreaterThan(0);
    expect(screen.getByText('go').tagName).toBe('SPAN');
    expect(window.__pwned).toBeUndefined();
  });

  it('lays components out in the grid the layout-manager set', () => {
    const { container } = render(
      <PageView
        model={page([
          {
            to: 'layout-manager',
            directive: 'layout.set',
            body: { areas: ['a b'], columns: ['1fr', '2fr'], gap: '1rem', regions: [{ area: 'b', component: 'text-component-x', title: 'Second' }] },
          },
          { to: 'text-component-x', directive: 'text.set', body: { text: 'in b' } },
        ])}
        sendFor={() => async () => {}}
        showAddresses
      />,
    );
    const grid = container.querySelector<HTMLElement>('.ai-grid')!;
    expect(grid.style.gridTemplateAreas).toBe('"a b"');
    expect(grid.style.gridTemplateColumns).toBe('1fr 2fr');
    const region = screen.getByRole('region', { name: 'Second' });
    expect(region.style.gridArea).toContain('b');
    expect(region.textContent).toContain('in b');
    expect(region.textContent).toContain('text-component-x');
  });

  it('draws a panel with the dataset routed to it', async () => {
    render(
      <PageView
        model={page([
          { to: 'plotly-panel-p', directive: 'plotly.figure', body: { data: [{ type: 'scatter' }], layout: { title: { text: 'Growth' } } } },
          { to: 'dataset-router', directive: 'dataset.route', body: { dataset: { rows: [{ a: 1, b: 2 }, { a: 2, b: 4 }] }, to: ['plotly-panel-p'], mapping: { x: 'a', y: 'b' } } },
        ])}
        sendFor={() => async () => {}}
        showAddresses={false}
      />,
    );
    await waitFor(() => expect(drawn).toHaveLength(1));
    expect(drawn[0].data).toEqual([{ type: 'scatter', x: [1, 2], y: [2, 4] }]);
    expect(screen.getByRole('group', { name: 'Chart: Growth' })).toBeTruthy();
  });

  it('does not redraw a chart when something else on the page changes', async () => {
    const before = page([
      { to: 'plotly-panel-p', directive: 'plotly.figure', body: { data: [{ type: 'scatter', y: [1, 2] }], layout: {} } },
      { to: 'text-component-t', directive: 'text.set', body: { text: 'before' } },
    ]);
    const view = render(<PageView model={before} sendFor={() => async () => {}} showAddresses={false} />);
    await waitFor(() => expect(drawn).toHaveLength(1));
    const after = applyAll(before, [{ seq: 3, to: 'text-component-t', directive: 'text.set', body: { text: 'after' } }]);
    view.rerender(<PageView model={after} sendFor={() => async () => {}} showAddresses={false} />);
    await screen.findByText('after');
    const redrawn = applyAll(after, [{ seq: 4, to: 'plotly-panel-p', directive: 'plotly.figure', body: { data: [{ type: 'bar', y: [3] }], layout: {} } }]);
    view.rerender(<PageView model={redrawn} sendFor={() => async () => {}} showAddresses={false} />);
    await waitFor(() => expect(drawn).toHaveLength(2));
    expect(drawn[1].data).toEqual([{ type: 'bar', y: [3] }]);
  });

  it('sends the form to the AI and shows a refusal next to the field it names', async () => {
    const sent: [string, Record<string, unknown>][] = [];
    let refuse = false;
    render(
      <PageView
        model={page([
          {
            to: 'text-component-ask',
            directive: 'form.set',
            body: { submitLabel: 'Ask', fields: [{ name: 'question', label: 'Question', type: 'text' }, { name: 'n', label: 'How many', type: 'number', default: 3 }] },
          },
        ])}
        sendFor={(address) => async (value) => {
          if (refuse) throw new ApiError('queue-gateway', 'http', 422, { errors: [{ field: '/value/question', message: 'too vague' }] }, 'invalid');
          sent.push([address, value]);
        }}
        showAddresses={false}
      />,
    );
    fireEvent.input(screen.getByLabelText('Question'), { target: { value: 'Why?' } });
    fireEvent.click(screen.getByRole('button', { name: 'Ask' }));
    await waitFor(() => expect(sent).toEqual([['text-component-ask', { question: 'Why?', n: 3 }]]));
    await screen.findByText(/^Sent at/);

    refuse = true;
    fireEvent.click(screen.getByRole('button', { name: 'Ask' }));
    const message = await screen.findByText('too vague');
    expect(screen.getByLabelText('Question').getAttribute('aria-invalid')).toBe('true');
    expect(screen.getByLabelText('Question').getAttribute('aria-describedby')).toBe(message.id);
  });

  it('says when the page is empty', () => {
    render(<PageView model={EMPTY_PAGE} sendFor={() => async () => {}} showAddresses={false} />);
    expect(screen.getByText(/Nothing is on this page yet/)).toBeTruthy();
  });
});
