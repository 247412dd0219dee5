-- Every version of `.github/shipgate.yml` a repository's requests were decided under, kept by
-- blob SHA for the evidence pack (issue 19): `policies` holds only the current one. Append-only,
-- like the audit log: the text's SHA-256 is sealed in the `policy.changed` entry that recorded it
-- (`yaml_sha256`) and in each `gate.opened` (`policy_sha256`), so a text changed here no longer
-- matches the log. Same meaning as migrations/postgres/0027_policy_texts.sql.
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

CREATE TRIGGER policy_texts_no_update BEFORE UPDATE ON policy_texts
BEGIN
    SELECT RAISE(ABORT, 'policy_texts is append-only: UPDATE refused');
END;
CREATE TRIGGER policy_texts_no_delete BEFORE DELETE ON policy_texts
BEGIN
    SELECT RAISE(ABORT, 'policy_texts is append-only: DELETE refused');
END;
CREATE TRIGGER policy_texts_no_replace BEFORE INSERT ON policy_texts
WHEN EXISTS (SELECT 1 FROM policy_texts WHERE installation_id = NEW.installation_id
    AND repository_id = NEW.repository_id AND blob_sha = NEW.blob_sha)
BEGIN
    SELECT RAISE(ABORT, 'policy_texts is append-only: an insert replacing a text refused');
END;
