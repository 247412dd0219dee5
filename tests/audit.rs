//! The audit log (SPEC.md §3.6): chained per installation, append-only in the database, and
//! `shipgate audit verify` names the first broken link after a row is edited, deleted or
//! reordered behind the App's back (triggers dropped first, as an attacker with database access
//! would). Both backends.

mod common;
mod fake_github;
mod world;

use common::{TestApp, TestDb};
use fake_github::FakeGitHub;
use serde_json::{Value, json};
use shipgate::server::Options;
use shipgate::store::audit::{self, AuditEntry, AuditKey, AuditKeys, AuditRow, Broken, GENESIS};
use shipgate::store::{Backend, Db, deliveries};

fn entry(installation: i64, repo: &str, issue: i64, kind: &str, actor: (i64, &str), detail: Value) -> AuditEntry {
    AuditEntry {
        installation_id: installation,
        repository_id: Some(if repo == "acme/app" { 10 } else { 20 }),
        repository: Some(repo.into()),
        issue: Some(issue),
        kind: kind.into(),
        actor_id: Some(actor.0),
        actor_login: Some(actor.1.into()),
        detail,
    }
}

/// The key the tests' App seals with.
fn key() -> AuditKey {
    AuditKey::new(shipgate::config::TEST_AUDIT_KEY)
}

fn keys() -> AuditKeys {
    AuditKeys { current: Some(key()), retired: vec![] }
}

async fn append(db: &Db, e: &AuditEntry, delivery: &str, now: i64) {
    append_with(db, Some(&key()), e, delivery, now).await
}

async fn append_with(db: &Db, key: Option<&AuditKey>, e: &AuditEntry, delivery: &str, now: i64) {
    let mut tx = db.begin_write().await.expect("begin");
    audit::append(&mut tx, key, e, Some(delivery), now).await.expect("append");
    tx.commit().await.expect("commit");
}

async fn verify(db: &Db) -> audit::VerifyReport {
    audit::verify(db, &keys()).await.expect("verify")
}

async fn chain(db: &Db, installation: i64) -> Vec<AuditRow> {
    let f = audit::Filter { installation: Some(installation), limit: 10_000, ..Default::default() };
    audit::list(db, &f).await.expect("list")
}

fn assert_chained(rows: &[AuditRow]) {
    let mut prev = GENESIS.to_string();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.position, i as i64 + 1, "{r:?}");
        assert_eq!(r.prev_hash, prev, "{r:?}");
        assert_eq!(Some(r.hash.clone()), audit::expected_hash(r, &keys()), "{r:?}");
        assert_eq!(r.key_id.as_deref(), Some(key().id()), "{r:?}");
        prev = r.hash.clone();
    }
}

const T0: i64 = 1_795_942_800_000; // 2026-11-29T09:00:00Z

