-- Every committed task event is announced on `autonoma_task_events`, whichever replica or
-- tool wrote it: the dispatchers wake on it (no polling) and the WebSocket hubs fan it out.
-- The payload stays small (well under NOTIFY's 8000-byte limit); listeners read the rest.
CREATE FUNCTION task_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'autonoma_task_events',
        json_build_object('id', NEW.id, 'taskId', NEW.task_id, 'toStatus', NEW.to_status)::text
    );
    RETURN NULL;
END;
$$;

CREATE TRIGGER task_events_notify
    AFTER INSERT ON task_events
    FOR EACH ROW EXECUTE FUNCTION task_events_notify();

-- Agents re-register under the same name (hot swap); their history of heartbeats is pruned
-- by age, which this index serves.
CREATE INDEX agent_heartbeats_received_at ON agent_heartbeats (received_at);
