//! Deploying through the gate (SPEC.md §3.5): deployment protection rules, `/deploy`, deployment
//! statuses, `/rollback` and staging first, end to end with real payloads (edited) through the
//! real router and the App's calls checked by the fake GitHub against GitHub's OpenAPI.

mod common;
mod fake_github;
mod world;

use common::TestDb;
use serde_json::{Value, json};
use world::*;

const OLD: &str = "cccccccccccccccccccccccccccccccccccccc03";

fn policy(mode: &str) -> String {
    deploy_policy(mode)
}

/// Request #5 for production linking PR #12 (head SHA), CI green, approved by the PM.
async fn approved(w: &World) {
    w.check_completed(SHA, "build", "success").await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());
}

/// A workflow run `run` waiting on the App's protection rule for `environment` and `sha`.
async fn protection_rule(w: &World, run: i64, environment: &str, sha: &str) {
    w.protection_rule(run, environment, sha).await
}

/// The answers the App sent for run `run`: (state or "report", comment).
fn reviews(w: &World, run: i64) -> Vec<(String, String)> {
    w.gh.model()
        .protection_reviews
        .iter()
        .filter(|(r, id, _)| r == REPO && *id == run)
        .map(|(_, _, b)| {
            assert_eq!(b["environment_name"], "production", "{b}");
            (b["state"].as_str().unwrap_or("report").to_string(), b["comment"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

static STATUS_IDS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(5000);

/// A `deployment_status` event: deployment `id` of `sha` to `environment` is now `state` at `at`
/// (status ids rise in the order statuses are sent).
async fn status(w: &World, id: i64, sha: &str, environment: &str, state: &str, at: &str, payload: Value) {
    let status_id = STATUS_IDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    status_with_id(w, id, sha, environment, state, at, payload, status_id).await
}

#[allow(clippy::too_many_arguments)]
async fn status_with_id(
    w: &World,
    id: i64,
    sha: &str,
    environment: &str,
    state: &str,
    at: &str,
    payload: Value,
    status_id: i64,
) {
    let mut v = w.base("deployment_status.created.0");
    v["deployment_status"]["id"] = json!(status_id);
    v["deployment"]["id"] = json!(id);
    v["deployment"]["sha"] = json!(sha);
    v["deployment"]["environment"] = json!(environment);
    v["deployment"]["payload"] = payload;
    v["deployment"]["created_at"] = json!("2026-11-29T10:00:00Z");
    // The team's pipeline: a GitHub Actions workflow (a deployment someone makes by hand with
    // their own token is never evidence: tests/attacks.rs).
    v["deployment"]["creator"] = fake_github::actions_creator();
    v["deployment"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["creator"] = fake_github::actions_creator();
    v["deployment_status"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["state"] = json!(state);
    v["deployment_status"]["environment"] = json!(environment);
    v["deployment_status"]["created_at"] = json!(at);
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
}

/// Request #5 approved and `/deploy`ed: the deployment the App created (id, payload).
async fn deploy_requested(w: &World) -> (i64, Value) {
    approved(w).await;
    w.comment(ALICE, "/deploy").await;
    w.settle().await;
    let (id, _, _, payload) = created(w).remove(0);
    (id, payload)
}

/// `secs` from now, in whole seconds, as RFC 3339.
fn secs_from_now(secs: i64) -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    chrono::DateTime::from_timestamp_millis((ms / 1000 + secs) * 1000).unwrap().to_rfc3339()
}

/// The deployments the App created: (id, ref, environment, payload).
fn created(w: &World) -> Vec<(i64, String, String, Value)> {
    w.gh.model()
        .deployments
        .iter()
        .filter(|(r, d)| r == REPO && d["payload"]["shipgate_key"].is_string())
        .map(|(_, d)| {
            (
                d["id"].as_i64().unwrap(),
                d["ref"].as_str().unwrap().to_string(),
                d["environment"].as_str().unwrap().to_string(),
                d["payload"].clone(),
            )
        })
        .collect()
}

async fn a_protection_rule_after_approval_is_approved_at_once(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule")).await;
    approved(&w).await;
    protection_rule(&w, 777, "production", SHA).await;
    w.settle().await;
    let r = reviews(&w, 777);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, "approved");
    assert!(r[0].1.contains("#5") && r[0].1.contains("@alice"), "{r:?}");
    // The same callback again changes nothing.
    protection_rule(&w, 777, "production", SHA).await;
    w.settle().await;
    assert_eq!(reviews(&w, 777).len(), 1);
    assert!(w.sticky().contains("The gate is open"));
    w.done().await;
}
both_backends!(a_protection_rule_after_approval_is_approved_at_once);

async fn a_protection_rule_before_approval_waits_and_is_approved_with_the_last_approval(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule")).await;
    w.check_completed(SHA, "build", "success").await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    protection_rule(&w, 778, "production", SHA).await;
    w.settle().await;
    let r = reviews(&w, 778);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, "report", "a status report, not an answer: {r:?}");
    assert!(r[0].1.contains("#5 is not approved yet") && r[0].1.contains("waiting for pm"), "{r:?}");
    // An unrelated recheck says nothing new: no second report.
    w.check_completed(SHA, "lint", "success").await;
    w.settle().await;
    assert_eq!(reviews(&w, 778).len(), 1, "{:?}", reviews(&w, 778));
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    let r = reviews(&w, 778);
    assert_eq!(r.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), vec!["report", "approved"], "{r:?}");
    assert!(w.sticky().contains("The gate is open"));
    w.done().await;
}
both_backends!(a_protection_rule_before_approval_waits_and_is_approved_with_the_last_approval);

async fn deny_rejects_a_waiting_run(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule")).await;
    w.check_completed(SHA, "build", "success").await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    protection_rule(&w, 779, "production", SHA).await;
    w.settle().await;
    w.comment(ALICE, "/deny the freeze starts today").await;
    w.settle().await;
    let r = reviews(&w, 779);
    assert_eq!(r.last().map(|x| x.0.as_str()), Some("rejected"), "{r:?}");
    assert!(r.last().unwrap().1.contains("the freeze starts today"), "{r:?}");
    // A later approval cannot turn it around.
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert!(!reviews(&w, 779).iter().any(|x| x.0 == "approved"));
    assert!(w.sticky().contains("denied by @alice: the freeze starts today"), "{}", w.sticky());
    w.done().await;
}
both_backends!(deny_rejects_a_waiting_run);

async fn a_run_for_another_sha_is_never_approved(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule")).await;
    approved(&w).await;
    protection_rule(&w, 780, "production", SHA2).await;
    w.settle().await;
    let r = reviews(&w, 780);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, "report");
    assert!(r[0].1.contains("no open deployment request covers bbbbbbb"), "{r:?}");
    // Not even after another approval or a recheck.
    w.comment(ALICE, "/recheck").await;
    w.settle().await;
    assert!(reviews(&w, 780).iter().all(|x| x.0 == "report"));
    // A push to the PR makes the approval stale: a run for the new head waits for a new approval.
    w.gh.push_to_pull(REPO, 12, SHA2);
    w.check_completed(SHA2, "build", "success").await;
    let mut v = w.base("pull_request.synchronize.0");
    v["number"] = json!(12);
    v["pull_request"]["number"] = json!(12);
    assert_eq!(w.app.deliver("pull_request", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    protection_rule(&w, 781, "production", SHA2).await;
    w.settle().await;
    assert_eq!(reviews(&w, 781).iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), vec!["report"]);
    assert!(w.sticky().contains("no longer count"), "{}", w.sticky());
    w.done().await;
}
both_backends!(a_run_for_another_sha_is_never_approved);

async fn deploy_creates_one_deployment_even_when_the_comment_comes_twice(db: &TestDb) {
    let w = World::with_policy(db, &policy("deployment")).await;
    approved(&w).await;
    // Someone without a role cannot deploy.
    w.comment(EVE, "/deploy").await;
    w.settle().await;
    assert!(created(&w).is_empty());
    w.assert_replied("@eve `/deploy` was not accepted: only an approver");
    let id = w.comment(ALICE, "/deploy").await;
    w.settle().await;
    // The same comment delivered again under another delivery id (GitHub's redelivery keeps the
    // id; a second webhook or a forwarded copy does not).
    let mut v = w.base("issue_comment.created.0");
    v["issue"] = fake_github::issue_json(&w.gh.model().issues[&(REPO.to_string(), 5)]);
    v["comment"]["id"] = json!(id);
    v["comment"]["body"] = json!("/deploy");
    v["comment"]["user"] = json!({ "id": ALICE.0, "login": ALICE.1, "type": "User" });
    v["sender"] = json!({ "id": ALICE.0, "login": ALICE.1, "type": "User", "node_id": "again" });
    assert_eq!(w.app.deliver("issue_comment", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let d = created(&w);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].1.as_str(), d[0].2.as_str()), (SHA, "production"));
    assert_eq!(d[0].3["shipgate_request"], 5);
    assert_eq!(w.reactions(id), vec!["+1"]);
    assert!(!w.replies().iter().any(|r| r.contains("@alice")), "no refusal for the duplicate: {:?}", w.replies());
    w.done().await;
}
both_backends!(deploy_creates_one_deployment_even_when_the_comment_comes_twice);

async fn deploy_is_refused_while_the_gate_is_closed_or_in_another_mode(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule")).await;
    approved(&w).await;
    w.comment(ALICE, "/deploy").await;
    w.settle().await;
    assert!(created(&w).is_empty());
    w.assert_replied("production deploys with `deploy: protection_rule`");
    w.done().await;
}
both_backends!(deploy_is_refused_while_the_gate_is_closed_or_in_another_mode);

async fn a_full_lifecycle_closes_the_issue_with_the_time_to_deploy(db: &TestDb) {
    let w = World::with_policy(db, &policy("deployment")).await;
    let (id, payload) = deploy_requested(&w).await;
    // The pipeline starts a minute after the gate opened (now) and succeeds 4m 12s later.
    let at = secs_from_now;
    let (started, finished) = (at(60), at(60 + 252));
    status(&w, id, SHA, "production", "in_progress", &started, payload.clone()).await;
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("🚀 **DEPLOYING** `aaaaaaa` to production"), "{c}");
    assert!(c.contains("- [x] Create deployment ticket (record start time)"), "{c}");
    assert_eq!(w.gh.labels(REPO, 5), vec!["DEPLOYMENT_REQUEST", "deploying"]);
    status(&w, id, SHA, "production", "success", &finished, payload.clone()).await;
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("✅ **DEPLOYED** `aaaaaaa` to production in 4m 12s, 5m 1"), "{c}");
    assert!(c.contains(" after the gate opened"), "{c}");
    assert!(c.contains("- [x] Close deployment ticket (record end time)"), "{c}");
    assert_eq!(w.gh.labels(REPO, 5), vec!["DEPLOYMENT_REQUEST", "deployed"]);
    let summary: Vec<_> =
        w.gh.app_comments(REPO, 5).into_iter().filter(|c| c.body.contains("is done")).map(|c| c.body).collect();
    assert_eq!(summary.len(), 1, "{summary:?}");
    // The time to deploy runs from the gate opening (SPEC §3.5); the deployment's own time beside it.
    assert!(summary[0].contains("| Time to deploy (gate opened → success) | 5m 1"), "{}", summary[0]);
    assert!(summary[0].contains("| The deployment itself (start → success) | 4m 12s |"), "{}", summary[0]);
    assert!(summary[0].contains("@alice (pm)"), "{}", summary[0]);
    assert_eq!(w.gh.model().issues[&(REPO.to_string(), 5)].state, "closed");
    // A late in_progress (out of order) changes nothing.
    status(&w, id, SHA, "production", "in_progress", &at(120), payload).await;
    w.settle().await;
    assert!(w.gh.labels(REPO, 5).contains(&"deployed".to_string()));
    let row = shipgate::store::requests::get(&w.app.db, INST, REPO_ID, 5).await.unwrap().unwrap();
    assert_eq!(row.deploy_state.as_deref(), Some("success"));
    let _ = w.gh.app_comments(REPO, 5);
    w.done().await;
}
both_backends!(a_full_lifecycle_closes_the_issue_with_the_time_to_deploy);

