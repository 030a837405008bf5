-- PostgreSQL versions of the named queries whose dialect differs (see queries.sql).

-- name: schema_version_table_exists
SELECT CASE WHEN to_regclass('schema_version') IS NULL THEN 0 ELSE 1 END;

-- name: advisory_xact_lock
SELECT pg_advisory_xact_lock(:key);

-- name: lock_account
SELECT 1 FROM accounts WHERE tenant_id = :tenant_id AND id = :account_id FOR UPDATE;

-- name: rate_insert_many
INSERT INTO rate_slots (tenant_id, account_id, message_pk, slot_ts)
SELECT :tenant_id, :account_id, CAST(r.value AS bigint), :now
FROM json_array_elements_text(CAST(:rows AS json)) AS r(value)
RETURNING slot_id, message_pk;

-- name: lock_tenant
SELECT 1 FROM tenants WHERE id = :tenant_id FOR UPDATE;

-- The lock a foreign-key check would take: concurrent enqueues do not block each other, a
-- tenant deletion (lock_tenant, FOR UPDATE) waits for them and they wait for it.
-- name: tenant_key_share
SELECT 1 AS present FROM tenants WHERE id = :tenant_id FOR KEY SHARE;

-- name: seq_reserve
SELECT nextval('message_seq') AS value FROM generate_series(1, :n);

-- Locking the existing rows keeps a concurrent claim (SKIP LOCKED) off messages being replaced.
-- The ids as an array make this one index scan of (tenant_id, id) whatever the statistics say:
-- written as IN (subquery), a young table whose statistics still describe it as small got a
-- hash join over every message of the tenant (11 ms at 10,000 rows, growing with the backlog).
-- name: messages_existing
SELECT pk, id, status, seq, message_id FROM messages
WHERE tenant_id = :tenant_id
  AND id = ANY(ARRAY(SELECT json_array_elements_text(CAST(:ids AS json))))
FOR UPDATE;

-- name: claim_batch
UPDATE messages AS m
SET status = 'sending', ready_ts = NULL, lease_owner = :owner, lease_until = :lease_until,
    updated_at = :now
FROM (
    SELECT c.pk FROM messages c
    WHERE c.tenant_id = :tenant_id AND c.account_id = :account_id AND c.ready_ts <= :now
      AND (c.batch_code IS NULL OR c.batch_code NOT IN
           (SELECT s.batch_code FROM suspensions s WHERE s.tenant_id = :tenant_id))
    ORDER BY c.priority, c.seq
    LIMIT :limit
    FOR UPDATE SKIP LOCKED) AS claimed
WHERE m.pk = claimed.pk
RETURNING m.pk, m.tenant_id, m.id, m.account_id, m.priority, m.seq, m.batch_code, m.message_id,
          m.payload, m.retry_count, m.expiry_count, m.outcome_uncertain, m.lease_until,
          m.created_at;

-- name: leases_expired_for_account
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, expiry_count,
       outcome_uncertain, account_deleted
FROM messages
WHERE tenant_id = :tenant_id AND account_id = :account_id AND status = 'sending'
  AND lease_until < :now
FOR UPDATE SKIP LOCKED;

-- name: leases_expired
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, expiry_count,
       outcome_uncertain, account_deleted
FROM messages WHERE status = 'sending' AND lease_until < :now
FOR UPDATE SKIP LOCKED;

-- name: leases_of_owner
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, expiry_count,
       outcome_uncertain, account_deleted
FROM messages
WHERE status = 'sending' AND lease_owner = :owner
  AND pk IN (SELECT CAST(value AS bigint) FROM json_array_elements_text(CAST(:pks AS json)))
FOR UPDATE;

-- name: leases_of_node
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, expiry_count,
       outcome_uncertain, account_deleted
FROM messages
WHERE status = 'sending'
  AND (lease_owner = :node_id OR substr(lease_owner, 1, length(:prefix)) = :prefix)
FOR UPDATE;

-- name: lease_renew
UPDATE messages SET lease_until = :lease_until
WHERE status = 'sending' AND lease_owner = :owner
  AND pk IN (SELECT CAST(value AS bigint) FROM json_array_elements_text(CAST(:pks AS json)));

-- name: message_fenced
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, expiry_count,
       outcome_uncertain, account_deleted
FROM messages WHERE pk = :pk AND status = 'sending' AND lease_owner = :owner
FOR UPDATE;

-- Locked in pk order, so two transactions completing overlapping sets cannot deadlock.
-- name: messages_fenced_many
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, expiry_count,
       outcome_uncertain, account_deleted
FROM messages
WHERE status = 'sending' AND lease_owner = :owner
  AND pk IN (SELECT CAST(value AS bigint) FROM json_array_elements_text(CAST(:pks AS json)))
