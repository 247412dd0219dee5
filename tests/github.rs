//! Acting on GitHub: App authentication, the outbox and its relay, retries and rate limits,
//! crash safety, dry-run, redelivery, installations — against the fake GitHub, which checks every
//! request against GitHub's OpenAPI description.

mod common;
mod fake_github;

use std::time::Duration;

use common::{TestApp, TestDb, count, fixture};
use fake_github::{FakeGitHub, Fault};
use serde_json::{Value, json};
use shipgate::config::{GithubCredentials, PrivateKeySource, Secret};
use shipgate::github::actions::Action;
use shipgate::github::client::GithubConfig;
use shipgate::handlers::{Effect, Handled, Registry};
use shipgate::server::Options;
use shipgate::store::outbox;

const REPO: &str = "Codertocat/Hello-World";
const INSTALLATION: i64 = 1;

/// A handler for `issue_comment.created` that acts as a real feature would: a sticky status
/// comment on the issue, a reaction on the comment, a label.
fn acting_registry() -> Registry {
    let mut reg = Registry::standard();
    reg.on("issue_comment", Some("created"), |ctx| async move {
        let v: Value = ctx.payload()?;
        let repo = v["repository"]["full_name"].as_str().unwrap_or_default().to_string();
        let issue = v["issue"]["number"].as_i64().unwrap_or_default();
        let comment = v["comment"]["id"].as_i64().unwrap_or_default();
        let text = v["comment"]["body"].as_str().unwrap_or_default();
        Ok(Handled::ok(vec![
            Effect::Act(Action::UpsertComment {
                repo: repo.clone(),
                issue,
                marker: "status".into(),
                body: format!("Seen: {text}"),
            }),
            Effect::Act(Action::AddReaction { repo: repo.clone(), comment_id: comment, content: "eyes".into() }),
            Effect::Act(Action::SetLabels { repo, issue, add: vec!["seen".into()], remove: vec!["unseen".into()] }),
        ]))
    });
    reg
}

fn github_settings(gh: &FakeGitHub) -> GithubConfig {
    let mut g = GithubConfig::new(&gh.url);
    g.retry_base = Duration::from_millis(10);
    g.mutation_spacing = Duration::ZERO;
    g.secondary_min_wait = Duration::from_millis(300);
    g.max_inline_wait = Duration::from_secs(5);
    g.timeout = Duration::from_secs(5);
    g
}

async fn start(db: &TestDb, gh: &FakeGitHub, registry: Registry) -> TestApp {
    let mut cfg = db.config();
    cfg.github = Some(fake_github::app_credentials());
    cfg.github_api_url = gh.url.clone();
    let opts = Options { registry, github: Some(github_settings(gh)), ..Options::default() };
    TestApp::start_with(cfg, opts).await
}

/// An `issue_comment.created` delivery on issue `issue`, from installation 1.
fn comment_event(issue: i64, comment_id: i64, text: &str) -> String {
    let mut v: Value = serde_json::from_str(&fixture("issue_comment.created.3")).expect("json");
    v["installation"] = json!({ "id": INSTALLATION });
    v["issue"]["number"] = json!(issue);
    v["comment"]["id"] = json!(comment_id);
    v["comment"]["body"] = json!(text);
    v.to_string()
}

