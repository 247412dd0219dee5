//! A repository with a deployment-request policy, the App, and the fake GitHub: the scenario
//! harness shared by the request and deployment tests (real corpus payloads, edited and signed).
#![allow(dead_code)]

use std::time::Duration;

use crate::common::{self, TestApp, TestDb, fixture};
use crate::fake_github::{self, FakeGitHub};
use serde_json::{Value, json};
use shipgate::config::Config;
use shipgate::github::client::GithubConfig;
use shipgate::server::Options;
use shipgate::store::{Db, outbox};

pub const REPO: &str = "acme/app";
pub const REPO_ID: i64 = 186853002;
pub const INST: i64 = 1;
pub const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
pub const SHA2: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2";

pub const ALICE: (i64, &str) = (101, "alice"); // pm (by name)
pub const BOB: (i64, &str) = (201, "bob"); // backend lead (team)
pub const CAROL: (i64, &str) = (401, "carol"); // requester
pub const DAVE: (i64, &str) = (301, "dave"); // PR author
pub const EVE: (i64, &str) = (501, "eve"); // nobody

pub const POLICY: &str = r#"
label: DEPLOYMENT_REQUEST
roles:
  pm:            { users: [alice], teams: [acme/product] }
  backend-lead:  { teams: [acme/backend-leads] }
  frontend-lead: { teams: [acme/frontend-leads] }
environments:
  production:
    approvals:
      - role: pm
      - role: backend-lead
        when_paths: ["apps/backend/**"]
      - role: frontend-lead
        when_paths: ["apps/frontend/**"]
    require_checks: all
    allow_self_approval: false
    max_rollback_minutes: 5
  staging:
    approvals: []
"#;

pub fn body(env: &str, pr: &str) -> String {
    format!(
        "CHANGE REQUEST:\n- Service/component: api\n- Environment: {env}\n- Reason: new endpoint\n\nIMPACT ANALYSIS:\n\
         - Downtime: none\n- Rollback time: 3 min\n- Dependencies: none\n- Data migration: none\n\nIMPLEMENTATION:\n\
         1. Code changes {pr}\n4. Deployment steps: merge and deploy\n5. Verification: smoke tests\n\
         6. Rollback plan: revert the PR and redeploy\n"
    )
}

/// A corpus payload (`tests/fixtures`) re-pointed at the test repository and installation.
pub fn payload(name: &str) -> Value {
    let mut v: Value = serde_json::from_str(&fixture(name)).expect("fixture");
    v["installation"] = json!({ "id": INST });
    v["repository"]["id"] = json!(REPO_ID);
    v["repository"]["full_name"] = json!(REPO);
    v["repository"]["name"] = json!("app");
    v["repository"]["owner"]["login"] = json!("acme");
    v
}

/// A policy whose production needs the pm only and deploys in `mode` (SPEC §3.5).
pub fn deploy_policy(mode: &str) -> String {
    format!(
        r#"
label: DEPLOYMENT_REQUEST
roles:
  pm: {{ users: [alice] }}
  backend-lead: {{ teams: [acme/backend-leads] }}
environments:
  production:
    approvals:
      - role: pm
    require_checks: all
    deploy: {mode}
  staging:
    approvals: []
"#
    )
}

/// A `deployment_status` payload made by the team's pipeline: the deployment and its status
/// created by GitHub Actions (a deployment someone makes with their own token is never evidence).
pub fn by_actions(v: &mut Value) {
    for k in ["deployment", "deployment_status"] {
        v[k]["creator"] = fake_github::actions_creator();
        v[k]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    }
}

/// The App's settings for acting on `gh`: App credentials and its URL.
pub fn app_config(db: &TestDb, gh: &FakeGitHub) -> Config {
    let mut cfg = db.config();
    cfg.github = Some(fake_github::app_credentials());
    cfg.github_api_url = gh.url.clone();
    cfg
}

/// The GitHub client as tests want it: quick retries, no spacing between mutations.
pub fn fast_github(url: &str) -> GithubConfig {
    let mut g = GithubConfig::new(url);
    g.retry_base = Duration::from_millis(10);
    g.mutation_spacing = Duration::ZERO;
    g
}

