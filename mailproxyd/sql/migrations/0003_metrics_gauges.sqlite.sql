-- mail-proxy migration 3 (SQLite): what the metrics gauges read (reference §14).

-- The queue age gauge reads the oldest pending message here instead of scanning.
CREATE INDEX messages_pending_age ON messages (created_at) WHERE status = 'pending';