async fn settle(app: &TestApp) {
    common::drain(&app.db, Duration::from_secs(20)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = outbox::stats(&app.db).await.expect("stats");
        if s.pending == 0 && s.running == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "outbox not drained: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The fake's issue and a human comment to react to.
fn seed(gh: &FakeGitHub, issue: i64) -> i64 {
    gh.issue(REPO, issue, "Deploy", "body");
    gh.human_comment(REPO, issue, "Codertocat", "/approve")
}

async fn acts_once_with_a_verified_jwt_and_one_token(db: &TestDb) {
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    let app = start(db, &gh, acting_registry()).await;
    for issue in 1..=5 {
        let cid = seed(&gh, issue);
        assert_eq!(app.deliver("issue_comment", &format!("c-{issue}"), &comment_event(issue, cid, "hello")).await, 202);
    }
    settle(&app).await;
    for issue in 1..=5 {
        let mine = gh.app_comments(REPO, issue);
        assert_eq!(mine.len(), 1, "issue {issue}: {mine:?}");
        assert!(mine[0].body.starts_with("Seen: hello") && mine[0].body.contains("<!-- shipgate:status -->"));
        let m = gh.model();
        assert_eq!(m.issues[&(REPO.to_string(), issue)].labels, vec!["seen".to_string()]);
        assert!(m.comments.iter().any(|c| c.issue == issue && c.reactions == vec!["eyes".to_string()]));
    }
    // The fake verified the JWT (signature, iss, iat in the past, exp within 10 minutes) and one
    // token served every call.
    assert_eq!(gh.model().token_requests, 1);
    assert_eq!(gh.count("apps/create-installation-access-token"), 1);
    // A second comment on issue 1 edits the sticky comment instead of adding one.
    let cid = gh.human_comment(REPO, 1, "Codertocat", "/hold");
    assert_eq!(app.deliver("issue_comment", "c-again", &comment_event(1, cid, "again")).await, 202);
    settle(&app).await;
    let mine = gh.app_comments(REPO, 1);
    assert_eq!(mine.len(), 1);
    assert!(mine[0].body.starts_with("Seen: again"));
    // Calls per handled event: 3 mutations, no searches (the comment's id was remembered).
    let counts = gh.call_counts();
    let _ =
        std::io::Write::write_all(&mut std::io::stderr(), format!("API calls for 6 events: {counts:?}\n").as_bytes());
    assert_eq!(counts.get("issues/list-comments"), None, "no search was needed: {counts:?}");
    assert_eq!(counts["issues/create-comment"], 5);
    assert_eq!(counts["issues/update-comment"], 1);
    app.shutdown().await;
    gh.finish();
}
both_backends!(acts_once_with_a_verified_jwt_and_one_token);

async fn tokens_are_renewed_before_they_expire_and_when_revoked(db: &TestDb) {
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    // Tokens that expire in ten minutes and four seconds: inside the renewal margin within four
    // seconds. (One second was too little: on a loaded machine the first delivery's calls took
    // longer than that and asked for a second token.)
    gh.model().token_lifetime_s = 604;
    let app = start(db, &gh, acting_registry()).await;
    let cid = seed(&gh, 1);
    assert_eq!(app.deliver("issue_comment", "t-1", &comment_event(1, cid, "one")).await, 202);
    settle(&app).await;
    assert_eq!(gh.model().token_requests, 1);
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let cid = seed(&gh, 2);
    assert_eq!(app.deliver("issue_comment", "t-2", &comment_event(2, cid, "two")).await, 202);
    settle(&app).await;
    assert_eq!(gh.model().token_requests, 2, "a token close to expiry was not renewed");
    // A revoked token: GitHub answers 401; the App gets a new one and carries on.
    gh.model().token_lifetime_s = 3600;
    gh.revoke_tokens();
    let cid = seed(&gh, 3);
    assert_eq!(app.deliver("issue_comment", "t-3", &comment_event(3, cid, "three")).await, 202);
    settle(&app).await;
    assert_eq!(gh.model().token_requests, 3);
    for i in 1..=3 {
        assert_eq!(gh.app_comments(REPO, i).len(), 1);
    }
    app.shutdown().await;
    gh.finish();
}
both_backends!(tokens_are_renewed_before_they_expire_and_when_revoked);

async fn failures_and_rate_limits_are_retried_and_nothing_doubles(db: &TestDb) {
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    gh.inject("POST", "/issues/1/comments", Fault::Status(500), 2);
    gh.inject("POST", "/issues/2/comments", Fault::RetryAfter(1), 1);
    gh.inject("POST", "/issues/3/labels", Fault::Secondary, 1);
    gh.inject("POST", "/issues/4/comments", Fault::LoseAnswer, 1); // created, but the answer is lost
    gh.inject("DELETE", "/issues/5/labels", Fault::Status(502), 3);
    gh.inject("POST", "/reactions", Fault::PrimaryExhausted(1), 1);
    let app = start(db, &gh, acting_registry()).await;
    for issue in 1..=5 {
        let cid = seed(&gh, issue);
        assert_eq!(app.deliver("issue_comment", &format!("f-{issue}"), &comment_event(issue, cid, "x")).await, 202);
    }
    settle(&app).await;
    for issue in 1..=5 {
        let mine = gh.app_comments(REPO, issue);
        assert_eq!(mine.len(), 1, "issue {issue} has {} sticky comments", mine.len());
        assert_eq!(gh.model().issues[&(REPO.to_string(), issue)].labels, vec!["seen".to_string()]);
    }
    // The lost answer was followed by a search by marker, then an edit, not a second comment.
    assert!(gh.count("issues/list-comments") >= 1);
    let retried_after: Vec<_> =
        gh.calls().into_iter().filter(|c| c.path.ends_with("/issues/2/comments") && c.method == "POST").collect();
    assert_eq!(retried_after.len(), 2, "one 429, then the retry");
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM outbox WHERE state <> 'done'").await, 0);
    app.shutdown().await;
    gh.finish();
}
both_backends!(failures_and_rate_limits_are_retried_and_nothing_doubles);

/// GitHub's rate limits answer the installation token request too (a 403 or 429 with
/// `retry-after`, or `x-ratelimit-remaining: 0`): the action waits and is sent, as after a rate
/// limit on any other call, instead of being parked as refused. Found by bench/soak.sh: an App
/// comment was never written.
async fn a_rate_limited_token_request_is_waited_for_not_parked(db: &TestDb) {
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    gh.inject("POST", "/access_tokens", Fault::SecondaryRetryAfter(1), 1);
    gh.inject("POST", "/access_tokens", Fault::RetryAfter(1), 1);
    gh.inject("POST", "/access_tokens", Fault::PrimaryExhausted(0), 1);
    let app = start(db, &gh, acting_registry()).await;
    let cid = seed(&gh, 1);
    assert_eq!(app.deliver("issue_comment", "rl-1", &comment_event(1, cid, "x")).await, 202);
    settle(&app).await;
    let parked = outbox::list(&app.db, Some("parked"), 10).await.expect("list");
    assert!(parked.is_empty(), "{parked:?}");
    assert_eq!(gh.app_comments(REPO, 1).len(), 1);
    assert_eq!(gh.model().issues[&(REPO.to_string(), 1)].labels, vec!["seen".to_string()]);
    assert_eq!(gh.model().token_requests, 1, "three rate-limited requests, then one token");
    app.shutdown().await;
    gh.finish();
}
both_backends!(a_rate_limited_token_request_is_waited_for_not_parked);

async fn a_permanent_refusal_parks_the_action(db: &TestDb) {
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    gh.inject("POST", "/issues/1/comments", Fault::Status(403), 1); // e.g. missing permission
    let app = start(db, &gh, acting_registry()).await;
    let cid = seed(&gh, 1);
    assert_eq!(app.deliver("issue_comment", "p-1", &comment_event(1, cid, "x")).await, 202);
    settle(&app).await;
    let parked = outbox::list(&app.db, Some("parked"), 10).await.expect("list");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].kind, "upsert_comment");
    assert!(parked[0].last_error.as_deref().unwrap_or("").contains("403"), "{parked:?}");
    assert!(gh.app_comments(REPO, 1).is_empty());
    // Visible in `shipgate actions list --status parked`, and replayable.
    let mut out = Vec::new();
    let cmd = shipgate::cli::Command::Actions {
        command: shipgate::cli::ActionsCommand::List { status: Some("parked".into()), limit: 10, json: false },
    };
    shipgate::cli::run_db_command(&db.config(), &cmd, &mut out).await.expect("cli");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains("upsert_comment") && text.contains("403"), "{text}");
    // `actions show SEQ`: the action whole, its comment's body as it would be written.
    let cmd = shipgate::cli::Command::Actions { command: shipgate::cli::ActionsCommand::Show { seq: parked[0].seq } };
    let mut out = Vec::new();
    assert_eq!(shipgate::cli::run_db_command(&db.config(), &cmd, &mut out).await.expect("cli"), 0);
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains("upsert_comment (parked)") && text.contains("--- body:") && text.contains("403"), "{text}");
    let cmd = shipgate::cli::Command::Actions { command: shipgate::cli::ActionsCommand::Show { seq: 999_999 } };
    let mut out = Vec::new();
    assert_eq!(shipgate::cli::run_db_command(&db.config(), &cmd, &mut out).await.expect("cli"), 1);
    let cmd = shipgate::cli::Command::Actions { command: shipgate::cli::ActionsCommand::Retry { seq: parked[0].seq } };
    let mut out = Vec::new();
    assert_eq!(shipgate::cli::run_db_command(&db.config(), &cmd, &mut out).await.expect("cli"), 0);
    settle(&app).await;
    assert_eq!(gh.app_comments(REPO, 1).len(), 1);
    app.shutdown().await;
    gh.finish();
}
both_backends!(a_permanent_refusal_parks_the_action);

