//! Break-glass (issue 19, SPEC §3.7), on both backends, in each enforcement mode: a request that
//! nothing lets through (no approval, CI red on `main`, a freeze) is opened for one deployment by
//! `/breakglass <reason>` from the on-call engineer, who holds `break_glass`; the first deployment
//! spends it, the next one waits again. Refused to someone without the role and without a reason.
//! Each use opens a post-incident review assigned to the person, which is escalated to
//! `ci.escalate_to` once it is overdue (two working days), or not at all once it is closed.

mod common;
mod fake_github;
mod fake_oidc;
mod receivers;
mod world;

use std::time::Duration;

use common::TestDb;
use fake_oidc::FakeIssuer;
use serde_json::{Value, json};
use shipgate::clock::Clock;
use shipgate::domain::breakglass;
use shipgate::server::Options;
use world::*;

const SRE: (i64, &str) = (801, "sre");

fn policy(mode: &str) -> String {
    format!(
        r#"
label: DEPLOYMENT_REQUEST
roles:
  pm: {{ users: [alice] }}
  break_glass: {{ teams: [acme/oncall] }}
ci:
  incident_branches: [main]
  block_deploys_while_red: true
  escalate_to: pm
environments:
  production:
    approvals:
      - role: pm
    require_checks: all
    deploy: {mode}
    branch: main
    freeze:
      - {{ from: 2020-01-01, to: 2099-12-30, timezone: UTC, reason: year-end freeze }}
  staging:
    approvals: []
notify:
  - {{ on: [break_glass, escalated], to: [slack:oncall] }}
"#
    )
}

/// A world on a manual clock (starting at the real time, which the OIDC tokens are checked
/// against), with sre (801) on call in `acme/oncall`.
async fn world(db: &TestDb, mode: &str) -> (World, Clock, FakeIssuer) {
    world_with_slack(db, mode, None).await
}

async fn world_with_slack(db: &TestDb, mode: &str, slack: Option<String>) -> (World, Clock, FakeIssuer) {
    let clock = Clock::manual(Clock::system().now_ms() / 1000 * 1000);
    let issuer = FakeIssuer::start().await;
    let gh = fake_github::FakeGitHub::start().await;
    gh.use_clock(clock.clone());
    gh.install(INST, &[REPO]);
    gh.file(REPO, ".github/shipgate.yml", &policy(mode));
    gh.team("acme", "oncall", &[SRE]);
    for (id, login) in [ALICE, BOB, CAROL, DAVE, EVE, SRE] {
        gh.permission(REPO, login, "write");
        gh.user(login, id);
    }
    gh.pull(REPO, 12, DAVE, SHA, &["README.md"]);
    gh.ci(REPO, SHA, "build", "completed", Some("success"));
    let mut cfg = app_config(db, &gh);
    cfg.oidc.issuer = issuer.url.clone();
    cfg.gate_wait_poll = Duration::from_millis(100);
    if let Some(hook) = slack {
        cfg.notify.slack.insert(("acme".into(), "oncall".into()), shipgate::config::Secret::new(hook));
    }
    let opts = Options { github: Some(fast_github(&gh.url)), clock: clock.clone(), ..Options::default() };
    let app = common::TestApp::start_with(cfg, opts).await;
    (World { gh, app, n: Default::default() }, clock, issuer)
}

/// `main`'s CI fails (a push run): a CI incident opens, and the gate is closed while it is red.
async fn red_main(w: &World) {
    w.gh.run_jobs(REPO, 9100, 1, &[("unit", "failure", &[("Run jest", "failure")])]);
    let mut v = w.base("workflow_run.completed.failure.0");
    v["repository"]["default_branch"] = json!("main");
    let wr = &mut v["workflow_run"];
    wr["id"] = json!(9100);
    wr["run_attempt"] = json!(1);
    wr["run_number"] = json!(91);
    wr["conclusion"] = json!("failure");
    wr["status"] = json!("completed");
    wr["head_sha"] = json!("c".repeat(40));
    wr["head_branch"] = json!("main");
    wr["event"] = json!("push");
    wr["pull_requests"] = json!([]);
    wr["html_url"] = json!(format!("https://github.com/{REPO}/actions/runs/9100"));
    wr["repository"]["id"] = json!(REPO_ID);
    wr["repository"]["full_name"] = json!(REPO);
    wr["head_repository"]["id"] = json!(REPO_ID);
    wr["head_repository"]["full_name"] = json!(REPO);
    assert_eq!(w.app.deliver("workflow_run", &w.id(), &v.to_string()).await, 202);
}

