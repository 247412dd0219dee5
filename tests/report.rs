//! The weekly infrastructure report end to end (issue 17), on both backends: a week of real
//! signed events lived on the App's clock (GitHub's time follows it), then the Monday report —
//! opened once with two replicas after a restart that missed its hour — with the figures the
//! definitions give for that week; the previous report closed with a link; `shipgate report`'s
//! code and `GET /api/reports/...` serving the same.

mod common;
mod fake_github;
mod receivers;
mod world;

use std::time::Duration;

use common::{TestApp, TestDb, rfc3339};
use serde_json::{Value, json};
use shipgate::clock::Clock;
use shipgate::server::Options;
use world::*;

const H: i64 = 3_600_000;
const MIN: i64 = 60_000;
/// Monday 2026-11-30 08:00 UTC (09:00 in Berlin): the start of the reported week's events.
const T: i64 = 1_795_996_800_000 + 8 * H;
const OLD: &str = "cccccccccccccccccccccccccccccccccccccc03";
const WF: i64 = 2823525;

fn policy() -> String {
    format!(
        "{}report:\n  weekly: {{ day: monday, time: \"09:30\", timezone: Europe/Berlin }}\n  targets: {{ mttd_minutes: 30 }}\n\
         notify:\n  - {{ on: [weekly_report], to: [slack:team] }}\n",
        deploy_policy("deployment")
    )
}

static STATUS_IDS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(7000);

