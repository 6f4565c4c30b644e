-- Every log row paid for a B-tree entry on (ts, id), the costliest of its index entries after
-- the primary key, for the one filter (since/until, and retention's cut-off) that rows arrive
-- almost in order of: a block-range index answers those ranges at a fraction of the write cost.
DROP INDEX logs_ts;
CREATE INDEX logs_ts ON logs USING brin (ts) WITH (autosummarize = on);