async fn a_crash_between_sending_and_recording_leaves_one_comment(db: &TestDb) {
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    // 150 comments already on the issue: the search for the marker must page.
    gh.issue(REPO, 7, "Deploy", "body");
    for i in 0..150 {
        gh.human_comment(REPO, 7, "someone", &format!("comment {i}"));
    }
    let cid = gh.human_comment(REPO, 7, "Codertocat", "/approve");
    // GitHub creates the comment, then the App dies before it hears back.
    gh.inject("POST", "/issues/7/comments", Fault::HoldAnswer(Duration::from_secs(30)), 1);
    let mut cfg = db.config();
    cfg.worker.lease = Duration::from_secs(1);
    cfg.github = Some(fake_github::app_credentials());
    cfg.github_api_url = gh.url.clone();
    let settings = github_settings(&gh);
    let s2 = settings.clone();
    let doomed = common::CrashableApp::start(cfg.clone(), move || Options {
        registry: acting_registry(),
        github: Some(s2),
        ..Options::default()
    });
    assert_eq!(doomed.deliver("issue_comment", "k-1", &comment_event(7, cid, "crash")).await, 202);
    let made = |m: &fake_github::Model| m.comments.iter().any(|c| c.issue == 7 && c.user.ends_with("[bot]"));
    gh.wait_for("the comment to be created", Duration::from_secs(20), made).await;
    doomed.kill();
    // A new process on the same database takes the action over once the lease runs out.
    let app =
        TestApp::start_with(cfg, Options { registry: acting_registry(), github: Some(settings), ..Options::default() })
            .await;
    settle(&app).await;
    let mine = gh.app_comments(REPO, 7);
    assert_eq!(mine.len(), 1, "the comment was doubled: {mine:?}");
    assert!(gh.count("issues/list-comments") >= 2, "the search paged through 150+ comments");
    assert_eq!(gh.count("issues/create-comment"), 1);
    assert_eq!(gh.count("issues/update-comment"), 1);
    gh.comments(REPO, 7);
    app.shutdown().await;
    gh.finish();
}
both_backends!(a_crash_between_sending_and_recording_leaves_one_comment);

