//! Failed CI as tracked incidents, end to end: real `workflow_run` and alert payloads (edited)
//! through the real router, the App's actions sent to the fake GitHub (checked against GitHub's
//! OpenAPI), and the incident rows in the database. A manual clock drives the escalation.

mod common;
mod fake_github;
mod receivers;
mod world;

use std::time::Duration;

use common::{TestApp, TestDb, fixture, rfc3339};
use fake_github::{FakeGitHub, JobSpec};
use serde_json::{Value, json};
use shipgate::clock::Clock;
use shipgate::server::Options;
use shipgate::store::incidents;

const REPO: &str = "acme/app";
const REPO_ID: i64 = 186853002;
const FORK_ID: i64 = 777;
const INST: i64 = 1;
const WF: i64 = 2823525;
const SHA1: &str = "1111111111111111111111111111111111111111";
const SHA2: &str = "2222222222222222222222222222222222222222";
const SHA3: &str = "3333333333333333333333333333333333333333";
const MIN: i64 = 60_000;

const POLICY: &str = r#"
roles:
  devops: { users: [olivia], teams: [acme/sre] }
environments:
  production:
    approvals: []
    require_checks: all
ci:
  incident_branches: [main]
  debug_within: 1m
  escalate_to: devops
  block_deploys_while_red: true
"#;

/// A completed workflow run, as the test wants it.
#[derive(Clone)]
struct Run {
    id: i64,
    attempt: i64,
    number: i64,
    workflow: i64,
    conclusion: &'static str,
    sha: &'static str,
    branch: &'static str,
    event: &'static str,
    /// The head repository: ours, or a fork owned by `forker`.
    fork: bool,
    /// PRs the payload names (a fork's run names none).
    prs: Vec<i64>,
    /// `updated_at`, ms after the test's start (`run_started_at` is 5 minutes earlier).
    at: i64,
}

fn push(id: i64, number: i64, conclusion: &'static str, sha: &'static str, at: i64) -> Run {
    Run {
        id,
        attempt: 1,
        number,
        workflow: WF,
        conclusion,
        sha,
        branch: "main",
        event: "push",
        fork: false,
        prs: vec![],
        at,
    }
}

struct World {
    gh: FakeGitHub,
    app: Option<TestApp>,
    clock: Clock,
    t0: i64,
    n: std::sync::atomic::AtomicU32,
    url: String,
    cfg: shipgate::config::Config,
}

impl World {
    async fn new(db: &TestDb) -> World {
        World::with(db, POLICY, |_| {}).await
    }

    /// A world whose policy is `policy`, with the App's settings changed by `tweak`.
    async fn with(db: &TestDb, policy: &str, tweak: impl FnOnce(&mut shipgate::config::Config)) -> World {
        let gh = FakeGitHub::start().await;
        gh.install(INST, &[REPO]);
        gh.team("acme", "sre", &[(900, "sam")]);
        gh.file(REPO, ".github/shipgate.yml", policy);
        let mut cfg = world::app_config(db, &gh);
        tweak(&mut cfg);
        let t0 = Clock::system().now_ms() / 1000 * 1000; // payload times have whole seconds
        let clock = Clock::manual(t0);
        let url = gh.url.clone();
        let mut w = World { gh, app: None, clock, t0, n: std::sync::atomic::AtomicU32::new(0), url, cfg };
        w.start().await;
        w
    }

    async fn start(&mut self) {
        let opts =
            Options { github: Some(world::fast_github(&self.url)), clock: self.clock.clone(), ..Options::default() };
        self.app = Some(TestApp::start_with(self.cfg.clone(), opts).await);
    }

