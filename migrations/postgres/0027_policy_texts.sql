-- Every version of `.github/shipgate.yml` a repository's requests were decided under, kept by
-- blob SHA for the evidence pack (issue 19): `policies` holds only the current one. Append-only,
-- like the audit log: the text's SHA-256 is sealed in the `policy.changed` entry that recorded it
-- (`yaml_sha256`) and in each `gate.opened` (`policy_sha256`), so a text changed here no longer
-- matches the log. Same meaning as migrations/sqlite/0027_policy_texts.sql.
CREATE TABLE policy_texts (
    installation_id BIGINT NOT NULL,
    repository_id   BIGINT NOT NULL,
    blob_sha        TEXT   NOT NULL,
    yaml            TEXT   NOT NULL,
    first_seen_at   BIGINT NOT NULL,
    PRIMARY KEY (installation_id, repository_id, blob_sha)
);

-- The texts cached now are the first ones kept.
INSERT INTO policy_texts (installation_id, repository_id, blob_sha, yaml, first_seen_at)
SELECT installation_id, repository_id, blob_sha, yaml, fetched_at FROM policies
WHERE yaml IS NOT NULL AND blob_sha <> '';

-- (`INSERT … ON CONFLICT DO UPDATE` fires the UPDATE trigger, which refuses it.)
CREATE TRIGGER policy_texts_no_change BEFORE UPDATE OR DELETE ON policy_texts
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER policy_texts_no_truncate BEFORE TRUNCATE ON policy_texts
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();