async fn dry_run_records_and_sends_nothing(db: &TestDb) {
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    let mut cfg = db.config();
    cfg.github = None; // no credentials: dry-run
    cfg.github_api_url = gh.url.clone();
    let app = TestApp::start_with(cfg, Options { registry: acting_registry(), ..Options::default() }).await;
    let cid = seed(&gh, 1);
    assert_eq!(app.deliver("issue_comment", "d-1", &comment_event(1, cid, "dry")).await, 202);
    settle(&app).await;
    assert!(gh.calls().is_empty(), "dry-run sent {:?}", gh.calls());
    let rows = outbox::list(&app.db, Some("dry_run"), 10).await.expect("list");
    let kinds: Vec<_> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, vec!["set_labels", "add_reaction", "upsert_comment"]);
    assert!(rows[2].action.contains("Seen: dry"), "{rows:?}");
    let mut out = Vec::new();
    let cmd = shipgate::cli::Command::Actions {
        command: shipgate::cli::ActionsCommand::List { status: None, limit: 10, json: false },
    };
    shipgate::cli::run_db_command(&db.config(), &cmd, &mut out).await.expect("cli");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains("dry_run") && text.contains("upsert_comment"), "{text}");
    app.shutdown().await;
    gh.finish();
}
both_backends!(dry_run_records_and_sends_nothing);

