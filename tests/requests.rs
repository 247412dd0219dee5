//! DEPLOYMENT_REQUEST issues end to end: real payloads (edited) through the real router, the
//! App's actions sent to the fake GitHub, which checks each against GitHub's OpenAPI.

mod common;
mod fake_github;
mod world;

use common::TestDb;
use serde_json::json;
use world::*;

async fn the_happy_path(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "in_progress", None);
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    let c = w.sticky();
    assert!(row(&c, "Tests").contains("⏳") && row(&c, "Tests").contains("`build` is in progress"), "{c}");
    assert!(row(&c, "Approvals").contains("waiting for pm, backend-lead"), "{c}");
    assert!(c.contains("| backend-lead (changes under apps/backend/**) | ⏳ needed | @acme/backend-leads |"), "{c}");
    assert!(!c.contains("frontend-lead"), "frontend-lead is not needed for backend files:\n{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    assert_eq!(w.gh.labels(REPO, 5), vec!["DEPLOYMENT_REQUEST", "awaiting-approval"]);

    // CI goes green.
    w.check_completed(SHA, "build", "success").await;
    w.settle().await;
    let c = w.sticky();
    assert!(row(&c, "Tests").contains("✅"), "{c}");
    assert!(c.contains("- [x] All tests passing"), "{c}");

    // The backend lead approves, then the PM.
    let bob = w.comment(BOB, "Looks good.\n/approve").await;
    w.settle().await;
    assert_eq!(w.reactions(bob), vec!["+1"]);
    let c = w.sticky();
    assert!(c.contains("| backend-lead (changes under apps/backend/**) | ✅ @bob |"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    let alice = w.comment(ALICE, "/approve production").await;
    w.settle().await;
    assert_eq!(w.reactions(alice), vec!["+1"]);
    let c = w.sticky();
    assert!(c.contains("The gate is open"), "{c}");
    assert_eq!(w.gate(SHA).0, "success");
    assert_eq!(w.gh.labels(REPO, 5), vec!["DEPLOYMENT_REQUEST", "approved"]);
    assert!(c.contains("- [x] Rollback plan documented"), "{c}");
    assert!(w.replies().is_empty());
    let calls = w.gh.call_counts();
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("happy path API calls: {calls:?}\n").as_bytes());
    // docs/benchmarks.md: 28 before issue 12's reads (a pin, the pushers); 27 since a recheck
    // caused by a check reads only the checks; 31 since a command that can open the gate reads
    // the checks again (2 calls for each of the two approvals).
    assert!(calls.values().sum::<usize>() <= 31, "the happy path costs more calls than it did: {calls:?}");
    w.done().await;
}
both_backends!(the_happy_path);

/// A check event can be lost to a request: handled between the evaluation that read the commit's
/// checks and the commit of the links that make the request findable by that commit (the check
/// events of a commit now run beside the request's own deliveries). So a command that can open the
/// gate or deploy never reuses the checks read before it: it reads them again. Here the failing
/// check's webhook never arrives at all, and the approval that would open the gate still sees it.
async fn an_approval_reads_the_checks_again_whatever_was_missed(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    w.comment(BOB, "/approve").await;
    w.settle().await;
    assert!(row(&w.sticky(), "Tests").contains("✅"));
    // A required check fails on GitHub; its delivery is lost to the request.
    w.gh.ci(REPO, SHA, "security-scan", "completed", Some("failure"));
    // A remark reuses what was read (no command, nothing to open).
    w.comment(CAROL, "Looks fine to me.").await;
    w.settle().await;
    assert!(row(&w.sticky(), "Tests").contains("✅"), "a remark reads nothing again");
    // The approval that completes the gate reads the checks first.
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    let c = w.sticky();
    assert!(row(&c, "Tests").contains("⛔") && row(&c, "Tests").contains("`security-scan` failure"), "{c}");
    assert!(!c.contains("The gate is open"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    w.done().await;
}
both_backends!(an_approval_reads_the_checks_again_whatever_was_missed);

/// Everything that must not count as an approval, and every refusal says why.
async fn refusals(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.issue_event("opened", &body("production", "#12"), true).await;
    w.settle().await;

    // The requester, the PR author, and someone with no role.
    w.gh.team("acme", "backend-leads", &[BOB, CAROL, DAVE]);
    let carol = w.comment(CAROL, "/approve").await;
    let dave = w.comment(DAVE, "/approve").await;
    let eve = w.comment(EVE, "/approve").await;
    w.settle().await;
    let replies = w.replies();
    assert_eq!(replies.len(), 3, "{replies:#?}");
    assert!(
        replies
            .iter()
            .any(|r| r.starts_with("@carol `/approve` was not accepted: you cannot approve your own request")),
        "{replies:#?}"
    );
    assert!(
        replies.iter().any(|r| r.starts_with("@dave `/approve` was not accepted: you cannot approve your own request")),
        "{replies:#?}"
    );
    assert!(
        replies
            .iter()
            .any(|r| r.starts_with("@eve `/approve` was not accepted: you hold none of the roles production needs")),
        "{replies:#?}"
    );
    for c in [carol, dave, eve] {
        assert!(w.reactions(c).is_empty());
    }
    // Quoted, in code, edited in, or by a bot: not commands at all.
    let quoted = w.comment(BOB, "> /approve\n\n```\n/approve\n```\n`/approve`").await;
    let edited = w.comment(BOB, "LGTM").await;
    w.comment_event(BOB, "LGTM\n/approve", "edited", Some(edited)).await;
    let bot = w.comment((9, "ci-helper[bot]"), "/approve").await;
    w.settle().await;
    for c in [quoted, edited, bot] {
        assert!(w.reactions(c).is_empty(), "comment {c} was taken as a command");
    }
    let c = w.sticky();
    assert!(c.contains("| backend-lead (changes under apps/backend/**) | ⏳ needed |"), "{c}");
    // A near miss gets a hint.
    w.comment(ALICE, "/aprove").await;
    w.settle().await;
    let replies = w.replies();
    assert!(replies.iter().any(|r| r.contains("did you mean `/approve`")), "{replies:#?}");
    w.done().await;
}
both_backends!(refusals);

async fn a_push_makes_approvals_stale_and_deleting_withdraws(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert!(w.sticky().contains("The gate is open"));
    assert_eq!(w.gate(SHA).0, "success");
    // A new push: both approvals were given for the old head.
    w.gh.ci(REPO, SHA2, "build", "completed", Some("success"));
    w.push_to_pr(SHA2).await;
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("@bob: given for aaaaaaa, the head is now bbbbbbb"), "{c}");
    assert!(row(&c, "Approvals").contains("waiting for pm, backend-lead"), "{c}");
    assert_eq!(w.gate(SHA2).0, "action_required");
    // Approved again on the new head, then one approving comment is deleted: withdrawn.
    let bob2 = w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA2).0, "success");
    w.comment_event(BOB, "/approve", "deleted", Some(bob2)).await;
    w.settle().await;
    assert_eq!(w.gate(SHA2).0, "action_required");
    assert!(w.sticky().contains("| backend-lead (changes under apps/backend/**) | ⏳ needed |"));
    w.done().await;
}
both_backends!(a_push_makes_approvals_stale_and_deleting_withdraws);

