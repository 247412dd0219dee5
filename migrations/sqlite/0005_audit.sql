-- The audit log (SPEC.md §3.6): every state change of a request, one row each, append-only and
-- chained per installation. Same meaning as migrations/postgres/0005_audit.sql.
--
-- Each entry stores prev_hash (the hash of the previous entry of its installation, or 64 zeros)
-- and hash (SHA-256 of its own canonical content, see src/store/audit.rs), so an edited,
-- deleted or reordered row breaks the chain and `shipgate audit verify` names it.

CREATE TABLE audit_log (
    seq             INTEGER PRIMARY KEY,            -- global append order
    installation_id INTEGER NOT NULL,
    position        INTEGER NOT NULL,               -- 1, 2, 3, ... within the installation
    repository_id   INTEGER,
    repository      TEXT,                           -- owner/name at the time
    issue           INTEGER,
    kind            TEXT    NOT NULL,               -- request.parsed, approval.given, ...
    actor_id        INTEGER,
    actor_login     TEXT,
    delivery_id     TEXT,                           -- no foreign key: pruning deliveries keeps the log
    at              INTEGER NOT NULL,               -- Unix ms
    detail          TEXT    NOT NULL,               -- canonical JSON (sorted keys)
    prev_hash       TEXT    NOT NULL,
    hash            TEXT    NOT NULL,
    UNIQUE (installation_id, position)
);
CREATE INDEX audit_log_repository ON audit_log (repository, seq);
CREATE INDEX audit_log_installation_seq ON audit_log (installation_id, seq);

-- The last entry of each installation's chain. The appending transaction updates this row first:
-- its row lock serialises appenders of one installation across replicas, and a deleted tail no
-- longer matches it.
CREATE TABLE audit_heads (
    installation_id INTEGER PRIMARY KEY,
    position        INTEGER NOT NULL,
    hash            TEXT    NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Append-only: the database itself refuses to change or remove an entry.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
BEGIN
    SELECT RAISE(ABORT, 'audit_heads rows are never deleted');
END;
