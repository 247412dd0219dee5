//! Event storms (issue 14): fifty check runs completing on a request's PR head within a short
//! time cost a bounded number of evaluations and GitHub calls, and end in the same verdict as
//! evaluating every event would.

mod common;
mod fake_github;
mod world;

use std::time::Duration;

use common::TestDb;
use serde_json::{Value, json};
use shipgate::handlers::requests::RECHECK_EVENT;
use world::*;

/// The evaluations the App has made of request #5 (recheck deliveries that evaluated).
async fn evaluations(w: &World) -> usize {
    shipgate::store::deliveries::list(&w.app.db, Some("done"), 100_000)
        .await
        .expect("list")
        .into_iter()
        .filter(|d| d.event == RECHECK_EVENT && d.outcome.as_deref() == Some("ok"))
        .count()
}

fn calls(w: &World) -> usize {
    w.gh.call_counts().values().sum()
}

/// A `check_suite` or `workflow_run` completed on `sha`, as GitHub sends after a workflow's jobs.
async fn suite_completed(w: &World, sha: &str) {
    let mut v = w.base("check_suite.completed.0");
    v["check_suite"]["head_sha"] = json!(sha);
    v["check_suite"]["conclusion"] = json!("success");
    assert_eq!(w.app.deliver("check_suite", &w.id(), &v.to_string()).await, 202);
    let mut v = w.base("workflow_run.completed.0");
    v["workflow_run"]["head_sha"] = json!(sha);
    v["workflow_run"]["head_branch"] = json!("feature");
    v["workflow_run"]["conclusion"] = json!("success");
    assert_eq!(w.app.deliver("workflow_run", &w.id(), &v.to_string()).await, 202);
}

