//! `GET /setup` and `GET /setup/callback`: registering the App on GitHub in one click (SPEC §6),
//! through GitHub's App manifest flow.
//!
//! Served only by an App without credentials on SQLite, to whoever holds the one-time setup code
//! it printed on stderr at start-up (the first person to find the port must not register their
//! own App for it). The page posts the manifest built from `app-manifest.yml` to GitHub with a
//! random `state`, also set as a cookie; GitHub sends the browser back to the callback with a
//! one-time code and that state; the callback checks both, exchanges the code for the App's id,
//! private key and webhook secret, writes them (with an audit and a signing key it makes when
//! none is set) to the credentials file beside the database, and asks the running App to start
//! again out of dry-run. Once that file exists, or the App has credentials, neither page is
//! served (404).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use tokio::sync::Notify;

use super::AppState;
use super::api::constant_time_eq;
use super::pages;
use crate::config::{Config, Secret};
use crate::github::manifest::{self, Manifest};

/// The cookie that carries the setup's `state` through GitHub and back (the only cookie the
/// pages set).
pub const STATE_COOKIE: &str = "shipgate_setup_state";

/// States handed out and not used yet; beyond this the oldest is forgotten. Only the holder of
/// the setup code gets states, so this bounds memory, not an attacker's luck.
const MAX_PENDING: usize = 32;

/// How long the exchange of GitHub's code may take.
const CONVERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// The setup of this process: made once by `serve` (in dry-run, on SQLite) and kept across the
/// restart out of dry-run.
pub struct Setup {
    code: Secret,
    /// (state, expires at Unix ms).
    pending: Mutex<Vec<(String, i64)>>,
    /// One callback at a time: a second one waits, then finds the setup done.
    one_at_a_time: tokio::sync::Mutex<()>,
    done: AtomicBool,
    /// Asks `serve` to read the configuration again and start out of dry-run.
    reload: Arc<Notify>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup").field("done", &self.done()).finish_non_exhaustive()
    }
}

/// 16 random bytes from the operating system, as 32 hex digits.
fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness from the operating system: {e}"))?;
    Ok(hex::encode(bytes))
}

impl Setup {
    /// A setup with a new one-time code; `reload` is notified once credentials are written.
    pub fn new(reload: Arc<Notify>) -> Result<Setup, String> {
        Ok(Setup {
            code: Secret::new(random_hex()?),
            pending: Mutex::new(Vec::new()),
            one_at_a_time: tokio::sync::Mutex::new(()),
            done: AtomicBool::new(false),
            reload,
        })
    }

    /// The setup code (printed once, on stderr, by `serve`).
    pub fn code(&self) -> &str {
        self.code.expose()
    }

    /// True once credentials were written: nothing is served any more.
    pub fn done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    fn mint_state(&self, now_ms: i64, ttl: Duration) -> Result<String, String> {
        let state = random_hex()?;
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.retain(|(_, exp)| *exp > now_ms);
        if p.len() >= MAX_PENDING {
            p.remove(0);
        }
        p.push((state.clone(), now_ms + ttl.as_millis() as i64));
        Ok(state)
    }

    fn state_pending(&self, state: &str, now_ms: i64) -> bool {
        let p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        // Every entry is compared, in constant time each.
        p.iter().fold(false, |found, (s, exp)| found | (constant_time_eq(s, state) && *exp > now_ms))
    }
}

/// What the pages need of this start's configuration.
pub struct SetupPages {
    pub setup: Arc<Setup>,
    /// `SHIPGATE_PUBLIC_URL` (the manifest's hook and redirect URLs come from it).
    pub public_url: Option<String>,
    /// GitHub's web address (the registration pages).
    pub web_url: String,
    /// `GITHUB_API_URL` (the conversion).
    pub api_url: String,
    pub state_ttl: Duration,
    /// Where the credentials go.
    pub credentials_path: PathBuf,
    /// No `SHIPGATE_AUDIT_KEY` is set: one is made and written with the credentials.
    pub make_audit_key: bool,
    /// Neither `SHIPGATE_SIGNING_KEY` nor `SHIPGATE_SIGNING_KEY_PATH` is set: one is made.
    pub make_signing_key: bool,
    /// Why this start cannot register the App (the page says it instead of offering the forms):
    /// a webhook secret the environment sets (it would win over GitHub's), or a public address in
    /// plain `http://` to a host other than this machine (the code, the state and GitHub's code
    /// would cross the network in the clear).
    pub blocked: Option<String>,
}

