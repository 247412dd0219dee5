//! Ways around the gate, tried as a person with ordinary write access would (SPEC.md §1, §3.3–3.5,
//! §7, docs/threat-model.md): each test is one attack, named after it, through the real router with
//! real payloads (edited), against the fake GitHub. Each failed on main before its fix.

mod common;
mod fake_github;
mod world;

use common::TestDb;
use serde_json::{Value, json};
use world::*;

/// Another user: a role holder's colleague with write access.
const FRANK: (i64, &str) = (601, "frank");

/// Issue `n` as the fake holds it (author, body, labelled, state), and an `issues.ACTION` event.
async fn issue_n(w: &World, n: i64, author: (i64, &str), action: &str, body: &str, labelled: bool, state: &str) {
    {
        let mut m = w.gh.model();
        let i = m.issues.entry((REPO.to_string(), n)).or_default();
        i.number = n;
        i.title = format!("Deploy #{n}");
        i.body = body.into();
        i.state = state.into();
        i.author_id = author.0;
        i.author = author.1.into();
        i.labels.retain(|l| l != "DEPLOYMENT_REQUEST");
        if labelled {
            i.labels.insert(0, "DEPLOYMENT_REQUEST".into());
        }
    }
    let mut v = w.base("issues.labeled.0");
    v["action"] = json!(action);
    v["issue"] = fake_github::issue_json(&w.gh.model().issues[&(REPO.to_string(), n)]);
    v["label"] = json!({ "name": "DEPLOYMENT_REQUEST" });
    let id = w.id();
    v["sender"]["node_id"] = json!(id); // a new event, not a replay of an earlier body
    assert_eq!(w.app.deliver("issues", &id, &v.to_string()).await, 202);
}

/// Request #5 as `action` with its label and state.
async fn request5(w: &World, action: &str, body: &str, labelled: bool, state: &str) {
    issue_n(w, 5, CAROL, action, body, labelled, state).await
}

/// A comment event on issue or PR `n` (`created`, `edited` or `deleted`) by `sender` about comment
/// `id` written by `author` with `text`.
async fn comment_on(w: &World, n: i64, author: (i64, &str), sender: (i64, &str), id: i64, text: &str, action: &str) {
    let fixture = match action {
        "edited" => "issue_comment.edited.0",
        "deleted" => "issue_comment.deleted.0",
        _ => "issue_comment.created.0",
    };
    let mut v = w.base(fixture);
    let issue = w.gh.model().issues.get(&(REPO.to_string(), n)).map(fake_github::issue_json);
    v["issue"] = match issue {
        Some(i) => i,
        None => {
            json!({ "number": n, "title": "api", "state": "open", "labels": [], "user": { "id": DAVE.0, "login": DAVE.1 },
                        "pull_request": { "url": format!("https://api.github.com/repos/{REPO}/pulls/{n}") } })
        }
    };
    v["comment"]["id"] = json!(id);
    v["comment"]["body"] = json!(text);
    v["comment"]["user"] = json!({ "id": author.0, "login": author.1, "type": "User" });
    v["sender"] = json!({ "id": sender.0, "login": sender.1, "type": "User" });
    assert_eq!(w.app.deliver("issue_comment", &w.id(), &v.to_string()).await, 202);
}

/// A new comment by `who` on PR `n`; returns its id.
async fn pr_comment(w: &World, n: i64, who: (i64, &str), text: &str) -> i64 {
    let id = w.gh.human_comment_by(REPO, n, who, text);
    comment_on(w, n, who, who, id, text, "created").await;
    id
}

/// `who` edits comment `id` (written by `author` on #5) to `text`, as GitHub lets any writer do.
async fn edit(w: &World, author: (i64, &str), who: (i64, &str), id: i64, text: &str) {
    if let Some(c) = w.gh.model().comments.iter_mut().find(|c| c.id == id) {
        c.body = text.into();
    }
    comment_on(w, 5, author, who, id, text, "edited").await;
}

async fn approved_by_bob_and_alice(w: &World) {
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(w, "labeled", &body("production", "#12"), true, "open").await;
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());
}

async fn stored(w: &World) -> shipgate::store::requests::RequestRow {
    shipgate::store::requests::get(&w.app.db, INST, REPO_ID, 5).await.unwrap().unwrap()
}

async fn active_approvals(w: &World, issue: i64) -> Vec<String> {
    shipgate::store::requests::approvals(&w.app.db, INST, REPO_ID, issue)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.state == "active")
        .map(|a| a.login)
        .collect()
}

