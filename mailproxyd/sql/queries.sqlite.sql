-- SQLite versions of the named queries whose dialect differs (see queries.sql).

-- name: schema_version_table_exists
SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version';

-- ---------------------------------------------------------------- bulk forms of executemany
-- Tx.many(name, rows) runs <name>_bulk once with all rows as a JSON array in :rows: one
-- statement, one bind and no per-row trip through the sqlite3 module, however many rows.
-- json_each walks the array in order, so inserted rows get their ids in the rows' order.

-- name: event_insert_bulk
INSERT INTO events (message_pk, tenant_id, id, account_id, priority, batch_code, event_type,
                    event_ts, description, metadata, reported_ts)
SELECT json_extract(value, '$.message_pk'), json_extract(value, '$.tenant_id'),
       json_extract(value, '$.id'), json_extract(value, '$.account_id'),
       json_extract(value, '$.priority'), json_extract(value, '$.batch_code'),
       json_extract(value, '$.event_type'), json_extract(value, '$.event_ts'),
       json_extract(value, '$.description'), json_extract(value, '$.metadata'),
       json_extract(value, '$.reported_ts')
FROM json_each(:rows) ORDER BY key;

-- name: message_set_reported_bulk
UPDATE messages AS m SET reported_ts = r.now
FROM (SELECT json_extract(value, '$.message_pk') AS message_pk,
             json_extract(value, '$.now') AS now
      FROM json_each(:rows)) AS r
WHERE m.pk = r.message_pk;

-- name: message_complete_sent_bulk
UPDATE messages AS m
SET status = 'sent', ready_ts = NULL, sent_ts = r.now, smtp_code = r.smtp_code,
    refused_recipients = r.refused_recipients, outcome_uncertain = r.outcome_uncertain,
    lease_owner = NULL, lease_until = NULL, deferred_ts = NULL, deferred_reason = NULL,
    error = NULL, error_ts = NULL, updated_at = r.now
FROM (SELECT json_extract(value, '$.pk') AS pk, json_extract(value, '$.now') AS now,
             json_extract(value, '$.smtp_code') AS smtp_code,
             json_extract(value, '$.refused_recipients') AS refused_recipients,
             json_extract(value, '$.outcome_uncertain') AS outcome_uncertain
      FROM json_each(:rows)) AS r
WHERE m.pk = r.pk;

-- name: message_fail_bulk
UPDATE messages AS m
SET status = 'error', ready_ts = NULL, error = r.error, error_ts = r.now, lease_owner = NULL,
    lease_until = NULL, deferred_ts = NULL, deferred_reason = NULL, updated_at = r.now
FROM (SELECT json_extract(value, '$.pk') AS pk, json_extract(value, '$.error') AS error,
             json_extract(value, '$.now') AS now
      FROM json_each(:rows)) AS r
WHERE m.pk = r.pk;

-- name: lease_return_bulk
UPDATE messages AS m
SET status = 'pending', ready_ts = 0, lease_owner = NULL, lease_until = NULL,
    expiry_count = r.expiry_count, updated_at = r.now
FROM (SELECT json_extract(value, '$.pk') AS pk,
             json_extract(value, '$.expiry_count') AS expiry_count,
             json_extract(value, '$.now') AS now
      FROM json_each(:rows)) AS r
WHERE m.pk = r.pk AND m.status = 'sending';
