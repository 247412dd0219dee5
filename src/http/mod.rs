//! The HTTP surface: `POST /webhook`, health, readiness, metrics and the read-only `/api`.

pub mod alerts;
pub mod api;
pub mod api_types;
pub mod gate;
pub mod pages;
pub mod serve;
pub mod setup;
pub mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::clock::Clock;
use crate::config::Secret;
use crate::github::signature::Verifier;
use crate::queue::ingest::Ingestor;
use crate::store::{Db, deliveries, outbox};

pub struct AppState {
    pub db: Db,
    pub ingest: Ingestor,
    pub verifier: Verifier,
    pub clock: Clock,
    pub max_body_bytes: usize,
    /// Bytes of webhook bodies not yet verified, held at once across all connections.
    pub budget: Arc<serve::Budget>,
    /// This process's last verification of the audit log.
    pub audit_result: crate::server::AuditResult,
    /// How long a body waits for room in `budget` before it is answered 503.
    pub budget_wait: std::time::Duration,
    /// The /api admin token (`SHIPGATE_ADMIN_TOKEN`), if any.
    pub admin_token: Option<Secret>,
    /// `/metrics`' bearer token (`SHIPGATE_METRICS_TOKEN`), if any.
    pub metrics_token: Option<Secret>,
    /// No webhook secret on an address others can reach: every delivery is refused, saying why.
    pub no_webhook_secret: bool,
    /// Verifies the OIDC tokens of jobs at `/gate/wait`.
    pub oidc: Option<Arc<crate::github::oidc::OidcVerifier>>,
    /// The longest long poll of `/gate/wait`.
    pub gate_wait_max: std::time::Duration,
    /// How often a waiting `/gate/wait` reads its row when no decision in this process wakes it.
    pub gate_wait_poll: std::time::Duration,
    /// True once the App is stopping: long polls answer at once, so shutdown never waits on them.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The public half of `SHIPGATE_SIGNING_KEY` (PEM), served for checking audit anchors.
    pub audit_public_key: Option<String>,
    /// The web pages' settings and link key.
    pub pages: Arc<pages::Pages>,
    /// `/setup`, when this start offers it (dry-run on SQLite, started by `serve`).
    pub setup: Option<Arc<setup::SetupPages>>,
}

/// The token of an `Authorization: Bearer <token>` header, if there is one (not empty).
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/webhook", post(webhook::receive))
        .route("/gate/wait", post(gate::wait))
        // A group of many alerts is larger than the other small bodies (1 MiB, still bounded).
        .route(
            "/alerts/alertmanager",
            post(alerts::alertmanager).layer(axum::extract::DefaultBodyLimit::max(alerts::MAX_BODY_BYTES)),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/.well-known/shipgate-audit.pub", get(audit_public_key))
        .route("/requests/{installation}/{repository}/{issue}", get(pages::request_page))
        .route("/incidents/{installation}/{repository}/{marker}", get(pages::incident_page))
        .route("/setup", get(setup::setup_page))
        .route("/setup/callback", get(setup::callback))
        .merge(api::routes())
        // Bodies other than webhooks' (`/gate/wait`'s JSON) are small: a bound on what each
        // connection may make the App hold (webhooks read theirs against the budget instead).
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// The key that signs the audit log's anchors, public by design: anyone holding a closing
/// summary can check its anchor with it. 404, saying why, when the App has none.
async fn audit_public_key(State(st): State<Arc<AppState>>) -> axum::response::Response {
    match &st.audit_public_key {
        Some(pem) => ([(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], pem.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "this App has no SHIPGATE_SIGNING_KEY: its audit anchors are not signed\n")
            .into_response(),
    }
}

async fn readyz(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    match readiness(&st).await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// What `/readyz` answers, and `shipgate_ready` exports: the database answers and has every
/// migration applied.
async fn readiness(st: &AppState) -> Result<(), &'static str> {
    if let Err(e) = st.db.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return Err("database unreachable\n");
    }
    match st.db.migrations_applied().await {
        Ok(true) => Ok(()),
        Ok(false) => Err("migrations not applied\n"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: cannot read migrations");
            Err("database unreachable\n")
        }
    }
}

async fn metrics_text(State(st): State<Arc<AppState>>, headers: axum::http::HeaderMap) -> axum::response::Response {
    if let Some(want) = &st.metrics_token {
        let given = bearer(&headers);
        if !given.is_some_and(|g| api::constant_time_eq(g, want.expose())) {
            return (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Bearer")],
                "/metrics needs Authorization: Bearer <SHIPGATE_METRICS_TOKEN>\n",
            )
                .into_response();
        }
    }
    metrics_body(&st).await.into_response()
}

async fn metrics_body(st: &AppState) -> impl IntoResponse {
    metrics::gauge!("shipgate_ready").set(if readiness(st).await.is_ok() { 1.0 } else { 0.0 });
    // Queue gauges are read from the database at scrape time, so every replica reports the same.
    let now = st.clock.now_ms();
    for (queue, stats) in [("inbox", deliveries::stats(&st.db).await), ("outbox", outbox::stats(&st.db).await)] {
        match stats {
            Ok(s) => {
                let depth = [("pending", s.pending), ("running", s.running), ("parked", s.parked)];
                for (state, n) in depth {
                    metrics::gauge!("shipgate_queue_depth", "queue" => queue, "state" => state).set(n as f64);
                }
                let age = s.oldest_open_at.map(|t| ((now - t).max(0) as f64) / 1000.0).unwrap_or(0.0);
                metrics::gauge!("shipgate_queue_oldest_open_age_seconds", "queue" => queue).set(age);
            }
            Err(e) => tracing::warn!(error = %e, queue, "metrics: cannot read queue depth"),
        }
    }
    metrics::gauge!("shipgate_intake_unverified_bytes").set(st.budget.used() as f64);
    // This process's last verification of the audit log: 1 intact, 0 broken, -1 could not run;
    // absent before the first.
    let last = st.audit_result.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some((at, verdict)) = last {
        let v = match verdict {
            crate::store::audit::Verdict::Intact => 1.0,
            crate::store::audit::Verdict::Broken(_) => 0.0,
            crate::store::audit::Verdict::Failed(_) => -1.0,
        };
        metrics::gauge!("shipgate_audit_log_intact").set(v);
        metrics::gauge!("shipgate_audit_log_verified_timestamp_seconds").set(at as f64 / 1000.0);
    }
    ([("content-type", "text/plain; version=0.0.4")], crate::metrics::render())
}
