-- Deploying through the gate (SPEC.md §3.5): the deployments the App has seen or made, the runs
-- waiting on its deployment protection rule, and each request's current deployment.
-- Times are Unix ms. Same meaning on SQLite and PostgreSQL.

-- A request's current deployment: the key the App created it with (its payload carries it), the
-- deployment's id once GitHub reports it, and its latest state.
ALTER TABLE requests ADD COLUMN deploy_key TEXT;
ALTER TABLE requests ADD COLUMN deployment_id INTEGER;
ALTER TABLE requests ADD COLUMN deploy_state TEXT;       -- requested | queued | in_progress | success | failure | error | inactive
ALTER TABLE requests ADD COLUMN deploy_sha TEXT;
ALTER TABLE requests ADD COLUMN approved_at INTEGER;          -- when the gate last opened
ALTER TABLE requests ADD COLUMN deploy_requested_at INTEGER;  -- when /deploy or /rollback asked for it

-- Every deployment seen (deployment_status events) or created, with its latest status. Staging
-- first reads this before asking GitHub; the weekly report reads the times.
CREATE TABLE deployments (
    installation_id INTEGER NOT NULL,
    repository_id   INTEGER NOT NULL,
    deployment_id   INTEGER NOT NULL,
    environment     TEXT   NOT NULL,
    sha             TEXT   NOT NULL,
    ref             TEXT,
    issue           INTEGER,                 -- the request it belongs to, when known
    state           TEXT   NOT NULL,    -- the latest status: queued | in_progress | success | failure | error | inactive ...
    status_at       INTEGER NOT NULL,        -- when GitHub made that status (out-of-order statuses never go back)
    status_id       INTEGER NOT NULL DEFAULT 0,  -- its id: orders statuses made in the same second
    created_at      INTEGER NOT NULL,        -- the deployment's creation
    started_at      INTEGER,                 -- the first in_progress status
    finished_at     INTEGER,                 -- the success, failure or error status
    succeeded_at    INTEGER,                 -- its success (kept when GitHub later marks it inactive)
    PRIMARY KEY (installation_id, repository_id, deployment_id)
);
CREATE INDEX deployments_env ON deployments (installation_id, repository_id, environment, sha);

-- Workflow runs waiting on the App's custom deployment protection rule.
CREATE TABLE protection_rules (
    installation_id INTEGER NOT NULL,
    repository_id   INTEGER NOT NULL,
    repository      TEXT   NOT NULL,
    run_id          INTEGER NOT NULL,
    environment     TEXT   NOT NULL,
    sha             TEXT   NOT NULL,
    ref             TEXT,
    deployment_id   INTEGER NOT NULL DEFAULT 0,  -- this attempt's deployment (a re-run is a new one)
    state           TEXT   NOT NULL,    -- pending | approved | rejected
    issue           INTEGER,                 -- the request that answered it
    report          TEXT,               -- a digest of the last status report (unchanged: not sent again)
    received_at     INTEGER NOT NULL,
    answered_at     INTEGER,
    PRIMARY KEY (installation_id, repository_id, run_id, environment)
);
CREATE INDEX protection_rules_pending ON protection_rules (installation_id, repository_id, environment) WHERE state = 'pending';