// 1. Comments written before the label, edited into `/approve`, then the label.
async fn comments_before_the_label_never_approve(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "opened", &body("production", "#12"), false, "open").await;
    let bob = w.comment(BOB, "Thanks, I'll look at it.").await;
    let alice = w.comment(ALICE, "Is the migration reversible?").await;
    w.comment(ALICE, "/approve").await; // an old approval, before the issue was a request
    w.settle().await;
    // A writer edits the colleagues' harmless comments into approvals, then adds the label.
    edit(&w, BOB, EVE, bob, "/approve").await;
    edit(&w, ALICE, EVE, alice, "/approve").await;
    w.settle().await;
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.settle().await;
    let c = w.sticky();
    assert!(!c.contains("The gate is open"), "{c}");
    assert!(row(&c, "Approvals").contains("waiting for pm, backend-lead"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    assert!(active_approvals(&w, 5).await.is_empty());
    let _ = w.replies();
    w.done().await;
}
both_backends!(comments_before_the_label_never_approve);

// An edit that adds a command is answered, and never approves.
async fn an_edited_command_is_answered_and_never_approves(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.comment(ALICE, "/approve").await;
    let bob = w.comment(BOB, "LGTM").await;
    w.settle().await;
    edit(&w, BOB, BOB, bob, "LGTM\n/approve").await;
    w.settle().await;
    assert!(w.reactions(bob).is_empty());
    w.assert_replied("@bob an edited comment carries no command");
    assert_eq!(w.gate(SHA).0, "action_required");
    assert_eq!(active_approvals(&w, 5).await, vec!["alice"]);
    w.sticky();
    w.done().await;
}
both_backends!(an_edited_command_is_answered_and_never_approves);

// An edit that removes `/approve` (by anyone) withdraws the approval.
async fn an_edit_removing_approve_withdraws_it(db: &TestDb) {
    let w = World::new(db).await;
    approved_by_bob_and_alice(&w).await;
    let bob = w.gh.model().comments.iter().find(|c| c.user == "bob").unwrap().id;
    edit(&w, BOB, EVE, bob, "Never mind.").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required", "{}", w.sticky());
    assert_eq!(active_approvals(&w, 5).await, vec!["alice"]);
    w.sticky();
    w.done().await;
}
both_backends!(an_edit_removing_approve_withdraws_it);

// 2. The requester (or any writer) lifts someone else's hold.
async fn the_requester_cannot_lift_someone_elses_hold(db: &TestDb) {
    let w = World::new(db).await;
    approved_by_bob_and_alice(&w).await;
    w.comment(EVE, "/hold").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required");
    let carol = w.comment(CAROL, "/unhold").await;
    let dave = w.comment(DAVE, "/hold cancel").await;
    w.settle().await;
    assert!(w.reactions(carol).is_empty() && w.reactions(dave).is_empty());
    w.assert_replied("@carol `/unhold` was not accepted");
    w.assert_replied("@dave `/unhold` was not accepted");
    // Nor by placing a hold of one's own over it first, in one comment or two.
    let both = w.comment(CAROL, "/hold\n/unhold").await;
    w.settle().await;
    assert!(w.reactions(both).is_empty());
    w.assert_replied("`/hold` was not accepted: the request is already on hold by @eve");
    assert_eq!(stored(&w).await.hold_by.as_deref(), Some("eve"));
    assert_eq!(w.gate(SHA).0, "action_required");
    // The holder lifts it; a holder of a role the environment needs may lift one too.
    let eve = w.comment(EVE, "/unhold").await;
    w.settle().await;
    assert_eq!(w.reactions(eve), vec!["+1"]);
    assert_eq!(w.gate(SHA).0, "success");
    w.gh.permission(REPO, "frank", "write");
    w.comment(FRANK, "/hold").await;
    w.settle().await;
    let alice = w.comment(ALICE, "/unhold").await;
    w.settle().await;
    assert_eq!(w.reactions(alice), vec!["+1"]);
    assert_eq!(w.gate(SHA).0, "success");
    w.sticky();
    w.done().await;
}
both_backends!(the_requester_cannot_lift_someone_elses_hold);

async fn only_the_denier_or_an_admin_lifts_a_denial(db: &TestDb) {
    let w = World::new(db).await;
    approved_by_bob_and_alice(&w).await;
    w.comment(ALICE, "/deny the error budget is spent").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required");
    let bob = w.comment(BOB, "/undeny").await;
    w.settle().await;
    assert!(w.reactions(bob).is_empty());
    w.assert_replied("@bob `/undeny` was not accepted");
    // Nor by denying over it and lifting one's own.
    let both = w.comment(BOB, "/deny me too\n/undeny").await;
    w.settle().await;
    assert!(w.reactions(both).is_empty());
    w.assert_replied("`/deny` was not accepted: the request is already denied by @alice");
    assert_eq!(stored(&w).await.denied_by.as_deref(), Some("alice"));
    w.gh.permission(REPO, "frank", "admin");
    let frank = w.comment(FRANK, "/undeny").await;
    w.settle().await;
    assert_eq!(w.reactions(frank), vec!["+1"]);
    assert_eq!(stored(&w).await.denied_by, None);
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());
    w.sticky();
    w.done().await;
}
both_backends!(only_the_denier_or_an_admin_lifts_a_denial);

// 3. One `/approve` on a linked PR approved every request that links it.
async fn an_approve_on_a_pr_linked_by_two_requests_asks_which(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    let other = body("production", "#12").replace("revert the PR and redeploy", "none needed");
    issue_n(&w, 6, EVE, "labeled", &other, true, "open").await;
    w.settle().await;
    let c = pr_comment(&w, 12, BOB, "/approve").await;
    w.settle().await;
    assert!(w.reactions(c).is_empty());
    let on_pr: Vec<String> = w.gh.app_comments(REPO, 12).into_iter().map(|c| c.body).collect();
    assert!(on_pr.iter().any(|b| b.contains("#5") && b.contains("#6") && b.contains("`/approve #5`")), "{on_pr:?}");
    assert!(active_approvals(&w, 5).await.is_empty() && active_approvals(&w, 6).await.is_empty());
    // Naming the request applies it there only.
    let c = pr_comment(&w, 12, BOB, "/approve #5").await;
    w.settle().await;
    assert_eq!(w.reactions(c), vec!["+1"]);
    assert_eq!(active_approvals(&w, 5).await, vec!["bob"]);
    assert!(active_approvals(&w, 6).await.is_empty());
    w.gh.comments(REPO, 5);
    w.gh.comments(REPO, 6);
    w.gh.comments(REPO, 12);
    w.done().await;
}
both_backends!(an_approve_on_a_pr_linked_by_two_requests_asks_which);

// 4. Deleting an approving comment on a linked PR left the approval standing.
async fn deleting_an_approving_comment_on_a_linked_pr_withdraws_it(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    let bob = pr_comment(&w, 12, BOB, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());
    w.gh.model().comments.retain(|c| c.id != bob);
    comment_on(&w, 12, BOB, EVE, bob, "/approve", "deleted").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required", "{}", w.sticky());
    assert_eq!(active_approvals(&w, 5).await, vec!["alice"]);
    w.gh.comments(REPO, 12);
    w.sticky();
    w.done().await;
}
both_backends!(deleting_an_approving_comment_on_a_linked_pr_withdraws_it);

