//! The soak under faults (issue 15): two `shipgate serve` replicas on one PostgreSQL, a steady
//! signed load of real scenario events, the tests' fake GitHub failing a share of all calls
//! (server errors, answers lost after the work, rate limits), one replica killed with `kill -9`
//! every `--kill-every` seconds and started again, PostgreSQL restarted once; then the checks.
//! bench/soak.sh starts the private PostgreSQL and runs this; the knobs are described there.
//!
//!     target/release/examples/soak --database-url postgres://postgres@127.0.0.1:PORT/soak \
//!         --bin target/release/shipgate --work /tmp/dir [--duration 600] [--kill-every 30] \
//!         [--error-rate 0.2] [--rps 30] [--active 24] [--step-ms 1500] [--installations 8] \
//!         [--spacing-ms 100] [--lease-secs 10] [--pg-restart-at 315 --pg-restart-cmd "…"] \
//!         [--drain-timeout 900] [--seed N] [--out table.md]
//!
//! The load: `--rps` deliveries a second, signed, each retried (same id, same body) until a
//! replica answers 2xx, as GitHub redelivers. `--active` scenarios run at once, one step every
//! `--step-ms` (±50%), each step sent once the one before was acknowledged:
//!
//! * a deployment request: the issue labelled `DEPLOYMENT_REQUEST`, its PR's CI (sometimes red
//!   first), sometimes a refused `/approve`, the backend lead's `/approve`, sometimes a push that
//!   makes it stale and a second `/approve`, sometimes `/hold` and `/unhold`, the PM's
//!   `/approve`, `/deploy`, then the deployment's statuses (in progress, success) once the App's
//!   deployment shows up on the fake GitHub;
//! * a red `main`: a failed workflow run (an incident issue), then a green one (closed);
//! * a red PR: a failed workflow run on a PR (its CI comment), then a green one (edited).
//!
//! The rest of each second is filled with deliveries about commits and issues nothing links
//! (check runs, statuses, pushes, comments), as a busy installation sends them.
//!
//! At the end (load stopped, the queues drained), it checks and prints as a table: every
//! acknowledged delivery stored and processed exactly once, nothing doubled on the fake GitHub,
//! `shipgate audit verify` intact, the kills and the restart done. Exit 0 when every check
//! passed, 1 when one failed, 2 when the harness itself failed.

#[path = "../tests/fake_github/mod.rs"]
mod fake_github;
#[path = "signed.rs"]
mod signed;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use fake_github::{FakeGitHub, JobSpec};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, oneshot};

const SECRET: &str = "test-webhook-secret-0123";
const AUDIT_KEY: &str = "soak-audit-key-0123456789-abcdefghijklmnop";
/// The workflow whose runs fail and pass (the `test` workflow of tests/ci.rs).
const WF: i64 = 2823525;

const ALICE: (i64, &str) = (101, "alice"); // pm
const BOB: (i64, &str) = (201, "bob"); // backend lead (team)
const CAROL: (i64, &str) = (401, "carol"); // requester
const DAVE: (i64, &str) = (301, "dave"); // PR author
const EVE: (i64, &str) = (501, "eve"); // no role (write access)
const OLIVIA: (i64, &str) = (601, "olivia"); // devops

const POLICY: &str = r#"
label: DEPLOYMENT_REQUEST
roles:
  pm:           { users: [alice] }
  backend-lead: { teams: [acme/backend-leads] }
  devops:       { users: [olivia] }
environments:
  production:
    approvals:
      - role: pm
      - role: backend-lead
        when_paths: ["apps/backend/**"]
    require_checks: all
    allow_self_approval: false
    max_rollback_minutes: 5
    deploy: deployment
  staging:
    approvals: []
ci:
  incident_branches: [main]
  debug_within: 1m
  escalate_to: devops
"#;

/// The state labels the App manages (`domain::flow::STATE_LABELS`): an issue carries one at most.
const STATE_LABELS: &[&str] =
    &["incomplete", "awaiting-approval", "blocked", "approved", "on-hold", "deploying", "deployed", "deploy-failed"];

// ---------------------------------------------------------------------------------------------
// Settings

struct Settings {
    database_url: String,
    bin: PathBuf,
    work: PathBuf,
    duration: Duration,
    kill_every: Duration,
    error_rate: f64,
    rps: f64,
    active: usize,
    step: Duration,
    installations: usize,
    spacing_ms: u64,
    lease_secs: u64,
    pg_restart_at: Duration,
    pg_restart_cmd: Option<String>,
    drain_timeout: Duration,
    give_up: Duration,
    max_in_flight: usize,
    seed: u64,
    rust_log: String,
    out: Option<PathBuf>,
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match arg(name) {
        Some(v) => v.parse().unwrap_or_else(|_| panic!("{name}: not a number: {v}")),
        None => default,
    }
}

impl Settings {
    fn from_args() -> Settings {
        let duration = Duration::from_secs(num("--duration", 600));
        let kill_every = Duration::from_secs(num("--kill-every", 30));
        Settings {
            database_url: arg("--database-url").expect("--database-url"),
            bin: arg("--bin").unwrap_or_else(|| "target/release/shipgate".into()).into(),
            work: arg("--work").unwrap_or_else(|| std::env::temp_dir().display().to_string()).into(),
            duration,
            kill_every,
            error_rate: num("--error-rate", 0.2),
            rps: num("--rps", 30.0),
            active: num("--active", 24),
            step: Duration::from_millis(num("--step-ms", 1500)),
            installations: num("--installations", 8),
            spacing_ms: num("--spacing-ms", 100),
            lease_secs: num("--lease-secs", 10),
            pg_restart_at: Duration::from_secs(num(
                "--pg-restart-at",
                duration.as_secs() / 2 + kill_every.as_secs() / 2,
            )),
            pg_restart_cmd: arg("--pg-restart-cmd").filter(|c| !c.is_empty()),
            drain_timeout: Duration::from_secs(num("--drain-timeout", 900)),
            give_up: Duration::from_secs(num("--give-up", 600)),
            max_in_flight: num("--max-in-flight", 256),
            seed: num("--seed", fastrand::u64(..)),
            rust_log: arg("--rust-log").unwrap_or_else(|| "warn,shipgate::github=error,octocrab=off".into()),
            out: arg("--out").map(PathBuf::from),
        }
    }
}

fn log(start: Instant, msg: impl AsRef<str>) {
    eprintln!("[soak {:>6.1}s] {}", start.elapsed().as_secs_f64(), msg.as_ref());
}

// ---------------------------------------------------------------------------------------------
// The fake GitHub's world

#[derive(Clone, Debug)]
struct Repo {
    name: String,
    id: i64,
    inst: i64,
}

fn repos(n: usize) -> Vec<Repo> {
    (0..n).map(|k| Repo { name: format!("acme/app{k}"), id: 700_000 + k as i64, inst: 100 + k as i64 }).collect()
}

fn setup_world(gh: &FakeGitHub, repos: &[Repo]) {
    gh.team("acme", "backend-leads", &[BOB]);
    for who in [ALICE, BOB, CAROL, DAVE, EVE, OLIVIA] {
        gh.user(who.1, who.0);
    }
    for r in repos {
        gh.install(r.inst, &[&r.name]);
        gh.file(&r.name, ".github/shipgate.yml", POLICY);
        for who in [ALICE, BOB, CAROL, DAVE, EVE, OLIVIA] {
            gh.permission(&r.name, who.1, "write");
        }
    }
}

const FIXTURES: &[&str] = &[
    "issues.labeled.0",
    "issue_comment.created.0",
    "check_run.completed.0",
    "pull_request.synchronize.0",
    "workflow_run.completed.failure.0",
    "workflow_run.completed.2",
    "workflow_run.completed.0",
    "deployment_status.created.0",
    "status.none.0",
    "push.none.0",
];

