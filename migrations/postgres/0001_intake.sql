-- Webhook inbox and the tenancy tables (PostgreSQL). Times are Unix milliseconds.
-- Keep the meaning identical to migrations/sqlite/0001_intake.sql.

CREATE TABLE deliveries (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    event           TEXT    NOT NULL,
    action          TEXT,
    installation_id BIGINT,
    repository      TEXT,
    subject         TEXT    NOT NULL,
    received_at     BIGINT  NOT NULL,
    body            TEXT    NOT NULL,
    body_sha256     TEXT    NOT NULL UNIQUE,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'done', 'parked')),
    outcome         TEXT,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    finished_at     BIGINT
);
-- Bodies are JSON text of a few KB: skip TOAST compression on the ingest path (CPU over disk).
ALTER TABLE deliveries ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE INDEX deliveries_open ON deliveries (seq) WHERE state IN ('pending', 'running');
CREATE INDEX deliveries_open_subject ON deliveries (subject, seq) WHERE state IN ('pending', 'running');
CREATE INDEX deliveries_state ON deliveries (state, seq);
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE state = 'done';

CREATE TABLE delivery_attempts (
    delivery_seq BIGINT NOT NULL REFERENCES deliveries (seq) ON DELETE CASCADE,
    attempt      BIGINT NOT NULL,
    worker       TEXT   NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL,
    outcome      TEXT   NOT NULL,
    error        TEXT,
    PRIMARY KEY (delivery_seq, attempt)
);

CREATE TABLE installations (
    id                   BIGINT PRIMARY KEY,
    account_id           BIGINT NOT NULL,
    account_login        TEXT   NOT NULL,
    account_type         TEXT,
    repository_selection TEXT,
    permissions          TEXT   NOT NULL DEFAULT '{}',
    events               TEXT   NOT NULL DEFAULT '[]',
    suspended_at         BIGINT,
    deleted_at           BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE repositories (
    id              BIGINT PRIMARY KEY,
    installation_id BIGINT NOT NULL REFERENCES installations (id),
    full_name       TEXT   NOT NULL,
    private         BIGINT NOT NULL DEFAULT 0,
    removed_at      BIGINT,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX repositories_installation ON repositories (installation_id);
CREATE INDEX repositories_full_name ON repositories (full_name);
