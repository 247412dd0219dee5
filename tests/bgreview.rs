//! Review of break-glass (issue 19 part 1) from an attacker's side: scenarios on the same harness
//! as tests/breakglass.rs. Each test states what should hold; a failing one is a finding.

mod common;
mod fake_github;
mod world;

use common::TestDb;
use serde_json::json;
use shipgate::clock::Clock;
use shipgate::domain::breakglass;
use shipgate::server::Options;
use world::*;

const SRE: (i64, &str) = (801, "sre");

const POLICY_BG: &str = r#"
label: DEPLOYMENT_REQUEST
roles:
  pm: { users: [alice] }
  break_glass: { teams: [acme/oncall] }
ci:
  escalate_to: pm
environments:
  production:
    approvals:
      - role: pm
    require_checks: all
    deploy: protection_rule
    branch: main
"#;

async fn world(db: &TestDb) -> (World, Clock) {
    let clock = Clock::manual(Clock::system().now_ms() / 1000 * 1000);
    let gh = fake_github::FakeGitHub::start().await;
    gh.use_clock(clock.clone());
    gh.install(INST, &[REPO]);
    gh.file(REPO, ".github/shipgate.yml", POLICY_BG);
    gh.team("acme", "oncall", &[SRE]);
    for (id, login) in [ALICE, BOB, CAROL, DAVE, EVE, SRE] {
        gh.permission(REPO, login, "write");
        gh.user(login, id);
    }
    gh.pull(REPO, 12, DAVE, SHA, &["README.md"]);
    gh.ci(REPO, SHA, "build", "completed", Some("success"));
    let cfg = app_config(db, &gh);
    let opts = Options { github: Some(fast_github(&gh.url)), clock: clock.clone(), ..Options::default() };
    let app = common::TestApp::start_with(cfg, opts).await;
    (World { gh, app, n: Default::default() }, clock)
}

fn review_issues(w: &World) -> Vec<fake_github::Issue> {
    w.gh.model().issues.values().filter(|i| i.labels.iter().any(|l| l == breakglass::REVIEW_LABEL)).cloned().collect()
}

async fn review_states(w: &World) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT state FROM incidents WHERE kind = 'review'")
        .fetch_all(w.app.db.pool())
        .await
        .expect("incidents");
    rows.into_iter().map(|(s,)| s).collect()
}

/// The review is the accountability for a break-glass; closing its issue marks it done and
/// stops the escalation. Anyone with triage access (here eve, who has nothing to do with it),
/// a minute after the break-glass, closing it as "not planned" with every checklist box empty,
/// should not count as the review being done.
async fn anyone_closing_the_review_as_not_planned_does_not_mark_it_done(db: &TestDb) {
    let (w, clock) = world(db).await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    let ok = w.comment(SRE, "/breakglass payments are down").await;
    w.settle().await;
    assert_eq!(w.reactions(ok), vec!["+1".to_string()]);
    let reviews = review_issues(&w);
    assert_eq!(reviews.len(), 1, "{reviews:#?}");
    assert_eq!(review_states(&w).await, vec!["open".to_string()]);
    clock.advance_ms(60_000);
    let review = &reviews[0];
    let mut v = w.base("issues.labeled.0");
    v["action"] = json!("closed");
    let mut i = fake_github::issue_json(review);
    i["state"] = json!("closed");
    i["state_reason"] = json!("not_planned");
    v["issue"] = i;
    v["sender"] = json!({ "id": EVE.0, "login": EVE.1, "type": "User" });
    assert_eq!(w.app.deliver("issues", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    assert!(review.body.contains("- [ ] Root cause analysis"), "nothing of the checklist was done");
    assert_eq!(
        review_states(&w).await,
        vec!["open".to_string()],
        "eve closed sre's review as not planned, unticked, a minute later: it counts as done and is never escalated"
    );
    w.done().await;
}
both_backends!(anyone_closing_the_review_as_not_planned_does_not_mark_it_done);