fn staging_first_policy() -> String {
    POLICY.replace("    require_checks: all\n", "    require_checks: all\n    require_staging_first: true\n")
}

/// A `deployment_status` event for deployment `id` of `sha`, made by `creator` (performed by
/// `app`, null for a person's own token), with `workflow_run` when GitHub Actions made it.
#[allow(clippy::too_many_arguments)]
async fn deployment_status(
    w: &World,
    id: i64,
    sha: &str,
    environment: &str,
    state: &str,
    creator: Value,
    app: Value,
    payload: Value,
) {
    let mut v = w.base("deployment_status.created.0");
    v["deployment_status"]["id"] = json!(id * 10 + w.n.load(std::sync::atomic::Ordering::SeqCst) as i64);
    v["deployment"]["id"] = json!(id);
    v["deployment"]["sha"] = json!(sha);
    v["deployment"]["environment"] = json!(environment);
    v["deployment"]["payload"] = payload;
    v["deployment"]["creator"] = creator.clone();
    v["deployment"]["performed_via_github_app"] = app;
    v["deployment"]["created_at"] = json!("2026-11-29T10:00:00Z");
    v["deployment_status"]["state"] = json!(state);
    v["deployment_status"]["environment"] = json!(environment);
    v["deployment_status"]["creator"] = creator;
    v["deployment_status"]["created_at"] = json!("2026-11-29T10:01:00Z");
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
}

fn by_hand(who: (i64, &str)) -> (Value, Value) {
    (json!({ "id": who.0, "login": who.1, "type": "User" }), Value::Null)
}

fn by_actions() -> (Value, Value) {
    (fake_github::actions_creator(), json!({ "id": 15368, "slug": "github-actions" }))
}

