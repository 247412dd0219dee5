-- The audit log sealed with an HMAC under SHIPGATE_AUDIT_KEY (SPEC.md §3.6, issue 15): each entry
-- names the key it is sealed with (16 hex digits of a SHA-256 of the key; NULL for the plain
-- SHA-256 entries written before), and so does each chain's head (the App appends only under the
-- key its chain is sealed with). Same meaning as migrations/sqlite/0020_audit_keys.sql.
-- (PostgreSQL has no replacing insert: `INSERT … ON CONFLICT DO UPDATE` fires the UPDATE trigger,
-- which refuses it.)
ALTER TABLE audit_log ADD COLUMN key_id TEXT;
ALTER TABLE audit_heads ADD COLUMN key_id TEXT;
