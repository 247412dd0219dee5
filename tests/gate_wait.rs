//! Deploy mode `workflow` (SPEC.md §3.5, §6; issue 13): a deploying job waits at
//! `POST /gate/wait` with its GitHub Actions OIDC token, from a fake issuer serving the test key.
//! Every bad token is refused with 401 and a reason; the answer is open, denied or waiting; the
//! composite action's script (bash, curl, jq) is run against the App.

mod common;
mod fake_github;
mod fake_oidc;
mod world;

use std::time::Duration;

use common::TestDb;
use fake_oidc::FakeIssuer;
use serde_json::{Value, json};
use world::*;

const MERGED: &str = "dddddddddddddddddddddddddddddddddddddd4d";
const RUN: i64 = 4242;

const POLICY_WORKFLOW: &str = r#"
label: DEPLOYMENT_REQUEST
roles:
  pm: { users: [alice] }
environments:
  production:
    approvals:
      - role: pm
    require_checks: all
    deploy: workflow
    branch: main
  staging:
    approvals: []
"#;

async fn world(db: &TestDb) -> (World, FakeIssuer) {
    let issuer = FakeIssuer::start().await;
    let url = issuer.url.clone();
    let w = World::with_config(db, POLICY_WORKFLOW, |cfg| {
        cfg.oidc.issuer = url;
        cfg.gate_wait_poll = Duration::from_millis(100);
    })
    .await;
    (w, issuer)
}

async fn request(w: &World) {
    w.check_completed(SHA, "build", "success").await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
}

async fn approve(w: &World) {
    w.comment(ALICE, "/approve").await;
    w.settle().await;
}

/// POST /gate/wait with `token` and `body`: (status, answer).
async fn ask(w: &World, token: &str, body: Value) -> (u16, Value) {
    let r =
        w.app.http.post(format!("{}/gate/wait", w.app.url)).bearer_auth(token).json(&body).send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn token(issuer: &FakeIssuer, sha: &str) -> String {
    fake_oidc::sign(&issuer.claims(REPO, REPO_ID, sha, Some("production"), RUN), fake_oidc::KID)
}

async fn an_approved_request_opens_the_gate_for_its_head(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    approve(&w).await;
    let (status, a) = ask(&w, &token(&issuer, SHA), json!({ "wait_seconds": 10 })).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["state"], "open", "{a}");
    assert_eq!(a["request"], 5);
    assert!(a["message"].as_str().unwrap_or_default().contains("@alice"), "{a}");
    w.sticky();
    w.done().await;
}
both_backends!(an_approved_request_opens_the_gate_for_its_head);

async fn a_job_waits_then_opens_with_the_last_approval(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    // Merged first, as teams do; the job deploying `main` asks before anyone approved.
    w.gh.merge_pull(REPO, 12, MERGED);
    let (status, a) = ask(&w, &token(&issuer, MERGED), json!({ "wait_seconds": 1 })).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["state"], "waiting", "{a}");
    assert!(a["missing"].to_string().contains("pm"), "{a}");
    // A long poll, answered when the approval is decided (not when it times out).
    let t = token(&issuer, MERGED);
    let asked = {
        let http = w.app.http.clone();
        let url = format!("{}/gate/wait", w.app.url);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = http.post(url).bearer_auth(t).json(&json!({ "wait_seconds": 60 })).send().await.expect("send");
            (started.elapsed(), r.json::<Value>().await.expect("json"))
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    approve(&w).await;
    let (took, a) = asked.await.expect("join");
    assert_eq!(a["state"], "open", "{a}");
    assert!(took < Duration::from_secs(20), "answered when decided, not at the time-out: {took:?}");
    w.sticky();
    w.done().await;
}
both_backends!(a_job_waits_then_opens_with_the_last_approval);

async fn a_denied_request_denies_the_job(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    approve(&w).await;
    w.comment(ALICE, "/deny not during the sale").await;
    w.settle().await;
    let (status, a) = ask(&w, &token(&issuer, SHA), json!({ "wait_seconds": 10 })).await;
    assert_eq!((status, a["state"].as_str()), (200, Some("denied")), "{a}");
    assert!(a["message"].as_str().unwrap_or_default().contains("not during the sale"), "{a}");
    w.sticky();
    w.done().await;
}
both_backends!(a_denied_request_denies_the_job);

async fn a_commit_no_request_covers_waits_and_says_so(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    approve(&w).await;
    let other = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    let (status, a) = ask(&w, &token(&issuer, other), json!({ "wait_seconds": 2 })).await;
    assert_eq!((status, a["state"].as_str()), (200, Some("waiting")), "{a}");
    assert!(a["missing"].to_string().contains("covers"), "{a}");
    w.sticky();
    w.done().await;
}
both_backends!(a_commit_no_request_covers_waits_and_says_so);

async fn a_run_on_another_branch_is_not_opened(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    approve(&w).await;
    let mut claims = issuer.claims(REPO, REPO_ID, SHA, Some("production"), RUN);
    claims["ref"] = json!("refs/heads/feature");
    let (status, a) = ask(&w, &fake_oidc::sign(&claims, fake_oidc::KID), json!({ "wait_seconds": 2 })).await;
    assert_eq!((status, a["state"].as_str()), (200, Some("waiting")), "{a}");
    assert!(a["missing"].to_string().contains("deploys from `main`"), "{a}");
    w.sticky();
    w.done().await;
}
both_backends!(a_run_on_another_branch_is_not_opened);