/// The request for production, stuck: no approval, CI red on main, the freeze. Returns the
/// sticky comment.
async fn stuck_request(w: &World) -> String {
    red_main(w).await;
    w.settle().await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("CI is red on the target branch"), "{c}");
    assert!(c.contains("frozen until") && c.contains("(year-end freeze)"), "{c}");
    assert!(c.contains("waiting for pm"), "{c}");
    assert_eq!(w.gate(SHA).0, "action_required");
    c
}

/// Refused without the role or a reason; accepted from sre: the gate opens, labelled, audited,
/// with its review issue. Returns the review issue.
async fn break_the_glass(w: &World) -> fake_github::Issue {
    let eve = say(w, EVE, "/breakglass let me through").await;
    let pm = say(w, ALICE, "/breakglass I approve anyway").await;
    let bare = say(w, SRE, "/breakglass").await;
    w.settle().await;
    w.assert_replied("you do not hold the `break_glass` role");
    w.assert_replied("`/breakglass` needs a reason");
    for c in [eve, pm, bare] {
        assert!(w.reactions(c).is_empty(), "refused, no reaction");
    }
    assert_eq!(w.gate(SHA).0, "action_required", "still closed");
    assert!(review_issues(w).is_empty(), "no review for a refusal");

    let ok = say(w, SRE, "/breakglass payments are down; the fix is #12").await;
    w.settle().await;
    assert_eq!(w.reactions(ok), vec!["+1".to_string()]);
    let (conclusion, summary) = w.gate(SHA);
    assert_eq!(conclusion, "success", "{summary}");
    assert!(summary.contains("break-glass by @sre") && summary.contains("CI is red"), "{summary}");
    let c = w.sticky();
    assert!(c.contains("open by break-glass"), "{c}");
    assert!(row(&c, "Break-glass").contains("payments are down"), "{c}");
    let labels = w.gh.model().issues[&(REPO.to_string(), 5)].labels.clone();
    assert!(labels.contains(&"break-glass".to_string()), "{labels:?}");
    let kinds = audit_kinds(w).await;
    assert!(kinds.contains(&"breakglass.used".to_string()), "{kinds:?}");

    let reviews = review_issues(w);
    assert_eq!(reviews.len(), 1, "{reviews:#?}");
    let r = reviews[0].clone();
    assert!(
        r.title.starts_with("Post-incident review: break-glass deployment of api to production (#5)"),
        "{}",
        r.title
    );
    assert_eq!(r.assignees, vec!["sre".to_string()]);
    assert!(r.body.contains("Post-mortem checklist") && r.body.contains("Root cause analysis"), "{}", r.body);
    assert!(r.body.contains("payments are down") && r.body.contains("escalated to `pm`"), "{}", r.body);
    r
}

fn review_issues(w: &World) -> Vec<fake_github::Issue> {
    w.gh.model().issues.values().filter(|i| i.labels.iter().any(|l| l == breakglass::REVIEW_LABEL)).cloned().collect()
}

async fn audit_kinds(w: &World) -> Vec<String> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT kind FROM audit_log ORDER BY seq").fetch_all(w.app.db.pool()).await.expect("audit");
    rows.into_iter().map(|(k,)| k).collect()
}

/// Past the review's due time (two working days, UTC here), still open: escalated once, to the pm.
async fn overdue_review_is_escalated(w: &World, clock: &Clock, review: &fake_github::Issue, broke_at: i64) {
    let due = breakglass::review_due(broke_at, &shipgate::domain::zone::Zone::default());
    assert!(due - broke_at >= 2 * 24 * 3_600_000, "two working days at least");
    clock.advance_ms(due - clock.now_ms() - 60_000);
    tokio::time::sleep(Duration::from_millis(2500)).await; // an escalation round: not yet
    w.settle().await;
    assert!(escalations(w, review.number).is_empty(), "not before it is due");
    clock.advance_ms(61_000);
    w.gh.wait_for("the review's escalation", Duration::from_secs(20), |m| {
        m.comments.iter().any(|c| c.issue == review.number && c.body.contains("<!-- shipgate:ci-escalation -->"))
    })
    .await;
    w.settle().await;
    let e = escalations(w, review.number);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].contains("## 🚨 Escalated: Post-incident review") && e[0].contains("@alice"), "{}", e[0]);
}

