import { describe, expect, it } from 'vitest';

import { decodeForm, decodeLayout, decodePoll, decodeRoute, decodeText } from './decode';
import { parseAddress } from './model';

describe('decoding', () => {
  it('parses addresses', () => {
    expect(parseAddress('layout-manager')).toEqual({ kind: 'layout' });
    expect(parseAddress('plotly-panel-1')).toEqual({ kind: 'plotly', id: '1' });
    expect(parseAddress('text-component-intro_2')).toEqual({ kind: 'text', id: 'intro_2' });
    expect(parseAddress('text-component-')).toBeNull();
    expect(parseAddress('plotly-panelx')).toBeNull();
  });

  it('checks bodies as the directive schemas do', () => {
    expect(decodeText({ text: 'hi' })).toEqual({ ok: true, value: { text: 'hi', format: 'text', label: undefined } });
    expect(decodeText({ text: 'hi', format: 'html' })).toEqual({ ok: false, error: '/format must be "text" or "markdown"' });
    expect(decodeText({ text: 'hi', onload: 'x' })).toEqual({ ok: false, error: '/onload is not an allowed property' });
    expect(decodeForm({ fields: [{ name: 'a', type: 'select' }] })).toEqual({ ok: false, error: '/fields/0/options must be an array' });
    expect(decodeForm({ fields: [{ name: 'a', type: 'text', options: [{ value: 'x' }] }] })).toMatchObject({ ok: false });
    expect(decodeForm({ fields: [{ name: 'a', type: 'text' }, { name: 'a', type: 'number' }] })).toEqual({ ok: false, error: '/fields/1/name repeats the field name a' });
    expect(decodeLayout({ areas: ['a'], regions: [{ area: 'a', component: 'layout-manager' }] })).toMatchObject({ ok: false });
    expect(decodeLayout({ areas: ['a"; background: url(x)'], regions: [] })).toMatchObject({ ok: false });
    expect(decodeRoute({ dataset: { blobId: 'nope' }, to: ['plotly-panel-a'], mapping: { x: 'x' } })).toMatchObject({ ok: false });
    expect(decodeRoute({ dataset: { rows: [] }, to: ['plotly-panel-a', 'plotly-panel-a'], mapping: { x: 'x' } })).toEqual({ ok: false, error: '/to must not repeat a panel' });
    expect(decodeRoute({ dataset: { rows: [] }, to: ['plotly-panel-a'], mapping: {} })).toEqual({ ok: false, error: '/mapping must map at least one attribute' });
  });

  it('reads poll answers and refuses malformed ones', () => {
    expect(decodePoll({ messages: [], next: 4 })).toEqual({ ok: true, value: { messages: [], next: 4 } });
    expect(decodePoll({ messages: [{ id: 'x', page: 'p', to: 'layout-manager', directive: 'layout.set', body: {}, seq: 1 }], next: 1 })).toEqual({
      ok: false,
      error: '/messages/0/body must be inline or a blob reference',
    });
  });
});
