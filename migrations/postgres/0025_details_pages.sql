-- The details pages (SPEC.md §6) read one request's deployments and audit entries by index.
CREATE INDEX deployments_request ON deployments (installation_id, repository_id, issue);
CREATE INDEX audit_log_request ON audit_log (installation_id, repository_id, issue, position);
-- A page's check that its repository is still served falls back to the requests of a repository
-- no installation event listed (store::tenancy::serving): by index, not a scan of every request.
CREATE INDEX requests_repository_id ON requests (repository_id, updated_at);
