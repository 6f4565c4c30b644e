-- The queue gateway's per-page ordered message log. Every directive to a page gets the next
-- sequence number of that page, with no gaps, so a browser that reconnects continues after
-- the last number it saw and every browser on a page sees the same history.

CREATE TABLE pages (
    id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The sequence number of the page's latest message; 0 before the first.
    last_seq   bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0)
);

-- A message is appended with one statement that increments `pages.last_seq` and inserts the
-- row under that number. The UPDATE locks the page's row until the transaction ends, so
-- appends to one page are serialised: a number is committed (or rolled back together with its
-- increment) before the next one is handed out, and readers never see a gap.
CREATE TABLE page_messages (
    page        text NOT NULL REFERENCES pages (id) ON DELETE CASCADE,
    seq         bigint NOT NULL CHECK (seq > 0),
    -- UUIDv7 from the sender, so a retried send is refused instead of stored twice.
    id          uuid NOT NULL UNIQUE,
    address     text NOT NULL CHECK (
                    address ~ '^(layout-manager|dataset-router|(plotly-panel|text-component)-[a-z0-9][a-z0-9_-]{0,63})$'),
    directive   text NOT NULL CHECK (length(directive) BETWEEN 1 AND 128),
    sender      text NOT NULL CHECK (length(sender) BETWEEN 1 AND 256),
    -- The envelope's body as JSON: {"inline": ...} or {"blob": {...}}.
    body        jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object'),
    traceparent text CHECK (length(traceparent) <= 256),
    sent_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (page, seq)
);

-- The page state: the latest message per component of a page.
CREATE INDEX page_messages_address ON page_messages (page, address, seq);

-- Each new message is announced on `autonoma_pages` as `<page>:<seq>`, which wakes the
-- browsers waiting on that page.
CREATE FUNCTION page_messages_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('autonoma_pages', NEW.page || ':' || NEW.seq);
    RETURN NULL;
END;
$$;

CREATE TRIGGER page_messages_notify
    AFTER INSERT ON page_messages
    FOR EACH ROW EXECUTE FUNCTION page_messages_notify();
