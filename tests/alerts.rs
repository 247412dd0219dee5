//! Alerts from the monitoring stack (SPEC §4.2), end to end: Alertmanager's webhook at
//! `POST /alerts/alertmanager` with an installation's `alerts` token, the incident issues the App
//! opens, escalates and closes on the fake GitHub (checked against GitHub's OpenAPI), and the
//! incident rows. The last test drives a real Prometheus Alertmanager.

mod common;
mod fake_github;
mod receivers;
mod world;

use std::time::Duration;

use common::{TestApp, TestDb, fixture, rfc3339};
use fake_github::FakeGitHub;
use serde_json::{Value, json};
use shipgate::clock::Clock;
use shipgate::server::Options;
use shipgate::store::api_tokens::{self, TokenScope};
use shipgate::store::incidents;

const REPO: &str = "acme/app";
const REPO_ID: i64 = 186853002;
const PUBLIC: &str = "acme/site";
const PUBLIC_ID: i64 = 186853003;
const OTHER: &str = "globex/api";
const OTHER_ID: i64 = 999001;
const INST: i64 = 1;
const OTHER_INST: i64 = 2;
const MIN: i64 = 60_000;

const POLICY: &str = r#"
roles:
  pm: { users: [paula] }
  backend-lead: { users: [bob] }
  devops: { users: [olivia], teams: [acme/sre] }
  maintainers: { permission: maintain }
environments:
  production:
    approvals: []
alerts:
  escalate: { app: backend-lead, infra: maintainers, performance: backend-lead, cost: pm, security: pm }
  cost_increase_percent: 20
  respond_within: 30m
"#;

struct World {
    gh: FakeGitHub,
    app: TestApp,
    clock: Clock,
    t0: i64,
    /// The `alerts` token of installation 1.
    token: String,
}

/// The installation event that tells the App an installation's repositories.
fn installation_created(id: i64, repos: &[(i64, &str, bool)]) -> String {
    let mut v: Value = serde_json::from_str(&fixture("installation.created.0")).expect("json");
    v["installation"]["id"] = json!(id);
    v["repositories"] = Value::Array(
        repos
            .iter()
            .map(|(rid, name, private)| {
                json!({ "id": rid, "node_id": "R", "name": name.split('/').nth(1), "full_name": name, "private": private })
            })
            .collect(),
    );
    v.to_string()
}

impl World {
    async fn new(db: &TestDb, clock: Option<Clock>) -> World {
        Self::with_config(db, clock, |_| {}).await
    }

    async fn with_config(
        db: &TestDb,
        clock: Option<Clock>,
        tweak: impl FnOnce(&mut shipgate::config::Config),
    ) -> World {
        let gh = FakeGitHub::start().await;
        gh.install(INST, &[REPO, PUBLIC]);
        gh.install(OTHER_INST, &[OTHER]);
        gh.team("acme", "sre", &[(900, "sam")]);
        gh.permission(REPO, "adam", "admin").permission(REPO, "mallory", "maintain").permission(REPO, "walt", "write");
        gh.file(REPO, ".github/shipgate.yml", POLICY);
        gh.file(PUBLIC, ".github/shipgate.yml", POLICY);
        gh.set_public(PUBLIC, true);
        let mut cfg = world::app_config(db, &gh);
        tweak(&mut cfg);
        let t0 = Clock::system().now_ms() / 1000 * 1000;
        let clock = clock.unwrap_or_else(|| Clock::manual(t0));
        let opts = Options { github: Some(world::fast_github(&gh.url)), clock: clock.clone(), ..Options::default() };
        let app = TestApp::start_with(cfg, opts).await;
        let inst = installation_created(INST, &[(REPO_ID, REPO, true), (PUBLIC_ID, PUBLIC, false)]);
        assert_eq!(app.deliver("installation", "inst-1", &inst).await, 202);
        let other = installation_created(OTHER_INST, &[(OTHER_ID, OTHER, true)]);
        assert_eq!(app.deliver("installation", "inst-2", &other).await, 202);
        world::settle(&app.db).await;
        let (_, token) = api_tokens::create_scoped(&app.db, INST, Some("alertmanager"), TokenScope::Alerts, t0)
            .await
            .expect("token");
        World { gh, app, clock, t0, token }
    }