    async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }

    fn app(&self) -> &TestApp {
        self.app.as_ref().expect("running")
    }

    fn db(&self) -> &shipgate::store::Db {
        &self.app().db
    }

    fn id(&self) -> String {
        format!("d-{}", self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    }

    fn base(&self, name: &str) -> Value {
        let mut v = world::payload(name);
        v["repository"]["default_branch"] = json!("main");
        v
    }

    /// The `workflow_run.completed` payload of `r` (the constructed failure, edited).
    fn run_payload(&self, r: &Run) -> Value {
        let mut v = self.base("workflow_run.completed.failure.0");
        let pr_template = serde_json::from_str::<Value>(&fixture("workflow_run.completed.2")).expect("fixture")
            ["workflow_run"]["pull_requests"][0]
            .clone();
        v["workflow"]["id"] = json!(r.workflow);
        v["workflow"]["name"] = json!(if r.workflow == WF { "test" } else { "deploy" });
        let wr = &mut v["workflow_run"];
        wr["id"] = json!(r.id);
        wr["run_attempt"] = json!(r.attempt);
        wr["run_number"] = json!(r.number);
        wr["workflow_id"] = json!(r.workflow);
        wr["conclusion"] = json!(r.conclusion);
        wr["status"] = json!("completed");
        wr["head_sha"] = json!(r.sha);
        wr["head_branch"] = json!(r.branch);
        wr["event"] = json!(r.event);
        wr["html_url"] = json!(format!("https://github.com/{REPO}/actions/runs/{}", r.id));
        wr["run_started_at"] = json!(rfc3339(self.t0 + r.at - 5 * MIN));
        wr["updated_at"] = json!(rfc3339(self.t0 + r.at));
        wr["repository"]["id"] = json!(REPO_ID);
        wr["repository"]["full_name"] = json!(REPO);
        if r.fork {
            wr["head_repository"]["id"] = json!(FORK_ID);
            wr["head_repository"]["full_name"] = json!("forker/app");
            wr["head_repository"]["owner"]["login"] = json!("forker");
        } else {
            wr["head_repository"]["id"] = json!(REPO_ID);
            wr["head_repository"]["full_name"] = json!(REPO);
            wr["head_repository"]["owner"]["login"] = json!("acme");
        }
        wr["pull_requests"] = Value::Array(
            r.prs
                .iter()
                .map(|n| {
                    let mut p = pr_template.clone();
                    p["number"] = json!(n);
                    p["head"]["sha"] = json!(r.sha);
                    p["head"]["ref"] = json!(r.branch);
                    p["head"]["repo"]["id"] = json!(REPO_ID);
                    p["base"]["repo"]["id"] = json!(REPO_ID);
                    p
                })
                .collect(),
        );
        v
    }

    async fn run(&self, r: &Run) {
        let body = self.run_payload(r).to_string();
        assert_eq!(self.app().deliver("workflow_run", &self.id(), &body).await, 202);
    }

    /// The same run again, in a body made unique (so the intake does not take it for a replay).
    async fn run_again(&self, r: &Run) {
        let body = common::unique(&self.run_payload(r).to_string(), &self.id());
        assert_eq!(self.app().deliver("workflow_run", &self.id(), &body).await, 202);
    }

    async fn settle(&self) {
        world::settle(self.db()).await;
    }

    /// The App's comments on `issue` with `marker` (read).
    fn marked(&self, issue: i64, marker: &str) -> Vec<fake_github::Comment> {
        let tag = format!("<!-- shipgate:{marker} -->");
        self.gh.app_comments(REPO, issue).into_iter().filter(|c| c.body.contains(&tag)).collect()
    }

    /// The one failure comment of workflow `WF` on a PR.
    fn ci_comment(&self, pr: i64) -> fake_github::Comment {
        let mine = self.marked(pr, &format!("ci-failure:{WF}"));
        assert_eq!(mine.len(), 1, "exactly one CI comment on #{pr}: {mine:#?}");
        mine[0].clone()
    }

    fn incident_issues(&self) -> Vec<fake_github::Issue> {
        self.gh.issues_labelled(REPO, "ci-failure")
    }

    async fn incidents(&self) -> Vec<incidents::IncidentRow> {
        incidents::list(self.db(), REPO_ID).await.expect("incidents")
    }

    fn jobs_calls(&self) -> usize {
        self.gh.count("actions/list-jobs-for-workflow-run-attempt")
    }

    async fn done(mut self) {
        self.stop().await;
        self.gh.finish();
    }
}

fn lint_fails() -> [JobSpec<'static>; 2] {
    [
        ("lint", "failure", &[("Set up job", "success"), ("Run eslint", "failure")]),
        ("unit", "success", &[("Run jest", "success")]),
    ]
}

fn unit_fails() -> [JobSpec<'static>; 2] {
    [("lint", "success", &[("Run eslint", "success")]), ("unit", "failure", &[("Run jest", "failure")])]
}

async fn pr_failure_comment_is_edited_then_turns_green(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.pull(REPO, 12, (301, "dave"), SHA1, &["src/a.rs"]);
    w.gh.run_jobs(REPO, 500, 1, &lint_fails());
    let pr_run = |id, number, conclusion, sha| Run {
        prs: vec![12],
        event: "pull_request",
        branch: "feature",
        ..push(id, number, conclusion, sha, 0)
    };
    w.run(&pr_run(500, 1, "failure", SHA1)).await;
    w.settle().await;
    let c = w.ci_comment(12);
    assert!(c.body.starts_with("## 🔴 CI/CD FAILED: `test`"), "{}", c.body);
    assert!(c.body.contains("| [`lint`](https://github.com/acme/app/actions/runs/500/job/"), "{}", c.body);
    assert!(c.body.contains("| Lint | `Run eslint` (Lint) |"), "{}", c.body);
    assert!(c.body.contains("- [ ] **Lint?**") && c.body.contains("**failed here:** `lint`"), "{}", c.body);
    assert!(!c.body.contains("`unit`"), "a passing job is not listed:\n{}", c.body);
    assert_eq!(w.jobs_calls(), 1);

    // A new push fails in another job: the same comment, edited.
    w.gh.push_to_pull(REPO, 12, SHA2);
    w.gh.run_jobs(REPO, 501, 1, &unit_fails());
    w.run(&pr_run(501, 2, "failure", SHA2)).await;
    w.settle().await;
    let c2 = w.ci_comment(12);
    assert_eq!(c2.id, c.id, "edited in place");
    assert_eq!(c2.writes, 2);
    assert!(c2.body.contains("| Test | `Run jest` (Test) |") && !c2.body.contains("Run eslint"), "{}", c2.body);
    assert!(c2.body.contains("run #2, attempt 1"), "{}", c2.body);

    // It passes on the PR's new head: the comment turns green, with no jobs listing.
    w.gh.push_to_pull(REPO, 12, SHA3);
    w.run(&pr_run(502, 3, "success", SHA3)).await;
    w.settle().await;
    let c3 = w.ci_comment(12);
    assert_eq!(c3.id, c.id);
    assert!(c3.body.starts_with("## ✅ CI/CD passing again: `test`"), "{}", c3.body);
    assert!(c3.body.contains("The failure reported here before (run #2) is resolved."), "{}", c3.body);
    assert!(!c3.body.contains("Flaky"), "{}", c3.body);
    assert_eq!(w.jobs_calls(), 2, "no jobs listing for a passing run");
    assert!(w.incident_issues().is_empty(), "a PR's run opens no incident");
    let state = incidents::pr_comment(w.db(), REPO_ID, 12, WF).await.expect("row").expect("exists");
    assert_eq!((state.state.as_str(), state.run_id), ("green", 502));
    assert_eq!(common::count(w.db(), "SELECT COUNT(*) FROM ci_runs").await, 3);

    // Red again, then a re-run of the same commit passes: green, and it says the job is flaky.
    w.gh.run_jobs(REPO, 503, 1, &unit_fails());
    w.run(&pr_run(503, 4, "failure", SHA3)).await;
    w.settle().await;
    assert!(w.ci_comment(12).body.starts_with("## 🔴 CI/CD FAILED"));
    w.run(&Run { attempt: 2, ..pr_run(503, 4, "success", SHA3) }).await;
    w.settle().await;
    let c4 = w.ci_comment(12);
    assert_eq!(c4.id, c.id);
    assert!(c4.body.starts_with("## ✅ CI/CD passing again"), "{}", c4.body);
    assert!(
        c4.body.contains("⚠️ **Flaky:** the same commit failed and then passed on a re-run (`unit`)"),
        "{}",
        c4.body
    );
    let flaky = incidents::flaky(w.db(), REPO_ID).await.expect("flaky");
    assert_eq!(flaky.iter().map(|f| (f.job.as_str(), f.head_sha.as_str())).collect::<Vec<_>>(), vec![("unit", SHA3)]);
    w.done().await;
}
both_backends!(pr_failure_comment_is_edited_then_turns_green);

