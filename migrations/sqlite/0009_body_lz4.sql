-- Delivery bodies stored LZ4-compressed (the intake's writer writes ~4x fewer bytes per delivery;
-- on SQLite the bytes written per batch were what bounded the intake, docs/benchmarks.md).
-- A row has either `body` (text, as older rows and the App's own small deliveries do) or
-- `body_lz4` (the LZ4 block of the body, its length prepended) with `body` empty.
ALTER TABLE deliveries ADD COLUMN body_lz4 BLOB;
