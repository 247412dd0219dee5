//! A CI storm on one request (issue 14): an approved request whose PR head has 50 queued check
//! runs, in 5 workflows of 10 jobs; the jobs complete at random moments within a window (60 s by
//! default), each workflow's `check_suite` and `workflow_run` events after its last job. Counts the
//! GitHub API calls and the evaluations the storm cost, and the time from the last job's event
//! to the gate check run turning green. The App runs with its production coalescing settings
//! (`SHIPGATE_COALESCE_*` defaults), SQLite, against the tests' fake GitHub.
//!
//!     cargo run --release --example storm -- [window_secs=60] [seed=1]

#[path = "../tests/fake_github/mod.rs"]
mod fake_github;
#[path = "signed.rs"]
mod signed;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shipgate::github::client::GithubConfig;
use shipgate::server::Options;

const REPO: &str = "acme/app";
const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
const POLICY: &str = "roles:\n  pm: { users: [alice] }\n  backend-lead: { teams: [acme/backend-leads] }\nenvironments:\n  production:\n    approvals:\n      - role: pm\n      - role: backend-lead\n        when_paths: [\"apps/backend/**\"]\n    max_rollback_minutes: 5\n";
const BODY: &str = "- Service: api\n- Environment: production\n- Reason: new endpoint\n- Rollback time: 3 min\n- Pull request: #12\n- Rollback plan: revert and redeploy\n";
const SECRET: &str = "bench-secret";
const WORKFLOWS: usize = 5;
const JOBS: usize = 10;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/webhooks/{name}.json", env!("CARGO_MANIFEST_DIR")))
        .expect("fixture")
}

fn base(name: &str) -> Value {
    let mut v: Value = serde_json::from_str(&fixture(name)).expect("fixture");
    v["installation"] = json!({ "id": 1 });
    v["repository"]["id"] = json!(7);
    v["repository"]["full_name"] = json!(REPO);
    v
}

async fn deliver(http: &reqwest::Client, url: &str, event: &str, id: &str, body: &str) {
    let status = signed::deliver(http, url, SECRET, event, id, body).await;
    assert_eq!(status, 202, "{event} {id}");
}

fn comment(gh: &fake_github::FakeGitHub, who: (i64, &str), text: &str) -> String {
    let id = gh.human_comment_by(REPO, 5, who, text);
    let mut v = base("issue_comment.created.0");
    v["issue"] = fake_github::issue_json(&gh.model().issues[&(REPO.to_string(), 5)]);
    v["comment"]["id"] = json!(id);
    v["comment"]["body"] = json!(text);
    v["comment"]["user"] = json!({ "id": who.0, "login": who.1, "type": "User" });
    v.to_string()
}

fn gate(gh: &fake_github::FakeGitHub) -> String {
    gh.gate_checks(REPO, SHA).first().map(|r| r.1.clone()).unwrap_or_default()
}

/// The evaluations made so far (recheck deliveries that evaluated).
async fn evaluations(db: &shipgate::store::Db) -> usize {
    shipgate::store::deliveries::list(db, Some("done"), 1_000_000)
        .await
        .expect("list")
        .into_iter()
        .filter(|d| d.event == shipgate::handlers::requests::RECHECK_EVENT && d.outcome.as_deref() == Some("ok"))
        .count()
}

