-- A subject's ready row (its head: open and not blocked), found without reading its waiting
-- rows. The PostgreSQL intake locks a subject's heads after each batch that stored rows behind
-- them (`Queue::ready_headless`); through `deliveries_open_subject` that read every open row of the
-- subject, so one subject's backlog of 43,000 deliveries made each batch 23 ms of PostgreSQL and
-- the intake fell from ~3,600 to ~400 a second (docs/benchmarks.md).
CREATE INDEX deliveries_heads ON deliveries (subject, seq) WHERE state IN ('pending', 'running') AND blocked = 0;
CREATE INDEX outbox_heads ON outbox (subject, seq) WHERE state IN ('pending', 'running') AND blocked = 0;