fn fixture(name: &str) -> &'static Value {
    static ALL: OnceLock<HashMap<&'static str, Value>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|n| {
                let path = format!("{}/tests/fixtures/webhooks/{n}.json", env!("CARGO_MANIFEST_DIR"));
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                (*n, serde_json::from_str(&text).expect("fixture JSON"))
            })
            .collect()
    });
    all.get(name).unwrap_or_else(|| panic!("fixture {name} not loaded"))
}

/// A corpus payload re-pointed at `repo`.
fn base(repo: &Repo, name: &str) -> Value {
    let mut v = fixture(name).clone();
    v["installation"] = json!({ "id": repo.inst });
    v["repository"]["id"] = json!(repo.id);
    v["repository"]["full_name"] = json!(repo.name);
    v["repository"]["name"] = json!(repo.name.split('/').nth(1).unwrap_or("app"));
    v["repository"]["owner"]["login"] = json!("acme");
    v["repository"]["default_branch"] = json!("main");
    v
}

fn user(who: (i64, &str)) -> Value {
    json!({ "id": who.0, "login": who.1, "type": "User" })
}

fn request_body(pr: i64) -> String {
    format!(
        "CHANGE REQUEST:\n- Service/component: api\n- Environment: production\n- Reason: new endpoint\n\nIMPACT ANALYSIS:\n\
         - Downtime: none\n- Rollback time: 3 min\n- Dependencies: none\n- Data migration: none\n\nIMPLEMENTATION:\n\
         1. Code changes #{pr}\n4. Deployment steps: merge and deploy\n5. Verification: smoke tests\n\
         6. Rollback plan: revert the PR and redeploy\n"
    )
}

fn rand_sha(rng: &mut fastrand::Rng) -> String {
    format!("{:016x}{:016x}{:08x}", rng.u64(..), rng.u64(..), rng.u32(..))
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms / 1000 * 1000)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    shipgate::clock::Clock::system().now_ms()
}

/// The next free number of `repo` (issues and pull requests share them, as on GitHub).
fn next_number(m: &fake_github::Model, repo: &str) -> i64 {
    let issues = m.issues.keys().filter(|(r, _)| r == repo).map(|(_, n)| *n);
    let pulls = m.pulls.keys().filter(|(r, _)| r == repo).map(|(_, n)| *n);
    issues.chain(pulls).max().unwrap_or(99).max(99) + 1
}

/// A new pull request of `repo` at `sha` changing `files` (also an issue, as on GitHub).
fn open_pull(gh: &FakeGitHub, repo: &Repo, sha: &str, files: &[&str]) -> i64 {
    let mut m = gh.model();
    let n = next_number(&m, &repo.name);
    m.issues.insert(
        (repo.name.clone(), n),
        fake_github::Issue {
            number: n,
            title: "A change".into(),
            state: "open".into(),
            author_id: DAVE.0,
            author: DAVE.1.into(),
            ..Default::default()
        },
    );
    m.pulls.insert(
        (repo.name.clone(), n),
        fake_github::Pull {
            number: n,
            head_sha: sha.into(),
            author_id: DAVE.0,
            author: DAVE.1.into(),
            state: "open".into(),
            files: files.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        },
    );
    n
}

fn lint_fails() -> [JobSpec<'static>; 2] {
    [
        ("lint", "failure", &[("Set up job", "success"), ("Run eslint", "failure")]),
        ("unit", "success", &[("Run jest", "success")]),
    ]
}

/// A completed workflow run of `WF`.
struct Run {
    id: i64,
    conclusion: &'static str,
    sha: String,
    branch: String,
    event: &'static str,
    prs: Vec<i64>,
}

fn run_payload(repo: &Repo, r: &Run) -> Value {
    let mut v = base(repo, "workflow_run.completed.failure.0");
    let pr_template = fixture("workflow_run.completed.2")["workflow_run"]["pull_requests"][0].clone();
    let now = now_ms();
    v["workflow"]["id"] = json!(WF);
    v["workflow"]["name"] = json!("test");
    let wr = &mut v["workflow_run"];
    wr["id"] = json!(r.id);
    wr["run_attempt"] = json!(1);
    wr["run_number"] = json!(r.id % 100_000);
    wr["workflow_id"] = json!(WF);
    wr["conclusion"] = json!(r.conclusion);
    wr["status"] = json!("completed");
    wr["head_sha"] = json!(r.sha);
    wr["head_branch"] = json!(r.branch);
    wr["event"] = json!(r.event);
    wr["html_url"] = json!(format!("https://github.com/{}/actions/runs/{}", repo.name, r.id));
    wr["run_started_at"] = json!(rfc3339(now - 5 * 60_000));
    wr["updated_at"] = json!(rfc3339(now));
    wr["repository"]["id"] = json!(repo.id);
    wr["repository"]["full_name"] = json!(repo.name);
    wr["head_repository"]["id"] = json!(repo.id);
    wr["head_repository"]["full_name"] = json!(repo.name);
    wr["head_repository"]["owner"]["login"] = json!("acme");
    wr["pull_requests"] = Value::Array(
        r.prs
            .iter()
            .map(|n| {
                let mut p = pr_template.clone();
                p["number"] = json!(n);
                p["head"]["sha"] = json!(r.sha);
                p["head"]["ref"] = json!(r.branch);
                p["head"]["repo"]["id"] = json!(repo.id);
                p["base"]["repo"]["id"] = json!(repo.id);
                p
            })
            .collect(),
    );
    v
}

// ---------------------------------------------------------------------------------------------
// The load: deliveries, acknowledgements

struct Job {
    event: &'static str,
    id: String,
    body: String,
    /// Told once the delivery was acknowledged (or given up).
    done: Option<oneshot::Sender<bool>>,
}

#[derive(Default)]
struct Load {
    sent: Mutex<HashSet<String>>,
    /// Acknowledged ids, with what the intake said (`stored`, `duplicate`, `replay`).
    acked: Mutex<HashMap<String, String>>,
    given_up: Mutex<Vec<String>>,
    posts: AtomicU64,
    /// Answers other than 2xx (and no answer at all), by kind.
    refused: Mutex<BTreeMap<String, u64>>,
    scenario_deliveries: AtomicU64,
    filler_deliveries: AtomicU64,
    /// Scenarios started and finished, by kind.
    scenarios: Mutex<BTreeMap<&'static str, (u64, u64)>>,
    deploys_seen: AtomicU64,
    deploys_missed: AtomicU64,
    /// Ticks at which no sender was free (the load fell behind `--rps`).
    late: AtomicU64,
}

/// The replicas' ports that take deliveries now (a killed one is taken out first).
type Up = Arc<Mutex<Vec<u16>>>;

