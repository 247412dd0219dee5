//! Event storms (issue 14): fifty check runs completing on a request's PR head within a short
//! time cost a bounded number of evaluations and GitHub calls, and end in the same verdict as
//! evaluating every event would.

mod common;
mod fake_github;
mod world;

use std::time::Duration;

use common::TestDb;
use serde_json::json;
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
        c.coalesce.quiet = Duration::from_millis(400);
        c.coalesce.verdict_within = Duration::from_millis(2_000);
        c.coalesce.refresh_within = Duration::from_millis(6_000);
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
    gate_becomes(&w, "success", Duration::from_secs(20)).await;
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
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
    gate_becomes(&w, "success", Duration::from_secs(20)).await;
    assert!(row(&w.sticky(), "Tests").contains("✅"));
    w.done().await;
}
both_backends!(a_failure_mid_storm);

/// What a check event says is never taken for a fact: a status claiming success for the name of
/// a failed check run, followed at once by the approval that completes the request, does not
/// open the gate before (or after) the App reads the checks again.
async fn a_folded_event_is_not_a_fact(db: &TestDb) {
    let w = World::with_config(db, POLICY, |c| {
        // Long enough that the approval below is handled while the evaluation waits.
        c.coalesce.quiet = Duration::from_millis(1_500);
        c.coalesce.verdict_within = Duration::from_millis(3_000);
        c.coalesce.refresh_within = Duration::from_millis(3_000);
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
