-- Tokens of the read-only JSON API (/api/...), one installation each. Only the SHA-256 of a
-- token is stored; the token itself is printed once by `shipgate api-token create`.
-- Same meaning as migrations/sqlite/0008_api_tokens.sql.

CREATE TABLE api_tokens (
    seq             BIGSERIAL PRIMARY KEY,
    installation_id BIGINT NOT NULL,
    token_sha256    TEXT   NOT NULL UNIQUE,         -- hex
    name            TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX api_tokens_installation ON api_tokens (installation_id);
