-- From this version on, `deliveries.body_sha256` holds a body's key (src/store/deliveries.rs,
-- `body_key`): the latest time written in the body, then its SHA-256, so that new keys land at
-- the end of the unique index. Rows stored before keep the bare SHA-256, which the intake looks up
-- as well. A shipgate from before knows only bare hashes: it would store a replayed body again,
-- since a timed key never equals its bare hash. No table changes here; this migration is a marker,
-- so that an older shipgate refuses this database ("migrated by a newer shipgate") instead of
-- running beside or after this one (a rollback).
SELECT 1;
