//! `/setup`: registering the App on GitHub in one click, against the fake GitHub's manifest flow.
//! The real binary, started without credentials on SQLite, prints its setup address on stderr;
//! the test goes through the flow over HTTP (and, in `browser`, in headless Chromium) and sees the
//! credentials file written and the running App leave dry-run: webhooks signed with the new
//! secret are taken, the development secret is refused, and the App calls GitHub with a JWT
//! signed by the key it got from the conversion.
//!
//! The browser tests need Debian's chromium and chromium-driver (`.ci/run` installs them); they
//! fail without them unless SHIPGATE_SKIP_BROWSER_TESTS=1 (see tests/browser/mod.rs).

mod browser;
mod common;
mod fake_github;
mod world;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_github::FakeGitHub;
use serde_json::{Value, json};
use shipgate::github::signature::sign;
use shipgate::http::setup::Setup;
use shipgate::server::Options;
use tokio::io::AsyncBufReadExt;

/// The real `shipgate serve` with no credentials, on a SQLite file in a directory of its own.
pub struct Unregistered {
    pub child: tokio::process::Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    /// Its stderr, line by line (also echoed to the test's output).
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Unregistered {
    /// Starts it with `SHIPGATE_PUBLIC_URL` its own address and GitHub the fake; waits until ready.
    pub async fn start(gh: &FakeGitHub) -> Unregistered {
        Self::start_with(gh, &[]).await
    }

    /// As [`Unregistered::start`], with `extra` variables set last (they win over the defaults).
    pub async fn start_with(gh: &FakeGitHub, extra: &[(&str, &str)]) -> Unregistered {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = common::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"));
        cmd.arg("serve")
            .current_dir(dir.path())
            .env("SHIPGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", format!("sqlite://{}", dir.path().join("shipgate.db").display()))
            .env("SHIPGATE_PUBLIC_URL", &url)
            .env("GITHUB_API_URL", &gh.url)
            .env("SHIPGATE_MUTATION_SPACING_MS", "0")
            .env("SHIPGATE_REDELIVERY_SECS", "0")
            .env("SHIPGATE_POLL_MS", "50")
            .env("SHIPGATE_COALESCE_QUIET_MS", "50")
            .env("RUST_LOG", "info")
            .env("SHIPGATE_LOG_FORMAT", "text");
        for var in [
            "GITHUB_APP_ID",
            "GITHUB_CLIENT_ID",
            "GITHUB_PRIVATE_KEY",
            "GITHUB_PRIVATE_KEY_PATH",
            "GITHUB_WEBHOOK_SECRET",
            "SHIPGATE_AUDIT_KEY",
            "SHIPGATE_AUDIT_KEY_RETIRED",
            "SHIPGATE_SIGNING_KEY",
            "SHIPGATE_SIGNING_KEY_PATH",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_SERVICE_NAME",
            "OTEL_RESOURCE_ATTRIBUTES",
            "OTEL_SDK_DISABLED",
            "OTEL_TRACES_EXPORTER",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().expect("start shipgate");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let keep = lines.clone();
        tokio::spawn(async move {
            let mut r = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = r.next_line().await {
                eprintln!("[shipgate] {line}");
                keep.lock().expect("lines").push(line);
            }
        });
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(r) = http.get(format!("{url}/readyz")).send().await
                && r.status().is_success()
            {
                return Unregistered { child, url, dir, lines };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("shipgate did not become ready at {url}");
    }

    /// Waits for a line of its stderr that contains `needle`; returns it.
    pub async fn wait_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines.lock().expect("lines").iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "shipgate never said {needle:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The setup address it printed at start-up.
    pub async fn setup_address(&self) -> String {
        let line = self.wait_line("/setup?code=", Duration::from_secs(10)).await;
        line.trim().to_string()
    }

    pub fn credentials_file(&self) -> PathBuf {
        self.dir.path().join("shipgate.credentials.env")
    }
}

/// The variables of a credentials file.
pub fn read_credentials(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .expect("credentials file")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            let v = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).expect("single-quoted for a shell");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn var<'a>(vars: &'a [(String, String)], k: &str) -> Option<&'a str> {
    vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// The fake GitHub with the tests' repository, policy and people (as `tests/world` sets them up).
pub async fn github() -> FakeGitHub {
    use world::*;
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

/// The request issue #5, labelled, and its `issues.labeled` delivery (a real payload, edited).
pub fn request_delivery(gh: &FakeGitHub) -> String {
    use world::*;
    {
        let mut m = gh.model();
        let i = m.issues.entry((REPO.to_string(), 5)).or_default();
        i.number = 5;
        i.title = "Deploy api".into();
        i.body = body("production", "#12");
        i.state = "open".into();
        i.author_id = CAROL.0;
        i.author = CAROL.1.into();
        i.labels = vec!["DEPLOYMENT_REQUEST".into()];
    }
    let mut v = payload("issues.labeled.0");
    v["action"] = json!("labeled");
    v["issue"] = fake_github::issue_json(&gh.model().issues[&(REPO.to_string(), 5)]);
    v["label"] = json!({ "name": "DEPLOYMENT_REQUEST" });
    v.to_string()
}

pub async fn deliver(url: &str, secret: &str, event: &str, id: &str, body: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/webhook"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", sign(secret, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .expect("webhook")
        .status()
        .as_u16()
}

/// After the flow: the file holds what GitHub gave and the keys the App made, mode 0600; the App
/// left dry-run; `/setup` is gone; webhooks need the new secret; the App acts on GitHub with the
/// key it got from the conversion.
pub async fn check_registered(app: &Unregistered, gh: &FakeGitHub, setup_address: &str) {
    let regs = gh.app_registrations();
    assert_eq!(regs.len(), 1, "one App registered: {regs:#?}");
    let reg = &regs[0];
    assert!(reg.converted, "the App exchanged GitHub's code");
    // The manifest GitHub got: the file's permissions and events, this App's URLs.
    let file = shipgate::github::manifest::Manifest::from_file().expect("manifest");
    let posted: shipgate::github::manifest::Manifest =
        serde_json::from_value(reg.manifest.clone()).expect("a manifest");
    assert_eq!(posted.default_permissions, file.default_permissions);
    assert_eq!(posted.default_events, file.default_events);
    assert_eq!(posted.hook_attributes.url, format!("{}/webhook", app.url));
    assert_eq!(posted.redirect_url, format!("{}/setup/callback", app.url));

    let path = app.credentials_file();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("the credentials file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("# shipgate: the GitHub App's credentials"), "{text}");
    let vars = read_credentials(&path);
    let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET", "SHIPGATE_AUDIT_KEY", "SHIPGATE_SIGNING_KEY"]
    );
    assert_eq!(var(&vars, "GITHUB_APP_ID"), Some(fake_github::APP_ID));
    assert_eq!(
        var(&vars, "GITHUB_PRIVATE_KEY").map(|k| k.replace("\\n", "\n")),
        Some(fake_github::private_key_pem().trim().to_string())
    );
    assert_eq!(var(&vars, "GITHUB_WEBHOOK_SECRET"), Some(reg.webhook_secret.as_str()));
    let audit = var(&vars, "SHIPGATE_AUDIT_KEY").expect("an audit key was made");
    assert!(audit.len() == 64 && audit.bytes().all(|b| b.is_ascii_hexdigit()), "{audit}");
    let signing = var(&vars, "SHIPGATE_SIGNING_KEY").expect("a signing key was made").replace("\\n", "\n");
    let signing = shipgate::store::anchor::SigningKey::from_pem(&signing).expect("an Ed25519 PKCS#8 key");
    // A shell loads it as it is (README: moving the variables into a secret manager).
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"set -a; . "$1"; printf '%s|%s|%s' "$GITHUB_APP_ID" "$GITHUB_PRIVATE_KEY" "$SHIPGATE_AUDIT_KEY""#)
        .arg("sh")
        .arg(&path)
        .output()
        .expect("sh");
    let shell = String::from_utf8_lossy(&out.stdout).to_string();
    let expected = format!("{}|{}|{audit}", fake_github::APP_ID, var(&vars, "GITHUB_PRIVATE_KEY").expect("key"));
    assert_eq!(shell, expected, "sh reads the file's values unchanged: {}", String::from_utf8_lossy(&out.stderr));

    // The running App switched without a restart.
    let line = app.wait_line("left dry-run", Duration::from_secs(30)).await;
    assert!(line.contains(&format!("GitHub App {} credentials loaded from", fake_github::APP_ID)), "{line}");
    assert!(app.child.id().is_some(), "the same process");
    let http = reqwest::Client::new();
    let public = http.get(format!("{}/.well-known/shipgate-audit.pub", app.url)).send().await.expect("pub");
    assert_eq!(public.status(), 200, "the signing key made by /setup is in use");
    assert_eq!(public.text().await.expect("pem").trim(), signing.public().to_pem().trim());

    // /setup is gone, with the right code too.
    let r = http.get(setup_address).send().await.expect("setup");
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{}/setup/callback?code={}&state={}", app.url, reg.code, reg.state))
        .header("cookie", format!("shipgate_setup_state={}", reg.state))
        .send()
        .await
        .expect("callback");
    assert_eq!(r.status(), 404, "no second registration");

    // Webhooks: the development secret is refused now; GitHub's new secret is taken.
    let delivery = request_delivery(gh);
    assert_eq!(deliver(&app.url, "development", "issues", "after-setup-dev", &delivery).await, 401);
    assert_eq!(deliver(&app.url, &reg.webhook_secret, "issues", "after-setup-1", &delivery).await, 202);
    // The App acts on GitHub: an installation token asked for with its JWT (the fake checks it
    // against the public half of the key the conversion handed out), then the sticky comment.
    gh.wait_for("the sticky comment", Duration::from_secs(60), |m| {
        m.comments.iter().any(|c| c.issue == 5 && c.body.contains("<!-- shipgate:request -->"))
    })
    .await;
    let sticky = gh.app_comments(world::REPO, 5);
    assert_eq!(sticky.len(), 1, "{sticky:#?}");
    assert!(gh.count("apps/create-installation-access-token") >= 1);
    assert!(
        gh.calls().iter().all(|c| c.status != 401),
        "no call refused for its credentials: {:#?}",
        gh.calls().iter().filter(|c| c.status == 401).collect::<Vec<_>>()
    );
}

/// The value of `name="…" value="…"` (maud's escapes undone) in `html`.
fn hidden_value(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).expect("the field") + name.len() + 15;
    let end = at + html[at..].find('"').expect("end of value");
    html[at..end].replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

fn form_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_flow_over_http_registers_the_app_and_leaves_dry_run() {
    let gh = github().await;
    let app = Unregistered::start(&gh).await;
    let address = app.setup_address().await;
    assert!(address.starts_with(&format!("{}/setup?code=", app.url)), "{address}");
    let code = address.rsplit('=').next().expect("code").to_string();
    assert_eq!(code.len(), 32, "128 random bits");
    let logged = app.lines.lock().expect("lines").iter().filter(|l| l.contains(&code)).count();
    assert_eq!(logged, 1, "the code is printed once, and in no log line");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

    // Before: a dry run on the development secret.
    let ping = json!({ "zen": "Design for failure.", "hook_id": 1 }).to_string();
    assert_eq!(deliver(&app.url, "development", "ping", "before-setup", &ping).await, 202);

    // Without the code, or a wrong one: 404, with no hint beyond where the code is.
    for q in ["", "?code=", "?code=0123456789abcdef0123456789abcdef", "?org=acme"] {
        let r = http.get(format!("{}/setup{q}", app.url)).send().await.expect("setup");
        assert_eq!(r.status(), 404, "{q}");
        assert!(r.headers().get("set-cookie").is_none());
        let body = r.text().await.expect("body");
        assert!(body.contains("open the address it printed at start-up"), "{body}");
        assert!(!body.contains("manifest") && !body.contains(&code), "{body}");
    }

    // With the code: the page, its strict CSP (forms only to here and GitHub), and the state cookie.
    let r = http.get(&address).send().await.expect("setup");
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().expect("csp").to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains(&format!("form-action 'self' {}", gh.url)), "{csp}");
    let cookie = r.headers()["set-cookie"].to_str().expect("cookie").to_string();
    assert!(cookie.starts_with("shipgate_setup_state="), "{cookie}");
    assert!(cookie.contains("; HttpOnly; SameSite=Lax; Path=/setup; Max-Age=3600") && !cookie.contains("Secure"));
    let state = cookie["shipgate_setup_state=".len()..].split(';').next().expect("state").to_string();
    let page = r.text().await.expect("page");
    assert!(page.contains(&format!("action=\"{}/settings/apps/new?state={state}\"", gh.url)), "{page}");
    assert!(page.contains("Register for my account") && page.contains("deployment_protection_rule"));
    let manifest = hidden_value(&page, "manifest");
    let m: Value = serde_json::from_str(&manifest).expect("the manifest is JSON");
    assert_eq!(m["redirect_url"], format!("{}/setup/callback", app.url));

    // An organisation: a second form to its page; a name that is not one is escaped and refused.
    let r = http.get(format!("{address}&org=acme-corp")).send().await.expect("org");
    assert_eq!(r.status(), 200);
    let page_org = r.text().await.expect("page");
    assert!(page_org.contains(&format!("{}/organizations/acme-corp/settings/apps/new?state=", gh.url)));
    let r = http.get(format!("{address}&org=%3Cscript%3Ealert(1)%3C/script%3E")).send().await.expect("org");
    assert_eq!(r.status(), 400);
    let page_bad = r.text().await.expect("page");
    assert!(!page_bad.contains("<script>") && page_bad.contains("&lt;script&gt;"), "{page_bad}");
    assert!(!page_bad.contains("/organizations/"), "no form for a name that is not one");

    // The callback without the state's cookie, with a forged state, or an unknown one: 403, nothing written.
    let callback = |code: &str, state: &str| format!("{}/setup/callback?code={code}&state={state}", app.url);
    let forged = "f".repeat(32);
    for (url, cookie) in [
        (callback("c1", &state), None),
        (callback("c1", &forged), Some(state.clone())),
        (callback("c1", &forged), Some(forged.clone())),
        (callback("c1", &state), Some(forged.clone())),
    ] {
        let mut req = http.get(&url);
        if let Some(c) = &cookie {
            req = req.header("cookie", format!("shipgate_setup_state={c}"));
        }
        let r = req.send().await.expect("callback");
        assert_eq!(r.status(), 403, "{url} with cookie {cookie:?}");
    }
    assert!(!app.credentials_file().exists());
    assert_eq!(gh.count("apps/create-from-manifest"), 0, "nothing was asked of GitHub");

    // The flow: the browser posts the manifest to GitHub, which sends it back with a code.
    let location = post_manifest_to_github(&gh, &page, &state).await;
    assert!(location.starts_with(&format!("{}/setup/callback?code=", app.url)), "{location}");
    let r =
        http.get(&location).header("cookie", format!("shipgate_setup_state={state}")).send().await.expect("callback");
    assert_eq!(r.status(), 200);
    let cleared = r.headers()["set-cookie"].to_str().expect("cookie").to_string();
    assert!(cleared.starts_with("shipgate_setup_state=;") && cleared.contains("Max-Age=0"), "{cleared}");
    let done = r.text().await.expect("page");
    assert!(done.contains(&format!("Registered {} for {}", fake_github::APP_SLUG, fake_github::WEB_USER)), "{done}");
    assert!(done.contains(&format!("href=\"{}/apps/{}/installations/new\"", gh.url, fake_github::APP_SLUG)), "{done}");
    assert!(done.contains("shipgate.credentials.env"), "{done}");

    check_registered(&app, &gh, &address).await;
    // The code was asked for once: the forged attempts never reached GitHub.
    assert_eq!(gh.count("apps/create-from-manifest"), 1);
    gh.finish();
}

/// In-process: an App with credentials, or on PostgreSQL, never serves `/setup`, whoever asks.
async fn not_served_with(cfg: shipgate::config::Config, what: &str) {
    let setup = Arc::new(Setup::new(Arc::new(tokio::sync::Notify::new())).expect("setup"));
    let code = setup.code().to_string();
    let app =
        common::TestApp::start_with(cfg, Options { setup: Some(setup), run_worker: false, ..Options::default() }).await;
    for path in [format!("/setup?code={code}"), "/setup/callback?code=x&state=y".into()] {
        let r = app.http.get(format!("{}{path}", app.url)).send().await.expect("get");
        assert_eq!(r.status(), 404, "{what}: {path}");
        assert!(r.headers().get("set-cookie").is_none());
        assert!(r.text().await.expect("body").contains("not offered here"), "{what}");
    }
    app.shutdown_unchecked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_with_credentials_does_not_serve_setup() {
    let db = common::TestDb::sqlite().await;
    let mut cfg = db.config();
    cfg.github = Some(fake_github::app_credentials());
    cfg.public_url = Some("https://shipgate.example.com".into());
    not_served_with(cfg, "credentials").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_on_postgres_does_not_serve_setup() {
    let Some(db) = common::TestDb::postgres("setup::an_app_on_postgres_does_not_serve_setup").await else { return };
    let mut cfg = db.config();
    cfg.public_url = Some("https://shipgate.example.com".into());
    assert!(cfg.dry_run());
    not_served_with(cfg, "postgres").await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_public_url_the_page_says_to_set_it_and_offers_nothing() {
    let db = common::TestDb::sqlite().await;
    let cfg = db.config();
    assert!(cfg.dry_run() && cfg.public_url.is_none());
    let setup = Arc::new(Setup::new(Arc::new(tokio::sync::Notify::new())).expect("setup"));
    let code = setup.code().to_string();
    let app =
        common::TestApp::start_with(cfg, Options { setup: Some(setup), run_worker: false, ..Options::default() }).await;
    let r = app.http.get(format!("{}/setup?code={code}", app.url)).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none(), "no state without a way to use it");
    let csp = r.headers()["content-security-policy"].to_str().expect("csp").to_string();
    assert!(csp.contains("form-action 'self'") && !csp.contains("http"), "{csp}");
    let body = r.text().await.expect("body");
    assert!(body.contains("SHIPGATE_PUBLIC_URL") && !body.contains("<form"), "{body}");
    let r = app.http.get(format!("{}/setup?code=nope", app.url)).send().await.expect("get");
    assert_eq!(r.status(), 404);
    app.shutdown().await;
}

/// Registers through GitHub's page over HTTP as a browser would, for a state the App handed out:
/// GitHub's redirect back (the callback's address).
async fn post_manifest_to_github(gh: &FakeGitHub, page: &str, state: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let r = http
        .post(format!("{}/settings/apps/new?state={state}", gh.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("manifest={}", form_encode(&hidden_value(page, "manifest"))))
        .send()
        .await
        .expect("GitHub's registration page");
    assert_eq!(r.status(), 302);
    r.headers()["location"].to_str().expect("location").to_string()
}

/// A page of `/setup` and the state its cookie carries.
async fn setup_page(address: &str) -> (String, String) {
    let r = reqwest::get(address).await.expect("setup");
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().expect("cookie").to_string();
    let state = cookie["shipgate_setup_state=".len()..].split(';').next().expect("state").to_string();
    (r.text().await.expect("page"), state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_callbacks_at_once_register_one_app() {
    let gh = github().await;
    let app = Unregistered::start(&gh).await;
    let address = app.setup_address().await;
    // Two tabs, two registrations on GitHub, both sent back at once.
    let (page_a, state_a) = setup_page(&address).await;
    let (page_b, state_b) = setup_page(&address).await;
    assert_ne!(state_a, state_b);
    let back_a = post_manifest_to_github(&gh, &page_a, &state_a).await;
    let back_b = post_manifest_to_github(&gh, &page_b, &state_b).await;
    let call = |url: String, state: String| async move {
        reqwest::Client::new()
            .get(url)
            .header("cookie", format!("shipgate_setup_state={state}"))
            .send()
            .await
            .expect("callback")
            .status()
            .as_u16()
    };
    let (a, b) = tokio::join!(call(back_a, state_a), call(back_b, state_b));
    let mut got = [a, b];
    got.sort();
    assert_eq!(got, [200, 404], "one registration, the other refused");
    let converted: Vec<_> = gh.app_registrations().into_iter().filter(|r| r.converted).collect();
    assert_eq!(converted.len(), 1, "GitHub was asked once");
    let vars = read_credentials(&app.credentials_file());
    assert_eq!(var(&vars, "GITHUB_WEBHOOK_SECRET"), Some(converted[0].webhook_secret.as_str()), "the winner's");
    app.wait_line("left dry-run", Duration::from_secs(30)).await;
    gh.finish();
}

/// The console's errors, but the browser's own `/favicon.ico` asks (the App serves no icon: 404).
async fn real_errors(b: &browser::Browser) -> Vec<String> {
    b.js_errors().await.into_iter().filter(|e| !e.contains("/favicon.ico")).collect()
}

/// The flow in a real headless Chromium: open the printed address, click "Register for my
/// account", go through the fake GitHub's page and back, land on the success page. The browser
/// enforces the page's CSP (a form posting where `form-action` does not allow, or a redirect
/// after it, would be blocked and logged) and the cookie's attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_flow_in_a_browser() {
    let gh = github().await;
    let app = Unregistered::start(&gh).await;
    let address = app.setup_address().await;
    let Some(b) = browser::Browser::start_or_skip().await else { return };
    b.goto(&address).await;
    assert_eq!(b.title().await, "Register shipgate · shipgate");
    b.wait_for_text("What the App asks for").await;
    let cookie = b.cookie("shipgate_setup_state").await.expect("the state cookie");
    assert!(cookie.http_only && cookie.same_site.as_deref() == Some("Lax") && !cookie.secure, "{cookie:?}");
    assert_eq!(cookie.path.as_deref(), Some("/setup"));
    b.screenshot("setup-page").await;

    let button = format!("form[action^=\"{}/settings/apps/new?state=\"] button[type=submit]", gh.url);
    assert_eq!(b.text_of(&button).await, "Register for my account");
    b.click_and_wait(&button).await;
    b.wait_for_text(&format!("Registered {} for {}", fake_github::APP_SLUG, fake_github::WEB_USER)).await;
    let url = b.current_url().await;
    assert!(url.starts_with(&format!("{}/setup/callback?code=", app.url)), "{url}");
    let shot = b.screenshot("setup-registered").await;
    assert!(shot.exists());
    assert_eq!(
        b.attr("main a", "href").await.as_deref(),
        Some(format!("{}/apps/{}/installations/new", gh.url, fake_github::APP_SLUG).as_str())
    );
    assert!(b.text().await.contains("shipgate.credentials.env"));
    assert!(b.cookie("shipgate_setup_state").await.is_none(), "the state cookie is cleared");
    let errors = real_errors(&b).await;
    assert!(errors.is_empty(), "the browser logged errors (a CSP violation?): {errors:#?}");
    // The registration GitHub saw carried the state the page's cookie held.
    assert_eq!(gh.app_registrations()[0].state, cookie.value);

    check_registered(&app, &gh, &address).await;
    // The page the browser shows now is gone for good.
    b.goto(&address).await;
    b.wait_for_text("not offered here").await;
    b.close().await;
    gh.finish();
}

/// The organisation path in a browser: name it, get its form, register for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organisation_path_in_a_browser() {
    let gh = github().await;
    let app = Unregistered::start(&gh).await;
    let address = app.setup_address().await;
    let Some(b) = browser::Browser::start_or_skip().await else { return };
    b.goto(&address).await;
    b.fill("input[name=org]", "acme-corp").await;
    b.submit("input[name=org]").await;
    let button = format!("form[action^=\"{}/organizations/acme-corp/settings/apps/new?state=\"] button", gh.url);
    assert_eq!(b.text_of(&button).await, "Register for acme-corp");
    b.screenshot("setup-organisation").await;
    b.click_and_wait(&button).await;
    b.wait_for_text(&format!("Registered {} for acme-corp", fake_github::APP_SLUG)).await;
    let regs = gh.app_registrations();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].org.as_deref(), Some("acme-corp"));
    assert!(app.credentials_file().exists());
    app.wait_line("left dry-run", Duration::from_secs(30)).await;
    let errors = real_errors(&b).await;
    assert!(errors.is_empty(), "the browser logged errors (a CSP violation?): {errors:#?}");
    b.close().await;
    gh.finish();
}

// ---- Review 18b: attacks on /setup ------------------------------------------------------------

/// Goes through the whole flow for `app` (one page, GitHub's page, the callback with the cookie)
/// and waits for the switch; returns the registration GitHub made.
async fn register(app: &Unregistered, gh: &FakeGitHub) -> fake_github::AppRegistration {
    let address = app.setup_address().await;
    let (page, state) = setup_page(&address).await;
    let back = post_manifest_to_github(gh, &page, &state).await;
    let r = reqwest::Client::new()
        .get(&back)
        .header("cookie", format!("shipgate_setup_state={state}"))
        .send()
        .await
        .expect("callback");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let regs = gh.app_registrations();
    assert_eq!(regs.len(), 1);
    regs[0].clone()
}

/// S8 with a secret in the environment: an operator who set `GITHUB_WEBHOOK_SECRET` before
/// registering would get an App whose environment secret wins over the one GitHub made (every
/// delivery GitHub signs refused, the old known secret accepted). `/setup` refuses to register from
/// such a start, says why, and offers no form; the start says so instead of printing a code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review18b_a_webhook_secret_in_the_environment_does_not_outlive_the_setup() {
    const KNOWN: &str = "dry-run-test-secret-0123456789";
    let db = common::TestDb::sqlite().await;
    let mut cfg = db.config();
    cfg.webhook_secret_defaulted = false;
    cfg.webhook_secrets = vec![shipgate::config::Secret::new(KNOWN)];
    cfg.public_url = Some("http://127.0.0.1:9".into());
    let setup = Arc::new(Setup::new(Arc::new(tokio::sync::Notify::new())).expect("setup"));
    let code = setup.code().to_string();
    let app =
        common::TestApp::start_with(cfg, Options { setup: Some(setup), run_worker: false, ..Options::default() }).await;
    let r = app.http.get(format!("{}/setup?code={code}", app.url)).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 409);
    let cookie = r.headers().get("set-cookie").cloned();
    let body = r.text().await.expect("body");
    assert!(cookie.is_none() && !body.contains("<form"), "{body}");
    assert!(body.contains("GITHUB_WEBHOOK_SECRET is set"), "{body}");
    app.shutdown().await;
}

/// S5: GitHub's one-time code is the credential of the conversion (whoever exchanges it first
/// gets the App's private key and webhook secret). With `RUST_LOG=debug` (as an operator turns
/// on to see why a registration fails) the conversion's full URL, code included, goes to the log
/// (octocrab's `HTTP{http.url=…}` span), while a failed exchange leaves the code valid for an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review18b_the_manifest_code_never_reaches_a_log_line() {
    let gh = github().await;
    let app = Unregistered::start_with(&gh, &[("RUST_LOG", "debug")]).await;
    let reg = register(&app, &gh).await;
    app.wait_line("left dry-run", Duration::from_secs(30)).await;
    let lines = app.lines.lock().expect("lines").clone();
    let setup_code = app.setup_address().await.rsplit('=').next().expect("code").to_string();
    assert_eq!(lines.iter().filter(|l| l.contains(&setup_code)).count(), 1, "the setup code, printed once");
    assert!(!lines.iter().any(|l| l.contains(&reg.webhook_secret) || l.contains("PRIVATE KEY")), "a secret logged");
    let leaked: Vec<&String> = lines.iter().filter(|l| l.contains(&reg.code)).collect();
    assert!(leaked.is_empty(), "GitHub's one-time code {} is in the log: {leaked:#?}", reg.code);
}

/// `SHIPGATE_PUBLIC_URL` may be plain `http://` on any host; `/setup` is then offered over it:
/// the setup code (in the address), the state cookie (without `Secure`) and GitHub's one-time
/// code (in the redirect back) cross the network in the clear, so anyone on the path can register
/// an App of their own, or exchange the operator's code first and hold its private key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review18b_setup_is_not_offered_over_plain_http_to_a_public_host() {
    let db = common::TestDb::sqlite().await;
    let mut cfg = db.config();
    cfg.public_url = Some("http://shipgate.example.com".into());
    let setup = Arc::new(Setup::new(Arc::new(tokio::sync::Notify::new())).expect("setup"));
    let code = setup.code().to_string();
    let app =
        common::TestApp::start_with(cfg, Options { setup: Some(setup), run_worker: false, ..Options::default() }).await;
    let r = app.http.get(format!("{}/setup?code={code}", app.url)).send().await.expect("get");
    let cookie = r.headers().get("set-cookie").map(|c| c.to_str().unwrap_or_default().to_string());
    let body = r.text().await.expect("body");
    assert!(
        cookie.is_none() && !body.contains("<form method=\"post\""),
        "a registration offered over plain http to a public host (cookie {cookie:?})"
    );
    app.shutdown().await;
}

