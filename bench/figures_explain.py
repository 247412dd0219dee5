# The plans of the weekly report's and the /metrics figures' queries (src/store/figures.rs, the
# report's repository lookup, the scheduler and outbox reads of run_due) for one repository of a
# history (bench/history.rs): SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN (ANALYZE, BUFFERS).
#
#   python3 bench/figures_explain.py sqlite /tmp/history.db INSTALLATION REPOSITORY_ID SINCE_MS
#   python3 bench/figures_explain.py pg DATABASE INSTALLATION REPOSITORY_ID SINCE_MS   (127.0.0.1, user postgres)
#
# The statements are copies of the App's with the parameters written in: keep them in step.
import sys, subprocess, sqlite3
kind, target, inst, repo, since = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
Q = {
 "reporting": "SELECT p.installation_id, p.repository_id, r.full_name, p.yaml FROM policies p JOIN repositories r ON r.id = p.repository_id AND r.installation_id = p.installation_id LEFT JOIN installations i ON i.id = p.installation_id WHERE p.yaml IS NOT NULL AND p.yaml LIKE '%report%' AND r.removed_at IS NULL AND i.suspended_at IS NULL AND i.deleted_at IS NULL ORDER BY p.repository_id",
 "active_repositories": "SELECT r.installation_id, r.id, r.full_name FROM repositories r LEFT JOIN installations i ON i.id = r.installation_id WHERE r.removed_at IS NULL AND i.suspended_at IS NULL AND i.deleted_at IS NULL AND (EXISTS (SELECT 1 FROM requests q WHERE q.installation_id = r.installation_id AND q.repository_id = r.id) OR EXISTS (SELECT 1 FROM incidents n WHERE n.repository_id = r.id) OR EXISTS (SELECT 1 FROM deployments d WHERE d.installation_id = r.installation_id AND d.repository_id = r.id)) ORDER BY r.id",
 "facts.deployments": f"SELECT d.environment, d.finished_at, d.state, d.succeeded_at, d.rollback, r.approved_at, r.facts FROM deployments d LEFT JOIN requests r ON r.installation_id = d.installation_id AND r.repository_id = d.repository_id AND r.issue = d.issue WHERE d.installation_id = {inst} AND d.repository_id = {repo} AND d.finished_at >= {since}",
 "facts.runs": f"SELECT run_id, attempt, incident_branch, kind, completed_at FROM ci_runs WHERE installation_id = {inst} AND completed_at >= {since} AND repository_id = {repo}",
 "facts.incidents": f"SELECT kind, title, details, state, opened_at, first_failure_at, recovered_at, deadline, updated_at FROM incidents WHERE repository_id = {repo} AND installation_id = {inst} AND (state = 'open' OR opened_at >= {since} OR recovered_at >= {since} OR first_failure_at >= {since})",
 "facts.requests": f"SELECT issue, updated_at FROM requests WHERE installation_id = {inst} AND repository_id = {repo} AND open = 1 AND labelled = 1",
 "facts.flaky": f"SELECT workflow, job, at FROM ci_flaky WHERE repository_id = {repo} AND installation_id = {inst} AND at >= {since}",
 "previous_report": f"SELECT key, github_id FROM github_objects WHERE installation_id = {inst} AND kind = 'issue' AND key >= 'acme/api:weekly-report:' AND key < 'acme/api:weekly-report:2026-W49' AND github_id > 0",
 "for_repository lookup": "SELECT installation_id, id, full_name FROM repositories WHERE LOWER(full_name) = LOWER('acme/api') AND removed_at IS NULL AND (NULL IS NULL OR installation_id = NULL) ORDER BY updated_at DESC LIMIT 1",
 "outbox.settle (PostgreSQL only)": "SELECT DISTINCT subject FROM outbox WHERE state = 'pending' AND blocked = 1 AND created_at = 1796608907453 LIMIT 256",
 "scheduler.runs": "SELECT slot, worker, result FROM jobs WHERE name = 'weekly-report:1' ORDER BY slot DESC",
}
for name, sql in Q.items():
    print(f"### {name}")
    if kind == "sqlite":
        c = sqlite3.connect(target)
        for row in c.execute("EXPLAIN QUERY PLAN " + sql):
            print("   ", row[3])
    else:
        sql_pg = sql.replace("(NULL IS NULL OR installation_id = NULL)", "(NULL::bigint IS NULL OR installation_id = NULL::bigint)")
        r = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-U", "postgres", "-d", target, "-Atc", "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql_pg], capture_output=True, text=True)
        print("\n".join("    " + l for l in (r.stdout + r.stderr).splitlines()))
