-- The audit log (SPEC.md §3.6): every state change of a request, one row each, append-only and
-- chained per installation. Same meaning as migrations/sqlite/0005_audit.sql.
--
-- Each entry stores prev_hash (the hash of the previous entry of its installation, or 64 zeros)
-- and hash (SHA-256 of its own canonical content, see src/store/audit.rs), so an edited,
-- deleted or reordered row breaks the chain and `shipgate audit verify` names it.

CREATE TABLE audit_log (
    seq             BIGSERIAL PRIMARY KEY,          -- global append order
    installation_id BIGINT  NOT NULL,
    position        BIGINT  NOT NULL,               -- 1, 2, 3, ... within the installation
    repository_id   BIGINT,
    repository      TEXT,                           -- owner/name at the time
    issue           BIGINT,
    kind            TEXT    NOT NULL,               -- request.parsed, approval.given, ...
    actor_id        BIGINT,
    actor_login     TEXT,
    delivery_id     TEXT,                           -- no foreign key: pruning deliveries keeps the log
    at              BIGINT  NOT NULL,               -- Unix ms
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
    installation_id BIGINT PRIMARY KEY,
    position        BIGINT NOT NULL,
    hash            TEXT   NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Append-only: the database itself refuses to change or remove an entry.
CREATE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON audit_heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();
