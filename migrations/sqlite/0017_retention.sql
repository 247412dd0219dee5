-- Retention (issue 14): a done delivery's body is dropped after SHIPGATE_RETENTION_DAYS (14)
-- while its row stays (for figures, history, and refusing a replay by its body hash) until
-- SHIPGATE_HISTORY_DAYS (400). The bodies still held, oldest first: the pruner's index.
CREATE INDEX deliveries_bodies ON deliveries (finished_at)
    WHERE state = 'done' AND (body <> '' OR body_lz4 IS NOT NULL);
-- The read API finds a request by repository name and issue (`/api/requests/{owner}/{repo}/{n}`).
CREATE INDEX requests_repository ON requests (repository, issue);
