-- mail-proxy schema for PostgreSQL: the state after every migration in migrations/*.postgres.sql.
-- A fresh database is built from this file; tests/integration/store/test_migrations.py checks
-- that the migrations produce exactly the same schema.
-- Conventions: times are DOUBLE PRECISION Unix seconds; flags are INTEGER 0/1; JSON documents are TEXT.

CREATE TABLE schema_version (
    version INTEGER NOT NULL
);

-- Instance-wide key/value state: instance settings, scheduler_active, key fingerprint.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Arrival sequence of messages (monotonic per database, reference §8.2).
CREATE SEQUENCE message_seq;

CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_ts DOUBLE PRECISION NOT NULL
);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT,
    client_base_url TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    settings TEXT NOT NULL DEFAULT '{}',
    client_auth TEXT NOT NULL DEFAULT '{}',
    api_key_digest TEXT UNIQUE,
    api_key_expires_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

-- batch_code '*' suspends the whole tenant.
CREATE TABLE suspensions (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    batch_code TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, batch_code)
);

CREATE TABLE accounts (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',
    password TEXT,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- ready_ts is NULL unless the message is queued (pending: 0, deferred: its deferred_ts); the
-- partial indexes below therefore hold only queued or in-flight rows, so claim cost does not grow
-- with the number of sent/error rows kept for retention. Ingest writes as few indexes as
-- possible: a pending insert touches only the primary key, (tenant_id, id), messages_queue and
-- messages_pending_age (the queue-age gauge, reference §14).
-- There is deliberately no (tenant_id, priority, seq) index for listing: PostgreSQL would pick it
-- for claims too and walk every sent row in front of the queue; listing a huge backlog sorts
-- instead (about 0.2 s per million rows of the tenant).
-- tenant_id has no foreign key: on PostgreSQL its check is a trigger call per inserted row (a
-- quarter of the cost of a 500-message batch). The store keeps the rule itself: enqueue takes
-- a share lock on the tenant row, and deleting a tenant locks it and deletes its messages.
CREATE TABLE messages (
    pk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    account_id TEXT,
    priority INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    ready_ts DOUBLE PRECISION,
    deferred_ts DOUBLE PRECISION,
    deferred_reason TEXT,
    batch_code TEXT,
    message_id TEXT,
    payload TEXT NOT NULL,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    expiry_count INTEGER NOT NULL DEFAULT 0,
    retry_count INTEGER NOT NULL DEFAULT 0,
    smtp_code INTEGER,
    sent_ts DOUBLE PRECISION,
    error_ts DOUBLE PRECISION,
    error TEXT,
    refused_recipients TEXT,
    outcome_uncertain INTEGER NOT NULL DEFAULT 0,
    account_deleted INTEGER NOT NULL DEFAULT 0,
    bounce_type TEXT,
    bounce_code TEXT,
    bounce_reason TEXT,
    bounce_ts DOUBLE PRECISION,
    reported_ts DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (tenant_id, id)
);

CREATE INDEX messages_queue ON messages (tenant_id, account_id, priority, seq, ready_ts, batch_code)
    WHERE ready_ts IS NOT NULL;
CREATE INDEX messages_deferred ON messages (ready_ts) WHERE status = 'deferred';
CREATE INDEX messages_leases ON messages (tenant_id, account_id, lease_until)
    WHERE status = 'sending';
CREATE INDEX messages_lease_until ON messages (lease_until) WHERE status = 'sending';
CREATE INDEX messages_terminal ON messages (reported_ts) WHERE status IN ('sent', 'error');
CREATE INDEX messages_message_id ON messages (message_id) WHERE status = 'sent';
-- The queue age gauge (reference §14) reads the oldest pending message here instead of scanning.
CREATE INDEX messages_pending_age ON messages (created_at) WHERE status = 'pending';

-- Append-only; id/account_id/priority/batch_code are snapshots taken when the event is recorded.
CREATE TABLE events (
    event_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_pk BIGINT NOT NULL REFERENCES messages (pk) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    account_id TEXT,
    priority INTEGER NOT NULL,
    batch_code TEXT,
    event_type TEXT NOT NULL,
    event_ts DOUBLE PRECISION NOT NULL,
    description TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    reported_ts DOUBLE PRECISION,
    -- Server clock at insert: lets the live tail tell a gap left by a transaction still running
    -- from one left by a rollback or a deletion (see events_tail_ids).
    recorded_at DOUBLE PRECISION NOT NULL DEFAULT extract(epoch FROM clock_timestamp())
);

CREATE INDEX events_message ON events (message_pk, event_id);
CREATE INDEX events_unreported ON events (tenant_id, event_id) WHERE reported_ts IS NULL;

CREATE TABLE rate_slots (
    slot_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    message_pk BIGINT,
    slot_ts DOUBLE PRECISION NOT NULL
);

CREATE INDEX rate_slots_account ON rate_slots (tenant_id, account_id, slot_ts);
CREATE INDEX rate_slots_tenant ON rate_slots (tenant_id, slot_ts);
CREATE INDEX rate_slots_ts ON rate_slots (slot_ts);

CREATE TABLE session_slots (
    slot_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    lease_until DOUBLE PRECISION NOT NULL
);

CREATE INDEX session_slots_account ON session_slots (tenant_id, account_id);

CREATE TABLE sync_state (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    last_sync_ts DOUBLE PRECISION,
    last_attempt_ts DOUBLE PRECISION,
    dnd_until DOUBLE PRECISION,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    backoff_until DOUBLE PRECISION,
    last_error TEXT,
    queued_calls INTEGER NOT NULL DEFAULT 0,
    -- The last acknowledged answer had queued > 0: a follow-up call is wanted (held back by
    -- DND or pending across a reporter restart), until queued_calls reaches the cap.
    queued_wanted INTEGER NOT NULL DEFAULT 0,
    heartbeat_due INTEGER NOT NULL DEFAULT 0,
    lock_owner TEXT,
    lock_until DOUBLE PRECISION
);

CREATE TABLE command_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_ts DOUBLE PRECISION NOT NULL,
    endpoint TEXT NOT NULL,
    tenant_id TEXT,
    payload TEXT NOT NULL,
    response_status INTEGER
);

CREATE INDEX command_log_ts ON command_log (command_ts);
CREATE INDEX command_log_tenant ON command_log (tenant_id, command_ts);

-- The bounce poller's state (reference §12): the mailbox cursor, the one-node-at-a-time lease, the
-- shared schedule and back-off, and the last failure shown by GET /instance. One row, id 1.
CREATE TABLE bounce_state (
    id INTEGER PRIMARY KEY,
    uidvalidity BIGINT,
    last_uid BIGINT NOT NULL DEFAULT 0,
    last_sync_ts DOUBLE PRECISION,
    next_poll_ts DOUBLE PRECISION,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_error_ts DOUBLE PRECISION,
    lock_owner TEXT,
    lock_until DOUBLE PRECISION
);

-- The number of queued or in-flight messages as a sum of deltas (the pending gauge, reference §14):
-- counting a large queue takes longer than a scrape may. One statement trigger per kind of
-- change adds one row per statement that changes the count (never one per message, and no
-- single row every writer would wait for); the scrape folds the rows from time to time.
CREATE TABLE queue_count (
    delta BIGINT NOT NULL
);

CREATE FUNCTION queue_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_count (delta)
    SELECT n FROM (SELECT count(*) AS n FROM new_rows
                   WHERE status IN ('pending', 'deferred', 'sending')) c WHERE n <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION queue_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_count (delta)
    SELECT n FROM (SELECT (SELECT count(*) FROM new_rows
                           WHERE status IN ('pending', 'deferred', 'sending'))
                        - (SELECT count(*) FROM old_rows
                           WHERE status IN ('pending', 'deferred', 'sending')) AS n) c
    WHERE n <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION queue_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_count (delta)
    SELECT -n FROM (SELECT count(*) AS n FROM old_rows
                    WHERE status IN ('pending', 'deferred', 'sending')) c WHERE n <> 0;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_queue_count_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION queue_count_insert();
CREATE TRIGGER messages_queue_count_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_count_update();
CREATE TRIGGER messages_queue_count_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION queue_count_delete();

-- The number of unacknowledged events per tenant as a sum of deltas, kept the way queue_count
-- keeps the pending count (migration 3): counting them took most of a scrape's database time
-- and grew with a tenant that stays unreachable. One statement trigger per kind of change adds
-- one row per tenant and statement that changes the count; the scrape folds the rows.
CREATE TABLE unreported_count (
    tenant_id TEXT NOT NULL,
    delta BIGINT NOT NULL
);

CREATE FUNCTION unreported_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO unreported_count (tenant_id, delta)
    SELECT tenant_id, count(*) FROM new_rows WHERE reported_ts IS NULL GROUP BY tenant_id;
    RETURN NULL;
END $$;

CREATE FUNCTION unreported_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO unreported_count (tenant_id, delta)
    SELECT tenant_id, sum(d) FROM (SELECT tenant_id, 1 AS d FROM new_rows
                                   WHERE reported_ts IS NULL
                                   UNION ALL
                                   SELECT tenant_id, -1 AS d FROM old_rows
                                   WHERE reported_ts IS NULL) c
    GROUP BY tenant_id HAVING sum(d) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION unreported_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO unreported_count (tenant_id, delta)
    SELECT tenant_id, -count(*) FROM old_rows WHERE reported_ts IS NULL GROUP BY tenant_id;
    RETURN NULL;
END $$;

CREATE TRIGGER events_unreported_count_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION unreported_count_insert();
CREATE TRIGGER events_unreported_count_update AFTER UPDATE ON events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION unreported_count_update();
CREATE TRIGGER events_unreported_count_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION unreported_count_delete();