async fn chains_across_installations(tdb: &TestDb) {
    let db = tdb.connect().await;
    let alice = (101, "alice");
    append(&db, &entry(1, "acme/app", 5, "request.parsed", alice, json!({"z": 1, "a": {"y": 2, "b": 3}})), "d1", T0)
        .await;
    append(&db, &entry(2, "beta/site", 9, "request.parsed", alice, json!({})), "d2", T0 + 1).await;
    append(&db, &entry(1, "acme/app", 5, "approval.given", (201, "bob"), json!({"role": "pm"})), "d3", T0 + 2).await;
    append(&db, &entry(1, "acme/app", 5, "gate.opened", (201, "bob"), json!({"sha": "abc"})), "d3", T0 + 2).await;
    append(&db, &entry(2, "beta/site", 9, "request.closed", alice, json!({})), "d4", T0 + 3).await;

    let one = chain(&db, 1).await;
    let two = chain(&db, 2).await;
    assert_eq!(
        one.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
        ["request.parsed", "approval.given", "gate.opened"]
    );
    assert_eq!(two.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(), ["request.parsed", "request.closed"]);
    assert_chained(&one);
    assert_chained(&two);
    assert_eq!(one[0].detail, r#"{"a":{"b":3,"y":2},"z":1}"#, "detail stored canonically");
    assert_eq!(one[1].delivery_id.as_deref(), Some("d3"));
    assert_eq!((one[1].actor_id, one[1].actor_login.as_deref()), (Some(201), Some("bob")));
    assert_eq!(one[1].at, T0 + 2);
    assert!(one[0].seq < two[0].seq && two[0].seq < one[1].seq, "seq is the global order");

    let report = verify(&db).await;
    assert!(report.ok(), "{report:?}");
    let summary: Vec<_> = report.chains.iter().map(|c| (c.installation_id, c.entries, c.last_hash.clone())).collect();
    assert_eq!(summary, vec![(1, 3, one[2].hash.clone()), (2, 2, two[1].hash.clone())]);

    // An entry without a kind is refused and nothing is written (not even the head).
    let mut tx = db.begin_write().await.expect("begin");
    let bad = entry(3, "acme/app", 1, " ", alice, json!({}));
    assert!(audit::append(&mut tx, Some(&key()), &bad, None, T0).await.is_err());
    drop(tx);
    assert_eq!(common::count(&db, "SELECT COUNT(*) FROM audit_heads").await, 2);
    assert_eq!(common::count(&db, "SELECT COUNT(*) FROM audit_log").await, 5);
    db.close().await;
}
both_backends!(chains_across_installations);

/// Two "replicas" (two pools) appending to one installation at once: every entry gets its own
/// position and the chain stays intact.
async fn concurrent_appenders_keep_one_chain(tdb: &TestDb) {
    let a = tdb.connect().await;
    let b = Db::connect(&tdb.url).await.expect("second replica");
    let mut tasks = Vec::new();
    for (i, db) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for n in 0..15 {
                let e = entry(7, "acme/app", 1, "approval.given", (i as i64, "w"), json!({"task": i, "n": n}));
                append(&db, &e, &format!("t{i}-{n}"), T0 + n).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let rows = chain(&a, 7).await;
    assert_eq!(rows.len(), 60);
    assert_chained(&rows);
    assert!(verify(&a).await.ok());
    b.close().await;
    a.close().await;
}
both_backends!(concurrent_appenders_keep_one_chain);

async fn the_database_refuses_to_change_the_log(tdb: &TestDb) {
    let db = tdb.connect().await;
    append(&db, &entry(1, "acme/app", 5, "request.parsed", (1, "a"), json!({})), "d1", T0).await;
    let refused = [
        "UPDATE audit_log SET detail = '{\"x\":1}'",
        "UPDATE audit_log SET position = position",
        "DELETE FROM audit_log",
        "DELETE FROM audit_heads",
    ];
    for sql in refused {
        let e = sqlx::query(sql).execute(db.writer()).await.expect_err(sql);
        assert!(e.to_string().contains("append-only") || e.to_string().contains("never deleted"), "{sql}: {e}");
    }
    if db.backend() == Backend::Postgres {
        for sql in ["TRUNCATE audit_log", "TRUNCATE audit_heads"] {
            let e = sqlx::query(sql).execute(db.writer()).await.expect_err(sql);
            assert!(e.to_string().contains("append-only"), "{sql}: {e}");
        }
    }
    // A replacing insert deletes the old row without firing a DELETE trigger on SQLite; on
    // PostgreSQL an upsert is an UPDATE.
    let replace = match db.backend() {
        Backend::Sqlite => {
            "INSERT OR REPLACE INTO audit_log (seq, installation_id, position, repository_id, repository, issue, kind, \
             actor_id, actor_login, delivery_id, at, detail, prev_hash, hash, key_id) SELECT seq, installation_id, \
             position, repository_id, repository, issue, kind, actor_id, 'mallory', delivery_id, at, detail, prev_hash, \
             hash, key_id FROM audit_log"
        }
        Backend::Postgres => {
            "INSERT INTO audit_log (seq, installation_id, position, repository_id, repository, issue, kind, actor_id, \
             actor_login, delivery_id, at, detail, prev_hash, hash, key_id) SELECT seq, installation_id, position, \
             repository_id, repository, issue, kind, actor_id, 'mallory', delivery_id, at, detail, prev_hash, hash, \
             key_id FROM audit_log ON CONFLICT (seq) DO UPDATE SET actor_login = excluded.actor_login"
        }
    };
    let e = sqlx::query(replace).execute(db.writer()).await.expect_err("a replacing insert");
    assert!(e.to_string().contains("append-only"), "{e}");
    assert_eq!(common::count(&db, "SELECT COUNT(*) FROM audit_log").await, 1);
    assert_eq!(chain(&db, 1).await[0].detail, "{}");
    assert_eq!(chain(&db, 1).await[0].actor_login.as_deref(), Some("a"));
    assert!(verify(&db).await.ok());
    db.close().await;
}
both_backends!(the_database_refuses_to_change_the_log);

/// What an attacker with database access does first.
async fn drop_guards(db: &Db) {
    let stmts: &[&'static str] = match db.backend() {
        Backend::Sqlite => &["DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete"],
        Backend::Postgres => &["ALTER TABLE audit_log DISABLE TRIGGER USER"],
    };
    for sql in stmts {
        sqlx::query(*sql).execute(db.writer()).await.expect(sql);
    }
}

/// Installation 1: five entries; installation 2: three, interleaved. Returns installation 1's rows.
async fn history(db: &Db) -> Vec<AuditRow> {
    let kinds = ["request.parsed", "approval.given", "approval.given", "gate.opened", "deployment.created"];
    for (i, kind) in kinds.iter().enumerate() {
        let i = i as i64;
        append(db, &entry(1, "acme/app", 5, kind, (100 + i, "someone"), json!({"n": i})), &format!("a{i}"), T0 + i)
            .await;
        if i < 3 {
            append(db, &entry(2, "beta/site", 9, kind, (200 + i, "other"), json!({"n": i})), &format!("b{i}"), T0 + i)
                .await;
        }
    }
    let rows = chain(db, 1).await;
    assert_eq!(rows.len(), 5);
    assert!(verify(db).await.ok());
    rows
}

/// Verify fails, names this link of installation 1, and finds installation 2 intact.
async fn broken_at(db: &Db) -> Broken {
    let report = verify(db).await;
    assert!(!report.ok());
    assert_eq!(report.chains.len(), 2);
    assert_eq!(report.chains[1].broken, None, "installation 2 is untouched: {report:?}");
    let b = report.first_broken().expect("a broken link").clone();
    assert_eq!(b.installation_id, 1);
    b
}

/// `shipgate audit verify` on this database: (exit code, stdout).
/// `shipgate audit export --repo acme/app`, with the tests' audit key or without one: its exit
/// code, standard output and standard error.
async fn export(db_url: &str, with_key: bool) -> (Option<i32>, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"));
    cmd.args(["audit", "export", "--repo", "acme/app"]).env("DATABASE_URL", db_url).env("RUST_LOG", "error");
    if with_key {
        cmd.env("SHIPGATE_AUDIT_KEY", shipgate::config::TEST_AUDIT_KEY);
    } else {
        cmd.env_remove("SHIPGATE_AUDIT_KEY");
    }
    let o = cmd.output().await.expect("run shipgate");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

async fn cli(db_url: &str, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "error")
        .env("SHIPGATE_AUDIT_KEY", shipgate::config::TEST_AUDIT_KEY)
        .env_remove("SHIPGATE_AUDIT_KEY_RETIRED")
        .env_remove("SHIPGATE_AUDIT_NEW_KEY")
        .env_remove("GITHUB_APP_ID")
        .env_remove("GITHUB_PRIVATE_KEY")
        .env_remove("GITHUB_PRIVATE_KEY_PATH")
        .env_remove("SHIPGATE_ADMIN_TOKEN")
        .output()
        .await
        .expect("run shipgate");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn an_edited_entry_is_named(tdb: &TestDb) {
    let db = tdb.connect().await;
    let rows = history(&db).await;
    drop_guards(&db).await;
    sqlx::query("UPDATE audit_log SET detail = '{\"n\":99}' WHERE seq = $1")
        .bind(rows[2].seq)
        .execute(db.writer())
        .await
        .expect("tamper");
    let b = broken_at(&db).await;
    assert_eq!((b.position, b.seq), (3, Some(rows[2].seq)), "{b}");
    assert!(b.reason.contains("edited"), "{b}");
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("first broken link at installation 1 position 3 (seq {})", rows[2].seq)), "{out}");
    assert!(out.contains("installation 2: 3 entries, chain intact"), "{out}");

    // Sealing it again without the key does not help: neither a plain SHA-256 nor a guessed key.
    let mut forged = rows[2].clone();
    forged.detail = "{\"n\":99}".into();
    let guessed = AuditKeys { current: Some(AuditKey::new("a guess, not the key: 0123456789abcdef")), retired: vec![] };
    let wrong_key = audit::expected_hash(
        &AuditRow { key_id: guessed.current.as_ref().map(|k| k.id().to_string()), ..forged.clone() },
        &guessed,
    )
    .unwrap();
    for hash in [audit::entry_hash(&AuditRow { key_id: None, ..forged.clone() }), wrong_key] {
        sqlx::query("UPDATE audit_log SET hash = $1 WHERE seq = $2")
            .bind(&hash)
            .bind(rows[2].seq)
            .execute(db.writer())
            .await
            .expect("tamper");
        let b = broken_at(&db).await;
        assert_eq!((b.position, b.seq), (3, Some(rows[2].seq)), "{b}");
        assert!(b.reason.contains("does not match its seal"), "{b}");
    }
    // With the key (which the database does not hold), the next entry's prev_hash no longer matches.
    sqlx::query("UPDATE audit_log SET hash = $1 WHERE seq = $2")
        .bind(audit::expected_hash(&forged, &keys()).unwrap())
        .bind(rows[2].seq)
        .execute(db.writer())
        .await
        .expect("tamper");
    let b = broken_at(&db).await;
    assert_eq!((b.position, b.seq), (4, Some(rows[3].seq)), "{b}");
    assert!(b.reason.contains("prev_hash"), "{b}");
    db.close().await;
}
both_backends!(an_edited_entry_is_named);

async fn a_deleted_middle_entry_is_named(tdb: &TestDb) {
    let db = tdb.connect().await;
    let rows = history(&db).await;
    drop_guards(&db).await;
    sqlx::query("DELETE FROM audit_log WHERE seq = $1").bind(rows[2].seq).execute(db.writer()).await.expect("tamper");
    let b = broken_at(&db).await;
    assert_eq!((b.position, b.seq), (3, Some(rows[3].seq)), "{b}");
    assert!(b.reason.contains("missing"), "{b}");
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("installation 1 position 3 (seq {})", rows[3].seq)), "{out}");
    db.close().await;
}
both_backends!(a_deleted_middle_entry_is_named);

