-- renderctl: every change it makes on Render, and what its monitor found and did.

CREATE TABLE render_changes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    -- The Basic Auth user, `internal` for a service key, `monitor`, or `cli`.
    actor      text NOT NULL,
    origin     text NOT NULL CHECK (origin IN ('api', 'blueprint', 'monitor', 'cli')),
    action     text NOT NULL,
    target     text NOT NULL,
    target_id  text,
    -- Settings and env keys only: env values are never stored.
    before     jsonb NOT NULL DEFAULT 'null',
    after      jsonb NOT NULL DEFAULT 'null',
    ok         boolean NOT NULL,
    -- Render's HTTP status and its answer (ids, or its error {id, message}).
    status     smallint,
    answer     jsonb NOT NULL DEFAULT 'null'
);

CREATE INDEX render_changes_by_target ON render_changes (target_id, id DESC);

-- One row per failed deploy the monitor looked at: the primary key makes sure each failure
-- is handled once, whichever replica sees it first.
CREATE TABLE render_monitor_findings (
    deploy_id     text PRIMARY KEY,
    service_id    text NOT NULL,
    service_name  text NOT NULL,
    failure       text NOT NULL
        CHECK (failure IN ('missing_publish_directory', 'empty_build_command', 'unrecognised')),
    action        text NOT NULL CHECK (action IN ('fixing', 'fixed', 'reported', 'fix_failed')),
    fix_deploy_id text,
    detail        text NOT NULL,
    seen_at       timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX render_monitor_findings_by_service ON render_monitor_findings (service_id, seen_at DESC);
