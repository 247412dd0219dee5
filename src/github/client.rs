//! The one place that speaks HTTP to GitHub (octocrab's client underneath, its retries off).
//!
//! * Auth: the App's JWT for `/app/...`, a cached installation token for everything else.
//! * Transient failures (5xx, connection errors) of idempotent calls are retried with backoff; a
//!   POST is never re-sent blindly (its caller re-checks by marker or `external_id` and retries).
//! * Rate limits as GitHub documents them: `retry-after`; `x-ratelimit-remaining: 0` waits for
//!   `x-ratelimit-reset`; a secondary-limit 403/429 without headers waits at least a minute,
//!   growing. While one call waits, the installation's other calls wait too.
//! * Mutating calls of one installation go one at a time, `mutation_spacing` apart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime};
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument;

use super::auth::{AppAuth, AuthError, InstallationToken, TOKEN_RENEW_MARGIN_MS, TokenCache};
use crate::clock::Clock;
use crate::config::Secret;

#[derive(Clone, Debug)]
pub struct GithubConfig {
    pub api_url: String,
    pub timeout: Duration,
    /// Retries of a transient failure of an idempotent call.
    pub max_retries: u32,
    pub retry_base: Duration,
    /// Pause between mutating calls of one installation (GitHub: at least a second).
    pub mutation_spacing: Duration,
    /// The least wait after a secondary rate limit without `retry-after` (GitHub: a minute).
    pub secondary_min_wait: Duration,
    /// A rate-limit wait longer than this is not waited for inline: the call fails with
    /// `RateLimited` and its caller reschedules it.
    pub max_inline_wait: Duration,
}

impl GithubConfig {
    pub fn new(api_url: &str) -> GithubConfig {
        GithubConfig {
            api_url: api_url.trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(30),
            max_retries: 4,
            retry_base: Duration::from_millis(500),
            mutation_spacing: Duration::from_secs(1),
            secondary_min_wait: Duration::from_secs(60),
            max_inline_wait: Duration::from_secs(120),
        }
    }
}

/// Whose credentials a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Auth {
    /// The App's JWT (`/app/...` endpoints).
    App,
    Installation(i64),
}

impl Auth {
    fn key(self) -> i64 {
        match self {
            Auth::App => 0,
            Auth::Installation(id) => id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GhError {
    #[error("GitHub answered {status} to {method} {route}: {message}")]
    Status { status: u16, method: String, route: String, message: String },
    #[error("cannot reach GitHub ({method} {route}): {message}")]
    Transport { method: String, route: String, message: String },
    #[error("rate limited by GitHub until {until_ms} (Unix ms)")]
    RateLimited { until_ms: i64 },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("unexpected answer from GitHub to {route}: {message}")]
    Decode { route: String, message: String },
    #[error("dry-run: no GitHub App credentials, nothing is sent")]
    DryRun,
}

impl GhError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GhError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A GitHub answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub route: String,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T, GhError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| GhError::Decode { route: self.route.clone(), message: e.to_string() })
    }

    /// The `rel="next"` URL of the `Link` header.
    pub fn next_link(&self) -> Option<String> {
        let link = self.headers.get("link")?.to_str().ok()?;
        link.split(',').find_map(|part| {
            let (url, rel) = part.split_once(';')?;
            rel.contains("rel=\"next\"").then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_string())
        })
    }

    fn message(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).chars().take(200).collect())
    }

    /// Turns a non-2xx answer into an error.
    pub fn ok(self, method: &Method) -> Result<Response, GhError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(GhError::Status {
                status: self.status,
                method: method.to_string(),
                message: self.message(),
                route: self.route,
            })
        }
    }
}

type Slot = Arc<MutationSlot>;

/// One installation's turn to mutate: one call at a time, `mutation_spacing` apart, and the
/// gate's calls first. A call that lets a deployment through or holds it (a check run, a
/// protection rule's answer) takes the next turn ahead of comments, labels and reactions queued
/// before it: under GitHub's second between mutations, a gate behind an approval's four other
/// mutations took ~4 s to turn green.
#[derive(Default)]
pub(crate) struct MutationSlot {
    state: Mutex<SlotState>,
    turn: tokio::sync::Notify,
}

