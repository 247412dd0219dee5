//! Deploying the way teams deploy (SPEC.md §3.5, issue 13): the PR is merged, `main` is deployed.
//! A request covers its PR heads and, once they are merged, the merge commit on the base branch,
//! with the approvals given for the heads it contains. Real payloads (edited) through the real
//! router; the fake GitHub answers like GitHub, including the test-merge SHA of an open PR.

mod common;
mod fake_github;
mod world;

use common::TestDb;
use serde_json::json;
use world::*;

/// The commit the merge of PR #12 produced on `main` (merge, squash or rebase: GitHub reports each
/// as the PR's `merge_commit_sha`).
const MERGED: &str = "dddddddddddddddddddddddddddddddddddddd4d";
/// What GitHub reports as `merge_commit_sha` while the PR is open: a test merge, never covered.
const TEST_MERGE: &str = "ffffffffffffffffffffffffffffffffffffffff";

fn policy(mode: &str, staging_first: bool) -> String {
    format!(
        r#"
label: DEPLOYMENT_REQUEST
roles:
  pm: {{ users: [alice] }}
environments:
  production:
    approvals:
      - role: pm
    require_checks: all
    require_staging_first: {staging_first}
    deploy: {mode}
  staging:
    approvals: []
"#
    )
}

async fn requested(w: &World) {
    w.check_completed(SHA, "build", "success").await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
}

async fn approved(w: &World) {
    requested(w).await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
}