// 5. Staging first satisfied by a deployment status someone made by hand.
async fn a_staging_deployment_made_by_hand_is_no_evidence(db: &TestDb) {
    let w = World::with_policy(db, &staging_first_policy()).await;
    approved_by_bob_and_alice_waiting(&w).await;
    let (creator, app) = by_hand(EVE);
    deployment_status(&w, 700, SHA, "staging", "success", creator, app, json!({})).await;
    w.gh.deployment_by_hand(REPO, EVE, SHA, "staging", "success");
    w.comment(EVE, "/recheck").await;
    w.settle().await;
    let c = w.sticky();
    assert!(row(&c, "Staging first").contains("⏳"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    // The pipeline (GitHub Actions) deploys it to staging: that is evidence.
    let (creator, app) = by_actions();
    deployment_status(&w, 701, SHA, "staging", "success", creator, app, json!({})).await;
    w.settle().await;
    assert!(row(&w.sticky(), "Staging first").contains("✅"), "{}", w.sticky());
    assert_eq!(w.gate(SHA).0, "success");
    w.done().await;
}
both_backends!(a_staging_deployment_made_by_hand_is_no_evidence);

async fn approved_by_bob_and_alice_waiting(w: &World) {
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(w, "labeled", &body("production", "#12"), true, "open").await;
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required");
}

fn deploy_policy() -> String {
    format!("{}    deploy: deployment\n", POLICY.replace("  staging:\n    approvals: []\n", ""))
        + "  staging:\n    approvals: []\n"
}

const OLD: &str = "cccccccccccccccccccccccccccccccccccccc03";

// 6. A deployment with a guessed `shipgate_key` taken as the request's own; `/rollback` then
// deploys the forger's commit.
async fn a_deployment_with_a_guessed_key_is_not_the_requests(db: &TestDb) {
    let w = World::with_policy(db, &deploy_policy()).await;
    approved_by_bob_and_alice(&w).await;
    w.comment(ALICE, "/deploy").await;
    w.settle().await;
    let (id, payload) = {
        let m = w.gh.model();
        let d = m.deployments.iter().find(|(_, d)| d["payload"]["shipgate_request"] == 5).expect("created").1.clone();
        (d["id"].as_i64().unwrap(), d["payload"].clone())
    };
    // Eve guesses the key (`request-{issue}-{comment}`, all public), deploys her own commit with a
    // success, then reports a failure with the key.
    let mut forged = payload.clone();
    forged["shipgate_key"] = json!(stored(&w).await.deploy_key.expect("key"));
    let (creator, app) = by_hand(EVE);
    deployment_status(&w, id + 500, OLD, "production", "success", creator.clone(), app.clone(), forged.clone()).await;
    deployment_status(&w, id + 501, SHA, "production", "failure", creator, app, forged).await;
    w.settle().await;
    let r = stored(&w).await;
    assert_ne!(r.deploy_state.as_deref(), Some("failure"), "{r:?}");
    assert_ne!(r.deployment_id, Some(id + 501));
    assert!(!w.gh.labels(REPO, 5).contains(&"deploy-failed".to_string()));
    // A real failure of its own deployment; `/rollback` finds no commit the App deployed, never
    // Eve's.
    let (creator, app) = by_actions();
    deployment_status(&w, id, SHA, "production", "failure", creator, app, payload).await;
    w.settle().await;
    assert_eq!(stored(&w).await.deploy_state.as_deref(), Some("failure"));
    w.comment(ALICE, "/rollback").await;
    w.settle().await;
    let rollbacks = w.gh.model().deployments.iter().filter(|(_, d)| d["ref"] == OLD).count();
    assert_eq!(rollbacks, 0, "rolled back to a commit only a hand-made deployment vouched for");
    w.assert_replied("no earlier commit");
    let _ = w.gh.app_comments(REPO, 5);
    w.done().await;
}
both_backends!(a_deployment_with_a_guessed_key_is_not_the_requests);

// 7. `dismiss_stale_approvals: false` let `/deploy` deploy a head nobody approved.
async fn dismiss_stale_approvals_is_refused_with_its_line(db: &TestDb) {
    let policy = deploy_policy().replace(
        "    allow_self_approval: false\n",
        "    dismiss_stale_approvals: false\n    allow_self_approval: false\n",
    );
    assert!(policy.contains("dismiss_stale_approvals: false"));
    let w = World::with_policy(db, &policy).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.settle().await;
    let line = policy.lines().position(|l| l.contains("dismiss_stale_approvals")).unwrap() + 1;
    let c = w.sticky();
    assert!(row(&c, "Config").contains("⛔"), "{c}");
    assert!(c.contains("dismiss_stale_approvals") && c.contains(&format!("line {line}")), "{c}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("shipgate.yml");
    std::fs::write(&f, &policy).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipgate")).arg("check-config").arg(&f).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("shipgate.yml:{line}:")) && text.contains("dismiss_stale_approvals"), "{text}");
    assert!(text.contains("always bound to the commit"), "{text}");
    w.done().await;
}
both_backends!(dismiss_stale_approvals_is_refused_with_its_line);

// 8. Approvals survived rewriting the request's content after approval.
async fn editing_the_migration_after_approval_makes_approvals_stale(db: &TestDb) {
    let w = World::new(db).await;
    approved_by_bob_and_alice(&w).await;
    w.sticky();
    let changed = body("production", "#12").replace("Data migration: none", "Data migration: DROP TABLE users;");
    request5(&w, "edited", &changed, true, "open").await;
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("@alice: the request changed after it was given"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    // So does any content field: service, steps, verification.
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());
    let changed = changed.replace("smoke tests", "none");
    request5(&w, "edited", &changed, true, "open").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required", "{}", w.sticky());
    w.sticky();
    w.done().await;
}
both_backends!(editing_the_migration_after_approval_makes_approvals_stale);

async fn closing_and_reopening_starts_over(db: &TestDb) {
    let w = World::new(db).await;
    approved_by_bob_and_alice(&w).await;
    request5(&w, "closed", &body("production", "#12"), true, "closed").await;
    w.settle().await;
    request5(&w, "reopened", &body("production", "#12"), true, "open").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required", "{}", w.sticky());
    assert!(active_approvals(&w, 5).await.is_empty());
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success");
    // Unlabelling and labelling again starts over too.
    request5(&w, "unlabeled", &body("production", "#12"), false, "open").await;
    w.settle().await;
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required", "{}", w.sticky());
    w.sticky();
    w.done().await;
}
both_backends!(closing_and_reopening_starts_over);

async fn a_closed_request_takes_no_approve(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.comment(BOB, "/approve").await;
    w.settle().await;
    request5(&w, "closed", &body("production", "#12"), true, "closed").await;
    w.settle().await;
    let alice = w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert!(w.reactions(alice).is_empty());
    w.assert_replied("@alice `/approve` was not accepted: the request is closed");
    assert!(active_approvals(&w, 5).await.is_empty());
    w.sticky();
    w.done().await;
}
both_backends!(a_closed_request_takes_no_approve);

// 9. A role user matched by login: a renamed user's old login, registered by someone else.
async fn a_login_that_now_belongs_to_another_account_fills_no_role(db: &TestDb) {
    let w = World::new(db).await;
    approved_by_bob_and_alice(&w).await;
    // alice (101) renames herself; someone else registers `alice` (999).
    w.gh.user("alice", 999);
    w.gh.permission(REPO, "alice", "write");
    w.push_to_pr(SHA2).await;
    w.gh.ci(REPO, SHA2, "build", "completed", Some("success"));
    w.comment(BOB, "/approve").await;
    let impostor = w.comment((999, "alice"), "/approve").await;
    w.settle().await;
    assert!(w.reactions(impostor).is_empty());
    assert_eq!(w.gate(SHA2).0, "action_required");
    w.assert_replied("@alice `/approve` was not accepted");
    let c = w.sticky();
    assert!(c.contains("`alice` now belongs to another account"), "{c}");
    w.done().await;
}
both_backends!(a_login_that_now_belongs_to_another_account_fills_no_role);

// 10. A check run named after another request's commit took over its deployment.
async fn a_check_named_after_another_requests_commit_takes_nothing_over(db: &TestDb) {
    let w = World::new(db).await;
    approved_by_bob_and_alice(&w).await;
    // Eve's request #6 links her PR #13, whose head carries a check run named after #5's commit.
    let eve_sha = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee6";
    w.gh.pull(REPO, 13, EVE, eve_sha, &["docs/readme.md"]);
    w.gh.ci(REPO, eve_sha, SHA, "completed", Some("success"));
    issue_n(&w, 6, EVE, "labeled", &body("production", "#13"), true, "open").await;
    w.settle().await;
    // The pipeline deploys #5's commit to production.
    let (creator, app) = by_actions();
    deployment_status(&w, 800, SHA, "production", "success", creator, app, json!({})).await;
    w.settle().await;
    let six = shipgate::store::requests::get(&w.app.db, INST, REPO_ID, 6).await.unwrap().unwrap();
    assert_eq!(six.deployment_id, None, "{six:?}");
    assert_eq!(w.gh.model().issues[&(REPO.to_string(), 6)].state, "open");
    w.gh.comments(REPO, 5);
    w.gh.comments(REPO, 6);
    w.done().await;
}
both_backends!(a_check_named_after_another_requests_commit_takes_nothing_over);

// 11. A role holder who pushed a commit to a colleague's PR approves it.
async fn a_pusher_cannot_approve_the_pr(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.model().pulls.get_mut(&(REPO.to_string(), 12)).unwrap().pushers.push((BOB.0, BOB.1.into()));
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    let bob = w.comment(BOB, "/approve").await;
    w.settle().await;
    assert!(w.reactions(bob).is_empty());
    w.assert_replied("@bob `/approve` was not accepted: you pushed a commit to #12");
    assert!(active_approvals(&w, 5).await.is_empty());
    w.sticky();
    w.done().await;
}
both_backends!(a_pusher_cannot_approve_the_pr);

async fn a_renamed_file_counts_under_its_old_name(db: &TestDb) {
    let w = World::new(db).await;
    {
        let mut m = w.gh.model();
        let p = m.pulls.get_mut(&(REPO.to_string(), 12)).unwrap();
        p.files = vec![];
        p.renames = vec![("docs/api.rs".into(), "apps/backend/api.rs".into())];
    }
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("backend-lead (changes under apps/backend/**)"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    w.done().await;
}
both_backends!(a_renamed_file_counts_under_its_old_name);

async fn a_pr_with_more_files_than_github_lists_needs_every_path_role(db: &TestDb) {
    let w = World::new(db).await;
    {
        let mut m = w.gh.model();
        let p = m.pulls.get_mut(&(REPO.to_string(), 12)).unwrap();
        p.files = vec!["docs/readme.md".into()];
        p.changed_files = Some(3500);
    }
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("backend-lead") && c.contains("frontend-lead"), "{c}");
    assert!(c.contains("more files than GitHub lists"), "{c}");
    w.done().await;
}
both_backends!(a_pr_with_more_files_than_github_lists_needs_every_path_role);

// Internal event names are the App's own: never taken from outside, signed or not.
async fn internal_event_names_are_refused_on_the_webhook(db: &TestDb) {
    let w = World::new(db).await;
    for event in ["shipgate_recheck", "shipgate_pr_command", "shipgate_deployment"] {
        let body = json!({ "action": "forwarded", "installation": { "id": INST },
                           "repository": { "id": REPO_ID, "full_name": REPO }, "issue": { "number": 5 },
                           "comment": { "id": 77, "body": "/approve", "user": { "id": ALICE.0, "login": ALICE.1 } } });
        assert_eq!(w.app.deliver(event, &w.id(), &body.to_string()).await, 400, "{event}");
    }
    let stats = shipgate::store::deliveries::list(&w.app.db, None, 10).await.unwrap();
    assert!(stats.is_empty(), "{stats:?}");
    w.done().await;
}
both_backends!(internal_event_names_are_refused_on_the_webhook);

// In dry-run the App cannot read permissions: it never assumes write access.
async fn dry_run_never_assumes_write_access(db: &TestDb) {
    let app = common::TestApp::start(db, shipgate::server::Options::default()).await;
    let mut v = payload("issues.labeled.0");
    v["action"] = json!("labeled");
    v["issue"] = json!({ "number": 5, "title": "Deploy", "body": body("production", "#12"), "state": "open",
                        "labels": [{ "name": "DEPLOYMENT_REQUEST" }], "user": { "id": CAROL.0, "login": CAROL.1, "type": "User" } });
    assert_eq!(app.deliver("issues", "d-1", &v.to_string()).await, 202);
    let mut c = payload("issue_comment.created.0");
    c["issue"] = v["issue"].clone();
    c["comment"]["id"] = json!(4242);
    c["comment"]["body"] = json!("/hold");
    c["comment"]["user"] = json!({ "id": EVE.0, "login": EVE.1, "type": "User" });
    c["sender"] = c["comment"]["user"].clone();
    assert_eq!(app.deliver("issue_comment", "d-2", &c.to_string()).await, 202);
    settle(&app.db).await;
    let r = shipgate::store::requests::get(&app.db, INST, REPO_ID, 5).await.unwrap().unwrap();
    assert_eq!(r.hold_by, None, "a hold from someone whose access was never read");
    app.shutdown().await;
}
both_backends!(dry_run_never_assumes_write_access);

// 12. The built-in default trusted a real login and named made-up teams; it now fails closed.
async fn without_a_policy_production_needs_a_maintainer(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.model().files.clear();
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    let alice = w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert!(w.reactions(alice).is_empty());
    w.assert_replied("@alice `/approve` was not accepted: you hold none of the roles production needs (maintainers)");
    let c = w.sticky();
    assert!(!c.contains("acme/") && !c.contains("@alice |"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    assert_eq!(w.gh.count("teams/list-members-in-org"), 0);
    w.gh.permission(REPO, "frank", "maintain");
    let frank = w.comment(FRANK, "/approve").await;
    w.settle().await;
    assert_eq!(w.reactions(frank), vec!["+1"]);
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());
    w.sticky();
    w.done().await;
}
both_backends!(without_a_policy_production_needs_a_maintainer);

async fn a_broken_policy_shows_no_roles_from_anywhere(db: &TestDb) {
    let w = World::with_policy(db, &POLICY.replace("role: pm", "role: qa")).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    let c = w.sticky();
    assert!(row(&c, "Config").contains("⛔"), "{c}");
    assert!(!c.contains("@alice |") && !c.contains("acme/"), "roles shown from another policy:\n{c}");
    assert_eq!(w.gh.count("teams/list-members-in-org"), 0);
    assert_eq!(w.gate(SHA).0, "action_required");
    let _ = w.replies();
    w.done().await;
}
both_backends!(a_broken_policy_shows_no_roles_from_anywhere);

// The App edits only comments it wrote, even when a person's comment carries its marker.
async fn the_app_edits_only_comments_it_wrote(db: &TestDb) {
    let w = World::new(db).await;
    let trap = w.gh.human_comment_by(REPO, 5, EVE, "gotcha <!-- shipgate:request -->");
    // The App's first comment is created but its answer is lost: it looks for it by marker.
    w.gh.inject("POST", "/issues/5/comments", fake_github::Fault::LoseAnswer, 1);
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.settle().await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    let eve = w.gh.model().comments.iter().find(|c| c.id == trap).unwrap().body.clone();
    assert_eq!(eve, "gotcha <!-- shipgate:request -->");
    assert!(w.sticky().contains("@alice"));
    w.gh.comments(REPO, 5);
    w.done().await;
}
both_backends!(the_app_edits_only_comments_it_wrote);

// 11. The cached policy was refreshed only by a push whose commit list named the file: a push
// with a cut-short list (GitHub lists at most 20 commits) left an older, looser policy in force.
async fn a_push_whose_commit_list_omits_the_policy_still_reloads_it(db: &TestDb) {
    let w = World::new(db).await;
    approved_by_bob_and_alice(&w).await;
    w.sticky();
    // The file now requires a frontend lead for everything; the push lists other files only.
    w.gh.file(REPO, ".github/shipgate.yml", &POLICY.replace("        when_paths: [\"apps/frontend/**\"]\n", ""));
    let after = "dddddddddddddddddddddddddddddddddddddddd";
    let mut v = w.base("push.none.0");
    v["ref"] = json!("refs/heads/main");
    v["repository"]["default_branch"] = json!("main");
    v["after"] = json!(after);
    v["commits"] = json!([{ "id": after, "added": [], "removed": [], "modified": ["README.md"] }]);
    assert_eq!(w.app.deliver("push", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let c = w.sticky();
    assert!(row(&c, "Approvals").contains("waiting for frontend-lead"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    // A push that changes nothing of the policy costs one read and nothing else.
    let before = w.gh.calls().len();
    v["after"] = json!("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");
    assert_eq!(w.app.deliver("push", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let calls: Vec<(String, u16)> = w.gh.calls()[before..].iter().map(|c| (c.operation.clone(), c.status)).collect();
    // A conditional read with the entity tag: 304, which costs no rate limit.
    assert_eq!(calls, vec![("repos/get-content".to_string(), 304)], "{calls:?}");
    w.done().await;
}
both_backends!(a_push_whose_commit_list_omits_the_policy_still_reloads_it);

// Review: an approval made stale by a push counted again once the old head was pushed back.
async fn a_stale_approval_never_comes_back(db: &TestDb) {
    let w = World::new(db).await;
    approved_by_bob_and_alice(&w).await;
    w.push_to_pr(SHA2).await;
    w.settle().await;
    assert!(w.sticky().contains("@bob: given for aaaaaaa, the head is now bbbbbbb"), "{}", w.sticky());
    // The author force-pushes the approved commit back.
    w.gh.push_to_pull(REPO, 12, SHA);
    let mut v = w.base("pull_request.synchronize.0");
    v["number"] = json!(12);
    v["pull_request"]["number"] = json!(12);
    v["pull_request"]["head"]["sha"] = json!(SHA);
    v["sender"]["node_id"] = json!("force-push");
    assert_eq!(w.app.deliver("pull_request", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required", "{}", w.sticky());
    assert!(active_approvals(&w, 5).await.is_empty());
    w.sticky();
    w.done().await;
}
both_backends!(a_stale_approval_never_comes_back);

// Review: a comment event delivered late carries an old copy of the issue, which said "open".
async fn a_late_comment_never_reopens_a_closed_request(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.comment(BOB, "/approve").await;
    w.settle().await;
    // Closed (GitHub's copy says so at 10:00) ...
    w.gh.model().issues.get_mut(&(REPO.to_string(), 5)).unwrap().state = "closed".into();
    let mut v = w.base("issues.labeled.0");
    v["action"] = json!("closed");
    v["issue"] = fake_github::issue_json(&w.gh.model().issues[&(REPO.to_string(), 5)]);
    v["issue"]["updated_at"] = json!("2026-12-01T10:00:00Z");
    assert_eq!(w.app.deliver("issues", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    // ... then a comment whose event carries the copy from 09:00, when it was open.
    let id = w.gh.human_comment_by(REPO, 5, ALICE, "/approve");
    let mut c = w.base("issue_comment.created.0");
    c["issue"] = v["issue"].clone();
    c["issue"]["state"] = json!("open");
    c["issue"]["updated_at"] = json!("2026-12-01T09:00:00Z");
    c["comment"]["id"] = json!(id);
    c["comment"]["body"] = json!("/approve");
    c["comment"]["user"] = json!({ "id": ALICE.0, "login": ALICE.1, "type": "User" });
    assert_eq!(w.app.deliver("issue_comment", &w.id(), &c.to_string()).await, 202);
    w.settle().await;
    assert!(w.reactions(id).is_empty());
    w.assert_replied("@alice `/approve` was not accepted: the request is closed");
    let r = stored(&w).await;
    assert_eq!((r.open, r.gate_open), (0, 0), "{r:?}");
    w.sticky();
    w.done().await;
}
both_backends!(a_late_comment_never_reopens_a_closed_request);

// Review: a comment's creation delivered after its deletion (or edit) still approved.
async fn a_creation_delivered_after_its_deletion_carries_nothing(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    let id = w.gh.human_comment_by(REPO, 5, BOB, "/approve");
    w.gh.model().comments.retain(|c| c.id != id);
    comment_on(&w, 5, BOB, BOB, id, "/approve", "deleted").await;
    w.settle().await;
    comment_on(&w, 5, BOB, BOB, id, "/approve", "created").await;
    w.settle().await;
    assert_eq!(active_approvals(&w, 5).await, vec!["alice"]);
    assert_eq!(w.gate(SHA).0, "action_required");
    w.sticky();
    w.done().await;
}
both_backends!(a_creation_delivered_after_its_deletion_carries_nothing);

// Review: a status posted by someone else on a GitHub Actions staging deployment counted.
async fn a_status_someone_else_posts_is_no_evidence(db: &TestDb) {
    let w = World::with_policy(db, &staging_first_policy()).await;
    approved_by_bob_and_alice_waiting(&w).await;
    // The pipeline's staging deployment failed; Eve posts `success` on it with her own token.
    let mut v = w.base("deployment_status.created.0");
    v["deployment"]["id"] = json!(710);
    v["deployment"]["sha"] = json!(SHA);
    v["deployment"]["environment"] = json!("staging");
    v["deployment"]["creator"] = fake_github::actions_creator();
    v["deployment"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["id"] = json!(7101);
    v["deployment_status"]["state"] = json!("success");
    v["deployment_status"]["environment"] = json!("staging");
    v["deployment_status"]["creator"] = json!({ "id": EVE.0, "login": EVE.1, "type": "User" });
    v["deployment_status"]["performed_via_github_app"] = Value::Null;
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    assert!(row(&w.sticky(), "Staging first").contains("⏳"), "{}", w.sticky());
    assert_eq!(w.gate(SHA).0, "action_required");
    assert!(shipgate::store::deploys::get(&w.app.db, INST, REPO_ID, 710).await.unwrap().is_none());
    w.done().await;
}
both_backends!(a_status_someone_else_posts_is_no_evidence);

// Review: commit authors come from git e-mail addresses; the push event's sender does not.
async fn a_pusher_whose_commits_name_someone_else_cannot_approve(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.settle().await;
    // Bob pushes SHA2 to Dave's PR with commits that claim another author.
    w.gh.push_to_pull(REPO, 12, SHA2);
    w.gh.ci(REPO, SHA2, "build", "completed", Some("success"));
    let mut v = w.base("pull_request.synchronize.0");
    v["number"] = json!(12);
    v["pull_request"]["number"] = json!(12);
    v["pull_request"]["head"]["sha"] = json!(SHA2);
    v["sender"] = json!({ "id": BOB.0, "login": BOB.1, "type": "User" });
    assert_eq!(w.app.deliver("pull_request", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let bob = w.comment(BOB, "/approve").await;
    w.settle().await;
    assert!(w.reactions(bob).is_empty());
    w.assert_replied("@bob `/approve` was not accepted: you pushed a commit to #12");
    w.sticky();
    w.done().await;
}
both_backends!(a_pusher_whose_commits_name_someone_else_cannot_approve);

// Review: when its first attempt failed, the App adopted any deployment carrying its key, which
// anyone could create first (the key is public: request and comment numbers).
async fn a_deployment_made_first_with_the_apps_key_is_never_adopted(db: &TestDb) {
    let w = World::with_policy(db, &deploy_policy()).await;
    approved_by_bob_and_alice(&w).await;
    let id = w.gh.human_comment_by(REPO, 5, ALICE, "/deploy");
    let key = format!("request-5-{id}");
    w.gh.model().deployments.push((
        REPO.into(),
        json!({ "id": 99_999, "sha": OLD, "ref": OLD, "environment": "production",
                "payload": { "shipgate_key": key, "shipgate_request": 5 },
                "creator": { "id": EVE.0, "login": EVE.1, "type": "User" }, "performed_via_github_app": null }),
    ));
    // The App's first POST fails before GitHub made anything: it looks for its deployment.
    w.gh.inject("POST", "/deployments", fake_github::Fault::Status(502), 1);
    comment_on(&w, 5, ALICE, ALICE, id, "/deploy", "created").await;
    w.settle().await;
    let adopted = shipgate::store::objects::get(&w.app.db, INST, "deployment", &format!("{REPO}:{key}")).await.unwrap();
    assert_ne!(adopted, Some(99_999));
    let own: Vec<Value> =
        w.gh.model().deployments.iter().filter(|(_, d)| d["ref"] == SHA).map(|(_, d)| d.clone()).collect();
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(adopted, own[0]["id"].as_i64());
    let _ = w.gh.app_comments(REPO, 5);
    w.done().await;
}
both_backends!(a_deployment_made_first_with_the_apps_key_is_never_adopted);

// SPEC §3.5: a covered commit deployed while the gate was closed is reported loudly, never
// taken as the request's deployment.
async fn a_deployment_while_the_gate_was_closed_is_reported(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    request5(&w, "labeled", &body("production", "#12"), true, "open").await;
    w.comment(ALICE, "/approve").await; // the backend lead has not approved: the gate is closed
    w.settle().await;
    let (creator, app) = by_actions();
    deployment_status(&w, 820, SHA, "production", "success", creator, app, json!({})).await;
    w.settle().await;
    let loud: Vec<String> =
        w.gh.app_comments(REPO, 5)
            .into_iter()
            .filter(|c| c.body.contains("Deployment outside"))
            .map(|c| c.body)
            .collect();
    assert_eq!(loud.len(), 1, "{loud:?}");
    assert!(loud[0].contains("deployment 820 of `aaaaaaa` to production (success)"), "{}", loud[0]);
    let r = stored(&w).await;
    assert_eq!((r.deployment_id, r.deploy_state.as_deref()), (None, None), "{r:?}");
    assert_eq!(w.gh.model().issues[&(REPO.to_string(), 5)].state, "open");
    let filter = shipgate::store::audit::Filter { installation: Some(INST), limit: 100, ..Default::default() };
    let kinds: Vec<String> =
        shipgate::store::audit::list(&w.app.db, &filter).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert!(kinds.iter().any(|k| k == "deployment.ungated"), "{kinds:?}");
    w.sticky();
    w.done().await;
}
both_backends!(a_deployment_while_the_gate_was_closed_is_reported);

// Links are rows: requests stored before migration 0011 get theirs from the facts they stored,
// and the deployments a payload key once attached to a request are no longer its own.
async fn existing_requests_get_their_links_from_the_stored_facts(db: &TestDb) {
    let store = shipgate::store::Db::connect(&db.url).await.expect("connect");
    store.migrate_to(10).await.expect("migrations up to 0010");
    let facts = json!({ "prs": [{ "number": 12, "head_sha": SHA.to_uppercase(), "author": { "id": 301, "login": "dave" },
                                  "state": "open", "files": null, "checks": [{ "name": SHA2, "status": "completed", "conclusion": "success" }] }],
                        "missing_prs": [13], "review_approved": false, "shown": "" });
    let commit = json!({ "prs": [], "missing_prs": [], "review_approved": false, "commit": OLD, "shown": "" });
    for (issue, facts) in [(5, facts), (6, commit)] {
        sqlx::query(
            "INSERT INTO requests (installation_id, repository_id, repository, issue, author_id, author_login, labelled, \
             open, environment, fingerprint, revision, gate_open, state, facts, labels, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 401, 'carol', 1, 1, 'production', 'x', 1, 0, 'awaiting-approval', $5, '[]', 1, 1)",
        )
        .bind(INST)
        .bind(REPO_ID)
        .bind(REPO)
        .bind(issue)
        .bind(facts.to_string())
        .execute(store.writer())
        .await
        .expect("insert a request");
    }
    // A deployment attached to #5 by a copied payload key, and one the App really created.
    for (id, issue) in [(70, Some(5)), (71, Some(5))] {
        sqlx::query(
            "INSERT INTO deployments (installation_id, repository_id, deployment_id, environment, sha, issue, state, \
             status_at, status_id, created_at, succeeded_at) VALUES ($1, $2, $3, 'production', $4, $5, 'success', 1, 1, 1, 1)",
        )
        .bind(INST)
        .bind(REPO_ID)
        .bind(id)
        .bind(OLD)
        .bind(issue)
        .execute(store.writer())
        .await
        .expect("insert a deployment");
    }
    shipgate::store::objects::put(&store, INST, "deployment", &format!("{REPO}:request-5-1"), 71, 1).await.unwrap();
    store.migrate().await.expect("the rest");
    use shipgate::store::requests::{Link, open_linking};
    assert_eq!(open_linking(&store, INST, REPO_ID, Link::Pr, "12").await.unwrap(), vec![5]);
    assert_eq!(open_linking(&store, INST, REPO_ID, Link::Pr, "13").await.unwrap(), vec![5]);
    assert_eq!(open_linking(&store, INST, REPO_ID, Link::Sha, SHA).await.unwrap(), vec![5]);
    assert_eq!(open_linking(&store, INST, REPO_ID, Link::Sha, OLD).await.unwrap(), vec![6]);
    assert!(open_linking(&store, INST, REPO_ID, Link::Sha, SHA2).await.unwrap().is_empty(), "a check name is no link");
    assert!(open_linking(&store, INST, REPO_ID, Link::Pr, "1").await.unwrap().is_empty());
    let forged = shipgate::store::deploys::get(&store, INST, REPO_ID, 70).await.unwrap().unwrap();
    assert_eq!((forged.origin.as_str(), forged.issue), ("manual", None));
    let own = shipgate::store::deploys::get(&store, INST, REPO_ID, 71).await.unwrap().unwrap();
    assert_eq!((own.origin.as_str(), own.issue), ("app", Some(5)));
    store.pool().close().await;
}
both_backends!(existing_requests_get_their_links_from_the_stored_facts);

// Review: GitHub's schema makes `comment.user` (issue_comment.*) and `issue.user` (issues.opened,
// edited, labeled, unlabeled) nullable. The old handler read them with serde_json::Value and
// carried on; the typed payload refuses the whole delivery (parked), so the event's effect is lost.
async fn a_null_comment_user_still_withdraws_the_approval(db: &TestDb) {
    let w = World::new(db).await;
    approved_by_bob_and_alice(&w).await;
    let bob = w.gh.model().comments.iter().find(|c| c.user == "bob").unwrap().id;
    let mut v = w.base("issue_comment.deleted.0");
    v["issue"] = fake_github::issue_json(&w.gh.model().issues[&(REPO.to_string(), 5)]);
    v["comment"]["id"] = json!(bob);
    v["comment"]["body"] = json!("/approve");
    v["comment"]["user"] = Value::Null; // schema: nullable
    v["sender"] = json!({ "id": EVE.0, "login": EVE.1, "type": "User" });
    assert_eq!(w.app.deliver("issue_comment", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    assert_eq!(active_approvals(&w, 5).await, vec!["alice"], "the deleted comment's approval still counts");
    assert_eq!(w.gate(SHA).0, "action_required");
    w.sticky();
    w.done().await;
}
both_backends!(a_null_comment_user_still_withdraws_the_approval);

async fn a_content_edit_with_a_null_issue_user_still_makes_approvals_stale(db: &TestDb) {
    let w = World::new(db).await;
    approved_by_bob_and_alice(&w).await;
    let changed = body("production", "#12").replace("Data migration: none", "Data migration: DROP TABLE users");
    {
        let mut m = w.gh.model();
        m.issues.get_mut(&(REPO.to_string(), 5)).unwrap().body = changed.clone();
    }
    let mut v = w.base("issues.edited.0");
    v["issue"] = fake_github::issue_json(&w.gh.model().issues[&(REPO.to_string(), 5)]);
    v["issue"]["user"] = Value::Null; // schema (webhook-issues-edited): nullable
    assert_eq!(w.app.deliver("issues", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required", "the edited request still passes on its old approvals");
    w.sticky();
    w.done().await;
}
both_backends!(a_content_edit_with_a_null_issue_user_still_makes_approvals_stale);