async fn a_deleted_tail_is_caught_by_the_head(tdb: &TestDb) {
    let db = tdb.connect().await;
    let rows = history(&db).await;
    drop_guards(&db).await;
    sqlx::query("DELETE FROM audit_log WHERE seq = $1").bind(rows[4].seq).execute(db.writer()).await.expect("tamper");
    let b = broken_at(&db).await;
    assert_eq!((b.position, b.seq), (5, None), "{b}");
    assert!(b.reason.contains("deleted at the end"), "{b}");
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("first broken link at installation 1 position 5: the head says"), "{out}");
    db.close().await;
}
both_backends!(a_deleted_tail_is_caught_by_the_head);

async fn swapped_entries_are_named(tdb: &TestDb) {
    let db = tdb.connect().await;
    let rows = history(&db).await;
    drop_guards(&db).await;
    // Positions 2 and 3 trade places (through a free value: (installation, position) is unique).
    for (seq, pos) in [(rows[1].seq, 1000), (rows[2].seq, 2), (rows[1].seq, 3)] {
        sqlx::query("UPDATE audit_log SET position = $1 WHERE seq = $2")
            .bind(pos)
            .bind(seq)
            .execute(db.writer())
            .await
            .expect("tamper");
    }
    let b = broken_at(&db).await;
    assert_eq!((b.position, b.seq), (2, Some(rows[2].seq)), "{b}");
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("installation 1 position 2 (seq {})", rows[2].seq)), "{out}");
    db.close().await;
}
both_backends!(swapped_entries_are_named);

