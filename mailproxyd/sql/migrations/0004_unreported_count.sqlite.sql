-- mail-proxy migration 4 (SQLite): the unreported-events count the metrics read (reference §14).

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

INSERT INTO unreported_count (tenant_id, n)
SELECT tenant_id, count(*) FROM events WHERE reported_ts IS NULL GROUP BY tenant_id;