async fn default_branch_incident_opens_updates_and_closes_with_ttr(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.run_jobs(REPO, 600, 1, &[("build", "failure", &[("docker build", "failure")])]);
    w.run(&push(600, 10, "failure", SHA1, 0)).await;
    w.settle().await;
    let issues = w.incident_issues();
    assert_eq!(issues.len(), 1, "{issues:#?}");
    let i = &issues[0];
    assert_eq!(i.title, "🔴 CI failing: test on main");
    assert_eq!(i.state, "open");
    assert!(i.body.contains(&format!("First failing commit | [`1111111`](https://github.com/{REPO}/commit/{SHA1}) by Matthias Fax (run by @Codertocat)")), "{}", i.body);
    assert!(i.body.contains("| Build | `docker build` (Build) |"), "{}", i.body);
    assert!(
        i.body.contains("| Debug within | 1 min: by **") && i.body.contains("then escalated to devops"),
        "{}",
        i.body
    );
    assert!(i.body.contains("<!-- shipgate:ci-incident:2823525:main:1 -->"), "{}", i.body);
    let rows = w.incidents().await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].state.as_str(), rows[0].first_failure_at, rows[0].deadline), ("open", w.t0, w.t0 + MIN));
    assert_eq!(rows[0].on_default, 1);

    // Another failure updates the same issue.
    w.gh.run_jobs(REPO, 601, 1, &unit_fails());
    w.run(&push(601, 11, "failure", SHA2, 10 * MIN)).await;
    w.settle().await;
    let issues = w.incident_issues();
    assert_eq!(issues.len(), 1, "updated, not another: {issues:#?}");
    assert!(
        issues[0].body.contains("| Failures so far | 2 (latest: [`test` run #11, attempt 1]"),
        "{}",
        issues[0].body
    );
    assert!(issues[0].body.contains("| Test | `Run jest` (Test) |"), "{}", issues[0].body);
    assert!(issues[0].body.contains("by Matthias Fax"), "the first failing commit stays:\n{}", issues[0].body);

    // A success closes it with the time from the first failure to this success.
    w.run(&push(602, 12, "success", SHA3, 47 * MIN)).await;
    w.settle().await;
    let issues = w.incident_issues();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].state, "closed");
    assert!(issues[0].body.starts_with("## ✅ Recovered: `test` passes on `main` again"), "{}", issues[0].body);
    assert!(issues[0].body.contains("Time to recovery: **47 min**"), "{}", issues[0].body);
    let rows = w.incidents().await;
    assert_eq!(rows[0].state, "closed");
    assert_eq!(rows[0].ttr_ms, Some(47 * MIN));
    assert_eq!(rows[0].recovered_at, Some(w.t0 + 47 * MIN));
    assert_eq!(rows[0].failures, 2);

    // The next failure is a new incident (a second issue).
    w.gh.run_jobs(REPO, 603, 1, &unit_fails());
    w.run(&push(603, 13, "failure", SHA1, 60 * MIN)).await;
    w.settle().await;
    let issues = w.incident_issues();
    assert_eq!(issues.len(), 2);
    assert_eq!(issues.iter().filter(|i| i.state == "open").count(), 1);
    assert!(issues.iter().any(|i| i.body.contains("<!-- shipgate:ci-incident:2823525:main:2 -->")));
    assert_eq!(w.jobs_calls(), 3, "one listing per failed run");
    w.done().await;
}
both_backends!(default_branch_incident_opens_updates_and_closes_with_ttr);

