-- Workflow enforcement (issue 13, SPEC §3.5 `workflow`): a job's wait at `POST /gate/wait`,
-- proven by its GitHub Actions OIDC token. One row per (run, attempt, environment): the jobs of one
-- attempt share its answer, which never changes once given (like a protection rule's); a re-run
-- attempt waits afresh. Times are Unix ms.
CREATE TABLE gate_waits (
    installation_id BIGINT  NOT NULL,
    repository_id   BIGINT  NOT NULL,
    repository      TEXT    NOT NULL,
    run_id          BIGINT  NOT NULL,
    run_attempt     BIGINT  NOT NULL,
    environment     TEXT    NOT NULL,
    sha             TEXT    NOT NULL,
    git_ref         TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    issue           BIGINT,
    -- What the gate waits for (JSON list of lines), and a digest of the last report.
    missing         TEXT    NOT NULL DEFAULT '[]',
    report          TEXT,
    received_at     BIGINT  NOT NULL,
    answered_at     BIGINT,
    PRIMARY KEY (installation_id, repository_id, run_id, run_attempt, environment)
);
CREATE INDEX gate_waits_pending ON gate_waits (installation_id, repository_id, state);