#[tokio::main]
async fn main() {
    let window: f64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(60.0);
    let seed: u64 = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let gh = fake_github::FakeGitHub::start().await;
    gh.install(1, &[REPO]);
    gh.team("acme", "backend-leads", &[(201, "bob")]);
    for (id, login) in [(101, "alice"), (201, "bob"), (401, "carol"), (301, "dave")] {
        gh.user(login, id);
        gh.permission(REPO, login, "write");
    }
    gh.file(REPO, ".github/shipgate.yml", POLICY);
    gh.pull(REPO, 12, (301, "dave"), SHA, &["apps/backend/api.rs"]);
    let name = |w: usize, j: usize| format!("wf{w} / job-{j:02}");
    for w in 0..WORKFLOWS {
        for j in 0..JOBS {
            gh.ci(REPO, SHA, &name(w, j), "queued", None);
        }
    }
    gh.issue(REPO, 5, "Deploy api", BODY);
    {
        let mut m = gh.model();
        let i = m.issues.get_mut(&(REPO.to_string(), 5)).expect("issue");
        i.labels.push("DEPLOYMENT_REQUEST".into());
        i.author_id = 401;
        i.author = "carol".into();
    }
    let dir = tempfile::tempdir().expect("dir");
    let db_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut cfg = shipgate::config::Config::for_tests(&db_url, SECRET);
    cfg.github = Some(fake_github::app_credentials());
    cfg.github_api_url = gh.url.clone();
    cfg.worker.poll_interval = Duration::from_millis(500);
    cfg.coalesce = Default::default(); // production: 2 s quiet, 10 s for the verdict, 60 s to refresh
    let mut g = GithubConfig::new(&gh.url);
    g.mutation_spacing = Duration::ZERO;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = shipgate::server::Server::start(&cfg, listener, Options { github: Some(g), ..Options::default() })
        .await
        .expect("start");
    let url = format!("http://{}", server.addr);
    let http = reqwest::Client::new();

    let mut v = base("issues.labeled.0");
    v["issue"] = fake_github::issue_json(&gh.model().issues[&(REPO.to_string(), 5)]);
    deliver(&http, &url, "issues", "setup-1", &v.to_string()).await;
    deliver(&http, &url, "issue_comment", "setup-2", &comment(&gh, (201, "bob"), "/approve")).await;
    deliver(&http, &url, "issue_comment", "setup-3", &comment(&gh, (101, "alice"), "/approve")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while gh.model().comments.iter().filter(|c| !c.reactions.is_empty()).count() < 2 {
        assert!(
            Instant::now() < deadline,
            "the approvals were not taken: {:#?}",
            gh.model()
                .comments
                .iter()
                .map(|c| (c.user.clone(), c.body.chars().take(300).collect::<String>(), c.reactions.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(gate(&gh), "action_required");
    let (calls0, evals0) = (gh.calls().len(), evaluations(&server.db).await);

    // The storm: each job completes at a random moment of the window; a workflow's suite and run
    // events follow its last job.
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut events: Vec<(f64, usize, Option<usize>)> = Vec::new(); // (at, workflow, job or None)
    for w in 0..WORKFLOWS {
        let mut last = 0.0f64;
        for j in 0..JOBS {
            let at = rng.f64() * window;
            last = last.max(at);
            events.push((at, w, Some(j)));
        }
        events.push((last + 0.2, w, None));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let start = Instant::now();
    let mut n = 0;
    for (at, w, job) in &events {
        let wait = Duration::from_secs_f64(*at).saturating_sub(start.elapsed());
        tokio::time::sleep(wait).await;
        n += 1;
        match job {
            Some(j) => {
                gh.ci(REPO, SHA, &name(*w, *j), "completed", Some("success"));
                let mut v = base("check_run.completed.0");
                v["check_run"]["head_sha"] = json!(SHA);
                v["check_run"]["name"] = json!(name(*w, *j));
                v["check_run"]["conclusion"] = json!("success");
                deliver(&http, &url, "check_run", &format!("s-{n}"), &v.to_string()).await;
            }
            None => {
                let mut v = base("check_suite.completed.0");
                v["check_suite"]["head_sha"] = json!(SHA);
                v["check_suite"]["conclusion"] = json!("success");
                v["check_suite"]["id"] = json!(1000 + w);
                deliver(&http, &url, "check_suite", &format!("s-{n}-suite"), &v.to_string()).await;
                let mut v = base("workflow_run.completed.0");
                v["workflow_run"]["head_sha"] = json!(SHA);
                v["workflow_run"]["head_branch"] = json!("feature");
                v["workflow_run"]["conclusion"] = json!("success");
                v["workflow_run"]["id"] = json!(2000 + w);
                deliver(&http, &url, "workflow_run", &format!("s-{n}-run"), &v.to_string()).await;
            }
        }
    }
    let last_event = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while gate(&gh) != "success" {
        assert!(Instant::now() < deadline, "the gate did not open");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let to_green = last_event.elapsed();
    // Everything the storm asked for, done: nothing due, nothing left in the inbox.
    loop {
        let due = shipgate::store::rechecks::count(&server.db).await.unwrap_or(0);
        let s = shipgate::store::deliveries::stats(&server.db).await.expect("stats");
        if due == 0 && s.pending == 0 && s.running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let calls = gh.calls().len() - calls0;
    let evals = evaluations(&server.db).await - evals0;
    println!(
        "JSON {{\"window_s\":{window},\"events\":{},\"check_runs\":{},\"evaluations\":{evals},\"api_calls\":{calls},\"last_event_to_green_ms\":{:.0}}}",
        events.len() * 2 - WORKFLOWS * JOBS,
        WORKFLOWS * JOBS,
        to_green.as_secs_f64() * 1000.0
    );
    let mut by_op: std::collections::BTreeMap<String, usize> = Default::default();
    for c in gh.calls().iter().skip(calls0) {
        *by_op.entry(c.operation.clone()).or_default() += 1;
    }
    println!("calls during the storm by operation: {by_op:?}");
    server.shutdown().await.expect("shutdown");
}