async fn reruns_cancelled_runs_and_out_of_order_deliveries(db: &TestDb) {
    let w = World::new(db).await;
    // Cancelled: recorded, nothing else (not even a jobs listing).
    w.run(&push(700, 1, "cancelled", SHA1, 0)).await;
    w.settle().await;
    assert!(w.incident_issues().is_empty());
    assert_eq!(w.jobs_calls(), 0);
    assert_eq!(common::count(w.db(), "SELECT COUNT(*) FROM ci_runs WHERE kind = 'ignored'").await, 1);

    // A failure, then its re-run passes on the same SHA: recovered, and flaky.
    w.gh.run_jobs(REPO, 701, 1, &unit_fails());
    w.run(&push(701, 2, "failure", SHA1, MIN)).await;
    w.settle().await;
    assert_eq!(w.incident_issues().len(), 1);
    w.run(&Run { attempt: 2, ..push(701, 2, "success", SHA1, 9 * MIN) }).await;
    w.settle().await;
    let issues = w.incident_issues();
    assert_eq!(issues[0].state, "closed");
    assert!(issues[0].body.contains("⚠️ **Flaky:**") && issues[0].body.contains("(`unit`)"), "{}", issues[0].body);
    assert!(issues[0].body.contains("Time to recovery: **8 min**"), "{}", issues[0].body);
    let flaky = incidents::flaky(w.db(), REPO_ID).await.expect("flaky");
    assert_eq!(
        flaky.iter().map(|f| (f.job.as_str(), f.head_sha.as_str(), f.workflow_id)).collect::<Vec<_>>(),
        vec![("unit", SHA1, WF)]
    );
    assert_eq!(w.incidents().await[0].flaky, 1);

    // Out of order: the passing re-run arrives before the failed attempt, which arrives twice.
    w.gh.run_jobs(REPO, 710, 1, &lint_fails());
    w.run(&Run { attempt: 2, ..push(710, 3, "success", SHA2, 20 * MIN) }).await;
    w.settle().await;
    let late = push(710, 3, "failure", SHA2, 15 * MIN);
    w.run(&late).await;
    w.run_again(&late).await; // a duplicate (another delivery id)
    w.settle().await;
    assert_eq!(w.incident_issues().len(), 1, "a late failure of an older attempt opens nothing");
    assert_eq!(w.jobs_calls(), 2, "the duplicate costs no API call");
    let flaky = incidents::flaky(w.db(), REPO_ID).await.expect("flaky");
    assert!(flaky.iter().any(|f| f.job == "lint" && f.head_sha == SHA2 && f.at == w.t0 + 20 * MIN), "{flaky:?}");
    assert_eq!(common::count(w.db(), "SELECT COUNT(*) FROM ci_runs WHERE run_id = 710").await, 2);

    // A newer failure, then an older success arriving late: the incident stays open.
    w.gh.run_jobs(REPO, 721, 1, &unit_fails());
    w.run(&push(721, 6, "failure", SHA3, 40 * MIN)).await;
    w.settle().await;
    w.run(&push(720, 5, "success", SHA2, 35 * MIN)).await;
    w.settle().await;
    let issues = w.incident_issues();
    assert_eq!(issues.len(), 2);
    assert_eq!(issues.iter().filter(|i| i.state == "open").count(), 1, "{issues:#?}");
    let open: Vec<_> = w.incidents().await.into_iter().filter(|i| i.state == "open").collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].first_failure_at, w.t0 + 40 * MIN);
    w.done().await;
}
both_backends!(reruns_cancelled_runs_and_out_of_order_deliveries);

async fn fork_pull_requests_and_a_forks_main(db: &TestDb) {
    let w = World::new(db).await;
    // A fork's PR: the payload names no PR; it is found by its head `forker:feature` and SHA.
    w.gh.pull(REPO, 30, (555, "forker"), SHA1, &["x"]);
    w.gh.pull_head(REPO, 30, "forker:feature");
    w.gh.pull(REPO, 31, (555, "forker"), SHA2, &["y"]);
    w.gh.pull_head(REPO, 31, "forker:main");
    w.gh.run_jobs(REPO, 800, 1, &unit_fails());
    let fork_run =
        |id, sha, branch| Run { fork: true, event: "pull_request", branch, ..push(id, 1, "failure", sha, 0) };
    w.run(&fork_run(800, SHA1, "feature")).await;
    w.settle().await;
    let c = w.ci_comment(30);
    assert!(c.body.contains("🔴 CI/CD FAILED") && c.body.contains("`Run jest`"), "{}", c.body);
    assert_eq!(w.gh.count("pulls/list"), 1);
    let call = w.gh.calls().into_iter().find(|c| c.operation == "pulls/list").expect("listed");
    assert!(call.query.contains(&("head".into(), "forker:feature".into())), "{:?}", call.query);

    // The fork's `main` fails: its PR gets the comment, and no incident opens (not our main).
    w.gh.run_jobs(REPO, 801, 1, &unit_fails());
    w.run(&fork_run(801, SHA2, "main")).await;
    // Even as a "push" run of the fork's main branch.
    w.gh.run_jobs(REPO, 802, 1, &unit_fails());
    w.run(&Run { event: "push", number: 2, ..fork_run(802, SHA2, "main") }).await;
    w.settle().await;
    assert_eq!(w.ci_comment(31).writes, 1);
    assert!(w.incident_issues().is_empty(), "a fork's main never opens an incident");
    assert!(w.incidents().await.is_empty());
    assert!(w.marked(30, &format!("ci-failure:{WF}")).len() == 1);
    w.done().await;
}
both_backends!(fork_pull_requests_and_a_forks_main);

/// The escalation comments on an issue (read).
fn escalations(w: &World, issue: i64) -> Vec<String> {
    w.marked(issue, "ci-escalation").into_iter().map(|c| c.body).collect()
}

async fn wait_escalated(w: &World, issue: i64) {
    w.gh.wait_for("an escalation comment", Duration::from_secs(20), |m| {
        m.comments.iter().any(|c| c.issue == issue && c.body.contains("<!-- shipgate:ci-escalation -->"))
    })
    .await;
    w.settle().await;
}

