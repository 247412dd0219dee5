-- The details pages (SPEC.md §6) read one request's deployments and audit entries by index.
CREATE INDEX deployments_request ON deployments (installation_id, repository_id, issue);
CREATE INDEX audit_log_request ON audit_log (installation_id, repository_id, issue, position);
