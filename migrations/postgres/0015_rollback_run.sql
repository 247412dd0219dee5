-- The workflow run a pending /rollback re-ran (deploy modes protection_rule and workflow): only
-- that run's waiting deployment is approved, once (issue 13).
ALTER TABLE requests ADD COLUMN rollback_run_id BIGINT;
