import { describe, expect, it } from 'vitest';

import { parseInline, parseMarkdown } from './markdown';

describe('parseInline', () => {
  it('reads emphasis, code, strikethrough and hard breaks', () => {
    expect(parseInline('a **b** *c* `d*e` ~~f~~ g  \nh')).toEqual([
      { type: 'text', text: 'a ' },
      { type: 'strong', children: [{ type: 'text', text: 'b' }] },
      { type: 'text', text: ' ' },
      { type: 'em', children: [{ type: 'text', text: 'c' }] },
      { type: 'text', text: ' ' },
      { type: 'code', text: 'd*e' },
      { type: 'text', text: ' ' },
      { type: 'del', children: [{ type: 'text', text: 'f' }] },
      { type: 'text', text: ' g' },
      { type: 'break' },
      { type: 'text', text: 'h' },
    ]);
  });

  it('leaves snake_case and lone markers alone', () => {
    expect(parseInline('use snake_case_names * 2')).toEqual([{ type: 'text', text: 'use snake_case_names * 2' }]);
  });

  it('keeps safe link targets, with balanced parentheses, and drops unsafe ones', () => {
    expect(parseInline('[plot](https://en.wikipedia.org/wiki/Plot_(graphics))')).toEqual([
      { type: 'link', href: 'https://en.wikipedia.org/wiki/Plot_(graphics)', children: [{ type: 'text', text: 'plot' }] },
    ]);
    expect(parseInline('[x](javascript:alert(1)) <https://example.com>')).toEqual([
      { type: 'link', href: null, children: [{ type: 'text', text: 'x' }] },
      { type: 'text', text: ' ' },
      { type: 'link', href: 'https://example.com/', children: [{ type: 'text', text: 'https://example.com' }] },
    ]);
  });

  it('keeps raw HTML as text', () => {
    expect(parseInline('<script>window.__pwned=1</script><img src=x onerror="x()">')).toEqual([
      { type: 'text', text: '<script>window.__pwned=1</script><img src=x onerror="x()">' },
    ]);
  });

  it('shows an image as a link to it rather than loading it', () => {
    expect(parseInline('![chart](https://example.com/c.png)')).toEqual([
      { type: 'link', href: 'https://example.com/c.png', children: [{ type: 'text', text: 'chart' }] },
    ]);
  });
});

describe('parseMarkdown', () => {
  it('reads headings, paragraphs, lists, quotes, rules and code', () => {
    const blocks = parseMarkdown('# Title\n\nSome\ntext.\n\n- one\n- two\n  - nested\n\n3. three\n4. four\n\n> quoted\n\n---\n\n```js\nlet a = "<b>";\n```');
    expect(blocks.map((b) => b.type)).toEqual(['heading', 'paragraph', 'list', 'list', 'quote', 'rule', 'code']);
    expect(blocks[0]).toEqual({ type: 'heading', level: 1, children: [{ type: 'text', text: 'Title' }] });
    expect(blocks[1]).toEqual({ type: 'paragraph', children: [{ type: 'text', text: 'Some text.' }] });
    expect(blocks[2]).toMatchObject({ type: 'list', ordered: false, items: [[{ type: 'paragraph' }], [{ type: 'paragraph' }, { type: 'list' }]] });
    expect(blocks[3]).toMatchObject({ type: 'list', ordered: true, start: 3 });
    expect(blocks[6]).toEqual({ type: 'code', text: 'let a = "<b>";', lang: 'js' });
  });

  it('reads tables with alignment', () => {
    const [table] = parseMarkdown('| Q | Revenue |\n|:--|--:|\n| 1 | 2 |\n| 2 | 4 |');
    expect(table).toEqual({
      type: 'table',
      align: ['left', 'right'],
      head: [[{ type: 'text', text: 'Q' }], [{ type: 'text', text: 'Revenue' }]],
      rows: [
        [[{ type: 'text', text: '1' }], [{ type: 'text', text: '2' }]],
        [[{ type: 'text', text: '2' }], [{ type: 'text', text: '4' }]],
      ],
    });
  });

  it('bounds nesting so a hostile text cannot exhaust the stack', () => {
    expect(() => parseMarkdown('>'.repeat(5000) + ' deep')).not.toThrow();
    expect(() => parseInline('*'.repeat(5000) + 'x')).not.toThrow();
  });
});
