//! Notifications (SPEC §5), end to end: a policy's `notify:` rules, the events of a deployment
//! request through the real router, the outbox, and what really arrives: Block Kit JSON at a
//! local HTTP receiver standing in for Slack, and e-mail at a real SMTP server (Debian's
//! aiosmtpd). Also: a failing Slack endpoint retried then parked without holding anything up,
//! dry-run recording without sending, and `check-config` / the config check run saying which
//! channels the App was not given.

mod common;
mod fake_github;
mod receivers;
mod world;

use std::time::Duration;

use common::TestDb;
use receivers::{SlackReceiver, SmtpServer};
use serde_json::{Value, json};
use shipgate::config::{Config, Secret};
use world::*;

/// Production needs the pm (alice, or a member of acme/product); `/deploy` deploys.
fn policy(notify: &str) -> String {
    format!(
        r#"
label: DEPLOYMENT_REQUEST
roles:
  pm: {{ users: [alice], teams: [acme/product] }}
environments:
  production:
    approvals:
      - role: pm
    require_checks: all
    deploy: deployment
  staging:
    approvals: []
notify:
{notify}"#
    )
}

/// The App's channels: Slack `acme/NAME` for each name (at the receiver), e-mail through `smtp`
/// to example.com only.
fn channels(cfg: &mut Config, slack: &SlackReceiver, names: &[&str], smtp: Option<&SmtpServer>) {
    for name in names {
        cfg.notify.slack.insert(("acme".into(), name.to_string()), Secret::new(slack.hook_url(name)));
    }
    if let Some(smtp) = smtp {
        cfg.notify.smtp_url = Some(Secret::new(smtp.url()));
        cfg.notify.mail_from = Some("shipgate <shipgate@example.com>".into());
    }
    cfg.notify.mail_domains.insert("acme".into(), vec!["example.com".into()]);
}

/// Request #5 approved by alice (the gate opens).
async fn approved(w: &World) {
    w.check_completed(SHA, "build", "success").await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    assert_eq!(w.gate(SHA).0, "success", "{}", w.sticky());
}

static STATUS_IDS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(9000);

