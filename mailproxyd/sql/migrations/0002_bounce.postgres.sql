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

-- The cursor used to live in meta; nothing ever wrote it before the poller existed.
DELETE FROM meta WHERE key = 'bounce_cursor';