/// PR #12 is merged into `main` as MERGED, and GitHub says so (`pull_request` `closed`).
async fn merged(w: &World) {
    w.gh.merge_pull(REPO, 12, MERGED);
    let mut v = w.base("pull_request.closed.0");
    v["number"] = json!(12);
    v["pull_request"]["number"] = json!(12);
    v["pull_request"]["merged"] = json!(true);
    v["pull_request"]["merge_commit_sha"] = json!(MERGED);
    v["pull_request"]["head"]["sha"] = json!(SHA);
    assert_eq!(w.app.deliver("pull_request", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
}

/// The seed's template: a push to `main` runs `deploy-production`, which waits on the App's
/// protection rule for the merge commit.
async fn waiting_run(w: &World, run: i64, sha: &str) {
    w.protection_rule(run, "production", sha).await;
    w.settle().await;
}

/// What the App answered run `run`: (approved | rejected | report, comment).
fn answers(w: &World, run: i64) -> Vec<(String, String)> {
    w.gh.model()
        .protection_reviews
        .iter()
        .filter(|(r, id, _)| r == REPO && *id == run)
        .map(|(_, _, b)| {
            (b["state"].as_str().unwrap_or("report").to_string(), b["comment"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

/// Merge, squash and rebase merges alike: GitHub reports the commit each produced on `main` as the
/// PR's `merge_commit_sha` (a merge commit, the squashed commit, the last rebased commit).
async fn merged_as_is_approved_at_once(db: &TestDb, kind: &str, merged_as: &str, run: i64) {
    let w = World::with_policy(db, &policy("protection_rule", false)).await;
    approved(&w).await;
    w.gh.merge_pull(REPO, 12, merged_as);
    let mut v = w.base("pull_request.closed.0");
    v["number"] = json!(12);
    v["pull_request"]["number"] = json!(12);
    v["pull_request"]["merged"] = json!(true);
    v["pull_request"]["merge_commit_sha"] = json!(merged_as);
    v["pull_request"]["head"]["sha"] = json!(SHA);
    assert_eq!(w.app.deliver("pull_request", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains(&format!("Merged: merged as `{}` is covered too", &merged_as[..7])), "{kind}: {c}");
    waiting_run(&w, run, merged_as).await;
    let a = answers(&w, run);
    assert_eq!(a.len(), 1, "{kind}: {a:?}");
    assert_eq!(a[0].0, "approved", "{kind}: {a:?}");
    assert!(a[0].1.contains(&merged_as[..7]), "{kind}: {a:?}");
    w.sticky();
    w.done().await;
}

async fn the_merge_commit_of_an_approved_request_is_approved_at_once(db: &TestDb) {
    merged_as_is_approved_at_once(db, "merge", MERGED, 801).await;
}
both_backends!(the_merge_commit_of_an_approved_request_is_approved_at_once);

async fn a_squash_merge_commit_is_approved_at_once(db: &TestDb) {
    merged_as_is_approved_at_once(db, "squash", "5555555555555555555555555555555555555555", 811).await;
}
both_backends!(a_squash_merge_commit_is_approved_at_once);

async fn a_rebase_merges_last_commit_is_approved_at_once(db: &TestDb) {
    merged_as_is_approved_at_once(db, "rebase", "7777777777777777777777777777777777777777", 821).await;
}
both_backends!(a_rebase_merges_last_commit_is_approved_at_once);

async fn approvals_after_the_merge_open_the_waiting_run(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule", false)).await;
    requested(&w).await;
    merged(&w).await;
    waiting_run(&w, 802, MERGED).await;
    let a = answers(&w, 802);
    assert_eq!(a.len(), 1, "held, with what is missing: {a:?}");
    assert_eq!(a[0].0, "report");
    assert!(a[0].1.contains("pm"), "{a:?}");
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    let a = answers(&w, 802);
    assert_eq!(a.last().map(|x| x.0.as_str()), Some("approved"), "{a:?}");
    w.sticky();
    w.done().await;
}
both_backends!(approvals_after_the_merge_open_the_waiting_run);

async fn a_push_before_the_merge_leaves_the_merge_commit_unapproved(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule", false)).await;
    approved(&w).await;
    // A push after the approval, before the merge: the approval is stale, for the head and for
    // the merge commit that contains the new head.
    w.push_to_pr(SHA2).await;
    w.settle().await;
    w.gh.ci(REPO, SHA2, "build", "completed", Some("success"));
    merged(&w).await;
    waiting_run(&w, 803, MERGED).await;
    let a = answers(&w, 803);
    assert!(a.iter().all(|x| x.0 == "report"), "{a:?}");
    assert_eq!(w.gate(SHA2).0, "action_required", "{}", w.sticky());
    w.sticky();
    w.done().await;
}
both_backends!(a_push_before_the_merge_leaves_the_merge_commit_unapproved);

async fn staging_first_is_met_by_the_merge_commit_on_staging(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule", true)).await;
    approved(&w).await;
    merged(&w).await;
    assert!(row(&w.sticky(), "Staging first").contains("⏳"), "{}", w.sticky());
    waiting_run(&w, 804, MERGED).await;
    assert!(answers(&w, 804).iter().all(|x| x.0 == "report"));
    // The pipeline deploys `main` (the merge commit) to staging first.
    let mut v = w.base("deployment_status.created.0");
    v["deployment_status"]["id"] = json!(9001);
    v["deployment"]["id"] = json!(960);
    v["deployment"]["sha"] = json!(MERGED);
    v["deployment"]["environment"] = json!("staging");
    v["deployment"]["payload"] = json!({});
    v["deployment"]["creator"] = fake_github::actions_creator();
    v["deployment"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["creator"] = fake_github::actions_creator();
    v["deployment_status"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["state"] = json!("success");
    v["deployment_status"]["environment"] = json!("staging");
    v["deployment_status"]["created_at"] = json!("2026-12-01T10:05:00Z");
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    assert!(row(&w.sticky(), "Staging first").contains("✅"), "{}", w.sticky());
    assert_eq!(answers(&w, 804).last().map(|x| x.0.as_str()), Some("approved"));
    w.sticky();
    w.done().await;
}
both_backends!(staging_first_is_met_by_the_merge_commit_on_staging);

async fn deploy_after_the_merge_deploys_the_merge_commit(db: &TestDb) {
    let w = World::with_policy(db, &policy("deployment", false)).await;
    approved(&w).await;
    merged(&w).await;
    w.comment(ALICE, "/deploy").await;
    w.settle().await;
    let refs: Vec<String> =
        w.gh.model()
            .deployments
            .iter()
            .filter(|(r, d)| r == REPO && d["payload"]["shipgate_key"].is_string())
            .map(|(_, d)| d["ref"].as_str().unwrap_or_default().to_string())
            .collect();
    assert_eq!(refs, vec![MERGED.to_string()]);
    w.sticky();
    w.done().await;
}
both_backends!(deploy_after_the_merge_deploys_the_merge_commit);

async fn a_missed_merge_event_is_found_from_the_waiting_commit(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule", false)).await;
    approved(&w).await;
    // Merged on GitHub, but the `closed` delivery never arrived.
    w.gh.merge_pull(REPO, 12, MERGED);
    waiting_run(&w, 805, MERGED).await;
    let a = answers(&w, 805);
    assert_eq!(a.last().map(|x| x.0.as_str()), Some("approved"), "{a:?}");
    w.sticky();
    w.done().await;
}
both_backends!(a_missed_merge_event_is_found_from_the_waiting_commit);

async fn an_open_prs_test_merge_commit_is_never_covered(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule", false)).await;
    approved(&w).await;
    // GitHub fills `merge_commit_sha` for an open PR with a test merge; a run for it is not ours.
    waiting_run(&w, 806, TEST_MERGE).await;
    let a = answers(&w, 806);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].0, "report");
    assert!(!a.iter().any(|x| x.0 == "approved"));
    w.sticky();
    w.done().await;
}
both_backends!(an_open_prs_test_merge_commit_is_never_covered);

// ---- review2 ---------------------------------------------------------------------------------

/// A writer changes the approved PR's base to a branch of their own (`evil`, = main + an unreviewed
/// commit) and merges it there: the head is unchanged, so the approvals stay current, and the merge
/// commit (evil + the approved change) must not be covered: it is not on the environment's branch.
async fn a_merge_into_another_branch_is_not_covered(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule", false)).await;
    approved(&w).await;
    w.gh.retarget_pull(REPO, 12, "evil");
    merged(&w).await;
    waiting_run(&w, 807, MERGED).await;
    let a = answers(&w, 807);
    assert!(!a.iter().any(|x| x.0 == "approved"), "a merge into `evil` was approved: {a:?}");
    w.sticky();
    w.done().await;
}
both_backends!(a_merge_into_another_branch_is_not_covered);

/// The same with `/deploy` (deploy mode `deployment`): the App must not deploy the merge commit
/// on `evil`.
async fn deploy_never_deploys_a_merge_into_another_branch(db: &TestDb) {
    let w = World::with_policy(db, &policy("deployment", false)).await;
    approved(&w).await;
    w.gh.retarget_pull(REPO, 12, "evil");
    merged(&w).await;
    w.comment(ALICE, "/deploy").await;
    w.settle().await;
    let refs: Vec<String> =
        w.gh.model()
            .deployments
            .iter()
            .filter(|(r, d)| r == REPO && d["payload"]["shipgate_key"].is_string())
            .map(|(_, d)| d["ref"].as_str().unwrap_or_default().to_string())
            .collect();
    assert!(!refs.contains(&MERGED.to_string()), "deployed the merge into `evil`: {refs:?}");
    let _ = w.replies();
    let _ = w.gh.comments(REPO, 5);
    w.done().await;
}
both_backends!(deploy_never_deploys_a_merge_into_another_branch);

/// A request for #12 and #13; only #12 is merged. The run deploying its merge commit is found
/// through GET /commits/{sha}/pulls, the request is rechecked, does not cover it, and says nothing:
/// the run gets no status report at all (a commit nobody covers gets one).
async fn a_run_for_a_partly_merged_request_is_told_why_it_waits(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule", false)).await;
    w.gh.pull(REPO, 13, DAVE, SHA2, &["apps/backend/db.rs"]);
    w.check_completed(SHA, "build", "success").await;
    w.check_completed(SHA2, "build", "success").await;
    w.issue_event("labeled", &body("production", "#12, #13"), true).await;
    w.settle().await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    merged(&w).await;
    waiting_run(&w, 808, MERGED).await;
    let a = answers(&w, 808);
    assert!(!a.is_empty(), "the run was never told anything");
    assert!(!a.iter().any(|x| x.0 == "approved"), "{a:?}");
    w.sticky();
    w.done().await;
}
both_backends!(a_run_for_a_partly_merged_request_is_told_why_it_waits);