    async fn post_as(&self, token: Option<&str>, body: &str) -> (u16, Value) {
        let mut req = self
            .app
            .http
            .post(format!("{}/alerts/alertmanager", self.app.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let r = req.send().await.expect("post");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn post(&self, alerts: &[Value]) -> (u16, Value) {
        self.post_as(Some(&self.token), &notification(alerts).to_string()).await
    }

    async fn settle(&self) {
        world::settle(&self.app.db).await;
    }

    fn alert_issues(&self, repo: &str) -> Vec<fake_github::Issue> {
        self.gh.issues_labelled(repo, "alert")
    }

    fn escalations(&self, issue: i64) -> Vec<String> {
        let tag = "<!-- shipgate:ci-escalation -->";
        self.gh.app_comments(REPO, issue).into_iter().filter(|c| c.body.contains(tag)).map(|c| c.body).collect()
    }

    async fn wait_escalated(&self, issue: i64) {
        self.gh
            .wait_for("an escalation comment", Duration::from_secs(20), |m| {
                m.comments.iter().any(|c| c.issue == issue && c.body.contains("<!-- shipgate:ci-escalation -->"))
            })
            .await;
        self.settle().await;
    }

    async fn incidents(&self, repo_id: i64) -> Vec<incidents::IncidentRow> {
        incidents::list(&self.app.db, repo_id).await.expect("incidents")
    }

    async fn done(self) {
        self.app.shutdown().await;
        self.gh.finish();
    }
}

/// An Alertmanager webhook notification (version 4) of `alerts`.
fn notification(alerts: &[Value]) -> Value {
    let firing = alerts.iter().any(|a| a["status"] == "firing");
    json!({
        "receiver": "shipgate",
        "status": if firing { "firing" } else { "resolved" },
        "alerts": alerts,
        "groupLabels": { "alertname": alerts.first().map(|a| a["labels"]["alertname"].clone()) },
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com:9093",
        "version": "4",
        "groupKey": "{}:{alertname=\"HighLatency\"}",
        "truncatedAlerts": 0
    })
}

#[allow(clippy::too_many_arguments)]
fn alert(
    name: &str,
    repo: &str,
    category: &str,
    severity: &str,
    fingerprint: &str,
    starts: i64,
    ends: Option<i64>,
    extra: &[(&str, &str)],
) -> Value {
    let mut annotations = json!({
        "summary": format!("{name} on {repo}"),
        "description": "p95 latency at 800ms (was 200ms).",
        "dashboard_url": "https://grafana.example.com/d/api",
        "runbook_url": "https://runbooks.example.com/latency",
    });
    for (k, v) in extra {
        annotations[*k] = json!(v);
    }
    json!({
        "status": if ends.is_some() { "resolved" } else { "firing" },
        "labels": { "alertname": name, "repository": repo, "category": category, "severity": severity },
        "annotations": annotations,
        "startsAt": rfc3339(starts),
        "endsAt": ends.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=latency",
        "fingerprint": fingerprint,
    })
}

/// A critical alert: one issue (labelled `alert` and its category) with the severity, summary,
/// links and checklist; escalated at once to its category's role; the same notification again
/// changes nothing; resolved, the issue closes with the time to restore from the alert's own
/// times.
async fn a_critical_alert_opens_escalates_and_closes_one_incident(db: &TestDb) {
    let w = World::new(db, None).await;
    let t0 = w.t0;
    let firing = alert("HighLatency", REPO, "performance", "critical", "a1b2c3d4e5f60718", t0 - 5 * MIN, None, &[]);
    let (status, answer) = w.post(std::slice::from_ref(&firing)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    w.settle().await;
    let issues = w.alert_issues(REPO);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    let issue = &issues[0];
    assert_eq!(issue.title, "🔔 Alert: HighLatency: HighLatency on acme/app");
    assert!(issue.labels.contains(&"performance".to_string()), "{:?}", issue.labels);
    for needle in [
        "| Severity | **critical** |",
        "| Category | performance |",
        "[Dashboard](https://grafana.example.com/d/api)",
        "[Runbook](https://runbooks.example.com/latency)",
        "database's slow query logs",
        "**Escalated at once** to `backend-lead`: the alert is critical.",
    ] {
        assert!(issue.body.contains(needle), "{needle} not in {}", issue.body);
    }
    w.wait_escalated(issue.number).await;
    let e = w.escalations(issue.number);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("A critical alert is firing. @bob: please take this over."), "{}", e[0]);

    // Alertmanager re-sends the group every repeat_interval: nothing changes.
    let edits = w.gh.count("issues/update");
    let comments = w.gh.app_comments(REPO, issue.number).len();
    let (status, answer) = w.post(std::slice::from_ref(&firing)).await;
    assert_eq!((status, answer["duplicates"].clone()), (200, json!(1)), "{answer}");
    w.settle().await;
    assert_eq!(w.gh.count("issues/update"), edits, "the same notification edited the issue");
    assert_eq!(w.gh.app_comments(REPO, issue.number).len(), comments);
    assert_eq!(w.alert_issues(REPO).len(), 1);

    // Resolved 25 minutes after it started (the App heard of it 5 minutes late: its own times
    // count, not the App's clock).
    let resolved = alert(
        "HighLatency",
        REPO,
        "performance",
        "critical",
        "a1b2c3d4e5f60718",
        t0 - 5 * MIN,
        Some(t0 + 20 * MIN),
        &[],
    );
    assert_eq!(w.post(std::slice::from_ref(&resolved)).await.0, 202);
    w.settle().await;
    let issue = &w.alert_issues(REPO)[0];
    assert_eq!(issue.state, "closed");
    assert!(issue.body.starts_with("## ✅ Resolved: the alert stopped firing after 25 min"), "{}", issue.body);
    let e = w.escalations(issue.number);
    assert!(e[0].starts_with("## ✅ Resolved after escalation"), "{}", e[0]);
    let rows = w.incidents(REPO_ID).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].kind.as_str(), rows[0].state.as_str(), rows[0].ttr_ms), ("alert", "closed", Some(25 * MIN)));
    // The resolved notification again, and a late firing one of the same start: nothing.
    let edits = w.gh.count("issues/update");
    assert_eq!(w.post(&[resolved]).await.0, 200);
    let (status, _) = w
        .post(&[alert(
            "HighLatency",
            REPO,
            "performance",
            "critical",
            "a1b2c3d4e5f60718",
            t0 - 5 * MIN,
            None,
            &[("value", "late")],
        )])
        .await;
    assert_eq!(status, 202);
    w.settle().await;
    assert_eq!(w.gh.count("issues/update"), edits);
    assert_eq!(w.alert_issues(REPO).len(), 1);
    assert_eq!(w.incidents(REPO_ID).await.len(), 1);
    w.done().await;
}
both_backends!(a_critical_alert_opens_escalates_and_closes_one_incident);

