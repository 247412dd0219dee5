//! A fake GitHub for the tests: an in-memory model of the parts of GitHub the App uses, served
//! over HTTP on a random local port. Every request is checked against GitHub's OpenAPI
//! description (`tests/fixtures/github-openapi-subset.json`): path, method, query and JSON body,
//! with unknown keys flagged. A mismatch is recorded and fails the test at `finish()`.
//!
//! It also checks credentials as GitHub does (the App's JWT, signed with the App's key, on
//! `/app/...`; an unexpired installation token elsewhere), counts calls, can inject failures
//! (5xx, 429 with `retry-after`, a secondary-limit 403, a slow answer, an answer lost after the
//! work was done) into chosen requests or, for a soak, into a random share of all of them
//! ([`FakeGitHub::inject_random`]), and knows which comments the test has looked at: `finish()` fails if the App
//! wrote a comment the test never read.
#![allow(dead_code)]

pub mod openapi;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use openapi::Spec;

pub const APP_ID: &str = "424242";
pub const APP_SLUG: &str = "shipgate-test";

pub fn private_key_pem() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-app-key.pem")).expect("test key")
}

/// The App's credentials, as the App is configured in the tests.
pub fn app_credentials() -> shipgate::config::GithubCredentials {
    shipgate::config::GithubCredentials {
        app_id: APP_ID.into(),
        private_key: shipgate::config::PrivateKeySource::Pem(shipgate::config::Secret::new(private_key_pem())),
    }
}

fn public_key_pem() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-app-key.pub.pem"))
        .expect("test key")
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// GitHub's time: the App's clock when a test shares it (`FakeGitHub::use_clock`), so that a
/// scenario can live last week, JWTs and token expiry included.
fn now_of(m: &Model) -> i64 {
    m.clock.as_ref().map_or_else(now_s, |c| c.now_ms().div_euclid(1000))
}

fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = shipgate::cli::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// One request the App made.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    pub operation: String,
    pub status: u16,
}

