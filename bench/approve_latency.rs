//! Time from a `/approve` delivery to the deploy gate check run turning green on GitHub (the
//! fake GitHub of the tests), over N runs; the GitHub API calls the happy path costs; and the time
//! and calls of a `/recheck`.
//!
//!     cargo run --release --example approve_latency -- 200
//!     cargo run --release --example approve_latency -- 200 --database-url sqlite:///tmp/history.db \
//!         --background-rps 200 --spacing-ms 1000
//!
//! Each run: Alice's `/approve` arrives (signed, through the real router) → the worker evaluates
//! the gate → the relay sends the check run update → the fake GitHub records it. Then
//! `/approve cancel` closes the gate again (not timed). Durable; mutation spacing 0 unless
//! `--spacing-ms` says otherwise (GitHub asks for about a second between mutations of one
//! installation: the App's default `SHIPGATE_MUTATION_SPACING_MS` is 1000).
//!
//! `--database-url` runs on an existing database (a history from `bench/history.rs`: the request
//! here is installation 9000001's, repository id 9000007, so it meets none of the history's ids);
//! without it, a new SQLite file. `--background-rps N` sends N signed deliveries a second of
//! mixed real events (check runs, statuses, workflow runs, PR pushes, comments, pushes) for
//! commits and issues no request links, on 4 connections, for as long as the measurement runs.
//! `--rechecks M` times M `/recheck` comments (from delivery to done).

#[path = "../tests/fake_github/mod.rs"]
mod fake_github;
#[path = "signed.rs"]
mod signed;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shipgate::github::client::GithubConfig;
use shipgate::server::Options;

const REPO: &str = "acme/app";
const INST: i64 = 9_000_001;
const REPO_ID: i64 = 9_000_007;
const POLICY: &str = "roles:\n  pm: { users: [alice] }\n  backend-lead: { teams: [acme/backend-leads] }\nenvironments:\n  production:\n    approvals:\n      - role: pm\n      - role: backend-lead\n        when_paths: [\"apps/backend/**\"]\n    max_rollback_minutes: 5\n";

const SECRET: &str = "bench-secret";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/webhooks/{name}.json", env!("CARGO_MANIFEST_DIR")))
        .expect("fixture")
}

#[derive(Clone)]
struct App {
    url: String,
    http: reqwest::Client,
}

impl App {
    async fn deliver(&self, event: &str, id: &str, body: &str) -> u16 {
        signed::deliver(&self.http, &self.url, SECRET, event, id, body).await
    }
}

/// A random tag of this run: bodies and delivery ids of two runs on one database never meet (a
/// body seen before is a replay).
fn run_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| format!("{:x}", fastrand::u64(..)))
}

/// This run's request, PR and head (two runs on one database are two requests).
fn issue_no() -> i64 {
    1_000 + (u64::from_str_radix(run_tag(), 16).unwrap_or(0) % 1_000_000) as i64
}
fn pr_no() -> i64 {
    issue_no() + 2_000_000
}
fn sha() -> String {
    format!("{:040x}", u64::from_str_radix(run_tag(), 16).unwrap_or(1))
}
fn request_body() -> String {
    format!(
        "- Service: api\n- Environment: production\n- Reason: new endpoint\n- Rollback time: 3 min\n- Pull request: #{}\n- Rollback plan: revert and redeploy\n",
        pr_no()
    )
}

fn base(name: &str) -> Value {
    let mut v: Value = serde_json::from_str(&fixture(name)).expect("fixture");
    v["run"] = json!(run_tag());
    v["installation"] = json!({ "id": INST });
    v["repository"]["id"] = json!(REPO_ID);
    v["repository"]["full_name"] = json!(REPO);
    v
}

fn comment(gh: &fake_github::FakeGitHub, who: (i64, &str), text: &str) -> String {
    let id = gh.human_comment_by(REPO, issue_no(), who, text);
    let mut v = base("issue_comment.created.0");
    v["issue"] = fake_github::issue_json(&gh.model().issues[&(REPO.to_string(), issue_no())]);
    v["comment"]["id"] = json!(id);
    v["comment"]["body"] = json!(text);
    v["comment"]["user"] = json!({ "id": who.0, "login": who.1, "type": "User" });
    v.to_string()
}

fn conclusion(gh: &fake_github::FakeGitHub) -> String {
    gh.gate_checks(REPO, &sha()).first().map(|r| r.1.clone()).unwrap_or_default()
}