fn escalations(w: &World, issue: i64) -> Vec<String> {
    w.gh.app_comments(REPO, issue)
        .into_iter()
        .filter(|c| c.body.contains("<!-- shipgate:ci-escalation -->"))
        .map(|c| c.body)
        .collect()
}

fn rule_answers(w: &World, run: i64) -> Vec<String> {
    w.gh.model()
        .protection_reviews
        .iter()
        .filter(|(r, id, _)| r == REPO && *id == run)
        .map(|(_, _, b)| b["state"].as_str().unwrap_or("report").to_string())
        .collect()
}

async fn protection_rule_mode(db: &TestDb) {
    let slack = receivers::SlackReceiver::start().await;
    let (w, clock, _issuer) = world_with_slack(db, "protection_rule", Some(slack.hook_url("oncall"))).await;
    stuck_request(&w).await;
    let broke_at = clock.now_ms();
    let review = break_the_glass(&w).await;
    // The on-call channel is told, with who, why and what was overridden.
    let m = slack.wait_for("oncall", 1, Duration::from_secs(10)).await;
    let text = m[0].to_string();
    assert!(text.contains("was opened by break-glass") && text.contains("@sre"), "{text}");
    assert!(text.contains("payments are down") && text.contains("CI is red"), "{text}");
    // The first waiting run is approved, and that spends it.
    w.protection_rule(777, "production", SHA).await;
    w.settle().await;
    assert_eq!(rule_answers(&w, 777), vec!["approved".to_string()]);
    assert!(audit_kinds(&w).await.contains(&"breakglass.spent".to_string()));
    assert_eq!(w.gate(SHA).0, "action_required", "one deployment only");
    assert!(w.sticky().contains("Spent at"), "{}", w.sticky());
    // The next run waits, told what is missing.
    w.protection_rule(778, "production", SHA).await;
    w.settle().await;
    assert_eq!(rule_answers(&w, 778), vec!["report".to_string()]);
    overdue_review_is_escalated(&w, &clock, &review, broke_at).await;
    // The escalations (the review's, and the CI incident's) reach the channel too.
    let m = slack.wait_for("oncall", 3, Duration::from_secs(10)).await;
    assert!(m.iter().any(|x| x.to_string().contains("Post-incident review")), "{m:#?}");
    finish(w, "Spent at").await;
}

async fn workflow_mode(db: &TestDb) {
    let (w, clock, issuer) = world(db, "workflow").await;
    stuck_request(&w).await;
    let broke_at = clock.now_ms();
    let review = break_the_glass(&w).await;
    let ask = |run: i64| {
        let token = fake_oidc::sign(&issuer.claims(REPO, REPO_ID, SHA, Some("production"), run), fake_oidc::KID);
        let url = format!("{}/gate/wait", w.app.url);
        let http = w.app.http.clone();
        async move {
            let r = http.post(url).bearer_auth(token).json(&json!({ "environment": "production" })).send().await;
            let r = r.expect("send");
            assert_eq!(r.status().as_u16(), 200);
            r.json::<Value>().await.expect("json")
        }
    };
    // The first job's first call registers its wait; once evaluated, the answer is open.
    ask(4301).await;
    w.settle().await;
    let a = ask(4301).await;
    assert_eq!(a["state"], "open", "{a}");
    assert!(audit_kinds(&w).await.contains(&"breakglass.spent".to_string()));
    assert_eq!(w.gate(SHA).0, "action_required", "one deployment only");
    // The same job asking again is still open (its attempt was answered); another job waits.
    assert_eq!(ask(4301).await["state"], "open");
    ask(4302).await;
    w.settle().await;
    let b = ask(4302).await;
    assert_eq!(b["state"], "waiting", "{b}");
    assert!(b["missing"].to_string().contains("CI is red"), "{b}");
    overdue_review_is_escalated(&w, &clock, &review, broke_at).await;
    finish(w, "Spent at").await;
}

