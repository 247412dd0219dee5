-- A repository's incidents, for the team's figures (issue 17): `store::figures::facts` reads them
-- for every repository with activity every minute (the /metrics figures, `refresh_gauges`) and for
-- each weekly report. Without it SQLite, which keeps no statistics, read them through
-- `incidents_installation`: every incident of the repository's installation, once per repository,
-- so a pass grew with repositories × incidents of each installation (2.1 million rows and 5–7 s a
-- pass on a year's history of 1,000 repositories, docs/benchmarks.md "Reports and figures at
-- scale"). With it a pass reads each repository's own incidents once.
CREATE INDEX incidents_repository ON incidents (repository_id, installation_id);
