//! Browser tests in a real headless Chromium, driven over WebDriver (fantoccini) through Debian's
//! `chromedriver`.
//!
//! ```ignore
//! mod browser;
//! use browser::Browser;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn the_page_shows_the_request() {
//!     let Some(b) = Browser::start_or_skip().await else { return };
//!     b.goto(&format!("{base}/requests/1")).await;
//!     assert!(b.text().await.contains("Approved"));
//!     b.close().await;
//! }
//! ```
//!
//! Each [`Browser`] is its own `chromedriver --port=<free port>` (in a process group of its own,
//! killed with every Chromium process under it when the `Browser` is closed or dropped) and one
//! Chromium session on a fresh profile in a temporary directory, so tests run in parallel and
//! share no cookies or storage. The viewport is a phone's ([`Viewport::PHONE`], 390x844, mobile:
//! `<meta name=viewport>` is honoured, touch is on) unless the test asks for
//! [`Viewport::DESKTOP`]. Chromium resolves no host name but `localhost` (`127.0.0.1` and `::1`
//! work too; any other name fails as not resolved) and its background networking is off: serve
//! test pages on loopback.
//!
//! Binaries: `CHROMIUM` and `CHROMEDRIVER` when set, else `/usr/bin/chromium` and
//! `/usr/bin/chromedriver` (Debian's `chromium` and `chromium-driver`, which `.ci/run` installs).
//! When one is missing the test FAILS, saying what to install: a browser test never passes
//! without a browser. The one way to skip is explicit: `SHIPGATE_SKIP_BROWSER_TESTS=1`, with
//! which [`Browser::start_or_skip`] prints a loud warning to stderr and returns `None` (the test
//! then returns early and checks nothing). [`Browser::start`] never skips.
//!
//! Helpers panic with the page's URL on a WebDriver error (this is test code); [`Browser::client`]
//! gives the fantoccini client for anything not wrapped here. When a test panics while its
//! `Browser` is alive, the drop saves a screenshot and the page's source as
//! `target/test-artifacts/<test name>.failure.{png,html}` and says so on stderr.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// The variable that skips the browser tests, when it is exactly `1`.
pub const SKIP_VAR: &str = "SHIPGATE_SKIP_BROWSER_TESTS";

/// How long the polling helpers (`wait_for*`, `click_and_wait`, `submit`) wait.
pub const WAIT: Duration = Duration::from_secs(10);

/// The size of the page's viewport, in CSS pixels (the screenshot's size too: the device pixel
/// ratio is 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    /// A phone: `<meta name=viewport>` is honoured (a page without it is laid out 980 pixels wide,
    /// as on a real phone), scrollbars overlay, and touch input is on.
    pub mobile: bool,
}

impl Viewport {
    /// An iPhone 12-15's screen.
    pub const PHONE: Viewport = Viewport { width: 390, height: 844, mobile: true };
    /// A laptop's window.
    pub const DESKTOP: Viewport = Viewport { width: 1280, height: 800, mobile: false };
}

/// One line of the browser's console: `console.*` calls, uncaught exceptions, CSP violations,
/// failed loads.
#[derive(Clone, Debug)]
pub struct ConsoleEntry {
    /// `SEVERE` (errors), `WARNING`, `INFO`, `DEBUG`.
    pub level: String,
    /// `console-api`, `javascript`, `security`, `network`, ...
    pub source: String,
    pub message: String,
}

/// A cookie as the browser holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub domain: Option<String>,
    pub path: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    /// `Strict`, `Lax` or `None`, as the browser reports it.
    pub same_site: Option<String>,
    /// Unix seconds; `None` for a session cookie.
    pub expires: Option<i64>,
}

/// A headless Chromium session and the chromedriver that runs it.
pub struct Browser {
    client: Option<Client>,
    session: String,
    port: u16,
    http: reqwest::Client,
    driver: Child,
    // Dropped after the driver's processes are killed (field order).
    profile: tempfile::TempDir,
}