impl SetupPages {
    /// The pages for this start, if it serves them: a setup was made (by `serve`), the App is in
    /// dry-run, and its database is a SQLite file (PostgreSQL replicas keep their secrets in a
    /// secret manager, which the App cannot write).
    pub fn for_start(setup: Option<Arc<Setup>>, cfg: &Config) -> Option<SetupPages> {
        let setup = setup?;
        let credentials_path = crate::credentials::path_for(&cfg.database_url)?;
        if !cfg.dry_run() || setup.done() {
            return None;
        }
        Some(SetupPages {
            setup,
            public_url: cfg.public_url.clone(),
            web_url: cfg.github_web_url(),
            api_url: cfg.github_api_url.clone(),
            state_ttl: cfg.setup_state_ttl,
            credentials_path,
            make_audit_key: cfg.audit_keys.current.is_none(),
            make_signing_key: cfg.signing_key.is_none(),
            blocked: blocked(cfg),
        })
    }

    /// The path under which the App's pages are served: the public address's, if it has one
    /// (`https://ops.example.com/shipgate` → `/shipgate`).
    fn base_path(&self) -> String {
        let path = self.public_url.as_deref().and_then(|u| url::Url::parse(u).ok()).map(|u| u.path().to_string());
        path.unwrap_or_default().trim_end_matches('/').to_string()
    }

    fn served(&self) -> bool {
        !self.setup.done() && !self.credentials_path.exists()
    }

    /// `scheme://host[:port]` of GitHub's web address: where the forms may post (CSP).
    fn web_origin(&self) -> String {
        url::Url::parse(&self.web_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| self.web_url.trim_end_matches('/').to_string())
    }

    fn cookie(&self, state: &str, max_age: u64) -> Option<HeaderValue> {
        let secure =
            if self.public_url.as_deref().is_some_and(|u| u.starts_with("https://")) { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{STATE_COOKIE}={state}; HttpOnly; SameSite=Lax; Path={}/setup; Max-Age={max_age}{secure}",
            self.base_path()
        ))
        .ok()
    }
}

/// Why this start cannot register the App, if it cannot (see [`SetupPages::blocked`]).
pub fn blocked(cfg: &Config) -> Option<String> {
    if !cfg.webhook_secret_defaulted {
        return Some(
            "GITHUB_WEBHOOK_SECRET is set in the App's environment. GitHub makes the webhook secret of an App \
             registered here, and a secret set in the environment would win over it: every webhook GitHub sends \
             would then be refused. Unset GITHUB_WEBHOOK_SECRET, start the App again, and open the address it \
             prints then."
                .into(),
        );
    }
    if let Some(u) = cfg.public_url.as_deref()
        && let Ok(parsed) = url::Url::parse(u)
        && parsed.scheme() == "http"
    {
        let loopback = match parsed.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if !loopback {
            return Some(format!(
                "SHIPGATE_PUBLIC_URL is {u}: plain http to another machine. The setup code, the registration's \
                 state and the code GitHub sends back would cross the network unencrypted, and whoever reads \
                 them can register an App of their own here or take this one's private key. Serve the App over \
                 https (a TLS-terminating proxy), set SHIPGATE_PUBLIC_URL to its https:// address, and start \
                 again."
            ));
        }
    }
    None
}