/// A `deployment_status` of deployment `id` (made by the App) from the team's Actions pipeline.
async fn status(w: &World, id: i64, state: &str, at: &str) {
    let mut v = w.base("deployment_status.created.0");
    v["deployment_status"]["id"] = json!(STATUS_IDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    v["deployment"]["id"] = json!(id);
    v["deployment"]["sha"] = json!(SHA);
    v["deployment"]["environment"] = json!("production");
    v["deployment"]["payload"] = json!({ "shipgate_request": 5 });
    v["deployment"]["created_at"] = json!("2026-11-29T10:00:00Z");
    v["deployment"]["creator"] = fake_github::actions_creator();
    v["deployment"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["creator"] = fake_github::actions_creator();
    v["deployment_status"]["performed_via_github_app"] = json!({ "id": 15368, "slug": "github-actions" });
    v["deployment_status"]["state"] = json!(state);
    v["deployment_status"]["environment"] = json!("production");
    v["deployment_status"]["created_at"] = json!(at);
    assert_eq!(w.app.deliver("deployment_status", &w.id(), &v.to_string()).await, 202);
}

/// An outbox row: state, attempts, action, outcome, last error.
type OutboxRow = (String, i64, String, Option<String>, Option<String>);

/// The outbox's notification rows: (state, attempts, action, outcome or error).
async fn notify_rows(w: &World) -> Vec<(String, i64, String, String)> {
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "SELECT state, attempts, action, outcome, last_error FROM outbox WHERE kind = 'notify' ORDER BY seq",
    )
    .fetch_all(w.app.db.pool())
    .await
    .expect("outbox");
    rows.into_iter().map(|(s, a, action, o, e)| (s, a, action, e.or(o).unwrap_or_default())).collect()
}

/// `shipgate actions list [--status S]`, as its operator reads it.
async fn actions_list(w: &World, status: Option<&str>) -> String {
    let cfg = Config::for_tests(w.app.db_url(), common::SECRET);
    let cmd = shipgate::cli::Command::Actions {
        command: shipgate::cli::ActionsCommand::List { status: status.map(str::to_string), limit: 100, json: false },
    };
    let mut out = Vec::new();
    shipgate::cli::run_db_command(&cfg, &cmd, &mut out).await.expect("actions list");
    String::from_utf8(out).expect("utf-8")
}

fn header(m: &Value) -> String {
    m["blocks"][0]["text"]["text"].as_str().unwrap_or_default().to_string()
}

async fn a_deployment_notifies_slack_and_a_real_smtp_server_and_ticks_notify_team(db: &TestDb) {
    let slack = SlackReceiver::start().await;
    let smtp = SmtpServer::start().await;
    let notify = "  - { on: [gate_opened, deploying, deployed, deploy_failed, rollback], to: [slack:deploys] }\n  \
                  - { on: [deployed], to: [email:oncall@example.com, role:pm] }\n";
    let w = World::with_config(db, &policy(notify), |cfg| channels(cfg, &slack, &["deploys"], Some(&smtp))).await;
    // alice shows a public address in an allowed domain; frank (of acme/product) one outside it.
    w.gh.user_email("alice", "alice@example.com").user("frank", 601).user_email("frank", "frank@gmail.com");
    w.gh.team("acme", "product", &[(601, "frank")]);

    approved(&w).await;
    let m = slack.wait_for("deploys", 1, Duration::from_secs(10)).await;
    assert_eq!(header(&m[0]), "Deployment request #5: api → production is approved");
    w.comment(ALICE, "/deploy").await;
    w.settle().await;
    let id = w.gh.model().deployments.iter().find(|(r, _)| r == REPO).map(|(_, d)| d["id"].as_i64().unwrap()).unwrap();
    status(&w, id, "in_progress", "2026-11-29T10:01:00Z").await;
    w.settle().await;
    status(&w, id, "success", "2026-11-29T10:05:12Z").await;
    w.settle().await;

    // Slack: Block Kit with a plain-text fallback, linking back to the request's issue.
    let m = slack.wait_for("deploys", 3, Duration::from_secs(10)).await;
    assert_eq!(m.len(), 3, "{m:#?}");
    let issue_url = format!("{}/{REPO}/issues/5", w.gh.url);
    let headers: Vec<String> = m.iter().map(header).collect();
    assert_eq!(
        headers,
        [
            "Deployment request #5: api → production is approved",
            "Deployment request #5: api → production is deploying",
            "Deployment request #5: api → production is deployed",
        ]
    );
    for msg in &m {
        assert!(msg["blocks"].as_array().is_some_and(|b| b.len() >= 3), "{msg:#}");
        assert_eq!(msg["blocks"][0]["type"], "header");
        let text = msg["text"].as_str().expect("a plain-text fallback");
        assert!(text.contains(&format!("<{issue_url}|acme/app#5>")), "{text}");
        assert!(!msg.to_string().contains("{shipgate:"), "a placeholder left: {msg}");
    }
    let deployed = &m[2];
    assert!(
        deployed["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("`aaaaaaa` deployed to production successfully in 4m 12s"),
        "{deployed:#}"
    );
    assert!(
        deployed["blocks"][3]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("<{issue_url}|Open acme/app#5 on GitHub>")),
        "{deployed:#}"
    );

    // E-mail, as the real SMTP server received it: one to the address, one to the pm's public
    // address in example.com (frank's gmail address is not written to).
    let mails = smtp.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let mut to: Vec<String> = mails.iter().map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string()).collect();
    to.sort();
    assert_eq!(to, ["alice@example.com", "oncall@example.com"]);
    for mail in &mails {
        assert_eq!(mail["rcpt_tos"].as_array().unwrap().len(), 1, "{mail:#}");
        assert_eq!(mail["mail_from"], "shipgate@example.com");
        assert_eq!(mail["from"], "shipgate <shipgate@example.com>");
        assert_eq!(mail["to"], mail["rcpt_tos"][0]);
        assert_eq!(mail["subject"], "[acme/app] Deployment request #5: api → production is deployed");
        assert_eq!(mail["content_type"], "text/plain");
        // (Lines end in CRLF on the wire.)
        let body = mail["body"].as_str().unwrap().replace("\r\n", "\n");
        assert!(body.starts_with("Deployment request #5: api → production is deployed\n"), "{body}");
        assert!(body.contains("`aaaaaaa` deployed to production successfully in 4m 12s."), "{body}");
        assert!(body.contains(&format!("The issue: {issue_url}\n")), "{body}");
        assert!(!mail["raw"].as_str().unwrap().contains("gmail"), "{mail:#}");
    }

    // The outbox names channels, never the webhook URL; so does `actions list`.
    let rows = notify_rows(&w).await;
    assert_eq!(rows.len(), 5, "{rows:#?}");
    for (state, _, action, outcome) in &rows {
        assert_eq!(state, "done", "{rows:#?}");
        assert!(!action.contains(&slack.url) && !outcome.contains(&slack.url), "{action} {outcome}");
    }
    assert!(rows.iter().any(|r| r.2.contains(r#""channel":{"kind":"slack","account":"acme","name":"deploys"}"#)));
    assert!(rows.iter().any(|r| r.3 == "sent to role:acme/pm (1 addresses)"), "{rows:#?}");
    let list = actions_list(&w, None).await;
    assert!(list.contains("deployed -> slack:acme/deploys: [acme/app] Deployment request #5"), "{list}");
    assert!(
        list.contains("deployed -> email:oncall@example.com") && list.contains("deployed -> role:acme/pm"),
        "{list}"
    );
    assert!(!list.contains(&slack.url), "{list}");

    // The checklist's "Notify team" is ticked by the App, naming where the notice went.
    let sticky = w.sticky();
    let line = sticky.lines().find(|l| l.contains("Notify team")).expect("the item");
    assert!(line.starts_with("- [x] Notify team (shipgate: sent to "), "{sticky}");
    for channel in ["slack:acme/deploys", "email:oncall@example.com", "role:acme/pm"] {
        assert!(line.contains(channel), "{line}");
    }
    w.gh.app_comments(REPO, 5); // the closing summary and the replies, read
    w.done().await;
}
both_backends!(a_deployment_notifies_slack_and_a_real_smtp_server_and_ticks_notify_team);

async fn a_failing_slack_channel_is_retried_then_parked_and_holds_nothing_up(db: &TestDb) {
    let slack = SlackReceiver::start().await;
    slack.fail("deploys", 500);
    let notify = "  - { on: [gate_opened], to: [slack:deploys, slack:team] }\n";
    // `team` is not given to the App at all.
    let w = World::with_config(db, &policy(notify), |cfg| {
        channels(cfg, &slack, &["deploys"], None);
        let globex = Secret::new(slack.hook_url("globex-deploys"));
        cfg.notify.slack.insert(("globex".into(), "deploys".into()), globex);
    })
    .await;
    approved(&w).await;
    // The request's own GitHub actions went out meanwhile: the sticky comment says the gate is
    // open (read by `approved`), the check run passed, and alice's /approve got its reaction.
    assert!(w.sticky().contains("The gate is open"));
    let rows = notify_rows(&w).await;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let deploys = rows.iter().find(|r| r.2.contains(r#""name":"deploys""#)).expect("deploys");
    let team = rows.iter().find(|r| r.2.contains(r#""name":"team""#)).expect("team");
    // Retried with backoff, then parked (SHIPGATE_MAX_ATTEMPTS is 3 in the tests).
    assert_eq!((deploys.0.as_str(), deploys.1), ("parked", 3), "{deploys:?}");
    assert_eq!(slack.attempts("deploys"), 3);
    assert!(deploys.3.contains("Slack answered 500 for acme/deploys"), "{deploys:?}");
    assert!(!deploys.3.contains(&slack.url), "the URL is never in an error: {deploys:?}");
    // A channel the App was not given fails the same way every time: parked at once.
    assert_eq!((team.0.as_str(), team.1), ("parked", 1), "{team:?}");
    assert!(team.3.contains("Slack channel acme/team is not configured (SHIPGATE_SLACK_WEBHOOKS)"), "{team:?}");
    let parked = actions_list(&w, Some("parked")).await;
    assert!(
        parked.contains("gate_opened -> slack:acme/deploys") && parked.contains("gate_opened -> slack:acme/team"),
        "{parked}"
    );
    assert!(!parked.contains(&slack.url), "{parked}");

    // A row forged in the database naming another account's channel is refused, never sent.
    let forged = shipgate::github::actions::Action::Notify {
        repo: REPO.into(),
        channel: shipgate::domain::notify::Channel::Slack { account: "globex".into(), name: "deploys".into() },
        event: "deployed".into(),
        key: "forged".into(),
        subject: "s".into(),
        text: "t".into(),
        slack: json!({ "text": "t" }),
        link: Default::default(),
        request: None,
    };
    let mut tx = w.app.db.begin_write().await.unwrap();
    shipgate::store::outbox::enqueue(&mut tx, INST, "forged-1", &forged, None, 1).await.unwrap();
    tx.commit().await.unwrap();
    w.settle().await;
    let rows = notify_rows(&w).await;
    let f = rows.iter().find(|r| r.2.contains(r#""key":"forged""#)).expect("the forged row");
    assert_eq!(f.0, "parked", "{f:?}");
    assert!(f.3.contains("slack:globex/deploys is not a channel of acme/app's account"), "{f:?}");
    assert_eq!(slack.attempts("globex-deploys"), 0);

    // Later GitHub work is not held up either: a /hold is answered while both stay parked.
    let c = w.comment(ALICE, "/hold").await;
    w.settle().await;
    assert_eq!(w.reactions(c), ["+1"]);
    assert!(w.sticky().contains("on hold"));

    // Slack is back: the operator retries the parked notice, and it arrives once.
    slack.fail("deploys", 200);
    // acme's channel, not the forged row naming globex's (both say "deploys").
    let seq: (i64,) = sqlx::query_as(
        "SELECT seq FROM outbox WHERE kind = 'notify' AND action LIKE '%\"account\":\"acme\",\"name\":\"deploys\"%'",
    )
    .fetch_one(w.app.db.pool())
    .await
    .unwrap();
    let cfg = Config::for_tests(w.app.db_url(), common::SECRET);
    let cmd = shipgate::cli::Command::Actions { command: shipgate::cli::ActionsCommand::Retry { seq: seq.0 } };
    shipgate::cli::run_db_command(&cfg, &cmd, &mut Vec::new()).await.expect("retry");
    let m = slack.wait_for("deploys", 1, Duration::from_secs(10)).await;
    w.settle().await;
    assert_eq!(m.len(), 1);
    assert_eq!(header(&m[0]), "Deployment request #5: api → production is approved");
    w.done().await;
}
both_backends!(a_failing_slack_channel_is_retried_then_parked_and_holds_nothing_up);

/// Dry-run (no GitHub credentials): notifications are recorded, never sent.
async fn dry_run_records_notifications_without_sending(db: &TestDb) {
    let slack = SlackReceiver::start().await;
    let mut cfg = db.config();
    channels(&mut cfg, &slack, &["oncall"], None);
    let app = common::TestApp::start_with(cfg, shipgate::server::Options::default()).await;
    // The policy as an earlier read cached it (dry-run reads nothing from GitHub).
    let yaml = "roles:\n  pm: { users: [alice] }\nnotify:\n  - { on: [security_alert], to: [slack:oncall, email:oncall@example.com] }\n";
    let mut tx = app.db.begin_write().await.unwrap();
    shipgate::store::requests::save_policy(&mut tx, INST, REPO_ID, "blob1", Some(yaml), None, 1).await.unwrap();
    tx.commit().await.unwrap();
    let mut v = payload("dependabot_alert.created.0");
    v["alert"]["number"] = json!(40);
    v["alert"]["security_advisory"]["severity"] = json!("critical");
    v["repository"]["private"] = json!(true);
    assert_eq!(app.deliver("dependabot_alert", "dry-1", &v.to_string()).await, 202);
    settle(&app.db).await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT state, action FROM outbox WHERE kind = 'notify' ORDER BY seq")
            .fetch_all(app.db.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for (state, action) in &rows {
        assert_eq!(state, "dry_run");
        assert!(action.contains(r#""event":"security_alert""#) && !action.contains(&slack.url), "{action}");
    }
    assert!(rows[0].1.contains(r#""channel":{"kind":"slack","account":"acme","name":"oncall"}"#), "{rows:?}");
    assert_eq!(slack.attempts("oncall"), 0, "dry-run sends nothing");
    app.shutdown().await;
}
both_backends!(dry_run_records_notifications_without_sending);

/// The `shipgate / config` check run of a push names a channel the App was not given, and stays
/// a success.
async fn the_config_check_run_warns_of_a_channel_the_app_was_not_given(db: &TestDb) {
    let slack = SlackReceiver::start().await;
    let notify = "  - { on: [deployed], to: [slack:deploys] }\n";
    let w = World::with_config(db, &policy(notify), |cfg| channels(cfg, &slack, &["deploys"], None)).await;
    let changed = policy("  - { on: [deployed], to: [slack:deploys, slack:oncall] }\n");
    w.gh.file(REPO, ".github/shipgate.yml", &changed);
    let after = "dddddddddddddddddddddddddddddddddddddddd";
    let mut v = w.base("push.none.0");
    v["ref"] = json!("refs/heads/main");
    v["repository"]["default_branch"] = json!("main");
    v["after"] = json!(after);
    v["commits"] = json!([{ "id": after, "added": [], "removed": [], "modified": [".github/shipgate.yml"] }]);
    assert_eq!(w.app.deliver("push", &w.id(), &v.to_string()).await, 202);
    w.settle().await;
    let runs: Vec<Value> =
        w.gh.model().check_runs.iter().filter(|r| r.head_sha == after).map(|r| r.body.clone()).collect();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = &runs[0];
    assert_eq!(
        (run["name"].as_str(), run["conclusion"].as_str()),
        (Some("shipgate / config"), Some("success")),
        "{run:#}"
    );
    assert_eq!(run["output"]["title"], ".github/shipgate.yml is valid, with 1 warning");
    let summary = run["output"]["summary"].as_str().unwrap();
    assert!(summary.contains("line 14, column 43: Slack channel `oncall` is not configured for `acme`"), "{summary}");
    assert!(!summary.contains("deploys`") && !summary.contains(&slack.url), "{summary}");
    w.done().await;
}
both_backends!(the_config_check_run_warns_of_a_channel_the_app_was_not_given);

/// `shipgate check-config`: an unknown event or role fails (exit 1, with the place); a channel
/// the App was not given is a warning on stderr, and the exit code stays 0.
#[test]
fn check_config_errors_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let run = |yaml: &str, args: &[&str]| {
        let f = dir.path().join("shipgate.yml");
        std::fs::write(&f, yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipgate"))
            .arg("check-config")
            .arg(&f)
            .args(args)
            .env("SHIPGATE_SLACK_WEBHOOKS", "acme/deploys=https://hooks.slack.com/services/T0/B0/SECRETSECRET")
            .env("SHIPGATE_MAIL_DOMAINS", "acme=example.com")
            .env("SHIPGATE_SMTP_URL", "smtp://127.0.0.1:1")
            .env("SHIPGATE_MAIL_FROM", "shipgate@example.com")
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let bad = policy("  - { on: [deployd], to: [slack:deploys, role:qa] }\n");
    let (code, out, _) = run(&bad, &["--repo", "acme/app"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(":14:12: unknown event `deployd`; did you mean `deployed`?"), "{out}");
    assert!(out.contains(":14:42: unknown role `qa` (defined: pm)"), "{out}");

    let warned = policy("  - { on: [deployed], to: [slack:deploys, slack:oncall, email:ops@elsewhere.org] }\n");
    let (code, out, err) = run(&warned, &["--repo", "acme/app"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("valid") && out.contains("notify deployed -> slack:deploys, slack:oncall"), "{out}");
    assert!(err.contains(":14:43: Slack channel `oncall` is not configured for `acme`"), "{err}");
    assert!(err.contains("`ops@elsewhere.org` is not in a mail domain"), "{err}");
    assert!(!err.contains("`deploys` is not") && !format!("{out}{err}").contains("SECRETSECRET"), "{err}");
    // Another account has none of acme's channels.
    let (code, _, err) = run(&warned, &["--repo", "globex/app"]);
    assert_eq!(code, Some(0));
    assert!(err.contains("Slack channel `deploys` is not configured for `globex`"), "{err}");
    // Without --repo, it says the channels were not checked.
    let (code, _, err) = run(&warned, &[]);
    assert_eq!(code, Some(0));
    assert!(err.contains("were not checked against the App's settings: pass --repo OWNER/NAME"), "{err}");
}

/// SPEC §5: SMTP with STARTTLS when the server offers it. A server whose certificate chains to
/// `SHIPGATE_SMTP_CA_FILE` gets the mail over TLS; one whose certificate the App cannot trust gets
/// nothing, never the mail in the clear (the notice is retried, then parked).
async fn e_mail_goes_over_starttls_when_offered_and_never_in_the_clear(db: &TestDb) {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = receivers::test_certificates(certs.path());
    let slack = SlackReceiver::start().await;
    let notify = "  - { on: [gate_opened], to: [email:oncall@example.com] }\n";

    let smtp = SmtpServer::start_tls(&cert, &key).await;
    let w = World::with_config(db, &policy(notify), |cfg| {
        channels(cfg, &slack, &[], Some(&smtp));
        cfg.notify.smtp_ca = Some(ca.clone());
    })
    .await;
    approved(&w).await;
    let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails[0]["tls"], true, "{:#}", mails[0]);
    assert_eq!(mails[0]["subject"], "[acme/app] Deployment request #5: api → production is approved");
    assert_eq!(mails[0]["rcpt_tos"], json!(["oncall@example.com"]));
    w.sticky();
    w.done().await;

    // The same server, without the CA: STARTTLS is offered, so it is used, and it fails.
    let db2 = TestDb::sqlite().await;
    let smtp = SmtpServer::start_tls(&cert, &key).await;
    let w = World::with_config(&db2, &policy(notify), |cfg| channels(cfg, &slack, &[], Some(&smtp))).await;
    approved(&w).await;
    let rows = notify_rows(&w).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!((rows[0].0.as_str(), rows[0].1), ("parked", 3), "{rows:#?}");
    assert!(rows[0].3.contains("e-mail not sent") && rows[0].3.contains("invalid peer certificate"), "{rows:#?}");
    assert!(smtp.messages().is_empty(), "nothing in the clear: {:#?}", smtp.messages());
    w.sticky();
    w.done().await;
    db2.cleanup().await;
}
both_backends!(e_mail_goes_over_starttls_when_offered_and_never_in_the_clear);