async fn send(job: Job, up: Up, load: Arc<Load>, http: reqwest::Client, give_up: Duration) {
    load.sent.lock().expect("sent").insert(job.id.clone());
    let started = Instant::now();
    let mut attempt = 0usize;
    let salt = job.id.bytes().fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize));
    let acked = loop {
        let port = {
            let up = up.lock().expect("up");
            (!up.is_empty()).then(|| up[(salt + attempt) % up.len()])
        };
        if let Some(port) = port {
            load.posts.fetch_add(1, Ordering::Relaxed);
            let url = format!("http://127.0.0.1:{port}");
            match signed::deliver_answer(&http, &url, SECRET, job.event, &job.id, &job.body).await {
                Ok((s, text)) if (200..300).contains(&s) => {
                    load.acked.lock().expect("acked").insert(job.id.clone(), text.trim().to_string());
                    break true;
                }
                Ok((s, _)) => *load.refused.lock().expect("refused").entry(format!("HTTP {s}")).or_default() += 1,
                Err(e) => {
                    let kind = if e.is_connect() {
                        "no connection"
                    } else if e.is_timeout() {
                        "timed out"
                    } else {
                        "connection lost"
                    };
                    *load.refused.lock().expect("refused").entry(kind.into()).or_default() += 1;
                }
            }
        }
        attempt += 1;
        if started.elapsed() > give_up {
            load.given_up.lock().expect("given up").push(job.id.clone());
            break false;
        }
        // GitHub redelivers later; a quicker retry keeps the soak's numbers of one run.
        let wait = (100u64 << attempt.min(5)).min(3000);
        tokio::time::sleep(Duration::from_millis(wait / 2 + fastrand::u64(..wait / 2))).await;
    };
    if let Some(done) = job.done {
        let _ = done.send(acked);
    }
}

static DELIVERY_N: AtomicU64 = AtomicU64::new(0);

fn delivery_id(tag: &str) -> String {
    format!("soak-{tag}-{}", DELIVERY_N.fetch_add(1, Ordering::Relaxed))
}

/// One filler delivery: real payloads about commits and issues no request links.
fn filler(repo: &Repo, n: u64) -> (&'static str, Value) {
    let sha = format!("{:040x}", 0xf000_0000_0000_u64 + n);
    let mut v;
    let event = match n % 10 {
        0..=3 => {
            v = base(repo, "check_run.completed.0");
            v["check_run"]["head_sha"] = json!(sha);
            v["check_run"]["name"] = json!(format!("job-{}", n % 50));
            "check_run"
        }
        4 | 5 => {
            v = base(repo, "status.none.0");
            v["sha"] = json!(sha);
            v["context"] = json!("ci/legacy");
            "status"
        }
        6 => {
            v = base(repo, "workflow_run.completed.0");
            v["workflow_run"]["head_sha"] = json!(sha);
            v["workflow_run"]["head_branch"] = json!(format!("feature-{}", n % 97));
            v["workflow_run"]["conclusion"] = json!("success");
            v["workflow_run"]["id"] = json!(50_000_000 + n);
            v["workflow_run"]["pull_requests"] = json!([]);
            "workflow_run"
        }
        7 => {
            v = base(repo, "pull_request.synchronize.0");
            let pr = 800_000 + (n % 500) as i64;
            v["number"] = json!(pr);
            v["pull_request"]["number"] = json!(pr);
            v["pull_request"]["head"]["sha"] = json!(sha);
            "pull_request"
        }
        8 => {
            v = base(repo, "issue_comment.created.0");
            let issue = 900_000 + (n % 500) as i64;
            v["issue"]["number"] = json!(issue);
            v["issue"]["labels"] = json!([]);
            v["issue"]["pull_request"] = Value::Null;
            v["comment"]["id"] = json!(90_000_000 + n);
            v["comment"]["body"] = json!(format!("looks fine to me ({n})"));
            "issue_comment"
        }
        _ => {
            v = base(repo, "push.none.0");
            v["ref"] = json!(format!("refs/heads/feature-{}", n % 97));
            v["after"] = json!(sha);
            "push"
        }
    };
    (event, v)
}

// ---------------------------------------------------------------------------------------------
// Scenarios

struct Ctx {
    gh: FakeGitHub,
    repos: Vec<Repo>,
    jobs: mpsc::Sender<Job>,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
    step: Duration,
    tag: String,
}

static RUN_IDS: AtomicI64 = AtomicI64::new(10_000_000);
static STATUS_IDS: AtomicI64 = AtomicI64::new(20_000_000);

/// Stops a scenario where it is (the load is over).
struct Stopped;

