-- CI incidents (SPEC §4): every completed workflow run, flaky re-runs, the App's failure comment
-- per PR and workflow, and incidents (a failing workflow on an incident branch, or a security
-- alert) with their escalation deadline. Times are Unix ms. Same meaning on SQLite and PostgreSQL.

-- Every completed run (one row per attempt), for ordering late deliveries and the CI green rate.
CREATE TABLE ci_runs (
    installation_id BIGINT NOT NULL,
    repository_id   BIGINT NOT NULL,
    run_id          BIGINT NOT NULL,
    attempt         BIGINT NOT NULL,
    run_number      BIGINT NOT NULL,
    workflow_id     BIGINT NOT NULL,
    workflow        TEXT   NOT NULL,
    lane            TEXT   NOT NULL,                -- head repository id ':' head branch (a fork's main is not ours)
    branch          TEXT   NOT NULL,
    head_sha        TEXT   NOT NULL,
    event           TEXT   NOT NULL,                -- push, pull_request, schedule, ...
    conclusion      TEXT   NOT NULL,
    kind            TEXT   NOT NULL CHECK (kind IN ('success', 'failure', 'ignored')),
    started_at      BIGINT NOT NULL,                -- run_started_at of the payload
    completed_at    BIGINT NOT NULL,                -- updated_at of the payload
    failed_jobs     TEXT   NOT NULL DEFAULT '[]',   -- the failed jobs and steps (JSON)
    recorded_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, run_id, attempt)
);
CREATE INDEX ci_runs_lane ON ci_runs (repository_id, workflow_id, lane, run_number, attempt);
CREATE INDEX ci_runs_completed ON ci_runs (installation_id, completed_at);

-- A job that failed and then passed on a re-run of the same commit.
CREATE TABLE ci_flaky (
    installation_id BIGINT NOT NULL,
    repository_id   BIGINT NOT NULL,
    workflow_id     BIGINT NOT NULL,
    workflow        TEXT   NOT NULL,
    job             TEXT   NOT NULL,
    head_sha        TEXT   NOT NULL,
    run_id          BIGINT NOT NULL,
    at              BIGINT NOT NULL,                -- when the passing attempt completed
    PRIMARY KEY (repository_id, workflow_id, job, head_sha)
);

-- The App's failure comment on a PR, per workflow: red until that workflow passes again.
CREATE TABLE ci_pr_comments (
    installation_id BIGINT NOT NULL,
    repository_id   BIGINT NOT NULL,
    pr              BIGINT NOT NULL,
    workflow_id     BIGINT NOT NULL,
    lane            TEXT   NOT NULL,
    state           TEXT   NOT NULL CHECK (state IN ('red', 'green')),
    run_id          BIGINT NOT NULL,
    head_sha        TEXT   NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (repository_id, pr, workflow_id)
);
CREATE INDEX ci_pr_comments_lane ON ci_pr_comments (repository_id, workflow_id, lane);

CREATE TABLE incidents (
    id               TEXT   PRIMARY KEY,            -- repository id ':' marker
    installation_id  BIGINT NOT NULL,
    repository_id    BIGINT NOT NULL,
    repository       TEXT   NOT NULL,               -- owner/name
    kind             TEXT   NOT NULL CHECK (kind IN ('ci', 'security')),
    subject          TEXT   NOT NULL,               -- ci: workflow id ':' branch; security: event ':' alert number
    seq              BIGINT NOT NULL,               -- the n-th incident of this subject
    marker           TEXT   NOT NULL,               -- the issue's idempotency marker
    title            TEXT   NOT NULL,
    branch           TEXT   NOT NULL DEFAULT '',
    on_default       BIGINT NOT NULL DEFAULT 0,     -- the branch was the repository's default branch
    state            TEXT   NOT NULL CHECK (state IN ('open', 'closed')),
    opened_at        BIGINT NOT NULL,               -- when the App opened it
    first_failure_at BIGINT NOT NULL,               -- the first failure after the last success (payload time)
    last_run_number  BIGINT NOT NULL DEFAULT 0,
    last_attempt     BIGINT NOT NULL DEFAULT 0,
    failures         BIGINT NOT NULL DEFAULT 1,
    deadline         BIGINT NOT NULL,               -- escalated when still open then
    mentions         TEXT   NOT NULL DEFAULT '',    -- who the escalation mentions (@login @org/team)
    escalated_at     BIGINT,
    recovered_at     BIGINT,
    ttr_ms           BIGINT,
    flaky            BIGINT NOT NULL DEFAULT 0,     -- closed by a re-run of the failing commit
    details          TEXT   NOT NULL DEFAULT '{}',  -- what the issue shows (JSON)
    updated_at       BIGINT NOT NULL,
    UNIQUE (repository_id, kind, subject, seq)
);
CREATE INDEX incidents_open ON incidents (repository_id, kind, subject) WHERE state = 'open';
CREATE INDEX incidents_due ON incidents (deadline) WHERE state = 'open' AND escalated_at IS NULL;
