//! The read-only JSON API: an installation's token reads its own requests, approvals, audit
//! entries and deliveries and nothing of another installation's (404 or an empty list, whether
//! listed, filtered or asked for by a guessed id); the admin token reads all; no or a bad token is
//! a 401. Both backends.

mod common;
#[path = "fake_github/openapi.rs"]
mod openapi;

use common::{TestApp, TestDb, fixture, unique};
use serde_json::{Value, json};
use shipgate::config::Secret;
use shipgate::server::Options;
use shipgate::store::incidents::{self, IncidentRow};
use shipgate::store::requests::{ApprovalChange, RequestRow};
use shipgate::store::tenancy::InstallationRecord;
use shipgate::store::{Db, StoreError, api_tokens, audit, requests, tenancy};

const ADMIN: &str = "admin-0123456789abcdef0123456789abcdef";
const T0: i64 = 1_795_942_800_000;

fn request(installation: i64, repository_id: i64, repository: &str, issue: i64, state: &str) -> RequestRow {
    RequestRow {
        installation_id: installation,
        repository_id,
        repository: repository.into(),
        issue,
        author_id: 401,
        author_login: "carol".into(),
        labelled: 1,
        open: 1,
        environment: Some("production".into()),
        fingerprint: "fp".into(),
        revision: 1,
        state: state.into(),
        facts: json!({
            "prs": [{ "number": 12, "head_sha": "abc", "author": { "id": 401, "login": "carol" }, "state": "open",
                      "files": null, "checks": [] }],
            "missing_prs": [], "review_approved": false, "shown": "digest-of-what-was-shown"
        })
        .to_string(),
        deploy_key: Some("deploy-key-internal".into()),
        labels: r#"["DEPLOYMENT_REQUEST"]"#.into(),
        created_at: T0,
        updated_at: T0,
        ..RequestRow::default()
    }
}

fn approval(installation: i64, repository_id: i64, issue: i64, comment_id: i64, login: &str) -> ApprovalChange {
    ApprovalChange {
        installation_id: installation,
        repository_id,
        issue,
        comment_id,
        user_id: comment_id,
        login: login.into(),
        roles: r#"["pm"]"#.into(),
        environment: "production".into(),
        head_shas: "abc".into(),
        revision: 1,
        state: shipgate::domain::state::ApprovalState::Active,
        note: None,
        given_at: None,
    }
}

fn audit_entry(installation: i64, repository_id: i64, repository: &str, issue: i64, kind: &str) -> audit::AuditEntry {
    audit::AuditEntry {
        installation_id: installation,
        repository_id: Some(repository_id),
        repository: Some(repository.into()),
        issue: Some(issue),
        kind: kind.into(),
        actor_id: Some(101),
        actor_login: Some("alice".into()),
        detail: json!({ "installation": installation }),
    }
}