async fn every_bad_token_is_refused_with_a_reason(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    approve(&w).await;
    let good = issuer.claims(REPO, REPO_ID, SHA, Some("production"), RUN);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let now = good["iat"].as_i64().unwrap();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("no token", String::new(), 401, "no bearer token"),
        ("garbage", "not.a.jwt".into(), 401, "malformed"),
        ("alg none", fake_oidc::unsigned(&good), 401, "algorithm"),
        ("HS256 with the public key", fake_oidc::hs256_with_public_key(&good), 401, "algorithm"),
        ("unknown key", fake_oidc::sign_with_unknown_key(&good), 401, "invalid"),
        ("unknown kid", fake_oidc::sign(&good, "someone-else"), 401, "does not publish"),
        ("another audience", fake_oidc::sign(&with("aud", json!("sigstore")), fake_oidc::KID), 401, "invalid"),
        (
            "another issuer",
            fake_oidc::sign(&with("iss", json!("https://evil.example")), fake_oidc::KID),
            401,
            "invalid",
        ),
        ("expired", fake_oidc::sign(&with("exp", json!(now - 3600)), fake_oidc::KID), 401, "invalid"),
        ("not yet valid", fake_oidc::sign(&with("nbf", json!(now + 3600)), fake_oidc::KID), 401, "invalid"),
        ("issued in the future", fake_oidc::sign(&with("iat", json!(now + 3600)), fake_oidc::KID), 401, "future"),
        (
            "no environment",
            fake_oidc::sign(&issuer.claims(REPO, REPO_ID, SHA, None, RUN), fake_oidc::KID),
            403,
            "names no environment",
        ),
        (
            "a pull_request run",
            fake_oidc::sign(&with("event_name", json!("pull_request")), fake_oidc::KID),
            403,
            "pull_request",
        ),
        (
            "a repository no installation serves",
            fake_oidc::sign(&issuer.claims("evil/repo", 999, SHA, Some("production"), RUN), fake_oidc::KID),
            403,
            "no installation",
        ),
    ];
    for (what, token, status, reason) in cases {
        let mut r = w.app.http.post(format!("{}/gate/wait", w.app.url)).json(&json!({}));
        if !token.is_empty() {
            r = r.bearer_auth(token);
        }
        let r = r.send().await.expect("send");
        let got = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "{what}: {body}");
        assert!(body["reason"].as_str().unwrap_or_default().contains(reason), "{what}: {body}");
    }
    // A body naming another environment than the token's.
    let (status, a) = ask(&w, &token(&issuer, SHA), json!({ "environment": "staging" })).await;
    assert_eq!(status, 400, "{a}");
    // The keys were fetched once (an unknown kid asks again at most once a minute).
    assert_eq!(issuer.jwks_fetches(), 1);
    // None of them stored a wait.
    let waits: Vec<(i64,)> =
        sqlx::query_as("SELECT run_id FROM gate_waits").fetch_all(w.app.db.pool()).await.expect("q");
    assert!(waits.is_empty(), "{waits:?}");
    w.sticky();
    w.done().await;
}
both_backends!(every_bad_token_is_refused_with_a_reason);

async fn a_deployment_by_an_opened_run_is_the_requests(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    approve(&w).await;
    let (_, a) = ask(&w, &token(&issuer, SHA), json!({ "wait_seconds": 10 })).await;
    assert_eq!(a["state"], "open", "{a}");
    // The job deploys: GitHub Actions creates the deployment for the environment, in that run.
    let mut v = w.base("deployment_status.created.0");
    v["deployment_status"]["id"] = json!(9100);
    v["deployment"]["id"] = json!(970);
    v["deployment"]["sha"] = json!(SHA);
    v["deployment"]["environment"] = json!("production");
    v["deployment"]["payload"] = json!({});
    v["deployment"]["creator"] = fake_github::actions_creator();
    v["deployment"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["creator"] = fake_github::actions_creator();
    v["deployment_status"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["state"] = json!("success");
    v["deployment_status"]["environment"] = json!("production");
    v["deployment_status"]["created_at"] = json!("2026-12-01T10:05:00Z");
    v["workflow_run"] = json!({ "id": RUN });
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("DEPLOYED"), "{c}");
    let _ = w.gh.comments(REPO, 5);
    w.done().await;
}
both_backends!(a_deployment_by_an_opened_run_is_the_requests);

/// The composite action's script against the App: denied, then open once the denial is lifted.
async fn the_actions_script_waits_and_opens(db: &TestDb) {
    for tool in ["bash", "curl", "jq"] {
        let found = std::process::Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "{tool} is needed to run action/gate-wait.sh (on every GitHub runner; install it here)"
        );
    }
    let (w, issuer) = world(db).await;
    request(&w).await;
    issuer.hand_out(issuer.claims(REPO, REPO_ID, SHA, Some("production"), RUN));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("action/gate-wait.sh");
    let run = |timeout: u64| {
        tokio::process::Command::new("bash")
            .arg(&script)
            .env("SHIPGATE_URL", &w.app.url)
            .env("SHIPGATE_TIMEOUT_SECONDS", timeout.to_string())
            .env("SHIPGATE_POLL_SECONDS", "1")
            .env("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{}/token?api-version=2.0", issuer.url))
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-token")
            .output()
    };
    // Nobody approved: it waits, says for what, and fails at its time-out.
    let out = run(2).await.expect("run");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("waiting") && text.contains("pm"), "{text}");
    assert!(text.contains("still closed"), "{text}");
    // Approved while it waits: it opens.
    let waiting = tokio::spawn(run(60));
    tokio::time::sleep(Duration::from_millis(500)).await;
    approve(&w).await;
    let out = waiting.await.expect("join").expect("run");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("the gate is open"), "{text}");
    // Denied: it fails at once.
    w.comment(ALICE, "/deny rollback first").await;
    w.settle().await;
    let out = run(60).await.expect("run");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("denied") && text.contains("rollback first"), "{text}");
    w.sticky();
    w.done().await;
}
both_backends!(the_actions_script_waits_and_opens);