#[derive(Default)]
struct SlotState {
    held: bool,
    /// When the last call finished.
    last: Option<tokio::time::Instant>,
    /// Calls waiting for a turn, gate calls and others: others wait while gate calls do.
    waiting: [usize; 2],
    /// Gate calls in a row while others waited: after [`GATE_STREAK`] one other goes, so a
    /// steady stream of check runs never starves comments and labels.
    streak: usize,
}

/// Gate calls that may go in a row ahead of waiting others.
const GATE_STREAK: usize = 3;

/// A turn in the slot; gives it back (and records when) on drop, also when the call is
/// cancelled.
pub(crate) struct Turn(Slot);

impl MutationSlot {
    /// Waits for this call's turn: the slot free, `spacing` past the last call, and (for a call
    /// that is not the gate's) no gate call waiting. Who goes is decided when the spacing is
    /// over, so a gate call that arrives meanwhile goes first.
    async fn take(self: &Arc<Self>, urgent: bool, spacing: Duration) {
        /// This call counted as waiting; uncounted if it is dropped before its turn (a time-out,
        /// a shutdown), so that the others never wait for it.
        struct Waiting<'a>(&'a MutationSlot, usize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.state.lock().unwrap_or_else(|p| p.into_inner()).waiting[self.1] -= 1;
                self.0.turn.notify_waiters();
            }
        }
        let lane = usize::from(urgent);
        self.state.lock().unwrap_or_else(|p| p.into_inner()).waiting[lane] += 1;
        let _waiting = Waiting(self, lane);
        loop {
            let notified = self.turn.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait_until = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let others_due = s.waiting[0] > 0 && s.streak >= GATE_STREAK;
                let my_turn = if urgent { !others_due } else { s.waiting[1] == 0 || others_due };
                let ready_at = s.last.map(|l| l + spacing);
                match ready_at {
                    _ if s.held || !my_turn => None,
                    Some(at) if at > tokio::time::Instant::now() => Some(at),
                    _ => {
                        s.held = true;
                        s.streak = if urgent && s.waiting[0] > 0 { s.streak + 1 } else { 0 };
                        return;
                    }
                }
            };
            match wait_until {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    fn give_back(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.held = false;
        s.last = Some(tokio::time::Instant::now());
        drop(s);
        self.turn.notify_waiters();
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

/// Whether a mutating call is the gate's own: a check run, or an answer to a deployment
/// protection rule. Read from the route's segments, not a substring: a repository named
/// `check-runs` must not make all its calls the gate's.
fn gate_call(path: &str) -> bool {
    let segments: Vec<&str> = path.split('?').next().unwrap_or(path).trim_start_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["repos", _, _, "check-runs", ..] | ["repos", _, _, "actions", "runs", _, "deployment_protection_rule"]
    )
}

pub struct GitHub {
    octo: Octocrab,
    cfg: GithubConfig,
    app: Option<AppAuth>,
    tokens: TokenCache,
    /// The App's numeric id, once read (see `own_app_id`).
    own_id: tokio::sync::OnceCell<i64>,
    clock: Clock,
    /// The last mutating call per installation.
    mutations: Mutex<HashMap<i64, Slot>>,
    /// Rate-limited until (Unix ms) per installation (0: the App itself).
    blocked_until: Mutex<HashMap<i64, i64>>,
}

impl GitHub {
    /// The App's numeric id, when it has credentials and the id is a number (a client id is not).
    pub fn app_id(&self) -> Option<i64> {
        self.app.as_ref().and_then(|a| a.app_id().parse().ok())
    }

    /// The App's numeric id: the configured one, or, for an App configured by its client id,
    /// what `GET /app` says (read once; a failure is not remembered). None in dry-run. It tells
    /// the App's own comments, issues and deployments from anyone else's.
    pub async fn own_app_id(&self) -> Option<i64> {
        if let Some(id) = self.app_id() {
            return Some(id);
        }
        self.app.as_ref()?;
        self.own_id
            .get_or_try_init(|| async {
                let r = self.request(Auth::App, Method::GET, "/app", None).await?.ok(&Method::GET)?;
                r.json::<Value>()?["id"].as_i64().ok_or_else(|| GhError::Decode {
                    route: "/app".into(),
                    message: "the App's answer has no id".into(),
                })
            })
            .await
            .ok()
            .copied()
    }

    /// `app` None: dry-run; every call fails with `DryRun`.
    pub fn new(cfg: GithubConfig, app: Option<AppAuth>, clock: Clock) -> Result<GitHub, GhError> {
        let octo = Octocrab::builder()
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(cfg.timeout))
            .set_write_timeout(Some(cfg.timeout))
            .build()
            .map_err(|e| GhError::Transport { method: "-".into(), route: "-".into(), message: e.to_string() })?;
        Ok(GitHub {
            octo,
            cfg,
            app,
            tokens: TokenCache::default(),
            own_id: tokio::sync::OnceCell::new(),
            clock,
            mutations: Mutex::default(),
            blocked_until: Mutex::default(),
        })
    }

    pub fn dry_run(&self) -> bool {
        self.app.is_none()
    }

    pub fn config(&self) -> &GithubConfig {
        &self.cfg
    }

    /// GET, following `Link: rel="next"` for every page; returns each page's items (a JSON array,
    /// or the array under `items_key` for answers like `{"total_count":…, "check_runs": […]}`).
    pub async fn get_all(&self, auth: Auth, path: &str, items_key: Option<&str>) -> Result<Vec<Value>, GhError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut next =
            Some(if path.contains("per_page=") { path.to_string() } else { format!("{path}{sep}per_page=100") });
        let mut out = Vec::new();
        let mut pages = 0;
        while let Some(p) = next.take() {
            let r = self.request(auth, Method::GET, &p, None).await?.ok(&Method::GET)?;
            let v: Value = r.json()?;
            let items = match items_key {
                Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
                None => v,
            };
            match items {
                Value::Array(a) => out.extend(a),
                other => {
                    return Err(GhError::Decode {
                        route: r.route.clone(),
                        message: format!("expected a list, got {other}"),
                    });
                }
            }
            pages += 1;
            next = r.next_link().map(|u| self.relative(&u)).filter(|_| pages < 100);
        }
        Ok(out)
    }

    /// A full URL of the API turned back into a path (for `Link` headers).
    fn relative(&self, url: &str) -> String {
        url.strip_prefix(&self.cfg.api_url).unwrap_or(url).to_string()
    }

    /// Sends one call. Answers of any status come back as `Ok` except where retrying is the
    /// client's job (rate limits, transient failures of idempotent calls); callers decide what a
    /// 404 or 422 means.
    pub async fn request(
        &self,
        auth: Auth,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, GhError> {
        self.request_with(auth, method, path, body, None).await
    }

    /// A GET that GitHub answers `304 Not Modified` (costing no rate limit) when the resource
    /// still has entity tag `etag`.
    pub async fn get_if_changed(&self, auth: Auth, path: &str, etag: Option<&str>) -> Result<Response, GhError> {
        self.request_with(auth, Method::GET, path, None, etag).await
    }

    async fn request_with(
        &self,
        auth: Auth,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_none_match: Option<&str>,
    ) -> Result<Response, GhError> {
        if self.app.is_none() {
            return Err(GhError::DryRun);
        }
        let mutating = !matches!(method, Method::GET | Method::HEAD);
        // One mutating call at a time per installation, spaced out.
        let slot = match (mutating, auth) {
            (true, Auth::Installation(id)) => Some(self.mutation_slot(id)),
            _ => None,
        };
        let turn = match slot {
            Some(s) => {
                s.take(gate_call(path), self.cfg.mutation_spacing).await;
                Some(Turn(s))
            }
            None => None,
        };
        let result = self.send_with_retries(auth, &method, path, body, if_none_match).await;
        drop(turn);
        result
    }

    fn mutation_slot(&self, installation: i64) -> Slot {
        self.mutations.lock().unwrap_or_else(|p| p.into_inner()).entry(installation).or_default().clone()
    }

    async fn send_with_retries(
        &self,
        auth: Auth,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        if_none_match: Option<&str>,
    ) -> Result<Response, GhError> {
        let route = route_label(path);
        let idempotent = !matches!(*method, Method::POST);
        let mut transient_tries = 0u32;
        let mut limit_tries = 0u32;
        let mut reauthed = false;
        loop {
            self.wait_if_blocked(auth).await?;
            let token = self.credentials(auth).await?;
            let sent = self.send_once(method, path, body, &token, &route, if_none_match).await;
            let r = match sent {
                Ok(r) => r,
                Err(e) => {
                    metrics::counter!("shipgate_github_calls_total", "route" => route.clone(), "method" => method.to_string(), "status" => "error").increment(1);
                    if idempotent && transient_tries < self.cfg.max_retries {
                        transient_tries += 1;
                        self.backoff(transient_tries).await;
                        continue;
                    }
                    return Err(e);
                }
            };
            metrics::counter!("shipgate_github_calls_total", "route" => route.clone(), "method" => method.to_string(), "status" => r.status.to_string()).increment(1);
            self.note_rate_limit(auth, &r.headers);

            if r.status == 401 && !reauthed {
                if let Auth::Installation(id) = auth {
                    self.tokens.invalidate(id).await;
                }
                reauthed = true;
                continue;
            }
            if let Some(wait_ms) = self.rate_limit_wait(&r, limit_tries) {
                limit_tries += 1;
                let until = self.clock.now_ms() + wait_ms;
                self.block(auth, until);
                tracing::warn!(route = %r.route, status = r.status, wait_ms, "GitHub rate limit; waiting");
                if wait_ms > self.cfg.max_inline_wait.as_millis() as i64 || limit_tries > 5 {
                    return Err(GhError::RateLimited { until_ms: until });
                }
                continue;
            }
            if r.status >= 500 && idempotent && transient_tries < self.cfg.max_retries {
                transient_tries += 1;
                tracing::warn!(route = %r.route, status = r.status, try_ = transient_tries, "GitHub error; retrying");
                self.backoff(transient_tries).await;
                continue;
            }
            if r.status >= 500 {
                return r.ok(method);
            }
            return Ok(r);
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        token: &Secret,
        route: &str,
        if_none_match: Option<&str>,
    ) -> Result<Response, GhError> {
        let transport =
            |message: String| GhError::Transport { method: method.to_string(), route: route.to_string(), message };
        let mut auth = http::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| transport("the token is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let builder = http::Request::builder()
            .method(method.clone())
            .uri(format!("{}{}", self.cfg.api_url, path))
            .header(http::header::AUTHORIZATION, auth)
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header(http::header::USER_AGENT, concat!("shipgate/", env!("CARGO_PKG_VERSION")))
            .header("x-github-api-version", "2022-11-28");
        let builder = match if_none_match.and_then(|e| http::HeaderValue::from_str(e).ok()) {
            Some(etag) => builder.header(http::header::IF_NONE_MATCH, etag),
            None => builder,
        };
        let req = self.octo.build_request(builder, body).map_err(|e| transport(e.to_string()))?;
        let fut = async {
            let resp = self.octo.execute(req).await.map_err(|e| transport(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await.map_err(|e| transport(e.to_string()))?.to_bytes();
            Ok::<_, GhError>(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: bytes,
                route: route.to_string(),
            })
        };
        let span = call_span(method, &self.cfg.api_url, path, route);
        let result = tokio::time::timeout(self.cfg.timeout, fut)
            .instrument(span.clone())
            .await
            .map_err(|_| transport("timed out".into()))
            .and_then(|r| r);
        record_call(&span, &result);
        result
    }

    async fn backoff(&self, attempt: u32) {
        tokio::time::sleep(retry_delay(self.cfg.retry_base, attempt)).await;
    }

    /// How long to wait before trying again, if this answer is a rate limit.
    fn rate_limit_wait(&self, r: &Response, earlier: u32) -> Option<i64> {
        if r.status != 403 && r.status != 429 {
            return None;
        }
        let header = |k: &str| r.headers.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
        if let Some(secs) = header("retry-after").and_then(|v| v.parse::<i64>().ok()) {
            return Some(secs.max(0) * 1000);
        }
        if header("x-ratelimit-remaining") == Some("0")
            && let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok())
        {
            return Some((reset * 1000 - self.clock.now_ms()).max(0) + 1000);
        }
        let secondary = r.status == 429 || r.message().to_ascii_lowercase().contains("rate limit");
        secondary.then(|| (self.cfg.secondary_min_wait.as_millis() as i64).saturating_mul(1 << earlier.min(6)))
    }

    fn block(&self, auth: Auth, until: i64) {
        let mut b = self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
        let e = b.entry(auth.key()).or_insert(0);
        *e = (*e).max(until);
    }

    async fn wait_if_blocked(&self, auth: Auth) -> Result<(), GhError> {
        let until = self.blocked_until.lock().unwrap_or_else(|p| p.into_inner()).get(&auth.key()).copied();
        if let Some(until) = until {
            let wait = until - self.clock.now_ms();
            if wait > self.cfg.max_inline_wait.as_millis() as i64 {
                return Err(GhError::RateLimited { until_ms: until });
            }
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
        }
        Ok(())
    }

    fn note_rate_limit(&self, auth: Auth, headers: &HeaderMap) {
        if let Some(left) =
            headers.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<f64>().ok())
        {
            let who = match auth {
                Auth::App => "app".to_string(),
                Auth::Installation(id) => id.to_string(),
            };
            metrics::gauge!("shipgate_github_rate_limit_remaining", "installation" => who).set(left);
        }
    }

    async fn credentials(&self, auth: Auth) -> Result<Secret, GhError> {
        let app = self.app.as_ref().ok_or(GhError::DryRun)?;
        match auth {
            Auth::App => Ok(Secret::new(app.jwt(self.clock.now_ms())?)),
            Auth::Installation(id) => self.installation_token(app, id).await,
        }
    }

    /// A cached installation token, renewed when less than ten minutes are left.
    async fn installation_token(&self, app: &AppAuth, id: i64) -> Result<Secret, GhError> {
        let slot = self.tokens.slot(id);
        let mut cached = slot.lock().await;
        let now = self.clock.now_ms();
        if let Some(t) = cached.as_ref()
            && t.expires_at - TOKEN_RENEW_MARGIN_MS > now
        {
            return Ok(t.token.clone());
        }
        let jwt = Secret::new(app.jwt(now)?);
        let path = format!("/app/installations/{id}/access_tokens");
        let method = Method::POST;
        let (mut tries, mut limit_tries) = (0, 0);
        let r = loop {
            match self.send_once(&method, &path, None, &jwt, "/app/installations/{id}/access_tokens", None).await {
                // Asking for a token twice is harmless, so this POST may be retried.
                Ok(r) if r.status >= 500 && tries < self.cfg.max_retries => {}
                Err(_) if tries < self.cfg.max_retries => {}
                // Rate limits answer this call too: waited for as any call's (a refusal to park
                // would be wrong).
                Ok(r) => match self.rate_limit_wait(&r, limit_tries) {
                    Some(wait_ms) => {
                        limit_tries += 1;
                        let until = self.clock.now_ms() + wait_ms;
                        tracing::warn!(route = %r.route, status = r.status, wait_ms, "GitHub rate limit; waiting");
                        if wait_ms > self.cfg.max_inline_wait.as_millis() as i64 || limit_tries > 5 {
                            return Err(GhError::RateLimited { until_ms: until });
                        }
                        tokio::time::sleep(Duration::from_millis(wait_ms as u64)).await;
                        continue;
                    }
                    None => break r,
                },
                other => break other?,
            }
            tries += 1;
            self.backoff(tries).await;
        };
        metrics::counter!("shipgate_github_calls_total", "route" => "/app/installations/{id}/access_tokens", "method" => "POST", "status" => r.status.to_string()).increment(1);
        #[derive(serde::Deserialize)]
        struct Token {
            token: String,
            expires_at: String,
        }
        let t: Token = r.ok(&method)?.json()?;
        let expires_at = parse_rfc3339_ms(&t.expires_at).unwrap_or(now + 3_600_000);
        let token = Secret::new(t.token);
        *cached = Some(InstallationToken { token: token.clone(), expires_at });
        Ok(token)
    }
}

/// One HTTP request to GitHub, for traces only (never in the logs: see
/// [`crate::telemetry::TRACE_ONLY`]), a child of the span that makes it: the worker's delivery
/// span, the relay's action span. Named as OpenTelemetry's HTTP conventions say (`GET
/// /repos/{owner}/{repo}/pulls/{id}/files`); the URL without its query, and no header: the
/// credentials are in the `Authorization` header, never in a URL.
fn call_span(method: &Method, api_url: &str, path: &str, route: &str) -> tracing::Span {
    let path = path.split('?').next().unwrap_or(path);
    tracing::info_span!(
        target: crate::telemetry::TRACE_ONLY,
        "github",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "client",
        http.request.method = %method,
        url.template = %route,
        url.full = %format_args!("{api_url}{path}"),
        http.response.status_code = tracing::field::Empty,
        error.r#type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// The answer's status on the call's span; 4xx, 5xx and failures to reach GitHub are errors.
fn record_call(span: &tracing::Span, result: &Result<Response, GhError>) {
    let error = match result {
        Ok(r) => {
            span.record("http.response.status_code", r.status);
            (r.status >= 400).then(|| r.status.to_string())
        }
        Err(_) => Some("transport".to_string()),
    };
    if let Some(e) = error {
        span.record("error.type", e.as_str());
        span.record("otel.status_code", "ERROR");
    }
}

/// The wait before retry `attempt` (from 1) of a transient failure: exponential with jitter, a
/// random time in [d/2, d) for d = base·2^attempt, at most 1024·base and 30 s.
fn retry_delay(base: Duration, attempt: u32) -> Duration {
    let max = base.saturating_mul(1 << 10).min(Duration::from_secs(30));
    // backon's jitter adds up to the delay itself, so it is given the halves.
    ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(base.saturating_mul(2).min(max) / 2)
        .with_max_delay(max / 2)
        .without_max_times()
        .build()
        .nth(attempt.max(1) as usize - 1)
        .unwrap_or(max)
}

/// A time in GitHub's answers and payloads as Unix ms. RFC 3339 (`2026-11-29T10:00:00Z`, with an
/// offset or a fraction), and the looser shapes some payloads use: a space for the `T`, an offset of
/// hours only (`+01`), no seconds, no offset at all (taken as UTC).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    const WITH_OFFSET: [&str; 4] =
        ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z", "%Y-%m-%d %H:%M%#z"];
    const WITHOUT_OFFSET: [&str; 4] =
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"];
    let s = s.trim();
    let with_offset = DateTime::parse_from_rfc3339(s)
        .ok()
        .or_else(|| WITH_OFFSET.iter().find_map(|f| DateTime::parse_from_str(s, f).ok()));
    match with_offset {
        Some(t) => Some(t.timestamp_millis()),
        None => WITHOUT_OFFSET
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .map(|t| t.and_utc().timestamp_millis()),
    }
}

/// Standard base64 as the contents API sends it, without its line breaks; tolerant of missing or
/// misplaced padding and of the URL-safe alphabet (`-`, `_`).
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let unpadded: String = s
        .chars()
        .filter_map(|c| match c {
            '=' => None,
            '-' => Some('+'),
            '_' => Some('/'),
            c => Some(c),
        })
        .collect();
    LENIENT.decode(unpadded).ok()
}

/// Path segments and query values: everything but ASCII letters, digits and `-_.~` is
/// percent-encoded (`ci failure/x` → `ci%20failure%2Fx`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// A path with its identifiers replaced, for metrics: `/repos/{owner}/{repo}/issues/{n}/comments`.
pub fn route_label(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').collect();
    let mut out = Vec::with_capacity(segs.len());
    let mut i = 0;
    while i < segs.len() {
        let s = segs[i];
        let prev = if i > 0 { segs[i - 1] } else { "" };
        if prev == "repos" && i + 1 < segs.len() {
            out.push("{owner}");
            out.push("{repo}");
            i += 2;
            continue;
        }
        if prev == "contents" {
            out.push("{path}");
            break;
        }
        let label = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            "{id}"
        } else if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            "{sha}"
        } else if matches!(
            prev,
            "labels" | "teams" | "memberships" | "collaborators" | "environments" | "users" | "orgs" | "branches"
        ) {
            "{name}"
        } else {
            s
        };
        out.push(label);
        i += 1;
    }
    out.join("/")
}

