-- Sharing tokens: an AI hands a person a link to one page without giving out operator
-- credentials. A token opens that page's browser side (poll, stream, state, events, blobs)
-- until it expires or is revoked. Only its SHA-256 is kept.

CREATE TABLE page_tokens (
    id           uuid PRIMARY KEY,
    page         text NOT NULL REFERENCES pages (id) ON DELETE CASCADE,
    token_sha256 bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    CHECK (expires_at > created_at)
);

CREATE INDEX page_tokens_page ON page_tokens (page);
