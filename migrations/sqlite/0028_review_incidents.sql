-- The post-incident review that follows a break-glass is kept as an incident of kind `review`
-- (SPEC §3.7): due within two working days, escalated by the same loop when still open then.
-- SQLite cannot change a CHECK constraint: the table is copied (with every index it has).
CREATE TABLE incidents_new (
    id               TEXT   PRIMARY KEY,            -- repository id ':' marker
    installation_id  INTEGER NOT NULL,
    repository_id    INTEGER NOT NULL,
    repository       TEXT   NOT NULL,               -- owner/name
    kind             TEXT   NOT NULL CHECK (kind IN ('ci', 'security', 'alert', 'review')),
    subject          TEXT   NOT NULL,               -- ci: workflow id ':' branch; security: event ':' alert number; review: 'request:' issue
    seq              INTEGER NOT NULL,               -- the n-th incident of this subject
    marker           TEXT   NOT NULL,               -- the issue's idempotency marker
    title            TEXT   NOT NULL,
    branch           TEXT   NOT NULL DEFAULT '',
    on_default       INTEGER NOT NULL DEFAULT 0,     -- the branch was the repository's default branch
    state            TEXT   NOT NULL CHECK (state IN ('open', 'closed')),
    opened_at        INTEGER NOT NULL,               -- when the App opened it
    first_failure_at INTEGER NOT NULL,               -- the first failure after the last success (payload time)
    last_run_number  INTEGER NOT NULL DEFAULT 0,
    last_attempt     INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 1,
    deadline         INTEGER NOT NULL,               -- escalated when still open then
    mentions         TEXT   NOT NULL DEFAULT '',    -- who the escalation mentions (@login @org/team)
    escalated_at     INTEGER,
    recovered_at     INTEGER,
    ttr_ms           INTEGER,
    flaky            INTEGER NOT NULL DEFAULT 0,     -- closed by a re-run of the failing commit
    details          TEXT   NOT NULL DEFAULT '{}',  -- what the issue shows (JSON)
    updated_at       INTEGER NOT NULL,
    UNIQUE (repository_id, kind, subject, seq)
);
INSERT INTO incidents_new SELECT id, installation_id, repository_id, repository, kind, subject, seq, marker, title,
    branch, on_default, state, opened_at, first_failure_at, last_run_number, last_attempt, failures, deadline,
    mentions, escalated_at, recovered_at, ttr_ms, flaky, details, updated_at FROM incidents;
DROP TABLE incidents;
ALTER TABLE incidents_new RENAME TO incidents;
CREATE INDEX incidents_open ON incidents (repository_id, kind, subject) WHERE state = 'open';
CREATE INDEX incidents_due ON incidents (deadline) WHERE state = 'open' AND escalated_at IS NULL;
CREATE INDEX incidents_installation ON incidents (installation_id, id);
CREATE INDEX incidents_repository ON incidents (repository_id, installation_id);
