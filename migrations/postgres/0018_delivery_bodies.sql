-- Delivery bodies in a table of their own (issue 14), as on SQLite, where a body dropped in
-- place left its row's page sparse and never reused. One row per delivery while its body is
-- kept: `body` (text, the App's own small deliveries) or `body_lz4` (the LZ4 block of the body,
-- its length prepended) with `body` empty. No row: the body was dropped.
-- Keep the meaning identical to migrations/sqlite/0018_delivery_bodies.sql.
CREATE TABLE delivery_bodies (
    seq      BIGINT PRIMARY KEY REFERENCES deliveries (seq) ON DELETE CASCADE,
    body     TEXT   NOT NULL,
    body_lz4 BYTEA
);
-- Compressed or small JSON: no second compression by TOAST on the intake's path.
ALTER TABLE delivery_bodies ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE delivery_bodies ALTER COLUMN body_lz4 SET STORAGE EXTERNAL;
INSERT INTO delivery_bodies (seq, body, body_lz4)
    SELECT seq, body, body_lz4 FROM deliveries WHERE body <> '' OR body_lz4 IS NOT NULL;
DROP INDEX deliveries_bodies;
-- A dropped column's values stay in the rows that hold them (and their TOAST) until each row is
-- rewritten; emptying them first lets vacuum free that space.
UPDATE deliveries SET body = '', body_lz4 = NULL WHERE body <> '' OR body_lz4 IS NOT NULL;
ALTER TABLE deliveries DROP COLUMN body, DROP COLUMN body_lz4;
-- Bodies come and go in seq order, a day's worth at a time.
ALTER TABLE delivery_bodies SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
