-- Actions the App takes on GitHub (the outbox), what it created there, scheduled jobs, and the
-- redelivery bookkeeping. Times are Unix milliseconds. Same meaning on SQLite and PostgreSQL.

CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY,
    key             TEXT    NOT NULL UNIQUE,        -- idempotency key of the enqueue (delivery id + index)
    installation_id INTEGER  NOT NULL,
    subject         TEXT    NOT NULL,               -- actions of one subject are sent one at a time, in order
    kind            TEXT    NOT NULL,               -- upsert_comment, upsert_check_run, ...
    target          TEXT,                           -- a newer pending action on the same target supersedes this one
    action          TEXT    NOT NULL,               -- the action, JSON
    delivery_id     TEXT,                           -- the delivery that caused it
    created_at      INTEGER  NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'done', 'parked', 'dry_run', 'superseded', 'cancelled')),
    outcome         TEXT,
    attempts        INTEGER  NOT NULL DEFAULT 0,
    next_attempt_at INTEGER  NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    finished_at     INTEGER
);
CREATE INDEX outbox_open ON outbox (seq) WHERE state IN ('pending', 'running');
CREATE INDEX outbox_open_subject ON outbox (subject, seq) WHERE state IN ('pending', 'running');
CREATE INDEX outbox_open_target ON outbox (target, seq) WHERE state IN ('pending', 'running');
CREATE INDEX outbox_state ON outbox (state, seq);

-- Objects the App made on GitHub, by their idempotency key (comment marker, check run
-- external_id, issue marker, deployment key). github_id 0: being created (a crash may have left
-- it created on GitHub but unrecorded, so look for it before creating another).
CREATE TABLE github_objects (
    installation_id INTEGER NOT NULL,
    kind            TEXT   NOT NULL,
    key             TEXT   NOT NULL,
    github_id       INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (installation_id, kind, key)
);

-- Scheduled work runs once across replicas: whoever inserts (name, slot) first runs it.
CREATE TABLE jobs (
    name        TEXT    NOT NULL,
    slot        INTEGER  NOT NULL,
    worker      TEXT    NOT NULL,
    started_at  INTEGER  NOT NULL,
    finished_at INTEGER,
    result      TEXT,
    PRIMARY KEY (name, slot)
);

CREATE TABLE checkpoints (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Deliveries GitHub could not hand over that we asked it to send again.
CREATE TABLE redelivery_requests (
    guid             TEXT PRIMARY KEY,
    hook_delivery_id INTEGER NOT NULL,
    requested_at     INTEGER NOT NULL,
    requests         INTEGER NOT NULL
);
