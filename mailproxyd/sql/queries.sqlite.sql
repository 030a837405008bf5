-- SQLite versions of the named queries whose dialect differs (see queries.sql).

-- name: schema_version_table_exists
SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version';

