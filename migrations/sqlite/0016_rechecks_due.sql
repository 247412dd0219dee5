-- Event storms (issue 14): the evaluation a request's check events asked for, coalesced. One row
-- per request while events keep coming; the App's timer turns a row into one internal recheck
-- delivery at `due_at` (deleting the row in the same transaction). Times are Unix ms.
CREATE TABLE rechecks_due (
    installation_id BIGINT  NOT NULL,
    repository_id   BIGINT  NOT NULL,
    issue           BIGINT  NOT NULL,
    repository      TEXT    NOT NULL,
    first_at        BIGINT  NOT NULL,   -- the burst's first event
    deadline        BIGINT  NOT NULL,   -- the latest the evaluation may come
    due_at          BIGINT  NOT NULL,   -- when it comes if nothing else arrives
    events          BIGINT  NOT NULL,   -- events folded in
    verdict         BIGINT  NOT NULL DEFAULT 0, -- 1: one of them can change the verdict
    PRIMARY KEY (installation_id, repository_id, issue)
);
CREATE INDEX rechecks_due_at ON rechecks_due (due_at);
