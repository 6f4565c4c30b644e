-- Log ingestion is write-heavy and text search is rare: keeping a tsvector and its GIN index
-- up to date cost more than half of each insert. Searches now compute the vector of the rows
-- the other filters (time, service, trace, task) have already narrowed down. The level index
-- alone never narrowed a query much.
DROP INDEX logs_search;
ALTER TABLE logs DROP COLUMN search;
DROP INDEX logs_level;