async fn one_person_fills_one_role(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.team("acme", "product", &[BOB]); // bob: pm and backend lead
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.comment(BOB, "/approve").await;
    w.settle().await;
    let c = w.sticky();
    assert!(row(&c, "Approvals").contains("⏳"), "one person filled two roles:\n{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert!(w.sticky().contains("The gate is open"));
    assert_eq!(w.gate(SHA).0, "success");
    w.done().await;
}
both_backends!(one_person_fills_one_role);

async fn hold_and_deny_close_an_open_gate(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success");
    let hold = w.comment(EVE, "/hold").await; // anyone with write access
    w.settle().await;
    assert_eq!(w.reactions(hold), vec!["+1"]);
    assert_eq!(w.gate(SHA).0, "action_required");
    assert!(row(&w.sticky(), "Hold").contains("on hold by @eve"));
    assert_eq!(w.gh.labels(REPO, 5), vec!["DEPLOYMENT_REQUEST", "on-hold"]);
    w.comment(EVE, "/unhold").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());
    w.sticky();
    let deny = w.comment(ALICE, "/deny the error budget is spent").await;
    w.settle().await;
    assert_eq!(w.reactions(deny), vec!["+1"]);
    assert_eq!(w.gate(SHA).0, "action_required");
    assert!(row(&w.sticky(), "Hold").contains("denied by @alice: the error budget is spent"));
    // Lifted, then denied again: each recorded (the App's shutdown checks tables against the log).
    w.comment(ALICE, "/undeny").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());
    w.comment(ALICE, "/deny not this week").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "action_required");
    assert!(row(&w.sticky(), "Hold").contains("denied by @alice: not this week"));
    let app_db = w.app.db.clone();
    let kinds: Vec<(String,)> =
        sqlx::query_as("SELECT kind FROM audit_log WHERE kind IN ('request.denied', 'request.undenied') ORDER BY seq")
            .fetch_all(app_db.pool())
            .await
            .unwrap();
    let kinds: Vec<&str> = kinds.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(kinds, ["request.denied", "request.undenied", "request.denied"]);
    w.done().await;
    // A deny lifted behind the App's back (which would let the gate open at the next event).
    let dbc = db.connect().await;
    sqlx::query("UPDATE requests SET denied_by = NULL, denied_by_id = NULL, deny_reason = NULL")
        .execute(dbc.writer())
        .await
        .unwrap();
    let keys = shipgate::store::audit::AuditKeys {
        current: Some(shipgate::store::audit::AuditKey::new(shipgate::config::TEST_AUDIT_KEY)),
        retired: vec![],
    };
    let what = shipgate::store::audit::verify(&dbc, &keys).await.unwrap().unrecorded.expect("a lifted deny");
    assert!(what.contains("is not denied in the table, but its last deny entry says denied"), "{what}");
    dbc.close().await;
}
both_backends!(hold_and_deny_close_an_open_gate);