/// Waits until the inbox and the outbox are worked off, three times over (what one delivery
/// sends to GitHub can bring the next delivery, and its actions).
pub async fn settle(db: &Db) {
    for _ in 0..3 {
        // 40 s: display-only news folded in late (a loaded machine works off a storm slowly) is
        // due up to the storm tests' 15 s refresh deadline after it came, plus the verdict's 10 s.
        common::drain(db, Duration::from_secs(40)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = outbox::stats(db).await.expect("stats");
            if s.pending == 0 && s.running == 0 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "outbox not drained");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub struct World {
    pub gh: FakeGitHub,
    pub app: TestApp,
    pub n: std::sync::atomic::AtomicU32,
}

impl World {
    pub async fn new(db: &TestDb) -> World {
        World::with_policy(db, POLICY).await
    }

    /// A world whose repository has `policy` as its `.github/shipgate.yml`.
    pub async fn with_policy(db: &TestDb, policy: &str) -> World {
        World::with_config(db, policy, |_| {}).await
    }

    /// As `with_policy`, with the App's settings changed by `tweak`.
    pub async fn with_config(db: &TestDb, policy: &str, tweak: impl FnOnce(&mut Config)) -> World {
        let gh = FakeGitHub::start().await;
        gh.install(INST, &[REPO]);
        gh.team("acme", "backend-leads", &[BOB]).team("acme", "product", &[]).team("acme", "frontend-leads", &[]);
        gh.file(REPO, ".github/shipgate.yml", policy);
        for (id, login) in [ALICE, BOB, CAROL, DAVE, EVE] {
            gh.permission(REPO, login, "write");
            gh.user(login, id);
        }
        gh.pull(REPO, 12, DAVE, SHA, &["apps/backend/api.rs"]);
        let opts = Options { github: Some(fast_github(&gh.url)), ..Options::default() };
        let mut cfg = app_config(db, &gh);
        tweak(&mut cfg);
        let app = TestApp::start_with(cfg, opts).await;
        World { gh, app, n: std::sync::atomic::AtomicU32::new(0) }
    }

    /// A delivery id, unique in the process (several worlds may share a database).
    pub fn id(&self) -> String {
        static ALL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("d-{}", ALL.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    }

    pub fn base(&self, name: &str) -> Value {
        payload(name)
    }

    /// The request issue #5 as the fake holds it, and an `issues.ACTION` delivery about it.
    pub async fn issue_event(&self, action: &str, body: &str, labelled: bool) {
        self.issue_event_by(CAROL, action, body, labelled).await
    }

    pub async fn issue_event_by(&self, author: (i64, &str), action: &str, body: &str, labelled: bool) {
        {
            let mut m = self.gh.model();
            let i = m.issues.entry((REPO.to_string(), 5)).or_default();
            i.number = 5;
            i.title = "Deploy api".into();
            i.body = body.into();
            i.state = "open".into();
            i.author_id = author.0;
            i.author = author.1.into();
            if labelled && !i.labels.iter().any(|l| l == "DEPLOYMENT_REQUEST") {
                i.labels.push("DEPLOYMENT_REQUEST".into());
            }
        }
        let mut v = self.base("issues.labeled.0");
        v["action"] = json!(action);
        let issue = fake_github::issue_json(&self.gh.model().issues[&(REPO.to_string(), 5)]);
        v["issue"] = issue;
        v["label"] = json!({ "name": "DEPLOYMENT_REQUEST" });
        assert_eq!(self.app.deliver("issues", &self.id(), &v.to_string()).await, 202);
    }

    /// A comment by `who` on #5; returns its id.
    pub async fn comment(&self, who: (i64, &str), text: &str) -> i64 {
        self.comment_event(who, text, "created", None).await
    }

    pub async fn comment_event(&self, who: (i64, &str), text: &str, action: &str, id: Option<i64>) -> i64 {
        let id = id.unwrap_or_else(|| self.gh.human_comment_by(REPO, 5, who, text));
        let fixture = match action {
            "edited" => "issue_comment.edited.0",
            "deleted" => "issue_comment.deleted.0",
            _ => "issue_comment.created.0",
        };
        let mut v = self.base(fixture);
        v["issue"] = fake_github::issue_json(&self.gh.model().issues[&(REPO.to_string(), 5)]);
        v["comment"]["id"] = json!(id);
        v["comment"]["body"] = json!(text);
        let kind = if who.1.ends_with("[bot]") { "Bot" } else { "User" };
        v["comment"]["user"] = json!({ "id": who.0, "login": who.1, "type": kind });
        v["sender"] = json!({ "id": who.0, "login": who.1, "type": kind });
        assert_eq!(self.app.deliver("issue_comment", &self.id(), &v.to_string()).await, 202);
        id
    }

    /// A comment by `who` on #5 that GitHub says was written at `created_at` (Unix ms): approvals
    /// and break-glass count from when their comment was written. Returns its id.
    pub async fn comment_written_at(&self, who: (i64, &str), text: &str, created_at: i64) -> i64 {
        let id = self.gh.human_comment_by(REPO, 5, who, text);
        let mut v = self.base("issue_comment.created.0");
        v["issue"] = fake_github::issue_json(&self.gh.model().issues[&(REPO.to_string(), 5)]);
        v["comment"]["id"] = json!(id);
        v["comment"]["body"] = json!(text);
        v["comment"]["created_at"] = json!(common::rfc3339(created_at));
        v["comment"]["user"] = json!({ "id": who.0, "login": who.1, "type": "User" });
        v["sender"] = json!({ "id": who.0, "login": who.1, "type": "User" });
        assert_eq!(self.app.deliver("issue_comment", &self.id(), &v.to_string()).await, 202);
        id
    }

    /// Workflow run `run` waiting on the App's protection rule for `environment` and `sha` (a
    /// `deployment_protection_rule.requested` delivery, on `main`).
    pub async fn protection_rule(&self, run: i64, environment: &str, sha: &str) {
        let mut v = self.base("deployment_protection_rule.requested.0");
        v["environment"] = json!(environment);
        v["sha"] = json!(sha);
        v["ref"] = json!("refs/heads/main");
        v["deployment_callback_url"] =
            json!(format!("https://api.github.com/repos/{REPO}/actions/runs/{run}/deployment_protection_rule"));
        v["deployment"]["environment"] = json!(environment);
        v["deployment"]["sha"] = json!(sha);
        let id = self.id();
        v["deployment"]["node_id"] = json!(id); // a new delivery, not a replay of the same body
        assert_eq!(self.app.deliver("deployment_protection_rule", &id, &v.to_string()).await, 202);
    }

    /// A new push to PR #12: its head moves to `sha`, and a `pull_request.synchronize` delivery.
    pub async fn push_to_pr(&self, sha: &str) {
        self.gh.push_to_pull(REPO, 12, sha);
        let mut v = self.base("pull_request.synchronize.0");
        v["number"] = json!(12);
        v["pull_request"]["number"] = json!(12);
        v["pull_request"]["head"]["sha"] = json!(sha);
        assert_eq!(self.app.deliver("pull_request", &self.id(), &v.to_string()).await, 202);
    }

    pub async fn check_completed(&self, sha: &str, name: &str, conclusion: &str) {
        self.gh.ci(REPO, sha, name, "completed", Some(conclusion));
        let mut v = self.base("check_run.completed.0");
        v["check_run"]["head_sha"] = json!(sha);
        v["check_run"]["name"] = json!(name);
        v["check_run"]["conclusion"] = json!(conclusion);
        assert_eq!(self.app.deliver("check_run", &self.id(), &v.to_string()).await, 202);
    }

    pub async fn settle(&self) {
        settle(&self.app.db).await;
    }

    /// The sticky comment's text (and the test has now read it).
    pub fn sticky(&self) -> String {
        let mine: Vec<_> = self
            .gh
            .app_comments(REPO, 5)
            .into_iter()
            .filter(|c| c.body.contains("<!-- shipgate:request -->"))
            .collect();
        assert_eq!(mine.len(), 1, "exactly one sticky comment: {mine:#?}");
        mine[0].body.clone()
    }

    /// Replies to commands (read).
    pub fn replies(&self) -> Vec<String> {
        self.gh
            .app_comments(REPO, 5)
            .into_iter()
            .filter(|c| c.body.contains("<!-- shipgate:reply-"))
            .map(|c| c.body)
            .collect()
    }

    pub fn gate(&self, sha: &str) -> (String, String) {
        let runs = self.gh.gate_checks(REPO, sha);
        assert_eq!(runs.len(), 1, "one gate check run on {sha}: {runs:?}");
        (runs[0].1.clone(), runs[0].2.clone())
    }

    /// Asserts that one of the App's replies on the request contains `needle`.
    #[track_caller]
    pub fn assert_replied(&self, needle: &str) {
        let replies = self.replies();
        assert!(replies.iter().any(|r| r.contains(needle)), "no reply contains {needle:?}: {replies:?}");
    }

    pub fn reactions(&self, comment: i64) -> Vec<String> {
        self.gh.model().comments.iter().find(|c| c.id == comment).map(|c| c.reactions.clone()).unwrap_or_default()
    }

    pub async fn done(self) {
        self.app.shutdown().await;
        self.gh.finish();
    }
}

pub fn row<'a>(comment: &'a str, gate: &str) -> &'a str {
    comment
        .lines()
        .find(|l| l.starts_with(&format!("| {gate} |")))
        .unwrap_or_else(|| panic!("no {gate} row in:\n{comment}"))
}

/// The audit entry the App writes when it approves a waiting deployment (`protection_rule` or
/// `gate_wait`), for tests that seed such an answer by hand as the App would have made it.
pub async fn seed_approved_entry(tx: &mut sqlx::Transaction<'static, sqlx::Any>, table: &str, run_id: i64, issue: i64) {
    use shipgate::store::audit;
    let entry = audit::AuditEntry {
        installation_id: INST,
        repository_id: Some(REPO_ID),
        repository: Some(REPO.into()),
        issue: Some(issue),
        kind: format!("{table}.approved"),
        actor_id: None,
        actor_login: None,
        detail: json!({ "run_id": run_id, "environment": "production", "seeded": true }),
    };
    let key = audit::AuditKey::new(shipgate::config::TEST_AUDIT_KEY);
    audit::append(tx, Some(&key), &entry, Some("seeded"), 1).await.expect("seed the audit entry");
}