type Step = Result<(), Stopped>;

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sends one delivery and waits until it was acknowledged.
    async fn deliver(&self, event: &'static str, v: Value) -> Step {
        if self.stopped() {
            return Err(Stopped);
        }
        let (tx, rx) = oneshot::channel();
        let mut v = v;
        // Every body unique: the intake takes a body it has seen for a replay.
        v["soak_nonce"] = json!(DELIVERY_N.load(Ordering::Relaxed));
        let job = Job { event, id: delivery_id(&self.tag), body: v.to_string(), done: Some(tx) };
        self.load.scenario_deliveries.fetch_add(1, Ordering::Relaxed);
        self.jobs.send(job).await.map_err(|_| Stopped)?;
        match rx.await {
            Ok(true) => Ok(()),
            _ => Err(Stopped),
        }
    }

    /// The pause between two steps of a scenario (±50%).
    async fn gap(&self, rng: &mut fastrand::Rng) -> Step {
        let ms = self.step.as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(ms / 2 + rng.u64(..ms.max(1)))).await;
        if self.stopped() { Err(Stopped) } else { Ok(()) }
    }

    fn issue_json(&self, repo: &Repo, issue: i64) -> Value {
        fake_github::issue_json(&self.gh.model().issues[&(repo.name.clone(), issue)])
    }

    async fn comment(&self, repo: &Repo, issue: i64, who: (i64, &str), text: &str) -> Step {
        if self.stopped() {
            return Err(Stopped);
        }
        let id = self.gh.human_comment_by(&repo.name, issue, who, text);
        let mut v = base(repo, "issue_comment.created.0");
        v["issue"] = self.issue_json(repo, issue);
        v["comment"]["id"] = json!(id);
        v["comment"]["body"] = json!(text);
        v["comment"]["user"] = user(who);
        v["sender"] = user(who);
        self.deliver("issue_comment", v).await
    }

    async fn check_run(&self, repo: &Repo, sha: &str, conclusion: &str) -> Step {
        if self.stopped() {
            return Err(Stopped);
        }
        self.gh.ci(&repo.name, sha, "build", "completed", Some(conclusion));
        let mut v = base(repo, "check_run.completed.0");
        v["check_run"]["head_sha"] = json!(sha);
        v["check_run"]["name"] = json!("build");
        v["check_run"]["status"] = json!("completed");
        v["check_run"]["conclusion"] = json!(conclusion);
        self.deliver("check_run", v).await
    }

    async fn deployment_status(&self, repo: &Repo, d: &Value, state: &str) -> Step {
        let mut v = base(repo, "deployment_status.created.0");
        v["deployment_status"]["id"] = json!(STATUS_IDS.fetch_add(1, Ordering::Relaxed));
        v["deployment"]["id"] = d["id"].clone();
        v["deployment"]["sha"] = d["sha"].clone();
        v["deployment"]["environment"] = json!("production");
        v["deployment"]["payload"] = d["payload"].clone();
        v["deployment"]["created_at"] = json!(rfc3339(now_ms()));
        // The team's pipeline deploys (tests/deploy.rs): a GitHub Actions workflow.
        v["deployment"]["creator"] = fake_github::actions_creator();
        v["deployment"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
        v["deployment_status"]["creator"] = fake_github::actions_creator();
        v["deployment_status"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
        v["deployment_status"]["state"] = json!(state);
        v["deployment_status"]["environment"] = json!("production");
        v["deployment_status"]["created_at"] = json!(rfc3339(now_ms()));
        self.deliver("deployment_status", v).await
    }

    /// The deployment the App made for request `issue`, once it shows up.
    async fn wait_for_deployment(&self, repo: &Repo, issue: i64, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && !self.stopped() {
            let found = self.gh.model().deployments.iter().find_map(|(r, d)| {
                (*r == repo.name && d["payload"]["shipgate_request"].as_i64() == Some(issue)).then(|| d.clone())
            });
            if found.is_some() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    }

    /// A deployment request from its label to its deployment's success.
    async fn request(&self, repo: &Repo, rng: &mut fastrand::Rng) -> Step {
        let mut sha = rand_sha(rng);
        let pr = open_pull(&self.gh, repo, &sha, &["apps/backend/api.rs"]);
        let issue = {
            let mut m = self.gh.model();
            let n = next_number(&m, &repo.name);
            m.issues.insert(
                (repo.name.clone(), n),
                fake_github::Issue {
                    number: n,
                    title: "Deploy api".into(),
                    body: request_body(pr),
                    state: "open".into(),
                    labels: vec!["DEPLOYMENT_REQUEST".into()],
                    author_id: CAROL.0,
                    author: CAROL.1.into(),
                    ..Default::default()
                },
            );
            n
        };
        self.gh.ci(&repo.name, &sha, "build", "in_progress", None);
        let mut v = base(repo, "issues.labeled.0");
        v["action"] = json!("labeled");
        v["issue"] = self.issue_json(repo, issue);
        v["label"] = json!({ "name": "DEPLOYMENT_REQUEST" });
        v["sender"] = user(CAROL);
        self.deliver("issues", v).await?;
        self.gap(rng).await?;
        if rng.u8(..100) < 30 {
            self.check_run(repo, &sha, "failure").await?;
            self.gap(rng).await?;
        }
        self.check_run(repo, &sha, "success").await?;
        self.gap(rng).await?;
        if rng.u8(..100) < 25 {
            self.comment(repo, issue, EVE, "/approve").await?; // refused: no role
            self.gap(rng).await?;
        }
        self.comment(repo, issue, BOB, "Looks good.\n/approve").await?;
        self.gap(rng).await?;
        if rng.u8(..100) < 20 {
            // A new push: the approval was given for the old head.
            sha = rand_sha(rng);
            self.gh.ci(&repo.name, &sha, "build", "in_progress", None);
            self.gh.push_to_pull(&repo.name, pr, &sha);
            let mut v = base(repo, "pull_request.synchronize.0");
            v["number"] = json!(pr);
            v["pull_request"]["number"] = json!(pr);
            v["pull_request"]["head"]["sha"] = json!(sha);
            self.deliver("pull_request", v).await?;
            self.gap(rng).await?;
            self.check_run(repo, &sha, "success").await?;
            self.gap(rng).await?;
            self.comment(repo, issue, BOB, "/approve").await?;
            self.gap(rng).await?;
        }
        if rng.u8(..100) < 20 {
            self.comment(repo, issue, EVE, "/hold").await?;
            self.gap(rng).await?;
            self.comment(repo, issue, EVE, "/unhold").await?;
            self.gap(rng).await?;
        }
        self.comment(repo, issue, ALICE, "/approve production").await?;
        self.gap(rng).await?;
        self.comment(repo, issue, ALICE, "/deploy").await?;
        match self.wait_for_deployment(repo, issue, Duration::from_secs(90)).await {
            Some(d) => {
                self.load.deploys_seen.fetch_add(1, Ordering::Relaxed);
                self.gap(rng).await?;
                self.deployment_status(repo, &d, "in_progress").await?;
                self.gap(rng).await?;
                self.deployment_status(repo, &d, "success").await?;
            }
            None if self.stopped() => return Err(Stopped),
            None => {
                self.load.deploys_missed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// `main` goes red (an incident issue), then green again (closed).
    async fn red_main(&self, repo: &Repo, rng: &mut fastrand::Rng) -> Step {
        let id = RUN_IDS.fetch_add(1, Ordering::Relaxed);
        self.gh.run_jobs(&repo.name, id, 1, &lint_fails());
        let red =
            Run { id, conclusion: "failure", sha: rand_sha(rng), branch: "main".into(), event: "push", prs: vec![] };
        self.deliver("workflow_run", run_payload(repo, &red)).await?;
        self.gap(rng).await?;
        self.gap(rng).await?;
        let id = RUN_IDS.fetch_add(1, Ordering::Relaxed);
        let green = Run { id, conclusion: "success", sha: rand_sha(rng), ..red };
        self.deliver("workflow_run", run_payload(repo, &green)).await
    }

    /// A PR's CI fails (its CI comment), then passes on a new push (the comment edited).
    async fn red_pr(&self, repo: &Repo, rng: &mut fastrand::Rng) -> Step {
        let sha = rand_sha(rng);
        let pr = open_pull(&self.gh, repo, &sha, &["src/a.rs"]);
        let id = RUN_IDS.fetch_add(1, Ordering::Relaxed);
        self.gh.run_jobs(&repo.name, id, 1, &lint_fails());
        let branch = format!("feature-{pr}");
        let red = Run { id, conclusion: "failure", sha, branch, event: "pull_request", prs: vec![pr] };
        self.deliver("workflow_run", run_payload(repo, &red)).await?;
        self.gap(rng).await?;
        let sha = rand_sha(rng);
        self.gh.push_to_pull(&repo.name, pr, &sha);
        let id = RUN_IDS.fetch_add(1, Ordering::Relaxed);
        let green = Run { id, conclusion: "success", sha, ..red };
        self.deliver("workflow_run", run_payload(repo, &green)).await
    }
}

async fn scenario_lane(ctx: Arc<Ctx>, lane: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut k = lane;
    // Lanes start spread over the first steps, not all at once.
    tokio::time::sleep(Duration::from_millis(rng.u64(..ctx.step.as_millis() as u64 * 2 + 1))).await;
    while !ctx.stopped() {
        let repo = ctx.repos[k % ctx.repos.len()].clone();
        k += 1;
        let roll = rng.u8(..100);
        let kind = match roll {
            0..=54 => "deployment request",
            55..=74 => "red main, then green",
            _ => "red PR, then green",
        };
        ctx.load.scenarios.lock().expect("scenarios").entry(kind).or_default().0 += 1;
        let r = match roll {
            0..=54 => ctx.request(&repo, &mut rng).await,
            55..=74 => ctx.red_main(&repo, &mut rng).await,
            _ => ctx.red_pr(&repo, &mut rng).await,
        };
        if r.is_ok() {
            ctx.load.scenarios.lock().expect("scenarios").entry(kind).or_default().1 += 1;
            if ctx.gap(&mut rng).await.is_err() {
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Replicas and PostgreSQL

struct Replica {
    name: &'static str,
    port: u16,
    child: Option<tokio::process::Child>,
    log: PathBuf,
    starts: u32,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Launch {
    bin: PathBuf,
    database_url: String,
    github_url: String,
    key_path: String,
    spacing_ms: u64,
    lease_secs: u64,
    rust_log: String,
}

impl Launch {
    /// Starts `r` and waits until it is ready; tries again (the database may be restarting).
    async fn start(&self, r: &mut Replica, within: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
        let mut tries = 0;
        while t.elapsed() < within {
            tries += 1;
            let log = std::fs::OpenOptions::new().create(true).append(true).open(&r.log).map_err(|e| e.to_string())?;
            let log2 = log.try_clone().map_err(|e| e.to_string())?;
            let mut child = tokio::process::Command::new(&self.bin)
                .arg("serve")
                .env("SHIPGATE_LISTEN", format!("127.0.0.1:{}", r.port))
                .env("DATABASE_URL", &self.database_url)
                .env("GITHUB_WEBHOOK_SECRET", SECRET)
                .env("GITHUB_APP_ID", fake_github::APP_ID)
                .env("GITHUB_PRIVATE_KEY_PATH", &self.key_path)
                .env("GITHUB_API_URL", &self.github_url)
                .env("SHIPGATE_AUDIT_KEY", AUDIT_KEY)
                .env("SHIPGATE_MUTATION_SPACING_MS", self.spacing_ms.to_string())
                .env("SHIPGATE_LEASE_SECS", self.lease_secs.to_string())
                .env("RUST_LOG", &self.rust_log)
                .env("HOSTNAME", r.name)
                .env_remove("SHIPGATE_AUDIT_KEY_RETIRED")
                .env_remove("GITHUB_PRIVATE_KEY")
                .stdout(log)
                .stderr(log2)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
            let ready_by = Instant::now() + Duration::from_secs(20);
            while Instant::now() < ready_by {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited (the database was down at start-up, say)
                }
                if let Ok(resp) = http.get(format!("http://127.0.0.1:{}/readyz", r.port)).send().await
                    && resp.status().is_success()
                {
                    r.child = Some(child);
                    r.starts += 1;
                    return Ok(t.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!("replica {} not ready after {tries} tries in {within:?}", r.name))
    }
}

/// `kill -9`, then reaps it.
async fn kill_9(r: &mut Replica) {
    if let Some(mut child) = r.child.take() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = child.wait().await;
    }
}

/// SIGTERM (a graceful stop), then `kill -9` after `grace`.
async fn stop_gracefully(r: &mut Replica, grace: Duration) {
    if let Some(mut child) = r.child.take() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

#[derive(Default)]
struct Chaos {
    kills: Vec<(f64, &'static str, f64)>, // (at s, replica, back after s)
    restart_failures: Vec<String>,
    pg_restarts: Vec<(f64, f64, bool, String)>, // (at s, took s, ok, output)
}

// ---------------------------------------------------------------------------------------------
// Checks

struct Check {
    what: String,
    expected: String,
    observed: String,
    ok: bool,
}

fn check(what: impl Into<String>, expected: impl Into<String>, observed: impl Into<String>, ok: bool) -> Check {
    Check { what: what.into(), expected: expected.into(), observed: observed.into(), ok }
}

/// `<!-- shipgate:MARKER -->` in a body (the last one: the App appends its marker).
fn marker(body: &str) -> Option<String> {
    let at = body.rfind("<!-- shipgate:")?;
    let rest = &body[at + "<!-- shipgate:".len()..];
    rest.find(" -->").map(|end| rest[..end].to_string())
}

fn dupes<K: Ord + Clone>(keys: impl Iterator<Item = K>) -> Vec<(K, usize)> {
    let mut counts: BTreeMap<K, usize> = BTreeMap::new();
    for k in keys {
        *counts.entry(k).or_default() += 1;
    }
    counts.into_iter().filter(|(_, n)| *n > 1).collect()
}

fn sample<T: std::fmt::Debug>(v: &[T]) -> String {
    if v.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = v.iter().take(3).map(|x| format!("{x:?}")).collect();
    format!(" e.g. {}", shown.join(", "))
}

async fn drain(db: &shipgate::store::Db, timeout: Duration, start: Instant) -> Result<Duration, String> {
    let t = Instant::now();
    let mut quiet = 0;
    let mut last_report = Instant::now();
    loop {
        let d = shipgate::store::deliveries::stats(db).await.map_err(|e| e.to_string());
        let o = shipgate::store::outbox::stats(db).await.map_err(|e| e.to_string());
        let r = shipgate::store::rechecks::count(db).await.map_err(|e| e.to_string());
        match (&d, &o, &r) {
            (Ok(d), Ok(o), Ok(r)) => {
                if d.pending + d.running + o.pending + o.running + r == 0 {
                    quiet += 1;
                    if quiet >= 3 {
                        return Ok(t.elapsed());
                    }
                } else {
                    quiet = 0;
                }
                if last_report.elapsed() > Duration::from_secs(15) {
                    last_report = Instant::now();
                    log(
                        start,
                        format!(
                            "draining: inbox {} pending, {} running; outbox {} pending, {} running; {} evaluations due",
                            d.pending, d.running, o.pending, o.running, r
                        ),
                    );
                }
            }
            _ => log(start, format!("draining: cannot read the queues: {d:?} {o:?} {r:?}")),
        }
        if t.elapsed() > timeout {
            return Err(format!("not drained in {timeout:?}: inbox {d:?}, outbox {o:?}, due {r:?}"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn db_checks(db: &shipgate::store::Db, load: &Load, out: &mut Vec<Check>, info: &mut Vec<String>) {
    let pool = db.pool();
    let rows: Vec<(i64, String, String, String)> =
        sqlx::query_as("SELECT seq, id, state, subject FROM deliveries").fetch_all(pool).await.expect("deliveries");
    let acked = load.acked.lock().expect("acked").clone();
    let sent = load.sent.lock().expect("sent").clone();
    let given_up = load.given_up.lock().expect("given up").clone();
    let ours: Vec<&(i64, String, String, String)> = rows.iter().filter(|r| r.1.starts_with("soak-")).collect();
    let internal = rows.len() - ours.len();
    let stored: HashSet<&str> = ours.iter().map(|r| r.1.as_str()).collect();
    let lost: Vec<&String> = acked.keys().filter(|id| !stored.contains(id.as_str())).collect();
    let from_nowhere: Vec<&str> = stored.iter().filter(|id| !sent.contains(**id)).copied().collect();
    let replays = acked.values().filter(|o| o.as_str() == "replay").count();
    let duplicates = acked.values().filter(|o| o.as_str() == "duplicate").count();
    out.push(check(
        "deliveries acknowledged (2xx) / sent",
        "all sent acknowledged",
        format!(
            "{} / {} ({} given up; answered `stored` {}, `duplicate` {} (a retry after a lost answer), `replay` {})",
            acked.len(),
            sent.len(),
            given_up.len(),
            acked.len() - replays - duplicates,
            duplicates,
            replays
        ),
        given_up.is_empty() && acked.len() == sent.len() && replays == 0,
    ));
    out.push(check(
        "acknowledged deliveries stored",
        format!("{}", acked.len()),
        format!("{} stored, {} lost{}", acked.len() - lost.len(), lost.len(), sample(&lost)),
        lost.is_empty(),
    ));
    out.push(check(
        "stored deliveries that were never sent",
        "0",
        format!("{}{}", from_nowhere.len(), sample(&from_nowhere)),
        from_nowhere.is_empty(),
    ));
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        *by_state.entry(r.2.as_str()).or_default() += 1;
    }
    let done = by_state.get("done").copied().unwrap_or(0);
    out.push(check(
        "deliveries processed (`state = 'done'`), ours + the App's own",
        format!("{} ({} + {internal})", rows.len(), ours.len()),
        format!("{done}; by state {by_state:?}"),
        done == rows.len(),
    ));
    let completions: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT d.seq, (SELECT COUNT(*) FROM delivery_attempts a WHERE a.delivery_seq = d.seq AND a.outcome <> 'error') \
         FROM deliveries d",
    )
    .fetch_all(pool)
    .await
    .expect("completions");
    let none: Vec<i64> = completions.iter().filter(|(_, n)| *n == 0).map(|(s, _)| *s).collect();
    let twice: Vec<(i64, i64)> = completions.iter().filter(|(_, n)| *n > 1).copied().collect();
    out.push(check(
        "deliveries with exactly one successful attempt (`delivery_attempts`)",
        format!("{}", rows.len()),
        format!(
            "{}; none {}{}; more than one {}{}",
            completions.len() - none.len() - twice.len(),
            none.len(),
            sample(&none),
            twice.len(),
            sample(&twice)
        ),
        none.is_empty() && twice.is_empty(),
    ));
    // Two attempts of one subject never overlap in time (one at a time, across replicas).
    let attempts: Vec<(String, i64, i64, String)> = sqlx::query_as(
        "SELECT d.subject, a.started_at, a.finished_at, a.worker FROM delivery_attempts a \
         JOIN deliveries d ON d.seq = a.delivery_seq ORDER BY d.subject, a.started_at",
    )
    .fetch_all(pool)
    .await
    .expect("attempts");
    let overlaps: Vec<String> = attempts
        .windows(2)
        .filter(|w| w[0].0 == w[1].0 && w[1].1 < w[0].2)
        .map(|w| format!("{} ({} then {})", w[0].0, w[0].3, w[1].3))
        .collect();
    out.push(check(
        "attempts of one subject that overlapped in time",
        "0",
        format!("{}{}", overlaps.len(), sample(&overlaps)),
        overlaps.is_empty(),
    ));
    let failed: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM delivery_attempts WHERE outcome = 'error'")
        .fetch_one(pool)
        .await
        .expect("failed attempts");
    let workers: (i64,) =
        sqlx::query_as("SELECT COUNT(DISTINCT worker) FROM delivery_attempts").fetch_one(pool).await.expect("workers");
    info.push(format!(
        "{} failed delivery attempts (retried), by {} worker processes (each start of a replica is one)",
        failed.0, workers.0
    ));
    let outbox: Vec<(String, i64)> = sqlx::query_as("SELECT state, COUNT(*) FROM outbox GROUP BY state ORDER BY state")
        .fetch_all(pool)
        .await
        .expect("outbox");
    let parked = outbox.iter().find(|(s, _)| s == "parked").map_or(0, |(_, n)| *n);
    let open = outbox.iter().filter(|(s, _)| s == "pending" || s == "running").map(|(_, n)| *n).sum::<i64>();
    let parked_errors: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT kind, last_error FROM outbox WHERE state = 'parked' ORDER BY seq LIMIT 3")
            .fetch_all(pool)
            .await
            .expect("parked");
    out.push(check(
        "actions (outbox) parked or left unsent",
        "0",
        format!("{parked} parked, {open} open; by state {outbox:?}{}", sample(&parked_errors)),
        parked == 0 && open == 0,
    ));
    let outbox_attempts: (Option<i64>,) = sqlx::query_as("SELECT CAST(SUM(attempts) AS BIGINT) FROM outbox")
        .fetch_one(pool)
        .await
        .expect("outbox attempts");
    info.push(format!("{} attempts to send the outbox's actions", outbox_attempts.0.unwrap_or(0)));
}

fn github_checks(gh: &FakeGitHub, out: &mut Vec<Check>, info: &mut Vec<String>) {
    let m = gh.model();
    let bot = format!("{}[bot]", fake_github::APP_SLUG);
    // Comments: one per (issue, marker), edited in place.
    let mine: Vec<&fake_github::Comment> = m.comments.iter().filter(|c| c.user == bot).collect();
    let unmarked = mine.iter().filter(|c| marker(&c.body).is_none()).count();
    let doubled = dupes(mine.iter().filter_map(|c| marker(&c.body).map(|k| (c.repo.clone(), c.issue, k))));
    let edits: u32 = mine.iter().map(|c| c.writes.saturating_sub(1)).sum();
    out.push(check(
        "App comments doubled (two with one marker on one issue)",
        "0",
        format!(
            "{} of {} comments ({} edits, {} without a marker){}",
            doubled.len(),
            mine.len(),
            edits,
            unmarked,
            sample(&doubled)
        ),
        doubled.is_empty() && unmarked == 0,
    ));
    // Check runs: one per external id (head SHA and gate), updated in place.
    let runs: Vec<&fake_github::CheckRun> = m.check_runs.iter().filter(|r| r.body["external_id"].is_string()).collect();
    let by_external =
        dupes(runs.iter().map(|r| (r.repo.clone(), r.body["external_id"].as_str().unwrap_or("").to_string())));
    let by_name = dupes(
        runs.iter().map(|r| (r.repo.clone(), r.head_sha.clone(), r.body["name"].as_str().unwrap_or("").to_string())),
    );
    out.push(check(
        "App check runs doubled (created twice, not updated: same external id, or same name on one SHA)",
        "0",
        format!(
            "{} by external id, {} by name and SHA, of {} check runs{}",
            by_external.len(),
            by_name.len(),
            runs.len(),
            sample(&by_name)
        ),
        by_external.is_empty() && by_name.is_empty(),
    ));
    // Deployments: one per key (in its payload), and one per request, SHA and environment.
    let deps: Vec<&Value> =
        m.deployments.iter().filter(|(_, d)| d["payload"]["shipgate_key"].is_string()).map(|(_, d)| d).collect();
    let by_key = dupes(
        m.deployments
            .iter()
            .filter_map(|(r, d)| d["payload"]["shipgate_key"].as_str().map(|k| (r.clone(), k.to_string()))),
    );
    let by_request =
        dupes(m.deployments.iter().filter(|(_, d)| d["payload"]["shipgate_key"].is_string()).map(|(r, d)| {
            (
                r.clone(),
                d["payload"]["shipgate_request"].as_i64().unwrap_or(0),
                d["sha"].as_str().unwrap_or("").to_string(),
                d["environment"].as_str().unwrap_or("").to_string(),
            )
        }));
    out.push(check(
        "App deployments doubled (same key, or same request, SHA and environment)",
        "0",
        format!(
            "{} by key, {} by request, of {} deployments{}",
            by_key.len(),
            by_request.len(),
            deps.len(),
            sample(&by_request)
        ),
        by_key.is_empty() && by_request.is_empty(),
    ));
    // Issues the App opened (CI incidents): one per marker in a repository.
    let opened: Vec<(&String, &fake_github::Issue)> =
        m.issues.iter().filter(|(_, i)| i.author == bot).map(|((r, _), i)| (r, i)).collect();
    let issues_doubled = dupes(opened.iter().filter_map(|(r, i)| marker(&i.body).map(|k| ((*r).clone(), k))));
    out.push(check(
        "App issues doubled (two incident issues with one marker)",
        "0",
        format!("{} of {} issues{}", issues_doubled.len(), opened.len(), sample(&issues_doubled)),
        issues_doubled.is_empty(),
    ));
    // Labels: GitHub keeps a label once per issue; the App's state labels are one at a time.
    let mut two_states = Vec::new();
    let mut repeated = Vec::new();
    for ((repo, n), i) in m.issues.iter() {
        let states: Vec<&String> = i.labels.iter().filter(|l| STATE_LABELS.contains(&l.as_str())).collect();
        if states.len() > 1 {
            two_states.push(format!("{repo}#{n} {states:?}"));
        }
        if !dupes(i.labels.iter()).is_empty() {
            repeated.push(format!("{repo}#{n}"));
        }
    }
    let requests = m.issues.values().filter(|i| i.labels.iter().any(|l| l == "DEPLOYMENT_REQUEST")).count();
    out.push(check(
        "labels doubled (one label twice, or two of the App's state labels on one request)",
        "0",
        format!(
            "{} twice, {} with two state labels, of {requests} requests{}",
            repeated.len(),
            two_states.len(),
            sample(&two_states)
        ),
        repeated.is_empty() && two_states.is_empty(),
    ));
    out.push(check(
        "calls the fake GitHub found invalid against GitHub's OpenAPI",
        "0",
        format!("{}{}", m.violations.len(), sample(&m.violations)),
        m.violations.is_empty(),
    ));
    // What the requests came to (information: a scenario stopped by the end of the load is not a failure).
    let mut finals: BTreeMap<String, usize> = BTreeMap::new();
    for i in m.issues.values().filter(|i| i.labels.iter().any(|l| l == "DEPLOYMENT_REQUEST")) {
        let states: Vec<&str> =
            i.labels.iter().filter(|l| STATE_LABELS.contains(&l.as_str())).map(String::as_str).collect();
        let state = if states.is_empty() { "none".to_string() } else { states.join(" + ") };
        *finals.entry(format!("{state} ({})", i.state)).or_default() += 1;
    }
    info.push(format!("requests by final state label (issue state): {finals:?}"));
    let incidents = opened.iter().filter(|(_, i)| i.labels.iter().any(|l| l == "ci-failure")).count();
    let closed = opened.iter().filter(|(_, i)| i.state == "closed").count();
    info.push(format!("{incidents} CI incident issues opened by the App, {closed} of them closed"));
    let refusals = |command: &str| {
        let needle = format!("`{command}` was not accepted");
        mine.iter().filter(|c| c.body.contains(&needle)).count()
    };
    info.push(format!(
        "refusals replied: `/approve` {} (the scenarios' user without a role), `/deploy` {} (sent before the gate had opened: \
         e.g. the new head's CI not yet evaluated)",
        refusals("/approve"),
        refusals("/deploy")
    ));
    let statuses = m.deployment_statuses.iter().filter(|(_, _, s)| s.get("description").is_some()).count();
    info.push(format!("{statuses} deployment statuses written by the App"));
    let mut by_op: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &m.calls {
        *by_op.entry(c.operation.as_str()).or_default() += 1;
    }
    info.push(format!("{} calls to the fake GitHub: {by_op:?}", m.calls.len()));
}

fn injected(gh: &FakeGitHub) -> (u64, BTreeMap<String, u64>, usize) {
    let m = gh.model();
    (m.injected.values().sum(), m.injected.clone(), m.calls.len())
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let s = Settings::from_args();
    let start = Instant::now();
    let code = match run(&s, start).await {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            log(start, format!("HARNESS ERROR: {e}"));
            2
        }
    };
    std::process::exit(code);
}

async fn run(s: &Settings, start: Instant) -> Result<bool, String> {
    let tag = format!("{:x}", s.seed & 0xffff_ffff);
    log(start, format!("seed {}, work dir {}", s.seed, s.work.display()));
    let gh = FakeGitHub::start().await;
    let repos = repos(s.installations);
    setup_world(&gh, &repos);
    gh.inject_random(s.error_rate, FakeGitHub::github_fault_mix(), s.seed);

    // The App's database: migrated once here, so that two replicas starting together find it ready.
    let db = shipgate::store::Db::connect(&s.database_url).await.map_err(|e| format!("connect: {e}"))?;
    db.migrate().await.map_err(|e| format!("migrate: {e}"))?;
    db.close().await;

    let launch = Launch {
        bin: s.bin.clone(),
        database_url: s.database_url.clone(),
        github_url: gh.url.clone(),
        key_path: format!("{}/tests/fixtures/test-app-key.pem", env!("CARGO_MANIFEST_DIR")),
        spacing_ms: s.spacing_ms,
        lease_secs: s.lease_secs,
        rust_log: s.rust_log.clone(),
    };
    let mut replicas: Vec<Replica> = ["a", "b"]
        .iter()
        .map(|n| Replica {
            name: n,
            port: free_port(),
            child: None,
            log: s.work.join(format!("replica-{n}.log")),
            starts: 0,
        })
        .collect();
    for r in replicas.iter_mut() {
        launch.start(r, Duration::from_secs(60)).await?;
        log(start, format!("replica {} ready on port {}", r.name, r.port));
    }
    let up: Up = Arc::new(Mutex::new(replicas.iter().map(|r| r.port).collect()));
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let chaos = Arc::new(Mutex::new(Chaos::default()));
    let t0 = Instant::now();
    let end = t0 + s.duration;

    // kill -9 one replica every `kill_every`, alternately, and start it again.
    let killer = {
        let (up, chaos, every) = (up.clone(), chaos.clone(), s.kill_every);
        tokio::spawn(async move {
            let mut victim = 0;
            let mut next = t0 + every;
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                let r = &mut replicas[victim];
                up.lock().expect("up").retain(|p| *p != r.port);
                kill_9(r).await;
                let at = t0.elapsed().as_secs_f64();
                tokio::time::sleep(Duration::from_millis(500)).await;
                match launch.start(r, Duration::from_secs(120)).await {
                    Ok(took) => {
                        up.lock().expect("up").push(r.port);
                        chaos.lock().expect("chaos").kills.push((at, r.name, took.as_secs_f64() + 0.5));
                        log(
                            start,
                            format!(
                                "kill -9 replica {} at {at:.0}s; back after {:.1}s",
                                r.name,
                                took.as_secs_f64() + 0.5
                            ),
                        );
                    }
                    Err(e) => {
                        chaos.lock().expect("chaos").restart_failures.push(e.clone());
                        log(start, format!("kill -9 replica {} at {at:.0}s; NOT BACK: {e}", r.name));
                    }
                }
                victim = 1 - victim;
                next += every;
            }
            (replicas, launch)
        })
    };

    // PostgreSQL restarted once.
    let pg = {
        let (chaos, cmd, at) = (chaos.clone(), s.pg_restart_cmd.clone(), s.pg_restart_at);
        tokio::spawn(async move {
            let Some(cmd) = cmd else { return };
            if t0 + at >= end {
                return; // it would come after the load
            }
            tokio::time::sleep_until((t0 + at).into()).await;
            let when = t0.elapsed().as_secs_f64();
            log(start, format!("restarting PostgreSQL: {cmd}"));
            let t = Instant::now();
            let r = tokio::process::Command::new("sh").arg("-c").arg(&cmd).output().await;
            let took = t.elapsed().as_secs_f64();
            let (ok, text) = match r {
                Ok(o) => (
                    o.status.success(),
                    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
                ),
                Err(e) => (false, e.to_string()),
            };
            log(start, format!("PostgreSQL restart at {when:.0}s took {took:.1}s, ok: {ok}"));
            chaos.lock().expect("chaos").pg_restarts.push((when, took, ok, text.trim().to_string()));
        })
    };

    // Scenarios, and the dispatcher that paces every delivery.
    let (jobs_tx, mut jobs_rx) = mpsc::channel::<Job>(1024);
    let ctx = Arc::new(Ctx {
        gh: gh.clone(),
        repos: repos.clone(),
        jobs: jobs_tx,
        stop: stop.clone(),
        load: load.clone(),
        step: s.step,
        tag: tag.clone(),
    });
    let lanes: Vec<_> =
        (0..s.active).map(|i| tokio::spawn(scenario_lane(ctx.clone(), i, s.seed.wrapping_add(i as u64 + 1)))).collect();
    drop(ctx);
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_max_idle_per_host(64).build().expect("client");
    let senders = Arc::new(Semaphore::new(s.max_in_flight));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / s.rps));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n_filler = 0u64;
    let mut last_report = Instant::now();
    let mut in_flight = Vec::new();
    let stop_at = end;
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= stop_at && !stop.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
            log(start, "load stops: the scenarios under way finish their current step");
        }
        let job = match jobs_rx.try_recv() {
            Ok(j) => j,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) if stop.load(Ordering::Relaxed) => continue,
            Err(mpsc::error::TryRecvError::Empty) => {
                let repo = &repos[(n_filler as usize) % repos.len()];
                let (event, mut v) = filler(repo, n_filler);
                n_filler += 1;
                v["soak_nonce"] = json!(format!("{tag}-{n_filler}"));
                load.filler_deliveries.fetch_add(1, Ordering::Relaxed);
                Job { event, id: delivery_id(&tag), body: v.to_string(), done: None }
            }
        };
        let permit = match senders.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                load.late.fetch_add(1, Ordering::Relaxed);
                senders.clone().acquire_owned().await.expect("semaphore")
            }
        };
        let (up, load2, http, give_up) = (up.clone(), load.clone(), http.clone(), s.give_up);
        in_flight.push(tokio::spawn(async move {
            send(job, up, load2, http, give_up).await;
            drop(permit);
        }));
        in_flight.retain(|h| !h.is_finished());
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            let (faults, _, calls) = injected(&gh);
            log(
                start,
                format!(
                    "sent {} (scenario {}, filler {}), acknowledged {}, posts {}, in flight {}; GitHub calls {calls}, faults injected {faults}",
                    load.sent.lock().expect("sent").len(),
                    load.scenario_deliveries.load(Ordering::Relaxed),
                    load.filler_deliveries.load(Ordering::Relaxed),
                    load.acked.lock().expect("acked").len(),
                    load.posts.load(Ordering::Relaxed),
                    in_flight.len(),
                ),
            );
        }
    }
    let load_secs = t0.elapsed().as_secs_f64();
    for l in lanes {
        let _ = l.await;
    }
    for h in in_flight {
        let _ = h.await;
    }
    log(start, format!("load over after {load_secs:.0}s; every delivery answered or given up"));
    let (mut replicas, launch) = killer.await.map_err(|e| e.to_string())?;
    let _ = pg.await;
    // Both replicas running while the queues drain (a kill may have left one down).
    for r in replicas.iter_mut() {
        if r.child.is_none() {
            launch.start(r, Duration::from_secs(120)).await?;
        }
    }
    let db = shipgate::store::Db::connect(&s.database_url).await.map_err(|e| format!("connect: {e}"))?;
    let drained = drain(&db, s.drain_timeout, start).await;
    log(start, format!("drain: {drained:?}"));
    for r in replicas.iter_mut() {
        stop_gracefully(r, Duration::from_secs(20)).await;
    }
    let (faults_total, faults, calls_total) = injected(&gh);

    // The checks.
    let mut checks = Vec::new();
    let mut info = Vec::new();
    checks.push(check(
        "queues drained after the load (inbox, outbox, evaluations due)",
        "drained",
        match &drained {
            Ok(d) => format!("drained in {:.0}s", d.as_secs_f64()),
            Err(e) => e.clone(),
        },
        drained.is_ok(),
    ));
    db_checks(&db, &load, &mut checks, &mut info).await;
    github_checks(&gh, &mut checks, &mut info);
    let audit = tokio::process::Command::new(&s.bin)
        .args(["audit", "verify"])
        .env("DATABASE_URL", &s.database_url)
        .env("SHIPGATE_AUDIT_KEY", AUDIT_KEY)
        .env("RUST_LOG", "error")
        .output()
        .await
        .map_err(|e| format!("audit verify: {e}"))?;
    let audit_text = String::from_utf8_lossy(&audit.stdout).to_string();
    let audit_entries: i64 = audit_text
        .lines()
        .filter_map(|l| l.split(": ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse::<i64>().ok()))
        .sum();
    checks.push(check(
        "`shipgate audit verify` with the key",
        "exit 0",
        format!(
            "exit {}; {} chains, {audit_entries} entries; {}",
            audit.status.code().unwrap_or(-1),
            audit_text.lines().filter(|l| l.starts_with("installation")).count(),
            audit_text.lines().last().unwrap_or("")
        ),
        audit.status.success(),
    ));
    let chaos = std::mem::take(&mut *chaos.lock().expect("chaos"));
    let want_kills = ((s.duration.as_secs_f64() - 0.001) / s.kill_every.as_secs_f64()).floor() as usize;
    let slowest = chaos.kills.iter().map(|k| k.2).fold(0.0, f64::max);
    checks.push(check(
        "replicas killed with `kill -9` and started again",
        format!("{want_kills}"),
        format!(
            "{} (a {}, b {}); back after {:.1}s at most; {} not back",
            chaos.kills.len(),
            chaos.kills.iter().filter(|k| k.1 == "a").count(),
            chaos.kills.iter().filter(|k| k.1 == "b").count(),
            slowest,
            chaos.restart_failures.len()
        ),
        chaos.kills.len() == want_kills && chaos.restart_failures.is_empty(),
    ));
    let pg_ok = chaos.pg_restarts.iter().filter(|p| p.2).count();
    let want_pg = usize::from(s.pg_restart_cmd.is_some());
    checks.push(check(
        "PostgreSQL restarts",
        format!("{want_pg}"),
        chaos
            .pg_restarts
            .iter()
            .map(|p| format!("at {:.0}s, took {:.1}s, {}", p.0, p.1, if p.2 { "ok" } else { "FAILED" }))
            .collect::<Vec<_>>()
            .join("; ")
            + if chaos.pg_restarts.is_empty() { "none" } else { "" },
        pg_ok == want_pg && chaos.pg_restarts.len() == want_pg,
    ));
    let share = if calls_total > 0 { faults_total as f64 / calls_total as f64 } else { 0.0 };
    checks.push(check(
        "faults injected by the fake GitHub",
        format!("~{:.0}% of calls", s.error_rate * 100.0),
        format!("{faults_total} of {calls_total} calls ({:.1}%): {faults:?}", share * 100.0),
        s.error_rate == 0.0 || faults_total > 0,
    ));
    let mut panics = 0;
    for r in &replicas {
        let text = std::fs::read_to_string(&r.log).unwrap_or_default();
        panics += text.matches("panicked").count();
    }
    checks.push(check("panics in the replicas' logs", "0", format!("{panics}"), panics == 0));
    db.close().await;

    // The report.
    let refused = load.refused.lock().expect("refused").clone();
    let scenarios = load.scenarios.lock().expect("scenarios").clone();
    let sent = load.sent.lock().expect("sent").len();
    info.insert(
        0,
        format!(
            "load: {sent} deliveries in {load_secs:.0}s ({:.1}/s; {} scenario steps, {} filler), {} POSTs; answers other than 2xx: {refused:?}; ticks with no free sender: {}",
            sent as f64 / load_secs.max(1.0),
            load.scenario_deliveries.load(Ordering::Relaxed),
            load.filler_deliveries.load(Ordering::Relaxed),
            load.posts.load(Ordering::Relaxed),
            load.late.load(Ordering::Relaxed),
        ),
    );
    info.insert(
        1,
        format!(
            "scenarios (started, finished): {scenarios:?}; the App's deployment seen and its statuses sent {}, not seen within 90 s of `/deploy` {}",
            load.deploys_seen.load(Ordering::Relaxed),
            load.deploys_missed.load(Ordering::Relaxed)
        ),
    );
    info.push(format!(
        "kills at (s): {}",
        chaos.kills.iter().map(|k| format!("{:.0}{}", k.0, k.1)).collect::<Vec<_>>().join(" ")
    ));
    let all_ok = checks.iter().all(|c| c.ok);
    let mut md = String::new();
    md.push_str("| check | expected | observed | |\n|---|---|---|---|\n");
    for c in &checks {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            c.what,
            c.expected,
            c.observed.replace('|', "\\|"),
            if c.ok { "ok" } else { "**FAIL**" }
        ));
    }
    md.push('\n');
    for i in &info {
        md.push_str(&format!("* {}\n", i.replace('|', "\\|")));
    }
    md.push_str(&format!("\n{}\n", if all_ok { "**All checks passed.**" } else { "**Some checks FAILED.**" }));
    println!("{md}");
    if let Some(out) = &s.out {
        std::fs::write(out, &md).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(all_ok)
}
