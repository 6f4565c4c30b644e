import { describe, expect, it } from 'vitest';

import {
  EMPTY_PAGE,
  apply,
  applyAll,
  arrange,
  fromState,
  gridProblem,
  neededBodies,
  panelFigure,
  type PageModel,
  type Resolved,
} from './reducer';

let seq = 0;
function msg(to: string, directive: string, body: unknown, extra: Partial<Resolved> = {}): Resolved {
  seq += 1;
  return { seq, to, directive, body, ...extra };
}

const LAYOUT = {
  title: 'Sales',
  areas: ['intro intro', 'chart form'],
  columns: ['2fr', '1fr'],
  regions: [
    { area: 'intro', component: 'text-component-intro' },
    { area: 'chart', component: 'plotly-panel-sales', title: 'Sales' },
    { area: 'form', component: 'text-component-ask' },
  ],
};

const FIGURE = { data: [{ type: 'scatter', mode: 'lines' }], layout: { title: { text: 'Sales' } } };

/** What the gateway's state would hold after `history`: the latest non-removal directive of
 * each address still on the page, in seq order (pages.rs `state`). */
function gatewayState(history: Resolved[]): { seq: number; components: Resolved[] } {
  const latest = new Map<string, Resolved>();
  const removed = new Map<string, number>();
  for (const m of history) {
    if (m.directive === 'component.remove') removed.set((m.body as { component: string }).component, m.seq);
    else latest.set(m.to, m);
  }
  const components = [...latest.values()]
    .filter((m) => !removed.has(m.to) || m.seq > (removed.get(m.to) as number))
    .sort((a, b) => a.seq - b.seq);
  return { seq: history.length ? history[history.length - 1].seq : 0, components };
}

function live(history: Resolved[]): PageModel {
  return applyAll(EMPTY_PAGE, history);
}

function replayed(history: Resolved[]): PageModel {
  const state = gatewayState(history);
  return fromState(state.seq, state.components);
}

/** The page as a person sees it: arrangement and every panel's drawn figure. */
function seen(model: PageModel) {
  const arrangement = arrange(model);
  return {
    seq: model.seq,
    title: arrangement.title,
    regions: arrangement.grid?.regions.map((r) => [r.area, r.entry?.address, r.entry?.content]),
    unplaced: arrangement.unplaced.map((e) => [e.address, e.content]),
    figures: Object.values(model.components)
      .sort((a, b) => a.address.localeCompare(b.address))
      .map((entry) => [entry.address, panelFigure(model.route, entry)]),
  };
}