async fn export_writes_one_repository_in_order(tdb: &TestDb) {
    let db = tdb.connect().await;
    let now = shipgate::clock::Clock::system().now_ms();
    let old = now - 3 * 86_400_000;
    append(&db, &entry(1, "acme/app", 5, "request.parsed", (1, "carol"), json!({"env": "prod"})), "d1", old).await;
    append(&db, &entry(1, "acme/other", 2, "request.parsed", (1, "carol"), json!({})), "d2", old).await;
    let tricky = json!({"note": "a, \"quoted\"\nline"});
    append(&db, &entry(1, "acme/app", 5, "approval.given", (2, "bob"), tricky.clone()), "d3", now).await;
    append(&db, &entry(1, "acme/app", 5, "gate.opened", (2, "bob"), json!({})), "d3", now).await;

    let (code, out) = cli(&tdb.url, &["audit", "export", "--repo", "acme/app", "--format", "jsonl"]).await;
    assert_eq!(code, 0, "{out}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let kinds: Vec<_> = lines.iter().map(|l| l["kind"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(kinds, ["request.parsed", "approval.given", "gate.opened"]);
    assert_eq!(lines[1]["detail"], tricky);
    assert_eq!(lines[1]["actor_login"], "bob");
    assert_eq!(lines[1]["delivery_id"], "d3");
    assert_eq!(lines[1]["position"], 3);
    assert_eq!(lines[0]["time"], audit::rfc3339(old));

    let (code, out) =
        cli(&tdb.url, &["audit", "export", "--repo", "acme/app", "--since", "1d", "--format", "csv"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().next(), Some(audit::CSV_HEADER));
    assert!(out.contains(r#",approval.given,2,bob,d3,"{""note"":""a, \""quoted\""\nline""}","#), "{out}");
    assert!(!out.contains("request.parsed"), "--since 1d leaves the old entry out:\n{out}");
    assert!(out.contains("gate.opened"), "{out}");

    let since = audit::rfc3339(now - 1000);
    let (code, out) = cli(&tdb.url, &["audit", "export", "--repo", "acme/app", "--since", &since]).await;
    assert_eq!((code, out.lines().count()), (0, 2), "{out}");

    let (code, out) = cli(&tdb.url, &["audit", "export", "--repo", "acme"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("OWNER/NAME"), "{out}");

    // An entry rewritten behind the App's back: the export verifies the chain under
    // SHIPGATE_AUDIT_KEY (read from the environment) first, and writes nothing of it, exit 1.
    let rows = chain(&db, 1).await;
    drop_guards(&db).await;
    sqlx::query("UPDATE audit_log SET actor_login = 'mallory' WHERE seq = $1")
        .bind(rows[2].seq)
        .execute(db.writer())
        .await
        .expect("tamper");
    let (code, stdout, stderr) = export(&tdb.url, true).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert_eq!(stdout, "", "nothing of a broken chain is exported");
    assert!(
        stderr.contains(&format!("the audit log is broken at installation 1 position 3 (seq {})", rows[2].seq)),
        "{stderr}"
    );
    // Without the key it cannot tell, and says so.
    let (code, _, stderr) = export(&tdb.url, false).await;
    assert_eq!(code, Some(0));
    assert!(stderr.contains("not checked against their seals"), "{stderr}");
    let (code, out) = cli(&tdb.url, &["audit", "export", "--repo", "acme/app", "--since", "last week"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("RFC 3339"), "{out}");
    db.close().await;
}
both_backends!(export_writes_one_repository_in_order);

// ---- A real history: deliveries through the router, processed by the worker. ----

use world::{ALICE, BOB, CAROL, DAVE, INST, REPO, SHA, payload, settle};

const POLICY: &str = r#"
label: DEPLOYMENT_REQUEST
roles:
  pm:            { users: [alice] }
  backend-lead:  { teams: [acme/backend-leads] }
environments:
  production:
    approvals:
      - role: pm
      - role: backend-lead
        when_paths: ["apps/backend/**"]
    require_checks: all
"#;

async fn a_real_history_verifies_and_survives_pruning(tdb: &TestDb) {
    let gh = FakeGitHub::start().await;
    gh.install(INST, &[REPO]);
    gh.team("acme", "backend-leads", &[BOB]);
    gh.file(REPO, ".github/shipgate.yml", POLICY);
    for (id, login) in [ALICE, BOB, CAROL, DAVE] {
        gh.permission(REPO, login, "write");
        gh.user(login, id);
    }
    gh.pull(REPO, 12, DAVE, SHA, &["apps/backend/api.rs"]);
    gh.ci(REPO, SHA, "build", "in_progress", None);
    let opts = Options { github: Some(world::fast_github(&gh.url)), ..Options::default() };
    let app = TestApp::start_with(world::app_config(tdb, &gh), opts).await;

    // The request is opened and labelled.
    {
        let mut m = gh.model();
        let i = m.issues.entry((REPO.to_string(), 5)).or_default();
        i.number = 5;
        i.title = "Deploy api".into();
        i.body = world::body("production", "#12");
        i.state = "open".into();
        i.author_id = CAROL.0;
        i.author = CAROL.1.into();
        i.labels.push("DEPLOYMENT_REQUEST".into());
    }
    let mut v = payload("issues.labeled.0");
    v["issue"] = fake_github::issue_json(&gh.model().issues[&(REPO.to_string(), 5)]);
    v["label"] = json!({ "name": "DEPLOYMENT_REQUEST" });
    v["sender"] = json!({ "id": CAROL.0, "login": CAROL.1, "type": "User" });
    assert_eq!(app.deliver("issues", "r-1", &v.to_string()).await, 202);
    settle(&app.db).await;

    // CI passes, then the backend lead and the PM approve.
    gh.ci(REPO, SHA, "build", "completed", Some("success"));
    let mut v = payload("check_run.completed.0");
    v["check_run"]["head_sha"] = json!(SHA);
    v["check_run"]["name"] = json!("build");
    v["check_run"]["conclusion"] = json!("success");
    assert_eq!(app.deliver("check_run", "r-2", &v.to_string()).await, 202);
    settle(&app.db).await;
    for (n, who) in [(3, BOB), (4, ALICE)] {
        let id = gh.human_comment_by(REPO, 5, who, "/approve");
        let mut v = payload("issue_comment.created.0");
        v["issue"] = fake_github::issue_json(&gh.model().issues[&(REPO.to_string(), 5)]);
        v["comment"]["id"] = json!(id);
        v["comment"]["body"] = json!("/approve");
        v["comment"]["user"] = json!({ "id": who.0, "login": who.1, "type": "User" });
        v["sender"] = json!({ "id": who.0, "login": who.1, "type": "User" });
        assert_eq!(app.deliver("issue_comment", &format!("r-{n}"), &v.to_string()).await, 202);
        settle(&app.db).await;
    }
    let gate = gh.gate_checks(REPO, SHA);
    assert_eq!(gate.len(), 1);
    assert_eq!(gate[0].1, "success", "the request went through for real: {gate:?}");
    let _ = gh.app_comments(REPO, 5); // read

    // The history the handlers wrote: one chain, each entry with its delivery and actor.
    let rows = chain(&app.db, INST).await;
    assert_chained(&rows);
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.delivery_id.clone().unwrap_or_default(), r.kind.clone(), r.actor_login.clone().unwrap_or_default()))
        .collect();
    let expect = |d: &str, k: &str, a: &str| (d.to_string(), k.to_string(), a.to_string());
    assert_eq!(
        got,
        vec![
            expect("r-1", "policy.changed", ""),
            expect("r-1", "login.pinned", ""),
            expect("r-1", "request.parsed", "carol"),
            expect("r-3", "approval.given", "bob"),
            expect("r-4", "gate.opened", ""),
            expect("r-4", "approval.given", "alice"),
        ]
    );
    assert!(rows[1..].iter().all(|r| r.issue == Some(5) && r.repository.as_deref() == Some(REPO)));
    // The policy took effect when the request first needed it: audited, with what it holds.
    let policy: Value = serde_json::from_str(&rows[0].detail).unwrap();
    assert_eq!((rows[0].issue, rows[0].repository.as_deref()), (None, Some(REPO)));
    assert_eq!(policy["first_read"], true, "{policy}");
    assert_eq!(policy["valid_after"], true, "{policy}");
    assert_eq!(policy["roles"]["added"], json!(["backend-lead", "pm"]), "{policy}");
    assert_eq!(policy["environments"]["added"], json!(["production"]), "{policy}");
    app.shutdown().await;
    gh.finish();

    let db = tdb.connect().await;
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("installation 1: {} entries, chain intact", rows.len())), "{out}");

    // Pruning processed deliveries leaves the log alone.
    let pruned = deliveries::prune(&db, i64::MAX, 1000).await.expect("prune");
    assert!(pruned >= 4, "{pruned}");
    assert_eq!(chain(&db, INST).await, rows);
    assert!(verify(&db).await.ok());

    // The tables agree with the log. An approval inserted by hand (it would open the gate at the
    // next event), or one whose state is changed, is named; so is a gate flipped in the table.
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert!(out.contains("every approval and gate in the tables is recorded"), "{out}");
    assert_eq!(code, 0, "{out}");
    sqlx::query(
        "INSERT INTO approvals (installation_id, repository_id, issue, comment_id, user_id, login, roles, environment, \
         head_shas, revision, state, created_at, updated_at) \
         SELECT installation_id, repository_id, issue, 999, $1, $2, roles, environment, head_shas, revision, 'active', \
         created_at, updated_at FROM approvals LIMIT 1",
    )
    .bind(DAVE.0)
    .bind(DAVE.1)
    .execute(db.writer())
    .await
    .expect("hand-inserted approval");
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED: approval") && out.contains("comment 999, dave) has no audit entry"), "{out}");
    sqlx::query("DELETE FROM approvals WHERE comment_id = 999").execute(db.writer()).await.unwrap();
    sqlx::query("UPDATE approvals SET state = 'stale' WHERE login = 'alice'").execute(db.writer()).await.unwrap();
    let report = verify(&db).await;
    let what = report.unrecorded.clone().expect("a changed approval");
    assert!(what.contains("is stale in the table, but its last audit entry is approval.given"), "{what}");
    sqlx::query("UPDATE approvals SET state = 'active' WHERE login = 'alice'").execute(db.writer()).await.unwrap();
    sqlx::query("UPDATE approvals SET user_id = $1 WHERE login = 'alice'")
        .bind(DAVE.0)
        .execute(db.writer())
        .await
        .unwrap();
    let what = verify(&db).await.unrecorded.expect("another approver");
    assert!(what.contains(&format!("names user {}", DAVE.0)), "{what}");
    sqlx::query("UPDATE approvals SET user_id = $1 WHERE login = 'alice'")
        .bind(ALICE.0)
        .execute(db.writer())
        .await
        .unwrap();
    assert!(verify(&db).await.ok());
    sqlx::query("UPDATE requests SET gate_open = 0").execute(db.writer()).await.unwrap();
    let what = verify(&db).await.unrecorded.expect("a flipped gate");
    assert!(what.contains(&format!("the gate of {REPO}#5 (installation {INST}) is closed in the table")), "{what}");
    sqlx::query("UPDATE requests SET gate_open = 1").execute(db.writer()).await.unwrap();
    assert!(verify(&db).await.ok());
    // What decides whether an approval still counts (its heads), and its roles and login.
    for (column, value) in [("head_shas", "'evil0000'"), ("roles", "'[\"admin\"]'"), ("login", "'mallory'")] {
        let before: (String,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {column} FROM approvals WHERE user_id = {}", ALICE.0)))
                .fetch_one(db.pool())
                .await
                .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE approvals SET {column} = {value} WHERE user_id = {}",
            ALICE.0
        )))
        .execute(db.writer())
        .await
        .unwrap();
        let what = verify(&db).await.unrecorded.unwrap_or_else(|| panic!("{column} changed, not named"));
        assert!(what.contains("its audit entry says"), "{what}");
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE approvals SET {column} = $1 WHERE user_id = {}", ALICE.0)))
            .bind(&before.0)
            .execute(db.writer())
            .await
            .unwrap();
    }
    // A hold placed or lifted behind the App's back, and the cached policy edited.
    sqlx::query("UPDATE requests SET hold_by = 'mallory'").execute(db.writer()).await.unwrap();
    let what = verify(&db).await.unrecorded.expect("a hold");
    assert!(what.contains("is held in the table, but its last hold entry says not held"), "{what}");
    sqlx::query("UPDATE requests SET hold_by = NULL").execute(db.writer()).await.unwrap();
    sqlx::query("UPDATE policies SET yaml = yaml || '\n# nobody: here'").execute(db.writer()).await.unwrap();
    let what = verify(&db).await.unrecorded.expect("an edited policy");
    assert!(what.contains("is not the one its last policy.changed entry recorded"), "{what}");
    sqlx::query("UPDATE policies SET yaml = $1").bind(POLICY).execute(db.writer()).await.unwrap();
    assert!(verify(&db).await.ok(), "{:?}", verify(&db).await);
    // A deny placed behind the App's back.
    sqlx::query("UPDATE requests SET denied_by = 'mallory'").execute(db.writer()).await.unwrap();
    let what = verify(&db).await.unrecorded.expect("a deny");
    assert!(what.contains("is denied in the table, but its last deny entry says not denied"), "{what}");
    sqlx::query("UPDATE requests SET denied_by = NULL").execute(db.writer()).await.unwrap();
    // A deployment let through by hand: a protection rule, or a job at /gate/wait, approved.
    let repo_id = rows[0].repository_id.expect("a repository id");
    for (table, sql) in [
        (
            "protection_rule",
            "INSERT INTO protection_rules (installation_id, repository_id, repository, run_id, environment, sha, state, \
             received_at) VALUES ($1, $2, $3, 777, 'production', $4, 'approved', 1)",
        ),
        (
            "gate_wait",
            "INSERT INTO gate_waits (installation_id, repository_id, repository, run_id, run_attempt, environment, sha, \
             git_ref, state, received_at) VALUES ($1, $2, $3, 777, 1, 'production', $4, 'refs/heads/main', 'approved', 1)",
        ),
    ] {
        sqlx::query(sql).bind(INST).bind(repo_id).bind(REPO).bind(SHA).execute(db.writer()).await.unwrap();
        let what = verify(&db).await.unrecorded.unwrap_or_else(|| panic!("a hand-approved {table}"));
        let want = format!("run 777 of {REPO} (installation {INST}) is approved for production in the {table} table");
        assert!(what.contains(&want), "{what}");
        let table = if table == "gate_wait" { "gate_waits" } else { "protection_rules" };
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE run_id = 777")))
            .execute(db.writer())
            .await
            .unwrap();
    }
    assert!(verify(&db).await.ok(), "{:?}", verify(&db).await);
    // A job's answer is for one attempt: attempt 1 of run 778 approved and recorded, then a
    // later attempt approved by hand.
    let mut tx = db.begin_write().await.unwrap();
    let recorded = entry(
        INST,
        REPO,
        5,
        "gate_wait.approved",
        (0, "shipgate"),
        json!({
        "run_id": 778, "run_attempt": 1, "environment": "production" }),
    );
    let recorded = AuditEntry { repository_id: Some(repo_id), actor_id: None, actor_login: None, ..recorded };
    audit::append(&mut tx, Some(&key()), &recorded, Some("r-778"), T0).await.unwrap();
    tx.commit().await.unwrap();
    let wait = "INSERT INTO gate_waits (installation_id, repository_id, repository, run_id, run_attempt, environment, sha, \
                git_ref, state, received_at) VALUES ($1, $2, $3, 778, $4, 'production', $5, 'refs/heads/main', 'approved', 1)";
    sqlx::query(wait).bind(INST).bind(repo_id).bind(REPO).bind(1i64).bind(SHA).execute(db.writer()).await.unwrap();
    assert!(verify(&db).await.ok(), "{:?}", verify(&db).await);
    sqlx::query(wait).bind(INST).bind(repo_id).bind(REPO).bind(2i64).bind(SHA).execute(db.writer()).await.unwrap();
    let what = verify(&db).await.unrecorded.expect("a later attempt approved by hand");
    assert!(what.contains("run 778 of"), "{what}");
    sqlx::query("DELETE FROM gate_waits WHERE run_id = 778").execute(db.writer()).await.unwrap();

    // Someone rewrites who approved.
    drop_guards(&db).await;
    let alice = rows.iter().find(|r| r.delivery_id.as_deref() == Some("r-4")).expect("alice's entry");
    sqlx::query("UPDATE audit_log SET actor_login = 'mallory' WHERE seq = $1")
        .bind(alice.seq)
        .execute(db.writer())
        .await
        .expect("tamper");
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("first broken link at installation 1 position {} (seq {})", alice.position, alice.seq)),
        "{out}"
    );
    db.close().await;
}
both_backends!(a_real_history_verifies_and_survives_pruning);

