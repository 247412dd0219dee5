//! Traces (SPEC §5) from the real binary: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, one trace per
//! delivery from the intake through the worker and the relay to every GitHub call, exported over
//! OTLP/HTTP (protobuf) to a receiver in this test that decodes the spans; unset, nothing is sent.

mod common;
mod fake_github;
mod world;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use common::{SECRET, TestDb};
use fake_github::FakeGitHub;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::json;
use sha2::{Digest, Sha256};
use world::{ALICE, BOB, CAROL, DAVE, EVE, INST, POLICY, REPO, SHA};

/// One span as the receiver decoded it.
#[derive(Clone, Debug)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    attributes: BTreeMap<String, String>,
    /// Every attribute value of the span's events.
    event_values: Vec<String>,
    /// The resource's attributes (`service.name`, ...).
    resource: BTreeMap<String, String>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// What the receiver was sent: each request's path and content type, and the spans.
#[derive(Default)]
struct Received {
    requests: Vec<(String, String)>,
    spans: Vec<Span>,
    undecodable: Vec<String>,
}

/// A local OTLP/HTTP receiver (what a collector does with `POST /v1/traces`).
struct Receiver {
    url: String,
    got: Arc<Mutex<Received>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let got = Arc::new(Mutex::new(Received::default()));
        // Every path and method is recorded: a request anywhere counts.
        let app = axum::Router::new().fallback(receive).with_state(got.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, got }
    }

    fn got(&self) -> std::sync::MutexGuard<'_, Received> {
        self.got.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn receive(State(got): State<Arc<Mutex<Received>>>, req: Request) -> axum::response::Response {
    let path = req.uri().path().to_string();
    let ctype = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), 64 << 20).await.unwrap_or_default();
    let mut got = got.lock().unwrap_or_else(|p| p.into_inner());
    got.requests.push((path.clone(), ctype));
    match ExportTraceServiceRequest::decode(bytes.as_ref()) {
        Ok(export) => {
            for rs in export.resource_spans {
                let resource = rs.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        got.spans.push(Span {
                            trace_id: hex::encode(&s.trace_id),
                            span_id: hex::encode(&s.span_id),
                            parent: hex::encode(&s.parent_span_id),
                            name: s.name,
                            attributes: attributes(&s.attributes),
                            event_values: s
                                .events
                                .iter()
                                .flat_map(|e| attributes(&e.attributes).into_values())
                                .collect(),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
        Err(e) => got.undecodable.push(format!("{path}: {e}")),
    }
    // An empty ExportTraceServiceResponse: everything accepted.
    ([("content-type", "application/x-protobuf")], Vec::<u8>::new()).into_response()
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(text).unwrap_or_default())).collect()
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(any_value::Value::ArrayValue(a)) => a.values.iter().map(text).collect::<Vec<_>>().join(","),
        Some(any_value::Value::KvlistValue(l)) => attributes(&l.values).into_values().collect::<Vec<_>>().join(","),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The repository of the request scenarios (tests/world), on the fake GitHub.
async fn fake_github() -> FakeGitHub {
    let gh = FakeGitHub::start().await;
    gh.install(INST, &[REPO]);
    gh.team("acme", "backend-leads", &[BOB]).team("acme", "product", &[]).team("acme", "frontend-leads", &[]);
    gh.file(REPO, ".github/shipgate.yml", POLICY);
    for (id, login) in [ALICE, BOB, CAROL, DAVE, EVE] {
        gh.permission(REPO, login, "write");
        gh.user(login, id);
    }
    gh.pull(REPO, 12, DAVE, SHA, &["apps/backend/api.rs"]);
    gh
}

/// `DEPLOYMENT_REQUEST` on issue #5: a real corpus payload (`issues.labeled`), signed. The App reads
/// the policy and the linked pull request (the worker), then writes its comment, labels and check
/// run (the relay).
async fn deliver_request(gh: &FakeGitHub, port_url: &str, delivery: &str) -> String {
    {
        let mut m = gh.model();
        let i = m.issues.entry((REPO.to_string(), 5)).or_default();
        i.number = 5;
        i.title = "Deploy api".into();
        i.body = world::body("production", "#12");
        i.state = "open".into();
        i.author_id = CAROL.0;
        i.author = CAROL.1.into();
        i.labels = vec!["DEPLOYMENT_REQUEST".into()];
    }
    let mut v = world::payload("issues.labeled.0");
    v["issue"] = fake_github::issue_json(&gh.model().issues[&(REPO.to_string(), 5)]);
    v["label"] = json!({ "name": "DEPLOYMENT_REQUEST" });
    let body = v.to_string();
    let status = common::post_signed(&reqwest::Client::new(), port_url, SECRET, "issues", delivery, &body).await;
    assert_eq!(status, 202, "the delivery was not stored");
    body
}

/// The App as a process, with App credentials for the fake GitHub and `env`; and its URL.
async fn spawn_on(db: &TestDb, gh: &FakeGitHub, env: &[(&str, &str)]) -> (tokio::process::Child, String) {
    let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-app-key.pem");
    let mut all = vec![
        ("GITHUB_APP_ID", fake_github::APP_ID),
        ("GITHUB_PRIVATE_KEY_PATH", key),
        ("GITHUB_API_URL", gh.url.as_str()),
        ("SHIPGATE_MUTATION_SPACING_MS", "0"),
    ];
    all.extend_from_slice(env);
    let port = common::free_port();
    let child = common::spawn_binary(&db.url, port, &all).await;
    (child, format!("http://127.0.0.1:{port}"))
}

/// Waits until the inbox and the outbox are worked off.
async fn settle(db: &TestDb) {
    let store = db.connect().await;
    world::settle(&store).await;
    store.close().await;
}

/// SIGTERM, as an orchestrator stops the App, and waits for it to exit.
async fn stop(mut child: tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(sent.success(), "SIGTERM not sent");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "the App did not stop cleanly: {status}");
}

fn hex_sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The chain of parents of `span` within its trace, nearest first (stops at a missing parent).
fn ancestors<'a>(span: &Span, by_id: &'a HashMap<&str, &'a Span>) -> Vec<&'a Span> {
    let mut out: Vec<&Span> = Vec::new();
    let mut parent = span.parent.as_str();
    while let Some(p) = by_id.get(parent) {
        assert!(out.len() < 64, "a cycle in the parent links");
        out.push(p);
        parent = p.parent.as_str();
    }
    out
}

async fn one_trace_per_delivery_down_to_every_github_call(db: &TestDb) {
    let gh = fake_github().await;
    let rx = Receiver::start().await;
    // The generic variable (the exporter adds /v1/traces), and a batch delay far longer than the
    // test: what arrives is what the shutdown flushed.
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", rx.url.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "600000")];
    let (app, url) = spawn_on(db, &gh, &env).await;
    let delivery = format!("72d3162e-cc78-11e3-81ab-{:012x}", fastrand::u64(..1 << 48));
    let body = deliver_request(&gh, &url, &delivery).await;
    settle(db).await;
    // GitHub sends it again (a redelivery by hand): answered, not processed again.
    let again = common::post_signed(&reqwest::Client::new(), &url, SECRET, "issues", &delivery, &body).await;
    assert_eq!(again, 200, "a duplicate");
    let sticky: Vec<_> = gh.app_comments(REPO, 5);
    assert_eq!(sticky.len(), 1, "the App answered the request: {sticky:#?}");
    let ours = |s: &Span| s.attr("delivery_id") == Some(delivery.as_str());
    assert!(!rx.got().spans.iter().any(ours), "spans were sent before the shutdown, despite the batch delay");
    let tokens: Vec<String> = gh.model().tokens.keys().cloned().collect();
    assert!(!tokens.is_empty(), "the App used an installation token");
    stop(app).await;

    let got = rx.got();
    assert!(got.undecodable.is_empty(), "{:?}", got.undecodable);
    assert!(!got.requests.is_empty(), "nothing was exported at shutdown");
    for (path, ctype) in &got.requests {
        assert_eq!(path, "/v1/traces");
        assert_eq!(ctype, "application/x-protobuf");
    }
    let spans = &got.spans;
    for s in spans {
        assert_eq!(s.resource.get("service.name").map(String::as_str), Some("shipgate"), "{s:?}");
    }

    // One trace for the delivery, its id derived from the delivery id.
    let digest = hex_sha256(&delivery);
    let (trace, root_id) = (&digest[..32], &digest[32..48]);
    let of_delivery: Vec<&Span> = spans.iter().filter(|s| ours(s)).collect();
    assert!(!of_delivery.is_empty());
    for s in &of_delivery {
        assert_eq!(s.trace_id, trace, "a span of the delivery in another trace: {s:#?}");
    }
    let in_trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace).collect();
    // `TRACES_DUMP=1 cargo test --test traces -- --nocapture` shows what was exported.
    if std::env::var_os("TRACES_DUMP").is_some() {
        for s in spans {
            eprintln!("{} {} <- {:16} {} {:?}", s.trace_id, s.span_id, s.parent, s.name, s.attributes);
        }
    }
    let by_id: HashMap<&str, &Span> = in_trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    assert_eq!(by_id.len(), in_trace.len(), "two spans share an id");

    // The intake's span is the root.
    let roots: Vec<&&Span> = in_trace.iter().filter(|s| s.parent.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root: {roots:#?}");
    let root = roots[0];
    assert_eq!((root.name.as_str(), root.span_id.as_str()), ("webhook", root_id));
    assert_eq!(root.attr("delivery_id"), Some(delivery.as_str()));
    assert_eq!(root.attr("shipgate.outcome"), Some("stored"));
    assert_eq!(root.attr("shipgate.trace_root"), None, "the tracer's mark is not exported");
    // The copy sent again is the root's child.
    let intakes: Vec<&&Span> = in_trace.iter().filter(|s| s.name == "webhook").collect();
    assert_eq!(intakes.len(), 2, "{intakes:#?}");
    let copy = intakes.iter().find(|s| s.span_id != root_id).expect("the copy's span");
    assert_eq!((copy.parent.as_str(), copy.attr("shipgate.outcome")), (root_id, Some("duplicate")));
    // Every other span of the trace hangs from it.
    for s in &in_trace {
        if s.span_id != root.span_id {
            let up = ancestors(s, &by_id);
            assert_eq!(up.last().map(|r| r.span_id.as_str()), Some(root_id), "{s:#?} is not under the root");
        }
    }

    // The worker's span, a child of the intake's.
    let workers: Vec<&&Span> = in_trace.iter().filter(|s| s.name == "delivery").collect();
    assert_eq!(workers.len(), 1, "{workers:#?}");
    let worker = workers[0];
    assert_eq!(worker.parent, root_id);
    assert_eq!(worker.attr("event"), Some("issues"));
    assert_eq!(worker.attr("action"), Some("labeled"));
    // The relay's spans, one per action the delivery caused, children of the intake's too.
    let actions: Vec<&&Span> = in_trace.iter().filter(|s| s.name == "action").collect();
    assert!(!actions.is_empty(), "no action span in the trace");
    for a in &actions {
        assert_eq!(a.parent, root_id, "{a:#?}");
    }

    // Every GitHub call is a span, and the calls the delivery caused are in its trace: the
    // worker's (the policy, the pull request) under the worker's span, the relay's under an
    // action's.
    let calls: Vec<&Span> = spans.iter().filter(|s| s.attributes.contains_key("url.template")).collect();
    let seen = |ss: &[&Span]| {
        let mut v: Vec<(String, String, String)> = ss
            .iter()
            .map(|s| {
                let path = s.attr("url.full").unwrap_or("").trim_start_matches(gh.url.as_str()).to_string();
                (
                    s.attr("http.request.method").unwrap_or("").to_string(),
                    path,
                    s.attr("http.response.status_code").unwrap_or("").to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let mut made: Vec<(String, String, String)> =
        gh.calls().iter().map(|c| (c.method.clone(), c.path.clone(), c.status.to_string())).collect();
    made.sort();
    assert_eq!(seen(&calls), made, "the GitHub calls exported differ from those GitHub saw");
    let under = |span: &Span, id: &str| ancestors(span, &by_id).iter().any(|a| a.span_id == id);
    let worker_calls: Vec<&Span> = calls.iter().copied().filter(|c| under(c, &worker.span_id)).collect();
    assert!(
        worker_calls.iter().any(|c| c.attr("url.template") == Some("/repos/{owner}/{repo}/contents/{path}")),
        "the worker read the policy: {worker_calls:#?}"
    );
    let relay_calls: Vec<&Span> =
        calls.iter().copied().filter(|c| actions.iter().any(|a| under(c, &a.span_id))).collect();
    assert!(
        relay_calls.iter().any(|c| c.attr("http.request.method") == Some("POST")),
        "the relay wrote to GitHub: {relay_calls:#?}"
    );
    for c in worker_calls.iter().chain(&relay_calls) {
        assert_eq!(c.trace_id, trace);
        assert!(c.name.starts_with(c.attr("http.request.method").unwrap_or("?")), "{c:#?}");
        assert!(!c.attr("url.full").unwrap_or("").contains('?'), "a query string: {c:#?}");
    }

    // No secret anywhere: not the webhook secret, the private key, a token, an Authorization
    // header, nor the webhook's body.
    let key_lines: Vec<String> = fake_github::private_key_pem()
        .lines()
        .filter(|l| l.len() > 16 && !l.starts_with("-----"))
        .map(str::to_string)
        .collect();
    let issue_body = world::body("production", "#12");
    for s in spans {
        let values = s.attributes.values().chain(&s.event_values).chain(s.resource.values());
        for v in values {
            assert!(!v.contains(SECRET), "the webhook secret in {s:#?}");
            assert!(
                !v.contains("PRIVATE KEY") && !key_lines.iter().any(|l| v.contains(l.as_str())),
                "the key in {s:#?}"
            );
            assert!(!tokens.iter().any(|t| v.contains(t.as_str())), "a token in {s:#?}");
            assert!(!v.contains("Bearer") && !v.contains("eyJ"), "credentials in {s:#?}");
            assert!(!v.contains("IMPACT ANALYSIS") && !v.contains(&issue_body), "the webhook body in {s:#?}");
        }
        for k in s.attributes.keys() {
            assert!(!k.to_ascii_lowercase().contains("authorization"), "{s:#?}");
        }
    }
    drop(got);
    gh.finish();
}
both_backends!(one_trace_per_delivery_down_to_every_github_call);

/// Without the variable no exporter is built: the same delivery, and nothing reaches the
/// receiver, though the App's other OpenTelemetry variables point at it.
async fn nothing_is_sent_without_the_endpoint(db: &TestDb) {
    let gh = fake_github().await;
    let rx = Receiver::start().await;
    let metrics = format!("{}/v1/metrics", rx.url);
    let logs = format!("{}/v1/logs", rx.url);
    let env = [
        ("OTEL_SERVICE_NAME", "shipgate-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", metrics.as_str()),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", logs.as_str()),
    ];
    let (app, url) = spawn_on(db, &gh, &env).await;
    deliver_request(&gh, &url, "traces-off-1").await;
    settle(db).await;
    assert_eq!(gh.app_comments(REPO, 5).len(), 1, "the App answered the request");
    stop(app).await;
    let got = rx.got();
    assert!(got.requests.is_empty(), "sent without OTEL_EXPORTER_OTLP_ENDPOINT: {:?}", got.requests);
    drop(got);
    gh.finish();
}
both_backends!(nothing_is_sent_without_the_endpoint);