async fn wait_for(gh: &fake_github::FakeGitHub, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while conclusion(gh) != want {
        assert!(Instant::now() < deadline, "timed out waiting for {want}");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// One background delivery: real payloads about commits and issues no request links.
fn background(n: u64) -> (&'static str, String) {
    let sha = format!("{:040x}", 0xb000_0000_u64 + n);
    let mut v;
    let event = match n % 20 {
        0..=7 => {
            v = base("check_run.completed.0");
            v["check_run"]["head_sha"] = json!(sha);
            v["check_run"]["name"] = json!(format!("job-{}", n % 50));
            "check_run"
        }
        8..=11 => {
            v = base("status.none.0");
            v["sha"] = json!(sha);
            v["context"] = json!("ci/legacy");
            "status"
        }
        12..=13 => {
            v = base("workflow_run.completed.0");
            v["workflow_run"]["head_sha"] = json!(sha);
            v["workflow_run"]["head_branch"] = json!(format!("feature-{}", n % 97));
            v["workflow_run"]["conclusion"] = json!("success");
            v["workflow_run"]["id"] = json!(50_000_000 + n);
            "workflow_run"
        }
        14..=15 => {
            v = base("pull_request.synchronize.0");
            let pr = 10_000 + (n % 500) as i64;
            v["number"] = json!(pr);
            v["pull_request"]["number"] = json!(pr);
            v["pull_request"]["head"]["sha"] = json!(sha);
            "pull_request"
        }
        16..=18 => {
            v = base("issue_comment.created.0");
            let issue = 20_000 + (n % 500) as i64;
            v["issue"]["number"] = json!(issue);
            v["issue"]["labels"] = json!([]);
            v["issue"]["pull_request"] = Value::Null;
            v["comment"]["id"] = json!(90_000_000 + n);
            v["comment"]["body"] = json!(format!("looks fine to me ({n})"));
            "issue_comment"
        }
        _ => {
            v = base("push.none.0");
            v["ref"] = json!(format!("refs/heads/feature-{}", n % 97));
            v["after"] = json!(sha);
            "push"
        }
    };
    v["nonce"] = json!(n);
    (event, v.to_string())
}

/// Sends `rps` deliveries a second (on 4 connections) until `stop`; counts what was accepted.
fn spawn_background(
    app: &App,
    rps: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let lanes = 4u64;
    (0..lanes)
        .map(|lane| {
            let (app, stop, sent) = (app.clone(), stop.clone(), sent.clone());
            tokio::spawn(async move {
                let every = Duration::from_secs_f64(lanes as f64 / rps as f64);
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n = lane;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let (event, body) = background(n);
                    if app.deliver(event, &format!("bg-{n}-{}", run_tag()), &body).await / 100 == 2 {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    n += lanes;
                }
            })
        })
        .collect()
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let spacing: u64 = arg("--spacing-ms").and_then(|a| a.parse().ok()).unwrap_or(0);
    let bg_rps: u64 = arg("--background-rps").and_then(|a| a.parse().ok()).unwrap_or(0);
    let rechecks: usize = arg("--rechecks").and_then(|a| a.parse().ok()).unwrap_or(20);
    let gh = fake_github::FakeGitHub::start().await;
    gh.install(INST, &[REPO]);
    gh.team("acme", "backend-leads", &[(201, "bob")]);
    for (id, login) in [(101, "alice"), (201, "bob"), (401, "carol"), (301, "dave")] {
        gh.user(login, id);
        gh.permission(REPO, login, "write");
    }
    gh.file(REPO, ".github/shipgate.yml", POLICY);
    gh.pull(REPO, pr_no(), (301, "dave"), &sha(), &["apps/backend/api.rs"]);
    gh.ci(REPO, &sha(), "build", "completed", Some("success"));
    gh.issue(REPO, issue_no(), "Deploy api", &request_body());
    {
        let mut m = gh.model();
        let i = m.issues.get_mut(&(REPO.to_string(), issue_no())).expect("issue");
        i.labels.push("DEPLOYMENT_REQUEST".into());
        i.author_id = 401;
        i.author = "carol".into();
    }
    let dir = tempfile::tempdir().expect("dir");
    let url = arg("--database-url").unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let mut cfg = shipgate::config::Config::for_tests(&url, SECRET);
    cfg.github = Some(fake_github::app_credentials());
    cfg.github_api_url = gh.url.clone();
    cfg.worker = shipgate::config::WorkerConfig::default(); // production: 32 at once, wake-ups
    cfg.coalesce = Default::default();
    // The production pool sizes, or the environment's, read as `serve` reads them.
    let pools = std::env::vars().filter(|(k, _)| matches!(k.as_str(), "SHIPGATE_PG_POOL" | "SHIPGATE_SQLITE_READERS"));
    let pools: std::collections::HashMap<String, String> = pools.collect();
    let pools = shipgate::config::Config::from_lookup(|k| pools.get(k).cloned())
        .expect("SHIPGATE_PG_POOL, SHIPGATE_SQLITE_READERS");
    (cfg.pg_pool, cfg.sqlite_readers) = (pools.pg_pool, pools.sqlite_readers);
    let mut g = GithubConfig::new(&gh.url);
    g.mutation_spacing = Duration::from_millis(spacing);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = shipgate::server::Server::start(&cfg, listener, Options { github: Some(g), ..Options::default() })
        .await
        .expect("start");
    let app = App { url: format!("http://{}", server.addr), http: reqwest::Client::new() };

    // The request, and the backend lead's approval.
    let tag = run_tag();
    let mut v = base("issues.labeled.0");
    v["issue"] = fake_github::issue_json(&gh.model().issues[&(REPO.to_string(), issue_no())]);
    assert_eq!(app.deliver("issues", &format!("setup-1-{tag}"), &v.to_string()).await, 202);
    assert_eq!(
        app.deliver("issue_comment", &format!("setup-2-{tag}"), &comment(&gh, (201, "bob"), "/approve")).await,
        202
    );
    wait_for(&gh, "action_required").await;
    tokio::time::sleep(Duration::from_millis(300 + 2 * spacing)).await;
    let setup_calls = gh.calls().len();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let bg = if bg_rps > 0 { spawn_background(&app, bg_rps, stop.clone(), sent.clone()) } else { vec![] };
    if bg_rps > 0 {
        tokio::time::sleep(Duration::from_secs(3)).await; // the background load settles in
    }
    let bg_start = (Instant::now(), sent.load(Ordering::Relaxed));

    let mut lat = Vec::with_capacity(runs);
    let calls_before = gh.calls().len();
    for i in 0..runs {
        let approve = comment(&gh, (101, "alice"), "/approve");
        let t = Instant::now();
        assert_eq!(app.deliver("issue_comment", &format!("a-{i}-{tag}"), &approve).await, 202);
        wait_for(&gh, "success").await;
        lat.push(t.elapsed());
        let cancel = comment(&gh, (101, "alice"), "/approve cancel");
        assert_eq!(app.deliver("issue_comment", &format!("c-{i}-{tag}"), &cancel).await, 202);
        wait_for(&gh, "action_required").await;
    }
    let per_cycle = (gh.calls().len() - calls_before) as f64 / runs as f64;

    // Rechecks: from the delivery to its completion (the check run does not change).
    let mut rl = Vec::with_capacity(rechecks);
    let calls_before = gh.calls().len();
    for i in 0..rechecks {
        let id = format!("r-{i}-{tag}");
        let t = Instant::now();
        assert_eq!(app.deliver("issue_comment", &id, &comment(&gh, (101, "alice"), "/recheck")).await, 202);
        loop {
            let d = shipgate::store::deliveries::find(&server.db, &id).await.expect("find");
            if d.is_some_and(|d| d.state == "done") {
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        rl.push(t.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(300 + 2 * spacing)).await;
    let per_recheck = (gh.calls().len() - calls_before) as f64 / rechecks.max(1) as f64;
    stop.store(true, Ordering::Relaxed);
    for h in bg {
        let _ = h.await;
    }
    let bg_rate = (sent.load(Ordering::Relaxed) - bg_start.1) as f64 / bg_start.0.elapsed().as_secs_f64();
    let s = shipgate::store::deliveries::stats(&server.db).await.expect("stats");

    lat.sort();
    rl.sort();
    let pct = |v: &[Duration], p: f64| {
        if v.is_empty() { 0.0 } else { v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0 }
    };
    let calls = gh.call_counts();
    println!(
        "JSON {{\"backend\":\"{}\",\"runs\":{runs},\"spacing_ms\":{spacing},\"background_rps\":{bg_rate:.0},\"p50_ms\":{:.2},\"p90_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2},\"setup_calls\":{setup_calls},\"calls_per_approve_and_cancel\":{per_cycle:.1},\"recheck_p50_ms\":{:.2},\"recheck_p99_ms\":{:.2},\"calls_per_recheck\":{per_recheck:.1},\"inbox_pending_at_end\":{},\"process_peak_rss_mb\":{:.1}}}",
        server.db.backend().name(),
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        pct(&rl, 0.5),
        pct(&rl, 0.99),
        s.pending,
        vm_hwm_mb(),
    );
    println!("calls by operation (setup + {runs} cycles + {rechecks} rechecks): {calls:?}");
    server.shutdown().await.expect("shutdown");
}
