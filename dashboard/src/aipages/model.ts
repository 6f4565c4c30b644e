// The queue gateway's wire model for AI pages (services/queue-gateway: envelope.rs, pages.rs,
// http/messages.rs, http/events.rs) and the directive bodies its schemas define
// (services/queue-gateway/schemas/directives/*.json).

/** A claim check: the directive body is stored as a blob, not carried inline. */
export interface BlobRef {
  blobId: string;
  /** Hex SHA-256 of the stored bytes. */
  sha256: string;
  size: number;
  contentType: string;
}

export type Body = { inline: unknown } | { blob: BlobRef };

/** One directive as the gateway keeps it in a page's ordered log. */
export interface Envelope {
  id: string;
  page: string;
  to: string;
  from: string;
  directive: string;
  body: Body;
  /** Position in the page's history; without gaps. */
  seq: number;
  sentAt: string;
  traceparent?: string;
}

/** `GET /pages/{page}/state`: the latest directive of each live component, in seq order. */
export interface PageStateWire {
  seq: number;
  components: Envelope[];
}

/** `GET /pages/{page}/poll?after=&wait=`. */
export interface PollOut {
  messages: Envelope[];
  next: number;
}

/** `POST /pages/{page}/events` body: user input for the AI. */
export interface EventIn {
  component: string;
  kind: string;
  value: unknown;
}

export const REMOVE_DIRECTIVE = 'component.remove';

/** Page ids and component ids: 1–64 of `[a-z0-9_-]`, starting with a letter or digit. */
export const ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

export type AddressKind = 'layout' | 'router' | 'plotly' | 'text';

export interface Address {
  kind: AddressKind;
  /** The `{id}` of `plotly-panel-{id}` and `text-component-{id}`. */
  id?: string;
}

export function parseAddress(address: string): Address | null {
  if (address === 'layout-manager') return { kind: 'layout' };
  if (address === 'dataset-router') return { kind: 'router' };
  for (const [prefix, kind] of [
    ['plotly-panel-', 'plotly'],
    ['text-component-', 'text'],
  ] as const) {
    if (address.startsWith(prefix)) {
      const id = address.slice(prefix.length);
      return ID_PATTERN.test(id) ? { kind, id } : null;
    }
  }
  return null;
}

// Directive bodies.

export interface TextBody {
  text: string;
  format: 'text' | 'markdown';
  label?: string;
}

export type FieldType = 'text' | 'number' | 'select' | 'checkbox' | 'textarea';

export interface FormField {
  name: string;
  label?: string;
  type: FieldType;
  options?: { value: string; label?: string }[];
  required: boolean;
  placeholder?: string;
  default?: string | number | boolean;
}

export interface FormBody {
  title?: string;
  submitLabel?: string;
  fields: FormField[];
}

export type PlainObject = Record<string, unknown>;

export interface FigureBody {
  data: PlainObject[];
  layout: PlainObject;
  config?: PlainObject;
  frames?: PlainObject[];
}

export interface Region {
  area: string;
  component: string;
  title?: string;
}

export interface LayoutBody {
  title?: string;
  areas: string[];
  columns?: string[];
  rows?: string[];
  gap?: string;
  regions: Region[];
}

export interface RouteBody {
  dataset: { blobId: string } | { rows: PlainObject[] };
  to: string[];
  /** Trace attribute path (`x`, `marker.color`) to dataset column. */
  mapping: Record<string, string>;
}

/** A dataset in columns, as routed to Plotly panels. */
export interface Table {
  columns: Record<string, unknown[]>;
  length: number;
}
