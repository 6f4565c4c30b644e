// A small Markdown reader for text components: headings, paragraphs, lists, quotes, code,
// tables, rules; emphasis, code spans, links and hard breaks inline. It produces a tree that is
// rendered as elements and text nodes; raw HTML in the source stays text, and a link keeps its
// URL only when it is safe to follow.

import { safeUrl } from './sanitize';

export type Inline =
  | { type: 'text'; text: string }
  | { type: 'code'; text: string }
  | { type: 'strong' | 'em' | 'del'; children: Inline[] }
  | { type: 'link'; href: string | null; children: Inline[] }
  | { type: 'break' };

export type Block =
  | { type: 'heading'; level: 1 | 2 | 3 | 4 | 5 | 6; children: Inline[] }
  | { type: 'paragraph'; children: Inline[] }
  | { type: 'code'; text: string; lang?: string }
  | { type: 'quote'; children: Block[] }
  | { type: 'list'; ordered: boolean; start?: number; items: Block[][] }
  | { type: 'table'; align: ('left' | 'center' | 'right' | null)[]; head: Inline[][]; rows: Inline[][][] }
  | { type: 'rule' };

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)?.*$/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_SEPARATOR = /^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$/;
const BLANK = /^\s*$/;

function splitRow(line: string): string[] {
  let row = line.trim();
  if (row.startsWith('|')) row = row.slice(1);
  if (row.endsWith('|') && !row.endsWith('\\|')) row = row.slice(0, -1);
  const cells: string[] = [];
  let cell = '';
  for (let i = 0; i < row.length; i++) {
    if (row[i] === '\\' && row[i + 1] === '|') {
      cell += '|';
      i++;
    } else if (row[i] === '|') {
      cells.push(cell.trim());
      cell = '';
    } else {
      cell += row[i];
    }
  }
  cells.push(cell.trim());
  return cells;
}

function startsBlock(line: string, next: string | undefined): boolean {
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    ITEM.test(line) ||
    (line.includes('|') && next !== undefined && TABLE_SEPARATOR.test(next) && next.includes('-'))
  );
}

export function parseMarkdown(source: string, depth = 0): Block[] {
  const lines = source.replace(/\r\n?/g, '\n').split('\n');
  const blocks: Block[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (BLANK.test(line)) {
      i++;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      const marker = fence[1];
      const body: string[] = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(marker)) body.push(lines[i++]);
      i++;
      blocks.push({ type: 'code', text: body.join('\n'), lang: fence[2] || undefined });
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      blocks.push({ type: 'heading', level: heading[1].length as 1, children: parseInline(heading[2] ?? '') });
      i++;
      continue;
    }
    if (RULE.test(line)) {
      blocks.push({ type: 'rule' });
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const body: string[] = [];
      while (i < lines.length && !BLANK.test(lines[i])) {
        const quoted = QUOTE.exec(lines[i]);
        body.push(quoted ? quoted[1] : lines[i]);
        i++;
      }
      // Nesting is bounded so a hostile text cannot exhaust the stack.
      blocks.push({ type: 'quote', children: depth < 8 ? parseMarkdown(body.join('\n'), depth + 1) : [{ type: 'paragraph', children: parseInline(body.join(' ')) }] });
      continue;
    }
    const item = ITEM.exec(line);
    if (item) {
      const ordered = /\d/.test(item[2]);
      const items: string[][] = [];
      while (i < lines.length) {
        const current = ITEM.exec(lines[i]);
        if (current && /\d/.test(current[2]) === ordered && current[1].length <= item[1].length) {
          items.push([current[3]]);
          i++;
        } else if (items.length > 0 && !BLANK.test(lines[i]) && (/^\s{2,}/.test(lines[i]) || !startsBlock(lines[i], lines[i + 1]))) {
          // An indented line (a nested list, say) or a lazy continuation belongs to the item.
          items[items.length - 1].push(lines[i].replace(/^\s{2,4}/, ''));
          i++;
        } else if (BLANK.test(lines[i]) && i + 1 < lines.length && (/^\s{2,}\S/.test(lines[i + 1]) || ITEM.exec(lines[i + 1])?.[1].length === item[1].length)) {
          i++;
        } else {
          break;
        }
      }
      blocks.push({
        type: 'list',
        ordered,
        start: ordered ? Number.parseInt(item[2], 10) : undefined,
        items: items.map((body) =>
          depth < 8 ? parseMarkdown(body.join('\n'), depth + 1) : [{ type: 'paragraph', children: parseInline(body.join(' ')) }],
        ),
      });
      continue;
    }
    const next = lines[i + 1];
    if (line.includes('|') && next !== undefined && TABLE_SEPARATOR.test(next) && next.includes('-')) {
      const head = splitRow(line);
      const align = splitRow(next).map((spec) =>
        spec.startsWith(':') && spec.endsWith(':') ? 'center' : spec.endsWith(':') ? 'right' : spec.startsWith(':') ? 'left' : null,
      );
      i += 2;
      const rows: Inline[][][] = [];
      while (i < lines.length && !BLANK.test(lines[i]) && lines[i].includes('|')) {
        const cells = splitRow(lines[i++]);
        rows.push(head.map((_, c) => parseInline(cells[c] ?? '')));
      }
      blocks.push({ type: 'table', align, head: head.map((cell) => parseInline(cell)), rows });
      continue;
    }
    const paragraph: string[] = [line];
    i++;
    while (i < lines.length && !BLANK.test(lines[i]) && !startsBlock(lines[i], lines[i + 1])) paragraph.push(lines[i++]);
    blocks.push({ type: 'paragraph', children: parseInline(paragraph.join('\n')) });
  }
  return blocks;
}

