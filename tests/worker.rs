//! The worker: retries, parking and replay, per-subject order, leases, shutdown, pruning.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestApp, TestDb, count, fixture, unique};
use shipgate::cli::{Command, DeliveriesCommand, run_db_command};
use shipgate::clock::Clock;
use shipgate::handlers::{Handled, HandlerError, Registry};
use shipgate::server::Options;
use shipgate::store::deliveries;

fn with_registry(registry: Registry) -> Options {
    Options { registry, ..Options::default() }
}

/// Runs a `shipgate deliveries …` command against the test database; returns (exit code, output).
async fn cli(db: &TestDb, cmd: DeliveriesCommand) -> (i32, String) {
    let mut out = Vec::new();
    let code = run_db_command(&db.config(), &Command::Deliveries { command: cmd }, &mut out).await.expect("cli");
    (code, String::from_utf8(out).expect("utf-8"))
}

async fn a_handler_that_fails_twice_is_retried_then_done(db: &TestDb) {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut reg = Registry::standard();
    let c = calls.clone();
    reg.on("issue_comment", Some("created"), move |_ctx| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 { Err(HandlerError::Retry(format!("flaky #{}", n + 1))) } else { Ok(Handled::ok(vec![])) }
        }
    });
    let app = TestApp::start(db, with_registry(reg)).await;
    assert_eq!(app.deliver("issue_comment", "flaky-1", &fixture("issue_comment.created.0")).await, 202);
    common::drain(&app.db, Duration::from_secs(10)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let row = deliveries::find(&app.db, "flaky-1").await.expect("find").expect("stored");
    assert_eq!((row.state.as_str(), row.outcome.as_deref(), row.attempts), ("done", Some("ok"), 3));
    let attempts = deliveries::attempts(&app.db, row.seq).await.expect("attempts");
    let outcomes: Vec<_> = attempts.iter().map(|a| (a.outcome.as_str(), a.error.as_deref())).collect();
    assert_eq!(outcomes, vec![("error", Some("flaky #1")), ("error", Some("flaky #2")), ("ok", None)]);
    // Backoff: each retry came after the previous failure.
    assert!(attempts.windows(2).all(|w| w[1].started_at >= w[0].finished_at));
    app.shutdown().await;
}
both_backends!(a_handler_that_fails_twice_is_retried_then_done);

async fn a_handler_that_always_fails_is_parked_then_replayed(db: &TestDb) {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut reg = Registry::standard();
    let h = healthy.clone();
    reg.on("issue_comment", None, move |_ctx| {
        let ok = h.load(Ordering::SeqCst);
        async move { if ok { Ok(Handled::ok(vec![])) } else { Err(HandlerError::Retry("GitHub is down".into())) } }
    });
    let app = TestApp::start(db, with_registry(reg)).await;
    assert_eq!(app.deliver("issue_comment", "doomed-1", &fixture("issue_comment.created.2")).await, 202);
    common::drain(&app.db, Duration::from_secs(10)).await;
    let row = deliveries::find(&app.db, "doomed-1").await.expect("find").expect("stored");
    assert_eq!(row.state, "parked");
    assert_eq!(row.attempts, 3, "max_attempts in tests is 3");
    assert_eq!(row.last_error.as_deref(), Some("GitHub is down"));

    // Visible in `shipgate deliveries list --status parked`.
    let (code, out) = cli(db, DeliveriesCommand::List { status: Some("parked".into()), limit: 50, json: false }).await;
    assert_eq!(code, 0);
    assert!(out.contains("doomed-1") && out.contains("GitHub is down"), "{out}");
    let (_, out) = cli(db, DeliveriesCommand::List { status: Some("done".into()), limit: 50, json: false }).await;
    assert!(!out.contains("doomed-1"), "{out}");
    let (code, out) = cli(db, DeliveriesCommand::Show { id: "doomed-1".into(), no_body: true }).await;
    assert_eq!(code, 0);
    assert_eq!(out.matches("GitHub is down").count(), 4, "last error and three attempts:\n{out}");

    // Fixed, then replayed with `shipgate deliveries retry`.
    healthy.store(true, Ordering::SeqCst);
    let (code, out) = cli(db, DeliveriesCommand::Retry { id: "doomed-1".into() }).await;
    assert_eq!(code, 0, "{out}");
    common::drain(&app.db, Duration::from_secs(10)).await;
    let row = deliveries::find(&app.db, "doomed-1").await.expect("find").expect("stored");
    assert_eq!((row.state.as_str(), row.outcome.as_deref()), ("done", Some("ok")));
    // Unknown ids and busy deliveries are refused with a reason.
    let (code, out) = cli(db, DeliveriesCommand::Retry { id: "nope".into() }).await;
    assert_eq!((code, out.trim()), (1, "no delivery \"nope\""));
    app.shutdown().await;
}
both_backends!(a_handler_that_always_fails_is_parked_then_replayed);

