//! Shared test harness: a fresh database per test (SQLite file, or a new PostgreSQL database on
//! `TEST_DATABASE_URL`), the App on a random port, and signed deliveries.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shipgate::config::Config;
use shipgate::github::signature::sign;
use shipgate::server::{Options, Server};
use shipgate::store::Db;

pub const SECRET: &str = "test-webhook-secret-0123";

/// Runs a test body once on SQLite and once on PostgreSQL (when `TEST_DATABASE_URL` is set;
/// otherwise the PostgreSQL test says, on the terminal, that it was skipped).
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::common::TestDb::sqlite().await;
                super::$name(&db).await;
                db.cleanup().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = $crate::common::TestDb::postgres(concat!(module_path!(), "::postgres")).await else {
                    return;
                };
                super::$name(&db).await;
                db.cleanup().await;
            }
        }
    };
}

pub struct TestDb {
    pub url: String,
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
    pg_admin: Option<(String, String)>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("shipgate.db").display());
        TestDb { url, backend: "sqlite", _dir: Some(dir), pg_admin: None }
    }

    /// A new, empty database on the server of `TEST_DATABASE_URL`, or None (skipped, said loudly).
    pub async fn postgres(test: &str) -> Option<TestDb> {
        let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
            // Written past the test harness's capture, so it shows even when the test "passes".
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: TEST_DATABASE_URL is not set (PostgreSQL not tested)");
            return None;
        };
        let name = format!(
            "shipgate_t_{}_{}_{:06x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            fastrand::u32(..0xffffff)
        );
        sqlx::any::install_default_drivers();
        let mut conn = connect_admin(&admin).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = replace_db_name(&admin, &name);
        Some(TestDb { url, backend: "postgres", _dir: None, pg_admin: Some((admin, name)) })
    }

    pub async fn cleanup(&self) {
        if let Some((admin, name)) = &self.pg_admin {
            let mut conn = connect_admin(admin).await;
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&mut conn)
                .await;
        }
    }

    pub async fn connect(&self) -> Db {
        let db = Db::connect(&self.url).await.expect("connect");
        db.migrate().await.expect("migrate");
        db
    }

    pub fn config(&self) -> Config {
        Config::for_tests(&self.url, SECRET)
    }
}

async fn connect_admin(url: &str) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::AnyConnection::connect(url).await.expect("connect to TEST_DATABASE_URL")
}

/// `postgres://u@h:p/db?x` with the database name replaced.
pub fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(q) => format!("{host}/{name}?{q}"),
        None => format!("{host}/{name}"),
    }
}

/// The App running in this process on a random port.
pub struct TestApp {
    pub server: Server,
    pub url: String,
    pub http: reqwest::Client,
    pub db: Db,
    db_url: String,
}

impl TestApp {
    pub async fn start(db: &TestDb, opts: Options) -> TestApp {
        Self::start_with(db.config(), opts).await
    }

    pub async fn start_with(cfg: Config, opts: Options) -> TestApp {
        init_logs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = Server::start(&cfg, listener, opts).await.expect("start server");
        let url = format!("http://{}", server.addr);
        let db = server.db.clone();
        TestApp { server, url, http: reqwest::Client::new(), db, db_url: cfg.database_url.clone() }
    }

    /// Posts a signed delivery; returns the status code.
    pub async fn deliver(&self, event: &str, id: &str, body: &str) -> u16 {
        post_signed(&self.http, &self.url, SECRET, event, id, body).await
    }

    /// The App's `DATABASE_URL` (for the command line's database commands).
    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// Stops the App, then checks what it left: every audit chain intact under the tests' key, and
    /// every approval and gate in the tables recorded in the log (a test that tampers with either
    /// stops the App with [`TestApp::shutdown_unchecked`]).
    pub async fn shutdown(self) {
        self.server.shutdown().await.expect("shutdown");
        let db = Db::connect(&self.db_url).await.expect("connect after shutdown");
        let keys = shipgate::store::audit::AuditKeys {
            current: Some(shipgate::store::audit::AuditKey::new(shipgate::config::TEST_AUDIT_KEY)),
            retired: vec![],
        };
        let report = shipgate::store::audit::verify(&db, &keys).await.expect("verify");
        db.close().await;
        assert!(report.ok(), "the App left an audit log that does not verify: {report:#?}");
    }

    pub async fn shutdown_unchecked(self) {
        self.server.shutdown().await.expect("shutdown");
    }
}

/// Logs go to the test's captured output (shown for a failing test); `RUST_LOG` filters them.
pub fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}

pub async fn post_signed(http: &reqwest::Client, base: &str, secret: &str, event: &str, id: &str, body: &str) -> u16 {
    try_post_signed(http, base, secret, event, id, body).await.expect("request")
}