async fn a_broken_config_keeps_the_gate_closed(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.file(
        REPO,
        ".github/shipgate.yml",
        "roles:\n  pm: { users: [alice] }\nenvironments:\n  production:\n    approvals:\n      - role: qa\n",
    );
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    let c = w.sticky();
    assert!(row(&c, "Config").contains("⛔") && c.contains("line 6, column"), "{c}");
    assert!(c.contains("unknown role"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    w.done().await;
}
both_backends!(a_broken_config_keeps_the_gate_closed);

async fn missing_fields_are_named_and_an_edit_fixes_them(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.issue_event("opened", "Please deploy the api.\n\nEnvironment: production\n", true).await;
    w.settle().await;
    let c = w.sticky();
    for field in ["service", "reason", "pull_requests", "rollback_plan"] {
        assert!(c.contains(&format!("- **{field}**")), "{field} not named:\n{c}");
    }
    assert!(row(&c, "Request").contains("⛔"), "{c}");
    w.issue_event("edited", &body("production", "#12"), true).await;
    w.settle().await;
    let c = w.sticky();
    assert!(row(&c, "Request").contains("✅"), "{c}");
    assert!(!c.contains("What the request is missing"), "{c}");
    w.done().await;
}
both_backends!(missing_fields_are_named_and_an_edit_fixes_them);

async fn out_of_order_ci_counts_and_approvals_before_the_label_do_not(db: &TestDb) {
    let w = World::new(db).await;
    // The issue exists without the label; CI finishes and approvals are written first.
    w.issue_event("opened", &body("production", "#12"), false).await;
    w.check_completed(SHA, "build", "success").await;
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert!(w.gh.app_comments(REPO, 5).is_empty(), "not a request yet");
    // Then the label: the checks count (they are facts about the commit); the approvals do not
    // (SPEC §3.4: only comments written after the issue became a request carry commands).
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    let c = w.sticky();
    assert!(row(&c, "Tests").contains("✅"), "{c}");
    assert!(row(&c, "Approvals").contains("waiting for pm, backend-lead"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());
    w.sticky();
    w.done().await;
}
both_backends!(out_of_order_ci_counts_and_approvals_before_the_label_do_not);

async fn staging_first_waits_for_the_same_sha_on_staging(db: &TestDb) {
    let w = World::new(db).await;
    let policy =
        POLICY.replace("    require_checks: all\n", "    require_checks: all\n    require_staging_first: true\n");
    assert!(policy.contains("require_staging_first: true"));
    w.gh.file(REPO, ".github/shipgate.yml", &policy);
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.gh.deployment(REPO, "0000000000000000000000000000000000000000", "staging", "success"); // another SHA
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    let c = w.sticky();
    assert!(
        row(&c, "Staging first").contains("⏳ | waiting for a successful deployment of the same SHA to staging"),
        "{c}"
    );
    assert_eq!(w.gate(SHA).0, "action_required");
    // The pipeline deploys the same SHA to staging; the next recheck sees it.
    w.gh.deployment(REPO, SHA, "staging", "success");
    w.comment(EVE, "/recheck").await;
    w.settle().await;
    let c = w.sticky();
    assert!(row(&c, "Staging first").contains("✅"), "{c}");
    assert!(c.contains("- [x] Staging deployment successful"), "{c}");
    assert_eq!(w.gate(SHA).0, "success");
    w.done().await;
}
both_backends!(staging_first_waits_for_the_same_sha_on_staging);

/// A command on the linked PR counts for the request.
async fn commands_on_a_linked_pr(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    // Bob approves on PR #12 itself.
    let id = w.gh.human_comment_by(REPO, 12, BOB, "/approve");
    let mut v = w.base("issue_comment.created.0");
    v["issue"] = json!({ "number": 12, "title": "api", "state": "open", "labels": [], "user": { "id": DAVE.0, "login": DAVE.1 },
                        "pull_request": { "url": "https://api.github.com/repos/acme/app/pulls/12" } });
    v["comment"]["id"] = json!(id);
    v["comment"]["body"] = json!("/approve");
    v["comment"]["user"] = json!({ "id": BOB.0, "login": BOB.1, "type": "User" });
    assert_eq!(w.app.deliver("issue_comment", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    assert_eq!(w.reactions(id), vec!["+1"]);
    assert!(w.sticky().contains("The gate is open"));
    assert_eq!(w.gate(SHA).0, "success");
    w.gh.comments(REPO, 12);
    w.done().await;
}
both_backends!(commands_on_a_linked_pr);

/// A push that changes the policy gets a `shipgate / config` check run with the verdict, and the
/// open requests are evaluated against the new file.
async fn a_push_of_the_policy_gets_a_config_check_run(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success");
    w.sticky();
    // The file on the default branch breaks.
    w.gh.file(REPO, ".github/shipgate.yml", &POLICY.replace("role: pm", "role: qa"));
    let after = "cccccccccccccccccccccccccccccccccccccccc";
    let mut v = w.base("push.none.0");
    v["ref"] = json!("refs/heads/main");
    v["repository"]["default_branch"] = json!("main");
    v["after"] = json!(after);
    v["commits"] = json!([{ "id": after, "added": [], "removed": [], "modified": [".github/shipgate.yml"] }]);
    assert_eq!(w.app.deliver("push", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let runs = w.gh.gate_checks(REPO, after);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].0, "shipgate / config");
    assert_eq!(runs[0].1, "failure");
    assert!(runs[0].2.contains("unknown role `qa`") && runs[0].2.contains("line "), "{runs:?}");
    // The request's gate closed with the config.
    assert_eq!(w.gate(SHA).0, "action_required");
    let c = w.sticky();
    assert!(row(&c, "Config").contains("⛔"), "{c}");
    // The change is in the audit log, by the pusher, with what changed.
    let f = shipgate::store::audit::Filter { installation: Some(INST), limit: 100, ..Default::default() };
    let changes: Vec<_> = shipgate::store::audit::list(&w.app.db, &f)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "policy.changed")
        .collect();
    assert_eq!(changes.len(), 2, "read for the request, then pushed: {changes:?}");
    let pushed: serde_json::Value = serde_json::from_str(&changes[1].detail).unwrap();
    assert_eq!(changes[1].actor_login.as_deref(), Some(v["sender"]["login"].as_str().unwrap()));
    assert_eq!(pushed["commit"], after);
    assert_eq!((pushed["valid_before"].clone(), pushed["valid_after"].clone()), (json!(true), json!(false)));
    assert_eq!(pushed["environments"]["changed"], json!(["production"]), "{pushed}");
    assert_eq!(pushed["first_read"], false);
    w.done().await;
}
both_backends!(a_push_of_the_policy_gets_a_config_check_run);

#[test]
fn check_config_gives_the_verdict_offline() {
    let dir = tempfile::tempdir().expect("dir");
    let good = dir.path().join("good.yml");
    std::fs::write(&good, POLICY).expect("write");
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "roles:\n  pm: { users: [alice] }\nenvironments:\n  production:\n    approvals:\n      - role: qa\n",
    )
    .expect("write");
    let run = |f: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipgate"))
            .arg("check-config")
            .arg(f)
            .output()
            .expect("run");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, text) = run(&good);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("valid") && text.contains("environment production"), "{text}");
    let (code, text) = run(&bad);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("bad.yml:6:") && text.contains("unknown role `qa`"), "{text}");
}