/// A cost alert above `cost_increase_percent` escalates at once to the cost role whatever its
/// severity; one at or below waits for its deadline; categories route to their roles.
async fn cost_threshold_and_category_routing(db: &TestDb) {
    let w = World::new(db, None).await;
    // Started 29 minutes ago: the deadline (30 min) is a minute away.
    let t0 = w.t0 - 29 * MIN;
    let (status, _) = w
        .post(&[
            alert("CostSpike", REPO, "cost", "warning", "c0570001", t0, None, &[("increase_percent", "35")]),
            alert("CostDrift", REPO, "cost", "warning", "c0570002", t0, None, &[("increase_percent", "20")]),
            alert("PodRestarts", REPO, "app", "warning", "a9900001", t0, None, &[]),
            alert("DiskFull", REPO, "", "warning", "d1500001", t0, None, &[]),
        ])
        .await;
    assert_eq!(status, 202);
    w.settle().await;
    let issues = w.alert_issues(REPO);
    assert_eq!(issues.len(), 4, "{issues:#?}");
    let by_title = |name: &str| issues.iter().find(|i| i.title.contains(name)).expect(name).clone();
    let spike = by_title("CostSpike");
    assert!(spike.labels.contains(&"cost".to_string()));
    assert!(spike.body.contains("**Escalated at once** to `pm`: cost up 35% (above 20%)."), "{}", spike.body);
    w.wait_escalated(spike.number).await;
    assert!(w.escalations(spike.number)[0].contains("Cost rose 35%, above the 20% threshold. @paula"));
    // Not above the threshold, and not critical: escalates at its deadline (30 min after it
    // started), not before.
    let drift = by_title("CostDrift");
    assert!(drift.body.contains("Escalates to `pm` if still firing at"), "{}", drift.body);
    let app = by_title("PodRestarts");
    assert!(app.labels.contains(&"app".to_string()));
    assert!(app.body.contains("Escalates to `backend-lead`"), "{}", app.body);
    let disk = by_title("DiskFull");
    assert!(disk.labels.contains(&"infra".to_string()), "no category: infra");
    assert!(disk.body.contains("Escalates to `maintainers`"), "{}", disk.body);
    tokio::time::sleep(Duration::from_millis(2500)).await; // an escalation round or more
    for i in [&drift, &app, &disk] {
        assert!(w.escalations(i.number).is_empty(), "escalated before its deadline: {}", i.title);
    }
    w.clock.advance_ms(2 * MIN);
    w.wait_escalated(drift.number).await;
    assert!(w.escalations(drift.number)[0].contains("still firing after its response deadline"));
    w.wait_escalated(app.number).await;
    assert!(w.escalations(app.number)[0].contains("@bob"), "{:?}", w.escalations(app.number));
    w.wait_escalated(disk.number).await;
    // A permission role: the repository's collaborators with at least `maintain`.
    let e = w.escalations(disk.number);
    assert!(e[0].contains("@adam") && e[0].contains("@mallory") && !e[0].contains("@walt"), "{e:?}");
    w.done().await;
}
both_backends!(cost_threshold_and_category_routing);

/// Who may post what: no or an unknown token 401; a read token 403; another installation's
/// repository 403 (and listed when the group has alerts of both); bad bodies 400 with the reason.
/// Nothing refused is stored.
async fn refusals(db: &TestDb) {
    let w = World::new(db, None).await;
    let t0 = w.t0;
    let mine = alert("HighLatency", REPO, "app", "warning", "f1", t0, None, &[]);
    let theirs = alert("HighLatency", OTHER, "app", "warning", "f2", t0, None, &[]);
    let unnamed = {
        let mut a = alert("NoRepo", REPO, "app", "warning", "f3", t0, None, &[]);
        a["labels"].as_object_mut().expect("labels").remove("repository");
        a
    };
    let body = notification(std::slice::from_ref(&mine)).to_string();
    assert_eq!(w.post_as(None, &body).await.0, 401);
    assert_eq!(w.post_as(Some("sg_0000"), &body).await.0, 401);
    let (_, read) = api_tokens::create(&w.app.db, INST, Some("reader"), t0).await.expect("token");
    let (status, answer) = w.post_as(Some(&read), &body).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("--scope alerts"), "{answer}");
    // An alerts token reads nothing of the API.
    let r = w.app.http.get(format!("{}/api/requests", w.app.url)).bearer_auth(&w.token).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 403);

    let (status, answer) = w.post(&[theirs.clone(), unnamed.clone()]).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("not a repository of this token's installation"), "{answer}");
    let (status, answer) = w.post(&[mine.clone(), theirs.clone(), unnamed]).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 1);
    let skipped = answer["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 2, "{answer}");
    assert_eq!(skipped[0]["repository"], OTHER);
    assert_eq!(skipped[1]["reason"], "no `repository` label");

    for (body, needle) in [
        ("not json".to_string(), "not JSON"),
        (json!({"alerts": "x"}).to_string(), "not an Alertmanager webhook notification"),
        (json!([1, 2]).to_string(), "not an Alertmanager webhook notification"),
        (
            {
                let mut n = notification(std::slice::from_ref(&mine));
                n["version"] = json!("3");
                n.to_string()
            },
            "version `3` is not supported",
        ),
        (notification(&[]).to_string(), "no alerts"),
        (
            {
                let mut a = mine.clone();
                a["startsAt"] = json!("yesterday");
                notification(&[a]).to_string()
            },
            "no valid startsAt",
        ),
    ] {
        let (status, answer) = w.post_as(Some(&w.token), &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(needle), "{needle}: {answer}");
    }
    w.settle().await;
    assert_eq!(common::count(&w.app.db, "SELECT COUNT(*) FROM deliveries WHERE event = 'shipgate_alert'").await, 1);
    assert!(w.gh.issues_labelled(OTHER, "alert").is_empty());
    assert_eq!(w.alert_issues(REPO).len(), 1);
    // Too large a body: 413; more alerts than a notification may carry: the rest skipped.
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    assert_eq!(w.post_as(Some(&w.token), &big).await.0, 413);
    let mut many: Vec<Value> = (0..500)
        .map(|i| {
            let mut a = alert("NoRepo", REPO, "app", "warning", &format!("m{i}"), t0, None, &[]);
            a["labels"].as_object_mut().expect("labels").remove("repository");
            a
        })
        .collect();
    many.push(alert("OneTooMany", REPO, "app", "warning", "m500", t0, None, &[]));
    let (status, answer) = w.post(&many).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("OneTooMany: over the 500 alerts"), "{answer}");
    // A suspended installation's token posts nothing.
    let mut suspend: Value = serde_json::from_str(&fixture("installation.suspend.0")).expect("json");
    suspend["installation"]["id"] = json!(INST);
    assert_eq!(w.app.deliver("installation", "inst-suspend", &suspend.to_string()).await, 202);
    w.settle().await;
    let other = alert("Other", REPO, "app", "warning", "f9", t0, None, &[]);
    let (status, answer) = w.post(&[other]).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("suspended"), "{answer}");
    w.done().await;
}
both_backends!(refusals);