async fn a_malformed_payload_is_parked_at_once(db: &TestDb) {
    let app = TestApp::start(db, Options::default()).await;
    // Valid JSON, signed, but not an installation event: the handler cannot use it.
    assert_eq!(app.deliver("installation", "odd-1", r#"{"action":"created","installation":{"id":5}}"#).await, 202);
    common::drain(&app.db, Duration::from_secs(10)).await;
    let row = deliveries::find(&app.db, "odd-1").await.expect("find").expect("stored");
    assert_eq!((row.state.as_str(), row.attempts), ("parked", 1));
    assert!(row.last_error.as_deref().unwrap_or("").contains("does not fit"), "{row:?}");
    app.shutdown().await;
}
both_backends!(a_malformed_payload_is_parked_at_once);

/// One subject's deliveries run one at a time and in order; different subjects run in parallel.
async fn subjects_are_serial_and_ordered_others_parallel(db: &TestDb) {
    #[derive(Debug, Clone)]
    struct Run {
        subject: String,
        seq: i64,
        start: Instant,
        end: Instant,
    }
    let runs = Arc::new(Mutex::new(Vec::<Run>::new()));
    let mut reg = Registry::standard();
    let r = runs.clone();
    reg.on("issue_comment", None, move |ctx| {
        let r = r.clone();
        async move {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(15)).await;
            let d = &ctx.delivery;
            r.lock().expect("lock").push(Run { subject: d.subject.clone(), seq: d.seq, start, end: Instant::now() });
            Ok(Handled::ok(vec![]))
        }
    });
    let app = TestApp::start(db, with_registry(reg)).await;
    let base: serde_json::Value = serde_json::from_str(&fixture("issue_comment.created.0")).expect("json");
    for i in 0..30 {
        let mut v = base.clone();
        v["issue"]["number"] = serde_json::json!(i % 3 + 1);
        v["comment"]["id"] = serde_json::json!(1000 + i);
        assert_eq!(app.deliver("issue_comment", &format!("ord-{i}"), &v.to_string()).await, 202);
    }
    common::drain(&app.db, Duration::from_secs(20)).await;
    let runs = runs.lock().expect("lock").clone();
    assert_eq!(runs.len(), 30);
    let mut overlap_across = false;
    for a in &runs {
        for b in &runs {
            if a.seq >= b.seq {
                continue;
            }
            let overlap = a.start < b.end && b.start < a.end;
            if a.subject == b.subject {
                assert!(!overlap, "two deliveries of {} ran at once", a.subject);
                assert!(a.end <= b.start, "{} ran out of order: {} after {}", a.subject, a.seq, b.seq);
            } else if overlap {
                overlap_across = true;
            }
        }
    }
    assert!(overlap_across, "different subjects never ran in parallel");
    app.shutdown().await;
}
both_backends!(subjects_are_serial_and_ordered_others_parallel);

/// A repository's check events (`check_run`, `check_suite`, `status`) are ordered per commit, not
/// per repository: a monorepo's CI on many commits does not queue up behind itself (issue 14: on
/// PostgreSQL one repository's subject was worked off at ~130 deliveries a second). Its other
/// repository-wide events (`workflow_run`, `push`) keep the repository's subject.
async fn check_events_are_ordered_per_commit_not_per_repository(db: &TestDb) {
    #[derive(Debug, Clone)]
    struct Run {
        event: String,
        sha: String,
        subject: String,
        seq: i64,
        start: Instant,
        end: Instant,
    }
    let runs = Arc::new(Mutex::new(Vec::<Run>::new()));
    let mut reg = Registry::standard();
    for event in ["check_run", "check_suite", "status", "workflow_run", "push"] {
        let r = runs.clone();
        reg.on(event, None, move |ctx| {
            let r = r.clone();
            async move {
                let start = Instant::now();
                tokio::time::sleep(Duration::from_millis(15)).await;
                let d = &ctx.delivery;
                let v: serde_json::Value = ctx.payload().expect("payload");
                let sha = ["/check_run/head_sha", "/check_suite/head_sha", "/sha"]
                    .iter()
                    .find_map(|p| v.pointer(p).and_then(|s| s.as_str()))
                    .unwrap_or("-")
                    .to_string();
                r.lock().expect("lock").push(Run {
                    event: d.event.clone(),
                    sha,
                    subject: d.subject.clone(),
                    seq: d.seq,
                    start,
                    end: Instant::now(),
                });
                Ok(Handled::ok(vec![]))
            }
        });
    }
    let app = TestApp::start(db, with_registry(reg)).await;
    let fixtures = [
        ("check_run", "check_run.completed.0", "/check_run/head_sha"),
        ("check_suite", "check_suite.completed.0", "/check_suite/head_sha"),
        ("status", "status.none.0", "/sha"),
        ("workflow_run", "workflow_run.completed.0", "/workflow_run/head_sha"),
        ("push", "push.none.0", "/after"),
    ];
    let mut sent = 0;
    for i in 0..40 {
        let (event, name, sha_at) = fixtures[i % fixtures.len()];
        let mut v: serde_json::Value = serde_json::from_str(&fixture(name)).expect("json");
        // One repository, four commits.
        v["repository"]["id"] = serde_json::json!(4242);
        v["nonce"] = serde_json::json!(i); // the same event again is another delivery, not a duplicate
        *v.pointer_mut(sha_at).expect("sha") = serde_json::json!(format!("{:040x}", 0xc0ffee + (i / 5) % 4));
        assert_eq!(app.deliver(event, &format!("per-commit-{i}"), &v.to_string()).await, 202);
        sent += 1;
    }
    common::drain(&app.db, Duration::from_secs(30)).await;
    let runs = runs.lock().expect("lock").clone();
    assert_eq!(runs.len(), sent);
    let checks = |r: &Run| matches!(r.event.as_str(), "check_run" | "check_suite" | "status");
    let mut commits_side_by_side = false;
    for a in &runs {
        for b in &runs {
            if a.seq >= b.seq {
                continue;
            }
            let overlap = a.start < b.end && b.start < a.end;
            let ordered = if checks(a) && checks(b) { a.sha == b.sha } else { !checks(a) && !checks(b) };
            if ordered {
                assert_eq!(a.subject, b.subject, "{} and {} of one order", a.event, b.event);
                assert!(a.end <= b.start, "{} ran out of order or beside {}: {a:?} {b:?}", a.event, b.event);
            } else if checks(a) && checks(b) && overlap {
                commits_side_by_side = true;
            }
        }
        if !checks(a) {
            assert_eq!(a.subject, "repo:4242", "{} keeps the repository's subject", a.event);
        }
    }
    assert!(commits_side_by_side, "check events of different commits never ran side by side");
    app.shutdown().await;
}
both_backends!(check_events_are_ordered_per_commit_not_per_repository);

async fn an_expired_lease_makes_a_delivery_claimable_again(db: &TestDb) {
    let app = TestApp::start(db, Options { run_worker: false, ..Options::default() }).await;
    assert_eq!(app.deliver("ping", "lease-1", &fixture("ping.none.0")).await, 202);
    let clock = Clock::manual(Clock::system().now_ms());
    let now = clock.now_ms();
    // A worker claims it, then dies.
    let ghost = deliveries::claim(&app.db, "ghost", now, 1_000, 10).await.expect("claim");
    assert_eq!(ghost.len(), 1);
    // While the lease holds, nobody else gets it.
    assert!(deliveries::claim(&app.db, "other", now + 999, 1_000, 10).await.expect("claim").is_empty());
    // Once it expires, another worker does.
    let again = deliveries::claim(&app.db, "other", now + 1_000, 1_000, 10).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    // The ghost comes back: its completion is refused, nothing is recorded twice.
    let mut tx = app.db.begin_write().await.expect("tx");
    let won = deliveries::complete(&mut tx, &ghost[0], "ghost", now, now + 1_500, "ok").await.expect("complete");
    assert!(!won, "a lost lease must not complete");
    tx.rollback().await.expect("rollback");
    let mut tx = app.db.begin_write().await.expect("tx");
    assert!(deliveries::complete(&mut tx, &again[0], "other", now, now + 1_500, "ok").await.expect("complete"));
    tx.commit().await.expect("commit");
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM delivery_attempts").await, 1);
    app.shutdown().await;
}
both_backends!(an_expired_lease_makes_a_delivery_claimable_again);

async fn a_crashed_workers_delivery_is_processed_by_a_new_one(db: &TestDb) {
    // Stored by one process, claimed by a worker that then "crashed" (lease of 300 ms).
    let app = TestApp::start(db, Options { run_worker: false, ..Options::default() }).await;
    assert_eq!(app.deliver("ping", "crash-1", &fixture("ping.none.1")).await, 202);
    let claimed = deliveries::claim(&app.db, "crashed", Clock::system().now_ms(), 300, 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    app.shutdown().await;
    // A new process picks it up once the lease runs out.
    let app = TestApp::start(db, Options::default()).await;
    common::drain(&app.db, Duration::from_secs(10)).await;
    let row = deliveries::find(&app.db, "crash-1").await.expect("find").expect("stored");
    assert_eq!((row.state.as_str(), row.attempts), ("done", 2));
    app.shutdown().await;
}
both_backends!(a_crashed_workers_delivery_is_processed_by_a_new_one);

/// A claim that committed but whose answer never came back (the database restarted at that
/// moment: found by bench/soak.sh) leaves a row leased to a live worker that is not working on it.
/// Its lease must run out as a dead worker's does, and the row be claimed again; renewed by the
/// worker's heartbeat for as long as the process lives, it and every later delivery of its
/// subject waited for ever.
async fn a_claim_whose_answer_was_lost_is_claimed_again_when_its_lease_runs_out(db: &TestDb) {
    let mut cfg = db.config();
    cfg.worker.lease = Duration::from_secs(1); // renewed every 333 ms
    cfg.worker.poll_interval = Duration::from_millis(20);
    let app = TestApp::start_with(cfg, Options::default()).await;
    let me = app.server.worker_id.clone().expect("a worker");
    // A delivery due in a minute (so that the worker does not take it first), and the claim the
    // worker made of it, whose answer was lost: the row is the worker's, leased for a second.
    let now = Clock::system().now_ms();
    let mut d = common::delivery("lost-claim-1", "acme/app#77");
    (d.event, d.action, d.body, d.received_at) = ("ping".into(), None, fixture("ping.none.0"), now + 60_000);
    deliveries::insert_batch(&app.db, &[&d]).await.expect("insert");
    let lost = deliveries::claim(&app.db, &me, now + 60_000, 1_000, 10).await.expect("claim");
    assert_eq!(lost.len(), 1);
    sqlx::query("UPDATE deliveries SET lease_until = $1 WHERE id = 'lost-claim-1'")
        .bind(Clock::system().now_ms() + 1_000)
        .execute(app.db.pool())
        .await
        .expect("lease");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = deliveries::find(&app.db, "lost-claim-1").await.expect("find").expect("row");
        if row.state == "done" {
            assert_eq!(row.attempts, 2, "{row:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the row of the lost claim was never claimed again: {row:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.shutdown().await;
}
both_backends!(a_claim_whose_answer_was_lost_is_claimed_again_when_its_lease_runs_out);

async fn shutdown_releases_leases(db: &TestDb) {
    let mut reg = Registry::standard();
    reg.on("issue_comment", None, |_ctx| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(Handled::ok(vec![]))
    });
    let mut cfg = db.config();
    cfg.worker.shutdown_grace = Duration::from_millis(100);
    let app = TestApp::start_with(cfg, with_registry(reg)).await;
    assert_eq!(app.deliver("issue_comment", "slow-1", &fixture("issue_comment.created.3")).await, 202);
    let db2 = app.db.clone();
    // Wait until it is running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while deliveries::find(&db2, "slow-1").await.expect("find").expect("row").state != "running" {
        assert!(Instant::now() < deadline, "never claimed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    app.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(5), "shutdown waited for the slow handler");
    let db3 = db.connect().await;
    let row = deliveries::find(&db3, "slow-1").await.expect("find").expect("row");
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 0), "the lease was not given back: {row:?}");
    db3.close().await;
}
both_backends!(shutdown_releases_leases);

/// Two Apps on one database (two replicas): every delivery is processed exactly once, and no two
/// deliveries of one subject run at the same time.
async fn two_workers_never_share_a_delivery(db: &TestDb) {
    let running = Arc::new(Mutex::new(std::collections::HashSet::<String>::new()));
    let violations = Arc::new(AtomicUsize::new(0));
    let make = || {
        let mut reg = Registry::standard();
        let (running, violations) = (running.clone(), violations.clone());
        reg.on("issue_comment", None, move |ctx| {
            let (running, violations) = (running.clone(), violations.clone());
            async move {
                let subject = ctx.delivery.subject.clone();
                if !running.lock().expect("lock").insert(subject.clone()) {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                running.lock().expect("lock").remove(&subject);
                Ok(Handled::ok(vec![]))
            }
        });
        with_registry(reg)
    };
    let a = TestApp::start(db, make()).await;
    let b = TestApp::start(db, make()).await;
    let body = fixture("issue_comment.created.4");
    for i in 0..200 {
        let mut v: serde_json::Value = serde_json::from_str(&unique(&body, &i.to_string())).expect("json");
        v["issue"]["number"] = serde_json::json!(i % 7);
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(app.deliver("issue_comment", &format!("pair-{i}"), &v.to_string()).await, 202);
    }
    common::drain(&a.db, Duration::from_secs(30)).await;
    assert_eq!(violations.load(Ordering::SeqCst), 0, "a subject ran on two workers at once");
    assert_eq!(count(&a.db, "SELECT COUNT(*) FROM deliveries WHERE state = 'done'").await, 200);
    assert_eq!(count(&a.db, "SELECT COUNT(*) FROM delivery_attempts WHERE outcome = 'ok'").await, 200);
    assert_eq!(count(&a.db, "SELECT COUNT(DISTINCT worker) FROM delivery_attempts").await, 2, "both workers worked");
    a.shutdown().await;
    b.shutdown().await;
}
both_backends!(two_workers_never_share_a_delivery);

async fn old_processed_deliveries_are_pruned(db: &TestDb) {
    let app = TestApp::start(db, Options::default()).await;
    assert_eq!(app.deliver("ping", "old-1", &fixture("ping.none.0")).await, 202);
    common::drain(&app.db, Duration::from_secs(10)).await;
    let mut reg = Registry::standard();
    reg.on("issue_comment", None, |_| async { Err(HandlerError::Permanent("no".into())) });
    app.shutdown().await;
    let app = TestApp::start(db, with_registry(reg)).await;
    assert_eq!(app.deliver("issue_comment", "parked-1", &fixture("issue_comment.created.0")).await, 202);
    common::drain(&app.db, Duration::from_secs(10)).await;
    let now = Clock::system().now_ms();
    // Nothing is old enough yet.
    assert_eq!(deliveries::drop_bodies(&app.db, now - 14 * 86_400_000, 1000).await.expect("drop"), 0);
    assert_eq!(deliveries::prune(&app.db, now - 14 * 86_400_000, 1000).await.expect("prune"), 0);
    // Fifteen days later the done delivery's body goes; its row stays, and a replay of it under
    // another id is still refused by its body's hash. The parked one keeps its body.
    assert_eq!(deliveries::drop_bodies(&app.db, now + 86_400_000, 1).await.expect("drop"), 1);
    assert_eq!(deliveries::drop_bodies(&app.db, now + 86_400_000, 1).await.expect("drop"), 0, "once");
    let old = deliveries::find(&app.db, "old-1").await.expect("find").expect("the row stays");
    assert_eq!(deliveries::body(&app.db, old.seq).await.expect("body").as_deref(), Some(""));
    let parked = deliveries::find(&app.db, "parked-1").await.expect("find").expect("parked");
    assert!(!deliveries::body(&app.db, parked.seq).await.expect("body").unwrap_or_default().is_empty());
    assert_eq!(app.deliver("ping", "old-1-again", &fixture("ping.none.0")).await, 200, "a replay is refused");
    assert!(deliveries::find(&app.db, "old-1-again").await.expect("find").is_none());
    // `shipgate deliveries prune` applies the configured retention now (here: every body of a
    // processed delivery, rows kept for ever); `show` says the body was dropped.
    let ping = app.deliver("ping", "new-1", &fixture("ping.none.1")).await;
    assert_eq!(ping, 202);
    common::drain(&app.db, Duration::from_secs(10)).await;
    let mut cfg = db.config();
    cfg.retention = Duration::ZERO;
    cfg.history = None;
    let mut out = Vec::new();
    let cmd = Command::Deliveries { command: DeliveriesCommand::Prune };
    assert_eq!(run_db_command(&cfg, &cmd, &mut out).await.expect("prune"), 0);
    assert_eq!(String::from_utf8(out).unwrap(), "bodies dropped: 1; rows deleted: 0\n");
    let (code, text) = cli(db, DeliveriesCommand::Show { id: "new-1".into(), no_body: false }).await;
    assert_eq!(code, 0);
    assert!(text.contains("(body dropped: older than SHIPGATE_RETENTION_DAYS"), "{text}");
    let (code, text) = cli(db, DeliveriesCommand::Retry { id: "new-1".into() }).await;
    assert_eq!(code, 1);
    assert!(text.contains("its body was dropped"), "{text}");
    // Past the history period the row goes, with its attempts; the parked one stays.
    assert_eq!(deliveries::prune(&app.db, now + 86_400_000, 1000).await.expect("prune"), 2);
    assert!(deliveries::find(&app.db, "old-1").await.expect("find").is_none());
    assert!(deliveries::find(&app.db, "new-1").await.expect("find").is_none());
    assert!(deliveries::find(&app.db, "parked-1").await.expect("find").is_some());
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM delivery_attempts").await, 1);
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM delivery_bodies").await, 1, "only the parked one's body");
    app.shutdown().await;
}
both_backends!(old_processed_deliveries_are_pruned);

/// Every body past the retention goes, whatever order the deliveries finished in: the one
/// stored first may finish last (a retry), and the App may then stay idle.
async fn every_expired_body_goes_however_deliveries_finished(db: &TestDb) {
    let db = db.connect().await;
    let batch: Vec<_> = (0..3).map(|i| common::delivery(&format!("late-{i}"), &format!("s-{i}"))).collect();
    let refs: Vec<_> = batch.iter().collect();
    deliveries::insert_batch(&db, &refs).await.expect("insert");
    // The first stored finishes last.
    for (id, at) in [("late-0", 30), ("late-1", 10), ("late-2", 20)] {
        sqlx::query("UPDATE deliveries SET state = 'done', outcome = 'ok', finished_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(db.writer())
            .await
            .unwrap();
    }
    assert_eq!(deliveries::drop_bodies(&db, 100, 1000).await.expect("drop"), 3);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM delivery_bodies").await, 0);
}
both_backends!(every_expired_body_goes_however_deliveries_finished);

/// A row's body is the one its hash was taken of: an id twice in one batch, its first copy a
/// replay of a stored body and its second a new one, stores the second copy's body.
async fn a_rows_body_is_the_one_it_was_hashed_from(db: &TestDb) {
    let db = db.connect().await;
    let first = common::delivery("orig", "s");
    deliveries::insert_batch(&db, &[&first]).await.expect("insert");
    let mut replay = common::delivery("dup", "s");
    replay.body = "the replayed body".into();
    replay.body_key = first.body_key.clone();
    let mut fresh = common::delivery("dup", "s");
    fresh.body = "the new body".into();
    let out = deliveries::insert_batch(&db, &[&replay, &fresh]).await.expect("insert");
    let seq = deliveries::find(&db, "dup").await.expect("find").expect("stored").seq;
    assert!(out.contains(&deliveries::InsertOutcome::Stored(seq)), "{out:?}");
    assert_eq!(deliveries::body(&db, seq).await.expect("body").as_deref(), Some("the new body"));
}
both_backends!(a_rows_body_is_the_one_it_was_hashed_from);

/// On SQLite the retention bounds the file while the rows stay: the pages of the bodies it drops
/// are reused by the next ones. With bodies dropped in place (before migration 0018) each
/// delivery kept a sparse page of its own, and the file grew by about a page a delivery whatever
/// the retention.
#[tokio::test]
async fn sqlite_reuses_the_pages_of_dropped_bodies() {
    let tdb = TestDb::sqlite().await;
    let db = tdb.connect().await;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let pages = |db: shipgate::store::Db| async move {
        let (n,): (i64,) = sqlx::query_as("PRAGMA page_count").fetch_one(db.writer()).await.unwrap();
        n
    };
    // One round: 200 deliveries with 3 KB bodies (compressed, as the intake stores them) are
    // stored, processed, and their bodies dropped by the retention.
    let mut after_round = Vec::new();
    for round in 0..4 {
        let batch: Vec<_> = (0..200)
            .map(|i| {
                let mut d = common::delivery(&format!("r{round}-{i}"), &format!("s{round}-{i}"));
                d.body = String::new();
                d.body_lz4 = Some(noise(3_000));
                d
            })
            .collect();
        let refs: Vec<_> = batch.iter().collect();
        deliveries::insert_batch(&db, &refs).await.expect("insert");
        sqlx::query("UPDATE deliveries SET state = 'done', outcome = 'ok', finished_at = 1 WHERE state = 'pending'")
            .execute(db.writer())
            .await
            .unwrap();
        assert_eq!(deliveries::drop_bodies(&db, 2, 64).await.expect("drop"), 200);
        after_round.push(pages(db.clone()).await);
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM deliveries").await, 800, "the rows stay");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM delivery_bodies").await, 0);
    // A round's bodies take ~150 pages of 4 KB; its rows and their index entries ~25.
    let grown = after_round[3] - after_round[1];
    assert!(grown < 100, "pages after each round {after_round:?}: bodies' pages not reused");
}

async fn installation_events_keep_the_tenancy_table(db: &TestDb) {
    use shipgate::store::tenancy;
    let app = TestApp::start(db, Options::default()).await;
    let created: serde_json::Value = serde_json::from_str(&fixture("installation.created.0")).expect("json");
    let id = created["installation"]["id"].as_i64().expect("id");
    assert_eq!(app.deliver("installation", "inst-1", &created.to_string()).await, 202);
    let mut added: serde_json::Value =
        serde_json::from_str(&fixture("installation_repositories.added.0")).expect("json");
    added["installation"]["id"] = serde_json::json!(id);
    assert_eq!(app.deliver("installation_repositories", "inst-2", &added.to_string()).await, 202);
    common::drain(&app.db, Duration::from_secs(10)).await;
    let repos = tenancy::repositories(&app.db, id).await.expect("repos");
    let names: Vec<_> = repos.iter().map(|r| r.full_name.as_str()).collect();
    for r in created["repositories"]
        .as_array()
        .expect("repos")
        .iter()
        .chain(added["repositories_added"].as_array().expect("added"))
    {
        assert!(names.contains(&r["full_name"].as_str().expect("name")), "{names:?}");
    }
    assert!(tenancy::is_active(&app.db, id).await.expect("active"));

    let mut removed: serde_json::Value =
        serde_json::from_str(&fixture("installation_repositories.removed.0")).expect("json");
    removed["installation"]["id"] = serde_json::json!(id);
    let gone = removed["repositories_removed"][0]["id"].as_i64().expect("id");
    assert_eq!(app.deliver("installation_repositories", "inst-3", &removed.to_string()).await, 202);
    let mut suspend: serde_json::Value = serde_json::from_str(&fixture("installation.suspend.0")).expect("json");
    suspend["installation"]["id"] = serde_json::json!(id);
    assert_eq!(app.deliver("installation", "inst-4", &suspend.to_string()).await, 202);
    common::drain(&app.db, Duration::from_secs(10)).await;
    assert!(!tenancy::is_active(&app.db, id).await.expect("active"), "suspended");
    let repos = tenancy::repositories(&app.db, id).await.expect("repos");
    if let Some(r) = repos.iter().find(|r| r.id == gone) {
        assert!(r.removed_at.is_some(), "{r:?}");
    }

    let mut unsuspend: serde_json::Value = serde_json::from_str(&fixture("installation.unsuspend.0")).expect("json");
    unsuspend["installation"]["id"] = serde_json::json!(id);
    assert_eq!(app.deliver("installation", "inst-5", &unsuspend.to_string()).await, 202);
    common::drain(&app.db, Duration::from_secs(10)).await;
    assert!(tenancy::is_active(&app.db, id).await.expect("active"), "unsuspended");

    let mut deleted: serde_json::Value = serde_json::from_str(&fixture("installation.deleted.0")).expect("json");
    deleted["installation"]["id"] = serde_json::json!(id);
    assert_eq!(app.deliver("installation", "inst-6", &deleted.to_string()).await, 202);
    // Delivered twice: the effect is the same.
    assert_eq!(app.deliver("installation", "inst-6", &deleted.to_string()).await, 200);
    common::drain(&app.db, Duration::from_secs(10)).await;
    assert!(!tenancy::is_active(&app.db, id).await.expect("active"), "deleted");
    assert!(tenancy::repositories(&app.db, id).await.expect("repos").iter().all(|r| r.removed_at.is_some()));
    app.shutdown().await;
}
both_backends!(installation_events_keep_the_tenancy_table);

/// Completions are committed in groups, each in its own savepoint: a delivery whose effects cannot
/// be applied is rolled back alone (and retried); the others finishing with it are recorded.
async fn a_failing_effect_spoils_only_its_own_delivery_in_a_group_commit(db: &TestDb) {
    use shipgate::domain::state::ApprovalState;
    use shipgate::handlers::Effect;
    use shipgate::store::incidents::{Change, RunRow};
    use shipgate::store::requests::ApprovalChange;
    let barrier = Arc::new(tokio::sync::Barrier::new(4)); // the tests' worker concurrency
    let tries = Arc::new(Mutex::new(std::collections::HashMap::<i64, usize>::new()));
    let mut reg = Registry::standard();
    let (b, t) = (barrier.clone(), tries.clone());
    reg.on("issue_comment", None, move |ctx| {
        let (b, t) = (b.clone(), t.clone());
        async move {
            let v: serde_json::Value = ctx.payload()?;
            let n = v["comment"]["id"].as_i64().unwrap_or_default();
            let attempt = {
                let mut m = t.lock().unwrap();
                let e = m.entry(n).or_default();
                *e += 1;
                *e
            };
            if attempt == 1 {
                // Four at a time finish together, so their completions share a commit.
                let _ = tokio::time::timeout(Duration::from_millis(300), b.wait()).await;
            }
            let mut effects = vec![Effect::SaveApproval(ApprovalChange {
                installation_id: 1,
                repository_id: 2,
                issue: 3,
                comment_id: n,
                user_id: n,
                login: format!("user{n}"),
                roles: "[]".into(),
                environment: "production".into(),
                head_shas: String::new(),
                revision: 1,
                state: ApprovalState::Active,
                note: None,
                given_at: None,
            })];
            // Odd comments fail to apply on their first attempt: a CHECK constraint refuses a CI
            // run's kind, after the approval was written in the same savepoint.
            if n % 2 == 1 && attempt == 1 {
                effects.push(Effect::Ci(Box::new(Change::Run(RunRow {
                    installation_id: 1,
                    repository_id: 2,
                    run_id: n,
                    attempt: 1,
                    run_number: 1,
                    workflow_id: 1,
                    workflow: "ci".into(),
                    lane: "main".into(),
                    branch: "main".into(),
                    head_sha: String::new(),
                    event: "push".into(),
                    conclusion: "failure".into(),
                    kind: "bogus".into(),
                    started_at: 0,
                    completed_at: 0,
                    failed_jobs: "[]".into(),
                    incident_branch: 1,
                }))));
            }
            Ok(Handled::ok(effects))
        }
    });
    let mut opts = with_registry(reg);
    opts.clock = Clock::system();
    let app = TestApp::start(db, opts).await;
    let base: serde_json::Value = serde_json::from_str(&fixture("issue_comment.created.0")).unwrap();
    for n in 0..10 {
        let mut v = base.clone();
        v["comment"]["id"] = serde_json::json!(n);
        v["issue"]["number"] = serde_json::json!(100 + n); // ten subjects: all run at once
        assert_eq!(app.deliver("issue_comment", &format!("group-{n}"), &v.to_string()).await, 202);
    }
    common::drain(&app.db, Duration::from_secs(30)).await;
    for n in 0..10 {
        let row = deliveries::find(&app.db, &format!("group-{n}")).await.unwrap().unwrap();
        let want = if n % 2 == 1 { 2 } else { 1 };
        assert_eq!((row.state.as_str(), row.attempts), ("done", want), "delivery {n}");
    }
    let approvals = shipgate::store::requests::approvals(&app.db, 1, 2, 3).await.unwrap();
    assert_eq!(approvals.len(), 10);
    assert!(approvals.iter().all(|a| a.state == "active"));
    // (The test's handler saves approvals without the audit entries the App's own would write.)
    app.shutdown_unchecked().await;
}
both_backends!(a_failing_effect_spoils_only_its_own_delivery_in_a_group_commit);

/// A subject with a long backlog (a busy pull request, or GitHub catching up): each claim asks
/// whether another row of the subject is running, and that must be a seek into the few running
/// rows, not a read of every pending row of the subject (9 ms per claim at 21,000 rows, which held
/// the SQLite writer and PostgreSQL's CPU; docs/benchmarks.md).
async fn a_claim_seeks_running_rows_instead_of_reading_the_backlog(db: &TestDb) {
    use shipgate::store::Backend;
    use shipgate::store::deliveries::{NewDelivery, QUEUE};
    use sqlx::Row;
    let db = db.connect().await;
    let rows: Vec<NewDelivery> = (0..2000).map(|i| common::delivery(&format!("backlog-{i}"), "acme/app#7")).collect();
    deliveries::insert_batch(&db, &rows.iter().collect::<Vec<_>>()).await.expect("insert");
    let claimed = deliveries::claim(&db, "w1", 10_000, 60_000, 8).await.expect("claim");
    assert_eq!(claimed.len(), 1, "one row of a subject at a time");
    let sql = QUEUE.claim_sql(db.backend());
    // SQLite's EXPLAIN QUERY PLAN puts each step in its 4th column, PostgreSQL's EXPLAIN in its only one.
    let (explain, column) = match db.backend() {
        Backend::Sqlite => ("EXPLAIN QUERY PLAN", 3),
        Backend::Postgres => {
            sqlx::query("ANALYZE deliveries").execute(db.pool()).await.expect("analyze");
            ("EXPLAIN", 0)
        }
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{explain} {sql}")))
        .bind("w2")
        .bind(80_000i64)
        .bind(20_000i64)
        .bind(8i64)
        .fetch_all(db.pool())
        .await
        .expect("plan");
    let plan: Vec<String> = rows.iter().map(|r| r.try_get::<String, _>(column).expect("plan text")).collect();
    let plan = plan.join("\n");
    assert!(plan.contains("deliveries_running"), "the running-row check reads the backlog:\n{plan}");
    // The case the check is for (PostgreSQL's concurrent writers): a younger row of the subject
    // runs while an older one is ready. The older one waits while the lease lives, not after.
    for sql in [
        "UPDATE deliveries SET state = 'done', finished_at = 1, lease_owner = NULL, lease_until = NULL WHERE id = 'backlog-0'",
        "UPDATE deliveries SET state = 'running', lease_owner = 'w1', lease_until = 70000 WHERE id = 'backlog-5'",
        "UPDATE deliveries SET blocked = 0 WHERE id = 'backlog-1'",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(db.pool()).await.expect("set up");
    }
    let again = deliveries::claim(&db, "w2", 20_000, 60_000, 8).await.expect("claim");
    assert!(again.is_empty(), "the older row waits while a younger one of its subject runs: {again:?}");
    let later = deliveries::claim(&db, "w2", 70_001, 60_000, 8).await.expect("claim");
    let ids: Vec<&str> = later.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["backlog-1"], "once the younger row's lease is over");
}
both_backends!(a_claim_seeks_running_rows_instead_of_reading_the_backlog);

/// Waiting rows left without a head (on PostgreSQL a finish and an insert can race) are readied:
/// the oldest waiting row of such a subject, and only it; a subject with a ready row before its
/// waiting ones is left alone.
async fn waiting_rows_left_without_a_head_are_readied(db: &TestDb) {
    use shipgate::store::deliveries::QUEUE;
    let db = db.connect().await;
    let d = common::delivery;
    let rows = [d("a1", "a"), d("a2", "a"), d("a3", "a"), d("b1", "b"), d("b2", "b"), d("c1", "c"), d("c2", "c")];
    deliveries::insert_batch(&db, &rows.iter().collect::<Vec<_>>()).await.expect("insert");
    // a: its head finished without readying the next (the race); c: its younger row got ready
    // first, the older one still waits.
    sqlx::query("UPDATE deliveries SET state = 'done', finished_at = 2 WHERE id = 'a1'")
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE deliveries SET blocked = CASE id WHEN 'c1' THEN 1 ELSE 0 END WHERE subject = 'c'")
        .execute(db.pool())
        .await
        .unwrap();
    let readied = QUEUE.ready_orphans(&db).await.expect("ready orphans");
    assert_eq!(readied, 2);
    let blocked: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, blocked FROM deliveries WHERE state = 'pending' ORDER BY seq")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let want: Vec<(String, i64)> = [("a2", 0), ("a3", 1), ("b1", 0), ("b2", 1), ("c1", 0), ("c2", 0)]
        .iter()
        .map(|(i, b)| (i.to_string(), *b))
        .collect();
    assert_eq!(blocked, want);
    assert_eq!(QUEUE.ready_orphans(&db).await.expect("again"), 0, "nothing left to ready");
}
both_backends!(waiting_rows_left_without_a_head_are_readied);

/// PostgreSQL's concurrent writers can leave two ready rows of one subject: X (older, its insert
/// committed late) and Y. A replica claims Y; before that claim commits, X commits and another
/// replica claims. That second claim must not see Y as merely pending and take X beside it: it
/// sees the first claim, whatever the timing (claims of one queue are serialized, each reading
/// what the ones before it committed). Found by `two_processes_share_the_work_…` in CI: two
/// deliveries of one issue ran 10 ms apart. On SQLite every write is serial: the same steps
/// cannot interleave, and the test checks the outcome the serial order gives.
async fn a_claim_sees_a_concurrent_claim_of_its_subject(db: &TestDb) {
    use shipgate::store::Backend;
    use shipgate::store::deliveries::{Claimed, QUEUE};
    let db = db.connect().await;
    let d = common::delivery;
    let (x, y) = (d("race-x", "acme/app#9"), d("race-y", "acme/app#9"));
    if db.backend() == Backend::Sqlite {
        deliveries::insert_batch(&db, &[&x, &y]).await.expect("insert");
        let first = deliveries::claim(&db, "b", 10_000, 60_000, 8).await.expect("claim");
        assert_eq!(first.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["race-x"]);
        assert!(deliveries::claim(&db, "a", 10_000, 60_000, 8).await.expect("claim").is_empty());
        return;
    }
    // X's insert takes its seq first but commits last.
    let mut tx_x = db.begin_write().await.expect("begin");
    deliveries::insert_batch_in(&mut tx_x, &[&x]).await.expect("insert x");
    deliveries::insert_batch(&db, &[&y]).await.expect("insert y");
    // Replica B claims Y (X is not visible to it) and has not committed yet.
    let mut tx_b = db.begin_write().await.expect("begin");
    let b: Vec<Claimed> = QUEUE.claim_in(&mut tx_b, db.backend(), "b", 10_000, 60_000, 8).await.expect("claim b");
    assert_eq!(b.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["race-y"]);
    tx_x.commit().await.expect("commit x");
    // Replica A claims now; B commits a moment later.
    let a = tokio::spawn({
        let db = db.clone();
        async move { deliveries::claim(&db, "a", 10_000, 60_000, 8).await.expect("claim a") }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx_b.commit().await.expect("commit b");
    let a = a.await.expect("claim a");
    let running = count(&db, "SELECT COUNT(*) FROM deliveries WHERE state = 'running'").await;
    assert!(a.is_empty(), "X was claimed while Y of its subject was being claimed: {a:?}, {running} running");
}
both_backends!(a_claim_sees_a_concurrent_claim_of_its_subject);

/// A delivery stored behind its subject's running head while that head finishes is claimable at
/// once, not when the heartbeat next readies orphans (10 s by default: CI saw a tenancy test's
/// `installation` delivery wait that long on PostgreSQL). Under read committed the finish does
/// not see the row being committed beside it; the intake settles the row after its commit.
async fn a_row_stored_while_its_head_finishes_is_claimable_at_once(db: &TestDb) {
    use shipgate::store::Backend;
    let db = db.connect().await;
    let d = common::delivery;
    let ids = |c: &[deliveries::Claimed]| c.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    let (x, y, z) = (d("head-x", "acme/app#7"), d("next-y", "acme/app#7"), d("next-z", "acme/app#7"));
    deliveries::insert_batch(&db, &[&x]).await.expect("insert x");
    let cx = deliveries::claim(&db, "w", 10_000, 60_000, 8).await.expect("claim x");
    assert_eq!(ids(&cx), ["head-x"]);
    if db.backend() == Backend::Sqlite {
        // One writer: the insert and the finish run one after the other.
        deliveries::insert_batch(&db, &[&y]).await.expect("insert y");
        let mut tx = db.begin_write().await.expect("begin");
        assert!(deliveries::complete(&mut tx, &cx[0], "w", 10_000, 10_001, "ok").await.expect("finish x"));
        tx.commit().await.expect("commit");
        assert_eq!(ids(&deliveries::claim(&db, "w", 10_002, 60_000, 8).await.expect("claim")), ["next-y"]);
        return;
    }
    // Y's insert sees X running (Y waits) and commits after X's finish ran.
    let mut tx_y = db.begin_write().await.expect("begin");
    let inserted = deliveries::insert_batch_ready(&mut tx_y, &[&y]).await.expect("insert y");
    assert_eq!(inserted.waiting, ["acme/app#7"]);
    let mut tx_x = db.begin_write().await.expect("begin");
    assert!(deliveries::complete(&mut tx_x, &cx[0], "w", 10_000, 10_001, "ok").await.expect("finish x"));
    tx_x.commit().await.expect("commit x");
    tx_y.commit().await.expect("commit y");
    // The race itself: nothing readied Y.
    assert!(deliveries::claim(&db, "w", 10_002, 60_000, 8).await.expect("claim").is_empty(), "the race did not happen");
    assert!(deliveries::settle(&db, &inserted.waiting).await.expect("settle"), "Y was not readied");
    let cy = deliveries::claim(&db, "w", 10_003, 60_000, 8).await.expect("claim y");
    assert_eq!(ids(&cy), ["next-y"]);

    // The head's finish still in flight when the intake settles: the settling waits for it.
    let mut tx_z = db.begin_write().await.expect("begin");
    let inserted = deliveries::insert_batch_ready(&mut tx_z, &[&z]).await.expect("insert z");
    let mut tx_y = db.begin_write().await.expect("begin");
    assert!(deliveries::complete(&mut tx_y, &cy[0], "w", 10_004, 10_005, "ok").await.expect("finish y"));
    tx_z.commit().await.expect("commit z");
    let settling = tokio::spawn({
        let (db, waiting) = (db.clone(), inserted.waiting.clone());
        async move { deliveries::settle(&db, &waiting).await.expect("settle") }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!settling.is_finished(), "the settling did not wait for the finish in flight");
    tx_y.commit().await.expect("commit y");
    assert!(settling.await.expect("settle"), "Z was not readied");
    assert_eq!(ids(&deliveries::claim(&db, "w", 10_006, 60_000, 8).await.expect("claim z")), ["next-z"]);
}
both_backends!(a_row_stored_while_its_head_finishes_is_claimable_at_once);

/// The same race in the outbox: an action stored (by the worker's commit) behind its subject's
/// head while the relay finishes that head is readied once the commit settles it.
async fn an_action_stored_while_its_head_finishes_is_claimable_at_once(db: &TestDb) {
    use shipgate::github::actions::Action;
    use shipgate::store::{Backend, outbox};
    let db = db.connect().await;
    let comment = |body: &str| Action::UpsertComment {
        repo: "acme/app".into(),
        issue: 7,
        marker: format!("m-{body}"),
        body: body.into(),
    };
    let claim = |at: i64| {
        let db = db.clone();
        async move { outbox::QUEUE.claim::<outbox::Claimed>(&db, "r", at, 60_000, 8).await.expect("claim") }
    };
    let mut tx = db.begin_write().await.expect("begin");
    outbox::enqueue(&mut tx, 1, "a", &comment("a"), None, 1_000).await.expect("enqueue a");
    tx.commit().await.expect("commit");
    let a = claim(1_001).await;
    assert_eq!(a.len(), 1);
    let mut tx_b = db.begin_write().await.expect("begin");
    outbox::enqueue(&mut tx_b, 1, "b", &comment("b"), None, 2_000).await.expect("enqueue b");
    if db.backend() == Backend::Sqlite {
        tx_b.commit().await.expect("commit b");
        assert!(outbox::finish(&db, &a[0], "r", "done", "ok", 2_001).await.expect("finish a"));
        assert_eq!(claim(2_002).await.len(), 1, "b follows a");
        return;
    }
    assert!(outbox::finish(&db, &a[0], "r", "done", "ok", 2_001).await.expect("finish a"));
    tx_b.commit().await.expect("commit b");
    assert!(claim(2_002).await.is_empty(), "the race did not happen");
    assert!(outbox::settle(&db, 2_000).await.expect("settle"), "b was not readied");
    assert_eq!(claim(2_003).await.len(), 1, "b follows a");
}
both_backends!(an_action_stored_while_its_head_finishes_is_claimable_at_once);