ORDER BY pk
FOR UPDATE;

-- name: message_history
SELECT event_id, message_pk, event_type, event_ts, description, metadata, reported_ts
FROM events
WHERE message_pk IN (SELECT CAST(value AS bigint)
                     FROM json_array_elements_text(CAST(:pks AS json)))
ORDER BY event_id;

-- name: message_status_by_id
SELECT pk, id, status FROM messages
WHERE tenant_id = :tenant_id
  AND id IN (SELECT value FROM json_array_elements_text(CAST(:ids AS json)));

-- name: command_list
SELECT id, command_ts, endpoint, tenant_id, payload, response_status FROM command_log
WHERE (CAST(:tenant_id AS TEXT) IS NULL OR tenant_id = CAST(:tenant_id AS TEXT))
  AND (CAST(:since_ts AS DOUBLE PRECISION) IS NULL OR command_ts >= CAST(:since_ts AS DOUBLE PRECISION))
  AND (CAST(:until_ts AS DOUBLE PRECISION) IS NULL OR command_ts <= CAST(:until_ts AS DOUBLE PRECISION))
  AND (CAST(:endpoint_filter AS TEXT) IS NULL
       OR strpos(endpoint, CAST(:endpoint_filter AS TEXT)) > 0)
ORDER BY id DESC
LIMIT :limit OFFSET :offset;

-- Set-based acknowledgement in one round trip: the events, then their messages' reported_ts.
-- A JSON array joined as a set beats both one UPDATE per event (~20x) and a bound bigint[]
-- (whose per-element encoding costs more than the UPDATE itself at 1,000 ids).
-- name: events_ack_many
WITH acked AS (
    UPDATE events SET reported_ts = :now
    WHERE event_id IN (SELECT CAST(value AS bigint)
                       FROM json_array_elements_text(CAST(:ids AS json)))
      AND reported_ts IS NULL
    RETURNING message_pk),
marked AS (
    UPDATE messages SET reported_ts = :now
    WHERE pk IN (SELECT message_pk FROM acked))
SELECT message_pk FROM acked;

-- name: messages_set_reported_many
UPDATE messages SET reported_ts = :now
WHERE pk IN (SELECT CAST(value AS bigint) FROM json_array_elements_text(CAST(:pks AS json)));

-- New messages of a batch (queue.enqueue): each row maps these column names to values.
-- name: message_copy
COPY messages (tenant_id, id, account_id, priority, seq, status, ready_ts, deferred_ts,
               deferred_reason, batch_code, message_id, payload, error, error_ts, created_at,
               updated_at)
FROM STDIN;

-- ---------------------------------------------------------------- bulk forms of executemany
-- Tx.many(name, rows) runs <name>_bulk once with all rows as a JSON array in :rows.

-- name: message_insert_bulk
INSERT INTO messages (tenant_id, id, account_id, priority, seq, status, ready_ts, deferred_ts,
                      deferred_reason, batch_code, message_id, payload, error, error_ts,
                      created_at, updated_at)
SELECT r.tenant_id, r.id, r.account_id, r.priority, r.seq, r.status, r.ready_ts, r.deferred_ts,
       r.deferred_reason, r.batch_code, r.message_id, r.payload, r.error, r.error_ts, r.now, r.now
FROM json_to_recordset(CAST(:rows AS json)) AS r(
    tenant_id text, id text, account_id text, priority integer, seq bigint, status text,
    ready_ts double precision, deferred_ts double precision, deferred_reason text,
    batch_code text, message_id text, payload text, error text, error_ts double precision,
    now double precision);

-- name: message_requeue_bulk
UPDATE messages AS m
SET account_id = r.account_id, priority = r.priority, seq = r.seq, status = r.status,
    ready_ts = r.ready_ts, deferred_ts = r.deferred_ts, deferred_reason = r.deferred_reason,
    batch_code = r.batch_code, message_id = r.message_id, payload = r.payload,
    retry_count = 0, expiry_count = 0, smtp_code = NULL, sent_ts = NULL, error = NULL,
    error_ts = NULL, refused_recipients = NULL, account_deleted = 0, lease_owner = NULL,
    lease_until = NULL, updated_at = r.now
FROM json_to_recordset(CAST(:rows AS json)) AS r(
    pk bigint, account_id text, priority integer, seq bigint, status text,
    ready_ts double precision, deferred_ts double precision, deferred_reason text,
    batch_code text, message_id text, payload text, now double precision)
WHERE m.pk = r.pk;

-- name: event_insert_bulk
INSERT INTO events (message_pk, tenant_id, id, account_id, priority, batch_code, event_type,
                    event_ts, description, metadata, reported_ts)