async fn escalation_fires_once_at_the_deadline_and_after_a_restart(db: &TestDb) {
    let mut w = World::new(db).await;
    w.gh.run_jobs(REPO, 900, 1, &unit_fails());
    w.run(&push(900, 1, "failure", SHA1, 0)).await;
    w.settle().await;
    let issue = w.incident_issues()[0].number;
    // Just before the deadline (the failure's time + 1 min): nothing, across a few loop rounds.
    w.clock.advance_ms(MIN - 1);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    w.settle().await;
    assert!(escalations(&w, issue).is_empty());
    // At the deadline: one comment mentioning the role's users and teams.
    w.clock.advance_ms(1);
    wait_escalated(&w, issue).await;
    tokio::time::sleep(Duration::from_millis(4500)).await; // more rounds: nothing more
    w.settle().await;
    let e = escalations(&w, issue);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].starts_with("## 🚨 Escalated: 🔴 CI failing: test on main"), "{}", e[0]);
    assert!(e[0].contains("@olivia @acme/sre: please take this over."), "{}", e[0]);
    assert_eq!(w.marked(issue, "ci-escalation")[0].writes, 1);
    assert!(w.incidents().await[0].escalated_at.is_some());

    // Another workflow fails; the App is down when its deadline passes; it escalates on return.
    w.gh.run_jobs(REPO, 950, 1, &[("deploy", "failure", &[("helm upgrade", "failure")])]);
    // Its deadline is 5 s (of the App's clock) away; the App's clock stays within a minute of the real
    // one, or the fake GitHub would refuse the App's JWT.
    let at = w.clock.now_ms() - w.t0 - MIN + 5_000;
    w.run(&Run { workflow: 99, ..push(950, 1, "failure", SHA2, at) }).await;
    w.settle().await;
    let second =
        w.gh.issues_labelled(REPO, "ci-failure").into_iter().find(|i| i.title.contains("deploy")).expect("issue");
    assert!(second.body.contains("| Deploy | `helm upgrade` (Deploy) |"), "{}", second.body);
    w.stop().await;
    w.clock.advance_ms(5_001);
    w.start().await;
    wait_escalated(&w, second.number).await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    w.settle().await;
    assert_eq!(escalations(&w, second.number).len(), 1);
    assert_eq!(escalations(&w, issue).len(), 1, "the first one is not escalated again");
    assert_eq!(common::count(w.db(), "SELECT COUNT(*) FROM jobs WHERE name LIKE 'escalate:%'").await, 2);
    assert_eq!(common::count(w.db(), "SELECT COUNT(*) FROM outbox WHERE key LIKE 'escalate:%'").await, 2);
    w.done().await;
}
both_backends!(escalation_fires_once_at_the_deadline_and_after_a_restart);

async fn a_critical_dependabot_alert_opens_a_security_incident_escalated_at_once(db: &TestDb) {
    let w = World::new(db).await;
    let alert = |name: &str, number: i64, severity: &str| {
        let mut v = w.base(name);
        v["alert"]["number"] = json!(number);
        v["alert"]["security_advisory"]["severity"] = json!(severity);
        v["alert"]["security_vulnerability"]["severity"] = json!(severity);
        v["alert"]["created_at"] = json!(rfc3339(w.t0));
        v["alert"]["html_url"] = json!(format!("https://github.com/{REPO}/security/dependabot/{number}"));
        // A private repository: its incidents are issues (a public one's are not: below).
        v["repository"]["private"] = json!(true);
        v["repository"]["visibility"] = json!("private");
        v
    };
    let created = alert("dependabot_alert.created.0", 20, "critical");
    assert_eq!(w.app().deliver("dependabot_alert", &w.id(), &created.to_string()).await, 202);
    // A medium one opens nothing.
    let medium = alert("dependabot_alert.created.0", 21, "medium");
    assert_eq!(w.app().deliver("dependabot_alert", &w.id(), &medium.to_string()).await, 202);
    w.settle().await;
    let issues = w.gh.issues_labelled(REPO, "security");
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert!(issues[0].title.starts_with("🔒 Dependabot alert #20 (critical): "), "{}", issues[0].title);
    assert!(issues[0].body.contains("Escalated at once to devops."), "{}", issues[0].body);
    // Escalated without the clock moving.
    wait_escalated(&w, issues[0].number).await;
    let e = escalations(&w, issues[0].number);
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("A high or critical security alert is open. @olivia @acme/sre"), "{}", e[0]);

    // Fixed: the incident closes.
    let mut fixed = alert("dependabot_alert.fixed.0", 20, "critical");
    fixed["alert"]["fixed_at"] = json!(rfc3339(w.t0 + 90 * MIN));
    assert_eq!(w.app().deliver("dependabot_alert", &w.id(), &fixed.to_string()).await, 202);
    w.settle().await;
    let issues = w.gh.issues_labelled(REPO, "security");
    assert_eq!(issues[0].state, "closed");
    assert!(issues[0].body.starts_with("## ✅ Resolved: the alert was fixed after 1 h 30 min"), "{}", issues[0].body);
    // The escalation comment no longer says the incident is open.
    let e = escalations(&w, issues[0].number);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("## ✅ Resolved after escalation"), "{}", e[0]);
    let rows = w.incidents().await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].kind.as_str(), rows[0].state.as_str(), rows[0].ttr_ms), ("security", "closed", Some(90 * MIN)));
    w.done().await;
}
both_backends!(a_critical_dependabot_alert_opens_a_security_incident_escalated_at_once);