/// Any edit of the request's content makes earlier approvals stale (SPEC §3.3); white space and
/// ticks in its own testing checklist do not.
async fn an_edit_of_the_plan_makes_approvals_stale(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    let with_list = format!("{}\nTESTING:\n- [ ] Unit tests\n", body("production", "#12"));
    w.issue_event("labeled", &with_list, true).await;
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success");
    w.sticky();
    // A tick and extra spaces: approvals stand.
    let ticked = with_list.replace("- [ ] Unit tests", "- [x] Unit tests").replace("new endpoint", "new   endpoint");
    w.issue_event("edited", &ticked, true).await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());
    // The reason changes: they no longer count.
    w.issue_event("edited", &ticked.replace("new   endpoint", "a new endpoint"), true).await;
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("@alice: the request changed after it was given"), "{c}");
    assert!(c.contains("@bob: the request changed after it was given"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    w.done().await;
}
both_backends!(an_edit_of_the_plan_makes_approvals_stale);

/// `shipgate simulate` over the README's example files shows what the running App shows for the
/// same facts: the same decision code, no second implementation.
async fn simulate_shows_what_the_app_shows(db: &TestDb) {
    let example = |name: &str| {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/simulate").join(name))
            .expect("example")
    };
    let w = World::new(db).await;
    w.gh.file(REPO, ".github/shipgate.yml", &example("shipgate.yml"));
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.issue_event("labeled", &example("request.md"), true).await;
    w.settle().await;
    w.comment(BOB, "/approve").await;
    w.settle().await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    let app = w.sticky();
    let s = shipgate::simulate::simulate(&example("shipgate.yml"), &example("request.md"), Some(&example("facts.yml")))
        .expect("simulate");
    assert!(app.contains("The gate is open"), "{app}");
    // The App's comment carries its hidden marker, added when it is sent.
    let marker = shipgate::github::actions::marker_tag(shipgate::domain::messages::REQUEST_MARKER);
    assert_eq!(app.replace(&marker, "").trim_end(), s.comment.trim_end());
    assert_eq!(s.check_run.map(|c| c.0), Some(w.gate(SHA).0));
    w.done().await;
}
both_backends!(simulate_shows_what_the_app_shows);

/// SPEC §3.2: a box a person ticks in the App's sticky comment stays ticked when the App edits it.
async fn a_persons_tick_survives_an_app_edit(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    let sticky = w.gh.app_comments(REPO, 5).into_iter().find(|c| c.body.contains("<!-- shipgate:request -->")).unwrap();
    // Carol ticks "Release notes prepared" in the App's comment: GitHub keeps the body and sends
    // an edit by her of the App's comment.
    let ticked = sticky.body.replace("- [ ] Release notes prepared", "- [x] Release notes prepared");
    w.gh.model().comments.iter_mut().find(|c| c.id == sticky.id).unwrap().body = ticked.clone();
    let mut v = w.base("issue_comment.edited.0");
    v["issue"] = fake_github::issue_json(&w.gh.model().issues[&(REPO.to_string(), 5)]);
    v["comment"] =
        fake_github::comment_json(&w.gh.model().comments.iter().find(|c| c.id == sticky.id).unwrap().clone());
    v["changes"] = json!({ "body": { "from": sticky.body } });
    v["sender"] = json!({ "id": CAROL.0, "login": CAROL.1, "type": "User" });
    assert_eq!(w.app.deliver("issue_comment", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    // The App edits its comment (an approval): the tick is still there.
    w.comment(BOB, "/approve").await;
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("✅ @bob"), "the App edited it: {c}");
    assert!(c.contains("- [x] Release notes prepared"), "{c}");
    assert!(w.replies().is_empty());
    w.done().await;
}
both_backends!(a_persons_tick_survives_an_app_edit);

/// SPEC §6: in dry-run no text pretends a read that did not happen: the policy file and the
/// linked PR were not read, and the sticky comment the App would write says so.
async fn dry_run_texts_never_pretend_a_read(db: &TestDb) {
    let app = common::TestApp::start(db, shipgate::server::Options::default()).await;
    let mut v = payload("issues.labeled.0");
    v["action"] = json!("labeled");
    v["issue"] = json!({ "number": 5, "title": "Deploy", "body": body("production", "#12"), "state": "open",
                        "labels": [{ "name": "DEPLOYMENT_REQUEST" }], "user": { "id": CAROL.0, "login": CAROL.1, "type": "User" } });
    assert_eq!(app.deliver("issues", "d-1", &v.to_string()).await, 202);
    world::settle(&app.db).await;
    let actions = shipgate::store::outbox::list(&app.db, None, 50).await.expect("list");
    let sticky = actions
        .iter()
        .filter_map(|a| serde_json::from_str::<serde_json::Value>(&a.action).ok())
        .find(|a| a["marker"] == "request")
        .expect("the sticky comment the App would write");
    let body = sticky["body"].as_str().unwrap_or_default();
    assert!(body.contains("`.github/shipgate.yml` not read (dry-run"), "{body}");
    assert!(body.contains("#12 not read (dry-run"), "{body}");
    assert!(!body.contains("is valid") && !body.contains("no linked pull request"), "{body}");
    app.shutdown().await;
}
both_backends!(dry_run_texts_never_pretend_a_read);

/// From an attacker's review: only a person's edit of the App's own comment carries ticks. A comment by another bot
/// (a workflow's `github-actions[bot]`, with the marker copied) ticks nothing; and the webhook of
/// the App's own earlier edit (delivered late, or redelivered) never unticks what a person ticked.
async fn ticks_come_only_from_a_persons_edit_of_the_apps_comment(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("success"));
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    let sticky = w.gh.app_comments(REPO, 5).into_iter().find(|c| c.body.contains("<!-- shipgate:request -->")).unwrap();
    // 1. A workflow posts (as github-actions[bot]) a copy of the marker with ticks, then edits it.
    let forged = format!("{}\n- [x] Smoke tests passing\n- [x] Notify team", "<!-- shipgate:request -->");
    let id = w.gh.human_comment_by(REPO, 5, (41898282, "github-actions[bot]"), &forged);
    w.comment_event((41898282, "github-actions[bot]"), &forged, "edited", Some(id)).await;
    w.settle().await;
    w.comment(BOB, "/approve").await;
    w.settle().await;
    let c = w.gh.model().comments.iter().find(|c| c.id == sticky.id).unwrap().body.clone();
    assert!(c.contains("- [ ] Smoke tests passing"), "another bot's comment ticked the App's boxes: {c}");
    // 2. Carol ticks a box in the App's comment.
    let sticky = w.gh.app_comments(REPO, 5).into_iter().find(|c| c.id == sticky.id).unwrap();
    let before = sticky.body.clone();
    let ticked = before.replace("- [ ] Release notes prepared", "- [x] Release notes prepared");
    w.gh.model().comments.iter_mut().find(|c| c.id == sticky.id).unwrap().body = ticked.clone();
    let mut v = w.base("issue_comment.edited.0");
    v["issue"] = fake_github::issue_json(&w.gh.model().issues[&(REPO.to_string(), 5)]);
    v["comment"] =
        fake_github::comment_json(&w.gh.model().comments.iter().find(|c| c.id == sticky.id).unwrap().clone());
    v["changes"] = json!({ "body": { "from": before } });
    v["sender"] = json!({ "id": CAROL.0, "login": CAROL.1, "type": "User" });
    assert_eq!(w.app.deliver("issue_comment", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    assert!(
        w.gh.model().comments.iter().find(|c| c.id == sticky.id).unwrap().body.contains("- [x] Release notes prepared")
    );
    // 3. The webhook of the App's own earlier edit (body without her tick) comes late.
    let mut stale = sticky.clone();
    stale.body = before.clone();
    let mut v = w.base("issue_comment.edited.0");
    v["issue"] = fake_github::issue_json(&w.gh.model().issues[&(REPO.to_string(), 5)]);
    v["comment"] = fake_github::comment_json(&stale);
    v["changes"] = json!({ "body": { "from": "older" } });
    v["sender"] = v["comment"]["user"].clone();
    assert_eq!(w.app.deliver("issue_comment", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let c = w.gh.model().comments.iter().find(|c| c.id == sticky.id).unwrap().body.clone();
    assert!(c.contains("- [x] Release notes prepared"), "the App's own stale edit unticked Carol's box: {c}");
    w.gh.model().comments.retain(|c| c.id != id);
    let _ = w.gh.comments(REPO, 5);
    w.done().await;
}
both_backends!(ticks_come_only_from_a_persons_edit_of_the_apps_comment);