/// Two tenants: installation 1 (acme/app, requests #5 and #6) and installation 2 (beta/site, #5),
/// each with approvals, audit entries and deliveries; and a ping that belongs to no installation.
async fn two_tenants(app: &TestApp) {
    let db = &app.db;
    let mut tx = db.begin_write().await.expect("begin");
    for (id, login) in [(1, "acme"), (2, "beta")] {
        let rec = InstallationRecord {
            id,
            account_id: id * 100,
            account_login: login.into(),
            account_type: Some("Organization".into()),
            repository_selection: Some("all".into()),
            permissions: "{}".into(),
            events: "[]".into(),
        };
        tenancy::upsert_installation(&mut tx, &rec, T0).await.expect("installation");
    }
    requests::save(&mut tx, &request(1, 10, "acme/app", 5, "approved")).await.expect("save");
    requests::save(&mut tx, &request(1, 10, "acme/app", 6, "awaiting-approval")).await.expect("save");
    requests::save(&mut tx, &request(2, 20, "beta/site", 5, "approved")).await.expect("save");
    requests::save_approval(&mut tx, &approval(1, 10, 5, 1001, "alice"), T0).await.expect("approval");
    requests::save_approval(&mut tx, &approval(2, 20, 5, 2001, "bea"), T0).await.expect("approval");
    for (inst, repo_id, repo, issue, kind) in [
        (1, 10, "acme/app", 5, "request.parsed"),
        (2, 20, "beta/site", 5, "request.parsed"),
        (1, 10, "acme/app", 5, "approval.given"),
        (1, 10, "acme/app", 6, "request.parsed"),
        (2, 20, "beta/site", 5, "gate.opened"),
    ] {
        audit::append(
            &mut tx,
            Some(&audit::AuditKey::new(shipgate::config::TEST_AUDIT_KEY)),
            &audit_entry(inst, repo_id, repo, issue, kind),
            Some("seed"),
            T0,
        )
        .await
        .expect("audit");
    }
    for (inst, repo_id, repo, state) in
        [(1, 10, "acme/app", "open"), (2, 20, "beta/site", "open"), (1, 10, "acme/app", "closed")]
    {
        let n = if state == "closed" { 2 } else { 1 };
        let row = IncidentRow {
            id: format!("{repo_id}:ci-incident:7:main:{n}"),
            installation_id: inst,
            repository_id: repo_id,
            repository: repo.into(),
            kind: "ci".into(),
            subject: "7:main".into(),
            seq: n,
            marker: format!("ci-incident:7:main:{n}"),
            title: "CI failing on main".into(),
            branch: "main".into(),
            on_default: 1,
            state: state.into(),
            opened_at: T0,
            first_failure_at: T0,
            last_run_number: 1,
            last_attempt: 1,
            failures: 1,
            deadline: T0 + 3_600_000,
            mentions: String::new(),
            escalated_at: None,
            recovered_at: None,
            ttr_ms: None,
            flaky: 0,
            details: "{}".into(),
            updated_at: T0,
        };
        incidents::apply(&mut tx, &incidents::Change::Incident(row), T0).await.expect("incident");
    }
    tx.commit().await.expect("commit");

    for (inst, repo, id) in [(1, "acme/app", "del-a1"), (2, "beta/site", "del-b1"), (1, "acme/app", "del-a2")] {
        let mut v: Value = serde_json::from_str(&fixture("issues.labeled.0")).expect("fixture");
        v["installation"] = json!({ "id": inst });
        v["repository"]["full_name"] = json!(repo);
        assert_eq!(app.deliver("issues", id, &unique(&v.to_string(), id)).await, 202);
    }
    let mut ping: Value = serde_json::from_str(&fixture("ping.none.0")).expect("fixture");
    if let Some(o) = ping.as_object_mut() {
        o.remove("installation");
    }
    assert_eq!(app.deliver("ping", "del-ping", &unique(&ping.to_string(), "ping")).await, 202);
}

async fn start(tdb: &TestDb) -> TestApp {
    let mut cfg = tdb.config();
    cfg.admin_token = Some(Secret::new(ADMIN));
    // No worker: the deliveries stay as received, so the test knows exactly what is there.
    let app = TestApp::start_with(cfg, Options { run_worker: false, ..Options::default() }).await;
    two_tenants(&app).await;
    app
}

struct Client<'a> {
    app: &'a TestApp,
}

