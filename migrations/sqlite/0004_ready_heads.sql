-- Only the oldest open row of a subject is "ready"; the rest wait (blocked = 1) until it finishes,
-- and finishing a row readies the next one of its subject. The claim then looks only at ready
-- rows instead of scanning every open row of every subject (which made a busy subject's claim
-- O(n) while it held SQLite's write lock).
ALTER TABLE deliveries ADD COLUMN blocked BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN blocked BIGINT NOT NULL DEFAULT 0;
CREATE INDEX deliveries_ready ON deliveries (seq) WHERE state IN ('pending', 'running') AND blocked = 0;
CREATE INDEX outbox_ready ON outbox (seq) WHERE state IN ('pending', 'running') AND blocked = 0;
CREATE INDEX deliveries_waiting ON deliveries (subject, seq) WHERE state = 'pending' AND blocked = 1;
CREATE INDEX outbox_waiting ON outbox (subject, seq) WHERE state = 'pending' AND blocked = 1;
