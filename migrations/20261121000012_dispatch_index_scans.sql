-- The dispatcher's hot queries read these indexes in order and stop at their LIMIT. An ordered
-- index scan also marks the entries of tasks that have moved on (dispatched, finished) as dead
-- the first time it passes them; the bitmap scans the old indexes led to revisited every one
-- of them on every claim until vacuum ran, so the claim slowed down with each task finished.

-- The claim's whole order, its tie-breaker included, so no sort is needed.
DROP INDEX tasks_due;
CREATE INDEX tasks_due ON tasks (priority DESC, run_at, id) WHERE status = 'queued';
-- When the next queued task falls due (the dispatcher sleeps until then).
CREATE INDEX tasks_next_due ON tasks (run_at) WHERE status = 'queued';