const ESCAPABLE = '\\`*_{}[]()#+-.!|~<>"\'';

function pushText(out: Inline[], text: string): void {
  if (!text) return;
  const last = out[out.length - 1];
  if (last?.type === 'text') last.text += text;
  else out.push({ type: 'text', text });
}

/** Finds the closing `marker` for an opener at `from`, not inside a code span. */
function closing(text: string, marker: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    if (text[i] === '\\') {
      i++;
      continue;
    }
    if (text[i] === '`') {
      const end = text.indexOf('`', i + 1);
      if (end > 0) i = end;
      continue;
    }
    if (text.startsWith(marker, i) && i > from && text[i - 1] !== ' ') return i;
  }
  return -1;
}

export function parseInline(text: string, depth = 0): Inline[] {
  const out: Inline[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length) {
      if (text[i + 1] === '\n') {
        out.push({ type: 'break' });
        i += 2;
        continue;
      }
      if (ESCAPABLE.includes(text[i + 1])) {
        pushText(out, text[i + 1]);
        i += 2;
        continue;
      }
    }
    if (c === '\n') {
      // Two trailing spaces make a hard break; a plain newline is a space.
      const trailing = /( {2,})$/.exec(out[out.length - 1]?.type === 'text' ? (out[out.length - 1] as { text: string }).text : '');
      if (trailing) {
        const last = out[out.length - 1] as { text: string };
        last.text = last.text.slice(0, -trailing[1].length);
        out.push({ type: 'break' });
      } else {
        pushText(out, ' ');
      }
      i++;
      continue;
    }
    if (c === '`') {
      const run = /^`+/.exec(text.slice(i))![0];
      const end = text.indexOf(run, i + run.length);
      if (end > 0) {
        out.push({ type: 'code', text: text.slice(i + run.length, end).replace(/\n/g, ' ').trim() || ' ' });
        i = end + run.length;
        continue;
      }
      pushText(out, run);
      i += run.length;
      continue;
    }
    if (depth < 8 && (c === '[' || (c === '!' && text[i + 1] === '['))) {
      const image = c === '!';
      const open = image ? i + 1 : i;
      // The URL may hold balanced parentheses (https://en.wikipedia.org/wiki/Plot_(graphics)).
      const link = /^\[((?:\\.|[^\]\\])*)\]\(\s*<?((?:[^\s()<>]|\([^\s()<>]*\))*)>?(?:\s+"[^"]*")?\s*\)/.exec(text.slice(open));
      if (link) {
        // An image is shown as a link to it: pages do not load images from the AI's URLs.
        const label = image ? link[1] || 'image' : link[1];
        out.push({ type: 'link', href: safeUrl(link[2]), children: parseInline(label, depth + 1) });
        i = open + link[0].length;
        continue;
      }
    }
    if (c === '<') {
      const auto = /^<((?:https?:\/\/|mailto:)[^\s<>]+)>/i.exec(text.slice(i));
      if (auto) {
        out.push({ type: 'link', href: safeUrl(auto[1]), children: [{ type: 'text', text: auto[1] }] });
        i += auto[0].length;
        continue;
      }
    }
    if (depth < 8 && (c === '*' || c === '_' || c === '~')) {
      const double = text[i + 1] === c;
      if (c === '~' && !double) {
        pushText(out, c);
        i++;
        continue;
      }
      const marker = double ? c + c : c;
      const start = i + marker.length;
      // An opener needs text right after it; `_` inside words (snake_case) is not emphasis.
      const intraword = c === '_' && i > 0 && /\w/.test(text[i - 1]);
      if (!intraword && start < text.length && text[start] !== ' ' && text[start] !== c) {
        const end = closing(text, marker, start);
        if (end > 0 && !(c === '_' && /\w/.test(text[end + marker.length] ?? ''))) {
          const type = c === '~' ? 'del' : double ? 'strong' : 'em';
          out.push({ type, children: parseInline(text.slice(start, end), depth + 1) });
          i = end + marker.length;
          continue;
        }
      }
      pushText(out, marker);
      i += marker.length;
      continue;
    }
    const plain = /^[^\\\n`[!<*_~]+/.exec(text.slice(i));
    if (plain) {
      pushText(out, plain[0]);
      i += plain[0].length;
    } else {
      pushText(out, c);
      i++;
    }
  }
  return out;
}
