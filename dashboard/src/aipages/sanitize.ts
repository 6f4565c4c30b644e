// What the AI sends is untrusted: nothing from a directive reaches the DOM as markup except
// Plotly's own small text markup, which passes through DOMPurify first. Texts, labels and
// Markdown are rendered as elements and text nodes (never innerHTML), links only with safe
// schemes, and Plotly's config only with options that cannot send data anywhere.

import DOMPurify from 'dompurify';

import type { FigureBody, PlainObject, Table } from './model';

const SAFE_LINK = /^(?:https?:|mailto:)/i;

/** The URL if a link to it is safe to follow (http, https, mailto), else null. */
export function safeUrl(raw: string): string | null {
  // Browsers ignore control characters and whitespace inside a scheme ("java\tscript:").
  // eslint-disable-next-line no-control-regex
  const compact = raw.trim().replace(/[\u0000-\u001f\u007f\s]+/g, '');
  if (!SAFE_LINK.test(compact)) return null;
  try {
    const url = new URL(raw.trim());
    return ['http:', 'https:', 'mailto:'].includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

// Plotly renders these tags in titles, annotations, tick labels and hover templates
// (`<extra>` is the hover box's trace name).
const PLOTLY_TAGS = ['a', 'b', 'br', 'em', 'extra', 'i', 'span', 'strong', 'sub', 'sup', 's', 'u'];
const PLOTLY_ATTRS = ['href', 'target', 'style'];

/** Plotly text markup with every tag, attribute and URL outside Plotly's set removed. */
export function sanitizeMarkup(text: string): string {
  // Most strings in a figure (numbers as text, colours, categories) have no markup at all.
  if (!/[<&]/.test(text)) return text;
  return DOMPurify.sanitize(text, {
    ALLOWED_TAGS: PLOTLY_TAGS,
    ALLOWED_ATTR: PLOTLY_ATTRS,
    ALLOWED_URI_REGEXP: SAFE_LINK,
    KEEP_CONTENT: true,
  });
}

/** Keys that would reach an object's prototype when copied. */
export const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** A deep copy of JSON with every string passed through `sanitizeMarkup`. */
export function sanitizeValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return sanitizeMarkup(value);
  if (value === null || typeof value !== 'object') return value;
  // JSON from the gateway is a tree; a depth bound keeps a hostile one from exhausting the stack.
  if (depth > 64) return null;
  if (Array.isArray(value)) {
    // Numeric columns are the bulk of a figure: copy them as they are.
    if (value.every((item) => typeof item === 'number' || item === null)) return value.slice();
    return value.map((item) => sanitizeValue(item, depth + 1));
  }
  const out: PlainObject = {};
  for (const [key, item] of Object.entries(value)) {
    if (UNSAFE_KEYS.has(key)) continue;
    out[key] = sanitizeValue(item, depth + 1);
  }
  return out;
}

// Plotly options a page may set. Everything that would send the figure to a server
// (showLink, sendData, plotlyServerURL, showEditInChartStudio…) is left out.
const CONFIG_OPTIONS = new Set([
  'autosizable',
  'displayModeBar',
  'displaylogo',
  'doubleClick',
  'doubleClickDelay',
  'editable',
  'fillFrame',
  'frameMargins',
  'locale',
  'modeBarButtonsToRemove',
  'responsive',
  'scrollZoom',
  'showAxisDragHandles',
  'showAxisRangeEntryBoxes',
  'showTips',
  'staticPlot',
  'toImageButtonOptions',
]);

export function sanitizeConfig(config: PlainObject | undefined): PlainObject {
  const out: PlainObject = {};
  for (const [key, value] of Object.entries(config ?? {})) {
    if (!CONFIG_OPTIONS.has(key)) continue;
    if (key === 'modeBarButtonsToRemove' && !(Array.isArray(value) && value.every((v) => typeof v === 'string'))) continue;
    out[key] = sanitizeValue(value);
  }
  return {
    responsive: true,
    displaylogo: false,
    ...out,
    showLink: false,
    sendData: false,
    showEditInChartStudio: false,
    showSendToCloud: false,
    plotlyServerURL: '',
  };
}

const SAFE_IMAGE = /^(?:https:|data:image\/(?:png|gif|jpe?g|webp);)/i;

/** Layout images only from https or inline raster data. */
function sanitizeLayout(layout: PlainObject): PlainObject {
  const out = sanitizeValue(layout) as PlainObject;
  if (Array.isArray(out.images)) {
    out.images = out.images.filter(
      (image) => typeof image === 'object' && image !== null && typeof (image as PlainObject).source === 'string' && SAFE_IMAGE.test(((image as PlainObject).source as string).trim()),
    );
  }
  return out;
}

/** A figure safe to hand to Plotly. */
export function sanitizeFigure(figure: FigureBody): FigureBody {
  return {
    data: figure.data.map((trace) => sanitizeValue(trace) as PlainObject),
    layout: sanitizeLayout(figure.layout),
    config: sanitizeConfig(figure.config),
    frames: figure.frames?.map((frame) => {
      const out = sanitizeValue(frame) as PlainObject;
      if (out.layout && typeof out.layout === 'object') out.layout = sanitizeLayout(out.layout as PlainObject);
      return out;
    }),
  };
}

export function sanitizeTable(table: Table): Table {
  const columns: Record<string, unknown[]> = {};
  for (const [name, values] of Object.entries(table.columns)) {
    if (UNSAFE_KEYS.has(name)) continue;
    columns[name] = sanitizeValue(values) as unknown[];
  }
  return { columns, length: table.length };
}