SELECT r.message_pk, r.tenant_id, r.id, r.account_id, r.priority, r.batch_code, r.event_type,
       r.event_ts, r.description, r.metadata, r.reported_ts
FROM json_to_recordset(CAST(:rows AS json)) AS r(
    message_pk bigint, tenant_id text, id text, account_id text, priority integer,
    batch_code text, event_type text, event_ts double precision, description text,
    metadata text, reported_ts double precision);

-- name: message_set_reported_bulk
UPDATE messages AS m SET reported_ts = r.now
FROM json_to_recordset(CAST(:rows AS json)) AS r(message_pk bigint, now double precision)
WHERE m.pk = r.message_pk;

-- name: message_complete_sent_bulk
UPDATE messages AS m
SET status = 'sent', ready_ts = NULL, sent_ts = r.now, smtp_code = r.smtp_code,
    refused_recipients = r.refused_recipients, outcome_uncertain = r.outcome_uncertain,
    lease_owner = NULL, lease_until = NULL, deferred_ts = NULL, deferred_reason = NULL,
    error = NULL, error_ts = NULL, updated_at = r.now
FROM json_to_recordset(CAST(:rows AS json)) AS r(
    pk bigint, now double precision, smtp_code integer, refused_recipients text,
    outcome_uncertain integer)
WHERE m.pk = r.pk;

-- name: message_fail_bulk
UPDATE messages AS m
SET status = 'error', ready_ts = NULL, error = r.error, error_ts = r.now, lease_owner = NULL,
    lease_until = NULL, deferred_ts = NULL, deferred_reason = NULL, updated_at = r.now
FROM json_to_recordset(CAST(:rows AS json)) AS r(pk bigint, error text, now double precision)
WHERE m.pk = r.pk;

-- name: lease_return_bulk
UPDATE messages AS m
SET status = 'pending', ready_ts = 0, lease_owner = NULL, lease_until = NULL,
    expiry_count = r.expiry_count, updated_at = r.now
FROM json_to_recordset(CAST(:rows AS json)) AS r(pk bigint, expiry_count integer,
                                                 now double precision)
WHERE m.pk = r.pk AND m.status = 'sending';

-- Event ids are taken when a transaction inserts, but transactions commit in any order, so the
-- live tail must not step over a missing id that may still commit (store/events.py).
-- name: events_tail_ids
SELECT event_id, extract(epoch FROM clock_timestamp()) - recorded_at AS age
FROM events WHERE event_id > :after ORDER BY event_id LIMIT :limit;

-- name: events_tail_upto
SELECT event_id, message_pk, tenant_id, id, account_id, priority, batch_code, event_type,
       event_ts, description, metadata, reported_ts
FROM events
WHERE event_id > :after AND event_id <= :upto
  AND (CAST(:tenant_id AS TEXT) IS NULL OR tenant_id = CAST(:tenant_id AS TEXT))
ORDER BY event_id LIMIT :limit;

-- ---------------------------------------------------------------- metrics (reference §14)

-- As the common query, but the pending count is the sum of the deltas kept by statement
-- triggers (queue_count, migration 3): counting a million queued rows takes longer than a
-- scrape may. count_rows tells when to fold them.
-- name: gauge_queue
SELECT (SELECT coalesce(sum(delta), 0) FROM queue_count) AS pending,
       (SELECT min(ready_ts) FROM messages
        WHERE status = 'deferred' AND ready_ts <= :now) AS oldest_deferred,
       (SELECT min(created_at) FROM messages WHERE status = 'pending') AS oldest_pending,
       (SELECT count(*) FROM queue_count) AS count_rows,
       (SELECT count(*) FROM unreported_count) AS unreported_rows;

-- Fold the deltas into one row. Rows inserted by transactions still running are not seen and
-- stay; two foldings at once each fold only what they deleted.
-- name: queue_count_fold
WITH gone AS (DELETE FROM queue_count RETURNING delta)
INSERT INTO queue_count (delta) SELECT coalesce(sum(delta), 0) FROM gone;

-- The unreported events per tenant: the sum of the deltas of migration 4's triggers.
-- name: gauge_unreported
SELECT t.id AS tenant_id, coalesce(u.n, 0) AS n
FROM tenants t
LEFT JOIN (SELECT tenant_id, sum(delta) AS n FROM unreported_count
           GROUP BY tenant_id) u ON u.tenant_id = t.id;

-- Fold them into one row per tenant (none for a count of 0), as queue_count_fold does.
-- name: unreported_count_fold
WITH gone AS (DELETE FROM unreported_count RETURNING tenant_id, delta)
INSERT INTO unreported_count (tenant_id, delta)
SELECT tenant_id, sum(delta) FROM gone GROUP BY tenant_id HAVING sum(delta) <> 0;
