-- Delivery bodies in a table of their own (issue 14). A body dropped by the retention used to
-- leave its row's page sparse, never reused (rows are appended in seq order), so on SQLite the
-- retention bounded nothing until the rows themselves went. Deleting a row here frees whole
-- pages to the file's free list, for the next bodies. One row per delivery while its body is
-- kept: `body` (text, the App's own small deliveries) or `body_lz4` (the LZ4 block of the body,
-- its length prepended) with `body` empty. No row: the body was dropped.
-- Keep the meaning identical to migrations/postgres/0018_delivery_bodies.sql.
CREATE TABLE delivery_bodies (
    seq      INTEGER PRIMARY KEY REFERENCES deliveries (seq) ON DELETE CASCADE,
    body     TEXT    NOT NULL,
    body_lz4 BLOB
);
INSERT INTO delivery_bodies (seq, body, body_lz4)
    SELECT seq, body, body_lz4 FROM deliveries WHERE body <> '' OR body_lz4 IS NOT NULL;
DROP INDEX deliveries_bodies;
ALTER TABLE deliveries DROP COLUMN body;
ALTER TABLE deliveries DROP COLUMN body_lz4;