/// The same fingerprint firing again within 24 h of resolving reopens its issue with a comment;
/// later, it is a new issue. A security alert on a public repository is kept by the App, never
/// put in an issue.
async fn refiring_reopens_within_a_day_and_public_security_alerts_stay_private(db: &TestDb) {
    let w = World::new(db, None).await;
    // The alerts' own times decide (the App's clock does not move): the first firing 52 h ago.
    let (t0, h) = (w.t0 - 52 * 60 * MIN, 60 * MIN);
    let fp = "0e0e0e0e";
    let fire = |starts| alert("Errors", REPO, "app", "warning", fp, starts, None, &[]);
    let resolve = |starts, ends| alert("Errors", REPO, "app", "warning", fp, starts, Some(ends), &[]);
    assert_eq!(w.post(&[fire(t0)]).await.0, 202);
    w.settle().await;
    assert_eq!(w.post(&[resolve(t0, t0 + 10 * MIN)]).await.0, 202);
    w.settle().await;
    let first = w.alert_issues(REPO)[0].clone();
    assert_eq!(first.state, "closed");
    // Fires again 2 h later: the same issue, open again, with a comment.
    assert_eq!(w.post(&[fire(t0 + 2 * h)]).await.0, 202);
    w.settle().await;
    let issues = w.alert_issues(REPO);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].state, "open");
    assert!(issues[0].body.contains("| Fired | 2 times |"), "{}", issues[0].body);
    let comments: Vec<String> = w.gh.app_comments(REPO, first.number).into_iter().map(|c| c.body).collect();
    assert!(comments.iter().any(|c| c.contains("## 🔁 Firing again: Errors")), "{comments:?}");
    assert_eq!(w.post(&[resolve(t0 + 2 * h, t0 + 2 * h + 5 * MIN)]).await.0, 202);
    w.settle().await;
    let rows = w.incidents(REPO_ID).await;
    assert_eq!((rows.len(), rows[0].ttr_ms), (1, Some(5 * MIN)), "the second firing's own time to restore");
    assert_eq!(w.alert_issues(REPO)[0].state, "closed");
    // 50 h after it resolved: a new issue.
    assert_eq!(w.post(&[fire(w.t0)]).await.0, 202);
    w.settle().await;
    let issues = w.alert_issues(REPO);
    assert_eq!(issues.len(), 2, "{issues:#?}");
    assert_eq!(w.incidents(REPO_ID).await.len(), 2);

    // Security, public repository: an incident, no issue anywhere.
    let leak = alert("TokenLeak", PUBLIC, "security", "critical", "5ec0001", w.t0, None, &[]);
    assert_eq!(w.post(&[leak]).await.0, 202);
    w.settle().await;
    assert!(w.gh.issues_labelled(PUBLIC, "alert").is_empty());
    let rows = w.incidents(PUBLIC_ID).await;
    assert_eq!((rows.len(), rows[0].kind.as_str(), rows[0].state.as_str()), (1, "alert", "open"));
    assert!(rows[0].escalated_at.is_some(), "kept by the App: counts as escalated");
    w.done().await;
}
both_backends!(refiring_reopens_within_a_day_and_public_security_alerts_stay_private);