#[cfg(test)]
mod gate_call_tests {
    #[test]
    fn the_gates_calls_are_known_by_their_route_not_a_substring() {
        assert!(super::gate_call("/repos/acme/app/check-runs"));
        assert!(super::gate_call("/repos/acme/app/check-runs/42"));
        assert!(super::gate_call("/repos/acme/app/actions/runs/7/deployment_protection_rule"));
        assert!(!super::gate_call("/repos/acme/check-runs/issues/1/comments"));
        assert!(!super::gate_call("/repos/check-runs/x/labels"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_hide_identifiers() {
        assert_eq!(
            route_label("/repos/acme/app/issues/12/comments?per_page=100"),
            "/repos/{owner}/{repo}/issues/{id}/comments"
        );
        assert_eq!(route_label("/app/installations/7/access_tokens"), "/app/installations/{id}/access_tokens");
        // Logins, organisations and branches are anyone's to choose: never a metric label.
        assert_eq!(route_label("/users/alice"), "/users/{name}");
        assert_eq!(route_label("/orgs/acme/teams/sre/members"), "/orgs/{name}/teams/{name}/members");
        assert_eq!(route_label("/repos/a/b/contents/.github/shipgate.yml"), "/repos/{owner}/{repo}/contents/{path}");
        assert_eq!(
            route_label("/repos/a/b/issues/1/labels/on-hold"),
            "/repos/{owner}/{repo}/issues/{id}/labels/{name}"
        );
        assert_eq!(
            route_label("/repos/a/b/commits/0123456789abcdef0123456789abcdef01234567/check-runs"),
            "/repos/{owner}/{repo}/commits/{sha}/check-runs"
        );
    }

    #[test]
    fn parses_github_times() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2026-11-29T09:00:00Z"), Some(1_795_942_800_000));
        assert_eq!(parse_rfc3339_ms("2026-11-29T10:00:00+01:00"), Some(1_795_942_800_000));
        assert_eq!(parse_rfc3339_ms("2026-11-29T09:00:00.5Z"), Some(1_795_942_800_500));
        assert_eq!(parse_rfc3339_ms("2018-04-25 20:42:10"), Some(1_524_688_930_000));
        assert_eq!(parse_rfc3339_ms("nonsense"), None);
    }

    #[test]
    fn parses_looser_payload_times() {
        let t = 1_795_942_800_000; // 2026-11-29T09:00:00Z
        for (text, want) in [
            ("2026-11-29T09:00:00.123456Z", t + 123),
            ("2026-11-29 09:00:00Z", t),
            ("2026-11-29T04:00:00-05:00", t),
            ("2026-11-29T10:00:00+01", t),
            ("2026-11-29T10:00+01:00", t),
            ("2026-11-29T09:00", t),
            ("2026-11-29T09:00:00.5", t + 500),
            ("2026-11-29 09:00", t),
            (" 2026-11-29T09:00:00Z\n", t),
            ("2026-11-29T08:59:60Z", t),
            ("1969-12-31T23:59:59.001Z", -999),
        ] {
            assert_eq!(parse_rfc3339_ms(text), Some(want), "{text}");
        }
        for bad in
            ["", "2026-11-29", "2026-11-29T", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-29T09:00:00 UTC"]
        {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_delays_grow_jittered_and_capped() {
        let base = Duration::from_millis(500);
        for _ in 0..100 {
            for (attempt, low, high) in
                [(1, 500, 1000), (2, 1000, 2000), (4, 4000, 8000), (7, 15_000, 30_000), (40, 15_000, 30_000)]
            {
                let d = retry_delay(base, attempt);
                assert!(d >= Duration::from_millis(low) && d <= Duration::from_millis(high), "{attempt}: {d:?}");
            }
            // With a small base, the exponent stops at 10.
            let d = retry_delay(Duration::from_millis(1), 20);
            assert!(d >= Duration::from_millis(512) && d <= Duration::from_millis(1024), "{d:?}");
        }
    }

    #[test]
    fn base64_of_the_contents_api() {
        assert_eq!(decode_base64("aGVsbG8gd29ybGQ=").as_deref(), Some(&b"hello world"[..]));
        assert_eq!(decode_base64("bGFiZWw6IFg=").as_deref(), Some(&b"label: X"[..]));
        assert_eq!(decode_base64("bGFiZWw6IFg").as_deref(), Some(&b"label: X"[..]));
        assert_eq!(decode_base64("").as_deref(), Some(&b""[..]));
        // The URL-safe alphabet, padding anywhere, bits left over after the last byte.
        assert_eq!(decode_base64("-_-_").as_deref(), Some(&[0xfb, 0xff, 0xbf][..]));
        assert_eq!(decode_base64("+/+/").as_deref(), Some(&[0xfb, 0xff, 0xbf][..]));
        assert_eq!(decode_base64("aG=k=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(decode_base64("aGl=").as_deref(), Some(&b"hi"[..]));
        for bad in ["!!!", "a", "aGVsb", "aGVs\nbG8=", "aGVs bG8="] {
            assert_eq!(decode_base64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode("on-hold"), "on-hold");
        assert_eq!(encode("ci failure/x"), "ci%20failure%2Fx");
        assert_eq!(encode("a.b_c~d-E9"), "a.b_c~d-E9");
        assert_eq!(encode("100%&x=1?#+"), "100%25%26x%3D1%3F%23%2B");
        assert_eq!(encode("café 🚦"), "caf%C3%A9%20%F0%9F%9A%A6");
    }
}