/// A `deployment_status` from GitHub Actions: deployment `id` of `sha` is `state` at `at` (ms).
async fn status(w: &World, id: i64, sha: &str, state: &str, at: i64, payload: Value) {
    let mut v = w.base("deployment_status.created.0");
    v["deployment_status"]["id"] = json!(STATUS_IDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    v["deployment"]["id"] = json!(id);
    v["deployment"]["sha"] = json!(sha);
    v["deployment"]["environment"] = json!("production");
    v["deployment"]["payload"] = payload;
    v["deployment"]["created_at"] = json!(rfc3339(at - MIN));
    by_actions(&mut v);
    v["deployment_status"]["state"] = json!(state);
    v["deployment_status"]["environment"] = json!("production");
    v["deployment_status"]["created_at"] = json!(rfc3339(at));
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
}

/// A completed `workflow_run` of the `test` workflow on main (a push), at `at` (ms).
async fn run(w: &World, id: i64, attempt: i64, conclusion: &str, sha: &str, at: i64) {
    let mut v = w.base("workflow_run.completed.failure.0");
    v["repository"]["default_branch"] = json!("main");
    v["workflow"]["id"] = json!(WF);
    v["workflow"]["name"] = json!("test");
    let wr = &mut v["workflow_run"];
    wr["id"] = json!(id);
    wr["run_attempt"] = json!(attempt);
    wr["run_number"] = json!(id);
    wr["workflow_id"] = json!(WF);
    wr["conclusion"] = json!(conclusion);
    wr["status"] = json!("completed");
    wr["head_sha"] = json!(sha);
    wr["head_branch"] = json!("main");
    wr["event"] = json!("push");
    wr["html_url"] = json!(format!("https://github.com/{REPO}/actions/runs/{id}"));
    wr["run_started_at"] = json!(rfc3339(at - 5 * MIN));
    wr["updated_at"] = json!(rfc3339(at));
    wr["repository"]["id"] = json!(REPO_ID);
    wr["repository"]["full_name"] = json!(REPO);
    wr["head_repository"]["id"] = json!(REPO_ID);
    wr["head_repository"]["full_name"] = json!(REPO);
    wr["pull_requests"] = json!([]);
    let body = common::unique(&v.to_string(), &w.id());
    assert_eq!(w.app.deliver("workflow_run", &w.id(), &body).await, 202);
}

/// The deployments the App created: (id, sha, payload).
fn created(w: &World) -> Vec<(i64, String, Value)> {
    w.gh.model()
        .deployments
        .iter()
        .filter(|(r, d)| r == REPO && d["payload"]["shipgate_key"].is_string())
        .map(|(_, d)| {
            (d["id"].as_i64().unwrap(), d["sha"].as_str().unwrap_or_default().to_string(), d["payload"].clone())
        })
        .collect()
}

fn reports(w: &World) -> Vec<fake_github::Issue> {
    w.gh.issues_labelled(REPO, "weekly-report")
}

async fn start(db: &TestDb, gh: &fake_github::FakeGitHub, clock: &Clock, slack: &receivers::SlackReceiver) -> TestApp {
    let mut cfg = app_config(db, gh);
    cfg.notify.slack.insert(("acme".into(), "team".into()), shipgate::config::Secret::new(slack.hook_url("team")));
    cfg.report_every = Duration::from_millis(50);
    let opts = Options { github: Some(fast_github(&gh.url)), clock: clock.clone(), ..Options::default() };
    TestApp::start_with(cfg, opts).await
}

/// Waits (by polling GitHub's state, at most 20 s) until `ok` holds.
async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn a_week_of_events_becomes_the_monday_report(db: &TestDb) {
    let clock = Clock::manual(T);
    let slack = receivers::SlackReceiver::start().await;
    let gh = fake_github::FakeGitHub::start().await;
    gh.use_clock(clock.clone());
    gh.install(INST, &[REPO]);
    gh.file(REPO, ".github/shipgate.yml", &policy());
    for (id, login) in [ALICE, BOB, CAROL, DAVE, EVE] {
        gh.permission(REPO, login, "write");
        gh.user(login, id);
    }
    gh.pull(REPO, 12, DAVE, SHA, &["apps/backend/api.rs"]);
    gh.committed_at(REPO, 12, "2026-11-27T12:00:00Z");
    let app = start(db, &gh, &clock, &slack).await;
    let w = World { gh, app, n: Default::default() };

    // Monday 10:00 UTC: a deployment the App made earlier (request #4) succeeds.
    shipgate::store::objects::put(&w.app.db, INST, "deployment", &format!("{REPO}:request-4-77"), 900, T)
        .await
        .unwrap();
    status(&w, 900, OLD, "success", T + 2 * H, json!({})).await;
    w.settle().await;

    // Monday 11:00 UTC: request #5 is opened.
    to(&clock, T + 3 * H);
    w.check_completed(SHA, "build", "success").await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    // The policy is known now: the report of the week before (W48) is due at once (its Monday
    // 09:30 in Berlin has passed), and opened.
    until("the W48 report", || reports(&w).iter().any(|i| i.title.ends_with("2026-W48"))).await;
    slack_messages(&slack, &clock, 1).await;
    w.settle().await;
    // Tuesday: it is approved at 08:00, deployed at 08:10 and succeeds at 08:25; rolled back at
    // 08:40 to the commit before, which succeeds at 08:50.
    to(&clock, T + 24 * H);
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());
    to(&clock, T + 24 * H + 10 * MIN);
    w.comment(ALICE, "/deploy").await;
    w.settle().await;
    let (b, _, payload) = created(&w).remove(0);
    status(&w, b, SHA, "success", T + 24 * H + 25 * MIN, payload).await;
    w.settle().await;
    to(&clock, T + 24 * H + 40 * MIN);
    w.comment(ALICE, "/rollback").await;
    w.settle().await;
    let d = created(&w);
    assert_eq!(d.len(), 2, "{d:?}");
    let (c, sha, payload) = d[1].clone();
    assert_eq!(sha, OLD);
    status(&w, c, OLD, "success", T + 24 * H + 50 * MIN, payload).await;
    w.settle().await;
    // The rollback is recorded as one (it would make a deployment it replaced a change failure).
    assert_eq!(common::count(&w.app.db, "SELECT COUNT(*) FROM deployments WHERE rollback = 1").await, 1);
    assert!(w.sticky().contains("Deployment request"), "{}", w.sticky());
    let _ = w.gh.app_comments(REPO, 5);

    // Wednesday: main goes red at 08:00 and green at 08:30 (an incident of 30 minutes).
    to(&clock, T + 48 * H);
    w.gh.run_jobs(REPO, 600, 1, &[("build", "failure", &[("docker build", "failure")])]);
    run(&w, 600, 1, "failure", "1111111111111111111111111111111111111111", T + 48 * H).await;
    w.settle().await;
    to(&clock, T + 48 * H + 30 * MIN);
    run(&w, 601, 1, "success", "2222222222222222222222222222222222222222", T + 48 * H + 30 * MIN).await;
    w.settle().await;
    // Wednesday 12:00: the team's pipeline deploys another commit itself, and it fails.
    to(&clock, T + 52 * H);
    status(&w, 901, SHA2, "failure", T + 52 * H, json!({})).await;
    w.settle().await;
    // Thursday: a flaky job fails at 08:00 and passes on its re-run at 08:10.
    to(&clock, T + 72 * H);
    w.gh.run_jobs(REPO, 602, 1, &[("unit", "failure", &[("Run jest", "failure")])]);
    run(&w, 602, 1, "failure", "3333333333333333333333333333333333333333", T + 72 * H).await;
    w.settle().await;
    to(&clock, T + 72 * H + 10 * MIN);
    run(&w, 602, 2, "success", "3333333333333333333333333333333333333333", T + 72 * H + 10 * MIN).await;
    w.settle().await;
    let incidents = w.gh.issues_labelled(REPO, "ci-failure");
    assert_eq!(incidents.iter().filter(|i| i.state == "closed").count(), 2, "{incidents:#?}");

    // The App stops on Monday 7 December at 09:00 in Berlin and comes back at 10:45, two
    // replicas at once: the 09:30 report was missed, and is opened once.
    let World { gh, app, .. } = w;
    app.shutdown().await;
    to(&clock, T + 7 * 24 * H + H + 45 * MIN); // 09:45 UTC, 10:45 in Berlin
    assert!(reports_of(&gh).iter().all(|i| !i.title.ends_with("2026-W49")));
    let one = start(db, &gh, &clock, &slack).await;
    let two = start(db, &gh, &clock, &slack).await;
    until("the W49 report", || reports_of(&gh).iter().any(|i| i.title.ends_with("2026-W49"))).await;
    let w48 = reports_of(&gh).into_iter().find(|i| i.title.ends_with("2026-W48")).unwrap();
    until("the W48 report closed", || {
        gh.model().issues.get(&(REPO.to_string(), w48.number)).is_some_and(|i| i.state == "closed")
    })
    .await;
    let sent = slack_messages(&slack, &clock, 2).await;
    settle(&one.db).await;
    // Another round of both replicas' loops changes nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    settle(&one.db).await;
    let all = reports_of(&gh);
    assert_eq!(all.iter().filter(|i| i.title.ends_with("2026-W49")).count(), 1, "{all:#?}");
    assert_eq!(all.len(), 2, "W48 and W49 only: {all:#?}");
    let w49 = all.iter().find(|i| i.title.ends_with("2026-W49")).unwrap();
    assert_eq!(w49.title, "📊 Weekly infrastructure report — 2026-W49");
    assert_eq!(w49.state, "open");
    let superseded = gh.app_comments(REPO, w48.number);
    assert!(superseded.iter().any(|c| c.body.contains(&format!("Superseded by #{}", w49.number))), "{superseded:#?}");

    // The policy's weekly_report rule: one message per report, linked to its issue.
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let w49_notice = sent[1].to_string();
    assert!(w49_notice.contains("Weekly infrastructure report — 2026-W49"), "{w49_notice}");
    assert!(w49_notice.contains(&format!("{REPO}/issues/{}", w49.number)), "{w49_notice}");
    assert!(w49_notice.contains("2 of 5 figures meet their targets"), "{w49_notice}");
    assert!(w49_notice.contains("|Open the report issue on GitHub>"), "{w49_notice}");

    // The figures of that week, as the definitions give them (docs/figures.md):
    let b = &w49.body;
    assert!(b.contains(&format!("Previous report: #{}.", w48.number)), "{b}");
    assert!(b.contains("Monday 30 November 2026 to Sunday 6 December 2026 (Europe/Berlin)"), "{b}");
    // 4 production deployments (the rollback is one), 3 succeeded.
    assert!(b.contains("| Deployment success | 75% | ≥ 98% | ✗ |"), "{b}");
    assert!(b.contains("| production | 4 | 3 | 75% |"), "{b}");
    // Approved Tuesday 08:00, deployed at 08:25 (the rollback deployed an older commit, not an
    // approved change: no time to deploy ends there).
    assert!(b.contains("| Mean time to deploy | 25m 0s (p95 25m 0s) | ≤ 30m 0s | ✓ |"), "{b}");
    // Runs 600 (red), 601 (green), 602 (green on its re-run): 2 of 3.
    assert!(b.contains("| CI green rate | 66.67% | ≥ 95% | ✗ |"), "{b}");
    // Two CI incidents, of 30 and 10 minutes.
    assert!(b.contains("| Mean time to recovery | 20m 0s | ≤ 5m 0s | ✗ |"), "{b}");
    assert!(b.contains("| CI | 2 | 0 | 20m 0s | 30m 0s |"), "{b}");
    assert!(b.contains("- test / unit ×1"), "{b}");
    // The deployment rolled back and the failed one are change failures; the first one and the
    // rollback itself are not.
    assert!(b.contains("| Change failure rate | 50% | — |"), "{b}");
    assert!(b.contains("bar [0, 0, 0, 0, 0, 0, 0, 4]"), "{b}");

    // The same report from `shipgate report`'s code and from the API.
    let now = clock.now_ms();
    let period = shipgate::domain::report::Period::Week(2026, 49);
    let r = shipgate::handlers::report::for_repository(&one.db, REPO, None, period, now).await.unwrap().unwrap();
    let markdown = shipgate::domain::report::markdown(&r);
    assert!(b.starts_with(&markdown), "the issue is the report and its marker:\n{b}\n---\n{markdown}");
    assert!(b.ends_with("<!-- shipgate:weekly-report:2026-W49 -->"), "{b}");
    let (_, token) = shipgate::store::api_tokens::create(&one.db, INST, Some("report"), now).await.unwrap();
    let resp =
        one.http.get(format!("{}/api/reports/{REPO}?week=2026-W49", one.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let j: Value = resp.json().await.unwrap();
    // What scripts rely on: the answer fits the documented schema, strictly (no key it lacks).
    let spec = fake_github::openapi::Spec::from_value(
        serde_json::from_str(shipgate::http::api::ApiDoc::openapi_json()).unwrap(),
    );
    let problems = spec.validate_value(spec.response_schema("get_report", 200).unwrap(), &j, true);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(j["week"], "2026-W49");
    assert_eq!(j["from"], "2026-11-30T00:00:00+01:00");
    assert_eq!(j["deployments"]["production"], json!({ "count": 4, "succeeded": 3, "success_rate": 0.75 }));
    assert_eq!(j["time_to_deploy"]["mean_seconds"], 1500.0);
    assert_eq!(j["ci"]["green_rate"], 2.0 / 3.0);
    assert_eq!(j["incidents"]["ci"]["count"], 2);
    assert_eq!(j["incidents"]["ci"]["mean_time_to_recovery_seconds"], 1200.0);
    assert_eq!(j["dora"]["change_failure_rate"], 0.5);
    assert_eq!(j["dora"]["deployment_frequency"], 3.0 / 7.0);
    // PR #12's first commit (Friday 27 November 12:00 UTC) to its deployment's success (Tuesday
    // 1 December 08:25); the rollback and the pipeline's own deployments have no linked PRs.
    assert_eq!(j["dora"]["lead_time_seconds"], (3 * 24 * 3600 + 20 * 3600 + 25 * 60) as f64);
    assert_eq!(j["dora"]["lead_time"]["count"], 1);
    assert_eq!(j["targets"]["ci_green"]["met"], false);
    assert_eq!(j["targets"]["mean_time_to_deploy"]["met"], true);
    assert_eq!(j["previous"]["deployments"], json!({}));
    // `shipgate report` prints the same, in both formats; bad input is a clear error.
    let url = one.db_url().to_string();
    let (code, out) =
        common::shipgate_cli(&url, &["report", "--repo", REPO, "--week", "2026-W49", "--format", "json"], &[]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(serde_json::from_str::<Value>(&out).expect("JSON"), j);
    let (code, out) = common::shipgate_cli(&url, &["report", "--repo", REPO, "--week", "2026-W49"], &[]).await;
    assert_eq!((code, out.as_str()), (0, markdown.as_str()));
    let (code, out) = common::shipgate_cli(&url, &["report", "--repo", REPO, "--since", "7x"], &[]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("`7x` is not a window"), "{out}");
    let (code, out) = common::shipgate_cli(&url, &["report", "--repo", "acme/nope"], &[]).await;
    assert_eq!(code, 1, "{out}");
    // A bad week is a 400; a token of another installation sees nothing.
    let bad =
        one.http.get(format!("{}/api/reports/{REPO}?week=W49", one.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    sqlx::query("INSERT INTO installations (id, account_id, account_login, created_at, updated_at) VALUES (999, 9, 'other', 0, 0)")
        .execute(one.db.pool())
        .await
        .unwrap();
    let (_, other) = shipgate::store::api_tokens::create(&one.db, 999, Some("other"), now).await.unwrap();
    let hidden = one.http.get(format!("{}/api/reports/{REPO}", one.url)).bearer_auth(&other).send().await.unwrap();
    assert_eq!(hidden.status(), 404);
    let md = one
        .http
        .get(format!("{}/api/reports/{REPO}?week=2026-W49&format=markdown", one.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(md.text().await.unwrap(), markdown);

    two.shutdown().await;
    one.shutdown().await;
    gh.finish();
}
both_backends!(a_week_of_events_becomes_the_monday_report);

/// Moves the App's (and GitHub's) clock to `t`.
fn to(clock: &Clock, t: i64) {
    let now = clock.now_ms();
    assert!(t >= now, "the clock never goes back");
    clock.advance_ms(t - now);
}

/// Waits until Slack's `team` channel has `n` messages: a notice waits a moment (by the App's
/// clock, which the test moves) for its issue's number.
async fn slack_messages(slack: &receivers::SlackReceiver, clock: &Clock, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while slack.messages("team").len() < n {
        assert!(tokio::time::Instant::now() < deadline, "Slack got {:?}", slack.messages("team"));
        clock.advance_ms(100);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    slack.messages("team")
}

fn reports_of(gh: &fake_github::FakeGitHub) -> Vec<fake_github::Issue> {
    gh.issues_labelled(REPO, "weekly-report")
}
