-- mail-proxy migration 2 (SQLite): nothing; the pending gauge counts from partial indexes.
SELECT 1;