// ---- What someone who can write to the database, but has not the key, can try. ----

/// Every entry of installation 1 rewritten (who did what), the chain computed again the only way
/// someone without the key can (plain SHA-256, as if written before the App had a key), and the
/// head made to match: the chain is not sealed under the key, and verify says so.
async fn a_log_rewritten_without_the_key_is_caught(tdb: &TestDb) {
    let db = tdb.connect().await;
    let rows = history(&db).await;
    drop_guards(&db).await;
    let mut prev = GENESIS.to_string();
    for r in &rows {
        let mut forged =
            AuditRow { actor_login: Some("mallory".into()), key_id: None, prev_hash: prev.clone(), ..r.clone() };
        forged.hash = audit::entry_hash(&forged);
        sqlx::query("UPDATE audit_log SET actor_login = $1, key_id = NULL, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&forged.actor_login)
            .bind(&forged.prev_hash)
            .bind(&forged.hash)
            .bind(r.seq)
            .execute(db.writer())
            .await
            .expect("tamper");
        prev = forged.hash;
    }
    sqlx::query("UPDATE audit_heads SET hash = $1, key_id = NULL WHERE installation_id = 1")
        .bind(&prev)
        .execute(db.writer())
        .await
        .expect("tamper");
    let b = broken_at(&db).await;
    assert_eq!((b.position, b.seq), (1, Some(rows[0].seq)), "the first entry it concerns: {b}");
    assert!(b.reason.contains("not sealed under a key: none of its 5 entries"), "{b}");
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert_eq!(code, 1, "{out}");
    let at = format!("first broken link at installation 1 position 1 (seq {}): the chain is not sealed", rows[0].seq);
    assert!(out.contains(&at), "{out}");

    // Keeping the key ids and sealing with SHA-256 instead: the first entry's seal fails.
    sqlx::query("UPDATE audit_log SET key_id = $1 WHERE installation_id = 1")
        .bind(key().id())
        .execute(db.writer())
        .await
        .expect("tamper");
    let b = broken_at(&db).await;
    assert_eq!((b.position, b.seq), (1, Some(rows[0].seq)), "{b}");
    assert!(b.reason.contains("does not match its seal"), "{b}");
    db.close().await;
}
both_backends!(a_log_rewritten_without_the_key_is_caught);

/// With every guard dropped (the triggers are the owner's to drop), a replacing insert of the
/// third entry (`INSERT OR REPLACE` on SQLite, an upsert on PostgreSQL) with another actor and the
/// hash computed again without the key: verify names that entry, by position and seq.
async fn a_replacing_insert_past_the_guards_is_named(tdb: &TestDb) {
    let db = tdb.connect().await;
    let rows = history(&db).await;
    drop_guards(&db).await;
    if db.backend() == Backend::Sqlite {
        sqlx::query("DROP TRIGGER audit_log_no_replace").execute(db.writer()).await.expect("drop");
    }
    let target = &rows[2];
    let mut forged = AuditRow { actor_login: Some("mallory".into()), ..target.clone() };
    forged.hash = audit::entry_hash(&forged);
    let replace = match db.backend() {
        Backend::Sqlite => {
            "INSERT OR REPLACE INTO audit_log (seq, installation_id, position, repository_id, repository, issue, kind, \
             actor_id, actor_login, delivery_id, at, detail, prev_hash, hash, key_id) SELECT seq, installation_id, \
             position, repository_id, repository, issue, kind, actor_id, $1, delivery_id, at, detail, prev_hash, $2, \
             key_id FROM audit_log WHERE seq = $3"
        }
        Backend::Postgres => {
            "INSERT INTO audit_log (seq, installation_id, position, repository_id, repository, issue, kind, actor_id, \
             actor_login, delivery_id, at, detail, prev_hash, hash, key_id) SELECT seq, installation_id, position, \
             repository_id, repository, issue, kind, actor_id, $1, delivery_id, at, detail, prev_hash, $2, key_id \
             FROM audit_log WHERE seq = $3 ON CONFLICT (seq) DO UPDATE SET actor_login = excluded.actor_login, \
             hash = excluded.hash"
        }
    };
    sqlx::query(replace)
        .bind(&forged.actor_login)
        .bind(&forged.hash)
        .bind(target.seq)
        .execute(db.writer())
        .await
        .expect("past the guards");
    assert_eq!(chain(&db, 1).await[2].actor_login.as_deref(), Some("mallory"), "the row was replaced");
    let b = broken_at(&db).await;
    assert_eq!((b.installation_id, b.position, b.seq), (1, 3, Some(target.seq)), "{b}");
    assert!(b.reason.contains("does not match its seal"), "{b}");
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("installation 1 position 3 (seq {})", target.seq)), "{out}");
    db.close().await;
}
both_backends!(a_replacing_insert_past_the_guards_is_named);

