-- Every claim, completion and retry updates a task row and appends an event, and Postgres
-- evaluates all of a row's CHECK constraints on each. The regex ones (kind, trace id, event
-- type) ran the regex engine on every write: the same rules, checked with plain string
-- functions as the log checks already are (see 20261121000004_cheaper_log_checks.sql).
-- octet_length stands for length: the ltrim conditions already admit only ASCII.

ALTER TABLE tasks DROP CONSTRAINT tasks_kind_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_kind_check CHECK (
    octet_length(kind) BETWEEN 1 AND 128
    AND strpos('abcdefghijklmnopqrstuvwxyz', left(kind, 1)) > 0
    AND ltrim(kind, 'abcdefghijklmnopqrstuvwxyz0123456789_.-') = ''
);

ALTER TABLE tasks DROP CONSTRAINT tasks_trace_id_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_trace_id_check CHECK (
    octet_length(trace_id) = 32
    AND ltrim(trace_id, '0123456789abcdef') = ''
    AND trace_id <> '00000000000000000000000000000000'
);

ALTER TABLE task_events DROP CONSTRAINT task_events_event_type_check;
ALTER TABLE task_events ADD CONSTRAINT task_events_event_type_check CHECK (
    octet_length(event_type) BETWEEN 1 AND 64
    AND strpos('abcdefghijklmnopqrstuvwxyz', left(event_type, 1)) > 0
    AND ltrim(event_type, 'abcdefghijklmnopqrstuvwxyz_') = ''
);

ALTER TABLE task_events DROP CONSTRAINT task_events_trace_id_check;
ALTER TABLE task_events ADD CONSTRAINT task_events_trace_id_check CHECK (
    octet_length(trace_id) = 32 AND ltrim(trace_id, '0123456789abcdef') = ''
);