/// GitHub answered with credentials the App cannot use: nothing is written.
fn unusable(slug: &str, why: &str) -> Response {
    page(
        StatusCode::BAD_GATEWAY,
        "Registration not usable",
        html! {
            h1 { "GitHub's answer cannot be used" }
            p { "GitHub created an App, but " (why) ". Nothing was stored and the App stays in dry-run." }
            p { "Delete that App on GitHub (Settings → Developer settings → GitHub Apps"
                @if !slug.is_empty() { ", " code { (slug.chars().take(100).collect::<String>()) } }
                "), then start again from the address the App printed at start-up." }
        },
    )
}

/// The 404 of a setup that is not offered here: nothing said about why beyond this.
fn not_served() -> Response {
    pages::not_found(
        "Registering this App is not offered here: it already has its GitHub credentials, or it keeps its data \
         in PostgreSQL (see README.md, \"Registering the App in one click\").",
    )
}

/// The 404 for a missing or wrong setup code: no hint beyond where the right one is.
fn wrong_code() -> Response {
    pages::not_found("To register this App on GitHub, open the address it printed at start-up.")
}

fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    pages::respond(status, title, body, None)
}

#[derive(Deserialize)]
pub struct PageQuery {
    code: Option<String>,
    org: Option<String>,
}

/// A GitHub account name: 1–39 letters, digits or single hyphens, not at either end.
pub fn valid_login(s: &str) -> bool {
    (1..=39).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// `GET /setup?code=…[&org=NAME]`.
pub async fn setup_page(State(st): State<Arc<AppState>>, q: Result<Query<PageQuery>, QueryRejection>) -> Response {
    let Some(sp) = st.setup.as_ref().filter(|sp| sp.served()) else { return not_served() };
    let Ok(Query(q)) = q else { return wrong_code() };
    if !q.code.as_deref().is_some_and(|c| constant_time_eq(c, sp.setup.code())) {
        tracing::warn!("/setup asked for without the right setup code: answered 404");
        return wrong_code();
    }
    let Some(public) = &sp.public_url else {
        return page(
            StatusCode::OK,
            "Set SHIPGATE_PUBLIC_URL",
            html! {
                h1 { "Set SHIPGATE_PUBLIC_URL first" }
                p { "GitHub needs an address it can reach this App at: it sends the App's webhooks there, and sends "
                    "you back there once the App is registered. Set " code { "SHIPGATE_PUBLIC_URL" }
                    " to that address (for example " code { "https://shipgate.example.com" } "), start the App "
                    "again, and open the address it prints then." }
            },
        );
    };
    if let Some(why) = &sp.blocked {
        return page(
            StatusCode::CONFLICT,
            "Cannot register from here",
            html! { h1 { "This App cannot be registered from this start" } p { (why) } },
        );
    }
    let manifest = match Manifest::for_public_url(public) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "the compiled-in app-manifest.yml does not read");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Manifest error",
                html! { h1 { "The manifest does not read" } p { (e) } },
            );
        }
    };
    let org = q.org.as_deref().map(str::trim).filter(|o| !o.is_empty());
    let bad_org = org.filter(|o| !valid_login(o));
    let state = match sp.setup.mint_state(st.clock.now_ms(), sp.state_ttl) {
        Ok(s) => s,
        Err(e) => return page(StatusCode::INTERNAL_SERVER_ERROR, "Error", html! { h1 { "Cannot start" } p { (e) } }),
    };
    let web = sp.web_url.trim_end_matches('/');
    let json = manifest.to_json();
    let register = |action: String, label: String| {
        html! {
            form method="post" action=(action) {
                input type="hidden" name="manifest" value=(json);
                button type="submit" { (label) }
            }
        }
    };
    let body = html! {
        h1 { "Register shipgate on GitHub" }
        p { "This App has no GitHub credentials yet, so it runs in dry-run: it reads nothing from GitHub and "
            "writes nothing there. Registering creates its GitHub App from the manifest it was built with "
            "(" code { "app-manifest.yml" } "), for your account or an organisation:" }
        ol {
            li { "GitHub shows the App it is about to create and asks you to confirm (you may change its name there: "
                 "an App's name must be unique on GitHub)." }
            li { "GitHub sends you back here. The App takes its id, private key and webhook secret from GitHub and "
                 "keeps them in " code { (display_path(&sp.credentials_path)) } " (readable by the App's user only)"
                 @if sp.make_audit_key || sp.make_signing_key {
                     ", with the "
                     @if sp.make_audit_key { "audit log key" }
                     @if sp.make_audit_key && sp.make_signing_key { " and the " }
                     @if sp.make_signing_key { "anchor signing key" }
                     " it makes now, since none is set"
                 }
                 "." }
            li { "The App leaves dry-run at once, without a restart, and links you to the page where you install "
                 "it on your repositories." }
        }
        p { "GitHub will send webhooks to " code { (manifest.hook_attributes.url) } ": GitHub must be able to reach it." }
        h2 { "What the App asks for" }
        table {
            thead { tr { th { "Permission" } th { "Access" } } }
            tbody {
                @for (perm, access) in &manifest.default_permissions {
                    tr { td { code { (perm) } } td { (access) } }
                }
            }
        }
        p { "Events: "
            @for (i, e) in manifest.default_events.iter().enumerate() {
                @if i > 0 { ", " }
                code { (e) }
            }
            "." }
        h2 { "Register" }
        (register(format!("{web}/settings/apps/new?state={state}"), "Register for my account".into()))
        h2 { "For an organisation" }
        p { "You must be an owner of the organisation, or one of its GitHub App managers." }
        @if let Some(o) = bad_org {
            p.fail { (o) " is not an organisation name on GitHub (letters, digits and single hyphens, at most 39)." }
        }
        @if let Some(o) = org.filter(|o| valid_login(o)) {
            (register(format!("{web}/organizations/{o}/settings/apps/new?state={state}"), format!("Register for {o}")))
        }
        form method="get" action=(format!("{}/setup", sp.base_path())) {
            input type="hidden" name="code" value=(sp.setup.code());
            label { "Organisation " input type="text" name="org" value=[org] autocomplete="off" spellcheck="false"; }
            " "
            button type="submit" { "Continue" }
        }
        p.muted { "This page is offered once: when the App has its credentials, it is no longer served. Finish "
                  "within " (sp.state_ttl.as_secs() / 60) " minutes, in this browser." }
    };
    let status = if bad_org.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let form_action = format!("'self' {}", sp.web_origin());
    let mut r = pages::respond(status, "Register shipgate", body, Some(&form_action));
    if let Some(c) = sp.cookie(&state, sp.state_ttl.as_secs()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// The path as the operator will look for it: absolute when it can be made so.
fn display_path(p: &std::path::Path) -> String {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

/// The value of cookie `name` in the request, if sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

fn refused() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Registration not accepted",
        html! {
            h1 { "This registration cannot be finished here" }
            p { "The address GitHub sent you back with does not belong to a registration started in this browser, "
                "or it has expired. Nothing was changed. Open the address the App printed at start-up and start again." }
        },
    )
}