/// SPEC §4.1: on a public repository a security alert is never disclosed in a public issue; the
/// incident is kept by the App and shown in the API.
async fn a_security_alert_on_a_public_repository_is_never_a_public_issue(db: &TestDb) {
    let w = World::new(db).await;
    let mut v = w.base("dependabot_alert.created.0");
    v["alert"]["number"] = json!(30);
    v["alert"]["security_advisory"]["severity"] = json!("critical");
    v["alert"]["created_at"] = json!(rfc3339(w.t0));
    v["repository"]["private"] = json!(false);
    v["repository"]["visibility"] = json!("public");
    assert_eq!(w.app().deliver("dependabot_alert", &w.id(), &v.to_string()).await, 202);
    // Nor when the payload does not say (it fails closed).
    let mut v = w.base("dependabot_alert.created.0");
    v["alert"]["number"] = json!(31);
    v["alert"]["security_advisory"]["severity"] = json!("high");
    v["alert"]["created_at"] = json!(rfc3339(w.t0));
    v["repository"].as_object_mut().expect("repo").remove("private");
    v["repository"].as_object_mut().expect("repo").remove("visibility");
    assert_eq!(w.app().deliver("dependabot_alert", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    assert!(w.gh.issues_labelled(REPO, "security").is_empty());
    assert!(w.gh.model().issues.values().all(|i| !i.title.contains("alert")), "no issue about the alert at all");
    let rows = w.incidents().await;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(rows.iter().all(|r| r.kind == "security" && r.state == "open" && r.escalated_at.is_some()), "{rows:#?}");
    // Fixed: closed in the App, still no issue.
    let mut fixed = w.base("dependabot_alert.fixed.0");
    fixed["alert"]["number"] = json!(30);
    fixed["alert"]["fixed_at"] = json!(rfc3339(w.t0 + 10 * MIN));
    fixed["repository"]["private"] = json!(false);
    assert_eq!(w.app().deliver("dependabot_alert", &w.id(), &fixed.to_string()).await, 202);
    w.settle().await;
    assert!(w.gh.issues_labelled(REPO, "security").is_empty());
    let closed = w.incidents().await.into_iter().filter(|r| r.state == "closed").count();
    assert_eq!(closed, 1);
    w.done().await;
}
both_backends!(a_security_alert_on_a_public_repository_is_never_a_public_issue);

fn request_body() -> String {
    "CHANGE REQUEST:\n- Service/component: api\n- Environment: production\n- Reason: new endpoint\n\nIMPACT ANALYSIS:\n\
     - Downtime: none\n- Rollback time: 3 min\n- Dependencies: none\n- Data migration: none\n\nIMPLEMENTATION:\n\
     1. Code changes #12\n4. Deployment steps: merge and deploy\n5. Verification: smoke tests\n\
     6. Rollback plan: revert the PR and redeploy\n"
        .to_string()
}

/// Deployment request #5 for production (deployed from the default branch), labelled, settled.
async fn label_request(w: &World) {
    {
        let mut m = w.gh.model();
        let i = m.issues.entry((REPO.to_string(), 5)).or_default();
        i.number = 5;
        i.title = "Deploy api".into();
        i.body = request_body();
        i.state = "open".into();
        i.author_id = 401;
        i.author = "carol".into();
        i.labels = vec!["DEPLOYMENT_REQUEST".into()];
    }
    let mut v = w.base("issues.labeled.0");
    v["action"] = json!("labeled");
    v["issue"] = fake_github::issue_json(&w.gh.model().issues[&(REPO.to_string(), 5)]);
    v["label"] = json!({ "name": "DEPLOYMENT_REQUEST" });
    assert_eq!(w.app().deliver("issues", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
}

/// The request's sticky comment (the test has read it).
fn sticky(w: &World) -> String {
    let c = w.marked(5, "request");
    assert_eq!(c.len(), 1);
    c[0].body.clone()
}

async fn an_open_incident_closes_the_deploy_gate_until_recovery(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.pull(REPO, 12, (301, "dave"), SHA3, &["src/a.rs"]);
    w.gh.ci(REPO, SHA3, "build", "completed", Some("success"));
    w.gh.run_jobs(REPO, 1000, 1, &unit_fails());
    w.run(&push(1000, 1, "failure", SHA1, 0)).await;
    w.settle().await;
    assert_eq!(w.incident_issues().len(), 1);
    // A deployment request for production (deployed from the default branch).
    label_request(&w).await;
    let c = sticky(&w);
    let hold = c.lines().find(|l| l.starts_with("| Hold |")).unwrap_or_default().to_string();
    assert!(hold.contains("CI is red on the target branch: 🔴 CI failing: test on main"), "{c}");
    // The row names the incident's issue (GitHub links `#N`).
    let incident = w.gh.issues_labelled(REPO, "ci-failure");
    assert_eq!(incident.len(), 1);
    assert!(hold.contains(&format!("(#{}, since", incident[0].number)), "{hold}");
    assert!(!c.contains("The gate is open"), "{c}");

    // Recovery rechecks the request: the gate opens.
    w.run(&push(1001, 2, "success", SHA2, 30 * MIN)).await;
    w.settle().await;
    let c = sticky(&w);
    let hold = c.lines().find(|l| l.starts_with("| Hold |")).unwrap_or_default().to_string();
    assert!(hold.contains("no hold, no denial"), "{c}");
    w.done().await;
}
both_backends!(an_open_incident_closes_the_deploy_gate_until_recovery);

async fn a_late_earlier_failure_becomes_the_incidents_first(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.run_jobs(REPO, 31, 1, &unit_fails());
    w.gh.run_jobs(REPO, 30, 1, &lint_fails());
    w.run(&push(29, 29, "success", SHA3, 0)).await;
    w.run(&push(31, 31, "failure", SHA2, 10 * MIN)).await;
    w.settle().await;
    assert_eq!(w.incidents().await[0].first_failure_at, w.t0 + 10 * MIN);
    // Run 30 failed before run 31 but is delivered after it.
    w.run(&push(30, 30, "failure", SHA1, 4 * MIN)).await;
    w.settle().await;
    let rows = w.incidents().await;
    assert_eq!((rows[0].first_failure_at, rows[0].failures, rows[0].deadline), (w.t0 + 4 * MIN, 2, w.t0 + 5 * MIN));
    let issues = w.incident_issues();
    assert_eq!(issues.len(), 1);
    assert!(issues[0].body.contains("First failing commit | [`1111111`]"), "{}", issues[0].body);
    assert!(issues[0].body.contains("| Failures so far | 2 (latest: [`test` run #31,"), "{}", issues[0].body);
    // An older success delivered late changes nothing; the next success closes it from run 30.
    w.run(&push(28, 28, "success", SHA3, -MIN)).await;
    w.settle().await;
    assert_eq!(w.incidents().await[0].state, "open");
    w.run(&push(32, 32, "success", SHA3, 20 * MIN)).await;
    w.settle().await;
    let rows = w.incidents().await;
    assert_eq!((rows[0].state.as_str(), rows[0].ttr_ms), ("closed", Some(16 * MIN)));
    assert!(w.incident_issues()[0].body.contains("Time to recovery: **16 min**"));
    w.done().await;
}
both_backends!(a_late_earlier_failure_becomes_the_incidents_first);

async fn two_replicas_escalate_once_and_a_stale_claim_is_taken_over(db: &TestDb) {
    let mut w = World::new(db).await;
    w.gh.run_jobs(REPO, 40, 1, &unit_fails());
    w.gh.run_jobs(REPO, 41, 1, &unit_fails());
    w.run(&push(40, 40, "failure", SHA1, 0)).await;
    w.run(&Run { workflow: 99, ..push(41, 41, "failure", SHA2, 0) }).await;
    w.settle().await;
    let issues = w.incident_issues();
    assert_eq!(issues.len(), 2);
    w.stop().await;
    w.clock.advance_ms(MIN);
    let now = w.clock.now_ms();
    let d = db.connect().await;
    // A replica claimed the second incident's escalation long ago and stopped before finishing.
    let ids: Vec<String> = incidents::list(&d, REPO_ID).await.expect("list").into_iter().map(|i| i.id).collect();
    let stale = ids.iter().find(|i| i.contains(":99:")).expect("second");
    assert!(
        shipgate::store::scheduler::claim(&d, &format!("escalate:{stale}"), w.t0 + MIN, "gone", now - 2 * MIN)
            .await
            .expect("claim")
    );
    // Two replicas run the escalation at the same moment: each incident is escalated once.
    let (a, b) = tokio::join!(
        shipgate::handlers::ci::escalate_due(&d, now, "replica-a"),
        shipgate::handlers::ci::escalate_due(&d, now, "replica-b")
    );
    assert_eq!(a.expect("a") + b.expect("b"), 2);
    assert_eq!(common::count(&d, "SELECT COUNT(*) FROM outbox WHERE key LIKE 'escalate:%'").await, 2);
    assert_eq!(common::count(&d, "SELECT COUNT(*) FROM incidents WHERE escalated_at IS NOT NULL").await, 2);
    assert_eq!(shipgate::handlers::ci::escalate_due(&d, now + MIN, "replica-c").await.expect("c"), 0);
    d.close().await;
    // The App comes back and sends them: one comment on each issue.
    w.start().await;
    for i in &issues {
        wait_escalated(&w, i.number).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    w.settle().await;
    for i in &issues {
        assert_eq!(escalations(&w, i.number).len(), 1);
    }
    w.done().await;
}
both_backends!(two_replicas_escalate_once_and_a_stale_claim_is_taken_over);

async fn a_run_whose_jobs_are_gone_still_opens_the_incident(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.inject("GET", "/actions/runs/60/attempts/1/jobs", fake_github::Fault::Status(404), 1);
    w.run(&push(60, 60, "failure", SHA1, 0)).await;
    w.settle().await;
    let issues = w.incident_issues();
    assert_eq!(issues.len(), 1);
    assert!(issues[0].body.contains("No failed job was found"), "{}", issues[0].body);
    assert_eq!(common::count(w.db(), "SELECT COUNT(*) FROM deliveries WHERE state <> 'done'").await, 0);
    w.done().await;
}
both_backends!(a_run_whose_jobs_are_gone_still_opens_the_incident);

/// PR #12 (head SHA3, green) is merged into `main` as SHA1; its request for
/// production is open (no approval needed). `main`'s CI then fails on SHA1: the incident opens and
/// must close the gate (`block_deploys_while_red`). The incident's recheck and the
/// `workflow_run`'s own folded-in event once shared one delivery id, and the recheck was dropped.
async fn red_main_after_merge_closes_the_open_gate(db: &TestDb) {
    let w = World::new(db).await;
    w.gh.pull(REPO, 12, (301, "dave"), SHA3, &["src/a.rs"]);
    w.gh.ci(REPO, SHA3, "build", "completed", Some("success"));
    w.gh.merge_pull(REPO, 12, SHA1);
    label_request(&w).await;
    let c = sticky(&w);
    assert!(c.contains("The gate is open"), "{c}");
    assert!(c.contains("Merged: merged as `1111111` is covered too"), "{c}");

    // main's CI fails on the merge commit.
    w.gh.run_jobs(REPO, 1000, 1, &unit_fails());
    w.run(&push(1000, 1, "failure", SHA1, 0)).await;
    w.settle().await;
    assert_eq!(w.incident_issues().len(), 1);
    let c = sticky(&w);
    let hold = c.lines().find(|l| l.starts_with("| Hold |")).unwrap_or_default().to_string();
    assert!(hold.contains("CI is red on the target branch"), "{c}");
    assert!(!c.contains("The gate is open"), "{c}");
    w.done().await;
}
both_backends!(red_main_after_merge_closes_the_open_gate);

/// SPEC §5: an incident's notifications (opened, escalated, recovered) reach the policy's channel
/// and link back to the incident issue, whose number the App learns only once it has created it.
async fn incident_notifications_link_back_to_the_issue(db: &TestDb) {
    let slack = receivers::SlackReceiver::start().await;
    let policy =
        format!("{POLICY}notify:\n  - {{ on: [incident_opened, escalated, recovered], to: [slack:oncall] }}\n");
    let hook = slack.hook_url("oncall");
    let w = World::with(db, &policy, |cfg| {
        cfg.notify.slack.insert(("acme".into(), "oncall".into()), shipgate::config::Secret::new(hook));
    })
    .await;
    w.gh.run_jobs(REPO, 700, 1, &unit_fails());
    w.run(&push(700, 1, "failure", SHA1, 0)).await;
    // The notice waits (a second of the App's clock at a time) while its issue is being created.
    w.gh.wait_for("the incident issue", Duration::from_secs(20), |m| {
        m.issues.values().any(|i| i.labels.iter().any(|l| l == "ci-failure"))
    })
    .await;
    // And until the App has recorded its number (GitHub made it a moment before the App's relay
    // stored the answer): only then may the App's clock move past the notice's wait, or the
    // notice rightly goes out with the issue list's link instead.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while common::count(w.db(), "SELECT COUNT(*) FROM github_objects WHERE kind = 'issue' AND github_id > 0").await == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "the incident issue's number was never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.clock.advance_ms(1000);
    w.settle().await;
    let issue = w.incident_issues()[0].number;
    let url = format!("{}/{REPO}/issues/{issue}", w.url);
    let m = slack.wait_for("oncall", 1, Duration::from_secs(10)).await;
    let text = |m: &Value| m["text"].as_str().unwrap_or_default().to_string();
    assert_eq!(m[0]["blocks"][0]["text"]["text"], "🔴 CI failing: test on main");
    assert_eq!(text(&m[0]), format!("🔴 CI failing: test on main: <{url}|the incident issue>"));
    let fields = m[0]["blocks"][2].to_string();
    assert!(fields.contains("*Failed jobs*\\nunit") && fields.contains("actions/runs/700"), "{fields}");
    // Escalated at the deadline.
    w.clock.advance_ms(MIN);
    wait_escalated(&w, issue).await;
    let m = slack.wait_for("oncall", 2, Duration::from_secs(10)).await;
    assert_eq!(m[1]["blocks"][0]["text"]["text"], "Escalated: 🔴 CI failing: test on main");
    assert!(text(&m[1]).contains(&format!("<{url}|")), "{:#}", m[1]);
    assert!(
        m[1]["blocks"][1]["text"]["text"].as_str().unwrap().contains("escalated to @olivia @acme/sre"),
        "{:#}",
        m[1]
    );
    // Recovered by a passing run.
    w.run(&push(701, 2, "success", SHA2, 10 * MIN)).await;
    w.settle().await;
    let m = slack.wait_for("oncall", 3, Duration::from_secs(10)).await;
    assert_eq!(m.len(), 3, "{m:#?}");
    assert_eq!(m[2]["blocks"][0]["text"]["text"], "Recovered: 🔴 CI failing: test on main");
    assert!(
        m[2]["blocks"][1]["text"]["text"].as_str().unwrap().contains("Recovered (a passing run) after 10m 0s"),
        "{:#}",
        m[2]
    );
    assert!(text(&m[2]).contains(&format!("<{url}|")), "{:#}", m[2]);
    escalations(&w, issue);
    w.done().await;
}
both_backends!(incident_notifications_link_back_to_the_issue);

/// An incident's issue links its details page (a fresh signed link on each update); the page
/// shows the incident, and a changed link shows nothing.
async fn an_incident_issue_links_its_details_page(db: &TestDb) {
    const PUBLIC: &str = "https://shipgate.example";
    let w = World::with(db, POLICY, |c| c.public_url = Some(PUBLIC.into())).await;
    w.gh.run_jobs(REPO, 600, 1, &[("build", "failure", &[("docker build", "failure")])]);
    w.run(&push(600, 10, "failure", SHA1, 0)).await;
    w.settle().await;
    let body = w.incident_issues()[0].body.clone();
    assert!(!body.contains("shipgate:details-link"), "{body}");
    let start = body.find(&format!("{PUBLIC}/incidents/{INST}/{REPO_ID}/")).unwrap_or_else(|| panic!("{body}"));
    let link = body[start..start + body[start..].find(')').unwrap()].replace(PUBLIC, &w.app().url);
    let page = |url: String| async move {
        let r = reqwest::get(&url).await.expect("GET");
        (r.status().as_u16(), r.text().await.expect("body"))
    };
    let (status, text) = page(link.clone()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("CI failing: test on main") && text.contains("Respond by"), "{text}");
    assert!(text.contains("<td>open</td>") || text.contains(">Open<"), "{text}");
    let (status, text) = page(link.replace("ci-incident", "ci-incidenT")).await;
    assert_eq!(status, 403);
    assert!(!text.contains("CI failing"), "{text}");
    w.done().await;
}
both_backends!(an_incident_issue_links_its_details_page);