/// What GitHub's conversion answers is written to the credentials file unchecked: a private key
/// that does not load (or a webhook secret shorter than the App accepts) is stored, the switch
/// out of dry-run fails, and from then on every start of the App (and every command) fails on the
/// file, while the page said the App was leaving dry-run. The answer should be checked (the key
/// loads, the secret is long enough) before the file is written, and refused with a page that says
/// to delete the App on GitHub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review18b_a_conversion_the_app_cannot_use_is_not_written() {
    let gh = github().await;
    gh.model().conversion_overrides =
        vec![("pem".into(), json!("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n"))];
    let app = Unregistered::start(&gh).await;
    let address = app.setup_address().await;
    let (page, state) = setup_page(&address).await;
    let back = post_manifest_to_github(&gh, &page, &state).await;
    let r = reqwest::Client::new()
        .get(&back)
        .header("cookie", format!("shipgate_setup_state={state}"))
        .send()
        .await
        .expect("callback");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    // Whatever the page said, the App must still be able to start on what is on disk.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = app
        .lines
        .lock()
        .expect("lines")
        .iter()
        .filter(|l| l.contains("cannot leave dry-run"))
        .cloned()
        .collect::<Vec<_>>();
    let next = std::process::Command::new("timeout")
        .args(["10", env!("CARGO_BIN_EXE_shipgate"), "serve"])
        .env("SHIPGATE_LISTEN", format!("127.0.0.1:{}", common::free_port()))
        .current_dir(app.dir.path())
        .env("DATABASE_URL", format!("sqlite://{}", app.dir.path().join("shipgate.db").display()))
        .env_remove("GITHUB_APP_ID")
        .env_remove("GITHUB_PRIVATE_KEY")
        .env_remove("GITHUB_PRIVATE_KEY_PATH")
        .env_remove("GITHUB_WEBHOOK_SECRET")
        .env_remove("SHIPGATE_AUDIT_KEY")
        .output()
        .expect("shipgate serve");
    let stderr =
        String::from_utf8_lossy(&next.stderr).lines().filter(|l| l.contains("rror")).collect::<Vec<_>>().join("\n");
    assert!(
        status != 200 && !app.credentials_file().exists(),
        "an unusable key was accepted ({status}: {}) and written; the running App: {log:#?}; the next start ({:?}): {stderr}",
        body.contains("leaving dry-run now"),
        next.status.code()
    );
}