/// Two state changes in a row, while the first one's labels are still on their way to GitHub
/// (GitHub slow or failing): the second evaluation reads the issue's labels without the first's,
/// yet must take that label off too, or the request ends with two state labels ("deploying" and
/// "deployed"). Found by bench/soak.sh.
async fn a_state_label_still_being_added_is_removed_by_the_next_state(db: &TestDb) {
    let w = World::with_policy(db, &policy("deployment")).await;
    let (id, payload) = deploy_requested(&w).await;
    let at = secs_from_now;
    // "deploying" is slow to be added: the success is evaluated before GitHub shows it.
    w.gh.inject("POST", "/issues/5/labels", fake_github::Fault::Slow(std::time::Duration::from_secs(2)), 1);
    status(&w, id, SHA, "production", "in_progress", &at(60), payload.clone()).await;
    status(&w, id, SHA, "production", "success", &at(120), payload).await;
    w.settle().await;
    assert_eq!(w.gh.labels(REPO, 5), vec!["DEPLOYMENT_REQUEST", "deployed"]);
    let _ = w.gh.app_comments(REPO, 5);
    w.done().await;
}
both_backends!(a_state_label_still_being_added_is_removed_by_the_next_state);

async fn a_failure_offers_rollback_which_deploys_the_last_good_sha(db: &TestDb) {
    let w = World::with_policy(db, &policy("deployment")).await;
    // An earlier deployment the App made (for request #4) succeeded; a later one that the App
    // neither made nor approved did too, and is never rolled back to.
    let now = shipgate::clock::Clock::system().now_ms();
    shipgate::store::objects::put(&w.app.db, INST, "deployment", &format!("{REPO}:request-4-77"), 900, now)
        .await
        .unwrap();
    status(&w, 900, OLD, "production", "success", "2026-11-28T09:00:00Z", json!({})).await;
    let other = "dddddddddddddddddddddddddddddddddddddd04";
    status(&w, 901, other, "production", "success", "2026-11-28T10:00:00Z", json!({})).await;
    approved(&w).await;
    w.comment(ALICE, "/deploy").await;
    w.settle().await;
    let (id, _, _, payload) = created(&w).remove(0);
    let mut v = w.base("deployment_status.created.0");
    v["deployment_status"]["id"] = json!(STATUS_IDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    v["deployment"]["id"] = json!(id);
    v["deployment"]["sha"] = json!(SHA);
    v["deployment"]["environment"] = json!("production");
    v["deployment"]["payload"] = payload;
    v["deployment"]["created_at"] = json!("2026-11-29T10:00:00Z");
    v["deployment"]["creator"] = fake_github::actions_creator();
    v["deployment"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["creator"] = fake_github::actions_creator();
    v["deployment_status"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["state"] = json!("failure");
    v["deployment_status"]["environment"] = json!("production");
    v["deployment_status"]["created_at"] = json!("2026-11-29T10:03:00Z");
    v["deployment_status"]["log_url"] = json!("https://github.com/acme/app/actions/runs/4711");
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    assert_eq!(w.gh.labels(REPO, 5), vec!["DEPLOYMENT_REQUEST", "deploy-failed"]);
    let failed: Vec<_> =
        w.gh.app_comments(REPO, 5)
            .into_iter()
            .filter(|c| c.body.contains("Deployment failed"))
            .map(|c| c.body)
            .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].contains("revert the PR and redeploy"), "the request's rollback plan: {}", failed[0]);
    assert!(
        failed[0].contains("[The failing run's log](https://github.com/acme/app/actions/runs/4711)"),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains("`/rollback` to deploy `ccccccc`"), "{}", failed[0]);
    assert!(w.sticky().contains("❌ **DEPLOY FAILED**"));
    assert_eq!(w.gh.model().issues[&(REPO.to_string(), 5)].state, "open");
    // Only an approver may roll back.
    w.comment(EVE, "/rollback").await;
    w.settle().await;
    assert_eq!(created(&w).len(), 1);
    w.assert_replied("@eve `/rollback` was not accepted");
    w.comment(ALICE, "/rollback").await;
    w.settle().await;
    let d = created(&w);
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!((d[1].1.as_str(), d[1].2.as_str()), (OLD, "production"));
    assert_eq!(d[1].3["shipgate_rollback_of"], SHA);
    w.done().await;
}
both_backends!(a_failure_offers_rollback_which_deploys_the_last_good_sha);

async fn staging_first_is_learned_from_deployment_status_events(db: &TestDb) {
    let policy = policy("none").replace("    deploy: none\n", "    deploy: none\n    require_staging_first: true\n");
    let w = World::with_policy(db, &policy).await;
    approved_without_staging(&w).await;
    assert!(row(&w.sticky(), "Staging first").contains("⏳"), "{}", w.sticky());
    // The pipeline deploys the PR head to staging; GitHub's deployments API knows nothing of it
    // (the fake holds no deployment): the event alone opens the gate.
    status(&w, 950, SHA, "staging", "success", "2026-11-29T09:00:00Z", json!({})).await;
    w.settle().await;
    assert!(row(&w.sticky(), "Staging first").contains("✅"), "{}", w.sticky());
    assert_eq!(w.gate(SHA).0, "success");
    w.done().await;
}
both_backends!(staging_first_is_learned_from_deployment_status_events);

async fn approved_without_staging(w: &World) {
    w.check_completed(SHA, "build", "success").await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required");
}

async fn a_command_on_pr_1_never_reaches_a_request_that_links_pr_12(db: &TestDb) {
    use shipgate::store::requests::{self as store, Link};
    let w = World::with_policy(db, &policy("deployment")).await;
    approved(&w).await; // request #5 links PR #12
    let linked = |n: i64| {
        let db = w.app.db.clone();
        async move { store::open_linking(&db, INST, REPO_ID, Link::Pr, &n.to_string()).await.unwrap() }
    };
    assert_eq!(linked(12).await, vec![5]);
    assert!(linked(1).await.is_empty(), "PR #1 is not PR #12");
    assert!(linked(2).await.is_empty());
    w.sticky();
    w.done().await;
}
both_backends!(a_command_on_pr_1_never_reaches_a_request_that_links_pr_12);

async fn deploy_is_refused_on_a_closed_request(db: &TestDb) {
    let w = World::with_policy(db, &policy("deployment")).await;
    approved(&w).await;
    w.gh.model().issues.get_mut(&(REPO.to_string(), 5)).unwrap().state = "closed".into();
    let mut v = w.base("issues.labeled.0");
    v["action"] = json!("closed");
    v["issue"] = fake_github::issue_json(&w.gh.model().issues[&(REPO.to_string(), 5)]);
    assert_eq!(w.app.deliver("issues", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    w.comment(ALICE, "/deploy").await;
    w.settle().await;
    assert!(created(&w).is_empty());
    w.assert_replied("the request is closed");
    w.sticky();
    w.done().await;
}
both_backends!(deploy_is_refused_on_a_closed_request);

async fn a_copied_payload_does_not_make_another_deployment_the_requests(db: &TestDb) {
    let w = World::with_policy(db, &policy("deployment")).await;
    approved(&w).await;
    w.comment(ALICE, "/deploy").await;
    w.settle().await;
    let (id, _, _, payload) = created(&w).remove(0);
    status(&w, id, SHA, "production", "in_progress", "2026-11-29T10:01:00Z", payload.clone()).await;
    // Someone creates another deployment (to staging, of another commit) with a copied payload,
    // and one naming the request without the App's key.
    let mut forged = payload.clone();
    forged["shipgate_key"] = json!("request-5-999");
    status(&w, id + 100, OLD, "staging", "success", "2026-11-29T10:02:00Z", forged).await;
    status(&w, id + 101, OLD, "staging", "success", "2026-11-29T10:02:30Z", json!({ "shipgate_request": 5 })).await;
    w.settle().await;
    let row = shipgate::store::requests::get(&w.app.db, INST, REPO_ID, 5).await.unwrap().unwrap();
    assert_eq!((row.deployment_id, row.deploy_state.as_deref()), (Some(id), Some("in_progress")));
    assert!(w.sticky().contains("🚀 **DEPLOYING** `aaaaaaa` to production"));
    assert_eq!(w.gh.model().issues[&(REPO.to_string(), 5)].state, "open");
    // Its own deployment still finishes it.
    status(&w, id, SHA, "production", "success", "2026-11-29T10:05:12Z", payload).await;
    w.settle().await;
    assert_eq!(w.gh.model().issues[&(REPO.to_string(), 5)].state, "closed");
    assert!(w.sticky().contains("✅ **DEPLOYED**"));
    let _ = w.gh.app_comments(REPO, 5);
    w.done().await;
}
both_backends!(a_copied_payload_does_not_make_another_deployment_the_requests);

async fn a_rerun_of_an_answered_run_is_answered_again(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule")).await;
    approved(&w).await;
    protection_rule(&w, 790, "production", SHA).await;
    w.settle().await;
    assert_eq!(reviews(&w, 790).len(), 1);
    // "Re-run failed jobs": the same run id, a new deployment waiting on the rule.
    let mut v = w.base("deployment_protection_rule.requested.0");
    v["environment"] = json!("production");
    v["sha"] = json!(SHA);
    v["deployment_callback_url"] =
        json!(format!("https://api.github.com/repos/{REPO}/actions/runs/790/deployment_protection_rule"));
    v["deployment"]["id"] = json!(145988999);
    assert_eq!(w.app.deliver("deployment_protection_rule", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let r = reviews(&w, 790);
    assert_eq!(r.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), vec!["approved", "approved"], "{r:?}");
    w.sticky();
    w.done().await;
}
both_backends!(a_rerun_of_an_answered_run_is_answered_again);

async fn statuses_of_one_second_keep_their_order_and_a_success_survives_inactive(db: &TestDb) {
    let policy = policy("none").replace("    deploy: none\n", "    deploy: none\n    require_staging_first: true\n");
    let w = World::with_policy(db, &policy).await;
    approved_without_staging(&w).await;
    // success (status 9002) is delivered before in_progress (9001), both made in the same second.
    status_with_id(&w, 960, SHA, "staging", "success", "2026-11-29T09:00:05Z", json!({}), 9002).await;
    status_with_id(&w, 960, SHA, "staging", "in_progress", "2026-11-29T09:00:05Z", json!({}), 9001).await;
    w.settle().await;
    let d = shipgate::store::deploys::get(&w.app.db, INST, REPO_ID, 960).await.unwrap().unwrap();
    assert_eq!(d.state, "success");
    assert!(row(&w.sticky(), "Staging first").contains("✅"), "{}", w.sticky());
    // GitHub marks the earlier staging deployment inactive when the next one succeeds: it still
    // deployed that commit successfully.
    status(&w, 960, SHA, "staging", "inactive", "2026-11-29T09:30:00Z", json!({})).await;
    w.comment(ALICE, "/recheck").await;
    w.settle().await;
    assert!(row(&w.sticky(), "Staging first").contains("✅"), "{}", w.sticky());
    assert_eq!(w.gate(SHA).0, "success");
    w.done().await;
}
both_backends!(statuses_of_one_second_keep_their_order_and_a_success_survives_inactive);

/// SPEC §3.5: in deploy mode `protection_rule`, `/rollback` re-runs the workflow run that last
/// deployed successfully to the environment through the gate, and approves its waiting deployment
/// (whatever the gate says now).
async fn rollback_reruns_the_run_that_last_deployed_and_approves_it(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule")).await;
    // Run 700 deployed OLD through the App's rule; #5's head failed; /rollback re-runs run 700.
    rollback_requested(&w).await;
    assert!(created(&w).is_empty());
    // Its re-run waits on the gate for OLD: approved by the request's rollback, though the gate is
    // closed (the head failed) and OLD is no commit the request covers.
    let mut v = w.base("deployment_protection_rule.requested.0");
    v["environment"] = json!("production");
    v["sha"] = json!(OLD);
    v["ref"] = json!("refs/heads/main");
    v["deployment_callback_url"] =
        json!(format!("https://api.github.com/repos/{REPO}/actions/runs/700/deployment_protection_rule"));
    v["deployment"]["id"] = json!(950);
    v["deployment"]["environment"] = json!("production");
    v["deployment"]["sha"] = json!(OLD);
    assert_eq!(w.app.deliver("deployment_protection_rule", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let r = reviews(&w, 700);
    assert_eq!(r.last().map(|x| x.0.as_str()), Some("approved"), "{r:?}");
    assert!(r.last().unwrap().1.contains("rolls production back to ccccccc"), "{r:?}");
    // The re-run deploys; its success is the request's rollback.
    status(&w, 950, OLD, "production", "success", "2026-11-29T10:10:00Z", json!({})).await;
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("ROLLED BACK"), "{c}");
    w.gh.comments(REPO, 5);
    w.done().await;
}
both_backends!(rollback_reruns_the_run_that_last_deployed_and_approves_it);

/// SPEC §3.5: the Tests gate leaves out the check runs of the workflow run that is itself asking
/// to deploy (a deploy job in the same workflow as the tests waits on the gate: its own check run
/// would otherwise keep the gate waiting for itself).
async fn the_waiting_deploy_job_is_not_a_test_the_gate_waits_for(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule")).await;
    approved(&w).await;
    // Run 778 built and is now waiting to deploy: its deploy job's check run is in progress.
    w.gh.ci_job(REPO, SHA, "deploy-production", "in_progress", 778);
    protection_rule(&w, 778, "production", SHA).await;
    w.settle().await;
    let r = reviews(&w, 778);
    assert_eq!(r.last().map(|x| x.0.as_str()), Some("approved"), "{r:?}\n{}", w.sticky());
    // Once it deploys, its job is still no test: the gate stays open.
    w.comment(ALICE, "/recheck").await;
    w.settle().await;
    assert!(w.sticky().contains("The gate is open"), "{}", w.sticky());
    // A failed job of the deploying run itself still fails the gate.
    w.gh.ci_job(REPO, SHA, "unit", "completed", 778);
    {
        let mut m = w.gh.model();
        let r = m.check_runs.iter_mut().find(|r| r.head_sha == SHA && r.body["name"] == "unit").unwrap();
        r.body["conclusion"] = json!("failure");
    }
    w.comment(ALICE, "/recheck").await;
    w.settle().await;
    assert!(row(&w.sticky(), "Tests").contains("`unit`"), "{}", w.sticky());
    w.gh.ci_job(REPO, SHA, "unit", "completed", 778);
    {
        let mut m = w.gh.model();
        let r = m.check_runs.iter_mut().find(|r| r.head_sha == SHA && r.body["name"] == "unit").unwrap();
        r.body["conclusion"] = json!("success");
    }
    // Another run's job in progress is still a test the gate waits for.
    w.gh.ci_job(REPO, SHA, "e2e", "in_progress", 779);
    w.comment(ALICE, "/recheck").await;
    w.settle().await;
    assert!(row(&w.sticky(), "Tests").contains("`e2e` is in progress"), "{}", w.sticky());
    w.done().await;
}
both_backends!(the_waiting_deploy_job_is_not_a_test_the_gate_waits_for);

// ---- from an attacker's review of the rollback, ticks and log links (each failed before) ----

/// Run 700 deployed OLD earlier; request #5's head deployment (run 777) failed; ALICE `/rollback`s.
async fn rollback_requested(w: &World) {
    let now = shipgate::clock::Clock::system().now_ms();
    let mut tx = w.app.db.begin_write().await.unwrap();
    shipgate::store::deploys::save_rule(
        &mut tx,
        &shipgate::store::deploys::RuleRow {
            installation_id: INST,
            repository_id: REPO_ID,
            repository: REPO.into(),
            run_id: 700,
            environment: "production".into(),
            sha: OLD.into(),
            git_ref: Some("refs/heads/main".into()),
            deployment_id: 900,
            state: "pending".into(),
            issue: None,
            report: None,
            received_at: now,
        },
    )
    .await
    .unwrap();
    shipgate::store::deploys::answer_rule(&mut tx, INST, REPO_ID, 700, "production", "approved", 4, now).await.unwrap();
    seed_approved_entry(&mut tx, "protection_rule", 700, 4).await;
    tx.commit().await.unwrap();
    status(w, 900, OLD, "production", "success", "2026-11-28T09:00:00Z", json!({})).await;
    approved(w).await;
    protection_rule(w, 777, "production", SHA).await;
    w.settle().await;
    status(w, 145988746, SHA, "production", "failure", "2026-11-29T10:03:00Z", json!({})).await;
    w.settle().await;
    w.comment(ALICE, "/rollback").await;
    w.settle().await;
    assert_eq!(w.gh.model().reruns, vec![(REPO.to_string(), 700)]);
}

/// A run waiting on the App's rule for production at `sha`, from `git_ref`.
async fn rule_from(w: &World, run: i64, sha: &str, git_ref: &str) {
    let mut v = w.base("deployment_protection_rule.requested.0");
    v["environment"] = json!("production");
    v["sha"] = json!(sha);
    v["ref"] = json!(git_ref);
    v["deployment_callback_url"] =
        json!(format!("https://api.github.com/repos/{REPO}/actions/runs/{run}/deployment_protection_rule"));
    v["deployment"]["id"] = json!(run + 100_000);
    v["deployment"]["environment"] = json!("production");
    v["deployment"]["sha"] = json!(sha);
    let id = w.id();
    v["deployment"]["node_id"] = json!(id);
    assert_eq!(w.app.deliver("deployment_protection_rule", &id, &v.to_string()).await, 202);
}

/// The rollback approves the run it re-ran (700), never any other run that happens to deploy OLD
/// (someone's workflow_dispatch of an old ref, a tag push, another workflow).
async fn rollback_approves_only_its_rerun(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule")).await;
    rollback_requested(&w).await;
    rule_from(&w, 31337, OLD, "refs/heads/eve-branch").await;
    w.settle().await;
    let r = reviews(&w, 31337);
    assert!(r.iter().all(|x| x.0 != "approved"), "a foreign run of OLD was approved by the rollback: {r:?}");
    let _ = w.gh.comments(REPO, 5);
    w.done().await;
}
both_backends!(rollback_approves_only_its_rerun);

/// A rollback whose re-run never reports (the re-run was refused: a run older than 30 days, a
/// deleted workflow; or it was cancelled before deploying) must not leave a standing approval for
/// every later run of OLD, even once the request is closed.
async fn a_rollback_that_never_ran_does_not_approve_forever(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule")).await;
    rollback_requested(&w).await;
    // Nobody's re-run ever comes. The request is closed by hand.
    w.gh.model().issues.get_mut(&(REPO.to_string(), 5)).unwrap().state = "closed".into();
    let mut v = w.base("issues.labeled.0");
    v["action"] = json!("closed");
    v["issue"] = fake_github::issue_json(&w.gh.model().issues[&(REPO.to_string(), 5)]);
    assert_eq!(w.app.deliver("issues", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    // Much later, a run of OLD from any branch waits on the gate.
    rule_from(&w, 31338, OLD, "refs/heads/eve-branch").await;
    w.settle().await;
    let r = reviews(&w, 31338);
    assert!(r.iter().all(|x| x.0 != "approved"), "closed request #5 approved run 31338: {r:?}\n{}", w.sticky());
    let _ = w.gh.comments(REPO, 5);
    w.done().await;
}
both_backends!(a_rollback_that_never_ran_does_not_approve_forever);

/// A deployment status's `log_url` is anyone's to write who can post a status GitHub Actions
/// signs (any workflow with `deployments: write`): the failed-deploy comment must link only the
/// repository's own run pages, and never carry the URL's text as markdown.
async fn a_log_url_is_never_markdown_nor_elsewhere(db: &TestDb) {
    let w = World::with_policy(db, &policy("deployment")).await;
    approved(&w).await;
    w.comment(ALICE, "/deploy").await;
    w.settle().await;
    let (id, _, _, payload) = created(&w).remove(0);
    let mut v = w.base("deployment_status.created.0");
    v["deployment_status"]["id"] = json!(STATUS_IDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    v["deployment"]["id"] = json!(id);
    v["deployment"]["sha"] = json!(SHA);
    v["deployment"]["environment"] = json!("production");
    v["deployment"]["payload"] = payload;
    v["deployment"]["created_at"] = json!("2026-11-29T10:00:00Z");
    v["deployment"]["creator"] = fake_github::actions_creator();
    v["deployment"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["creator"] = fake_github::actions_creator();
    v["deployment_status"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["state"] = json!("failure");
    v["deployment_status"]["environment"] = json!("production");
    v["deployment_status"]["created_at"] = json!("2026-11-29T10:03:00Z");
    v["deployment_status"]["log_url"] = json!(
        "https://evil.example/login)\n\n### ✅ Rolled back already: nothing to do. @acme/oncall\n\n[details](https://evil.example/x"
    );
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let failed: Vec<_> =
        w.gh.app_comments(REPO, 5)
            .into_iter()
            .filter(|c| c.body.contains("Deployment failed"))
            .map(|c| c.body)
            .collect();
    assert_eq!(failed.len(), 1);
    assert!(!failed[0].contains("evil.example"), "{}", failed[0]);
    assert!(!failed[0].contains("@acme/oncall"), "{}", failed[0]);
    w.sticky();
    let _ = w.gh.comments(REPO, 5);
    w.done().await;
}
both_backends!(a_log_url_is_never_markdown_nor_elsewhere);

/// Two approvers each write `/rollback` (or one writes it twice) before the first re-run reports:
/// the second must not roll back one step further from a commit that never deployed again.
async fn a_second_rollback_while_the_first_waits_goes_to_the_same_commit(db: &TestDb) {
    let w = World::with_policy(db, &policy("protection_rule")).await;
    // An even older commit, run 690, deployed before OLD.
    let older = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee05";
    let now = shipgate::clock::Clock::system().now_ms();
    let mut tx = w.app.db.begin_write().await.unwrap();
    shipgate::store::deploys::save_rule(
        &mut tx,
        &shipgate::store::deploys::RuleRow {
            installation_id: INST,
            repository_id: REPO_ID,
            repository: REPO.into(),
            run_id: 690,
            environment: "production".into(),
            sha: older.into(),
            git_ref: Some("refs/heads/main".into()),
            deployment_id: 890,
            state: "pending".into(),
            issue: None,
            report: None,
            received_at: now,
        },
    )
    .await
    .unwrap();
    shipgate::store::deploys::answer_rule(&mut tx, INST, REPO_ID, 690, "production", "approved", 3, now).await.unwrap();
    seed_approved_entry(&mut tx, "protection_rule", 690, 3).await;
    tx.commit().await.unwrap();
    status(&w, 890, older, "production", "success", "2026-11-27T09:00:00Z", json!({})).await;
    rollback_requested(&w).await;
    w.comment(ALICE, "/rollback").await;
    w.settle().await;
    assert_eq!(w.gh.model().reruns, vec![(REPO.to_string(), 700)], "a second /rollback went further back");
    let _ = w.gh.comments(REPO, 5);
    w.done().await;
}
both_backends!(a_second_rollback_while_the_first_waits_goes_to_the_same_commit);

/// The closing summary anchors the audit log on GitHub (SPEC.md §3.6): the chain's last entry,
/// signed with SHIPGATE_SIGNING_KEY, whose public half `/.well-known/shipgate-audit.pub`
/// serves. `audit verify --anchors` then catches what the HMAC chain alone cannot: a log cut
/// short with its head moved back, and a chain rebuilt by someone holding the audit key; and it
/// refuses an anchor whose text was altered.
async fn the_closing_summary_anchors_the_audit_log(db: &TestDb) {
    use shipgate::store::anchor::{self, PublicKey, SigningKey};
    use shipgate::store::audit;
    let signing = SigningKey::from_bytes(&[9u8; 32]);
    let key = signing.clone();
    let w = World::with_config(db, &policy("deployment"), move |cfg| cfg.signing_key = Some(key)).await;
    let (id, payload) = deploy_requested(&w).await;
    let at = secs_from_now(0);
    status(&w, id, SHA, "production", "success", &at, payload).await;
    w.settle().await;
    let summary =
        w.gh.app_comments(REPO, 5).into_iter().find(|c| c.body.contains("is done")).expect("a closing summary").body;
    assert!(!summary.contains(anchor::PLACEHOLDER), "the placeholder went out as it was:\n{summary}");
    let anchors: Vec<_> = anchor::parse_all(&summary).into_iter().map(|a| a.expect("an anchor that parses")).collect();
    assert_eq!(anchors.len(), 1, "{summary}");
    let a = anchors[0].clone();
    // The public key as anyone can fetch it.
    let r = w.app.http.get(format!("{}/.well-known/shipgate-audit.pub", w.app.url)).send().await.expect("get");
    assert_eq!(r.status(), 200);
    let pem = r.text().await.expect("pem");
    let public = PublicKey::from_pem(&pem).expect("a public key");
    assert!(a.verify(&public), "the anchor's signature checks out under the served key: {summary}");
    assert_eq!(a.installation_id, INST);
    let last = audit::last_entry(&w.app.db, INST).await.unwrap().expect("entries");
    assert!(a.position >= 1 && a.position <= last.position, "{a:?} vs {}", last.position);
    assert_eq!(a.hash, audit::entry_at(&w.app.db, INST, a.position).await.unwrap().unwrap().hash);
    // A forged outbox row re-sending the summary (to anchor it again at a log cut short, erasing
    // the anchor GitHub holds) edits nothing: a comment with an anchor is written once.
    let mut tx = w.app.db.begin_write().await.unwrap();
    let forged = shipgate::github::actions::Action::UpsertComment {
        repo: REPO.into(),
        issue: 5,
        marker: format!("summary-{id}"),
        body: format!("rewritten\n{}", anchor::PLACEHOLDER),
    };
    shipgate::store::outbox::enqueue(&mut tx, INST, "forged-summary", &forged, None, 1).await.unwrap();
    tx.commit().await.unwrap();
    w.settle().await;
    let now: Vec<String> = w.gh.app_comments(REPO, 5).into_iter().map(|c| c.body).collect();
    assert!(now.contains(&summary) && !now.iter().any(|b| b.contains("rewritten")), "{now:?}");
    w.done().await;

    let dir = tempfile::tempdir().expect("dir");
    let (anchors_file, pub_file) = (dir.path().join("anchors.txt"), dir.path().join("shipgate-audit.pub"));
    std::fs::write(&anchors_file, &summary).unwrap();
    std::fs::write(&pub_file, &pem).unwrap();
    let (anchors_arg, pub_arg) = (anchors_file.to_str().unwrap(), pub_file.to_str().unwrap());
    let verify = |args: Vec<&str>| {
        let url = db.url.clone();
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            common::shipgate_cli(&url, &args, &[]).await
        }
    };
    let (code, out) = verify(vec!["audit", "verify", "--anchors", anchors_arg, "--public-key", pub_arg]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 anchors match the log (1 with a valid signature, 0 unsigned"), "{out}");

    // A comment posing as an anchor (anyone can write the tag): not evidence, never a failure.
    let fake = format!(
        "{summary}\n\nshipgate-audit-anchor/v1 installation={INST} entry=99999 sha256={} unsigned",
        "0".repeat(64)
    );
    std::fs::write(dir.path().join("fake.txt"), &fake).unwrap();
    let fake_arg = dir.path().join("fake.txt");
    let (code, out) =
        verify(vec!["audit", "verify", "--anchors", fake_arg.to_str().unwrap(), "--public-key", pub_arg]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ignored: the anchor of installation 1 entry 99999 is not signed by this key"), "{out}");

    // An anchor altered on its way (another entry number, the signature kept): refused.
    let forged = summary.replace(&format!("entry={} ", a.position), &format!("entry={} ", a.position - 1));
    std::fs::write(dir.path().join("forged.txt"), &forged).unwrap();
    let forged_arg = dir.path().join("forged.txt");
    let (code, out) =
        verify(vec!["audit", "verify", "--anchors", forged_arg.to_str().unwrap(), "--public-key", pub_arg]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("is not signed by this key") && out.contains("none of the 1 anchors found is signed"),
        "{out}"
    );

    // The log cut short at the anchored entry, its head moved back to the entry before: the
    // chain alone still verifies; the anchor does not.
    let dbc = db.connect().await;
    drop_guards(&dbc).await;
    sqlx::query("DELETE FROM audit_log WHERE installation_id = $1 AND position >= $2")
        .bind(INST)
        .bind(a.position)
        .execute(dbc.writer())
        .await
        .unwrap();
    let before = audit::entry_at(&dbc, INST, a.position - 1).await.unwrap().expect("the entry before");
    sqlx::query("UPDATE audit_heads SET position = $1, hash = $2 WHERE installation_id = $3")
        .bind(before.position)
        .bind(&before.hash)
        .bind(INST)
        .execute(dbc.writer())
        .await
        .unwrap();
    let (code, out) = verify(vec!["audit", "verify"]).await;
    assert_eq!(code, 0, "without anchors the cut does not show: {out}");
    let (code, out) = verify(vec!["audit", "verify", "--anchors", anchors_arg, "--public-key", pub_arg]).await;
    assert_eq!(code, 1, "{out}");
    let want = format!("the log has no installation {INST} entry {}: it ends at entry {}", a.position, a.position - 1);
    assert!(out.contains(&want), "{out}");

    // Someone with the audit key writes the missing entries again, differently: the chain is
    // intact under the key, and the anchored entry's hash is not the one on GitHub.
    let k = audit::AuditKey::new(shipgate::config::TEST_AUDIT_KEY);
    for n in 0..(last.position - a.position + 1) {
        let e = audit::AuditEntry {
            installation_id: INST,
            repository_id: None,
            repository: Some(REPO.into()),
            issue: Some(5),
            kind: "request.closed".into(),
            actor_id: None,
            actor_login: Some("mallory".into()),
            detail: json!({ "n": n }),
        };
        let mut tx = dbc.begin_write().await.unwrap();
        audit::append(&mut tx, Some(&k), &e, Some("forged"), 1).await.expect("append");
        tx.commit().await.unwrap();
    }
    let (code, out) = verify(vec!["audit", "verify"]).await;
    assert_eq!(code, 0, "rebuilt under the key, the chain verifies: {out}");
    let (code, out) = verify(vec!["audit", "verify", "--anchors", anchors_arg, "--public-key", pub_arg]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("installation {INST} entry {} has hash", a.position)), "{out}");
    assert!(out.contains("the entry was rewritten"), "{out}");
    dbc.close().await;
}
both_backends!(the_closing_summary_anchors_the_audit_log);

async fn drop_guards(db: &shipgate::store::Db) {
    use shipgate::store::Backend;
    let stmts: &[&'static str] = match db.backend() {
        Backend::Sqlite => &["DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete"],
        Backend::Postgres => &["ALTER TABLE audit_log DISABLE TRIGGER USER"],
    };
    for sql in stmts {
        sqlx::query(*sql).execute(db.writer()).await.expect(sql);
    }
}
