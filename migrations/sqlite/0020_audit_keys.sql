-- The audit log sealed with an HMAC under SHIPGATE_AUDIT_KEY (SPEC.md §3.6, issue 15): each entry
-- names the key it is sealed with (16 hex digits of a SHA-256 of the key; NULL for the plain
-- SHA-256 entries written before), and so does each chain's head (the App appends only under the
-- key its chain is sealed with). Same meaning as migrations/postgres/0020_audit_keys.sql.
ALTER TABLE audit_log ADD COLUMN key_id TEXT;
ALTER TABLE audit_heads ADD COLUMN key_id TEXT;

-- `INSERT OR REPLACE` (or `REPLACE INTO`) deletes the row it replaces without firing the DELETE
-- trigger (recursive_triggers is off): refuse any insert that would replace an entry.
CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log
WHEN EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq)
  OR EXISTS (SELECT 1 FROM audit_log WHERE installation_id = NEW.installation_id AND position = NEW.position)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: an insert replacing an entry refused');
END;