pub async fn try_post_signed(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    event: &str,
    id: &str,
    body: &str,
) -> Result<u16, reqwest::Error> {
    Ok(http
        .post(format!("{base}/webhook"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", sign(secret, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await?
        .status()
        .as_u16())
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks")
}

/// A real payload from `tests/fixtures/webhooks`, e.g. `fixture("issue_comment.created.0")`.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures_dir().join(format!("{name}.json"))).expect("fixture")
}

/// A real payload made unique (a leading nonce field), so that it is not taken for a replay.
/// A verified delivery of `subject` for the store's own tests: its body and body hash derive
/// from `id`, so that every id is a new body.
pub fn delivery(id: &str, subject: &str) -> shipgate::store::deliveries::NewDelivery {
    shipgate::store::deliveries::NewDelivery {
        id: id.into(),
        event: "issue_comment".into(),
        action: Some("created".into()),
        installation_id: Some(1),
        repository: Some("acme/app".into()),
        subject: subject.into(),
        received_at: 1,
        body: format!("{{\"id\":\"{id}\"}}"),
        body_lz4: None,
        body_key: format!("{id:0>64}"),
    }
}

pub fn unique(body: &str, nonce: &str) -> String {
    let at = body.find('{').expect("a JSON object") + 1;
    format!("{}\"shipgate_test_nonce\":\"{nonce}\",{}", &body[..at], &body[at..])
}

/// Waits until nothing is pending or running, or panics after `timeout`.
pub async fn drain(db: &Db, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let s = shipgate::store::deliveries::stats(db).await.expect("stats");
        // Coalesced evaluations not yet due are work still to come.
        let due = shipgate::store::rechecks::count(db).await.expect("rechecks due");
        if s.pending == 0 && s.running == 0 && due == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            // What is left, to tell a slow machine from work that never ends.
            let rows: Vec<(i64, i64, i64, i64, i64)> =
                sqlx::query_as("SELECT issue, first_at, deadline, due_at, events FROM rechecks_due")
                    .fetch_all(db.pool())
                    .await
                    .unwrap_or_default();
            let now = shipgate::clock::Clock::system().now_ms();
            panic!(
                "queue not drained in {timeout:?}: {s:?}; now {now}; rechecks due (issue, first, deadline, due, events): {rows:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn count(db: &Db, sql: &'static str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(db.pool()).await.expect("count");
    n
}

/// The App on a runtime of its own, so that a test can kill it as `kill -9` would: every task
/// stops where it is, no lease is released, nothing is finished or recorded.
pub struct CrashableApp {
    pub url: String,
    kill: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CrashableApp {
    pub fn start(cfg: Config, make_opts: impl FnOnce() -> Options + Send + 'static) -> CrashableApp {
        init_logs();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (kill, kill_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            let server = rt.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                Server::start(&cfg, listener, make_opts()).await.expect("start server")
            });
            addr_tx.send(server.addr).expect("send addr");
            let _ = kill_rx.recv();
            std::mem::forget(server); // no graceful anything
            rt.shutdown_background();
        });
        let addr = addr_rx.recv().expect("server started");
        CrashableApp { url: format!("http://{addr}"), kill, thread: Some(thread) }
    }

    pub async fn deliver(&self, event: &str, id: &str, body: &str) -> u16 {
        post_signed(&reqwest::Client::new(), &self.url, SECRET, event, id, body).await
    }

    pub fn kill(mut self) {
        let _ = self.kill.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Starts the real `shipgate serve` binary on `port` (lease 1 s, fast polling, dry-run unless
/// `env` gives credentials) and waits until it is ready.
pub async fn spawn_binary(db_url: &str, port: u16, env: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"));
    cmd.arg("serve")
        .env("SHIPGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", db_url)
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("SHIPGATE_LEASE_SECS", "1")
        .env("SHIPGATE_POLL_MS", "50")
        .env("RUST_LOG", "error")
        .env("SHIPGATE_AUDIT_KEY", shipgate::config::TEST_AUDIT_KEY)
        .env_remove("SHIPGATE_AUDIT_KEY_RETIRED")
        .env_remove("GITHUB_APP_ID")
        .env_remove("GITHUB_PRIVATE_KEY")
        .env_remove("GITHUB_PRIVATE_KEY_PATH")
        // No traces unless a test asks for them (tests/traces.rs), whatever the shell has set.
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_EXPORTER")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start shipgate");
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await
            && r.status().is_success()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("shipgate did not become ready on port {port}");
}

/// `shipgate ARGS` (a database command) on `db_url` with the tests' audit key and `env`:
/// (exit code, stdout and stderr).
pub async fn shipgate_cli(db_url: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"));
    cmd.args(args)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "error")
        .env("SHIPGATE_AUDIT_KEY", shipgate::config::TEST_AUDIT_KEY)
        .env_remove("SHIPGATE_AUDIT_KEY_RETIRED")
        .env_remove("SHIPGATE_AUDIT_NEW_KEY")
        .env_remove("SHIPGATE_SIGNING_KEY")
        .env_remove("SHIPGATE_SIGNING_KEY_PATH")
        .env_remove("GITHUB_APP_ID")
        .env_remove("GITHUB_PRIVATE_KEY")
        .env_remove("GITHUB_PRIVATE_KEY_PATH")
        .env_remove("SHIPGATE_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run shipgate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// `2026-11-29T10:00:00Z` for Unix ms (payload times have whole seconds).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = shipgate::cli::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
