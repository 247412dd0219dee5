-- The read API's lists, for one installation (every API token is one installation's): its
-- deliveries and its incidents in their pages' order. Without them an installation's page read
-- the whole inbox (6.6 s on a year's history, docs/benchmarks.md). The deliveries' index costs
-- the intake one more index entry a delivery, appended at one of a few places (an installation's
-- newest rows).
CREATE INDEX deliveries_installation ON deliveries (installation_id, seq);
CREATE INDEX incidents_installation ON incidents (installation_id, id);