#[derive(Clone, Debug)]
pub struct Comment {
    pub id: i64,
    pub user_id: i64,
    pub repo: String,
    pub issue: i64,
    pub body: String,
    pub user: String,
    pub writes: u32,
    pub seen_writes: u32,
    pub reactions: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Issue {
    pub author_id: i64,
    pub author: String,
    pub number: i64,
    pub title: String,
    pub body: String,
    pub state: String,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct CheckRun {
    pub id: i64,
    pub repo: String,
    pub head_sha: String,
    pub body: Value,
}

#[derive(Clone, Debug, Default)]
pub struct Pull {
    pub number: i64,
    pub head_sha: String,
    pub author_id: i64,
    pub author: String,
    pub state: String,
    pub files: Vec<String>,
    /// (reviewer id, APPROVED | CHANGES_REQUESTED | COMMENTED)
    pub reviews: Vec<(i64, String)>,
    /// Renamed files: (new name, previous name); listed after `files`.
    pub renames: Vec<(String, String)>,
    /// What GitHub says in `changed_files` when more than it lists (None: the files listed).
    pub changed_files: Option<usize>,
    /// Who pushed commits besides the author: (id, login), one commit each.
    pub pushers: Vec<(i64, String)>,
    /// Once merged: the commit the merge produced on the base branch.
    pub merge_commit: Option<String>,
    /// The branch the PR merges into (None: `main`).
    pub base: Option<String>,
    /// When its commits were authored (RFC 3339; the first commit's, the next a minute later
    /// each); None: the commits carry no date.
    pub committed_at: Option<String>,
}

#[derive(Clone, Debug)]
pub struct HookDelivery {
    pub id: i64,
    pub guid: String,
    pub status_code: i64,
    pub event: String,
}

/// A failure to inject into the next `times` matching requests.
#[derive(Clone, Debug)]
pub enum Fault {
    Status(u16),
    RetryAfter(u64),
    /// 403 "You have exceeded a secondary rate limit" with no headers.
    Secondary,
    /// `x-ratelimit-remaining: 0` with a reset `secs` from now.
    PrimaryExhausted(i64),
    Slow(Duration),
    /// Do the work, then answer 502 as if the answer was lost on the way.
    LoseAnswer,
    /// Do the work, then hold the answer this long (a process can be killed meanwhile).
    HoldAnswer(Duration),
    /// 403 "You have exceeded a secondary rate limit" with `retry-after: secs`, as GitHub sends it
    /// when it says how long to wait.
    SecondaryRetryAfter(u64),
}

impl Fault {
    /// A short name for counting injected faults.
    pub fn label(&self) -> String {
        match self {
            Fault::Status(s) => format!("{s}"),
            Fault::RetryAfter(_) => "429 retry-after".into(),
            Fault::Secondary => "403 secondary".into(),
            Fault::PrimaryExhausted(_) => "403 x-ratelimit-remaining: 0".into(),
            Fault::Slow(_) => "slow".into(),
            Fault::LoseAnswer => "502 after the work (answer lost)".into(),
            Fault::HoldAnswer(_) => "answer held".into(),
            Fault::SecondaryRetryAfter(_) => "403 secondary + retry-after".into(),
        }
    }
}

/// Faults injected into a random share of all requests (a soak): each request fails with
/// probability `rate`, with a fault drawn from `mix` by weight.
struct RandomFaults {
    rate: f64,
    mix: Vec<(Fault, u32)>,
    rng: fastrand::Rng,
}

impl RandomFaults {
    fn draw(&mut self) -> Option<Fault> {
        if self.rng.f64() >= self.rate {
            return None;
        }
        let total: u32 = self.mix.iter().map(|(_, w)| *w).sum();
        let mut pick = self.rng.u32(..total.max(1));
        for (f, w) in &self.mix {
            if pick < *w {
                return Some(f.clone());
            }
            pick -= w;
        }
        None
    }
}

#[derive(Clone, Debug)]
struct Injection {
    method: String,
    path_contains: String,
    fault: Fault,
    times: u32,
}

#[derive(Default)]
pub struct Model {
    /// When set, GitHub's notion of now (see `now_of`).
    pub clock: Option<shipgate::clock::Clock>,
    pub calls: Vec<Call>,
    pub violations: Vec<String>,
    pub repos: BTreeMap<String, i64>, // full name -> installation
    pub installations: Vec<i64>,
    pub tokens: HashMap<String, (i64, i64)>, // token -> (installation, expires at s)
    pub token_lifetime_s: i64,
    pub token_requests: u32,
    pub issues: BTreeMap<(String, i64), Issue>,
    pub comments: Vec<Comment>,
    pub check_runs: Vec<CheckRun>,
    pub deployments: Vec<(String, Value)>,
    pub deployment_statuses: Vec<(String, i64, Value)>,
    pub protection_reviews: Vec<(String, i64, Value)>,
    /// Workflow runs re-run: (repo, run id).
    pub reruns: Vec<(String, i64)>,
    pub hook_deliveries: Vec<HookDelivery>,
    pub pulls: BTreeMap<(String, i64), Pull>,
    /// Commit statuses: (repo, sha, context, state).
    pub statuses: Vec<(String, String, String, String)>,
    /// Team members by (org, slug): (id, login).
    pub teams: BTreeMap<(String, String), Vec<(i64, String)>>,
    /// Collaborator roles by (repo, login): admin, maintain, write, triage, read.
    pub permissions: BTreeMap<(String, String), String>,
    /// Repositories GitHub shows as public (the others are private).
    pub public_repos: std::collections::BTreeSet<String>,
    /// Files on the default branch by (repo, path).
    pub files: BTreeMap<(String, String), String>,
    pub redelivery_requests: Vec<i64>,
    injections: Vec<Injection>,
    random_faults: Option<RandomFaults>,
    /// Faults injected at random, by [`Fault::label`].
    pub injected: BTreeMap<String, u64>,
    next_id: i64,
    /// Jobs of workflow run attempts by (repo, run id, attempt), as GitHub lists them.
    pub run_jobs: BTreeMap<(String, i64, i64), Vec<Value>>,
    /// The head label (`owner:branch`) of pull requests by (repo, number).
    pub pull_heads: BTreeMap<(String, i64), String>,
    /// Accounts by login (what `/users/{login}` answers now): login -> id.
    pub users: BTreeMap<String, i64>,
    /// The public e-mail a user shows (`email` of `/users/{login}`), by login.
    pub emails: BTreeMap<String, String>,
    /// Apps registered through the manifest flow (`POST /settings/apps/new`), in order.
    pub app_registrations: Vec<AppRegistration>,
    /// Fields the conversion's answer is given instead of its own (a GitHub that answers badly).
    pub conversion_overrides: Vec<(String, Value)>,
}

/// A GitHub App registered from a manifest: what the browser posted, and what the conversion
/// hands out for its code (once).
#[derive(Clone, Debug)]
pub struct AppRegistration {
    /// None: for the person's own account; Some: for that organisation.
    pub org: Option<String>,
    /// The manifest as posted (JSON).
    pub manifest: Value,
    /// The `state` the registration page was given, sent back unchanged.
    pub state: String,
    /// The one-time code GitHub sends back to `redirect_url`.
    pub code: String,
    /// The webhook secret GitHub made for the App.
    pub webhook_secret: String,
    /// True once the code was exchanged.
    pub converted: bool,
}

/// Who is signed in to the fake GitHub's web pages (the owner of Apps registered for "my account").
pub const WEB_USER: &str = "octocat";

impl Model {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

#[derive(Clone)]
pub struct FakeGitHub {
    pub url: String,
    pub addr: SocketAddr,
    model: Arc<Mutex<Model>>,
    server: Arc<tokio::task::JoinHandle<()>>,
}

struct Ctx {
    model: Arc<Mutex<Model>>,
    base: String,
}

impl FakeGitHub {
    pub async fn start() -> FakeGitHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake GitHub");
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let model = Arc::new(Mutex::new(Model { token_lifetime_s: 3600, next_id: 1000, ..Model::default() }));
        let ctx = Arc::new(Ctx { model: model.clone(), base: url.clone() });
        let app = axum::Router::new().fallback(handle).with_state(ctx);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Spec::github(); // parse the spec once, before the first request
        FakeGitHub { url, addr, model, server: Arc::new(server) }
    }

    pub fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// GitHub's time follows `clock` (the App's): JWTs and installation tokens are judged by it.
    pub fn use_clock(&self, clock: shipgate::clock::Clock) -> &Self {
        self.model().clock = Some(clock);
        self
    }

    /// An installation of the App with these repositories.
    pub fn install(&self, installation: i64, repos: &[&str]) -> &Self {
        let mut m = self.model();
        m.installations.push(installation);
        for r in repos {
            m.repos.insert(r.to_string(), installation);
        }
        drop(m);
        self
    }

    pub fn issue(&self, repo: &str, number: i64, title: &str, body: &str) -> &Self {
        let issue = Issue { number, title: title.into(), body: body.into(), state: "open".into(), ..Issue::default() };
        self.model().issues.insert((repo.to_string(), number), issue);
        self
    }

    /// The commits of PR `number` were authored from `at` (RFC 3339) on.
    pub fn committed_at(&self, repo: &str, number: i64, at: &str) -> &Self {
        if let Some(p) = self.model().pulls.get_mut(&(repo.to_string(), number)) {
            p.committed_at = Some(at.to_string());
        }
        self
    }

    pub fn pull(&self, repo: &str, number: i64, author: (i64, &str), head_sha: &str, files: &[&str]) -> &Self {
        let p = Pull {
            number,
            head_sha: head_sha.into(),
            author_id: author.0,
            author: author.1.into(),
            state: "open".into(),
            files: files.iter().map(|f| f.to_string()).collect(),
            ..Pull::default()
        };
        self.model().pulls.insert((repo.to_string(), number), p);
        self
    }

    /// The PR is merged (merge, squash or rebase alike): `merge_sha` is the commit on `main`.
    pub fn merge_pull(&self, repo: &str, number: i64, merge_sha: &str) {
        if let Some(p) = self.model().pulls.get_mut(&(repo.to_string(), number)) {
            p.state = "merged".into();
            p.merge_commit = Some(merge_sha.into());
        }
    }

    /// The PR's base branch is changed (`pull_request.edited` with `changes.base`; the head stays).
    pub fn retarget_pull(&self, repo: &str, number: i64, base: &str) {
        if let Some(p) = self.model().pulls.get_mut(&(repo.to_string(), number)) {
            p.base = Some(base.into());
        }
    }

    /// A new push to a PR: its head moves.
    pub fn push_to_pull(&self, repo: &str, number: i64, head_sha: &str) {
        if let Some(p) = self.model().pulls.get_mut(&(repo.to_string(), number)) {
            p.head_sha = head_sha.into();
        }
    }

    /// A CI check run (someone else's) on a SHA.
    pub fn ci(&self, repo: &str, sha: &str, name: &str, status: &str, conclusion: Option<&str>) {
        let mut m = self.model();
        if let Some(r) = m.check_runs.iter_mut().find(|r| r.repo == repo && r.head_sha == sha && r.body["name"] == name)
        {
            r.body["status"] = json!(status);
            r.body["conclusion"] = json!(conclusion);
            return;
        }
        let id = m.id();
        let body = json!({ "name": name, "head_sha": sha, "status": status, "conclusion": conclusion });
        m.check_runs.push(CheckRun { id, repo: repo.into(), head_sha: sha.into(), body });
    }

    /// A check run of a GitHub Actions job of run `run_id` (its details URL names the run).
    pub fn ci_job(&self, repo: &str, sha: &str, name: &str, status: &str, run_id: i64) {
        self.ci(repo, sha, name, status, None);
        let mut m = self.model();
        if let Some(r) = m.check_runs.iter_mut().find(|r| r.repo == repo && r.head_sha == sha && r.body["name"] == name)
        {
            r.body["details_url"] =
                json!(format!("https://github.com/{repo}/actions/runs/{run_id}/job/{}", run_id * 10));
            r.body["app"] = json!({ "id": 15368, "slug": "github-actions" });
        }
    }

    pub fn team(&self, org: &str, slug: &str, members: &[(i64, &str)]) -> &Self {
        let list = members.iter().map(|(i, l)| (*i, l.to_string())).collect();
        self.model().teams.insert((org.to_string(), slug.to_string()), list);
        self
    }

    /// Makes `repo` public (repositories are private unless made so), as `GET /repos/{repo}` says.
    pub fn set_public(&self, repo: &str, public: bool) -> &Self {
        let mut m = self.model();
        if public {
            m.public_repos.insert(repo.to_string());
        } else {
            m.public_repos.remove(repo);
        }
        drop(m);
        self
    }

    pub fn permission(&self, repo: &str, login: &str, role: &str) -> &Self {
        self.model().permissions.insert((repo.to_string(), login.to_string()), role.to_string());
        self
    }

    pub fn file(&self, repo: &str, path: &str, text: &str) -> &Self {
        self.model().files.insert((repo.to_string(), path.to_string()), text.to_string());
        self
    }

    /// A deployment of `sha` to `environment` whose latest status is `state` (made by the team's
    /// GitHub Actions pipeline, not the App).
    pub fn deployment(&self, repo: &str, sha: &str, environment: &str, state: &str) {
        self.deployment_made(
            repo,
            sha,
            environment,
            state,
            actions_creator(),
            json!({ "id": 15368, "slug": "github-actions" }),
        )
    }

    /// A deployment someone made by hand with their own token (no App performed it).
    pub fn deployment_by_hand(&self, repo: &str, who: (i64, &str), sha: &str, environment: &str, state: &str) {
        let creator = json!({ "id": who.0, "login": who.1, "type": "User" });
        self.deployment_made(repo, sha, environment, state, creator, Value::Null)
    }

    fn deployment_made(&self, repo: &str, sha: &str, environment: &str, state: &str, creator: Value, app: Value) {
        let mut m = self.model();
        let id = m.id();
        m.deployments.push((
            repo.into(),
            json!({ "id": id, "sha": sha, "ref": sha, "environment": environment, "payload": {},
                    "creator": creator, "performed_via_github_app": app }),
        ));
        m.deployment_statuses.push((repo.into(), id, json!({ "id": id * 10, "state": state })));
    }

    /// `login` is now the account `id` (a new account, or a rename).
    pub fn user(&self, login: &str, id: i64) -> &Self {
        self.model().users.insert(login.to_ascii_lowercase(), id);
        self
    }

    /// The public e-mail `login` shows on their profile.
    pub fn user_email(&self, login: &str, email: &str) -> &Self {
        self.model().emails.insert(login.to_ascii_lowercase(), email.to_string());
        self
    }

    /// The App's check runs on a SHA: (name, conclusion, summary).
    pub fn gate_checks(&self, repo: &str, sha: &str) -> Vec<(String, String, String)> {
        self.model()
            .check_runs
            .iter()
            .filter(|r| {
                r.repo == repo
                    && r.head_sha == sha
                    && r.body["name"].as_str().is_some_and(|n| n.starts_with("shipgate /"))
            })
            .map(|r| {
                (
                    r.body["name"].as_str().unwrap_or_default().to_string(),
                    r.body["conclusion"].as_str().unwrap_or_default().to_string(),
                    r.body["output"]["summary"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    pub fn labels(&self, repo: &str, issue: i64) -> Vec<String> {
        self.model().issues.get(&(repo.to_string(), issue)).map(|i| i.labels.clone()).unwrap_or_default()
    }

    /// A comment written by someone else (a person), already there.
    pub fn human_comment(&self, repo: &str, issue: i64, user: &str, body: &str) -> i64 {
        self.human_comment_by(repo, issue, (1, user), body)
    }

    pub fn human_comment_by(&self, repo: &str, issue: i64, user: (i64, &str), body: &str) -> i64 {
        let (user_id, user) = user;
        let mut m = self.model();
        let id = m.id();
        m.comments.push(Comment {
            id,
            user_id,
            repo: repo.into(),
            issue,
            body: body.into(),
            user: user.into(),
            writes: 0,
            seen_writes: 0,
            reactions: vec![],
        });
        id
    }

    /// Makes the next `times` requests whose method is `method` and whose path contains
    /// `path_contains` fail with `fault`.
    pub fn inject(&self, method: &str, path_contains: &str, fault: Fault, times: u32) {
        self.model().injections.push(Injection {
            method: method.into(),
            path_contains: path_contains.into(),
            fault,
            times,
        });
    }

    /// From now on, each request fails with probability `rate` (0 turns this off), with a fault
    /// drawn from `mix` by weight; chosen injections ([`FakeGitHub::inject`]) come first. `seed`
    /// makes the draws repeatable. What was injected is counted in [`Model::injected`].
    pub fn inject_random(&self, rate: f64, mix: Vec<(Fault, u32)>, seed: u64) {
        let mut m = self.model();
        m.random_faults =
            (rate > 0.0 && !mix.is_empty()).then(|| RandomFaults { rate, mix, rng: fastrand::Rng::with_seed(seed) });
    }

    /// The faults GitHub answers with under load, as it sends them: server errors before and after
    /// the work (the answer lost), and rate limits with `retry-after` or an exhausted quota.
    pub fn github_fault_mix() -> Vec<(Fault, u32)> {
        vec![
            (Fault::Status(500), 15),
            (Fault::Status(502), 15),
            (Fault::Status(503), 10),
            (Fault::LoseAnswer, 15),
            (Fault::RetryAfter(1), 15),
            (Fault::SecondaryRetryAfter(1), 15),
            (Fault::PrimaryExhausted(1), 15),
        ]
    }

    /// The comments on an issue, marking them as read by the test.
    pub fn comments(&self, repo: &str, issue: i64) -> Vec<Comment> {
        let mut m = self.model();
        let mut out = Vec::new();
        for c in m.comments.iter_mut().filter(|c| c.repo == repo && c.issue == issue) {
            c.seen_writes = c.writes;
            out.push(c.clone());
        }
        out
    }

    /// Comments the App wrote (by its bot user).
    pub fn app_comments(&self, repo: &str, issue: i64) -> Vec<Comment> {
        self.comments(repo, issue).into_iter().filter(|c| c.user.ends_with("[bot]")).collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.model().calls.clone()
    }

    /// The Apps registered from a manifest.
    pub fn app_registrations(&self) -> Vec<AppRegistration> {
        self.model().app_registrations.clone()
    }

    /// Calls of one operation (`issues/create-comment`).
    pub fn count(&self, operation: &str) -> usize {
        self.model().calls.iter().filter(|c| c.operation == operation).count()
    }

    /// Calls other than the token endpoint, by operation.
    pub fn call_counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in self.model().calls.iter() {
            *out.entry(c.operation.clone()).or_default() += 1;
        }
        out
    }

    /// Revokes every installation token (the next call with one gets 401).
    pub fn revoke_tokens(&self) {
        self.model().tokens.clear();
    }

    /// Waits until `cond` holds on the model, or panics after `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&Model) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if cond(&self.model()) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "fake GitHub: timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Fails the test if any request did not fit GitHub's OpenAPI description, or if the App
    /// wrote a comment the test never looked at.
    pub fn finish(&self) {
        let m = self.model();
        assert!(m.violations.is_empty(), "requests that GitHub would reject:\n{}", m.violations.join("\n"));
        let unseen: Vec<_> = m
            .comments
            .iter()
            .filter(|c| c.writes > c.seen_writes)
            .map(|c| format!("{}#{} comment {}: {}", c.repo, c.issue, c.id, c.body.lines().next().unwrap_or("")))
            .collect();
        assert!(unseen.is_empty(), "the App wrote comments the test never looked at:\n{}", unseen.join("\n"));
    }
}

fn answer(status: u16, body: Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (code, axum::Json(body)).into_response();
    r.headers_mut().insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
    r
}

fn not_found() -> Response {
    answer(404, json!({ "message": "Not Found", "documentation_url": "https://docs.github.com/rest" }))
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(State(ctx): State<Arc<Ctx>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let query = query_pairs(parts.uri.query());
    let bytes: Bytes = axum::body::to_bytes(body, 10 << 20).await.unwrap_or_default();
    // GitHub's web pages (not the API): the App manifest flow's registration page.
    if let Some(r) = web_page(&ctx, &method, &path, parts.uri.query(), &bytes) {
        return r;
    }
    let body: Option<Value> = if bytes.is_empty() { None } else { serde_json::from_slice(&bytes).ok() };
    if !bytes.is_empty() && body.is_none() {
        ctx.model
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .violations
            .push(format!("{method} {path}: body is not JSON"));
    }

    // The contract: every request must fit GitHub's OpenAPI description.
    let op = match Spec::github().validate(&method, &path, &query, body.as_ref()) {
        Ok(op) => op,
        Err(problems) => {
            let mut m = ctx.model.lock().unwrap_or_else(|p| p.into_inner());
            m.violations.push(format!("{method} {path}?{query:?}: {}", problems.join("; ")));
            m.calls.push(Call { method, path, query, body, operation: "INVALID".into(), status: 422 });
            return answer(
                422,
                json!({ "message": "Validation Failed (fake GitHub: request does not fit the OpenAPI description)" }),
            );
        }
    };
    if parts.headers.get("x-github-api-version").is_none() || parts.headers.get("user-agent").is_none() {
        let mut m = ctx.model.lock().unwrap_or_else(|p| p.into_inner());
        m.violations.push(format!("{method} {path}: missing User-Agent or X-GitHub-Api-Version"));
    }

    // Injected faults that answer before any work.
    let fault = {
        let mut guard = ctx.model.lock().unwrap_or_else(|p| p.into_inner());
        let m = &mut *guard;
        let found =
            m.injections.iter_mut().find(|i| i.times > 0 && i.method == method && path.contains(&i.path_contains));
        match found {
            Some(i) => {
                i.times -= 1;
                Some(i.fault.clone())
            }
            None => {
                let drawn = m.random_faults.as_mut().and_then(RandomFaults::draw);
                if let Some(f) = &drawn {
                    *m.injected.entry(f.label()).or_default() += 1;
                }
                drawn
            }
        }
    };
    let record = |status: u16| {
        let mut m = ctx.model.lock().unwrap_or_else(|p| p.into_inner());
        m.calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: body.clone(),
            operation: op.operation_id.clone(),
            status,
        });
    };
    match &fault {
        Some(Fault::Status(s)) => {
            record(*s);
            return answer(*s, json!({ "message": "injected failure" }));
        }
        Some(Fault::RetryAfter(secs)) => {
            record(429);
            let mut r = answer(429, json!({ "message": "API rate limit exceeded" }));
            r.headers_mut().insert("retry-after", HeaderValue::from_str(&secs.to_string()).expect("header"));
            return r;
        }
        Some(Fault::Secondary) => {
            record(403);
            return answer(
                403,
                json!({ "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again." }),
            );
        }
        Some(Fault::SecondaryRetryAfter(secs)) => {
            record(403);
            let mut r = answer(
                403,
                json!({ "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again." }),
            );
            r.headers_mut().insert("retry-after", HeaderValue::from_str(&secs.to_string()).expect("header"));
            return r;
        }
        Some(Fault::PrimaryExhausted(secs)) => {
            record(403);
            let mut r = answer(403, json!({ "message": "API rate limit exceeded for installation." }));
            r.headers_mut().insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            r.headers_mut()
                .insert("x-ratelimit-reset", HeaderValue::from_str(&(now_s() + secs).to_string()).expect("header"));
            return r;
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }

    let resp = route(&ctx, &parts.headers, &method, &op, &query, body.as_ref());
    let status = resp.status().as_u16();
    record(status);
    match fault {
        Some(Fault::LoseAnswer) => answer(502, json!({ "message": "Server Error" })),
        Some(Fault::HoldAnswer(d)) => {
            tokio::time::sleep(d).await;
            resp
        }
        _ => resp,
    }
}

/// Who is calling: Ok(None) for the App's JWT, Ok(Some(installation)) for a token.
#[allow(clippy::result_large_err)]
fn authenticate(m: &Model, headers: &HeaderMap, app_endpoint: bool) -> Result<Option<i64>, Response> {
    let unauthorized = |msg: &str| answer(401, json!({ "message": msg }));
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(token) = auth.strip_prefix("Bearer ") else {
        return Err(unauthorized("Requires authentication"));
    };
    if app_endpoint {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_key_pem().as_bytes()).expect("public key");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_issuer(&[APP_ID]);
        v.set_required_spec_claims(&["exp", "iat", "iss"]);
        v.leeway = 0;
        // Expiry is checked below, against GitHub's time (which a test may have moved).
        v.validate_exp = false;
        #[derive(serde::Deserialize)]
        struct Claims {
            iat: i64,
            exp: i64,
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map_err(|e| unauthorized(&format!("A JSON web token could not be decoded: {e}")))?;
        let now = now_of(m);
        let c = data.claims;
        if c.exp <= now {
            return Err(unauthorized("A JSON web token could not be decoded: ExpiredSignature"));
        }
        // GitHub takes a JWT until it expires (at most 10 minutes after `iat`, checked below):
        // the App reuses one for 8 minutes. (This said 120 s, stricter than GitHub: the soak saw
        // /app calls refused from a minute after a JWT was made.)
        if c.iat > now || c.iat < now - 660 {
            return Err(unauthorized("'Issued at' claim ('iat') must be an Integer representing a time in the past"));
        }
        if c.exp > now + 600 || c.exp - c.iat > 660 {
            return Err(unauthorized("'Expiration time' claim ('exp') is too far in the future"));
        }
        return Ok(None);
    }
    match m.tokens.get(token) {
        Some((inst, exp)) if *exp > now_of(m) => Ok(Some(*inst)),
        Some(_) => Err(unauthorized("Bad credentials (token expired)")),
        None => Err(unauthorized("Bad credentials")),
    }
}

fn page<T: Clone>(items: &[T], query: &[(String, String)], base: &str, path: &str) -> (Vec<T>, Option<String>) {
    let get = |k: &str| query.iter().find(|(q, _)| q == k).and_then(|(_, v)| v.parse::<usize>().ok());
    let per = get("per_page").unwrap_or(30).clamp(1, 100);
    let p = get("page").unwrap_or(1).max(1);
    let start = (p - 1) * per;
    let slice = items.iter().skip(start).take(per).cloned().collect();
    let next = (start + per < items.len()).then(|| {
        let mut q: Vec<String> = query.iter().filter(|(k, _)| k != "page").map(|(k, v)| format!("{k}={v}")).collect();
        q.push(format!("page={}", p + 1));
        format!("<{base}{path}?{}>; rel=\"next\"", q.join("&"))
    });
    (slice, next)
}

fn paged(items: Vec<Value>, query: &[(String, String)], base: &str, path: &str, wrap: Option<&str>) -> Response {
    let total = items.len();
    let (slice, next) = page(&items, query, base, path);
    let body = match wrap {
        Some(k) => json!({ "total_count": total, k: slice }),
        None => Value::Array(slice),
    };
    let mut r = answer(200, body);
    if let Some(link) = next {
        r.headers_mut().insert("link", HeaderValue::from_str(&link).expect("link header"));
    }
    r
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn issue_json(i: &Issue) -> Value {
    json!({ "number": i.number, "title": i.title, "body": i.body, "state": i.state,
            "labels": i.labels.iter().map(|l| json!({ "name": l })).collect::<Vec<_>>(),
            "user": { "id": i.author_id, "login": i.author, "type": "User" } })
}

/// The user GitHub Actions creates deployments as.
pub fn actions_creator() -> Value {
    json!({ "login": "github-actions[bot]", "id": 41898282, "type": "Bot" })
}

fn bot() -> Value {
    json!({ "login": format!("{APP_SLUG}[bot]"), "id": 9_000_001, "type": "Bot" })
}

pub fn comment_json(c: &Comment) -> Value {
    let app = (c.user == format!("{APP_SLUG}[bot]"))
        .then(|| json!({ "id": APP_ID.parse::<i64>().unwrap_or_default(), "slug": APP_SLUG }));
    json!({ "id": c.id, "body": c.body, "user": { "login": c.user, "id": c.user_id, "type": if c.user.ends_with("[bot]") { "Bot" } else { "User" } },
            "performed_via_github_app": app,
            "html_url": format!("https://github.com/{}/issues/{}#issuecomment-{}", c.repo, c.issue, c.id) })
}

fn route(
    ctx: &Ctx,
    headers: &HeaderMap,
    method: &str,
    op: &openapi::Operation,
    query: &[(String, String)],
    body: Option<&Value>,
) -> Response {
    let mut m = ctx.model.lock().unwrap_or_else(|p| p.into_inner());
    let p = &op.path_params;
    let param = |k: &str| p.get(k).cloned().unwrap_or_default();
    let num = |k: &str| p.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    // The manifest conversion takes no credentials: its one-time code is the credential.
    if op.operation_id == "apps/create-from-manifest" {
        return manifest_conversion(&mut m, &ctx.base, &param("code"));
    }
    let app_endpoint = op.template.starts_with("/app");
    let caller = match authenticate(&m, headers, app_endpoint) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let repo = format!("{}/{}", param("owner"), param("repo"));
    if op.template.starts_with("/repos/") {
        match m.repos.get(&repo) {
            Some(inst) if Some(*inst) == caller => {}
            _ => return not_found(), // not installed there: GitHub says 404
        }
    }
    let b = body.cloned().unwrap_or(Value::Null);
    let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let path = op.template.clone();
    let concrete = {
        let mut t = op.template.clone();
        for (k, v) in p {
            t = t.replace(&format!("{{{k}}}"), v);
        }
        t
    };
    match op.operation_id.as_str() {
        "apps/get-authenticated" => answer(
            200,
            json!({ "id": APP_ID.parse::<i64>().unwrap_or_default(), "slug": APP_SLUG, "name": "shipgate test" }),
        ),
        "apps/create-installation-access-token" => {
            let inst = num("installation_id");
            if !m.installations.contains(&inst) {
                return not_found();
            }
            m.token_requests += 1;
            let token = format!("ghs_fake{}_{}", inst, m.token_requests);
            let exp = now_of(&m) + m.token_lifetime_s;
            m.tokens.insert(token.clone(), (inst, exp));
            answer(
                201,
                json!({ "token": token, "expires_at": rfc3339(exp), "permissions": {}, "repository_selection": "selected" }),
            )
        }
        "apps/list-webhook-deliveries" => {
            let mut list: Vec<Value> = m
                .hook_deliveries
                .iter()
                .rev()
                .map(|d| json!({ "id": d.id, "guid": d.guid, "delivered_at": rfc3339(now_s()), "redelivery": false, "duration": 0.1,
                                  "status": if (200..300).contains(&d.status_code) { "OK" } else { "failed" }, "status_code": d.status_code,
                                  "event": d.event, "action": null, "installation_id": null, "repository_id": null }))
                .collect();
            list.truncate(10_000);
            paged(list, query, &ctx.base, &concrete, None)
        }
        "apps/redeliver-webhook-delivery" => {
            let id = num("delivery_id");
            if !m.hook_deliveries.iter().any(|d| d.id == id) {
                return not_found();
            }
            m.redelivery_requests.push(id);
            answer(202, json!({}))
        }
        "issues/list-comments" => {
            let n = num("issue_number");
            let list: Vec<Value> =
                m.comments.iter().filter(|c| c.repo == repo && c.issue == n).map(comment_json).collect();
            paged(list, query, &ctx.base, &concrete, None)
        }
        "issues/create-comment" => {
            let n = num("issue_number");
            let id = m.id();
            let c = Comment {
                id,
                user_id: 9_000_001,
                repo: repo.clone(),
                issue: n,
                body: s("body"),
                user: format!("{APP_SLUG}[bot]"),
                writes: 1,
                seen_writes: 0,
                reactions: vec![],
            };
            let j = comment_json(&c);
            m.comments.push(c);
            answer(201, j)
        }
        "issues/update-comment" => {
            let id = num("comment_id");
            match m.comments.iter_mut().find(|c| c.id == id && c.repo == repo) {
                Some(c) => {
                    c.body = s("body");
                    c.writes += 1;
                    answer(200, comment_json(c))
                }
                None => not_found(),
            }
        }
        "issues/delete-comment" => {
            let id = num("comment_id");
            m.comments.retain(|c| c.id != id);
            answer(204, Value::Null)
        }
        "reactions/create-for-issue-comment" => {
            let id = num("comment_id");
            let content = s("content");
            match m.comments.iter_mut().find(|c| c.id == id && c.repo == repo) {
                Some(c) => {
                    let existed = c.reactions.contains(&content);
                    if !existed {
                        c.reactions.push(content.clone());
                    }
                    answer(if existed { 200 } else { 201 }, json!({ "id": id * 10, "content": content, "user": bot() }))
                }
                None => not_found(),
            }
        }
        "issues/add-labels" => {
            let n = num("issue_number");
            let labels: Vec<String> = b["labels"]
                .as_array()
                .map(|a| a.iter().filter_map(|l| l.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let issue = m.issues.entry((repo.clone(), n)).or_insert_with(|| Issue {
                number: n,
                state: "open".into(),
                ..Issue::default()
            });
            for l in labels {
                if !issue.labels.contains(&l) {
                    issue.labels.push(l);
                }
            }
            let out: Vec<Value> = issue.labels.iter().map(|l| json!({ "name": l })).collect();
            answer(200, Value::Array(out))
        }
        "issues/remove-label" => {
            let n = num("issue_number");
            let name = param("name");
            match m.issues.get_mut(&(repo.clone(), n)) {
                Some(i) if i.labels.contains(&name) => {
                    i.labels.retain(|l| *l != name);
                    answer(200, Value::Array(i.labels.iter().map(|l| json!({ "name": l })).collect()))
                }
                _ => answer(404, json!({ "message": "Label does not exist" })),
            }
        }
        "issues/add-assignees" => {
            let n = num("issue_number");
            let who: Vec<String> = b["assignees"]
                .as_array()
                .map(|a| a.iter().filter_map(|l| l.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let issue = m.issues.entry((repo.clone(), n)).or_default();
            for w in who {
                if !issue.assignees.contains(&w) {
                    issue.assignees.push(w);
                }
            }
            answer(201, json!({ "number": n }))
        }
        "issues/create" => {
            let n = m.issues.keys().filter(|(r, _)| *r == repo).map(|(_, n)| *n).max().unwrap_or(0) + 1;
            let labels = b["labels"]
                .as_array()
                .map(|a| a.iter().filter_map(|l| l.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            // As GitHub: assignees without push access are silently dropped.
            let assignees: Vec<String> = b["assignees"]
                .as_array()
                .map(|a| a.iter().filter_map(|l| l.as_str().map(str::to_string)).collect::<Vec<String>>())
                .unwrap_or_default()
                .into_iter()
                .filter(|who| {
                    m.permissions
                        .get(&(repo.clone(), who.clone()))
                        .is_some_and(|p| matches!(p.as_str(), "write" | "maintain" | "admin"))
                })
                .collect();
            m.issues.insert(
                (repo.clone(), n),
                Issue {
                    number: n,
                    title: s("title"),
                    body: s("body"),
                    state: "open".into(),
                    labels,
                    assignees,
                    author: format!("{APP_SLUG}[bot]"),
                    ..Issue::default()
                },
            );
            answer(201, json!({ "number": n, "id": n + 500_000, "title": s("title") }))
        }
        "issues/list-for-repo" => {
            let label = query.iter().find(|(k, _)| k == "labels").map(|(_, v)| v.clone());
            let list: Vec<Value> = m
                .issues
                .iter()
                .filter(|((r, _), i)| *r == repo && label.as_ref().is_none_or(|l| i.labels.contains(l)))
                .map(|(_, i)| {
                    let by_app = i.author == format!("{APP_SLUG}[bot]");
                    json!({ "number": i.number, "title": i.title, "body": i.body, "state": i.state,
                            "user": { "login": i.author, "id": if by_app { 9_000_001 } else { i.author_id },
                                      "type": if by_app { "Bot" } else { "User" } },
                            "performed_via_github_app": by_app.then(|| json!({ "id": APP_ID.parse::<i64>().unwrap_or_default(), "slug": APP_SLUG })) })
                })
                .collect();
            paged(list, query, &ctx.base, &concrete, None)
        }
        "issues/update" => {
            let n = num("issue_number");
            match m.issues.get_mut(&(repo.clone(), n)) {
                Some(i) => {
                    if let Some(t) = b["title"].as_str() {
                        i.title = t.into();
                    }
                    if let Some(t) = b["body"].as_str() {
                        i.body = t.into();
                    }
                    if let Some(t) = b["state"].as_str() {
                        i.state = t.into();
                    }
                    answer(200, json!({ "number": n, "state": i.state }))
                }
                None => not_found(),
            }
        }
        "checks/create" => {
            let id = m.id();
            let run = CheckRun { id, repo: repo.clone(), head_sha: s("head_sha"), body: b.clone() };
            m.check_runs.push(run);
            answer(
                201,
                json!({ "id": id, "head_sha": s("head_sha"), "name": s("name"), "external_id": s("external_id") }),
            )
        }
        "checks/update" => {
            let id = num("check_run_id");
            match m.check_runs.iter_mut().find(|r| r.id == id && r.repo == repo) {
                Some(r) => {
                    if let (Some(dst), Some(src)) = (r.body.as_object_mut(), b.as_object()) {
                        for (k, v) in src {
                            dst.insert(k.clone(), v.clone());
                        }
                    }
                    answer(200, json!({ "id": id, "head_sha": r.head_sha }))
                }
                None => not_found(),
            }
        }
        "checks/list-for-ref" => {
            let sha = param("ref");
            let name = query.iter().find(|(k, _)| k == "check_name").map(|(_, v)| v.clone());
            let list: Vec<Value> = m
                .check_runs
                .iter()
                .filter(|r| {
                    r.repo == repo
                        && r.head_sha == sha
                        && name.as_ref().is_none_or(|n| r.body["name"].as_str() == Some(n))
                })
                .map(|r| {
                    let mut v = r.body.clone();
                    v["id"] = json!(r.id);
                    v
                })
                .collect();
            paged(list, query, &ctx.base, &concrete, Some("check_runs"))
        }
        "repos/create-deployment" => {
            let id = m.id();
            let mut d = b.clone();
            d["id"] = json!(id);
            d["creator"] = bot();
            d["performed_via_github_app"] =
                json!({ "id": APP_ID.parse::<i64>().unwrap_or_default(), "slug": APP_SLUG });
            d["sha"] = d["ref"].clone(); // the tests deploy SHAs: GitHub resolves the ref to this
            m.deployments.push((repo.clone(), d.clone()));
            answer(201, d)
        }
        "repos/list-deployments" => {
            let q = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
            let (sha, env) = (q("sha"), q("environment"));
            let list: Vec<Value> = m
                .deployments
                .iter()
                .filter(|(r, d)| {
                    *r == repo
                        && sha.as_ref().is_none_or(|s| d["sha"].as_str() == Some(s.as_str()))
                        && env.as_ref().is_none_or(|e| d["environment"].as_str() == Some(e.as_str()))
                })
                .map(|(_, d)| d.clone())
                .rev()
                .collect();
            paged(list, query, &ctx.base, &concrete, None)
        }
        "repos/list-deployment-statuses" => {
            let id = num("deployment_id");
            let list: Vec<Value> = m
                .deployment_statuses
                .iter()
                .filter(|(r, d, _)| *r == repo && *d == id)
                .map(|(_, _, s)| s.clone())
                .rev()
                .collect();
            paged(list, query, &ctx.base, &concrete, None)
        }
        "repos/create-deployment-status" => {
            let id = num("deployment_id");
            m.deployment_statuses.push((repo.clone(), id, b.clone()));
            answer(201, json!({ "id": id * 10, "state": s("state") }))
        }
        "actions/re-run-workflow" => {
            m.reruns.push((repo.clone(), num("run_id")));
            answer(201, json!({}))
        }
        "actions/review-custom-gates-for-run" => {
            let run = num("run_id");
            m.protection_reviews.push((repo.clone(), run, b.clone()));
            answer(204, Value::Null)
        }
        "pulls/get" => {
            let n = num("pull_number");
            match m.pulls.get(&(repo.clone(), n)) {
                Some(pr) => answer(
                    200,
                    // Like GitHub, an open PR has a `merge_commit_sha` too: a test merge, never to be
                    // taken for the merge.
                    json!({ "number": n, "state": if pr.state == "merged" { "closed" } else { pr.state.as_str() }, "merged": pr.state == "merged",
                            "merge_commit_sha": pr.merge_commit.clone().unwrap_or_else(|| "f".repeat(40)),
                            "merged_at": pr.merge_commit.as_ref().map(|_| "2026-12-01T10:00:00Z"),
                            "head": { "sha": pr.head_sha, "ref": "feature" }, "base": { "ref": pr.base.clone().unwrap_or_else(|| "main".into()), "repo": { "default_branch": "main" } }, "user": { "id": pr.author_id, "login": pr.author, "type": "User" },
                            "changed_files": pr.changed_files.unwrap_or(pr.files.len() + pr.renames.len()) }),
                ),
                None => not_found(),
            }
        }
        "repos/list-pull-requests-associated-with-commit" => {
            let sha = param("commit_sha");
            let list: Vec<Value> = m
                .pulls
                .iter()
                .filter(|((r, _), p)| {
                    *r == repo && (p.head_sha == sha || p.merge_commit.as_deref() == Some(sha.as_str()))
                })
                .map(|((_, n), p)| {
                    json!({ "number": n, "state": if p.state == "merged" { "closed" } else { p.state.as_str() },
                            "merge_commit_sha": p.merge_commit, "head": { "sha": p.head_sha } })
                })
                .collect();
            paged(list, query, &ctx.base, &concrete, None)
        }
        "pulls/list-files" => {
            let n = num("pull_number");
            match m.pulls.get(&(repo.clone(), n)) {
                Some(pr) => {
                    let mut list: Vec<Value> =
                        pr.files.iter().map(|f| json!({ "filename": f, "status": "modified" })).collect();
                    list.extend(
                        pr.renames.iter().map(
                            |(new, old)| json!({ "filename": new, "previous_filename": old, "status": "renamed" }),
                        ),
                    );
                    paged(list, query, &ctx.base, &concrete, None)
                }
                None => not_found(),
            }
        }
        "pulls/list-commits" => {
            let n = num("pull_number");
            match m.pulls.get(&(repo.clone(), n)) {
                Some(pr) => {
                    let people = std::iter::once((pr.author_id, pr.author.clone())).chain(pr.pushers.iter().cloned());
                    let list = people
                        .enumerate()
                        .map(|(i, (id, login))| {
                            let who = json!({ "id": id, "login": login, "type": "User" });
                            let mut commit = json!({ "message": "change" });
                            if let Some(at) = pr.committed_at.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
                                let at = at + chrono::Duration::minutes(i as i64);
                                commit["author"] = json!({ "name": login, "email": format!("{login}@example.com"),
                                                           "date": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) });
                            }
                            json!({ "sha": format!("{:040x}", i + 1), "author": who, "committer": who, "commit": commit })
                        })
                        .collect();
                    paged(list, query, &ctx.base, &concrete, None)
                }
                None => not_found(),
            }
        }
        "pulls/list-reviews" => {
            let n = num("pull_number");
            match m.pulls.get(&(repo.clone(), n)) {
                Some(pr) => {
                    let list = pr
                        .reviews
                        .iter()
                        .map(|(u, st)| json!({ "user": { "id": u, "login": format!("u{u}") }, "state": st }))
                        .collect();
                    paged(list, query, &ctx.base, &concrete, None)
                }
                None => not_found(),
            }
        }
        "repos/get-combined-status-for-ref" => {
            let sha = param("ref");
            let list: Vec<Value> = m
                .statuses
                .iter()
                .filter(|(r, s, _, _)| *r == repo && *s == sha)
                .map(|(_, _, c, st)| json!({ "context": c, "state": st }))
                .collect();
            answer(200, json!({ "state": "pending", "sha": sha, "statuses": list, "total_count": list.len() }))
        }
        "teams/list-members-in-org" => {
            let key = (param("org"), param("team_slug"));
            match m.teams.get(&key) {
                Some(members) => {
                    let list =
                        members.iter().map(|(id, login)| json!({ "id": id, "login": login, "type": "User" })).collect();
                    paged(list, query, &ctx.base, &concrete, None)
                }
                None => not_found(),
            }
        }
        "repos/list-collaborators" => {
            let list = m
                .permissions
                .iter()
                .filter(|((r, _), _)| *r == repo)
                .map(|((_, login), role)| {
                    let rank = |r: &str| match r {
                        "admin" => 4,
                        "maintain" => 3,
                        "write" => 2,
                        "triage" => 1,
                        _ => 0,
                    };
                    let have = rank(role);
                    json!({
                        "login": login, "id": 1, "type": "User", "role_name": role,
                        "permissions": {
                            "admin": have >= 4, "maintain": have >= 3, "push": have >= 2, "triage": have >= 1, "pull": true
                        }
                    })
                })
                .collect();
            paged(list, query, &ctx.base, &concrete, None)
        }
        "repos/get" => {
            let public = m.public_repos.contains(&repo);
            let (owner, name) = repo.split_once('/').unwrap_or((repo.as_str(), ""));
            answer(
                200,
                json!({
                    "id": 1, "name": name, "full_name": repo, "owner": { "login": owner },
                    "private": !public, "visibility": if public { "public" } else { "private" },
                    "default_branch": "main"
                }),
            )
        }
        "repos/get-collaborator-permission-level" => {
            let role = m.permissions.get(&(repo.clone(), param("username"))).cloned().unwrap_or_else(|| "read".into());
            let perm = match role.as_str() {
                "maintain" => "write",
                "triage" => "read",
                r => r,
            };
            answer(200, json!({ "permission": perm, "role_name": role, "user": { "login": param("username") } }))
        }
        "repos/get-content" => match m.files.get(&(repo.clone(), param("path"))) {
            Some(text) => {
                // Like GitHub: the blob SHA follows the content, the entity tag follows the
                // answer, and `If-None-Match` with the current tag gets a bodiless 304.
                let blob = {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    text.hash(&mut h);
                    format!("blob{:016x}", h.finish())
                };
                let etag = format!("\"{blob}\"");
                if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
                    let mut r = StatusCode::NOT_MODIFIED.into_response();
                    r.headers_mut().insert("etag", HeaderValue::from_str(&etag).expect("etag"));
                    return r;
                }
                let content = base64(text.as_bytes());
                let mut r = answer(
                    200,
                    json!({ "type": "file", "sha": blob, "encoding": "base64", "content": content, "path": param("path") }),
                );
                r.headers_mut().insert("etag", HeaderValue::from_str(&etag).expect("etag"));
                r
            }
            None => not_found(),
        },
        "users/get-by-username" => match m.users.get(&param("username").to_ascii_lowercase()) {
            Some(id) => {
                let email = m.emails.get(&param("username").to_ascii_lowercase());
                answer(200, json!({ "id": id, "login": param("username"), "type": "User", "email": email }))
            }
            None => not_found(),
        },
        "issues/get" => {
            let n = num("issue_number");
            match m.issues.get(&(repo.clone(), n)) {
                Some(i) => answer(200, issue_json(i)),
                None => not_found(),
            }
        }
        "actions/list-jobs-for-workflow-run-attempt" | "pulls/list" => {
            ci_route(&m, op, query, &ctx.base, &concrete, &repo)
        }
        other => {
            let _ = (method, path);
            answer(501, json!({ "message": format!("fake GitHub does not implement {other}") }))
        }
    }
}

/// Routes for CI incidents: the jobs of a run attempt, and pull requests by head label.
fn ci_route(
    m: &Model,
    op: &openapi::Operation,
    query: &[(String, String)],
    base: &str,
    concrete: &str,
    repo: &str,
) -> Response {
    let num = |k: &str| op.path_params.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let q = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
    match op.operation_id.as_str() {
        "actions/list-jobs-for-workflow-run-attempt" => {
            let jobs =
                m.run_jobs.get(&(repo.to_string(), num("run_id"), num("attempt_number"))).cloned().unwrap_or_default();
            paged(jobs, query, base, concrete, Some("jobs"))
        }
        _ => {
            let (head, state) = (q("head"), q("state").unwrap_or_else(|| "open".into()));
            let list: Vec<Value> = m
                .pulls
                .iter()
                .filter(|((r, n), p)| {
                    r == repo
                        && (state == "all" || p.state == state)
                        && head.as_ref().is_none_or(|h| m.pull_heads.get(&(r.clone(), *n)) == Some(h))
                })
                .map(|((r, n), p)| {
                    let label = m.pull_heads.get(&(r.clone(), *n)).cloned().unwrap_or_default();
                    json!({ "number": n, "state": p.state, "head": { "sha": p.head_sha, "label": label,
                            "ref": label.split_once(':').map(|x| x.1).unwrap_or_default() },
                            "user": { "id": p.author_id, "login": p.author, "type": "User" } })
                })
                .collect();
            paged(list, query, base, concrete, None)
        }
    }
}

/// A job of a run attempt: (name, conclusion, [(step, conclusion)]).
pub type JobSpec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

impl FakeGitHub {
    /// The jobs of a run attempt: (name, conclusion, [(step, conclusion)]), in GitHub's shape.
    pub fn run_jobs(&self, repo: &str, run_id: i64, attempt: i64, jobs: &[JobSpec]) {
        let mut m = self.model();
        let mut list = Vec::new();
        for (name, conclusion, steps) in jobs {
            let id = m.id();
            let steps: Vec<Value> = steps
                .iter()
                .enumerate()
                .map(|(i, (s, c))| json!({ "name": s, "status": "completed", "conclusion": c, "number": i + 1 }))
                .collect();
            list.push(json!({
                "id": id, "run_id": run_id, "run_attempt": attempt, "node_id": format!("J{id}"), "head_sha": "",
                "url": format!("https://api.github.com/repos/{repo}/actions/jobs/{id}"),
                "html_url": format!("https://github.com/{repo}/actions/runs/{run_id}/job/{id}"),
                "run_url": format!("https://api.github.com/repos/{repo}/actions/runs/{run_id}"),
                "status": "completed", "conclusion": conclusion, "created_at": "2026-01-01T00:00:00Z",
                "started_at": "2026-01-01T00:00:00Z", "completed_at": "2026-01-01T00:01:00Z", "name": name,
                "steps": steps, "check_run_url": "", "labels": ["ubuntu-latest"], "runner_id": 1,
                "runner_name": "runner", "runner_group_id": 1, "runner_group_name": "default",
                "workflow_name": "test", "head_branch": "main",
            }));
        }
        m.run_jobs.insert((repo.to_string(), run_id, attempt), list);
    }

    /// Sets a pull request's head label (`owner:branch`), for the `head` filter of `pulls/list`.
    pub fn pull_head(&self, repo: &str, number: i64, label: &str) {
        self.model().pull_heads.insert((repo.to_string(), number), label.to_string());
    }

    /// The issues the App opened with `label`, by number.
    pub fn issues_labelled(&self, repo: &str, label: &str) -> Vec<Issue> {
        self.model()
            .issues
            .iter()
            .filter(|((r, _), i)| r == repo && i.labels.iter().any(|l| l == label))
            .map(|(_, i)| i.clone())
            .collect()
    }
}

/// GitHub's web pages the tests need: `POST /settings/apps/new` and
/// `POST /organizations/{org}/settings/apps/new` with the form field `manifest` and the query
/// `state` (GitHub's App manifest flow). A real GitHub shows the App and a button to confirm; this
/// one records the registration, mints a one-time code and sends the browser straight back to the
/// manifest's `redirect_url` with `code` and `state`. None for any other request (the API).
fn web_page(ctx: &Ctx, method: &str, path: &str, query: Option<&str>, body: &[u8]) -> Option<Response> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let org = match segments.as_slice() {
        ["settings", "apps", "new"] => None,
        ["organizations", org, "settings", "apps", "new"] => Some(org.to_string()),
        _ => return None,
    };
    let mut m = ctx.model.lock().unwrap_or_else(|p| p.into_inner());
    let refuse = |m: &mut Model, why: String| {
        m.violations.push(format!("{method} {path}: {why}"));
        Some((StatusCode::UNPROCESSABLE_ENTITY, why).into_response())
    };
    if method != "POST" {
        return refuse(&mut m, "the manifest flow posts its form".into());
    }
    let form = query_pairs(Some(&String::from_utf8_lossy(body)));
    let Some(manifest) = form.iter().find(|(k, _)| k == "manifest").map(|(_, v)| v.clone()) else {
        return refuse(&mut m, "no `manifest` form field".into());
    };
    let manifest: Value = match serde_json::from_str(&manifest) {
        Ok(v) => v,
        Err(e) => return refuse(&mut m, format!("the manifest is not JSON: {e}")),
    };
    // What GitHub needs of a manifest: an App's URL, and, for the flow, where to send the browser back.
    let redirect = manifest["redirect_url"].as_str().unwrap_or_default().to_string();
    if !(redirect.starts_with("http://") || redirect.starts_with("https://")) || manifest["url"].as_str().is_none() {
        return refuse(&mut m, format!("the manifest has no url or redirect_url: {manifest}"));
    }
    let state = query_pairs(query).into_iter().find(|(k, _)| k == "state").map(|(_, v)| v).unwrap_or_default();
    let code = format!("fakecode{}", m.id());
    let webhook_secret = format!("{:016x}{:016x}{:08x}", fastrand::u64(..), fastrand::u64(..), fastrand::u32(..));
    m.app_registrations.push(AppRegistration {
        org,
        manifest,
        state: state.clone(),
        code: code.clone(),
        webhook_secret,
        converted: false,
    });
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let location = format!("{redirect}{sep}code={}&state={}", percent_encode(&code), percent_encode(&state));
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut().insert("location", HeaderValue::from_str(&location).expect("location"));
    Some(r)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `POST /app-manifests/{code}/conversions`: the App registered with `code`, once, as GitHub
/// answers it (its documented example, with this App's id, slug, owner, permissions and events,
/// the test App's private key and the webhook secret made at registration). The answer is
/// checked against the response schema like the App's requests are against theirs.
fn manifest_conversion(m: &mut Model, base: &str, code: &str) -> Response {
    let Some(reg) = m.app_registrations.iter_mut().find(|r| r.code == code && !r.converted) else {
        return not_found();
    };
    reg.converted = true;
    let reg = reg.clone();
    let spec = Spec::github();
    let mut v = spec.document()["components"]["examples"]["integration-from-manifest"]["value"].clone();
    let owner = reg.org.clone().unwrap_or_else(|| WEB_USER.to_string());
    v["id"] = json!(APP_ID.parse::<i64>().unwrap_or_default());
    v["slug"] = json!(APP_SLUG);
    v["name"] = reg.manifest["name"].clone();
    v["owner"]["login"] = json!(owner);
    v["owner"]["type"] = json!(if reg.org.is_some() { "Organization" } else { "User" });
    v["html_url"] = json!(format!("{base}/apps/{APP_SLUG}"));
    v["permissions"] = reg.manifest["default_permissions"].clone();
    v["events"] = reg.manifest["default_events"].clone();
    v["pem"] = json!(private_key_pem());
    v["webhook_secret"] = json!(reg.webhook_secret);
    for (k, value) in &m.conversion_overrides {
        v[k.as_str()] = value.clone();
    }
    if let Some(schema) = spec.response_schema("apps/create-from-manifest", 201) {
        for p in spec.validate_value(schema, &v, false) {
            m.violations.push(format!("the fake's own answer to apps/create-from-manifest: {p}"));
        }
    }
    answer(201, v)
}
