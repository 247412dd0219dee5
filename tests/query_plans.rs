//! Every statement the App runs on its hot path finds its rows through an index, on both
//! backends (issue 14): a year of a large organisation is millions of deliveries, and one full
//! scan on a webhook's, a claim's or a scrape's path is what makes the App fall over at scale.
//!
//! The statements are not listed by hand: the App's own SQL is captured (sqlx logs each one it
//! runs) while a scenario walks the hot paths — a request from its label to an open gate, a burst
//! of check events and its coalesced evaluation, a CI failure on the default branch, a push, the
//! read API, a metrics scrape, the pruner — and each distinct statement is then explained:
//! `EXPLAIN QUERY PLAN` on SQLite (no `SCAN` of a table or of a whole index), and on PostgreSQL a
//! generic plan with sequential scans and hash and merge joins disabled (no `Seq Scan` left, and
//! no index walked without a condition, which means no index could serve it). A partial index
//! (the open rows) and an index read in order under a LIMIT are bounded reads.

mod common;
mod fake_github;
mod world;

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use common::TestDb;
use serde_json::json;
use shipgate::store::{Backend, Db, api_tokens, deliveries, incidents, rechecks};
use sqlx::Row;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};
use world::*;

/// The statements sqlx reported (its `sqlx::query` events), in full.
fn captured() -> &'static Mutex<BTreeSet<String>> {
    static SEEN: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    SEEN.get_or_init(|| Mutex::new(BTreeSet::new()))
}

struct Capture;

#[derive(Default)]
struct Fields {
    summary: String,
    statement: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_string(),
            "db.statement" => self.statement = value.to_string(),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        // sqlx gives the whole text as `db.statement` when the summary shortened it.
        let sql = if f.statement.trim().is_empty() { f.summary } else { f.statement.trim().to_string() };
        captured().lock().unwrap().insert(sql);
    }
}

fn install_capture() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::filter::Targets::new().with_target("sqlx::query", tracing::Level::TRACE);
        let subscriber = Registry::default().with(Capture.with_filter(filter));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");
    });
}