async fn a_deleted_or_suspended_installation_gets_no_actions(db: &TestDb) {
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    let app = start(db, &gh, acting_registry()).await;
    let mut suspend: Value = serde_json::from_str(&fixture("installation.suspend.0")).expect("json");
    suspend["installation"]["id"] = json!(INSTALLATION);
    assert_eq!(app.deliver("installation", "i-1", &suspend.to_string()).await, 202);
    settle(&app).await;
    let cid = seed(&gh, 1);
    assert_eq!(app.deliver("issue_comment", "i-2", &comment_event(1, cid, "x")).await, 202);
    settle(&app).await;
    assert!(gh.calls().is_empty(), "acted for a suspended installation: {:?}", gh.calls());
    assert_eq!(count(&app.db, "SELECT COUNT(*) FROM outbox WHERE state = 'cancelled'").await, 3);
    app.shutdown().await;
    gh.finish();
}
both_backends!(a_deleted_or_suspended_installation_gets_no_actions);

async fn redelivery_asks_for_exactly_the_lost_deliveries_once(db: &TestDb) {
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    {
        let mut m = gh.model();
        let d = |id: i64, guid: &str, code: i64| fake_github::HookDelivery {
            id,
            guid: guid.into(),
            status_code: code,
            event: "issues".into(),
        };
        m.hook_deliveries = vec![
            d(1, "g-ok", 202),
            d(2, "g-lost", 503),      // never got in: ask again
            d(3, "g-stored", 500),    // failed as GitHub saw it, but it is in the inbox
            d(4, "g-recovered", 500), // failed, then a later attempt succeeded
            d(5, "g-recovered", 202),
            d(6, "g-twice", 500), // failed twice: ask once, for the latest attempt
            d(7, "g-twice", 502),
        ];
    }
    let mut cfg = db.config();
    cfg.github = Some(fake_github::app_credentials());
    cfg.github_api_url = gh.url.clone();
    cfg.redelivery_interval = Duration::from_secs(3600);
    // One delivery is already in the inbox (stored before the redelivery job runs).
    let pre = TestApp::start(db, Options { run_worker: false, ..Options::default() }).await;
    assert_eq!(pre.deliver("ping", "g-stored", &fixture("ping.none.0")).await, 202);
    pre.shutdown().await;
    // Two replicas start at once on one database: one of them runs the job for this slot.
    let opts = || Options { github: Some(github_settings(&gh)), ..Options::default() };
    let (a, b) = tokio::join!(TestApp::start_with(cfg.clone(), opts()), TestApp::start_with(cfg.clone(), opts()));
    gh.wait_for("the redelivery job", Duration::from_secs(10), |m| m.redelivery_requests.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut asked = gh.model().redelivery_requests.clone();
    asked.sort();
    assert_eq!(asked, vec![2, 7], "asked for the wrong deliveries");
    assert_eq!(gh.count("apps/list-webhook-deliveries"), 1, "the job ran on both replicas");
    let runs = shipgate::store::scheduler::runs(&a.db, "redelivery").await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].2.as_deref(), Some("seen 7, requested 2"));
    // The next run starts from the checkpoint: only a new failure is asked for.
    gh.model().hook_deliveries.push(fake_github::HookDelivery {
        id: 8,
        guid: "g-new".into(),
        status_code: 500,
        event: "issues".into(),
    });
    let report = shipgate::github::redelivery::run_once(&github_client(&gh), &a.db, 0).await.expect("run");
    assert_eq!(report.requested, vec!["g-new".to_string()]);
    assert_eq!(report.seen, 1);
    a.shutdown().await;
    b.shutdown().await;
    gh.finish();
}
both_backends!(redelivery_asks_for_exactly_the_lost_deliveries_once);