/// An approved request whose PR head has `n` queued check runs.
async fn approved_with_queued_checks(db: &TestDb, n: usize) -> World {
    let w = World::with_config(db, POLICY, |c| {
        // The production quiet and verdict deadline: the burst (about a second here) is
        // coalesced however slowly a loaded machine delivers it (a 400 ms quiet split it under
        // CI's load). Display-only news within 15 s rather than 60: a test that leaves such news
        // behind waits that long to settle (which gives up after 40 s). Not less: on a loaded
        // machine the storm itself can last many seconds, and a 5 s refresh deadline then fired
        // mid-storm once every 5 s (6 evaluations seen).
        c.coalesce = Default::default();
        c.coalesce.refresh_within = Duration::from_secs(15);
    })
    .await;
    for i in 0..n {
        w.gh.ci(REPO, SHA, &format!("job-{i:02}"), "queued", None);
    }
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    let c = w.sticky();
    assert!(row(&c, "Approvals").contains("✅"), "{c}");
    assert!(row(&c, "Tests").contains("⏳"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    w
}

/// Waits until the gate check run on SHA concludes `want`, or fails after `within`.
async fn gate_becomes(w: &World, want: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        w.settle().await;
        if w.gh.gate_checks(REPO, SHA).first().is_some_and(|r| r.1 == want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gate did not become {want}: {:?}",
            w.gh.gate_checks(REPO, SHA)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fifty green check runs within a short burst: the gate opens once they are all green, after at
/// most 3 evaluations and 30 GitHub calls for the whole storm.
async fn fifty_green_checks(db: &TestDb) {
    let w = approved_with_queued_checks(db, 50).await;
    let (calls0, evals0) = (calls(&w), evaluations(&w).await);
    for i in 0..50 {
        w.check_completed(SHA, &format!("job-{i:02}"), "success").await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    suite_completed(&w, SHA).await;
    gate_becomes(&w, "success", Duration::from_secs(40)).await;
    let c = w.sticky();
    assert!(row(&c, "Tests").contains("✅"), "{c}");
    assert!(c.contains("The gate is open"), "{c}");
    let (spent, evals) = (calls(&w) - calls0, evaluations(&w).await - evals0);
    eprintln!("storm of 50 green checks: {evals} evaluations, {spent} GitHub calls");
    assert!(evals <= 3, "{evals} evaluations for one storm");
    assert!(spent <= 30, "{spent} GitHub calls for one storm: {:?}", w.gh.call_counts());
    w.done().await;
}
both_backends!(fifty_green_checks);

/// A failure in the middle of the storm closes nothing that was open, is shown, and the gate
/// never opens while the failed check stays red, however many green ones follow.
async fn a_failure_mid_storm(db: &TestDb) {
    let w = approved_with_queued_checks(db, 50).await;
    let (calls0, evals0) = (calls(&w), evaluations(&w).await);
    for i in 0..50 {
        let conclusion = if i == 20 { "failure" } else { "success" };
        w.check_completed(SHA, &format!("job-{i:02}"), conclusion).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    suite_completed(&w, SHA).await;
    w.settle().await;
    // Every event's effect is in: the last evaluation saw every check.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        w.settle().await;
        let c = w.sticky();
        if row(&c, "Tests").contains("`job-20` failure") && !row(&c, "Tests").contains("queued") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the failure was never shown: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(w.gate(SHA).0, "success");
    let (spent, evals) = (calls(&w) - calls0, evaluations(&w).await - evals0);
    eprintln!("storm of 50 checks, one red: {evals} evaluations, {spent} GitHub calls");
    assert!(evals <= 3, "{evals} evaluations for one storm");
    assert!(spent <= 30, "{spent} GitHub calls for one storm: {:?}", w.gh.call_counts());

    // The failed job is re-run and goes green: the gate opens.
    w.check_completed(SHA, "job-20", "success").await;
    gate_becomes(&w, "success", Duration::from_secs(40)).await;
    assert!(row(&w.sticky(), "Tests").contains("✅"));
    w.done().await;
}
both_backends!(a_failure_mid_storm);

/// What a check event says is never taken for a fact: a status claiming success for the name of
/// a failed check run, followed at once by the approval that completes the request, does not
/// open the gate before (or after) the App reads the checks again.
async fn a_folded_event_is_not_a_fact(db: &TestDb) {
    let w = World::with_config(db, POLICY, |c| {
        // Long enough that the approval below is handled while the evaluation waits, on a
        // loaded machine too (1.5 s was not, once, under the whole suite on PostgreSQL; 5 s
        // was not, once, with every storm test at once on PostgreSQL on a 2-core machine).
        c.coalesce.quiet = Duration::from_millis(9_000);
        c.coalesce.verdict_within = Duration::from_millis(12_000);
        c.coalesce.refresh_within = Duration::from_millis(12_000);
    })
    .await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("failure"));
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    w.comment(BOB, "/approve").await;
    w.settle().await;
    assert!(row(&w.sticky(), "Tests").contains("`build` failure"));

    // Someone with write access posts a green status named like the red check run.
    w.gh.model().statuses.push((REPO.into(), SHA.into(), "build".into(), "success".into()));
    let mut v = w.base("status.none.0");
    v["sha"] = json!(SHA);
    v["context"] = json!("build");
    v["state"] = json!("success");
    assert_eq!(w.app.deliver("status", &w.id(), &v.to_string()).await, 202);
    // The status is folded (its evaluation waits for the burst to be quiet) before the approval
    // comes: the case under test. (Without this wait the approval could be handled first, once
    // the gate's calls stopped queuing behind reactions.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while shipgate::store::rechecks::count(&w.app.db).await.unwrap() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the status was never folded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let alice = w.comment(ALICE, "/approve").await;
    w.gh.wait_for("alice's approval", Duration::from_secs(20), |m| {
        m.comments.iter().any(|c| c.id == alice && !c.reactions.is_empty())
    })
    .await;
    assert_eq!(w.reactions(alice), vec!["+1"]);
    let due = shipgate::store::rechecks::count(&w.app.db).await.unwrap();
    assert_eq!(due, 1, "the folded event's evaluation was still waiting when the approval came");
    assert_ne!(w.gate(SHA).0, "success", "the gate opened on a folded event");
    w.settle().await;
    assert_ne!(w.gate(SHA).0, "success");
    let c = w.sticky();
    assert!(row(&c, "Tests").contains("`build` failure"), "{c}");
    assert!(!c.contains("The gate is open"), "{c}");
    w.done().await;
}
both_backends!(a_folded_event_is_not_a_fact);

// An attacker's review of the folding (each test failed on its first version).

fn policy(mode: &str) -> String {
    deploy_policy(mode)
}

/// Commit status `context` on `sha` is now `state` (replacing the earlier one, as GitHub's
/// combined status shows the latest per context), and GitHub's `status` event.
async fn set_status(w: &World, sha: &str, context: &str, state: &str) {
    {
        let mut m = w.gh.model();
        m.statuses.retain(|(r, s, c, _)| !(r == REPO && s == sha && c == context));
        m.statuses.push((REPO.into(), sha.into(), context.into(), state.into()));
    }
    let mut v = w.base("status.none.0");
    v["sha"] = json!(sha);
    v["context"] = json!(context);
    v["state"] = json!(state);
    assert_eq!(w.app.deliver("status", &w.id(), &v.to_string()).await, 202);
}

fn created(w: &World) -> Vec<Value> {
    w.gh.model()
        .deployments
        .iter()
        .filter(|(r, d)| r == REPO && d["payload"]["shipgate_key"].is_string())
        .map(|(_, d)| d.clone())
        .collect()
}

/// A check run and a commit status with the same name (`ci`): the run is green, the status
/// pending. The status goes green: every check is green, the gate must open (it did when every
/// event was evaluated).
async fn a_status_named_like_a_check_run_opens_the_gate(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule")).await;
    w.gh.ci(REPO, SHA, "ci", "completed", Some("success"));
    w.gh.model().statuses.push((REPO.into(), SHA.into(), "ci".into(), "pending".into()));
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert!(row(&w.sticky(), "Tests").contains("`ci` is in progress"), "{}", w.sticky());
    assert_ne!(w.gate(SHA).0, "success");

    set_status(&w, SHA, "ci", "success").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "the gate never opened:\n{}", w.sticky());
    assert!(w.sticky().contains("The gate is open"));
    w.done().await;
}
both_backends!(a_status_named_like_a_check_run_opens_the_gate);

/// The gate is open; a second check starts on the head (GitHub routes no event for a start) and a
/// quick one completes green. The completed event used to make the App read the head's checks and
/// close the gate; now it is folded in as "nothing", the App never reads, and `/deploy` creates a
/// deployment while `e2e` is still running.
async fn a_green_event_on_an_open_gate_still_reads_the_checks(db: &TestDb) {
    let w = World::with_policy(db, &policy("deployment")).await;
    w.check_completed(SHA, "build", "success").await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());

    w.gh.ci(REPO, SHA, "e2e", "in_progress", None);
    w.check_completed(SHA, "lint", "success").await;
    w.settle().await;
    let gate = w.gate(SHA).0;
    let sticky = w.sticky();
    w.comment(ALICE, "/deploy").await;
    w.settle().await;
    let d = created(&w);
    assert!(d.is_empty(), "deployed while e2e runs: {d:?}\ngate {gate}\n{sticky}");
    assert_ne!(gate, "success", "{sticky}");
    w.assert_replied("the gate is closed (Tests: `e2e` is in progress on #12)");
    w.done().await;
}
both_backends!(a_green_event_on_an_open_gate_still_reads_the_checks);

/// Writes fail while reads work (SQLite disk full, a PostgreSQL failover to a read-only node,
/// a constraint): the coalescer retries a due row with no pause at all, warning each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coalescer_does_not_spin_when_writes_fail() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tracing::instrument::WithSubscriber;
    use tracing_subscriber::layer::SubscriberExt;

    struct Count(Arc<AtomicUsize>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
        fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            if *e.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    let tdb = TestDb::sqlite().await;
    let db = tdb.connect().await;
    let now = shipgate::clock::Clock::system().now_ms();
    let mut tx = db.begin_write().await.unwrap();
    let cfg = shipgate::domain::flow::signal::Coalesce::default();
    shipgate::store::rechecks::schedule(
        &mut tx,
        INST,
        REPO_ID,
        REPO,
        5,
        shipgate::domain::flow::signal::Significance::Closes,
        &cfg,
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // Every write of a coalesced delivery fails.
    sqlx::query(
        "CREATE TRIGGER no_room BEFORE INSERT ON deliveries WHEN NEW.id LIKE 'coalesced-%' \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
    )
    .execute(db.pool())
    .await
    .unwrap();

    let warnings = Arc::new(AtomicUsize::new(0));
    let sub = tracing_subscriber::registry().with(Count(warnings.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let timer = tokio::spawn(
        shipgate::queue::coalescer::run(
            db.clone(),
            shipgate::clock::Clock::system(),
            Arc::new(tokio::sync::Notify::new()),
            Duration::from_secs(1),
            stop_rx,
        )
        .with_subscriber(sub),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(true).unwrap();
    timer.await.unwrap();
    let n = warnings.load(Ordering::SeqCst);
    eprintln!("{n} failed rounds in 2 s");
    assert!(n <= 10, "{n} failed rounds in 2 s: the timer spins");
    tdb.cleanup().await;
}

/// Held: an event scheduled while the timer takes the row (PostgreSQL, two transactions).
async fn take_races_schedule(db: &TestDb) {
    use shipgate::domain::flow::signal::{Coalesce, Significance};
    use shipgate::store::rechecks;
    let d = db.connect().await;
    let cfg = Coalesce::default();
    let now = shipgate::clock::Clock::system().now_ms() - 5_000;
    let mut tx = d.begin_write().await.unwrap();
    rechecks::schedule(&mut tx, INST, REPO_ID, REPO, 5, Significance::Verdict, &cfg, now).await.unwrap();
    tx.commit().await.unwrap();
    let due = rechecks::due(&d, now + 3_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    // An event moves the row; the timer tries to take it meanwhile.
    let mut tx = d.begin_write().await.unwrap();
    rechecks::schedule(&mut tx, INST, REPO_ID, REPO, 5, Significance::Display, &cfg, now + 3_000).await.unwrap();
    let d2 = d.clone();
    let row = due[0].clone();
    let taker = tokio::spawn(async move {
        let mut tx = d2.begin_write().await.unwrap();
        let took = rechecks::take(&mut tx, &row).await.unwrap();
        tx.commit().await.unwrap();
        took
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    assert!(!taker.await.unwrap(), "a row that moved was taken");
    assert_eq!(rechecks::count(&d).await.unwrap(), 1);
    // Taken first, then an event that read the old row: the new row keeps the old deadline.
    let due = rechecks::due(&d, now + 10_000, 10).await.unwrap();
    let mut tx = d.begin_write().await.unwrap();
    assert!(rechecks::take(&mut tx, &due[0]).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(rechecks::count(&d).await.unwrap(), 0);
}
both_backends!(take_races_schedule);
