-- Change control by time (issue 19): the next instant a request's verdict changes with no event
-- at all (an approval expiring, a freeze window starting or ending, a break-glass lapsing). One
-- row per request; the App's timer turns a due row into one internal recheck delivery, deleting
-- the row in the same transaction, so across replicas it fires once. Times are Unix ms.
CREATE TABLE request_timers (
    installation_id BIGINT NOT NULL,
    repository_id   BIGINT NOT NULL,
    issue           BIGINT NOT NULL,
    repository      TEXT   NOT NULL,
    due_at          BIGINT NOT NULL,
    PRIMARY KEY (installation_id, repository_id, issue)
);
CREATE INDEX request_timers_due_at ON request_timers (due_at);
