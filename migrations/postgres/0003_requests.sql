-- Deployment requests, their approvals, and each repository's policy. Times are Unix ms.
-- Same meaning on SQLite and PostgreSQL.

-- .github/shipgate.yml per repository, by blob SHA ('' when the file does not exist).
CREATE TABLE policies (
    installation_id BIGINT NOT NULL,
    repository_id   BIGINT NOT NULL,
    blob_sha        TEXT   NOT NULL,
    yaml            TEXT,
    fetched_at      BIGINT NOT NULL,
    PRIMARY KEY (installation_id, repository_id)
);

CREATE TABLE requests (
    installation_id BIGINT NOT NULL,
    repository_id   BIGINT NOT NULL,
    repository      TEXT   NOT NULL,                -- owner/name
    issue           BIGINT NOT NULL,
    author_id       BIGINT NOT NULL,
    author_login    TEXT   NOT NULL,
    labelled        BIGINT NOT NULL,                -- carries the policy's label
    open            BIGINT NOT NULL,
    environment     TEXT,
    fingerprint     TEXT   NOT NULL,                -- environment, PRs and rollback plan: a change makes approvals stale
    revision        BIGINT NOT NULL,                -- bumped when the fingerprint changes
    hold_by         TEXT,                           -- login of who put it on hold
    denied_by       TEXT,
    deny_reason     TEXT,
    gate_open       BIGINT NOT NULL DEFAULT 0,
    state           TEXT   NOT NULL,                -- awaiting-approval | approved | on-hold | denied | closed ...
    facts           TEXT   NOT NULL DEFAULT '{}',   -- the PRs and checks last seen (JSON)
    labels          TEXT   NOT NULL DEFAULT '[]',   -- the state labels the App last set (JSON)
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (installation_id, repository_id, issue)
);

CREATE TABLE approvals (
    seq             BIGSERIAL PRIMARY KEY,
    installation_id BIGINT NOT NULL,
    repository_id   BIGINT NOT NULL,
    issue           BIGINT NOT NULL,
    comment_id      BIGINT NOT NULL,                -- the approving comment (deleting it withdraws)
    user_id         BIGINT NOT NULL,                -- identity; logins can be renamed
    login           TEXT   NOT NULL,
    roles           TEXT   NOT NULL,                -- roles held when given (JSON), for the record
    environment     TEXT   NOT NULL,
    head_shas       TEXT   NOT NULL,                -- the linked PRs' heads it was given for, comma-separated
    revision        BIGINT NOT NULL,
    state           TEXT   NOT NULL CHECK (state IN ('active', 'withdrawn', 'stale')),
    note            TEXT,                           -- why withdrawn or stale
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (installation_id, repository_id, issue, comment_id)
);
CREATE INDEX approvals_request ON approvals (installation_id, repository_id, issue);
