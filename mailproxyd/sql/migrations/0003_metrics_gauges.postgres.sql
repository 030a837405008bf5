-- mail-proxy migration 3 (PostgreSQL): what the metrics gauges read (reference §14).

-- The queue age gauge reads the oldest pending message here instead of scanning.
CREATE INDEX messages_pending_age ON messages (created_at) WHERE status = 'pending';

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

INSERT INTO queue_count (delta)
SELECT count(*) FROM messages WHERE status IN ('pending', 'deferred', 'sending');