/// The same with two real processes on one database: the job runs once.
async fn redelivery_runs_once_across_two_processes(db: &TestDb) {
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    gh.model().hook_deliveries = vec![
        fake_github::HookDelivery { id: 1, guid: "p-lost".into(), status_code: 503, event: "issues".into() },
        fake_github::HookDelivery { id: 2, guid: "p-ok".into(), status_code: 202, event: "issues".into() },
    ];
    let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-app-key.pem");
    let env = [
        ("GITHUB_APP_ID", fake_github::APP_ID),
        ("GITHUB_PRIVATE_KEY_PATH", key),
        ("GITHUB_API_URL", gh.url.as_str()),
        ("SHIPGATE_REDELIVERY_SECS", "3600"),
        ("SHIPGATE_MUTATION_SPACING_MS", "0"),
    ];
    // Migrate first, so that the two processes start on a ready schema at the same moment.
    db.connect().await.close().await;
    let (pa, pb) = (common::free_port(), common::free_port());
    let (mut a, mut b) = tokio::join!(common::spawn_binary(&db.url, pa, &env), common::spawn_binary(&db.url, pb, &env));
    gh.wait_for("a redelivery request", Duration::from_secs(10), |m| !m.redelivery_requests.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gh.model().redelivery_requests, vec![1]);
    assert_eq!(gh.count("apps/list-webhook-deliveries"), 1, "both processes ran the job");
    let _ = a.start_kill();
    let _ = b.start_kill();
    let _ = a.wait().await;
    let _ = b.wait().await;
    gh.finish();
}
both_backends!(redelivery_runs_once_across_two_processes);

fn github_client(gh: &FakeGitHub) -> shipgate::github::client::GitHub {
    let creds = fake_github::app_credentials();
    let auth = shipgate::github::auth::AppAuth::from_credentials(&creds).expect("key");
    shipgate::github::client::GitHub::new(github_settings(gh), Some(auth), shipgate::clock::Clock::system())
        .expect("client")
}

#[tokio::test]
async fn the_fake_rejects_requests_github_would_reject() {
    // The contract check itself: a typo in a body, an unknown query parameter, a wrong method.
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| client.post(format!("{}{path}", gh.url)).json(&body).send();
    post(
        "/repos/o/r/check-runs",
        json!({ "name": "n", "head_sha": "abc", "output": { "title": "t", "summery": "s" } }),
    )
    .await
    .expect("send");
    post("/repos/o/r/issues/1/comments", json!({ "bdy": "x" })).await.expect("send");
    client.get(format!("{}/repos/o/r/pulls/1/files?per_pag=100", gh.url)).send().await.expect("send");
    client.put(format!("{}/repos/o/r/check-runs", gh.url)).send().await.expect("send");
    let v = gh.model().violations.clone();
    assert_eq!(v.len(), 4, "{v:#?}");
    assert!(v[0].contains("summery"), "{}", v[0]);
    assert!(v[1].contains("bdy"), "{}", v[1]);
    assert!(v[2].contains("per_pag"), "{}", v[2]);
    let result = std::panic::catch_unwind(|| gh.finish());
    assert!(result.is_err(), "finish() must fail the test on a contract violation");
}

#[tokio::test]
async fn the_fake_fails_a_test_that_ignores_a_comment() {
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    gh.issue(REPO, 1, "t", "b");
    let client = github_client(&gh);
    let action = Action::UpsertComment { repo: REPO.into(), issue: 1, marker: "m".into(), body: "unread".into() };
    let db = TestDb::sqlite().await;
    let store = db.connect().await;
    action.execute(&client, &store, INSTALLATION, 0).await.expect("sent");
    assert!(std::panic::catch_unwind(|| gh.finish()).is_err(), "an unread comment must fail the test");
    assert_eq!(gh.app_comments(REPO, 1).len(), 1);
    gh.finish(); // read now: passes
}

