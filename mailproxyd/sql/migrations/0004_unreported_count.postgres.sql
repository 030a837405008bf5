-- mail-proxy migration 4 (PostgreSQL): the unreported-events count the metrics read (reference §14).

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

-- After the triggers: creating them locked out writers of events until this commits.
INSERT INTO unreported_count (tenant_id, delta)
SELECT tenant_id, count(*) FROM events WHERE reported_ts IS NULL GROUP BY tenant_id;