/// A flapping availability alert reopens its incident within a day; each of its firings is
/// downtime in the figures' uptime, not only the last one (the first was down an hour).
async fn every_firing_of_a_reopened_availability_alert_is_downtime(db: &TestDb) {
    let w = World::new(db, None).await;
    let (t0, h) = (w.t0 - 10 * 60 * MIN, 60 * MIN);
    let fp = "a7a7a7a7";
    let slo = |mut a: Value| {
        a["labels"]["slo"] = json!("availability");
        a
    };
    let fire = |starts| slo(alert("Down", REPO, "app", "warning", fp, starts, None, &[]));
    let resolve = |starts, ends| slo(alert("Down", REPO, "app", "warning", fp, starts, Some(ends), &[]));
    for a in [fire(t0), resolve(t0, t0 + h), fire(t0 + 2 * h), resolve(t0 + 2 * h, t0 + 2 * h + 5 * MIN)] {
        assert_eq!(w.post(&[a]).await.0, 202);
        w.settle().await;
    }
    assert_eq!(w.incidents(REPO_ID).await.len(), 1, "one incident, reopened");
    let facts = shipgate::store::figures::facts(&w.app.db, INST, REPO_ID, t0 - 24 * h).await.expect("facts");
    // A window of 10 hours with 65 minutes down.
    let f = shipgate::domain::figures::compute(&facts, t0 - h, t0 + 9 * h);
    assert_eq!(f.uptime, Some(1.0 - (65 * MIN) as f64 / (10 * h) as f64));
    // A third firing, still open at the window's end: the two before stay downtime.
    assert_eq!(w.post(&[fire(t0 + 3 * h)]).await.0, 202);
    w.settle().await;
    let issue = w.alert_issues(REPO)[0].number;
    assert_eq!(w.gh.app_comments(REPO, issue).iter().filter(|c| c.body.contains("Firing again")).count(), 2);
    let facts = shipgate::store::figures::facts(&w.app.db, INST, REPO_ID, t0 - 24 * h).await.expect("facts");
    let f = shipgate::domain::figures::compute(&facts, t0 - h, t0 + 4 * h);
    assert_eq!(f.uptime, Some(1.0 - (65 * MIN + h) as f64 / (5 * h) as f64));
    w.done().await;
}
both_backends!(every_firing_of_a_reopened_availability_alert_is_downtime);

/// The policy's `notify:` rules hear of alert incidents: opened, escalated, recovered, each
/// naming the alert and linking to its issue; a security alert kept by the App links to the
/// alert's own page, never to an issue.
async fn alert_incidents_are_notified(db: &TestDb) {
    let slack = receivers::SlackReceiver::start().await;
    let hook = slack.hook_url("oncall");
    // The system's clock: a notice waits (by the clock) for its incident's issue to be created.
    let w = World::with_config(db, Some(Clock::system()), move |cfg| {
        cfg.notify.slack.insert(("acme".into(), "oncall".into()), shipgate::config::Secret::new(hook));
    })
    .await;
    let policy = format!(
        "{POLICY}notify:\n  - {{ on: [incident_opened, escalated, recovered, security_alert], to: [slack:oncall] }}\n"
    );
    w.gh.file(REPO, ".github/shipgate.yml", &policy);
    w.gh.file(PUBLIC, ".github/shipgate.yml", &policy);
    let t0 = w.t0;
    let firing = alert("HighLatency", REPO, "performance", "critical", "n0t1f1ed", t0 - 5 * MIN, None, &[]);
    assert_eq!(w.post(&[firing]).await.0, 202);
    w.settle().await;
    let issue = w.alert_issues(REPO)[0].clone();
    w.wait_escalated(issue.number).await;
    let resolved =
        alert("HighLatency", REPO, "performance", "critical", "n0t1f1ed", t0 - 5 * MIN, Some(t0 + 5 * MIN), &[]);
    assert_eq!(w.post(&[resolved]).await.0, 202);
    w.settle().await;
    let _ = w.escalations(issue.number);
    let messages = slack.wait_for("oncall", 3, Duration::from_secs(20)).await;
    let texts: Vec<String> = messages.iter().map(|m| m["text"].as_str().unwrap_or_default().to_string()).collect();
    let link = format!("/{REPO}/issues/{}", issue.number);
    for (i, needle) in
        ["HighLatency is firing (critical, performance). Escalated at once to backend-lead.", "Escalated", "Recovered"]
            .iter()
            .enumerate()
    {
        assert!(messages[i].to_string().contains(needle), "message {i} lacks {needle}: {:#}", messages[i]);
        assert!(texts[i].contains("HighLatency"), "{texts:#?}");
        assert!(messages[i].to_string().contains(&link), "message {i} does not link {link}: {}", messages[i]);
    }
    // A security alert of a public repository: to the channel, linked to the alert's page.
    let mut leak = alert("TokenLeak", PUBLIC, "security", "critical", "5ec0n0t1", t0, None, &[]);
    leak["generatorURL"] = json!("https://prometheus.example.com/graph?g0.expr=leaks");
    assert_eq!(w.post(&[leak]).await.0, 202);
    w.settle().await;
    let messages = slack.wait_for("oncall", 4, Duration::from_secs(20)).await;
    let last = messages[3].to_string();
    assert!(
        last.contains("TokenLeak") && last.contains("https://prometheus.example.com/graph?g0.expr=leaks"),
        "{last}"
    );
    assert!(!last.contains("/issues/"), "{last}");
    assert!(w.gh.issues_labelled(PUBLIC, "alert").is_empty());
    w.done().await;
}
both_backends!(alert_incidents_are_notified);

// ---------------------------------------------------------------------------------------------
// A real Prometheus Alertmanager
// ---------------------------------------------------------------------------------------------