/// A key that is not a key is a start-up error that names the variable and never prints the key.
#[tokio::test]
async fn a_bad_private_key_stops_start_up_without_printing_it() {
    let db = TestDb::sqlite().await;
    let mut cfg = db.config();
    cfg.github = Some(GithubCredentials {
        app_id: "1".into(),
        private_key: PrivateKeySource::Pem(Secret::new(
            "-----BEGIN RSA PRIVATE KEY-----\nSECRETSTUFF\n-----END RSA PRIVATE KEY-----",
        )),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let err = match shipgate::server::Server::start(&cfg, listener, Options::default()).await {
        Ok(_) => panic!("started with a bad key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("GITHUB_PRIVATE_KEY") && !err.contains("SECRETSTUFF"), "{err}");
}

/// GitHub asks for a second between mutations of one installation, so after an `/approve` the
/// App's mutations queue up: a reaction, the sticky comment, labels, the gate's check run. The
/// check run (and a protection rule's answer) is what lets a deployment through: it goes before
/// the mutations queued ahead of it, not behind them (issue 14: it took ~4 s at 1 s spacing).
#[tokio::test]
async fn the_gate_goes_before_queued_comments_in_the_mutation_slot() {
    use shipgate::github::client::Auth;
    let gh = FakeGitHub::start().await;
    gh.install(INSTALLATION, &[REPO]);
    for issue in 1..=4 {
        gh.issue(REPO, issue, "Deploy", "body");
    }
    let mut settings = github_settings(&gh);
    settings.mutation_spacing = Duration::from_millis(150);
    let creds = fake_github::app_credentials();
    let auth = shipgate::github::auth::AppAuth::from_credentials(&creds).expect("key");
    let client = std::sync::Arc::new(
        shipgate::github::client::GitHub::new(settings, Some(auth), shipgate::clock::Clock::system()).expect("client"),
    );
    let mut tasks = Vec::new();
    for issue in 1..=4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let path = format!("/repos/{REPO}/issues/{issue}/comments");
            let body = json!({ "body": format!("comment {issue}") });
            client.request(Auth::Installation(INSTALLATION), http::Method::POST, &path, Some(&body)).await
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The four comments are queued (the first is being sent); now the gate's check run.
    let check = {
        let client = client.clone();
        tokio::spawn(async move {
            let path = format!("/repos/{REPO}/check-runs");
            let body = json!({ "name": "shipgate / deploy gate (production)", "head_sha": "a".repeat(40),
                               "status": "completed", "conclusion": "success" });
            client.request(Auth::Installation(INSTALLATION), http::Method::POST, &path, Some(&body)).await
        })
    };
    check.await.expect("task").expect("check run sent");
    for t in tasks {
        t.await.expect("task").expect("comment sent");
    }
    let order: Vec<String> = gh.calls().into_iter().filter(|c| c.method == "POST").map(|c| c.operation).collect();
    let at = order.iter().position(|o| o == "checks/create").expect("the check run was sent");
    assert!(at <= 2, "the check run waited behind the comments queued before it: {order:?}");
    let _ = gh.app_comments(REPO, 1);
    let _ = (gh.app_comments(REPO, 2), gh.app_comments(REPO, 3), gh.app_comments(REPO, 4));

    // A steady stream of gate calls does not starve a comment: after three in a row, it goes.
    let comment = {
        let client = client.clone();
        tokio::spawn(async move {
            let body = json!({ "body": "the sticky comment" });
            let path = format!("/repos/{REPO}/issues/1/comments");
            client.request(Auth::Installation(INSTALLATION), http::Method::POST, &path, Some(&body)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut checks = Vec::new();
    for n in 0..8 {
        let client = client.clone();
        checks.push(tokio::spawn(async move {
            let path = format!("/repos/{REPO}/check-runs");
            let body = json!({ "name": format!("shipgate / deploy gate (env{n})"), "head_sha": "b".repeat(40),
                               "status": "completed", "conclusion": "success" });
            client.request(Auth::Installation(INSTALLATION), http::Method::POST, &path, Some(&body)).await
        }));
    }
    comment.await.expect("task").expect("comment sent");
    for c in checks {
        c.await.expect("task").expect("check run sent");
    }
    let calls = gh.calls();
    let after: Vec<&str> =
        calls.iter().filter(|c| c.method == "POST").map(|c| c.operation.as_str()).skip(order.len()).collect();
    let at = after.iter().position(|o| *o == "issues/create-comment").expect("the comment was sent");
    assert!(at <= 4, "the comment waited behind every gate call: {after:?}");
    let _ = gh.app_comments(REPO, 1);
    gh.finish();
}