impl Client<'_> {
    async fn get(&self, token: Option<&str>, path: &str) -> (u16, Value) {
        let mut req = self.app.http.get(format!("{}{path}", self.app.url));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let ctype = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let body: Value = r.json().await.expect("a JSON answer");
        assert!(ctype.starts_with("application/json"), "{path}: {ctype}");
        self.check_against_the_document(path, status, &body).await;
        (status, body)
    }

    /// Every answer the tests get must be what `/api/openapi.json` says: the route and status
    /// documented, the body valid against its schema with no key the schema does not define,
    /// and, for a 200, every query parameter sent declared with a value its schema accepts.
    async fn check_against_the_document(&self, path: &str, status: u16, body: &Value) {
        static SPEC: std::sync::OnceLock<openapi::Spec> = std::sync::OnceLock::new();
        if SPEC.get().is_none() {
            let r = self.app.http.get(format!("{}/api/openapi.json", self.app.url)).send().await.expect("get");
            assert_eq!(r.status(), 200, "/api/openapi.json needs no token");
            let doc: Value = r.json().await.expect("the OpenAPI document is JSON");
            let _ = SPEC.set(openapi::Spec::from_value(doc));
        }
        let spec = SPEC.get().expect("the document");
        let (route, query) = path.split_once('?').unwrap_or((path, ""));
        let op = spec.find("GET", route).unwrap_or_else(|| panic!("GET {route} is not in /api/openapi.json"));
        let schema = spec
            .response_schema(&op.operation_id, status)
            .unwrap_or_else(|| panic!("{path}: status {status} is not documented for {}", op.operation_id));
        let problems = spec.validate_value(schema, body, true);
        assert!(problems.is_empty(), "{path} ({status}) does not match /api/openapi.json: {problems:#?}\n{body:#}");
        if status == 200 {
            let pairs: Vec<(String, String)> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (k.to_string(), v.replace("%2F", "/").replace("%3A", ":"))
                })
                .collect();
            if let Err(problems) = spec.validate("GET", route, &pairs, None) {
                panic!("{path}: its query is not what /api/openapi.json declares: {problems:#?}");
            }
        }
    }

    async fn ok(&self, token: &str, path: &str) -> Value {
        let (status, body) = self.get(Some(token), path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// A list's items as `field` values.
    async fn list(&self, token: &str, path: &str, field: &str) -> Vec<Value> {
        self.ok(token, path).await["items"].as_array().expect("items").iter().map(|i| i[field].clone()).collect()
    }
}

async fn tokens(db: &Db) -> (String, String) {
    let (_, a) = api_tokens::create(db, 1, Some("acme ci"), T0).await.expect("token");
    let (_, b) = api_tokens::create(db, 2, None, T0).await.expect("token");
    (a, b)
}

async fn a_token_reads_only_its_installation(tdb: &TestDb) {
    let app = start(tdb).await;
    let (a, b) = tokens(&app.db).await;
    let c = Client { app: &app };

    // Requests: lists.
    let keys = |items: Vec<Value>| items.into_iter().map(|v| v.to_string()).collect::<Vec<_>>();
    assert_eq!(keys(c.list(&a, "/api/requests", "issue").await), ["5", "6"]);
    let acme = json!({ "id": 10, "full_name": "acme/app" });
    assert_eq!(c.list(&a, "/api/requests", "repository").await, [acme.clone(), acme.clone()]);
    assert_eq!(c.list(&b, "/api/requests", "repository").await, [json!({ "id": 20, "full_name": "beta/site" })]);
    assert_eq!(c.list(ADMIN, "/api/requests", "installation_id").await, [json!(1), json!(1), json!(2)]);
    assert!(c.list(&a, "/api/requests?repo=beta/site", "issue").await.is_empty());
    assert_eq!(keys(c.list(&a, "/api/requests?state=awaiting-approval", "issue").await), ["6"]);
    let first = c.ok(&a, "/api/requests?repo=acme/app&limit=1").await;
    let item = &first["items"][0];
    assert_eq!(item["pull_requests"], json!([{ "number": 12, "head_sha": "abc", "state": "open" }]));
    assert_eq!(item["labels"], json!(["DEPLOYMENT_REQUEST"]));
    assert_eq!((&item["state"], &item["open"], &item["gate_open"]), (&json!("approved"), &json!(true), &json!(false)));
    assert_eq!(item["author"], json!({ "id": 401, "login": "carol" }));
    assert_eq!(item["created_at"], json!("2026-11-29T09:00:00.000Z"), "times are RFC 3339");
    for internal in ["facts", "fingerprint", "deploy_key", "rollback_run_id", "hold_by_id", "shown"] {
        assert!(item.get(internal).is_none(), "an internal column is served: {internal} in {item}");
    }

    // Requests: by id, with approvals.
    let mine = c.ok(&a, "/api/requests/acme/app/5").await;
    assert_eq!(mine["approvals"].as_array().map(|a| a.len()), Some(1));
    assert_eq!(mine["approvals"][0]["user"]["login"], "alice");
    assert_eq!(mine["approvals"][0]["roles"], json!(["pm"]), "roles are an array");
    assert_eq!(mine["approvals"][0]["head_shas"], json!(["abc"]), "heads are an array");
    assert_eq!(mine["approvals"][0]["state"], "active");
    let (status, theirs) = c.get(Some(&a), "/api/requests/beta/site/5").await;
    assert_eq!((status, theirs.clone()), (404, json!({"error": "not found"})));
    let (status, none) = c.get(Some(&a), "/api/requests/acme/app/999").await;
    assert_eq!((status, none), (404, theirs), "another tenant's request looks like one that does not exist");
    assert_eq!(c.ok(&b, "/api/requests/beta/site/5").await["approvals"][0]["user"]["login"], "bea");
    assert_eq!(c.get(Some(&b), "/api/requests/acme/app/5").await.0, 404);
    assert_eq!(c.ok(ADMIN, "/api/requests/beta/site/5").await["installation_id"], 2);

    // Incidents.
    assert_eq!(c.list(&a, "/api/incidents", "repository").await, [acme.clone(), acme]);
    assert_eq!(c.list(&a, "/api/incidents?state=open", "state").await, [json!("open")]);
    assert_eq!(c.list(&b, "/api/incidents", "repository").await, [json!({ "id": 20, "full_name": "beta/site" })]);
    assert!(c.list(&b, "/api/incidents?repo=acme/app", "id").await.is_empty());
    assert_eq!(c.list(ADMIN, "/api/incidents", "installation_id").await.len(), 3);
    assert_eq!(c.get(Some(&a), "/api/incidents?kind=weird").await.0, 400);

    // Audit entries.
    assert_eq!(
        c.list(&a, "/api/audit", "kind").await,
        [json!("request.parsed"), json!("approval.given"), json!("request.parsed")]
    );
    assert!(c.list(&a, "/api/audit", "installation_id").await.iter().all(|i| *i == json!(1)));
    assert!(c.list(&a, "/api/audit?repo=beta/site", "kind").await.is_empty());
    assert_eq!(c.list(&b, "/api/audit", "kind").await, [json!("request.parsed"), json!("gate.opened")]);
    assert_eq!(c.list(&b, "/api/audit", "detail").await[0], json!({"installation": 2}));
    assert_eq!(c.list(ADMIN, "/api/audit", "seq").await.len(), 5);
    assert_eq!(c.list(ADMIN, "/api/audit?repo=beta/site", "seq").await.len(), 2);

    // Deliveries: lists and guessed ids (by delivery id and by sequence number).
    assert_eq!(c.list(&a, "/api/deliveries", "id").await, [json!("del-a1"), json!("del-a2")]);
    assert_eq!(c.list(&b, "/api/deliveries", "id").await, [json!("del-b1")]);
    assert_eq!(
        c.list(ADMIN, "/api/deliveries", "id").await,
        [json!("del-a1"), json!("del-b1"), json!("del-a2"), json!("del-ping")]
    );
    assert!(c.list(&a, "/api/deliveries?status=done", "id").await.is_empty());
    let seq = |id: &str| {
        let (db, id) = (app.db.clone(), id.to_string());
        async move { shipgate::store::deliveries::find(&db, &id).await.unwrap().unwrap().seq }
    };
    let (b_seq, ping_seq) = (seq("del-b1").await, seq("del-ping").await);
    for path in [
        "/api/deliveries/del-b1".to_string(),
        format!("/api/deliveries/{b_seq}"),
        "/api/deliveries/del-ping".to_string(),
        format!("/api/deliveries/{ping_seq}"),
        "/api/deliveries/no-such-delivery".to_string(),
    ] {
        assert_eq!(c.get(Some(&a), &path).await, (404, json!({"error": "not found"})), "{path}");
    }
    let one = c.ok(&a, "/api/deliveries/del-a1").await;
    assert_eq!(
        (&one["installation_id"], &one["attempts"], &one["attempt_history"]),
        (&json!(1), &json!(0), &json!([]))
    );
    assert!(one.get("body").is_none(), "bodies are not served");
    assert!(one.get("subject").is_none() && one.get("seq").is_none(), "internal columns are not served: {one}");
    assert_eq!(one["state"], "pending");

    // (The rows were seeded by hand, without the audit entries the App would write.)
    app.shutdown_unchecked().await;
}
both_backends!(a_token_reads_only_its_installation);

/// The status of `GET /metrics` with this bearer token, or none.
async fn metrics(app: &TestApp, token: Option<&str>) -> u16 {
    let mut r = app.http.get(format!("{}/metrics", app.url));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap().status().as_u16()
}

async fn no_token_or_a_bad_one_is_401(tdb: &TestDb) {
    let app = start(tdb).await;
    let (a, _) = tokens(&app.db).await;
    let c = Client { app: &app };
    for path in ["/api/requests", "/api/requests/acme/app/5", "/api/audit", "/api/deliveries", "/api/deliveries/del-a1"]
    {
        let (status, body) = c.get(None, path).await;
        assert_eq!(status, 401, "{path}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("Bearer")), "{body}");
        for bad in ["sg_0000", "nope", &ADMIN[..ADMIN.len() - 1], &format!("{a}x")] {
            assert_eq!(c.get(Some(bad), path).await, (401, json!({"error": "unknown token"})), "{path} {bad}");
        }
    }
    let r = app
        .http
        .get(format!("{}/api/requests", app.url))
        .header("authorization", format!("Basic {a}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));

    // A suspended installation's token answers 403 until it is unsuspended.
    let suspend = |on: bool| {
        let db = app.db.clone();
        async move {
            let mut tx = db.begin_write().await.unwrap();
            shipgate::store::tenancy::set_suspended(&mut tx, 1, on, T0).await.unwrap();
            tx.commit().await.unwrap();
        }
    };
    suspend(true).await;
    let (status, body) = c.get(Some(&a), "/api/requests").await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("installation 1 is suspended")), "{body}");
    suspend(false).await;
    assert_eq!(c.get(Some(&a), "/api/requests").await.0, 200);

    // A revoked token stops working.
    let rows = api_tokens::list(&app.db).await.expect("list");
    assert_eq!(c.get(Some(&a), "/api/requests").await.0, 200);
    assert!(api_tokens::revoke(&app.db, rows[0].seq).await.expect("revoke"));
    assert_eq!(c.get(Some(&a), "/api/requests").await.0, 401);

    // Without SHIPGATE_ADMIN_TOKEN there is no admin: the empty or any string is not one.
    // (The rows were seeded by hand, without the audit entries the App would write.)
    app.shutdown_unchecked().await;
    let app = TestApp::start_with(tdb.config(), Options { run_worker: false, ..Options::default() }).await;
    let c = Client { app: &app };
    assert_eq!(c.get(Some(ADMIN), "/api/requests").await.0, 401);
    // /metrics is open without SHIPGATE_METRICS_TOKEN...
    assert_eq!(metrics(&app, None).await, 200);
    // Without SHIPGATE_SIGNING_KEY there is no public key to serve, and the answer says why.
    let r = app.http.get(format!("{}/.well-known/shipgate-audit.pub", app.url)).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(
        r.text().await.expect("text"),
        "this App has no SHIPGATE_SIGNING_KEY: its audit anchors are not signed\n"
    );
    app.shutdown_unchecked().await;
    // ... and asks for it when it is set.
    let mut cfg = tdb.config();
    cfg.metrics_token = Some(Secret::new(ADMIN));
    let app = TestApp::start_with(cfg, Options { run_worker: false, ..Options::default() }).await;
    assert_eq!(metrics(&app, None).await, 401);
    assert_eq!(metrics(&app, Some("not-the-token-not-the-token-not-the")).await, 401);
    assert_eq!(metrics(&app, Some(ADMIN)).await, 200);
    // (The rows were seeded by hand, without the audit entries the App would write.)
    app.shutdown_unchecked().await;
}
both_backends!(no_token_or_a_bad_one_is_401);

async fn tokens_are_stored_hashed_and_only_for_known_installations(tdb: &TestDb) {
    let app = start(tdb).await;
    let (a, b) = tokens(&app.db).await;
    assert_ne!(a, b);
    let stored: Vec<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT installation_id, token_sha256, name FROM api_tokens ORDER BY seq")
            .fetch_all(app.db.pool())
            .await
            .expect("tokens");
    assert_eq!(
        stored,
        vec![(1, api_tokens::token_hash(&a), Some("acme ci".to_string())), (2, api_tokens::token_hash(&b), None)]
    );
    match api_tokens::create(&app.db, 99, None, T0).await {
        Err(StoreError::Invalid(msg)) => assert!(msg.contains("no installation 99"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(common::count(&app.db, "SELECT COUNT(*) FROM api_tokens").await, 2);

    // The CLI prints a token once; it works against the running App at once.
    let out = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_shipgate"))
            .args(args)
            .env("DATABASE_URL", &tdb.url)
            .env("RUST_LOG", "error")
            .env_remove("GITHUB_APP_ID")
            .env_remove("GITHUB_PRIVATE_KEY")
            .env_remove("GITHUB_PRIVATE_KEY_PATH")
            .output()
            .expect("run shipgate");
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let (code, text) = out(&["api-token", "create", "--installation", "2", "--name", "dashboards"]);
    assert_eq!(code, 0, "{text}");
    let token = text.lines().next().unwrap_or_default().to_string();
    assert!(token.starts_with("sg_") && token.len() == 67, "{text}");
    let c = Client { app: &app };
    assert_eq!(c.list(&token, "/api/requests", "repository").await, [json!({ "id": 20, "full_name": "beta/site" })]);
    let (code, text) = out(&["api-token", "create", "--installation", "99"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no installation 99"), "{text}");
    let (code, text) = out(&["api-token", "list"]);
    assert_eq!(code, 0);
    assert!(text.contains("dashboards") && !text.contains(&token) && !text.contains(&a), "{text}");
    // (The rows were seeded by hand, without the audit entries the App would write.)
    app.shutdown_unchecked().await;
}
both_backends!(tokens_are_stored_hashed_and_only_for_known_installations);

async fn pages_and_bad_parameters(tdb: &TestDb) {
    let app = start(tdb).await;
    let (a, _) = tokens(&app.db).await;
    let c = Client { app: &app };

    // Follow `next` until it runs out: every row once, in order.
    for (path, field, total) in [("/api/audit", "seq", 5), ("/api/requests", "issue", 3), ("/api/deliveries", "id", 4)]
    {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &after {
                Some(cur) => format!("{path}{sep}limit=2&after={cur}"),
                None => format!("{path}{sep}limit=2"),
            };
            let page = c.ok(ADMIN, &url).await;
            let items = page["items"].as_array().expect("items").clone();
            assert!(items.len() <= 2);
            seen.extend(items.iter().map(|i| i[field].clone()));
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => break,
            }
        }
        let all = c.list(ADMIN, path, field).await;
        assert_eq!(all.len(), total, "{path}");
        assert_eq!(seen, all, "{path}");
    }
    // A page of one installation never continues into another's rows.
    let page = c.ok(&a, "/api/audit?limit=3").await;
    assert_eq!(page["items"].as_array().map(|i| i.len()), Some(3));
    let rest = c.ok(&a, &format!("/api/audit?after={}", page["next"].as_str().unwrap_or("0"))).await;
    assert_eq!(rest, json!({"items": [], "next": null}));

    for path in [
        "/api/requests?limit=0",
        "/api/requests?limit=501",
        "/api/requests?limit=ten",
        "/api/requests?after=1-2",
        "/api/requests?repo=acme",
        "/api/requests?repository=acme/app",
        "/api/audit?since=yesterday",
        "/api/audit?after=x",
        "/api/deliveries?status=lost",
        "/api/requests/acme/app/five",
    ] {
        let (status, body) = c.get(Some(&a), path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {body}");
    }
    // A filter value that matches nothing the App knows is an error listing what it knows, not
    // an empty page.
    for (path, allowed) in [
        (
            "/api/requests?state=bogus",
            "state must be one of: incomplete, awaiting-approval, blocked, approved, on-hold, denied, deploying, \
             deployed, deploy-failed, rolled-back, closed",
        ),
        ("/api/deliveries?status=lost", "status must be one of: pending, running, done, parked"),
        ("/api/incidents?state=shut", "state must be one of: open, closed"),
        ("/api/incidents?kind=outage", "kind must be one of: ci, security, alert, review"),
    ] {
        assert_eq!(c.get(Some(&a), path).await, (400, json!({ "error": allowed })), "{path}");
    }
    assert_eq!(c.list(&a, "/api/audit?since=2026-11-29T09:00:00Z", "seq").await.len(), 3);
    assert!(c.list(&a, "/api/audit?since=2026-11-29T09:00:00.001Z", "seq").await.is_empty());
    // (The rows were seeded by hand, without the audit entries the App would write.)
    app.shutdown_unchecked().await;
}
both_backends!(pages_and_bad_parameters);

/// docs/api.md documents each route with an example answer; each must be valid against
/// `/api/openapi.json` (strictly: no key the schema does not define), so the page cannot drift
/// from what the App answers. And every route of the document has an example there.
#[tokio::test]
async fn the_examples_in_docs_api_md_match_the_document() {
    let doc: Value = serde_json::from_str(shipgate::http::api::ApiDoc::openapi_json()).expect("the document");
    let spec = openapi::Spec::from_value(doc);
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).expect("docs/api.md");
    let mut seen = std::collections::BTreeSet::new();
    let mut rest = page.as_str();
    while let Some(at) = rest.find("<!-- response: ") {
        rest = &rest[at + "<!-- response: ".len()..];
        let (marker, after) = rest.split_once(" -->").expect("a closed marker");
        let (operation, status) = marker.split_once(' ').expect("<!-- response: OPERATION STATUS -->");
        let status: u16 = status.parse().expect("a status");
        let block = after.trim_start().strip_prefix("```json\n").expect("a ```json block after the marker");
        let (json_text, _) = block.split_once("\n```").expect("a closed block");
        let example: Value = serde_json::from_str(json_text).unwrap_or_else(|e| panic!("{marker}: not JSON: {e}"));
        let schema = spec
            .response_schema(operation, status)
            .unwrap_or_else(|| panic!("{marker}: the document has no such operation and status"));
        let problems = spec.validate_value(schema, &example, true);
        assert!(problems.is_empty(), "docs/api.md's example for {marker} does not match the document: {problems:#?}");
        seen.insert(operation.to_string());
    }
    let all: std::collections::BTreeSet<String> = spec.operations().into_iter().map(|(_, _, id)| id).collect();
    assert_eq!(seen, all, "every route has an example in docs/api.md");
}