impl Browser {
    /// A phone-sized session. Panics, saying what to install, when Chromium or chromedriver is
    /// missing; never skips.
    pub async fn start() -> Browser {
        Browser::start_with(Viewport::PHONE).await
    }

    /// A session with the given viewport ([`Viewport::DESKTOP`], or any size).
    pub async fn start_with(viewport: Viewport) -> Browser {
        let (chromium, chromedriver) = binaries();
        let profile = tempfile::Builder::new().prefix("shipgate-chromium-").tempdir().expect("a temporary directory");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client");
        let (driver, port) = start_driver(&chromedriver, profile.path(), &http).await;
        let mut b = Browser { client: None, session: String::new(), port, http, driver, profile };

        let args = chromium_args(&b.profile.path().join("profile"), viewport);
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), json!({ "binary": chromium, "args": args }));
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        caps.insert("pageLoadStrategy".into(), json!("normal"));
        caps.insert("timeouts".into(), json!({ "implicit": 0, "pageLoad": 20_000, "script": 10_000 }));
        let client = match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => c,
            Err(e) => panic!(
                "BROWSER DID NOT START: chromedriver ({}) could not open a session of {}: {e}\n\
                 (chromium and chromedriver must be the same version: Debian's `chromium` and \
                 `chromium-driver` are)\n{}",
                chromedriver.display(),
                chromium.display(),
                b.driver_log()
            ),
        };
        b.session = client.session_id().await.ok().flatten().expect("the new session's id");
        b.client = Some(client);
        b.set_viewport(viewport).await;
        b
    }

    /// [`Browser::start`], or `None` (with a loud warning on stderr) when
    /// `SHIPGATE_SKIP_BROWSER_TESTS=1`: `let Some(b) = Browser::start_or_skip().await else { return };`
    pub async fn start_or_skip() -> Option<Browser> {
        Browser::start_or_skip_with(Viewport::PHONE).await
    }

    /// [`Browser::start_with`], or `None` when `SHIPGATE_SKIP_BROWSER_TESTS=1`.
    pub async fn start_or_skip_with(viewport: Viewport) -> Option<Browser> {
        if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
            let test = std::thread::current().name().unwrap_or("a browser test").to_string();
            let warning = format!(
                "\n{bar}\n!!! BROWSER TEST SKIPPED: {SKIP_VAR}=1 is set.\n\
                 !!! `{test}` did NOT run: nothing it checks in a real browser was checked.\n\
                 !!! To run it: unset {SKIP_VAR} and `apt-get install chromium chromium-driver`\n\
                 !!! (or run .ci/run, which installs them).\n{bar}\n",
                bar = "!".repeat(78)
            );
            // Straight to the process's stderr: the test harness captures `eprintln!` of a
            // passing test, and this must be seen.
            let _ = std::io::stderr().lock().write_all(warning.as_bytes());
            return None;
        }
        Some(Browser::start_with(viewport).await)
    }

    /// Ends the session (Chromium quits) and stops chromedriver. Dropping the `Browser` does the
    /// same, less politely (the processes are killed).
    pub async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
        // Drop kills the driver's process group.
    }

    /// The fantoccini client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("an open session")
    }

    /// The WebDriver session's id.
    pub fn session_id(&self) -> &str {
        &self.session
    }

    // -----------------------------------------------------------------------------------------
    // Navigation and the page
    // -----------------------------------------------------------------------------------------

    /// Loads `url` and waits for its `load` event (redirects followed).
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client().goto(url).await {
            panic!("goto({url}): {e}");
        }
    }

    /// The address of the page now shown (after redirects).
    pub async fn current_url(&self) -> String {
        match self.client().current_url().await {
            Ok(u) => u.to_string(),
            Err(e) => panic!("current_url(): {e}"),
        }
    }

    /// The document's `<title>`.
    pub async fn title(&self) -> String {
        match self.client().title().await {
            Ok(t) => t,
            Err(e) => panic!("title() on {}: {e}", self.url_for_errors().await),
        }
    }

    /// The page's DOM serialized as HTML (as it is now, after any script ran).
    pub async fn source(&self) -> String {
        match self.client().source().await {
            Ok(s) => s,
            Err(e) => panic!("source() on {}: {e}", self.url_for_errors().await),
        }
    }

    /// The body's visible text, as rendered (hidden elements left out, like `innerText`).
    pub async fn text(&self) -> String {
        self.text_of("body").await
    }

    /// The visible text of the first element matching `css`.
    pub async fn text_of(&self, css: &str) -> String {
        match self.find(css).await.text().await {
            Ok(t) => t,
            Err(e) => panic!("text_of({css:?}) on {}: {e}", self.url_for_errors().await),
        }
    }

    /// The first element matching `css`; panics when there is none.
    pub async fn find(&self, css: &str) -> Element {
        match self.client().find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("find({css:?}) on {}: {e}", self.url_for_errors().await),
        }
    }

    /// Every element matching `css` (none is not an error).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        match self.client().find_all(Locator::Css(css)).await {
            Ok(v) => v,
            Err(e) => panic!("find_all({css:?}) on {}: {e}", self.url_for_errors().await),
        }
    }

    /// Whether an element matches `css`.
    pub async fn exists(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    /// The attribute `name` of the first element matching `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        match self.find(css).await.attr(name).await {
            Ok(v) => v,
            Err(e) => panic!("attr({css:?}, {name:?}) on {}: {e}", self.url_for_errors().await),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Input
    // -----------------------------------------------------------------------------------------

    /// Clicks the first element matching `css`, as a person would (it must be visible and not
    /// covered). chromedriver waits for a navigation the click starts; for one that starts later
    /// (a script, a slow submit) use [`Browser::click_and_wait`].
    pub async fn click(&self, css: &str) {
        if let Err(e) = self.find(css).await.click().await {
            panic!("click({css:?}) on {}: {e}", self.url_for_errors().await);
        }
    }

    /// Clicks and waits until a new document has loaded (a link, a submit button: the form's
    /// POST, its redirects, cross-origin or not, and the final page's `load`).
    pub async fn click_and_wait(&self, css: &str) {
        self.mark_document().await;
        self.click(css).await;
        self.wait_for_new_document(&format!("click_and_wait({css:?})")).await;
    }

    /// Types `value` into the field matching `css` after clearing it; for a `<select>`, picks
    /// the option whose value is `value`.
    pub async fn fill(&self, css: &str, value: &str) {
        let el = self.find(css).await;
        let tag = el.tag_name().await.unwrap_or_default();
        let done = if tag.eq_ignore_ascii_case("select") {
            el.select_by_value(value).await
        } else {
            match el.clear().await {
                Ok(()) => el.send_keys(value).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = done {
            panic!("fill({css:?}, {value:?}) on {}: {e}", self.url_for_errors().await);
        }
    }

    /// Submits the form matching `css` (or the form of the field matching it) the way its
    /// submit button would (`requestSubmit()`: validation and submit handlers run), and waits
    /// until the resulting page has loaded.
    pub async fn submit(&self, css: &str) {
        self.mark_document().await;
        let script = "const el = document.querySelector(arguments[0]);\n\
                      if (!el) return 'no element matches';\n\
                      const form = el instanceof HTMLFormElement ? el : (el.form || el.closest('form'));\n\
                      if (!form) return 'the element is not in a form';\n\
                      setTimeout(() => form.requestSubmit(), 0);\n\
                      return null;";
        let r = self.execute(script, vec![json!(css)]).await;
        if let Some(problem) = r.as_str() {
            panic!("submit({css:?}) on {}: {problem}", self.url_for_errors().await);
        }
        self.wait_for_new_document(&format!("submit({css:?})")).await;
    }

    // -----------------------------------------------------------------------------------------
    // Waiting
    // -----------------------------------------------------------------------------------------

    /// Waits (up to [`WAIT`]) until the body's text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.eval("document.body ? document.body.innerText : ''").await;
            if text.as_str().is_some_and(|t| t.contains(needle)) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "wait_for_text({needle:?}) on {}: not there after {WAIT:?}; the page says:\n{text}",
                    self.url_for_errors().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to [`WAIT`]) until an element matches `css`, and returns it.
    pub async fn wait_for(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                return e;
            }
            if Instant::now() > deadline {
                panic!("wait_for({css:?}) on {}: no such element after {WAIT:?}", self.url_for_errors().await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to [`WAIT`]) until the current URL satisfies `ok`, and returns it.
    pub async fn wait_for_url(&self, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.current_url().await;
            if ok(&url) {
                return url;
            }
            if Instant::now() > deadline {
                panic!("wait_for_url: still at {url} after {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Scripts, cookies, console, screenshots, size
    // -----------------------------------------------------------------------------------------

    /// The value of the JavaScript expression `expr` in the page (`undefined` and `null` come
    /// back as `Value::Null`; for a strict check use `typeof`, e.g.
    /// `eval("typeof window.__pwned")` is `"undefined"`). WebDriver's scripts run whatever the
    /// page's Content-Security-Policy says.
    pub async fn eval(&self, expr: &str) -> Value {
        let expr = expr.trim().trim_end_matches(';');
        self.execute(&format!("return ({expr});"), Vec::new()).await
    }

    /// Runs `body` as a function's body (`arguments[i]` are `args`; `return` gives the value).
    pub async fn execute(&self, body: &str, args: Vec<Value>) -> Value {
        match self.client().execute(body, args).await {
            Ok(v) => v,
            Err(e) => panic!("execute({body:?}) on {}: {e}", self.url_for_errors().await),
        }
    }

    /// The cookies the browser holds for the current page's address (HttpOnly ones too).
    pub async fn cookies(&self) -> Vec<Cookie> {
        match self.client().get_all_cookies().await {
            Ok(all) => all
                .into_iter()
                .map(|c| Cookie {
                    name: c.name().to_string(),
                    value: c.value().to_string(),
                    domain: c.domain().map(str::to_string),
                    path: c.path().map(str::to_string),
                    secure: c.secure().unwrap_or(false),
                    http_only: c.http_only().unwrap_or(false),
                    same_site: c.same_site().map(|s| s.to_string()),
                    expires: c.expires_datetime().map(|t| t.unix_timestamp()),
                })
                .collect(),
            Err(e) => panic!("cookies() on {}: {e}", self.url_for_errors().await),
        }
    }

    /// The cookie `name` for the current page's address.
    pub async fn cookie(&self, name: &str) -> Option<Cookie> {
        self.cookies().await.into_iter().find(|c| c.name == name)
    }

    /// The console's lines since the last call (reading empties the buffer): `console.*`,
    /// uncaught exceptions, CSP violations, failed loads.
    pub async fn console(&self) -> Vec<ConsoleEntry> {
        let v = self.driver_call("POST", "se/log", json!({ "type": "browser" })).await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| ConsoleEntry {
                        level: e["level"].as_str().unwrap_or_default().to_string(),
                        source: e["source"].as_str().unwrap_or_default().to_string(),
                        message: e["message"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The messages of the console's errors (level `SEVERE`) since the last [`Browser::console`]
    /// or `js_errors` call: uncaught exceptions, `console.error`, CSP violations, failed loads.
    pub async fn js_errors(&self) -> Vec<String> {
        self.console().await.into_iter().filter(|e| e.level == "SEVERE").map(|e| e.message).collect()
    }

    /// Saves the viewport as `target/test-artifacts/<name>.png` and returns the file's path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = match self.client().screenshot().await {
            Ok(p) => p,
            Err(e) => panic!("screenshot({name:?}) on {}: {e}", self.url_for_errors().await),
        };
        let path = artifact_path(name, "png");
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Resizes the viewport (it stays so across navigations in this tab).
    pub async fn set_viewport(&self, v: Viewport) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": v.width, "height": v.height, "deviceScaleFactor": 1, "mobile": v.mobile }),
        )
        .await;
        self.cdp("Emulation.setTouchEmulationEnabled", json!({ "enabled": v.mobile, "maxTouchPoints": 5 })).await;
    }

    /// A Chrome DevTools Protocol command through chromedriver (`Network.*`, `Emulation.*`, ...).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.driver_call("POST", "goog/cdp/execute", json!({ "cmd": cmd, "params": params })).await
    }

    // -----------------------------------------------------------------------------------------
    // Internals
    // -----------------------------------------------------------------------------------------

    /// A chromedriver command of this session that fantoccini does not have (`value` returned).
    async fn driver_call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("http://127.0.0.1:{}/session/{}/{path}", self.port, self.session);
        let req = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url).json(&body),
        };
        let answer = async {
            let r = req.send().await.map_err(|e| e.to_string())?;
            let status = r.status();
            let v: Value = r.json().await.map_err(|e| e.to_string())?;
            if status.is_success() { Ok(v["value"].clone()) } else { Err(format!("{status}: {}", v["value"])) }
        };
        match answer.await {
            Ok(v) => v,
            Err(e) => panic!("chromedriver {method} {path}: {e}"),
        }
    }

    async fn mark_document(&self) {
        self.execute("window.__shipgateOldDocument = true;", Vec::new()).await;
    }

    /// Waits until the document marked by `mark_document` is gone and the new one has loaded.
    async fn wait_for_new_document(&self, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            // Errors are expected while the navigation is under way.
            let done = self
                .client()
                .execute(
                    "return window.__shipgateOldDocument === undefined && document.readyState === 'complete';",
                    Vec::new(),
                )
                .await;
            if matches!(done, Ok(Value::Bool(true))) {
                return;
            }
            if Instant::now() > deadline {
                panic!("{what}: no new page loaded within {WAIT:?}; still at {}", self.url_for_errors().await);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn url_for_errors(&self) -> String {
        match self.client().current_url().await {
            Ok(u) => u.to_string(),
            Err(e) => format!("(unknown page: {e})"),
        }
    }

    fn driver_log(&self) -> String {
        driver_log(self.profile.path())
    }

    /// After a panic: the page's screenshot and source, by blocking calls (no runtime in drop).
    fn save_failure_artifacts(&self) {
        let name = safe_name(&format!("{}.failure", std::thread::current().name().unwrap_or("browser-test")));
        let Ok(dir) = try_artifacts_dir() else { return };
        let base = format!("/session/{}", self.session);
        let url = blocking_call(self.port, "GET", &format!("{base}/url"));
        let shot = blocking_call(self.port, "GET", &format!("{base}/screenshot"));
        let source = blocking_call(self.port, "GET", &format!("{base}/source"));
        let mut saved = Vec::new();
        if let Some(png) = shot.as_ref().and_then(Value::as_str).and_then(base64_decode) {
            let p = dir.join(format!("{name}.png"));
            if std::fs::write(&p, png).is_ok() {
                saved.push(p.display().to_string());
            }
        }
        if let Some(html) = source.as_ref().and_then(Value::as_str) {
            let p = dir.join(format!("{name}.html"));
            if std::fs::write(&p, html).is_ok() {
                saved.push(p.display().to_string());
            }
        }
        let url = url.as_ref().and_then(Value::as_str).unwrap_or("(unknown)").to_string();
        eprintln!(
            "browser test failed on {url}; saved: {}",
            if saved.is_empty() { "nothing".to_string() } else { saved.join(", ") }
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.client.is_some() && std::thread::panicking() {
            self.save_failure_artifacts();
        }
        // chromedriver leads its own process group; Chromium's processes are in it. Killing the
        // group leaves no browser behind, whatever state the session is in.
        let pid = self.driver.id() as libc::pid_t;
        // SAFETY: kill(2) on a process group this Browser created; no memory is touched.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Starting
// ---------------------------------------------------------------------------------------------

/// Chromium's and chromedriver's paths; panics, saying what to install, when one is missing.
fn binaries() -> (PathBuf, PathBuf) {
    let find = |var: &str, default: &str| -> (PathBuf, bool) {
        let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
        let ok = std::fs::metadata(&p).is_ok_and(|m| m.is_file());
        (p, ok)
    };
    let (chromium, chromium_ok) = find("CHROMIUM", "/usr/bin/chromium");
    let (driver, driver_ok) = find("CHROMEDRIVER", "/usr/bin/chromedriver");
    if !chromium_ok || !driver_ok {
        let mut missing = Vec::new();
        if !chromium_ok {
            missing.push(format!("Chromium ({}, from CHROMIUM or the default)", chromium.display()));
        }
        if !driver_ok {
            missing.push(format!("chromedriver ({}, from CHROMEDRIVER or the default)", driver.display()));
        }
        panic!(
            "\n\nNO BROWSER: this test runs in a real headless Chromium, and {} is missing.\n\
             Install Debian's packages:   apt-get install chromium chromium-driver\n\
             (or run .ci/run, which installs them), or point CHROMIUM=/path/to/chromium and\n\
             CHROMEDRIVER=/path/to/chromedriver at a pair of the same version.\n\
             To skip the browser tests on purpose (they then check nothing): {SKIP_VAR}=1\n",
            missing.join(" and ")
        );
    }
    (chromium, driver)
}

/// Starts chromedriver on a free port and waits until its /status says ready.
async fn start_driver(chromedriver: &Path, dir: &Path, http: &reqwest::Client) -> (Child, u16) {
    let mut last_error = String::new();
    // A port found free can be taken before chromedriver binds it: try another.
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let out = std::fs::File::create(dir.join("chromedriver.out")).expect("chromedriver's output file");
        let mut child = match Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", dir.join("chromedriver.log").display()))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("file"))
            .stderr(out)
            .process_group(0)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("starting {}: {e}", chromedriver.display()),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                last_error = format!("chromedriver exited ({status}) on port {port}");
                break;
            }
            let ready =
                http.get(format!("http://127.0.0.1:{port}/status")).timeout(Duration::from_secs(2)).send().await;
            if let Ok(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == json!(true)
            {
                return (child, port);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                last_error = format!("chromedriver did not answer on port {port} within 15 s");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("BROWSER DID NOT START: {last_error}\n{}", driver_log(dir));
}

fn chromium_args(profile: &Path, v: Viewport) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-sync",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--metrics-recording-only",
        "--password-store=basic",
        "--lang=en-US",
        // Only this machine: no name resolves but localhost and the loopback addresses (the
        // rules apply to IP literals too).
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1 , EXCLUDE ::1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push(format!("--window-size={},{}", v.width, v.height));
    args
}

fn driver_log(dir: &Path) -> String {
    let mut s = String::new();
    for f in ["chromedriver.out", "chromedriver.log"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        s.push_str(&format!("--- {f} (last 40 lines) ---\n{tail}\n"));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Artifacts
// ---------------------------------------------------------------------------------------------

/// `target/test-artifacts` (under `CARGO_TARGET_DIR` when set), created.
pub fn artifacts_dir() -> PathBuf {
    try_artifacts_dir().unwrap_or_else(|e| panic!("creating the test artifacts' directory: {e}"))
}

fn try_artifacts_dir() -> std::io::Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => manifest.join(d), // an absolute path replaces the base
        None => manifest.join("target"),
    };
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `<artifacts_dir>/<name>.<ext>`, the name made safe for a file name.
fn artifact_path(name: &str, ext: &str) -> PathBuf {
    assert!(!name.trim_matches('.').is_empty(), "an artifact needs a name");
    artifacts_dir().join(format!("{}.{ext}", safe_name(name)))
}

fn safe_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

/// A chromedriver call from `drop` (no async runtime to lean on) on a plain socket. chromedriver
/// ignores HTTP/1.0 and keeps the connection open after its answer: the body is read by its
/// Content-Length.
fn blocking_call(port: u16, method: &str, path: &str) -> Option<Value> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let (head_end, length) = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| l.strip_prefix("content-length:"))?.trim().parse::<usize>().ok()?;
            break (i + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let v: Value = serde_json::from_slice(&buf[head_end..head_end + length]).ok()?;
    Some(v["value"].clone())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}