/// `GET /setup/callback?code=…&state=…`: GitHub's redirect after the App was created.
pub async fn callback(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<CallbackQuery>, QueryRejection>,
) -> Response {
    let Some(sp) = st.setup.as_ref().filter(|sp| sp.served()) else { return not_served() };
    let Ok(Query(q)) = q else { return refused() };
    let (Some(state), Some(sent)) = (q.state.as_deref(), cookie(&headers, STATE_COOKIE)) else { return refused() };
    if !constant_time_eq(state, sent) || !sp.setup.state_pending(state, st.clock.now_ms()) {
        return refused();
    }
    let code = q.code.as_deref().unwrap_or("");
    if code.is_empty() || code.len() > 200 || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return page(
            StatusCode::BAD_REQUEST,
            "No code from GitHub",
            html! { h1 { "GitHub sent no usable code" } p { "Start again from the address the App printed at start-up." } },
        );
    }
    // One registration at a time; the second finds the first done.
    let _one = sp.setup.one_at_a_time.lock().await;
    if !sp.served() {
        return not_served();
    }
    let app = match manifest::convert(&sp.api_url, code, CONVERSION_TIMEOUT).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "/setup: GitHub did not turn the manifest code into an App");
            return page(
                StatusCode::BAD_GATEWAY,
                "GitHub did not finish",
                html! {
                    h1 { "GitHub did not finish the registration" }
                    p { (e.to_string()) }
                    p { "GitHub's code is valid for one hour and only once. If the App was created on GitHub, delete it "
                        "there (Settings → Developer settings → GitHub Apps), then start again from the address the App "
                        "printed at start-up." }
                },
            );
        }
    };
    let Some(webhook_secret) = app.webhook_secret.clone() else {
        return page(
            StatusCode::BAD_GATEWAY,
            "No webhook secret",
            html! { h1 { "GitHub gave the App no webhook secret" } p { "The App cannot verify webhooks without one. Delete the App on GitHub and start again." } },
        );
    };
    let keys = (|| -> Result<_, String> {
        let audit = sp.make_audit_key.then(crate::credentials::new_audit_key).transpose()?;
        let signing = sp.make_signing_key.then(crate::credentials::new_signing_key_pem).transpose()?;
        Ok((audit, signing))
    })();
    // A dry run without an audit key chained its entries without one: a start with the new key
    // refuses to until an operator seals them (`shipgate audit seal`), so the App cannot switch now.
    let unkeyed = if sp.make_audit_key {
        crate::store::audit::chain_keys(&st.db).await.map(|c| c.iter().any(|(_, k)| k.is_none())).unwrap_or(false)
    } else {
        false
    };
    // What GitHub gave must work before it is written: a key that loads (and the rest is checked
    // by `render`), else every later start would fail on the file.
    let loads = crate::github::auth::AppAuth::from_credentials(&crate::config::GithubCredentials {
        app_id: app.id.to_string(),
        private_key: crate::config::PrivateKeySource::Pem(app.pem.clone()),
    });
    if let Err(e) = loads {
        tracing::warn!(error = %e, "/setup: GitHub's answer holds a private key the App cannot use; nothing written");
        return unusable(&app.slug, "its private key does not load");
    }
    let registered = crate::credentials::Registered {
        app_id: app.id,
        slug: app.slug.clone(),
        owner: app.owner.clone(),
        private_key_pem: app.pem.clone(),
        webhook_secret,
    };
    let written_at = crate::store::audit::rfc3339(st.clock.now_ms());
    let text = keys.and_then(|(audit, signing)| {
        crate::credentials::render(&registered, audit.as_ref(), signing.as_ref(), &written_at)
    });
    let path = &sp.credentials_path;
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "/setup: GitHub's answer cannot be used; nothing written");
            return unusable(&app.slug, &e);
        }
    };
    if let Err(e) = crate::credentials::write_new(path, &text).map_err(|e| e.to_string()) {
        tracing::error!(error = %e, file = %path.display(), "/setup: cannot write the credentials file");
        return page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Credentials not stored",
            html! {
                h1 { "The App could not store its credentials" }
                p { "Writing " code { (display_path(path)) } " failed: " (e) }
                p { "The App " (app.slug) " exists on GitHub now: delete it there, fix the cause, and start again." }
            },
        );
    }
    sp.setup.done.store(true, Ordering::SeqCst);
    sp.setup.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    tracing::info!(app_id = app.id, slug = ?app.slug, owner = ?app.owner, file = %path.display(),
        "/setup: App registered on GitHub; credentials written");
    let web = sp.web_url.trim_end_matches('/');
    // GitHub's own address for the App, if it is on GitHub's web address; else made from the slug.
    let app_url = if app.html_url.starts_with(&format!("{web}/")) && !app.html_url.contains(['"', '<', '>', ' ']) {
        app.html_url.trim_end_matches('/').to_string()
    } else {
        format!("{web}/apps/{}", percent_encoding::utf8_percent_encode(&app.slug, percent_encoding::NON_ALPHANUMERIC))
    };
    let body = html! {
        h1 { "Registered " (app.slug) " for " (app.owner) }
        p { a href=(format!("{app_url}/installations/new")) { "Install it on your repositories" }
            " — choose the repositories it should guard." }
        p { "Its id, private key and webhook secret"
            @if sp.make_audit_key || sp.make_signing_key { ", and the keys the App made," }
            " are in " code { (display_path(path)) } " (mode 0600). Keep that file like the private key it holds; "
            "to run several replicas on PostgreSQL, move its variables into your secret manager (README.md, "
            "\"Registering the App in one click\")." }
        @if unkeyed {
            p.fail { "The App stays in dry-run for now: its audit log has entries written without a key. Stop it, run "
                     code { "shipgate audit seal" } " (it reads the new key from that file), and start it again." }
        } @else {
            p { "The App is leaving dry-run now: it reads the file and starts again with these credentials." }
        }
    };
    let mut r = page(StatusCode::OK, "App registered", body);
    if let Some(c) = sp.cookie("", 0) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    if !unkeyed {
        sp.setup.reload.notify_one();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_githubs() {
        for ok in ["acme", "a", "acme-corp", "A1-b2", &"x".repeat(39)] {
            assert!(valid_login(ok), "{ok}");
        }
        for bad in ["", "-acme", "acme-", "ac--me", "ac me", "acme/x", "<script>", &"x".repeat(40), "ümlaut"] {
            assert!(!valid_login(bad), "{bad}");
        }
    }

    #[test]
    fn states_expire_and_are_bounded() {
        let s = Setup::new(Arc::new(Notify::new())).expect("setup");
        assert_eq!(s.code().len(), 32);
        let ttl = Duration::from_secs(60);
        let first = s.mint_state(1_000, ttl).expect("state");
        assert!(s.state_pending(&first, 1_000));
        assert!(!s.state_pending(&first, 61_000), "expired");
        assert!(!s.state_pending("forged", 1_000));
        for _ in 0..MAX_PENDING {
            s.mint_state(2_000, ttl).expect("state");
        }
        assert!(!s.state_pending(&first, 2_000), "the oldest is forgotten");
        assert!(s.pending.lock().expect("lock").len() <= MAX_PENDING);
    }

    /// Review 18b: behind a path (`SHIPGATE_PUBLIC_URL=https://ops.example.com/shipgate`, which
    /// the manifest supports), the cookie's `Path=/setup` is never sent to
    /// `/shipgate/setup/callback`, so every registration ends in 403 after the App was created on
    /// GitHub (and the organisation form's `action="/setup"` leaves the prefix).
    #[test]
    fn review18b_the_state_cookie_follows_a_public_url_with_a_path() {
        let sp = SetupPages {
            setup: Arc::new(Setup::new(Arc::new(Notify::new())).expect("setup")),
            public_url: Some("https://ops.example.com/shipgate".into()),
            web_url: "https://github.com".into(),
            api_url: "https://api.github.com".into(),
            state_ttl: Duration::from_secs(60),
            credentials_path: "x.credentials.env".into(),
            make_audit_key: false,
            make_signing_key: false,
            blocked: None,
        };
        let c = sp.cookie("abc", 60).expect("cookie");
        let c = c.to_str().expect("ascii");
        assert!(c.split("; ").any(|a| a == "Path=/shipgate/setup"), "{c}");
    }

    #[test]
    fn the_state_cookie_is_read_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; shipgate_setup_state=abc"));
        assert_eq!(cookie(&h, STATE_COOKIE), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("shipgate_setup_state_x=1"));
        assert_eq!(cookie(&h, STATE_COOKIE), None);
    }
}
