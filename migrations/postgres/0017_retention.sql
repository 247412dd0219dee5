-- Retention (issue 14): a done delivery's body is dropped after SHIPGATE_RETENTION_DAYS (14)
-- while its row stays (for figures, history, and refusing a replay by its body hash) until
-- SHIPGATE_HISTORY_DAYS (400). The bodies still held, oldest first: the pruner's index.
CREATE INDEX deliveries_bodies ON deliveries (finished_at)
    WHERE state = 'done' AND (body <> '' OR body_lz4 IS NOT NULL);
-- The inbox and the outbox are queues: every row is updated two or three times within seconds
-- of its insert. Autovacuum's default (a fifth of the table dead) waits for 400,000 dead rows
-- in a 2-million-row inbox; 2% keeps the dead rows, and the index pages they hold, small.
ALTER TABLE deliveries SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
-- The read API finds a request by repository name and issue (`/api/requests/{owner}/{repo}/{n}`).
CREATE INDEX requests_repository ON requests (repository, issue);
