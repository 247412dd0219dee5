-- The team's figures (issue 17): what a report needs to know of each run and deployment, decided
-- when the App saw it.

-- The run counts for the CI green rate: a push (or schedule, or manual run) of this repository on
-- one of the policy's incident branches (`ci.incident_branches`, the default branch without it).
-- Runs recorded before: those on `main` (the built-in policy's incident branch).
ALTER TABLE ci_runs ADD COLUMN incident_branch BIGINT NOT NULL DEFAULT 0;
UPDATE ci_runs SET incident_branch = 1 WHERE branch = 'main' AND event IN ('push', 'schedule', 'merge_group', 'workflow_dispatch');

-- A `/rollback`: a deployment of its own that makes the one it replaced a change failure.
ALTER TABLE deployments ADD COLUMN rollback BIGINT NOT NULL DEFAULT 0;
