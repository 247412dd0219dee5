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
    // The job deploys: GitHub Actions creates the deployment for the environment, in that run,
    // after the gate answered it.
    let v = status_of(&w, 970, "success", &chrono::Utc::now().to_rfc3339(), RUN);
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
    // The answer is the attempt's for good (like a protection rule's); a re-run of the run is a
    // new attempt, which waits afresh. Denied: it fails at once.
    w.comment(ALICE, "/deny rollback first").await;
    w.settle().await;
    let mut again = issuer.claims(REPO, REPO_ID, SHA, Some("production"), RUN);
    again["run_attempt"] = json!("2");
    issuer.hand_out(again);
    let out = run(60).await.expect("run");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("denied") && text.contains("rollback first"), "{text}");
    w.sticky();
    w.done().await;
}
both_backends!(the_actions_script_waits_and_opens);

// ---- review2 ---------------------------------------------------------------------------------

const POLICY_NO_BRANCH: &str = r#"
label: DEPLOYMENT_REQUEST
roles:
  pm: { users: [alice] }
environments:
  production:
    approvals:
      - role: pm
    require_checks: all
    deploy: workflow
  staging:
    approvals: []
"#;

async fn world_with(db: &TestDb, policy: &str, poll: Duration) -> (World, FakeIssuer) {
    let issuer = FakeIssuer::start().await;
    let url = issuer.url.clone();
    let w = World::with_config(db, policy, |cfg| {
        cfg.oidc.issuer = url;
        cfg.gate_wait_poll = poll;
    })
    .await;
    (w, issuer)
}

fn token_on(issuer: &FakeIssuer, sha: &str, git_ref: &str, run: i64) -> String {
    let mut c = issuer.claims(REPO, REPO_ID, sha, Some("production"), run);
    c["ref"] = json!(git_ref);
    fake_oidc::sign(&c, fake_oidc::KID)
}

/// PR #12 approved against `main`, retargeted to `evil` (main + an unreviewed commit) and merged
/// there; a job on `evil` deploys the merge commit. No `branch:` means the default branch (SPEC §2:
/// "where post-merge deploys of this environment come from"; policy.rs: None = the default branch).
async fn a_merge_into_another_branch_never_opens_a_job(db: &TestDb) {
    let (w, issuer) = world_with(db, POLICY_NO_BRANCH, Duration::from_millis(100)).await;
    request(&w).await;
    approve(&w).await;
    w.gh.retarget_pull(REPO, 12, "evil");
    w.gh.merge_pull(REPO, 12, MERGED);
    let (status, a) = ask(&w, &token_on(&issuer, MERGED, "refs/heads/evil", RUN), json!({ "wait_seconds": 5 })).await;
    assert_eq!(status, 200, "{a}");
    assert_ne!(a["state"], "open", "{a}");
    w.sticky();
    w.done().await;
}
both_backends!(a_merge_into_another_branch_never_opens_a_job);

/// A request for #12 and #13; #12 is merged, #13 not yet. The job deploying `main` (the merge of
/// #12) must be told why it waits; today the request is rechecked on every poll and says nothing,
/// so the job reads "the App has not evaluated the requests for this commit yet" until it times out.
async fn a_job_for_a_partly_merged_request_is_answered(db: &TestDb) {
    let (w, issuer) = world(db).await;
    w.gh.pull(REPO, 13, DAVE, SHA2, &["apps/backend/db.rs"]);
    w.check_completed(SHA, "build", "success").await;
    w.check_completed(SHA2, "build", "success").await;
    w.issue_event("labeled", &body("production", "#12, #13"), true).await;
    w.settle().await;
    approve(&w).await;
    w.gh.merge_pull(REPO, 12, MERGED);
    let (status, a) = ask(&w, &token(&issuer, MERGED), json!({ "wait_seconds": 3 })).await;
    assert_eq!((status, a["state"].as_str()), (200, Some("waiting")), "{a}");
    assert!(!a["missing"].to_string().contains("has not evaluated"), "never answered: {a}");
    w.sticky();
    w.done().await;
}
both_backends!(a_job_for_a_partly_merged_request_is_answered);