/// Statements that are not the App's hot path: schema work at start-up, transaction control,
/// and the tests' own bookkeeping (waiting for the queues to drain).
fn off_the_hot_path(sql: &str) -> bool {
    // Migrations start with their comments.
    let code: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    let s = code.trim_start().to_ascii_uppercase();
    let first = s.split_whitespace().next().unwrap_or_default();
    matches!(first, "CREATE" | "ALTER" | "DROP" | "PRAGMA" | "BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "SET" | "COMMENT" | "DO" | "LOCK")
        || s.contains("_SQLX_MIGRATIONS")
        || s.contains("SQLITE_MASTER")
        || s.starts_with("SELECT 1")
        // tests/common::drain and World's settling
        || s == "SELECT COUNT(*) FROM RECHECKS_DUE"
        // A test's own counting.
        || s.starts_with("SELECT COUNT(*) FROM DELIVERIES WHERE STATE = 'DONE'")
        // The audit log's verification (hourly, and by tests/common's TestApp::shutdown) walks
        // every chain and every approval by design; start-up reads each chain's key once.
        || s.starts_with("SELECT INSTALLATION_ID FROM AUDIT_HEADS UNION SELECT INSTALLATION_ID FROM AUDIT_LOG")
        || s.starts_with("SELECT DISTINCT INSTALLATION_ID FROM APPROVALS UNION")
        || s.starts_with("SELECT INSTALLATION_ID, KEY_ID FROM AUDIT_HEADS ORDER BY 1")
}

/// Walks the hot paths of a request, its checks, CI, the API, the scrape and the pruner.
async fn scenario(db: &TestDb) {
    // Review 18: with a public address, so that the relay writes the details links and the
    // details pages are walked too.
    let w = World::with_config(db, POLICY, |c| c.public_url = Some("https://shipgate.example".into())).await;
    w.gh.ci(REPO, SHA, "build", "in_progress", None);
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    for i in 0..5 {
        w.check_completed(SHA, &format!("job-{i}"), "success").await;
    }
    w.check_completed(SHA, "build", "success").await;
    w.settle().await;
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success");
    let _ = w.sticky();
    // A push to the PR, a CI failure on the default branch.
    w.push_to_pr(SHA2).await;
    let mut v = w.base("workflow_run.completed.failure.0");
    v["workflow_run"]["head_sha"] = json!(SHA2);
    assert_eq!(w.app.deliver("workflow_run", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    // The read API and a scrape.
    let (_, token) = api_tokens::create(&w.app.db, INST, Some("plans"), 1).await.expect("token");
    let http = reqwest::Client::new();
    for path in [
        "/api/requests",
        "/api/requests?state=awaiting-approval",
        "/api/requests/acme/app/5",
        "/api/audit",
        "/api/deliveries",
        "/api/incidents",
        "/metrics",
    ] {
        let r = http.get(format!("{}{path}", w.app.url)).bearer_auth(&token).send().await.expect("get");
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    // Review 18: the details pages, as a holder of the links the App wrote opens them, and a
    // well-signed link for a repository no installation event listed (`tenancy::serving`'s
    // fallback: a link `shipgate link` minted, or one for a repository seen only in requests).
    let key = shipgate::domain::links::LinkKey::new(
        shipgate::store::audit::AuditKey::new(shipgate::config::TEST_AUDIT_KEY).derive("details-links"),
    );
    let expires = shipgate::clock::Clock::system().now_ms() / 1000 + 3600;
    let marker = "ci-incident:1:main:1".to_string();
    for page in [
        shipgate::domain::links::Page::Request { issue: 5 },
        shipgate::domain::links::Page::Incident { marker: marker.clone() },
    ] {
        for repository_id in [REPO_ID, 424242] {
            let l = shipgate::domain::links::Link { installation: INST, repository_id, page: page.clone(), expires };
            let r = http.get(format!("{}{}", w.app.url, key.path(&l))).send().await.expect("get");
            let want = if repository_id == REPO_ID && matches!(page, shipgate::domain::links::Page::Request { .. }) {
                200
            } else {
                403
            };
            assert_eq!(r.status().as_u16(), want, "{l:?}");
        }
    }
    // The relay's lookup of an incident issue's page (`write_links`, each time an incident issue
    // is created or updated): by primary key.
    incidents::get(&w.app.db, INST, REPO_ID, &marker).await.expect("incident");
    // `shipgate link`'s lookups of a repository by name (src/cli.rs::link_command).
    for sql in [
        "SELECT id, installation_id FROM repositories WHERE full_name = $1 AND removed_at IS NULL",
        "SELECT DISTINCT repository_id, installation_id FROM requests WHERE repository = $1",
    ] {
        let _: Vec<(i64, i64)> =
            sqlx::query_as(sql).bind(REPO).fetch_all(w.app.db.pool()).await.expect("link's lookup");
    }
    // The periodic jobs.
    let db = &w.app.db;
    deliveries::drop_bodies(db, i64::MAX, 100).await.expect("drop bodies");
    deliveries::prune(db, 0, 100).await.expect("prune");
    incidents::due(db, i64::MAX, 10).await.expect("incidents due");
    rechecks::due(db, i64::MAX, 10).await.expect("rechecks due");
    rechecks::next_due(db).await.expect("next due");
    w.app.shutdown().await;
}

/// The highest `$n` in `sql`.
fn parameters(sql: &str) -> usize {
    let mut max = 0;
    let b = sql.as_bytes();
    for (i, _) in sql.match_indices('$') {
        let digits: String = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).map(|c| *c as char).collect();
        max = max.max(digits.parse().unwrap_or(0));
    }
    max
}

/// What is wrong with `sql`'s plan, if anything (and the plan, for the message).
async fn full_scans(db: &Db, sql: &str) -> Result<(), String> {
    match db.backend() {
        Backend::Sqlite => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(db.pool())
                .await
                .map_err(|e| format!("cannot explain: {e}"))?;
            let plan: Vec<String> = rows.iter().map(|r| r.get::<String, _>(3)).collect();
            // A scan through an index reads all of it too, unless the index is partial (only the
            // open rows, say) or gives the order a LIMIT stops early in.
            let partial: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '%WHERE%'")
                    .fetch_all(db.pool())
                    .await
                    .map_err(|e| e.to_string())?;
            let limited = sql.contains(" LIMIT ")
                && !plan.iter().any(|d| d.contains("TEMP B-TREE FOR ORDER BY"))
                && !one_installations(sql);
            let bad: Vec<&String> = plan
                .iter()
                .filter(|d| d.starts_with("SCAN ") && !d.starts_with("SCAN CONSTANT"))
                .filter(|d| !cte_scan(sql, d))
                .filter(|d| match d.split(" INDEX ").nth(1) {
                    None => true,
                    Some(index) => {
                        let index = index.split_whitespace().next().unwrap_or_default();
                        !(limited || partial.iter().any(|(p,)| p == index))
                    }
                })
                .collect();
            if std::env::var("SHOW_SCANS").is_ok() && plan.iter().any(|d| d.starts_with("SCAN ")) {
                eprintln!("SCANS {}\n    {}", &sql[..sql.len().min(160)], plan.join("\n    "));
            }
            // A LIMIT that a sort has to wait for stops nothing: every row the range search
            // finds is read and sorted first (the retention's body walk read every done
            // delivery below its bound that way, 3.5 s a batch on a year's inbox). A search by
            // equality (a key) finds few rows; a range alone may find all of them.
            let sorted = plan.iter().any(|d| d.contains("TEMP B-TREE FOR ORDER BY"));
            let range_only = plan
                .iter()
                .any(|d| d.starts_with("SEARCH ") && !d.contains("=?") && (d.contains("<?") || d.contains(">?")));
            // Nor does an equality on the state alone: four values, and `done` is nearly every
            // row of a year's inbox (the pruner's two look-ups sorted all 2 million done rows
            // by `finished_at`, 0.5 and 1.2 s, the first inside the write lock).
            let state_only = sql.contains("state = 'done'")
                && plan.iter().any(|d| d.starts_with("SEARCH ") && d.ends_with("(state=?)"));
            let bad_sort = sql.contains(" LIMIT ") && sorted && (range_only || state_only);
            // One installation's rows are found by the installation, not walked past.
            let by_installation = !one_installations(sql) || plan.iter().any(|d| d.contains("installation_id="));
            if bad.is_empty() && by_installation && !bad_sort { Ok(()) } else { Err(plan.join("\n")) }
        }
        Backend::Postgres => {
            let mut conn = db.pool().acquire().await.map_err(|e| e.to_string())?;
            let n = parameters(sql);
            let args = vec!["NULL"; n].join(", ");
            let mut plan = Vec::new();
            // Tables of a few rows would make any plan look cheap: with sequential scans and
            // hash and merge joins off, what is left is what indexes can do; a whole table or a
            // whole index still read means no index serves the statement.
            for s in [
                "SET plan_cache_mode = force_generic_plan",
                "SET enable_seqscan = off",
                "SET enable_hashjoin = off",
                "SET enable_mergejoin = off",
            ] {
                sqlx::query(s).execute(&mut *conn).await.map_err(|e| e.to_string())?;
            }
            // The App's driver sends each parameter's type; PREPARE has to be told the ones the
            // statement alone does not settle (`$1 IS NULL OR x = $1`): each such one is tried as
            // a number, then as text.
            let mut types: Vec<Option<&str>> = vec![None; n];
            let mut tried = 0;
            loop {
                let list = if types.iter().all(Option::is_none) {
                    String::new()
                } else {
                    format!("({})", types.iter().map(|t| t.unwrap_or("unknown")).collect::<Vec<_>>().join(", "))
                };
                let prepare = format!("PREPARE plan_q {list} AS {sql}");
                match sqlx::query(sqlx::AssertSqlSafe(prepare)).execute(&mut *conn).await {
                    Ok(_) => break,
                    Err(e) if tried < 2 * n + 2 => {
                        tried += 1;
                        let msg = e.to_string();
                        let k = msg
                            .split("parameter $")
                            .nth(1)
                            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                            .and_then(|d| d.parse::<usize>().ok());
                        match k {
                            Some(k) if (1..=n).contains(&k) && types[k - 1].is_none() => types[k - 1] = Some("bigint"),
                            Some(k) if (1..=n).contains(&k) => types[k - 1] = Some("text"),
                            // A number where text was meant: the last one guessed is text.
                            _ => match types.iter().rposition(|t| *t == Some("bigint")) {
                                Some(i) => types[i] = Some("text"),
                                None => return Err(format!("cannot explain: {msg}")),
                            },
                        }
                    }
                    Err(e) => return Err(format!("cannot explain: {e}")),
                }
            }
            let explain =
                if n == 0 { "EXPLAIN EXECUTE plan_q".to_string() } else { format!("EXPLAIN EXECUTE plan_q({args})") };
            let rows = sqlx::query(sqlx::AssertSqlSafe(explain)).fetch_all(&mut *conn).await;
            let _ = sqlx::query("DEALLOCATE plan_q").execute(&mut *conn).await;
            let _ = sqlx::query("RESET ALL").execute(&mut *conn).await;
            for r in rows.map_err(|e| format!("cannot explain: {e}"))? {
                plan.push(r.get::<String, _>(0));
            }
            if std::env::var("SHOW_SCANS").is_ok() {
                eprintln!("PLAN {}\n    {}", &sql[..sql.len().min(160)], plan.join("\n    "));
            }
            let partial: Vec<(String,)> =
                sqlx::query_as("SELECT indexname::text FROM pg_indexes WHERE indexdef LIKE '% WHERE %'")
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| e.to_string())?;
            let by_installation = !one_installations(sql)
                || plan.iter().any(|l| l.contains("Index Cond") && l.contains("installation_id ="));
            if plan.iter().any(|l| l.contains("Seq Scan on"))
                || full_index_walk(&plan, sql, &partial)
                || !by_installation
            {
                Err(plan.join("\n"))
            } else {
                Ok(())
            }
        }
    }
}

/// A PostgreSQL index scan with no condition on the index (it walks all of it), on an index that
/// is not partial, in a statement without a LIMIT that stops it early.
fn full_index_walk(plan: &[String], sql: &str, partial: &[(String,)]) -> bool {
    let depth = |l: &str| l.len() - l.trim_start().len();
    for (i, line) in plan.iter().enumerate() {
        let Some(index) = line
            .split(" Scan using ")
            .nth(1)
            .or_else(|| line.split("Bitmap Index Scan on ").nth(1))
            .and_then(|r| r.split_whitespace().next())
        else {
            continue;
        };
        // Its own lines (deeper than the node, up to the next node).
        let d = depth(line);
        let conditioned = plan[i + 1..]
            .iter()
            .take_while(|l| depth(l) > d && !l.trim_start().starts_with("->"))
            .any(|l| l.contains("Index Cond"));
        let bounded = sql.contains(" LIMIT ")
            && plan.iter().any(|l| l.trim_start().starts_with("Limit"))
            && !one_installations(sql);
        if !conditioned && !bounded && !partial.iter().any(|(p,)| p == index) {
            return true;
        }
    }
    false
}

/// A page of one installation's rows (a list with a LIMIT it is given). An ordered walk stopped
/// by the LIMIT is not a bounded read for it: one installation's rows may be few and far between in a table of every
/// installation's (an installation with no delivery had its `/api/deliveries` page read the whole
/// inbox, 6.6 s on a year's history); it must find them by the installation.
fn one_installations(sql: &str) -> bool {
    sql.contains("installation_id = $") && sql.contains(" LIMIT $")
}

/// A scan of a common table expression the statement defines (bounded by its own query).
fn cte_scan(sql: &str, detail: &str) -> bool {
    let name = detail.trim_start_matches("SCAN ").split_whitespace().next().unwrap_or_default();
    let upper = sql.to_ascii_uppercase();
    let n = name.to_ascii_uppercase();
    upper.contains(&format!("WITH RECURSIVE {n} "))
        || upper.contains(&format!(", {n} ("))
        || upper.contains(&format!("WITH {n} "))
}

async fn every_hot_statement_uses_an_index(db: &TestDb) {
    install_capture();
    captured().lock().unwrap().clear();
    scenario(db).await;
    let statements: Vec<String> = captured().lock().unwrap().iter().filter(|s| !off_the_hot_path(s)).cloned().collect();
    assert!(statements.len() > 40, "too few statements captured ({}): is sqlx still logging them?", statements.len());
    let conn = db.connect().await;
    let mut failures = Vec::new();
    for sql in &statements {
        if let Err(plan) = full_scans(&conn, sql).await {
            failures.push(format!("{sql}\n  ->\n{plan}\n"));
        }
    }
    eprintln!("{} hot-path statements explained on {}", statements.len(), conn.backend().name());
    assert!(failures.is_empty(), "{} statements read a whole table:\n\n{}", failures.len(), failures.join("\n"));
}

// One backend after the other: the capture is process-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hot_statement_uses_an_index_on_both_backends() {
    let db = TestDb::sqlite().await;
    every_hot_statement_uses_an_index(&db).await;
    db.cleanup().await;
    match TestDb::postgres("query_plans::postgres").await {
        Some(db) => {
            every_hot_statement_uses_an_index(&db).await;
            db.cleanup().await;
        }
        None => eprintln!("TEST_DATABASE_URL is not set: the PostgreSQL plans were NOT checked"),
    }
}
