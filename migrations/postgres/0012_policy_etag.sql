-- The policy file's entity tag (issue 12): a push re-reads `.github/shipgate.yml` with
-- If-None-Match, which GitHub answers 304 (no rate limit spent) when nothing changed.
ALTER TABLE policies ADD COLUMN etag TEXT;