/// Debian's `prometheus-alertmanager` (installed by `.ci/run`), or `SHIPGATE_TEST_ALERTMANAGER`.
fn alertmanager_binary() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("SHIPGATE_TEST_ALERTMANAGER") {
        return p.into();
    }
    for name in ["prometheus-alertmanager", "alertmanager"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/bin", "/usr/local/bin"]) {
            let p = std::path::Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "NO REAL ALERTMANAGER: this test needs Prometheus Alertmanager (Debian: `apt-get install \
         prometheus-alertmanager`, which .ci/run does) or SHIPGATE_TEST_ALERTMANAGER=/path/to/alertmanager"
    );
}

struct Alertmanager {
    _child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    async fn start(app_url: &str, token: &str) -> Alertmanager {
        let dir = tempfile::tempdir().expect("dir");
        let port = common::free_port();
        let config = format!(
            "route:\n  receiver: shipgate\n  group_by: [alertname, repository]\n  group_wait: 200ms\n  \
             group_interval: 1s\n  repeat_interval: 2s\nreceivers:\n  - name: shipgate\n    webhook_configs:\n      \
             - url: {app_url}/alerts/alertmanager\n        send_resolved: true\n        http_config:\n          \
             authorization:\n            type: Bearer\n            credentials: {token}\n"
        );
        let file = dir.path().join("alertmanager.yml");
        std::fs::write(&file, config).expect("config");
        let child = tokio::process::Command::new(alertmanager_binary())
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .kill_on_drop(true)
            .spawn()
            .expect("start alertmanager");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{url}/-/ready")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "alertmanager did not become ready at {url}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Alertmanager { _child: child, url, _dir: dir }
    }

