-- The claim's last safety net asks whether another row of the subject is running under a live
-- lease. Without an index of running rows it read every open row of the subject: O(backlog) per
-- claim, 9 ms for one subject with 21,000 pending deliveries (docs/benchmarks.md). Rows enter
-- this index when claimed and leave when finished; inserts never touch it.
CREATE INDEX deliveries_running ON deliveries (subject) WHERE state = 'running';
CREATE INDEX outbox_running ON outbox (subject) WHERE state = 'running';