describe('apply', () => {
  it('applies directives in sequence order and ignores ones already applied', () => {
    const first = msg('text-component-a', 'text.set', { text: 'one' });
    const second = msg('text-component-a', 'text.set', { text: 'two' });
    const model = applyAll(EMPTY_PAGE, [first, second]);
    expect(model.seq).toBe(second.seq);
    expect(model.components['text-component-a'].content).toEqual({ type: 'text', text: { text: 'two', format: 'text', label: undefined } });
    // A poll that overlaps the state (or a repeated batch) changes nothing.
    expect(apply(model, first)).toBe(model);
    expect(applyAll(model, [first, second])).toBe(model);
  });

  it('sets the layout from layout-manager and places components in its regions', () => {
    const model = live([
      msg('layout-manager', 'layout.set', LAYOUT),
      msg('text-component-intro', 'text.set', { text: 'Hello', format: 'markdown' }),
      msg('plotly-panel-sales', 'plotly.figure', FIGURE),
      msg('text-component-extra', 'text.set', { text: 'not in the layout' }),
    ]);
    const arrangement = arrange(model);
    expect(arrangement.title).toBe('Sales');
    expect(arrangement.grid?.areas).toEqual(['intro intro', 'chart form']);
    expect(arrangement.grid?.regions.map((r) => [r.area, r.entry?.address])).toEqual([
      ['intro', 'text-component-intro'],
      ['chart', 'plotly-panel-sales'],
      ['form', undefined],
    ]);
    expect(arrangement.unplaced.map((e) => e.address)).toEqual(['text-component-extra']);
  });

  it('removes a component on component.remove and brings it back on a later directive', () => {
    const set = msg('text-component-a', 'text.set', { text: 'one' });
    const removal = msg('layout-manager', 'component.remove', { component: 'text-component-a' });
    const removed = live([set, removal]);
    expect(removed.components['text-component-a']).toBeUndefined();
    expect(removed.seq).toBe(removal.seq);
    const back = apply(removed, msg('text-component-a', 'text.set', { text: 'again' }));
    expect(back.components['text-component-a'].content).toMatchObject({ type: 'text', text: { text: 'again' } });
  });

  it('keeps a removed component area empty in the layout', () => {
    const model = live([
      msg('layout-manager', 'layout.set', LAYOUT),
      msg('plotly-panel-sales', 'plotly.figure', FIGURE),
      msg('layout-manager', 'component.remove', { component: 'plotly-panel-sales' }),
    ]);
    const chart = arrange(model).grid?.regions.find((r) => r.area === 'chart');
    expect(chart).toMatchObject({ area: 'chart', component: 'plotly-panel-sales', title: 'Sales' });
    expect(chart?.entry).toBeUndefined();
  });

  it('shows why a directive could not be used in place of the component', () => {
    const model = live([
      msg('text-component-a', 'text.set', { text: 42 }),
      msg('plotly-panel-b', 'text.set', { text: 'wrong address kind' }),
      msg('text-component-c', 'form.set', {}, { body: undefined, failure: 'blob 1 is not JSON' }),
    ]);
    expect(model.components['text-component-a'].content).toEqual({ type: 'failed', directive: 'text.set', reason: '/text must be a string' });
    expect(model.components['plotly-panel-b'].content).toMatchObject({ type: 'failed', reason: 'plotly-panel-b does not know text.set' });
    expect(model.components['text-component-c'].content).toMatchObject({ type: 'failed', reason: 'blob 1 is not JSON' });
  });

  it('ignores addresses it does not know but still advances', () => {
    const before = live([msg('text-component-a', 'text.set', { text: 'x' })]);
    const unknown = msg('video-player-1', 'video.play', {});
    const after = apply(before, unknown);
    expect(after.components).toBe(before.components);
    expect(after.seq).toBe(unknown.seq);
  });
});

