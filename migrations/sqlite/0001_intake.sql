-- Webhook inbox and the tenancy tables (SQLite). Times are Unix milliseconds.
-- Keep the meaning identical to migrations/postgres/0001_intake.sql.

CREATE TABLE deliveries (
    seq             INTEGER PRIMARY KEY,            -- arrival order
    id              TEXT    NOT NULL UNIQUE,        -- X-GitHub-Delivery
    event           TEXT    NOT NULL,               -- X-GitHub-Event
    action          TEXT,
    installation_id INTEGER,
    repository      TEXT,                           -- owner/name
    subject         TEXT    NOT NULL,               -- deliveries of one subject run one at a time, in order
    received_at     INTEGER NOT NULL,
    body            TEXT    NOT NULL,
    body_sha256     TEXT    NOT NULL UNIQUE,        -- a replay under another id is refused
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'done', 'parked')),
    outcome         TEXT,                           -- ok | no_handler | ... once done
    attempts        INTEGER NOT NULL DEFAULT 0,     -- claims so far
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    finished_at     INTEGER
);
CREATE INDEX deliveries_open ON deliveries (seq) WHERE state IN ('pending', 'running');
CREATE INDEX deliveries_open_subject ON deliveries (subject, seq) WHERE state IN ('pending', 'running');
CREATE INDEX deliveries_state ON deliveries (state, seq);
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE state = 'done';

CREATE TABLE delivery_attempts (
    delivery_seq INTEGER NOT NULL REFERENCES deliveries (seq) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    worker       TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,
    outcome      TEXT    NOT NULL,                  -- ok | no_handler | error | ...
    error        TEXT,
    PRIMARY KEY (delivery_seq, attempt)
);

CREATE TABLE installations (
    id                   INTEGER PRIMARY KEY,       -- GitHub installation id
    account_id           INTEGER NOT NULL,
    account_login        TEXT    NOT NULL,
    account_type         TEXT,
    repository_selection TEXT,
    permissions          TEXT    NOT NULL DEFAULT '{}',   -- JSON
    events               TEXT    NOT NULL DEFAULT '[]',   -- JSON
    suspended_at         INTEGER,
    deleted_at           INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

CREATE TABLE repositories (
    id              INTEGER PRIMARY KEY,            -- GitHub repository id
    installation_id INTEGER NOT NULL REFERENCES installations (id),
    full_name       TEXT    NOT NULL,
    private         INTEGER NOT NULL DEFAULT 0,
    removed_at      INTEGER,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX repositories_installation ON repositories (installation_id);
CREATE INDEX repositories_full_name ON repositories (full_name);