async fn an_edited_head_is_named(tdb: &TestDb) {
    let db = tdb.connect().await;
    let rows = history(&db).await;
    drop_guards(&db).await;
    sqlx::query("UPDATE audit_heads SET hash = $1 WHERE installation_id = 1")
        .bind(&rows[3].hash)
        .execute(db.writer())
        .await
        .expect("tamper");
    let b = broken_at(&db).await;
    assert_eq!((b.position, b.seq), (6, None), "{b}");
    assert!(b.reason.contains("does not match the last entry"), "{b}");
    sqlx::query("UPDATE audit_heads SET hash = $1, key_id = 'ffffffffffffffff' WHERE installation_id = 1")
        .bind(&rows[4].hash)
        .execute(db.writer())
        .await
        .expect("tamper");
    let b = broken_at(&db).await;
    assert!(b.reason.contains("the head names key ffffffffffffffff"), "{b}");
    db.close().await;
}
both_backends!(an_edited_head_is_named);

/// A log written before the App had a key is sealed once by `shipgate audit seal` (an App with
/// the key refuses to start on it until then): checked, then an `audit.sealed` entry under the
/// key. Entries appended afterwards are keyed; an App without the key then refuses to start; an
/// unkeyed entry slipped in after the seal is named.
async fn an_old_log_is_sealed_when_the_key_arrives(tdb: &TestDb) {
    let db = tdb.connect().await;
    for i in 0..3 {
        let e = entry(1, "acme/app", 5, "request.parsed", (1, "carol"), json!({"n": i}));
        append_with(&db, None, &e, &format!("old-{i}"), T0 + i).await;
    }
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not sealed under a key"), "{out}");

    // An App with the key does not start on them: sealing is an operator's deliberate step.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = shipgate::server::Server::start(&tdb.config(), listener, Options::default()).await.err().expect("refused");
    assert!(e.to_string().contains("chains written without a key (installations 1)"), "{e}");
    assert!(e.to_string().contains("`shipgate audit seal`"), "{e}");
    // Nor does an export hand them on as the log's while they are not sealed...
    let (code, out, err) = export(&tdb.url, true).await;
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(err.contains("position 1") && err.contains("not sealed under a key"), "{err}");
    let (code, out) = cli(&tdb.url, &["audit", "seal"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("installation 1: 3 entries sealed under key {}", key().id())), "{out}");
    // ... and once sealed, the entries the seal vouches for are exported.
    let (code, exported, err) = export(&tdb.url, true).await;
    assert_eq!((code, exported.lines().count()), (Some(0), 3), "{exported}{err}");
    let (code, out) = cli(&tdb.url, &["audit", "seal"]).await;
    assert!(code == 0 && out.contains("no chain to seal"), "{out}");
    let app = TestApp::start(tdb, Options { run_worker: false, ..Options::default() }).await;
    app.shutdown().await;
    let rows = chain(&db, 1).await;
    assert_eq!(rows.len(), 4);
    let seal = &rows[3];
    assert_eq!((seal.kind.as_str(), seal.key_id.as_deref()), ("audit.sealed", Some(key().id())));
    let detail: Value = serde_json::from_str(&seal.detail).unwrap();
    assert_eq!(detail, json!({"entries": 3, "head": rows[2].hash, "broken": null}));
    assert!(verify(&db).await.ok());
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert_eq!(code, 0, "{out}");

    // Starting again seals nothing more; an App without the key does not start.
    TestApp::start(tdb, Options { run_worker: false, ..Options::default() }).await.shutdown().await;
    assert_eq!(chain(&db, 1).await.len(), 4);
    let mut cfg = tdb.config();
    cfg.audit_keys = AuditKeys::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = shipgate::server::Server::start(&cfg, listener, Options::default()).await.err().expect("refused");
    assert!(e.to_string().contains("SHIPGATE_AUDIT_KEY is not set, but the audit log is sealed under key"), "{e}");

    // A process without the key cannot append after the seal; a row written behind its back is named.
    let mut tx = db.begin_write().await.unwrap();
    let e = audit::append(&mut tx, None, &entry(1, "acme/app", 5, "gate.opened", (1, "x"), json!({})), None, T0)
        .await
        .expect_err("no key, sealed chain");
    assert!(e.to_string().contains("sealed under key"), "{e}");
    drop(tx);
    append(&db, &entry(1, "acme/app", 5, "gate.opened", (1, "x"), json!({})), "new", T0 + 9).await;
    let last = chain(&db, 1).await.pop().unwrap();
    sqlx::query("UPDATE audit_log SET key_id = NULL, hash = $1 WHERE seq = $2")
        .bind(audit::entry_hash(&AuditRow { key_id: None, ..last.clone() }))
        .bind(last.seq)
        .execute(db.writer())
        .await
        .expect_err("the triggers still refuse");
    drop_guards(&db).await;
    sqlx::query("UPDATE audit_log SET key_id = NULL, hash = $1 WHERE seq = $2")
        .bind(audit::entry_hash(&AuditRow { key_id: None, ..last.clone() }))
        .bind(last.seq)
        .execute(db.writer())
        .await
        .expect("tamper");
    let report = verify(&db).await;
    let b = report.first_broken().expect("broken");
    assert_eq!((b.position, b.seq), (5, Some(last.seq)), "{b}");
    assert!(b.reason.contains("an unkeyed entry after the chain was sealed"), "{b}");
    db.close().await;
}
both_backends!(an_old_log_is_sealed_when_the_key_arrives);

