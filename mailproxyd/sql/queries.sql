-- Named queries of the store, common to SQLite and PostgreSQL.
-- Placeholders are :name; queries.sqlite.sql / queries.postgres.sql override a block of the same
-- name where the dialects differ. Flags are 0/1 integers on both backends.

-- ---------------------------------------------------------------- schema version

-- name: schema_version_get
SELECT version FROM schema_version;

-- name: schema_version_insert
INSERT INTO schema_version (version) VALUES (:version);

-- name: schema_version_set
UPDATE schema_version SET version = :version;

-- ---------------------------------------------------------------- meta

-- name: meta_get
SELECT value FROM meta WHERE key = :key;

-- name: meta_set
INSERT INTO meta (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: meta_delete
DELETE FROM meta WHERE key = :key;

-- name: meta_list_prefix
SELECT key, value FROM meta WHERE key LIKE :prefix ORDER BY key;

-- name: node_get
SELECT node_id, host, pid, started_at, heartbeat_ts FROM nodes WHERE node_id = :node_id;

-- name: node_list
SELECT node_id, host, pid, started_at, heartbeat_ts FROM nodes ORDER BY node_id;

-- name: node_upsert
INSERT INTO nodes (node_id, host, pid, started_at, heartbeat_ts)
VALUES (:node_id, :host, :pid, :now, :now)
ON CONFLICT (node_id) DO UPDATE
SET host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,
    heartbeat_ts = excluded.heartbeat_ts;

-- name: node_heartbeat
UPDATE nodes SET heartbeat_ts = :now WHERE node_id = :node_id;

-- name: node_delete
DELETE FROM nodes WHERE node_id = :node_id;

-- ---------------------------------------------------------------- tenants

-- name: tenant_get
SELECT id, name, client_base_url, active, settings, client_auth, api_key_digest,
       api_key_expires_at, created_at, updated_at
FROM tenants WHERE id = :tenant_id;

-- name: tenant_list
SELECT id, name, client_base_url, active, settings, client_auth, api_key_digest,
       api_key_expires_at, created_at, updated_at
FROM tenants WHERE (:active_only = 0 OR active = 1) ORDER BY id;

-- name: tenant_insert
INSERT INTO tenants (id, name, client_base_url, active, settings, client_auth, created_at,
                     updated_at)
VALUES (:tenant_id, :name, :client_base_url, :active, :settings, :client_auth, :now, :now);

-- name: tenant_update
UPDATE tenants
SET name = :name, client_base_url = :client_base_url, active = :active, settings = :settings,
    client_auth = :client_auth, updated_at = :now
WHERE id = :tenant_id;

-- name: tenant_delete
DELETE FROM tenants WHERE id = :tenant_id;

-- messages.tenant_id has no foreign key (schema): a tenant's messages go explicitly; their
-- events follow through events.message_pk.
-- name: tenant_messages_delete
DELETE FROM messages WHERE tenant_id = :tenant_id;

-- What stands in for the messages.tenant_id foreign key at enqueue (PostgreSQL: FOR KEY SHARE).
-- name: tenant_key_share
SELECT 1 AS present FROM tenants WHERE id = :tenant_id;

-- name: tenant_set_api_key
UPDATE tenants SET api_key_digest = :digest, api_key_expires_at = :expires_at, updated_at = :now
WHERE id = :tenant_id;

-- name: tenant_by_api_key
SELECT id, name, client_base_url, active, settings, client_auth, api_key_digest,
       api_key_expires_at, created_at, updated_at
FROM tenants
WHERE api_key_digest = :digest AND (api_key_expires_at IS NULL OR api_key_expires_at > :now);

-- name: tenant_urls
SELECT id, client_base_url FROM tenants WHERE id = :tenant_id;

-- name: tenant_count
SELECT count(*) FROM tenants WHERE (CAST(:tenant_id AS TEXT) IS NULL OR id = :tenant_id);

-- name: suspension_list
SELECT batch_code FROM suspensions WHERE tenant_id = :tenant_id ORDER BY batch_code;

-- name: suspension_add
INSERT INTO suspensions (tenant_id, batch_code, created_at) VALUES (:tenant_id, :batch_code, :now)
ON CONFLICT (tenant_id, batch_code) DO NOTHING;

-- name: suspension_remove
DELETE FROM suspensions WHERE tenant_id = :tenant_id AND batch_code = :batch_code;

-- name: suspension_clear
DELETE FROM suspensions WHERE tenant_id = :tenant_id;

-- name: queued_count
SELECT count(*) FROM messages
WHERE tenant_id = :tenant_id AND status IN ('pending', 'deferred')
  AND (CAST(:batch_code AS TEXT) IS NULL OR batch_code = :batch_code);

-- ---------------------------------------------------------------- accounts

-- name: account_get
SELECT tenant_id, id, settings, password, is_default, created_at, updated_at
FROM accounts WHERE tenant_id = :tenant_id AND id = :account_id;

-- name: account_list
SELECT tenant_id, id, settings, password, is_default, created_at, updated_at
FROM accounts WHERE tenant_id = :tenant_id ORDER BY id;

-- name: account_count
SELECT count(*) FROM accounts WHERE (CAST(:tenant_id AS TEXT) IS NULL OR tenant_id = :tenant_id);

-- name: account_insert
INSERT INTO accounts (tenant_id, id, settings, password, is_default, created_at, updated_at)
VALUES (:tenant_id, :account_id, :settings, :password, :is_default, :now, :now);

-- name: account_update
UPDATE accounts SET settings = :settings, password = :password, is_default = :is_default,
                    updated_at = :now
WHERE tenant_id = :tenant_id AND id = :account_id;

-- name: account_clear_default
UPDATE accounts SET is_default = 0, updated_at = :now
WHERE tenant_id = :tenant_id AND id <> :account_id AND is_default = 1;

-- name: account_delete
DELETE FROM accounts WHERE tenant_id = :tenant_id AND id = :account_id;

-- name: account_queued_messages
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, outcome_uncertain
FROM messages
WHERE tenant_id = :tenant_id AND account_id = :account_id AND ready_ts IS NOT NULL;

-- name: account_mark_sending_deleted
UPDATE messages SET account_deleted = 1
WHERE tenant_id = :tenant_id AND account_id = :account_id AND status = 'sending';

-- name: lock_account
SELECT 1 FROM accounts WHERE tenant_id = :tenant_id AND id = :account_id;

-- name: lock_tenant
SELECT 1 FROM tenants WHERE id = :tenant_id;

-- ---------------------------------------------------------------- events (writes)

-- name: event_insert
INSERT INTO events (message_pk, tenant_id, id, account_id, priority, batch_code, event_type,
                    event_ts, description, metadata, reported_ts)
VALUES (:message_pk, :tenant_id, :id, :account_id, :priority, :batch_code, :event_type,
        :event_ts, :description, :metadata, :reported_ts);

-- name: message_set_reported
UPDATE messages SET reported_ts = :now WHERE pk = :message_pk;

-- ---------------------------------------------------------------- queue: enqueue

-- name: seq_reserve
UPDATE seq_counter SET value = value + :n WHERE id = 1 RETURNING value;

-- name: messages_existing
SELECT pk, id, status, seq, message_id FROM messages
WHERE tenant_id = :tenant_id AND id IN (SELECT value FROM json_each(:ids));

-- name: message_insert
INSERT INTO messages (tenant_id, id, account_id, priority, seq, status, ready_ts, deferred_ts,
                      deferred_reason, batch_code, message_id, payload, error, error_ts,
                      created_at, updated_at)
VALUES (:tenant_id, :id, :account_id, :priority, :seq, :status, :ready_ts, :deferred_ts,
        :deferred_reason, :batch_code, :message_id, :payload, :error, :error_ts, :now, :now);

-- name: message_insert_returning
INSERT INTO messages (tenant_id, id, account_id, priority, seq, status, ready_ts, deferred_ts,
                      deferred_reason, batch_code, message_id, payload, error, error_ts,
                      created_at, updated_at)
VALUES (:tenant_id, :id, :account_id, :priority, :seq, :status, :ready_ts, :deferred_ts,
        :deferred_reason, :batch_code, :message_id, :payload, :error, :error_ts, :now, :now)
RETURNING pk;

-- Replacement (pending/deferred, same seq) and re-queue after error (new seq): a fresh start.
-- name: message_requeue
UPDATE messages
SET account_id = :account_id, priority = :priority, seq = :seq, status = :status,
    ready_ts = :ready_ts, deferred_ts = :deferred_ts, deferred_reason = :deferred_reason,
    batch_code = :batch_code, message_id = :message_id, payload = :payload,
    retry_count = 0, expiry_count = 0, smtp_code = NULL, sent_ts = NULL, error = NULL,
    error_ts = NULL, refused_recipients = NULL, account_deleted = 0, lease_owner = NULL,
    lease_until = NULL, updated_at = :now
WHERE pk = :pk;

-- An invalid resubmission of a message already in error: new content and error text.
-- name: message_rerecord_error
UPDATE messages
SET account_id = :account_id, priority = :priority, batch_code = :batch_code, payload = :payload,
    error = :error, error_ts = :now, updated_at = :now
WHERE pk = :pk AND status = 'error';

-- ---------------------------------------------------------------- queue: dispatch

-- name: claim_gate
SELECT t.active AS tenant_active, t.name AS tenant_name,
       (SELECT count(*) FROM suspensions s
        WHERE s.tenant_id = t.id AND s.batch_code = '*') AS whole_suspended,
       (SELECT count(*) FROM accounts a
        WHERE a.tenant_id = t.id AND a.id = :account_id) AS account_exists
FROM tenants t WHERE t.id = :tenant_id;

-- name: ready_accounts
SELECT a.tenant_id, a.id AS account_id, a.settings, t.settings AS tenant_settings
FROM accounts a JOIN tenants t ON t.id = a.tenant_id
WHERE t.active = 1
  AND NOT EXISTS (SELECT 1 FROM suspensions s WHERE s.tenant_id = a.tenant_id AND s.batch_code = '*')
  AND (EXISTS (SELECT 1 FROM messages m
               WHERE m.tenant_id = a.tenant_id AND m.account_id = a.id AND m.ready_ts <= :now
                 AND (m.batch_code IS NULL OR m.batch_code NOT IN
                      (SELECT s.batch_code FROM suspensions s WHERE s.tenant_id = a.tenant_id)))
       OR EXISTS (SELECT 1 FROM messages m
                  WHERE m.tenant_id = a.tenant_id AND m.account_id = a.id
                    AND m.status = 'sending' AND m.lease_until < :now))
ORDER BY a.tenant_id, a.id;

-- name: next_ready_ts
SELECT min(ready_ts) FROM messages WHERE status = 'deferred' AND ready_ts > :now;

-- name: claim_batch
UPDATE messages
SET status = 'sending', ready_ts = NULL, lease_owner = :owner, lease_until = :lease_until,
    updated_at = :now
WHERE pk IN (
    SELECT m.pk FROM messages m
    WHERE m.tenant_id = :tenant_id AND m.account_id = :account_id AND m.ready_ts <= :now
      AND (m.batch_code IS NULL OR m.batch_code NOT IN
           (SELECT s.batch_code FROM suspensions s WHERE s.tenant_id = :tenant_id))
    ORDER BY m.priority, m.seq
    LIMIT :limit)
RETURNING pk, tenant_id, id, account_id, priority, seq, batch_code, message_id, payload,
          retry_count, expiry_count, outcome_uncertain, lease_until, created_at;

-- name: leases_expired_for_account
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, expiry_count,
       outcome_uncertain, account_deleted
FROM messages
WHERE tenant_id = :tenant_id AND account_id = :account_id AND status = 'sending'
  AND lease_until < :now;

-- name: leases_expired
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, expiry_count,
       outcome_uncertain, account_deleted
FROM messages WHERE status = 'sending' AND lease_until < :now;

-- name: leases_of_owner
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, expiry_count,
       outcome_uncertain, account_deleted
FROM messages
WHERE status = 'sending' AND lease_owner = :owner AND pk IN (SELECT value FROM json_each(:pks));

-- name: leases_of_node
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, expiry_count,
       outcome_uncertain, account_deleted
FROM messages
WHERE status = 'sending'
  AND (lease_owner = :node_id OR substr(lease_owner, 1, length(:prefix)) = :prefix);

-- name: lease_renew
UPDATE messages SET lease_until = :lease_until
WHERE status = 'sending' AND lease_owner = :owner AND pk IN (SELECT value FROM json_each(:pks));

-- name: lease_return
UPDATE messages
SET status = 'pending', ready_ts = 0, lease_owner = NULL, lease_until = NULL,
    expiry_count = :expiry_count, updated_at = :now
WHERE pk = :pk AND status = 'sending';

-- name: message_fenced
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, expiry_count,
       outcome_uncertain, account_deleted
FROM messages WHERE pk = :pk AND status = 'sending' AND lease_owner = :owner;

-- The rows of a batch of completions that ``owner`` still holds (leases.complete_sent_many).
-- name: messages_fenced_many
SELECT pk, tenant_id, id, account_id, priority, batch_code, retry_count, expiry_count,
       outcome_uncertain, account_deleted
FROM messages
WHERE status = 'sending' AND lease_owner = :owner AND pk IN (SELECT value FROM json_each(:pks));

-- name: message_fail
UPDATE messages
SET status = 'error', ready_ts = NULL, error = :error, error_ts = :now, lease_owner = NULL,
    lease_until = NULL, deferred_ts = NULL, deferred_reason = NULL, updated_at = :now
WHERE pk = :pk;

-- name: message_complete_sent
UPDATE messages
SET status = 'sent', ready_ts = NULL, sent_ts = :now, smtp_code = :smtp_code,
    refused_recipients = :refused_recipients, outcome_uncertain = :outcome_uncertain,
    lease_owner = NULL, lease_until = NULL, deferred_ts = NULL, deferred_reason = NULL,
    error = NULL, error_ts = NULL, updated_at = :now
WHERE pk = :pk;

-- name: message_complete_deferred
UPDATE messages
SET status = 'deferred', ready_ts = :deferred_ts, deferred_ts = :deferred_ts,
    deferred_reason = :deferred_reason, smtp_code = :smtp_code, retry_count = :retry_count,
    outcome_uncertain = :outcome_uncertain, lease_owner = NULL, lease_until = NULL,
    updated_at = :now
WHERE pk = :pk;

-- name: message_complete_error
UPDATE messages
SET status = 'error', ready_ts = NULL, error = :error, error_ts = :now, smtp_code = :smtp_code,
    refused_recipients = :refused_recipients, retry_count = :retry_count,
    outcome_uncertain = :outcome_uncertain, lease_owner = NULL, lease_until = NULL,
    deferred_ts = NULL, deferred_reason = NULL, updated_at = :now
WHERE pk = :pk;

-- ---------------------------------------------------------------- messages (reads, deletes)
-- The status a record reads (reference §1.2): deferred past its time and sending with an expired lease
-- read "pending".

-- name: message_list
-- A large payload (base64 attachments) is left out here and read one at a time
-- (message_payload), so a page never holds every record's attachment data at once.
SELECT m.pk, m.tenant_id, m.id, m.account_id, m.priority, m.seq, m.status, m.deferred_ts,
       m.deferred_reason, m.batch_code, m.message_id,
       CASE WHEN length(m.payload) <= 65536 THEN m.payload END AS payload,
       m.lease_until, m.retry_count,
       m.smtp_code, m.sent_ts, m.error_ts, m.error, m.refused_recipients, m.outcome_uncertain,
       m.bounce_type, m.bounce_code, m.bounce_reason, m.bounce_ts, m.reported_ts, m.created_at,
       m.updated_at, t.name AS tenant_name,
       CASE WHEN m.status = 'deferred' AND m.deferred_ts <= :now THEN 'pending'
            WHEN m.status = 'sending' AND m.lease_until < :now THEN 'pending'
            ELSE m.status END AS read_status
FROM messages m JOIN tenants t ON t.id = m.tenant_id
WHERE m.tenant_id = :tenant_id
  AND (CAST(:statuses AS TEXT) IS NULL
       OR (',' || CAST(:statuses AS TEXT) || ',') LIKE
          ('%,' || CASE WHEN m.status = 'deferred' AND m.deferred_ts <= :now THEN 'pending'
                        WHEN m.status = 'sending' AND m.lease_until < :now THEN 'pending'
                        ELSE m.status END || ',%'))
  AND (CAST(:account_id AS TEXT) IS NULL OR m.account_id = CAST(:account_id AS TEXT))
  AND (CAST(:batch_code AS TEXT) IS NULL OR m.batch_code = CAST(:batch_code AS TEXT))
  AND (CAST(:message_key AS TEXT) IS NULL OR m.id = CAST(:message_key AS TEXT))
  AND (m.priority > :after_priority OR (m.priority = :after_priority AND m.seq > :after_seq))
ORDER BY m.priority, m.seq
LIMIT :limit OFFSET :offset;

-- name: message_payload
SELECT payload FROM messages WHERE pk = :pk;

-- name: message_history
SELECT event_id, message_pk, event_type, event_ts, description, metadata, reported_ts
FROM events WHERE message_pk IN (SELECT value FROM json_each(:pks))
ORDER BY event_id;

-- name: message_status_by_id
SELECT pk, id, status FROM messages
WHERE tenant_id = :tenant_id AND id IN (SELECT value FROM json_each(:ids));

-- name: message_delete
DELETE FROM messages WHERE pk = :pk;

-- name: message_cleanup
DELETE FROM messages
WHERE pk IN (
    SELECT m.pk FROM messages m
    WHERE m.status IN ('sent', 'error') AND m.reported_ts <= :cutoff
      AND (CAST(:tenant_id AS TEXT) IS NULL OR m.tenant_id = CAST(:tenant_id AS TEXT))
      AND NOT EXISTS (SELECT 1 FROM events e WHERE e.message_pk = m.pk AND e.reported_ts IS NULL)
    LIMIT :limit);

-- name: message_stats
SELECT CASE WHEN status = 'deferred' AND deferred_ts <= :now THEN 'pending'
            WHEN status = 'sending' AND lease_until < :now THEN 'pending'
            ELSE status END AS read_status,
       count(*) AS n
FROM messages
WHERE (CAST(:tenant_id AS TEXT) IS NULL OR tenant_id = CAST(:tenant_id AS TEXT))
GROUP BY 1;

-- Bounces only ever concern sent messages (and the index holds only those).
-- name: message_by_header
SELECT pk, tenant_id, id, status FROM messages
WHERE status = 'sent' AND message_id = :message_id ORDER BY pk;

-- name: message_by_client_id
SELECT pk, tenant_id, id, status FROM messages WHERE id = :id ORDER BY pk;

-- ---------------------------------------------------------------- events (reads, acks)

-- name: events_unreported
SELECT event_id, message_pk, tenant_id, id, account_id, priority, batch_code, event_type,
       event_ts, description, metadata, reported_ts
FROM events WHERE tenant_id = :tenant_id AND reported_ts IS NULL
ORDER BY event_id LIMIT :limit;

-- name: events_unreported_count
SELECT count(*) FROM events WHERE tenant_id = :tenant_id AND reported_ts IS NULL;

-- Set-based acknowledgement: :ids is a JSON array of event ids. Returns the message of every
-- event it acknowledged (one row per event, so the caller counts them).
-- name: events_ack_many
UPDATE events SET reported_ts = :now
WHERE event_id IN (SELECT value FROM json_each(:ids)) AND reported_ts IS NULL
RETURNING message_pk;

-- name: messages_set_reported_many
UPDATE messages SET reported_ts = :now WHERE pk IN (SELECT value FROM json_each(:pks));

-- name: events_tail
SELECT event_id, message_pk, tenant_id, id, account_id, priority, batch_code, event_type,
       event_ts, description, metadata, reported_ts
FROM events
WHERE event_id > :after AND (CAST(:tenant_id AS TEXT) IS NULL OR tenant_id = CAST(:tenant_id AS TEXT))
ORDER BY event_id LIMIT :limit;

-- name: events_last_id
SELECT coalesce(max(event_id), 0) FROM events;

-- name: bounce_events_of
SELECT metadata FROM events WHERE message_pk = :pk AND event_type = 'bounce' ORDER BY event_id;

-- name: message_for_event
SELECT pk, tenant_id, id, account_id, priority, batch_code, status FROM messages WHERE pk = :pk;

-- name: message_set_bounce
UPDATE messages
SET bounce_type = :bounce_type, bounce_code = :bounce_code, bounce_reason = :bounce_reason,
    bounce_ts = :now, updated_at = :now
WHERE pk = :pk;

-- ---------------------------------------------------------------- bounce poller (reference §12)

-- name: bounce_state_ensure
INSERT INTO bounce_state (id) VALUES (1) ON CONFLICT (id) DO NOTHING;

-- name: bounce_state_get
SELECT uidvalidity, last_uid, last_sync_ts, next_poll_ts, consecutive_failures, last_error,
       last_error_ts, lock_owner, lock_until
FROM bounce_state WHERE id = 1;

-- One node at a time, and only when the shared schedule says a poll is due (or it is forced).
-- name: bounce_try_lock
UPDATE bounce_state SET lock_owner = :owner, lock_until = :until
WHERE id = 1
  AND (lock_owner IS NULL OR lock_owner = :owner OR lock_until < :now)
  AND (:force = 1 OR next_poll_ts IS NULL OR next_poll_ts <= :now);

-- name: bounce_save_cursor
UPDATE bounce_state SET uidvalidity = :uidvalidity, last_uid = :last_uid, lock_until = :until
WHERE id = 1 AND lock_owner = :owner;

-- name: bounce_unlock
UPDATE bounce_state SET lock_owner = NULL, lock_until = NULL WHERE id = 1 AND lock_owner = :owner;

-- name: bounce_unlock_prefix
UPDATE bounce_state SET lock_owner = NULL, lock_until = NULL
WHERE id = 1 AND substr(lock_owner, 1, length(:prefix)) = :prefix;

-- name: bounce_force_due
UPDATE bounce_state SET next_poll_ts = NULL, consecutive_failures = 0 WHERE id = 1;

-- name: bounce_finish
UPDATE bounce_state
SET lock_owner = NULL, lock_until = NULL, next_poll_ts = :next_poll_ts,
    consecutive_failures = :failures, last_error = :last_error, last_error_ts = :last_error_ts,
    last_sync_ts = :last_sync_ts
WHERE id = 1 AND lock_owner = :owner;

-- ---------------------------------------------------------------- rate limits

-- name: rate_count_account
SELECT count(*) FROM rate_slots
WHERE tenant_id = :tenant_id AND account_id = :account_id AND slot_ts > :since;

-- name: rate_oldest_account
SELECT slot_ts FROM rate_slots
WHERE tenant_id = :tenant_id AND account_id = :account_id AND slot_ts > :since
ORDER BY slot_ts LIMIT :n;

-- name: rate_count_tenant
SELECT count(*) FROM rate_slots WHERE tenant_id = :tenant_id AND slot_ts > :since;

-- name: rate_oldest_tenant
SELECT slot_ts FROM rate_slots WHERE tenant_id = :tenant_id AND slot_ts > :since
ORDER BY slot_ts LIMIT :n;

-- name: rate_insert
INSERT INTO rate_slots (tenant_id, account_id, message_pk, slot_ts)
VALUES (:tenant_id, :account_id, :message_pk, :now)
RETURNING slot_id;

-- One slot per message of a batch (an account and tenant without limits: nothing to count).
-- :rows is a JSON array of message pks.
-- name: rate_insert_many
INSERT INTO rate_slots (tenant_id, account_id, message_pk, slot_ts)
SELECT :tenant_id, :account_id, CAST(value AS INTEGER), :now FROM json_each(:rows)
RETURNING slot_id, message_pk;

-- name: rate_release
DELETE FROM rate_slots WHERE slot_id = :slot_id;

-- name: rate_prune
DELETE FROM rate_slots WHERE slot_ts <= :before;

-- ---------------------------------------------------------------- sessions (max_concurrent)

-- name: session_expire_account
DELETE FROM session_slots
WHERE tenant_id = :tenant_id AND account_id = :account_id AND lease_until < :now;

-- name: session_count
SELECT count(*) FROM session_slots WHERE tenant_id = :tenant_id AND account_id = :account_id;

-- name: session_insert
INSERT INTO session_slots (tenant_id, account_id, owner, lease_until)
VALUES (:tenant_id, :account_id, :owner, :lease_until)
RETURNING slot_id;

-- name: session_renew
UPDATE session_slots SET lease_until = :lease_until WHERE slot_id = :slot_id AND owner = :owner;

-- name: session_release
DELETE FROM session_slots WHERE slot_id = :slot_id;

-- name: session_release_owner
DELETE FROM session_slots WHERE owner = :owner OR substr(owner, 1, length(:prefix)) = :prefix;

-- name: session_expire
DELETE FROM session_slots WHERE lease_until < :now;

-- ---------------------------------------------------------------- sync state

-- name: sync_get
SELECT tenant_id, last_sync_ts, last_attempt_ts, dnd_until, consecutive_failures, backoff_until,
       last_error, queued_calls, queued_wanted, heartbeat_due, lock_owner, lock_until
FROM sync_state WHERE tenant_id = :tenant_id;

-- name: sync_ensure
INSERT INTO sync_state (tenant_id) SELECT id FROM tenants WHERE id = :tenant_id
ON CONFLICT (tenant_id) DO NOTHING;

-- name: sync_save
UPDATE sync_state
SET last_sync_ts = :last_sync_ts, last_attempt_ts = :last_attempt_ts, dnd_until = :dnd_until,
    consecutive_failures = :consecutive_failures, backoff_until = :backoff_until,
    last_error = :last_error, queued_calls = :queued_calls, queued_wanted = :queued_wanted,
    heartbeat_due = :heartbeat_due
WHERE tenant_id = :tenant_id;

-- name: sync_status
SELECT t.id, t.name, t.active, t.client_base_url, s.last_sync_ts, s.last_attempt_ts,
       s.dnd_until, s.consecutive_failures, s.backoff_until, s.last_error, s.queued_calls,
       s.queued_wanted, s.heartbeat_due,
       (SELECT count(*) FROM events e
        WHERE e.tenant_id = t.id AND e.reported_ts IS NULL) AS unreported_events
FROM tenants t LEFT JOIN sync_state s ON s.tenant_id = t.id
WHERE (CAST(:tenant_id AS TEXT) IS NULL OR t.id = CAST(:tenant_id AS TEXT))
  AND (:with_url_only = 0 OR coalesce(t.client_base_url, '') <> '')
ORDER BY t.id;

-- name: sync_try_lock
UPDATE sync_state SET lock_owner = :owner, lock_until = :until
WHERE tenant_id = :tenant_id
  AND (lock_owner IS NULL OR lock_owner = :owner OR lock_until < :now);

-- name: sync_unlock
UPDATE sync_state SET lock_owner = NULL, lock_until = NULL
WHERE tenant_id = :tenant_id AND lock_owner = :owner;

-- name: sync_unlock_prefix
UPDATE sync_state SET lock_owner = NULL, lock_until = NULL
WHERE substr(lock_owner, 1, length(:prefix)) = :prefix;

-- ---------------------------------------------------------------- command log

-- name: command_insert
INSERT INTO command_log (command_ts, endpoint, tenant_id, payload, response_status)
VALUES (:now, :endpoint, :tenant_id, :payload, :response_status)
RETURNING id;

-- name: command_list
SELECT id, command_ts, endpoint, tenant_id, payload, response_status FROM command_log
WHERE (CAST(:tenant_id AS TEXT) IS NULL OR tenant_id = CAST(:tenant_id AS TEXT))
  AND (CAST(:since_ts AS DOUBLE PRECISION) IS NULL OR command_ts >= CAST(:since_ts AS DOUBLE PRECISION))
  AND (CAST(:until_ts AS DOUBLE PRECISION) IS NULL OR command_ts <= CAST(:until_ts AS DOUBLE PRECISION))
  AND (CAST(:endpoint_filter AS TEXT) IS NULL
       OR instr(endpoint, CAST(:endpoint_filter AS TEXT)) > 0)
ORDER BY id DESC
LIMIT :limit OFFSET :offset;

-- name: command_export
SELECT id, command_ts, endpoint, tenant_id, payload, response_status FROM command_log
WHERE (CAST(:tenant_id AS TEXT) IS NULL OR tenant_id = CAST(:tenant_id AS TEXT))
  AND (CAST(:since_ts AS DOUBLE PRECISION) IS NULL OR command_ts >= CAST(:since_ts AS DOUBLE PRECISION))
  AND (CAST(:until_ts AS DOUBLE PRECISION) IS NULL OR command_ts <= CAST(:until_ts AS DOUBLE PRECISION))
ORDER BY id
LIMIT :limit;

-- name: command_purge
DELETE FROM command_log WHERE command_ts < :before;

-- ---------------------------------------------------------------- metrics (reference §14)

-- One round trip for the queue gauges. pending: queued and in flight, both parts read from
-- partial indexes, not the whole table. oldest_deferred: the oldest due deferral (its
-- deferred_ts is its ready time). oldest_pending: from messages_pending_age.
-- name: gauge_queue
SELECT (SELECT count(*) FROM messages WHERE ready_ts IS NOT NULL)
       + (SELECT count(*) FROM messages WHERE status = 'sending') AS pending,
       (SELECT min(ready_ts) FROM messages
        WHERE status = 'deferred' AND ready_ts <= :now) AS oldest_deferred,
       (SELECT min(created_at) FROM messages WHERE status = 'pending') AS oldest_pending,
       0 AS count_rows, 0 AS unreported_rows;

-- Every tenant with its unacknowledged events (0 when it has none), read from the count the
-- triggers of migration 4 keep: no pass over the events.
-- name: gauge_unreported
SELECT t.id AS tenant_id, coalesce(u.n, 0) AS n
FROM tenants t LEFT JOIN unreported_count u ON u.tenant_id = t.id;

-- name: metric_accounts
SELECT a.tenant_id, t.name AS tenant_name, a.id AS account_id
FROM accounts a JOIN tenants t ON t.id = a.tenant_id;