describe('dataset routing', () => {
  const rows = [
    { x: 1, y: 2 },
    { x: 2, y: 4 },
    { x: 3, y: 8 },
  ];

  it('routes inline rows to the named panels, mapping columns onto trace attributes', () => {
    const model = live([
      msg('plotly-panel-a', 'plotly.figure', FIGURE),
      msg('plotly-panel-b', 'plotly.figure', FIGURE),
      msg('dataset-router', 'dataset.route', { dataset: { rows }, to: ['plotly-panel-a'], mapping: { x: 'x', y: 'y', 'marker.color': 'y' } }),
    ]);
    const a = panelFigure(model.route, model.components['plotly-panel-a']);
    expect(a?.figure.data).toEqual([{ type: 'scatter', mode: 'lines', x: [1, 2, 3], y: [2, 4, 8], marker: { color: [2, 4, 8] } }]);
    expect(a?.notes).toEqual([]);
    // Not routed to b: its figure is as sent.
    expect(panelFigure(model.route, model.components['plotly-panel-b'])?.figure.data).toEqual(FIGURE.data);
  });

  it('routes a stored dataset the session read by its blob id', () => {
    const model = live([
      msg('dataset-router', 'dataset.route', { dataset: { blobId: '01a20061-ac38-7247-ba39-3c2d60ddc0b8' }, to: ['plotly-panel-a'], mapping: { x: 'x', y: 'y' } }, {
        dataset: { table: { columns: { x: [1, 2, 3], y: [2, 4, 8] }, length: 3 } },
      }),
      msg('plotly-panel-a', 'plotly.figure', FIGURE),
    ]);
    // The figure came after its data: order does not matter.
    expect(panelFigure(model.route, model.components['plotly-panel-a'])?.figure.data[0]).toMatchObject({ x: [1, 2, 3], y: [2, 4, 8] });
  });

  it('says so on the panel when the dataset could not be read or lacks a column', () => {
    const failed = live([
      msg('plotly-panel-a', 'plotly.figure', FIGURE),
      msg('dataset-router', 'dataset.route', { dataset: { blobId: '01a20061-ac38-7247-ba39-3c2d60ddc0b8' }, to: ['plotly-panel-a'], mapping: { x: 'x' } }, {
        dataset: { error: 'blob is not available to this page' },
      }),
    ]);
    expect(panelFigure(failed.route, failed.components['plotly-panel-a'])).toMatchObject({ datasetError: 'blob is not available to this page', figure: FIGURE });

    const missing = live([
      msg('plotly-panel-a', 'plotly.figure', FIGURE),
      msg('dataset-router', 'dataset.route', { dataset: { rows }, to: ['plotly-panel-a'], mapping: { x: 'x', y: 'revenue' } }),
    ]);
    const panel = panelFigure(missing.route, missing.components['plotly-panel-a']);
    expect(panel?.figure.data[0]).toMatchObject({ x: [1, 2, 3] });
    expect(panel?.notes).toEqual(['The dataset has no column "revenue" for y (columns: x, y).']);
  });

  it('replaces the previous routing with each dataset.route, as the page state does', () => {
    const model = live([
      msg('plotly-panel-a', 'plotly.figure', FIGURE),
      msg('plotly-panel-b', 'plotly.figure', FIGURE),
      msg('dataset-router', 'dataset.route', { dataset: { rows }, to: ['plotly-panel-a'], mapping: { x: 'x' } }),
      msg('dataset-router', 'dataset.route', { dataset: { rows }, to: ['plotly-panel-b'], mapping: { y: 'y' } }),
    ]);
    expect(panelFigure(model.route, model.components['plotly-panel-a'])?.figure.data[0]).not.toHaveProperty('x');
    expect(panelFigure(model.route, model.components['plotly-panel-b'])?.figure.data[0]).toMatchObject({ y: [2, 4, 8] });
  });

  it('cannot reach a prototype through a mapping path', () => {
    const model = live([
      msg('plotly-panel-a', 'plotly.figure', FIGURE),
      msg('dataset-router', 'dataset.route', { dataset: { rows }, to: ['plotly-panel-a'], mapping: { 'constructor.prototype.polluted': 'x' } }),
    ]);
    const panel = panelFigure(model.route, model.components['plotly-panel-a']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(panel?.notes).toEqual(['constructor.prototype.polluted is not a trace attribute that can be set.']);
  });
});

describe('replay from the page state', () => {
  seq = 100;
  const rows = [
    { x: 1, y: 2 },
    { x: 2, y: 4 },
  ];
  const history: Resolved[] = [
    msg('text-component-intro', 'text.set', { text: 'draft' }),
    msg('layout-manager', 'layout.set', { ...LAYOUT, title: 'Draft' }),
    msg('plotly-panel-sales', 'plotly.figure', FIGURE),
    msg('dataset-router', 'dataset.route', { dataset: { rows }, to: ['plotly-panel-sales'], mapping: { x: 'x', y: 'y' } }),
    msg('text-component-ask', 'form.set', { fields: [{ name: 'q', type: 'text' }] }),
    msg('text-component-intro', 'text.set', { text: 'final', format: 'markdown' }),
    msg('text-component-old', 'text.set', { text: 'to be removed' }),
    msg('layout-manager', 'component.remove', { component: 'text-component-old' }),
    msg('plotly-panel-sales', 'plotly.figure', { ...FIGURE, layout: { title: { text: 'Updated' } } }),
    msg('layout-manager', 'layout.set', LAYOUT),
    msg('plotly-panel-other', 'plotly.figure', FIGURE),
    msg('dataset-router', 'dataset.route', { dataset: { rows }, to: ['plotly-panel-other'], mapping: { y: 'x' } }),
    msg('text-component-gone', 'text.set', { text: 'removed, then back' }),
    msg('layout-manager', 'component.remove', { component: 'text-component-gone' }),
    msg('text-component-gone', 'text.set', { text: 'back again' }),
  ];

  it('gives the same page as applying the whole history live, at every point of it', () => {
    for (let n = 1; n <= history.length; n++) {
      const prefix = history.slice(0, n);
      expect(seen(replayed(prefix)), `after ${n} directives`).toEqual(seen(live(prefix)));
    }
  });

  it('continues after the state with the polled directives like a browser that saw everything', () => {
    const early = history.slice(0, 6);
    const later = history.slice(6);
    const joinedLate = applyAll(replayed(early), later);
    expect(seen(joinedLate)).toEqual(seen(live(history)));
    expect(joinedLate.components['text-component-old']).toBeUndefined();
    expect(joinedLate.components['text-component-gone'].content).toMatchObject({ text: { text: 'back again' } });
  });

  it('takes the state seq as the place to poll from even when the last directive was a removal', () => {
    const state = gatewayState(history.slice(0, 8));
    expect(fromState(state.seq, state.components).seq).toBe(history[7].seq);
  });
});

describe('neededBodies', () => {
  it('skips bodies a later directive to the same address overwrites, keeping removals', () => {
    const batch = [
      { seq: 1, to: 'text-component-a', directive: 'text.set' },
      { seq: 2, to: 'layout-manager', directive: 'layout.set' },
      { seq: 3, to: 'layout-manager', directive: 'component.remove' },
      { seq: 4, to: 'text-component-a', directive: 'form.set' },
      { seq: 5, to: 'dataset-router', directive: 'dataset.route' },
    ];
    expect([...neededBodies(batch)].sort()).toEqual([2, 3, 4, 5]);
  });

  it('gives the same page when superseded directives are only counted', () => {
    seq = 200;
    const batch = [
      msg('text-component-a', 'text.set', { text: 'one' }),
      msg('layout-manager', 'component.remove', { component: 'text-component-a' }),
      msg('text-component-a', 'text.set', { text: 'two' }),
      msg('plotly-panel-p', 'plotly.figure', FIGURE),
      msg('plotly-panel-p', 'plotly.figure', { ...FIGURE, layout: {} }),
    ];
    const needed = neededBodies(batch);
    const skipping = batch.map((m) => (needed.has(m.seq) ? m : { seq: m.seq, to: m.to, directive: m.directive, superseded: true }));
    expect(seen(live(skipping))).toEqual(seen(live(batch)));
  });
});

describe('arrange', () => {
  it('orders components without a region by id, numbers as numbers', () => {
    seq = 300;
    const model = live([
      msg('text-component-10', 'text.set', { text: 'ten' }),
      msg('plotly-panel-2', 'plotly.figure', FIGURE),
      msg('text-component-2', 'text.set', { text: 'two' }),
      msg('text-component-1', 'text.set', { text: 'one' }),
    ]);
    expect(arrange(model).unplaced.map((e) => e.address)).toEqual(['text-component-1', 'text-component-2', 'plotly-panel-2', 'text-component-10']);
  });

  it('falls back to one component after another when the areas are not a grid', () => {
    seq = 400;
    const model = live([
      msg('layout-manager', 'layout.set', { areas: ['a b', 'b a'], regions: [{ area: 'a', component: 'text-component-x' }] }),
      msg('text-component-x', 'text.set', { text: 'x' }),
    ]);
    const arrangement = arrange(model);
    expect(arrangement.grid).toBeUndefined();
    expect(arrangement.layoutError).toBe('The layout is not a grid: area "a" is not a rectangle.');
    expect(arrangement.unplaced.map((e) => e.address)).toEqual(['text-component-x']);
  });

  it('rejects a layout whose CSS values are not the declarative tracks the schema allows', () => {
    seq = 500;
    const model = live([msg('layout-manager', 'layout.set', { areas: ['a'], columns: ['url(https://evil.example/x)'], regions: [] })]);
    expect(model.layout?.error).toMatch(/columns\/0 does not match/);
    expect(arrange(model).grid).toBeUndefined();
  });
});

describe('gridProblem', () => {
  it('accepts rectangular areas and empty cells', () => {
    expect(gridProblem(['head head', 'side main', '. main'])).toBeNull();
  });
  it('names ragged rows and non-rectangular areas', () => {
    expect(gridProblem(['a b', 'a'])).toBe('row 2 has 1 cells, the first row has 2');
    expect(gridProblem(['a a', 'a b'])).toBe('area "a" is not a rectangle');
  });
});
