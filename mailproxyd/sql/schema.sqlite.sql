-- mail-proxy schema for SQLite: the state after every migration in migrations/*.sqlite.sql.
-- A fresh database is built from this file; tests/integration/store/test_migrations.py checks
-- that the migrations produce exactly the same schema.
-- Conventions: times are REAL Unix seconds; flags are INTEGER 0/1; JSON documents are TEXT.

CREATE TABLE schema_version (
    version INTEGER NOT NULL
);

-- Instance-wide key/value state: instance settings, scheduler_active, key fingerprint.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Block-reserved arrival sequence of messages (PostgreSQL uses a SEQUENCE instead).
CREATE TABLE seq_counter (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);

INSERT INTO seq_counter (id, value) VALUES (1, 0);

CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_ts REAL NOT NULL
);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT,
    client_base_url TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    settings TEXT NOT NULL DEFAULT '{}',
    client_auth TEXT NOT NULL DEFAULT '{}',
    api_key_digest TEXT UNIQUE,
    api_key_expires_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

-- batch_code '*' suspends the whole tenant.
CREATE TABLE suspensions (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    batch_code TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, batch_code)
);

CREATE TABLE accounts (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',
    password TEXT,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
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
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    account_id TEXT,
    priority INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    ready_ts REAL,
    deferred_ts REAL,
    deferred_reason TEXT,
    batch_code TEXT,
    message_id TEXT,
    payload TEXT NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    expiry_count INTEGER NOT NULL DEFAULT 0,
    retry_count INTEGER NOT NULL DEFAULT 0,
    smtp_code INTEGER,
    sent_ts REAL,
    error_ts REAL,
    error TEXT,
    refused_recipients TEXT,
    outcome_uncertain INTEGER NOT NULL DEFAULT 0,
    account_deleted INTEGER NOT NULL DEFAULT 0,
    bounce_type TEXT,
    bounce_code TEXT,
    bounce_reason TEXT,
    bounce_ts REAL,
    reported_ts REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
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
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_pk INTEGER NOT NULL REFERENCES messages (pk) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    account_id TEXT,
    priority INTEGER NOT NULL,
    batch_code TEXT,
    event_type TEXT NOT NULL,
    event_ts REAL NOT NULL,
    description TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    reported_ts REAL
);

CREATE INDEX events_message ON events (message_pk, event_id);
CREATE INDEX events_unreported ON events (tenant_id, event_id) WHERE reported_ts IS NULL;

CREATE TABLE rate_slots (
    slot_id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    message_pk INTEGER,
    slot_ts REAL NOT NULL
);

CREATE INDEX rate_slots_account ON rate_slots (tenant_id, account_id, slot_ts);
CREATE INDEX rate_slots_tenant ON rate_slots (tenant_id, slot_ts);
CREATE INDEX rate_slots_ts ON rate_slots (slot_ts);

CREATE TABLE session_slots (
    slot_id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    lease_until REAL NOT NULL
);

CREATE INDEX session_slots_account ON session_slots (tenant_id, account_id);

CREATE TABLE sync_state (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    last_sync_ts REAL,
    last_attempt_ts REAL,
    dnd_until REAL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    backoff_until REAL,
    last_error TEXT,
    queued_calls INTEGER NOT NULL DEFAULT 0,
    -- The last acknowledged answer had queued > 0: a follow-up call is wanted (held back by
    -- DND or pending across a reporter restart), until queued_calls reaches the cap.
    queued_wanted INTEGER NOT NULL DEFAULT 0,
    heartbeat_due INTEGER NOT NULL DEFAULT 0,
    lock_owner TEXT,
    lock_until REAL
);

CREATE TABLE command_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command_ts REAL NOT NULL,
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
    uidvalidity INTEGER,
    last_uid INTEGER NOT NULL DEFAULT 0,
    last_sync_ts REAL,
    next_poll_ts REAL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_error_ts REAL,
    lock_owner TEXT,
    lock_until REAL
);

-- The number of unacknowledged events per tenant, kept by triggers: counting them took most of
-- a scrape's database time and grew with a tenant that stays unreachable. SQLite has only row
-- triggers, and a single writer: one counter row per tenant costs no contention.
CREATE TABLE unreported_count (
    tenant_id TEXT PRIMARY KEY,
    n INTEGER NOT NULL
);

CREATE TRIGGER events_unreported_count_insert AFTER INSERT ON events
WHEN new.reported_ts IS NULL
BEGIN
    INSERT INTO unreported_count (tenant_id, n) VALUES (new.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER events_unreported_count_update AFTER UPDATE OF reported_ts, tenant_id ON events
WHEN old.reported_ts IS NULL OR new.reported_ts IS NULL
BEGIN
    UPDATE unreported_count SET n = n - 1
    WHERE tenant_id = old.tenant_id AND old.reported_ts IS NULL;
    INSERT INTO unreported_count (tenant_id, n) SELECT new.tenant_id, 1
    WHERE new.reported_ts IS NULL
    ON CONFLICT (tenant_id) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER events_unreported_count_delete AFTER DELETE ON events
WHEN old.reported_ts IS NULL
BEGIN
    UPDATE unreported_count SET n = n - 1 WHERE tenant_id = old.tenant_id;
END;

