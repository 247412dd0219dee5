-- Alerts from the monitoring stack are incidents too (SPEC §4.2): kind `alert`, subject
-- `alert:` fingerprint.
ALTER TABLE incidents DROP CONSTRAINT incidents_kind_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_kind_check CHECK (kind IN ('ci', 'security', 'alert'));