/// An old chain already broken when it is sealed is sealed as broken, naming where, never
/// hashed again: verify keeps saying so, and the keyed part after the seal still verifies.
async fn an_old_broken_log_is_sealed_as_broken(tdb: &TestDb) {
    let db = tdb.connect().await;
    for i in 0..3 {
        let e = entry(1, "acme/app", 5, "request.parsed", (1, "carol"), json!({"n": i}));
        append_with(&db, None, &e, &format!("old-{i}"), T0 + i).await;
    }
    drop_guards(&db).await;
    let old = chain(&db, 1).await;
    sqlx::query("UPDATE audit_log SET detail = '{\"n\":7}' WHERE seq = $1")
        .bind(old[1].seq)
        .execute(db.writer())
        .await
        .expect("tamper");
    let (code, out) = cli(&tdb.url, &["audit", "seal"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 entries sealed under key") && out.contains("BROKEN at installation 1 position 2"), "{out}");
    append(&db, &entry(1, "acme/app", 5, "gate.opened", (1, "x"), json!({})), "new", T0 + 9).await;
    let rows = chain(&db, 1).await;
    assert_eq!(rows.len(), 5);
    let detail: Value = serde_json::from_str(&rows[3].detail).unwrap();
    assert_eq!(detail["broken"]["position"], 2, "{detail}");
    assert_eq!(rows[1].detail, "{\"n\":7}", "never hashed again");
    let report = verify(&db).await;
    assert!(!report.ok());
    assert_eq!(report.first_broken(), None, "{report:?}");
    let sealed = report.chains[0].sealed_broken.clone().expect("sealed broken");
    assert_eq!((sealed.position, sealed.seq), (2, Some(old[1].seq)));
    let (code, out) = cli(&tdb.url, &["audit", "verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("installation 1: 5 entries, chain intact"), "{out}");
    assert!(out.contains(&format!("BROKEN BEFORE THE SEAL installation 1 position 2 (seq {})", old[1].seq)), "{out}");
    db.close().await;
}
both_backends!(an_old_broken_log_is_sealed_as_broken);

/// `shipgate audit rotate-key`: each chain moves to the new key through an entry sealed under
/// both; verify needs the old key among the retired ones; an App with the old key does not start,
/// and a process still holding it cannot append.
async fn the_key_is_rotated_with_an_entry_sealed_under_both(tdb: &TestDb) {
    let db = tdb.connect().await;
    history(&db).await;
    let new_secret = "the-new-audit-key-fedcba9876543210fedcba98";
    let new = AuditKey::new(new_secret);
    let rotate = |env: Vec<(&'static str, String)>| {
        let url = tdb.url.clone();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"))
                .args(["audit", "rotate-key"])
                .env("DATABASE_URL", &url)
                .env("RUST_LOG", "error")
                .env("SHIPGATE_AUDIT_KEY", shipgate::config::TEST_AUDIT_KEY)
                .env_remove("SHIPGATE_AUDIT_NEW_KEY")
                .env_remove("GITHUB_APP_ID")
                .envs(env)
                .output()
                .await
                .expect("run shipgate");
            (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
        }
    };
    let (code, out) = rotate(vec![]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("SHIPGATE_AUDIT_NEW_KEY"), "{out}");
    let (code, out) = rotate(vec![("SHIPGATE_AUDIT_NEW_KEY", new_secret.to_string())]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 chains moved"), "{out}");
    let rows = chain(&db, 1).await;
    let rotation = rows.last().unwrap();
    assert_eq!((rotation.kind.as_str(), rotation.key_id.as_deref()), ("audit.key_rotated", Some(new.id())));

    let both = AuditKeys { current: Some(new.clone()), retired: vec![key()] };
    assert!(audit::verify(&db, &both).await.unwrap().ok());
    let only_new = AuditKeys { current: Some(new.clone()), retired: vec![] };
    let report = audit::verify(&db, &only_new).await.unwrap();
    let b = report.first_broken().expect("old entries cannot be checked");
    assert_eq!(b.position, 1);
    assert!(b.reason.contains("which is not given"), "{b}");
    // Running it again changes nothing.
    let (code, out) = rotate(vec![("SHIPGATE_AUDIT_NEW_KEY", new_secret.to_string())]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 chains moved"), "{out}");

    // The old key cannot append any more; the new one can.
    let mut tx = db.begin_write().await.unwrap();
    let e =
        audit::append(&mut tx, Some(&key()), &entry(1, "acme/app", 5, "gate.closed", (1, "x"), json!({})), None, T0)
            .await
            .expect_err("old key");
    assert!(e.to_string().contains("restart it with the SHIPGATE_AUDIT_KEY"), "{e}");
    drop(tx);
    append_with(&db, Some(&new), &entry(1, "acme/app", 5, "gate.closed", (1, "x"), json!({})), "n", T0 + 9).await;
    assert!(audit::verify(&db, &both).await.unwrap().ok());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = shipgate::server::Server::start(&tdb.config(), listener, Options::default()).await.err().expect("old key");
    assert!(e.to_string().contains("the audit log is sealed under key"), "{e}");

    // The rotation entry vouched for by another "old" key is caught.
    drop_guards(&db).await;
    let mut forged = rotation.clone();
    let mut d: Value = serde_json::from_str(&forged.detail).unwrap();
    d["previous_key_seal"] = json!("0".repeat(64));
    forged.detail = audit::canonical_json(&d);
    sqlx::query("UPDATE audit_log SET detail = $1, hash = $2 WHERE seq = $3")
        .bind(&forged.detail)
        .bind(audit::expected_hash(&forged, &both).unwrap())
        .bind(forged.seq)
        .execute(db.writer())
        .await
        .expect("tamper");
    // (re-sealed under the new key by whoever has it: only the old key's seal is wrong)
    let report = audit::verify(&db, &both).await.unwrap();
    let b = report.first_broken().expect("broken");
    assert!(b.reason.contains("not sealed under the previous key"), "{b}");
    db.close().await;
}
both_backends!(the_key_is_rotated_with_an_entry_sealed_under_both);

/// `serve` verifies the log on its own (here every second) and `/metrics` says what it found.
/// The result is the process's own: rows a database writer puts in the jobs table (as if another
/// replica had just verified) change nothing.
async fn serve_verifies_the_log_and_exports_the_result(tdb: &TestDb) {
    let db = tdb.connect().await;
    let rows = history(&db).await;
    let now = shipgate::clock::Clock::system().now_ms();
    for slot in 0..120 {
        sqlx::query(
            "INSERT INTO jobs (name, slot, worker, started_at, finished_at, result) \
             VALUES ('audit_verify', $1, 'x', $2, $2, 'intact')",
        )
        .bind(now - now.rem_euclid(1000) + slot * 1000)
        .bind(now)
        .execute(db.writer())
        .await
        .unwrap();
    }
    let mut cfg = tdb.config();
    cfg.audit_verify_every = std::time::Duration::from_secs(1);
    let app = TestApp::start_with(cfg, Options { run_worker: false, ..Options::default() }).await;
    let scrape_until = |want: &'static str| {
        let (http, url) = (app.http.clone(), app.url.clone());
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            loop {
                let text = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
                if text.lines().any(|l| l == want) {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "no `{want}` in:\n{text}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    scrape_until("shipgate_audit_log_intact 1").await;
    drop_guards(&db).await;
    sqlx::query("UPDATE audit_log SET actor_login = 'mallory' WHERE seq = $1")
        .bind(rows[1].seq)
        .execute(db.writer())
        .await
        .expect("tamper");
    scrape_until("shipgate_audit_log_intact 0").await;
    app.shutdown_unchecked().await;
    db.close().await;
}
both_backends!(serve_verifies_the_log_and_exports_the_result);

/// Someone without the key deletes a keyed chain (entries and head) and writes an unkeyed one
/// with a made-up approver: no start of the App seals it (it refuses to start), and verify keeps
/// naming it. (From an attacker's-eye review: sealing used to happen at every start.)
async fn a_forged_unkeyed_chain_is_never_sealed_by_a_start(tdb: &TestDb) {
    let db = tdb.connect().await;
    let rows = history(&db).await;
    drop_guards(&db).await;
    let heads_guard = match db.backend() {
        Backend::Sqlite => "DROP TRIGGER audit_heads_no_delete",
        Backend::Postgres => "ALTER TABLE audit_heads DISABLE TRIGGER USER",
    };
    sqlx::query(heads_guard).execute(db.writer()).await.unwrap();
    sqlx::query("DELETE FROM audit_log WHERE installation_id = 1").execute(db.writer()).await.unwrap();
    sqlx::query("DELETE FROM audit_heads WHERE installation_id = 1").execute(db.writer()).await.unwrap();
    let mut prev = GENESIS.to_string();
    for (i, r) in rows.iter().enumerate() {
        let mut forged =
            AuditRow { key_id: None, prev_hash: prev.clone(), actor_login: Some("boss".into()), ..r.clone() };
        forged.hash = audit::entry_hash(&forged);
        sqlx::query(
            "INSERT INTO audit_log (installation_id, position, repository_id, repository, issue, kind, actor_id, \
             actor_login, delivery_id, at, detail, prev_hash, hash) VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12)",
        )
        .bind(i as i64 + 1)
        .bind(forged.repository_id)
        .bind(&forged.repository)
        .bind(forged.issue)
        .bind(&forged.kind)
        .bind(forged.actor_id)
        .bind(&forged.actor_login)
        .bind(&forged.delivery_id)
        .bind(forged.at)
        .bind(&forged.detail)
        .bind(&forged.prev_hash)
        .bind(&forged.hash)
        .execute(db.writer())
        .await
        .unwrap();
        prev = forged.hash;
    }
    sqlx::query("INSERT INTO audit_heads (installation_id, position, hash, updated_at) VALUES (1, $1, $2, 0)")
        .bind(rows.len() as i64)
        .bind(&prev)
        .execute(db.writer())
        .await
        .unwrap();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let e =
            shipgate::server::Server::start(&tdb.config(), listener, Options::default()).await.err().expect("refused");
        assert!(e.to_string().contains("chains written without a key (installations 1)"), "{e}");
    }
    let b = verify(&db).await.first_broken().cloned().expect("still named");
    assert!(b.reason.contains("not sealed under a key"), "{b}");
    db.close().await;
}
both_backends!(a_forged_unkeyed_chain_is_never_sealed_by_a_start);

/// The App anchors only a head whose seal checks out under the audit key: a database writer who
/// appends a forged last entry gets no signature on it, and the comment says the anchor was
/// withheld. Without a signing key the anchor goes out unsigned and says so.
async fn a_forged_head_is_never_anchored(tdb: &TestDb) {
    use shipgate::store::anchor::{self, SigningKey};
    let db = tdb.connect().await;
    let rows = history(&db).await;
    let signing = SigningKey::from_bytes(&[3u8; 32]);
    let good = anchor::current(&db, 1, &keys(), Some(&signing)).await.unwrap().expect("an anchor");
    assert_eq!((good.position, good.hash.as_str()), (5, rows[4].hash.as_str()));
    assert!(good.verify(signing.public()));
    let unsigned = anchor::current(&db, 1, &keys(), None).await.unwrap().expect("an anchor");
    assert!(unsigned.signature.is_none() && unsigned.render().contains("unsigned"), "{unsigned:?}");

    drop_guards(&db).await;
    sqlx::query("UPDATE audit_log SET detail = '{\"n\":99}' WHERE seq = $1")
        .bind(rows[4].seq)
        .execute(db.writer())
        .await
        .expect("tamper");
    let why = anchor::current(&db, 1, &keys(), Some(&signing)).await.unwrap().expect_err("withheld");
    assert!(why.contains("entry 5's seal does not check out"), "{why}");
    let line = anchor::render_current(&db, 1, &keys(), Some(&signing)).await.unwrap();
    assert!(line.contains("Audit log anchor withheld") && !line.contains(anchor::TAG), "{line}");
    db.close().await;
}
both_backends!(a_forged_head_is_never_anchored);