/// The request's links still name the old head (the `synchronize` delivery is late); a job for
/// the old head is rechecked and never answered.
async fn a_job_for_a_head_the_request_no_longer_covers_is_answered(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    approve(&w).await;
    w.gh.push_to_pull(REPO, 12, SHA2);
    let (status, a) = ask(&w, &token(&issuer, SHA), json!({ "wait_seconds": 3 })).await;
    assert_eq!((status, a["state"].as_str()), (200, Some("waiting")), "{a}");
    assert!(!a["missing"].to_string().contains("has not evaluated"), "never answered: {a}");
    w.sticky();
    w.done().await;
}
both_backends!(a_job_for_a_head_the_request_no_longer_covers_is_answered);

/// One job polling (or a writer with its token calling in a loop with wait_seconds 0) makes every
/// call a full re-evaluation that reads GitHub again: the installation's rate limit is the limit.
async fn polls_of_one_job_do_not_read_github_each_time(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    let t = token(&issuer, SHA);
    let _ = ask(&w, &t, json!({ "wait_seconds": 0 })).await;
    w.settle().await;
    let before = w.gh.calls().len();
    for _ in 0..20 {
        let _ = ask(&w, &t, json!({ "wait_seconds": 0 })).await;
    }
    w.settle().await;
    let uncovered = token(&issuer, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");
    for _ in 0..20 {
        let _ = ask(&w, &uncovered, json!({ "wait_seconds": 0 })).await;
    }
    w.settle().await;
    let calls = w.gh.calls().len() - before;
    let counts = w.gh.call_counts();
    assert!(calls <= 10, "40 polls of two jobs made {calls} GitHub calls: {counts:?}");
    w.sticky();
    w.done().await;
}
both_backends!(polls_of_one_job_do_not_read_github_each_time);

/// A long poll holds the App's shutdown (axum's graceful shutdown waits for it): up to
/// SHIPGATE_GATE_WAIT_MAX_SECS (600 s) per deploy of the App, longer than any orchestrator waits.
async fn a_long_poll_does_not_hold_the_shutdown(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    let t = token(&issuer, SHA);
    let http = w.app.http.clone();
    let url = format!("{}/gate/wait", w.app.url);
    let polling = tokio::spawn(async move {
        http.post(url).bearer_auth(t).json(&json!({ "wait_seconds": 30 })).send().await.map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.sticky();
    let started = std::time::Instant::now();
    w.done().await;
    let took = started.elapsed();
    polling.abort();
    assert!(took < Duration::from_secs(5), "shutdown waited {took:?} for a long poll");
}
both_backends!(a_long_poll_does_not_hold_the_shutdown);

/// A decision wakes the waiting call before its transaction commits (Effect::apply calls
/// DECIDED.notify_waiters inside the completion transaction): the call reads `pending` and then
/// sleeps until the poll interval. With a long poll interval the job learns of it at its deadline.
async fn a_decision_in_this_process_answers_the_long_poll_at_once(db: &TestDb) {
    let (w, issuer) = world_with(db, POLICY_WORKFLOW, Duration::from_secs(30)).await;
    request(&w).await;
    let t = token(&issuer, SHA);
    let _ = ask(&w, &t, json!({ "wait_seconds": 0 })).await;
    w.settle().await;
    let asked = {
        let http = w.app.http.clone();
        let url = format!("{}/gate/wait", w.app.url);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = http.post(url).bearer_auth(t).json(&json!({ "wait_seconds": 20 })).send().await.expect("send");
            (started.elapsed(), r.json::<Value>().await.expect("json"))
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    approve(&w).await;
    let (took, a) = asked.await.expect("join");
    assert_eq!(a["state"], "open", "{a}");
    assert!(took < Duration::from_secs(10), "answered at the deadline, not when decided: {took:?}");
    w.sticky();
    w.done().await;
}
both_backends!(a_decision_in_this_process_answers_the_long_poll_at_once);

/// While the issuer fails, every token (any kid, from anyone who can reach the port) makes the App
/// fetch the discovery document again: the refresh limit counts successful fetches only.
async fn a_failing_issuer_is_not_asked_on_every_request(db: &TestDb) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                (axum::http::StatusCode::BAD_GATEWAY, "down")
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let issuer = FakeIssuer::start().await;
    let u = url.clone();
    let w = World::with_config(db, POLICY_WORKFLOW, |cfg| cfg.oidc.issuer = u).await;
    let mut claims = issuer.claims(REPO, REPO_ID, SHA, Some("production"), RUN);
    claims["iss"] = json!(url);
    for i in 0..10 {
        let (status, a) = ask(&w, &fake_oidc::sign(&claims, &format!("k{i}")), json!({})).await;
        assert_eq!(status, 503, "{a}");
    }
    let n = hits.load(Ordering::SeqCst);
    assert!(n <= 1, "ten unauthenticated requests made {n} fetches of the issuer");
    w.done().await;
}
both_backends!(a_failing_issuer_is_not_asked_on_every_request);

/// The repository is removed from the installation (`installation_repositories` removed): no
/// installation serves it any more, but tenancy::serving falls back to the requests kept for it.
async fn a_repository_removed_from_the_installation_is_not_served(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    approve(&w).await;
    for action in ["added", "removed"] {
        // The fixture whole (the world's payloads keep only the installation's id).
        let mut v: Value = serde_json::from_str(&common::fixture("installation_repositories.removed.0")).expect("json");
        v["installation"]["id"] = json!(INST);
        v["action"] = json!(action);
        let list = json!([{ "id": REPO_ID, "full_name": REPO, "name": "app", "private": false }]);
        v["repositories_added"] = if action == "added" { list.clone() } else { json!([]) };
        v["repositories_removed"] = if action == "removed" { list } else { json!([]) };
        assert_eq!(w.app.deliver("installation_repositories", &w.id(), &v.to_string()).await, 202);
        w.settle().await;
    }
    let (status, a) = ask(&w, &token(&issuer, SHA), json!({ "wait_seconds": 2 })).await;
    assert_eq!(status, 403, "{a}");
    w.sticky();
    w.done().await;
}
both_backends!(a_repository_removed_from_the_installation_is_not_served);

fn status_of(w: &World, deployment: i64, state: &str, created_at: &str, run: i64) -> Value {
    let mut v = w.base("deployment_status.created.0");
    v["deployment_status"]["id"] = json!(deployment * 10 + if state == "success" { 2 } else { 1 });
    v["deployment"]["id"] = json!(deployment);
    v["deployment"]["sha"] = json!(SHA);
    v["deployment"]["environment"] = json!("production");
    v["deployment"]["payload"] = json!({});
    v["deployment"]["created_at"] = json!(created_at);
    v["deployment"]["creator"] = fake_github::actions_creator();
    v["deployment"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["creator"] = fake_github::actions_creator();
    v["deployment_status"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["state"] = json!(state);
    v["deployment_status"]["environment"] = json!("production");
    v["deployment_status"]["created_at"] = json!(created_at);
    v["workflow_run"] = json!({ "id": run });
    v
}

async fn origin_of(w: &World, deployment: i64) -> (String, Option<i64>) {
    sqlx::query_as("SELECT origin, issue FROM deployments WHERE deployment_id = $1")
        .bind(deployment)
        .fetch_one(w.app.db.pool())
        .await
        .expect("deployment row")
}

/// A job of the run deploys without the step while another job of the same run waits; once the
/// gate opens for the run, the ungated deployment's later statuses make it the request's own
/// (origin `approved`), though it started while the gate was closed.
async fn a_deployment_started_before_the_gate_opened_is_not_the_requests(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    let (_, a) = ask(&w, &token(&issuer, SHA), json!({ "wait_seconds": 0 })).await;
    assert_eq!(a["state"], "waiting", "{a}");
    let v = status_of(&w, 973, "in_progress", "2026-12-01T10:00:00Z", RUN);
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    approve(&w).await;
    let (_, a) = ask(&w, &token(&issuer, SHA), json!({ "wait_seconds": 10 })).await;
    assert_eq!(a["state"], "open", "{a}");
    let v = status_of(&w, 973, "success", "2026-12-01T10:01:00Z", RUN);
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let _ = w.gh.comments(REPO, 5);
    let (origin, _) = origin_of(&w, 973).await;
    assert_ne!(origin, "approved", "an ungated deployment became the request's own");
    w.done().await;
}
both_backends!(a_deployment_started_before_the_gate_opened_is_not_the_requests);

/// The gate opened for run RUN; then the request is put on hold; then a second job of the same
/// run (a matrix sibling, a re-run attempt, or the first job's token replayed) waits again:
/// begin() sets the run's row back to pending, and the deployment the first job made while the
/// gate was open is no longer the request's own.
async fn a_second_wait_of_an_opened_run_keeps_the_first_deployment_the_requests(db: &TestDb) {
    let (w, issuer) = world(db).await;
    request(&w).await;
    approve(&w).await;
    let t = token(&issuer, SHA);
    let (_, a) = ask(&w, &t, json!({ "wait_seconds": 10 })).await;
    assert_eq!(a["state"], "open", "{a}");
    w.comment(EVE, "/hold").await;
    w.settle().await;
    let (_, a) = ask(&w, &t, json!({ "wait_seconds": 0 })).await;
    w.settle().await;
    let _ = a;
    // The first job deployed after the gate opened for it.
    let v = status_of(&w, 974, "success", &chrono::Utc::now().to_rfc3339(), RUN);
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let _ = w.gh.comments(REPO, 5);
    let (origin, issue) = origin_of(&w, 974).await;
    assert_eq!((origin.as_str(), issue), ("approved", Some(5)), "the opened run's deployment lost its request");
    w.done().await;
}
both_backends!(a_second_wait_of_an_opened_run_keeps_the_first_deployment_the_requests);

const POLICY_UNICODE: &str = r#"
label: DEPLOYMENT_REQUEST
roles:
  pm: { users: [alice] }
environments:
  préprod:
    approvals:
      - role: pm
    require_checks: all
    deploy: workflow
"#;

/// The job names its environment in another case (GitHub's environment names ignore case). ASCII
/// works; a non-ASCII letter is matched by PostgreSQL's LOWER (open_for_environment,
/// gate_waits::pending) but not by decide's eq_ignore_ascii_case: on PostgreSQL the job is never
/// answered; on SQLite (ASCII LOWER) it is told no request covers it.
async fn a_job_naming_its_environment_in_another_case_is_answered(db: &TestDb) {
    let (w, issuer) = world_with(db, POLICY_UNICODE, Duration::from_millis(100)).await;
    w.check_completed(SHA, "build", "success").await;
    w.issue_event("labeled", &body("préprod", "#12"), true).await;
    w.settle().await;
    approve(&w).await;
    let c = issuer.claims(REPO, REPO_ID, SHA, Some("PRÉPROD"), RUN);
    let (status, a) = ask(&w, &fake_oidc::sign(&c, fake_oidc::KID), json!({ "wait_seconds": 3 })).await;
    assert_eq!((status, a["state"].as_str()), (200, Some("open")), "{a}");
    w.sticky();
    w.done().await;
}
both_backends!(a_job_naming_its_environment_in_another_case_is_answered);

// ---- from an attacker's review of the rollback, ticks and log links (each failed before) ----

const OLD: &str = "cccccccccccccccccccccccccccccccccccccc03";

fn status_at(w: &World, deployment: i64, sha: &str, state: &str, created_at: &str, run: i64) -> Value {
    let mut v = status_of(w, deployment, state, created_at, run);
    v["deployment"]["sha"] = json!(sha);
    v
}

fn token_with(issuer: &FakeIssuer, sha: &str, run: i64, attempt: &str, git_ref: &str) -> String {
    let mut c = issuer.claims(REPO, REPO_ID, sha, Some("production"), run);
    c["run_attempt"] = json!(attempt);
    c["ref"] = json!(git_ref);
    fake_oidc::sign(&c, fake_oidc::KID)
}

/// Workflow mode: run 600 (answered `open` for request #4 long ago) deployed OLD; #5's head
/// deployment failed; `/rollback` re-runs 600. Its attempt 2 waits, is opened by the rollback and
/// deploys: that success must be #5's rollback (ROLLED BACK), and the rollback must end.
async fn workflow_rollback_rerun_deployment_is_the_requests(db: &TestDb) {
    let (w, issuer) = world(db).await;
    let now = shipgate::clock::Clock::system().now_ms();
    let old = shipgate::store::gate_waits::GateWait {
        installation_id: INST,
        repository_id: REPO_ID,
        repository: REPO.into(),
        run_id: 600,
        run_attempt: 1,
        environment: "production".into(),
        sha: OLD.into(),
        git_ref: "refs/heads/main".into(),
        state: "pending".into(),
        issue: None,
        missing: "[]".into(),
        report: None,
        received_at: now - 86_400_000,
        answered_at: None,
    };
    assert!(shipgate::store::gate_waits::begin(&w.app.db, &old).await.unwrap());
    let mut tx = w.app.db.begin_write().await.unwrap();
    let k = shipgate::store::gate_waits::WaitKey {
        installation: INST,
        repository_id: REPO_ID,
        run_id: 600,
        run_attempt: 1,
        environment: "production",
    };
    shipgate::store::gate_waits::answer(&mut tx, &k, "approved", 4, "open", now - 86_400_000).await.unwrap();
    seed_approved_entry(&mut tx, "gate_wait", 600, 4).await;
    tx.commit().await.unwrap();
    let yesterday = chrono::DateTime::from_timestamp_millis(now - 86_000_000).unwrap().to_rfc3339();
    let v = status_at(&w, 960, OLD, "success", &yesterday, 600);
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    // #5: approved, its head deployed by RUN, failed.
    request(&w).await;
    approve(&w).await;
    let (_, a) = ask(&w, &token(&issuer, SHA), json!({ "wait_seconds": 10 })).await;
    assert_eq!(a["state"], "open", "{a}");
    let v = status_of(&w, 970, "failure", &chrono::Utc::now().to_rfc3339(), RUN);
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    w.comment(ALICE, "/rollback").await;
    w.settle().await;
    assert_eq!(w.gh.model().reruns, vec![(REPO.to_string(), 600)], "{}", w.sticky());
    // Attempt 2 of run 600 waits: opened by the rollback.
    let (_, a) = ask(&w, &token_with(&issuer, OLD, 600, "2", "refs/heads/main"), json!({ "wait_seconds": 10 })).await;
    assert_eq!(a["state"], "open", "{a}");
    // It deploys OLD (the deployment made after the answer).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let at = chrono::Utc::now().to_rfc3339();
    let v = status_at(&w, 980, OLD, "success", &at, 600);
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let row: (Option<i64>,) = sqlx::query_as("SELECT issue FROM deployments WHERE deployment_id = 980")
        .fetch_one(w.app.db.pool())
        .await
        .unwrap();
    let c = w.sticky();
    assert_eq!(row.0, Some(5), "the rollback's deployment is attributed to request {:?}\n{c}", row.0);
    assert!(c.contains("ROLLED BACK"), "{c}");
    let _ = w.gh.comments(REPO, 5);
    w.done().await;
}
both_backends!(workflow_rollback_rerun_deployment_is_the_requests);

/// Workflow mode: while #5's rollback waits for run 600, a job of another run, on another branch,
/// at OLD (a workflow_dispatch of an old ref with the inputs its author chose) is opened by the
/// rollback: it skips the check that a job at /gate/wait deploys from the environment's branch.
async fn workflow_rollback_opens_only_its_rerun(db: &TestDb) {
    let (w, issuer) = world(db).await;
    let now = shipgate::clock::Clock::system().now_ms();
    let old = shipgate::store::gate_waits::GateWait {
        installation_id: INST,
        repository_id: REPO_ID,
        repository: REPO.into(),
        run_id: 600,
        run_attempt: 1,
        environment: "production".into(),
        sha: OLD.into(),
        git_ref: "refs/heads/main".into(),
        state: "pending".into(),
        issue: None,
        missing: "[]".into(),
        report: None,
        received_at: now - 86_400_000,
        answered_at: None,
    };
    assert!(shipgate::store::gate_waits::begin(&w.app.db, &old).await.unwrap());
    let mut tx = w.app.db.begin_write().await.unwrap();
    let k = shipgate::store::gate_waits::WaitKey {
        installation: INST,
        repository_id: REPO_ID,
        run_id: 600,
        run_attempt: 1,
        environment: "production",
    };
    shipgate::store::gate_waits::answer(&mut tx, &k, "approved", 4, "open", now - 86_400_000).await.unwrap();
    seed_approved_entry(&mut tx, "gate_wait", 600, 4).await;
    tx.commit().await.unwrap();
    let yesterday = chrono::DateTime::from_timestamp_millis(now - 86_000_000).unwrap().to_rfc3339();
    let v = status_at(&w, 960, OLD, "success", &yesterday, 600);
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    request(&w).await;
    approve(&w).await;
    let (_, a) = ask(&w, &token(&issuer, SHA), json!({ "wait_seconds": 10 })).await;
    assert_eq!(a["state"], "open", "{a}");
    let v = status_of(&w, 970, "failure", &chrono::Utc::now().to_rfc3339(), RUN);
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    w.comment(ALICE, "/rollback").await;
    w.settle().await;
    let (_, a) =
        ask(&w, &token_with(&issuer, OLD, 31339, "1", "refs/heads/eve-branch"), json!({ "wait_seconds": 2 })).await;
    assert_ne!(a["state"], "open", "eve's run of OLD from eve-branch was opened: {a}");
    let _ = w.gh.comments(REPO, 5);
    w.done().await;
}
both_backends!(workflow_rollback_opens_only_its_rerun);

// ---- issue 19: freezes ------------------------------------------------------------------------

/// A job waiting through a freeze is answered `waiting`, with the freeze in `missing` and its end
/// in `until`; the Actions script gives up at once when the freeze outlasts its time-out.
async fn a_job_waits_through_a_freeze_and_is_told_until_when(db: &TestDb) {
    let frozen = POLICY_WORKFLOW.replace(
        "    branch: main\n",
        "    branch: main\n    freeze:\n      - { from: 2026-01-01, to: 2099-12-30, timezone: UTC, reason: code freeze }\n",
    );
    let (w, issuer) = world_with(db, &frozen, Duration::from_millis(100)).await;
    request(&w).await;
    approve(&w).await;
    let c = w.sticky();
    assert!(c.contains("frozen until Thu 31 Dec 2099 00:00 UTC (code freeze)"), "{c}");
    // The first call registers the wait; once the App has evaluated it, the answer says why.
    ask(&w, &token(&issuer, SHA), json!({ "environment": "production" })).await;
    w.settle().await;
    let (status, a) = ask(&w, &token(&issuer, SHA), json!({ "environment": "production" })).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["state"], "waiting", "{a}");
    assert_eq!(a["until"], "2099-12-31T00:00:00Z", "{a}");
    assert!(a["missing"].to_string().contains("Freeze: frozen until"), "{a}");

    // The script: the freeze ends long after its time-out, so it fails now, saying so.
    issuer.hand_out(issuer.claims(REPO, REPO_ID, SHA, Some("production"), RUN));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("action/gate-wait.sh");
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .env("SHIPGATE_URL", &w.app.url)
        .env("SHIPGATE_TIMEOUT_SECONDS", "600")
        .env("SHIPGATE_POLL_SECONDS", "1")
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{}/token?api-version=2.0", issuer.url))
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-token")
        .output()
        .await
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("frozen until 2099-12-31T00:00:00Z, after this job's time-out"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(30), "it gave up at once, not at its time-out");
    w.done().await;
}
both_backends!(a_job_waits_through_a_freeze_and_is_told_until_when);