async fn deployment_mode(db: &TestDb) {
    let (w, clock, _issuer) = world(db, "deployment").await;
    stuck_request(&w).await;
    let broke_at = clock.now_ms();
    let review = break_the_glass(&w).await;
    // Someone else's /deploy is refused (no role); the holder's own creates the deployment.
    let eve = say(&w, EVE, "/deploy").await;
    w.settle().await;
    assert!(w.reactions(eve).is_empty());
    let own = say(&w, SRE, "/deploy").await;
    w.settle().await;
    assert_eq!(w.reactions(own), vec!["+1".to_string()]);
    let deployments = w.gh.model().deployments.clone();
    assert_eq!(deployments.len(), 1, "{deployments:?}");
    assert_eq!(deployments[0].1["ref"], SHA);
    assert!(audit_kinds(&w).await.contains(&"breakglass.spent".to_string()));
    assert_eq!(w.gate(SHA).0, "action_required", "one deployment only");
    evidence_shows_the_breakglass(&w).await;
    overdue_review_is_escalated(&w, &clock, &review, broke_at).await;
    finish(w, "Spent at").await;
}

/// The request's evidence pack (the command line, as an auditor's colleague would run it) has the
/// break-glass entries, says so in its index, and checks out.
async fn evidence_shows_the_breakglass(w: &World) {
    let dir = tempfile::Builder::new().prefix("bg-evidence").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("dir");
    let out = dir.path().join("pack");
    let url = w.app.db_url().to_string();
    let args = ["audit", "evidence", "--repo", REPO, "--request", "5", "--out", out.to_str().unwrap()];
    let (code, text) = common::shipgate_cli(&url, &args, &[]).await;
    assert_eq!(code, 0, "{text}");
    let events = std::fs::read_to_string(out.join("events.json")).expect("events.json");
    assert!(events.contains("breakglass.used") && events.contains("breakglass.spent"), "{events}");
    assert!(events.contains("payments are down"), "the reason is in the pack: {events}");
    let index = std::fs::read_to_string(out.join("index.md")).expect("index.md");
    let section = index.split("## Break-glass and freeze").nth(1).expect("the section");
    assert!(section.contains("breakglass.used") && !section.trim_start().starts_with("None recorded"), "{section}");
    let (code, text) = common::shipgate_cli(&url, &["audit", "verify-evidence", out.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{text}");
}

async fn breakglass_in_protection_rule_mode(db: &TestDb) {
    protection_rule_mode(db).await
}
both_backends!(breakglass_in_protection_rule_mode);

async fn breakglass_in_workflow_mode(db: &TestDb) {
    workflow_mode(db).await
}
both_backends!(breakglass_in_workflow_mode);

async fn breakglass_in_deployment_mode(db: &TestDb) {
    deployment_mode(db).await
}
both_backends!(breakglass_in_deployment_mode);

/// Unspent, it lapses after two hours by the timer (no event); a review closed in time is never
/// escalated, and a marker copied into another issue closes nothing.
async fn an_unspent_breakglass_lapses_and_a_closed_review_is_not_escalated(db: &TestDb) {
    let (w, clock, _issuer) = world(db, "workflow").await;
    stuck_request(&w).await;
    let broke_at = clock.now_ms();
    let review = break_the_glass(&w).await;
    clock.advance_ms(breakglass::LASTS_MS - 1_000);
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "a second before it lapses");
    clock.advance_ms(1_000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while w.gate(SHA).0 != "action_required" {
        assert!(tokio::time::Instant::now() < deadline, "it never lapsed");
        tokio::time::sleep(Duration::from_millis(25)).await;
        w.settle().await;
    }
    assert!(audit_kinds(&w).await.contains(&"breakglass.lapsed".to_string()));
    assert!(w.sticky().contains("Lapsed at"), "{}", w.sticky());

    // Someone copies the review's marker into an issue of their own and closes it: nothing.
    let fake = {
        let mut m = w.gh.model();
        let mut copy = review.clone();
        copy.number = 900;
        copy.author = EVE.1.into();
        copy.author_id = EVE.0;
        m.issues.insert((REPO.to_string(), 900), copy.clone());
        copy
    };
    close_issue(&w, &fake).await;
    w.settle().await;
    let open: Vec<(String,)> =
        sqlx::query_as("SELECT state FROM incidents WHERE kind = 'review'").fetch_all(w.app.db.pool()).await.unwrap();
    assert_eq!(open, vec![("open".to_string(),)]);

    // The person closes the real review: done, audited, and never escalated.
    close_issue(&w, &review).await;
    w.settle().await;
    assert!(audit_kinds(&w).await.contains(&"breakglass.review_done".to_string()));
    let due = breakglass::review_due(broke_at, &shipgate::domain::zone::Zone::default());
    clock.advance_ms(due - clock.now_ms() + 60_000);
    tokio::time::sleep(Duration::from_millis(4500)).await; // two escalation rounds
    w.settle().await;
    assert!(escalations(&w, review.number).is_empty());
    finish(w, "Lapsed at").await;
}
both_backends!(an_unspent_breakglass_lapses_and_a_closed_review_is_not_escalated);

async fn close_issue(w: &World, issue: &fake_github::Issue) {
    let mut v = w.base("issues.labeled.0");
    v["action"] = json!("closed");
    let mut i = fake_github::issue_json(issue);
    i["state"] = json!("closed");
    v["issue"] = i;
    v["sender"] = json!({ "id": SRE.0, "login": SRE.1, "type": "User" });
    assert_eq!(w.app.deliver("issues", &w.id(), &v.to_string()).await, 202);
}

/// The request's comment says how the break-glass ended; the CI incident (red `main`, never
/// fixed here) was escalated meanwhile by its own deadline; nothing else was written unseen.
async fn finish(w: World, ended: &str) {
    let c = w.sticky();
    assert!(c.contains("🚨 Break-glass by @sre") && c.contains(ended), "{c}");
    let incidents: Vec<i64> =
        w.gh.model().issues.values().filter(|i| i.labels.iter().any(|l| l == "ci-failure")).map(|i| i.number).collect();
    assert_eq!(incidents.len(), 1);
    for c in w.gh.app_comments(REPO, incidents[0]) {
        assert!(c.body.contains("CI failing"), "{}", c.body);
    }
    w.done().await;
}

/// (From the attacker's review.) Anyone with triage access closing the review as "not planned",
/// a minute after the break-glass with its checklist empty, does not make it done: it stays open
/// in the App, the issue says so, and it is escalated when overdue.
async fn a_review_closed_as_not_planned_is_not_done_and_is_still_escalated(db: &TestDb) {
    let (w, clock, _issuer) = world(db, "protection_rule").await;
    stuck_request(&w).await;
    let broke_at = clock.now_ms();
    let review = break_the_glass(&w).await;
    clock.advance_ms(60_000);
    let mut v = w.base("issues.labeled.0");
    v["action"] = json!("closed");
    let mut i = fake_github::issue_json(&review);
    i["state"] = json!("closed");
    i["state_reason"] = json!("not_planned");
    v["issue"] = i;
    v["sender"] = json!({ "id": EVE.0, "login": EVE.1, "type": "User" });
    assert_eq!(w.app.deliver("issues", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let states: Vec<(String,)> =
        sqlx::query_as("SELECT state FROM incidents WHERE kind = 'review'").fetch_all(w.app.db.pool()).await.unwrap();
    assert_eq!(states, vec![("open".to_string(),)]);
    let said: Vec<String> = w.gh.app_comments(REPO, review.number).into_iter().map(|c| c.body).collect();
    assert!(said.iter().any(|c| c.contains("does not mark it done")), "{said:#?}");
    assert!(audit_kinds(&w).await.contains(&"breakglass.review_dismissed".to_string()));
    overdue_review_is_escalated(&w, &clock, &review, broke_at).await;
    // Done at last (closed as completed): the escalation comment says so.
    let mut done = review.clone();
    done.state = "closed".into();
    let mut v = w.base("issues.labeled.0");
    v["action"] = json!("closed");
    let mut i = fake_github::issue_json(&done);
    i["state_reason"] = json!("completed");
    v["issue"] = i;
    v["sender"] = json!({ "id": SRE.0, "login": SRE.1, "type": "User" });
    assert_eq!(w.app.deliver("issues", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let e = escalations(&w, review.number);
    assert!(e.len() == 1 && e[0].contains("Resolved after escalation: Post-incident review"), "{e:#?}");
    assert!(audit_kinds(&w).await.contains(&"breakglass.review_done".to_string()));
    finish(w, "Lapsed at").await;
}
both_backends!(a_review_closed_as_not_planned_is_not_done_and_is_still_escalated);

/// A comment by `who` on #5, written (as GitHub says) at the App's clock's now: a break-glass
/// lasts from when its comment was written.
async fn say(w: &World, who: (i64, &str), text: &str) -> i64 {
    let now = w.gh.model().clock.as_ref().expect("a shared clock").now_ms();
    w.comment_written_at(who, text, now).await
}
