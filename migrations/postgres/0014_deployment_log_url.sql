-- A deployment's last status's link to its log (the run that deployed): the failed-deploy comment
-- links the failing run (issue 13).
ALTER TABLE deployments ADD COLUMN log_url TEXT;
