-- Sandbox sessions: one container and one workspace directory each. A row outlives its
-- container (status 'deleted') so a restarted service can tell which containers are its own.

CREATE TABLE sandbox_sessions (
    id             uuid PRIMARY KEY,
    template       text NOT NULL,
    status         text NOT NULL CHECK (status IN ('creating', 'ready', 'failed', 'deleted')),
    status_reason  text,
    container_id   text,
    container_name text NOT NULL UNIQUE,
    workspace_path text NOT NULL,
    -- The project as last seen: manifest, package manager, framework, dev command, port.
    snapshot       jsonb NOT NULL DEFAULT '{}'::jsonb,
    dev_command    text,
    dev_port       integer CHECK (dev_port BETWEEN 1 AND 65535),
    oom_kills      integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_active_at timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);

CREATE INDEX sandbox_sessions_live ON sandbox_sessions (last_active_at)
    WHERE status IN ('creating', 'ready');

-- Every tool call, over HTTP or MCP: its arguments (file contents shortened) and outcome.
CREATE TABLE sandbox_tool_calls (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sandbox_sessions (id) ON DELETE CASCADE,
    tool        text NOT NULL,
    via         text NOT NULL CHECK (via IN ('http', 'mcp')),
    arguments   jsonb NOT NULL,
    ok          boolean NOT NULL,
    summary     text NOT NULL,
    duration_ms integer NOT NULL CHECK (duration_ms >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sandbox_tool_calls_session ON sandbox_tool_calls (session_id, id);

-- Names this database's containers in a shared engine (a label on each), so a service only
-- ever adopts or cleans up its own. Written by the first sandbox that opens the database.
CREATE TABLE sandbox_store (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id        uuid NOT NULL
);
