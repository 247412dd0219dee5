-- The post-incident review that follows a break-glass is kept as an incident of kind `review`
-- (SPEC §3.7): due within two working days, escalated by the same loop when still open then.
ALTER TABLE incidents DROP CONSTRAINT incidents_kind_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_kind_check CHECK (kind IN ('ci', 'security', 'alert', 'review'));