    /// Posts alerts to Alertmanager's own API, as Prometheus does.
    async fn post(&self, alerts: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.url))
            .json(&alerts)
            .send()
            .await
            .expect("post to alertmanager");
        assert!(r.status().is_success(), "alertmanager refused the alerts: {}", r.status());
    }

    /// Webhook notifications Alertmanager sent and how many failed (its own metrics).
    async fn notifications(&self) -> (f64, f64) {
        let text = reqwest::get(format!("{}/metrics", self.url)).await.expect("metrics").text().await.expect("text");
        let read = |name: &str| {
            text.lines()
                .filter(|l| l.starts_with(name) && l.contains("integration=\"webhook\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        };
        (read("alertmanager_notifications_total"), read("alertmanager_notifications_failed_total"))
    }
}

/// The whole path with a real Alertmanager: its webhook receiver points at the App with the
/// bearer token; alerts posted to its API open an incident issue, critical escalates at once, its
/// repeats (every 2 s here) leave one issue, and the resolution closes it with a time to restore.
async fn a_real_alertmanager_opens_and_closes_an_incident(db: &TestDb) {
    let w = World::new(db, Some(Clock::system())).await;
    let am = Alertmanager::start(&w.app.url, &w.token).await;
    let now = Clock::system().now_ms();
    let starts = rfc3339(now - 60_000);
    let labels = json!({ "alertname": "HighErrorRate", "repository": REPO, "category": "app", "severity": "critical" });
    let annotations = json!({ "summary": "5xx above 5%", "dashboard_url": "https://grafana.example.com/d/errors" });
    am.post(json!([{ "labels": labels, "annotations": annotations, "startsAt": starts }])).await;
    w.gh.wait_for("the alert's incident issue", Duration::from_secs(30), |m| {
        m.issues.values().any(|i| i.labels.iter().any(|l| l == "alert"))
    })
    .await;
    w.settle().await;
    let issue = w.alert_issues(REPO)[0].clone();
    assert!(issue.title.contains("HighErrorRate"), "{}", issue.title);
    assert!(issue.labels.contains(&"app".to_string()), "{:?}", issue.labels);
    assert!(issue.body.contains("[Dashboard](https://grafana.example.com/d/errors)"), "{}", issue.body);
    w.wait_escalated(issue.number).await;
    assert!(w.escalations(issue.number)[0].contains("@bob"));
    // Let Alertmanager repeat the notification (repeat_interval 2 s): still one issue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while am.notifications().await.0 < 3.0 {
        assert!(tokio::time::Instant::now() < deadline, "alertmanager did not repeat: {:?}", am.notifications().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    w.settle().await;
    assert_eq!(w.alert_issues(REPO).len(), 1);
    assert_eq!(w.escalations(issue.number).len(), 1);
    // Resolved: posted again with an end in the past.
    let ends = Clock::system().now_ms() / 1000 * 1000;
    am.post(json!([{ "labels": labels, "annotations": annotations, "startsAt": starts, "endsAt": rfc3339(ends) }]))
        .await;
    w.gh.wait_for("the incident issue closed", Duration::from_secs(30), |m| {
        m.issues.values().any(|i| i.labels.iter().any(|l| l == "alert") && i.state == "closed")
    })
    .await;
    w.settle().await;
    let rows = w.incidents(REPO_ID).await;
    assert_eq!(rows.len(), 1);
    let expected = ends - (now - 60_000) / 1000 * 1000;
    assert_eq!((rows[0].state.as_str(), rows[0].ttr_ms), ("closed", Some(expected)), "{:?}", rows[0]);
    assert!(w.escalations(issue.number)[0].starts_with("## ✅ Resolved after escalation"));
    let (_, failed) = am.notifications().await;
    assert_eq!(failed, 0.0, "the App refused a notification of the real Alertmanager");
    drop(am);
    w.done().await;
}
both_backends!(a_real_alertmanager_opens_and_closes_an_incident);

/// Grafana's webhook contact point sends the same shape as version 1, with its organisation,
/// fractional times with an offset, and the dashboard as a field of the alert (the example of
/// Grafana's documentation, with a `repository` label).
async fn grafanas_webhook_contact_point_is_taken_too(db: &TestDb) {
    let w = World::new(db, None).await;
    let body = json!({
        "receiver": "shipgate",
        "status": "firing",
        "orgId": 1,
        "alerts": [{
            "status": "firing",
            "labels": { "alertname": "High memory usage", "team": "blue", "repository": REPO, "category": "infra" },
            "annotations": {
                "description": "The system has high memory usage",
                "runbook_url": "https://myrunbook.com/runbook/1234",
                "summary": "This alert was triggered for zone us-1"
            },
            "startsAt": "2021-10-12T09:51:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "https://play.grafana.org/alerting/silence/new",
            "dashboardURL": "https://play.grafana.org/d/memory",
            "panelURL": "",
            "values": { "B": 44.23943737541908, "C": 1 }
        }],
        "groupLabels": {},
        "commonLabels": { "team": "blue" },
        "commonAnnotations": {},
        "externalURL": "https://play.grafana.org/",
        "version": "1",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "title": "[FIRING:1]  (blue)",
        "state": "alerting",
        "message": "**Firing**"
    });
    let (status, answer) = w.post_as(Some(&w.token), &body.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    w.settle().await;
    let issue = w.alert_issues(REPO)[0].clone();
    assert!(issue.title.contains("High memory usage"), "{}", issue.title);
    assert!(issue.body.contains("[Dashboard](https://play.grafana.org/d/memory)"), "{}", issue.body);
    assert!(issue.body.contains("| Started | 2021-10-12 07:51 UTC |"), "{}", issue.body);
    // Started long before its response deadline: escalated as soon as its issue exists.
    w.wait_escalated(issue.number).await;
    assert!(w.escalations(issue.number)[0].contains("still firing after its response deadline"));
    // Version 1 without Grafana's organisation is not Alertmanager's.
    let mut other = body.clone();
    other.as_object_mut().expect("object").remove("orgId");
    assert_eq!(w.post_as(Some(&w.token), &other.to_string()).await.0, 400);
    w.done().await;
}
both_backends!(grafanas_webhook_contact_point_is_taken_too);

// ---------------------------------------------------------------------------------------------
// An attacker's review of b82687b: each test below failed on that commit.
// ---------------------------------------------------------------------------------------------

/// Text no compressor shrinks (LZ4 finds no repeats in it).
fn noise(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect()
}

/// The notification's own fields (`groupKey`, `receiver`, `externalURL`) are copied into every
/// alert's stored delivery: one request of ~100 KB with a 64 KiB group key and 200 tiny alerts
/// stores ~13 MB (a 1 MiB request: ~5,000 alerts × ~1 MiB, gigabytes, held in memory before the
/// first row is written). What is stored must stay proportional to what was sent.
async fn a_notification_is_not_stored_once_per_alert(db: &TestDb) {
    let w = World::new(db, None).await;
    let t0 = w.t0;
    // Resolved alerts of incidents that never opened: the worker ignores them (no GitHub work).
    let alerts: Vec<Value> = (0..200)
        .map(|i| {
            json!({
                "status": "resolved",
                "labels": { "alertname": "A", "repository": REPO },
                "startsAt": rfc3339(t0 - 10 * MIN),
                "endsAt": rfc3339(t0 - MIN),
                "fingerprint": format!("amp{i:05}"),
            })
        })
        .collect();
    let mut n = notification(&alerts);
    n["groupKey"] = json!(noise(64 * 1024, 7));
    let body = n.to_string();
    let (status, answer) = w.post_as(Some(&w.token), &body).await;
    assert!(status == 202 || status == 413 || status == 400, "{status}: {answer}");
    // Stored before the answer (read before the worker or retention touch anything).
    let stored = common::count(
        &w.app.db,
        "SELECT COALESCE(SUM(LENGTH(b.body_lz4)), 0) + COALESCE(SUM(LENGTH(b.body)), 0) FROM delivery_bodies b \
         JOIN deliveries d ON d.seq = b.seq WHERE d.event = 'shipgate_alert'",
    )
    .await;
    assert!(
        stored <= 4 * body.len() as i64,
        "a {} byte notification was stored as {stored} bytes (amplified {}x)",
        body.len(),
        stored / body.len() as i64
    );
    w.settle().await;
    w.done().await;
}
both_backends!(a_notification_is_not_stored_once_per_alert);

/// The same alert (fingerprint) fired at s1, resolved, fired again at s2; Alertmanager's
/// notifications arrive firing(s1), firing(s2), then the late resolved(s1). The second firing is
/// merged into the open incident keeping the older start (`min`), so the late end of the first
/// firing closes the incident while the alert is firing; Alertmanager's re-sends of firing(s2)
/// are identical, hence duplicates at the intake: it stays closed.
async fn a_late_resolution_of_an_earlier_firing_does_not_close_the_next(db: &TestDb) {
    let w = World::new(db, None).await;
    let (s1, s2) = (w.t0 - 60 * MIN, w.t0 - 20 * MIN);
    let fp = "0rd3r001";
    let fire = |s| alert("Errors", REPO, "app", "warning", fp, s, None, &[]);
    assert_eq!(w.post(&[fire(s1)]).await.0, 202);
    w.settle().await;
    assert_eq!(w.post(&[fire(s2)]).await.0, 202);
    w.settle().await;
    let late = alert("Errors", REPO, "app", "warning", fp, s1, Some(s1 + 10 * MIN), &[]);
    assert_eq!(w.post(&[late]).await.0, 202);
    w.settle().await;
    // Alertmanager repeats the firing notification: a duplicate.
    w.post(&[fire(s2)]).await;
    w.settle().await;
    let rows = w.incidents(REPO_ID).await;
    assert!(rows.iter().any(|r| r.state == "open"), "the alert fires since s2 but no incident is open: {rows:?}");
    assert!(w.alert_issues(REPO).iter().any(|i| i.state == "open"), "{:#?}", w.alert_issues(REPO));
    w.done().await;
}
both_backends!(a_late_resolution_of_an_earlier_firing_does_not_close_the_next);

/// resolved(s, e) arrives before firing(s) (a retry, an HA pair): the resolution is dropped
/// (no open incident), then the late firing opens an incident that nothing will ever close
/// (the alert is over, Alertmanager sends nothing more) and that escalates at its deadline.
async fn a_resolution_before_its_firing_leaves_nothing_open(db: &TestDb) {
    let w = World::new(db, None).await;
    let s = w.t0 - 30 * MIN;
    let fp = "0rd3r002";
    let resolved = alert("Errors", REPO, "app", "warning", fp, s, Some(s + 5 * MIN), &[]);
    assert_eq!(w.post(&[resolved]).await.0, 202);
    w.settle().await;
    assert_eq!(w.post(&[alert("Errors", REPO, "app", "warning", fp, s, None, &[])]).await.0, 202);
    w.settle().await;
    let rows = w.incidents(REPO_ID).await;
    assert!(rows.iter().all(|r| r.state == "closed"), "an alert that ended is an open incident: {rows:?}");
    assert!(w.alert_issues(REPO).iter().all(|i| i.state == "closed"), "{:#?}", w.alert_issues(REPO));
    w.done().await;
}
both_backends!(a_resolution_before_its_firing_leaves_nothing_open);

/// Someone without a token: the 1 MiB body is read (and held) before the token is looked at.
/// A request that announces 1 MB and sends nothing is answered only when the body times out
/// (408 after 10 s), not 401 at once: 512 such connections hold 512 MiB without a token, ten
/// times the unverified-bytes budget of `/webhook`, which is not charged here.
async fn no_token_is_refused_before_the_body_is_read(db: &TestDb) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = World::new(db, None).await;
    let mut s = tokio::net::TcpStream::connect(w.app.server.addr).await.expect("connect");
    s.write_all(
        b"POST /alerts/alertmanager HTTP/1.1\r\nHost: shipgate\r\nContent-Type: application/json\r\n\
          Content-Length: 1000000\r\n\r\n",
    )
    .await
    .expect("head");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("no answer within 3 s: the body is awaited before the token is checked")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    drop(s);
    w.done().await;
}
both_backends!(no_token_is_refused_before_the_body_is_read);

/// An `alerts` token holder spends the installation's GitHub rate limit: every firing delivery
/// lists the repository's collaborators (`role_mentions`, before the "nothing changed" check),
/// and a delivery is new whenever anything of the notification differs (`groupKey`, `receiver`,
/// an annotation the issue does not show). Twenty notifications of the same, unchanged, open
/// alert make twenty paginated listings.
async fn an_unchanged_firing_does_not_list_collaborators_again(db: &TestDb) {
    let w = World::new(db, None).await;
    // No category: infra, which escalates to `maintainers` (a permission role).
    let firing = alert("DiskFull", REPO, "", "warning", "d15cf011", w.t0 - 5 * MIN, None, &[]);
    assert_eq!(w.post(std::slice::from_ref(&firing)).await.0, 202);
    w.settle().await;
    assert_eq!(w.alert_issues(REPO).len(), 1);
    let before = w.gh.count("repos/list-collaborators");
    for i in 0..20 {
        let mut n = notification(std::slice::from_ref(&firing));
        n["groupKey"] = json!(format!("{{}}:{{alertname=\"DiskFull\",n=\"{i}\"}}"));
        assert_eq!(w.post_as(Some(&w.token), &n.to_string()).await.0, 202);
    }
    w.settle().await;
    assert_eq!(w.alert_issues(REPO).len(), 1);
    let after = w.gh.count("repos/list-collaborators");
    assert!(after - before <= 1, "{} collaborator listings for an alert that did not change", after - before);
    w.done().await;
}
both_backends!(an_unchanged_firing_does_not_list_collaborators_again);

/// A repository's visibility was taken from the `repositories` table, written only by
/// installation events: a private repository made public later stayed "private" there, and a
/// security alert was disclosed in a public issue. It is asked of GitHub when the incident opens.
async fn a_repository_made_public_gets_no_security_issue(db: &TestDb) {
    let w = World::new(db, None).await;
    w.gh.set_public(REPO, true); // the App was told "private" by the installation event
    let leak = alert("TokenLeak", REPO, "security", "critical", "5ec0002", w.t0, None, &[]);
    assert_eq!(w.post(&[leak]).await.0, 202);
    w.settle().await;
    let issues = w.alert_issues(REPO);
    assert!(issues.is_empty(), "a security alert of a now public repository is a public issue: {issues:#?}");
    let rows = w.incidents(REPO_ID).await;
    assert_eq!((rows.len(), rows[0].state.as_str()), (1, "open"), "kept by the App");
    w.done().await;
}
both_backends!(a_repository_made_public_gets_no_security_issue);
