//! Time from a `/approve` delivery to the deploy gate check run turning green on GitHub (the
//! fake GitHub of the tests), over N runs; and the GitHub API calls the happy path costs.
//!
//!     cargo run --release --example approve_latency -- 200
//!
//! Each run: Alice's `/approve` arrives (signed, through the real router) → the worker evaluates
//! the gate → the relay sends the check run update → the fake GitHub records it. Then
//! `/approve cancel` closes the gate again (not timed). SQLite, durable; mutation spacing 0
//! (GitHub's one-second pause between mutations would otherwise dominate).

#[path = "../tests/fake_github/mod.rs"]
mod fake_github;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shipgate::github::client::GithubConfig;
use shipgate::server::Options;

const REPO: &str = "acme/app";
const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
const POLICY: &str = "roles:\n  pm: { users: [alice] }\n  backend-lead: { teams: [acme/backend-leads] }\nenvironments:\n  production:\n    approvals:\n      - role: pm\n      - role: backend-lead\n        when_paths: [\"apps/backend/**\"]\n    max_rollback_minutes: 5\n";
const BODY: &str = "- Service: api\n- Environment: production\n- Reason: new endpoint\n- Rollback time: 3 min\n- Pull request: #12\n- Rollback plan: revert and redeploy\n";

const SECRET: &str = "bench-secret";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/webhooks/{name}.json", env!("CARGO_MANIFEST_DIR")))
        .expect("fixture")
}

struct App {
    url: String,
    http: reqwest::Client,
}

impl App {
    async fn deliver(&self, event: &str, id: &str, body: &str) -> u16 {
        self.http
            .post(format!("{}/webhook", self.url))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", shipgate::github::signature::sign(SECRET, body.as_bytes()))
            .body(body.to_string())
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }
}

fn base(name: &str) -> Value {
    let mut v: Value = serde_json::from_str(&fixture(name)).expect("fixture");
    v["installation"] = json!({ "id": 1 });
    v["repository"]["id"] = json!(7);
    v["repository"]["full_name"] = json!(REPO);
    v
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

fn conclusion(gh: &fake_github::FakeGitHub) -> String {
    gh.gate_checks(REPO, SHA).first().map(|r| r.1.clone()).unwrap_or_default()
}

async fn wait_for(gh: &fake_github::FakeGitHub, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while conclusion(gh) != want {
        assert!(Instant::now() < deadline, "timed out waiting for {want}");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let gh = fake_github::FakeGitHub::start().await;
    gh.install(1, &[REPO]);
    gh.team("acme", "backend-leads", &[(201, "bob")]);
    gh.file(REPO, ".github/shipgate.yml", POLICY);
    gh.pull(REPO, 12, (301, "dave"), SHA, &["apps/backend/api.rs"]);
    gh.ci(REPO, SHA, "build", "completed", Some("success"));
    gh.issue(REPO, 5, "Deploy api", BODY);
    {
        let mut m = gh.model();
        let i = m.issues.get_mut(&(REPO.to_string(), 5)).expect("issue");
        i.labels.push("DEPLOYMENT_REQUEST".into());
        i.author_id = 401;
        i.author = "carol".into();
    }
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut cfg = shipgate::config::Config::for_tests(&url, SECRET);
    cfg.github = Some(fake_github::app_credentials());
    cfg.github_api_url = gh.url.clone();
    cfg.worker.poll_interval = Duration::from_millis(500); // production default: wake-ups, not polling
    let mut g = GithubConfig::new(&gh.url);
    g.mutation_spacing = Duration::ZERO;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = shipgate::server::Server::start(&cfg, listener, Options { github: Some(g), ..Options::default() })
        .await
        .expect("start");
    let app = App { url: format!("http://{}", server.addr), http: reqwest::Client::new() };

    // The request, and the backend lead's approval.
    let mut v = base("issues.labeled.0");
    v["issue"] = fake_github::issue_json(&gh.model().issues[&(REPO.to_string(), 5)]);
    assert_eq!(app.deliver("issues", "setup-1", &v.to_string()).await, 202);
    assert_eq!(app.deliver("issue_comment", "setup-2", &comment(&gh, (201, "bob"), "/approve")).await, 202);
    wait_for(&gh, "action_required").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let setup_calls = gh.calls().len();

    let mut lat = Vec::with_capacity(runs);
    for i in 0..runs {
        let approve = comment(&gh, (101, "alice"), "/approve");
        let t = Instant::now();
        assert_eq!(app.deliver("issue_comment", &format!("a-{i}"), &approve).await, 202);
        wait_for(&gh, "success").await;
        lat.push(t.elapsed());
        let cancel = comment(&gh, (101, "alice"), "/approve cancel");
        assert_eq!(app.deliver("issue_comment", &format!("c-{i}"), &cancel).await, 202);
        wait_for(&gh, "action_required").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;
    let calls = gh.call_counts();
    let per_cycle = (gh.calls().len() - setup_calls) as f64 / runs as f64;
    println!(
        "JSON {{\"runs\":{runs},\"p50_ms\":{:.2},\"p90_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2},\"setup_calls\":{setup_calls},\"calls_per_approve_and_cancel\":{per_cycle:.1}}}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    println!("calls by operation (setup + {runs} cycles): {calls:?}");
    server.shutdown().await.expect("shutdown");
}
