//! `POST /gate/wait` (deploy mode `workflow`, SPEC §3.5 and §6): a deploying job asks whether its
//! commit may go to its environment, proving which repository, commit, ref, environment and run it
//! is with its GitHub Actions OIDC token. The answer: `open`, `denied`, or `waiting` with what is
//! missing, long-polled up to `wait_seconds` (at most `SHIPGATE_GATE_WAIT_MAX_SECS`).
//!
//! Nothing is decided here: the wait is stored, and an internal delivery asks the worker to
//! evaluate the requests that cover the commit, in the repository's order; their decision answers
//! the wait in the database. This call reads it, woken when a decision is applied in this process
//! and otherwise every `SHIPGATE_GATE_WAIT_POLL_MS`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use crate::github::events::{InstallationRef, RepositoryRef};
use crate::github::oidc::OidcError;
use crate::handlers::requests::{GATE_WAIT_EVENT, GateWaitBody};
use crate::store::deliveries::{self, NewDelivery};
use crate::store::gate_waits::{self, GateWait};
use crate::store::tenancy;

/// The body (optional): the environment the job deploys to (must be its token's), and how long
/// to wait for a decision.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitRequest {
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    wait_seconds: Option<u64>,
}

/// The answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WaitAnswer {
    /// open | denied | waiting
    pub state: &'static str,
    pub repository: String,
    pub environment: String,
    pub sha: String,
    /// The request that decided (or that the gate waits on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<i64>,
    /// What the gate waits for, line by line (waiting only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// The App's words: why it is open, denied, or waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Waiting through a freeze window: when it ends (RFC 3339, UTC). A job whose time-out comes
    /// first can give up at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

fn refuse(status: StatusCode, error: &str, reason: impl Into<String>) -> Response {
    (status, Json(json!({ "error": error, "reason": reason.into() }))).into_response()
}

pub async fn wait(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(verifier) = st.oidc.clone() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "not_configured", "OIDC verification is not configured");
    };
    let Some(token) = super::bearer(&headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", OidcError::Missing.to_string());
    };
    let claims = match verifier.verify(token).await {
        Ok(c) => c,
        Err(e) if e.unavailable() => {
            tracing::warn!(error = %e, "gate wait: the OIDC issuer is unavailable");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "issuer_unavailable", e.to_string());
        }
        Err(e) => {
            tracing::info!(reason = %e, "gate wait: token refused");
            return refuse(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string());
        }
    };
    let req: WaitRequest = if body.iter().all(u8::is_ascii_whitespace) {
        WaitRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, "bad_request", format!("the body does not fit: {e}")),
        }
    };
    let Some(environment) = claims.environment.clone().filter(|e| !e.is_empty()) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token names no environment: the job must declare `environment:` for the gate to know what it deploys to",
        );
    };
    if matches!(claims.event_name.as_str(), "pull_request" | "pull_request_target") {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("a `{}` run never deploys through the gate", claims.event_name),
        );
    }
    if let Some(asked) = req.environment.as_deref().filter(|a| !a.eq_ignore_ascii_case(&environment)) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body names environment `{asked}`, the token `{environment}`"),
        );
    }
    let (Ok(repository_id), Ok(run_id)) = (claims.repository_id.parse::<i64>(), claims.run_id.parse::<i64>()) else {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "the token's repository_id or run_id is not a number");
    };
    let run_attempt = match claims.run_attempt.as_deref().map(str::parse::<i64>) {
        None => 1,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "the token's run_attempt is not a number");
        }
    };
    let sha = claims.sha.to_ascii_lowercase();
    if sha.len() != 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "the token's sha is not a commit SHA");
    }
    let installation = match tenancy::serving(&st.db, repository_id).await {
        Ok(Some((installation, _))) => installation,
        Ok(None) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("no installation of this App serves {} (id {repository_id})", claims.repository),
            );
        }
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "db_error", e.to_string()),
    };
    let now = st.clock.now_ms();
    let w = GateWait {
        installation_id: installation,
        repository_id,
        repository: claims.repository.clone(),
        run_id,
        run_attempt,
        environment: environment.clone(),
        sha: sha.clone(),
        git_ref: claims.git_ref.clone(),
        state: "pending".into(),
        issue: None,
        missing: "[]".into(),
        report: None,
        received_at: now,
        answered_at: None,
    };
    let first = match gate_waits::begin(&st.db, &w).await {
        Ok(first) => first,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "db_error", e.to_string()),
    };
    // Only the attempt's first call asks for an evaluation: later calls (polls, matrix siblings,
    // a replayed token) read the answer, and cost GitHub nothing. The wait is answered again by
    // every evaluation of the requests for its environment while it is pending.
    if first
        && let Err(e) = enqueue(
            &st,
            installation,
            repository_id,
            &claims.repository,
            run_id,
            run_attempt,
            &environment,
            &sha,
            &claims.git_ref,
            now,
        )
        .await
    {
        return e;
    }
    tracing::info!(repository = %claims.repository, run_id, run_attempt, environment = %environment, sha = %sha, first, "gate wait");

    // The long poll: until a decision, the time the job asked for (bounded), or the App stops.
    let wait = Duration::from_secs(req.wait_seconds.unwrap_or(0)).min(st.gate_wait_max);
    let deadline = tokio::time::Instant::now() + wait;
    let mut shutdown = st.shutdown.clone();
    loop {
        let woken = gate_waits::DECIDED.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let row = match gate_waits::get(&st.db, installation, repository_id, run_id, run_attempt, &environment).await {
            Ok(Some(row)) => row,
            Ok(None) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "db_error", "the wait was not stored"),
            Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "db_error", e.to_string()),
        };
        let now = tokio::time::Instant::now();
        if row.state != "pending" || now >= deadline || *shutdown.borrow() {
            let mut a = answer(&row);
            if a.state == "waiting" {
                a.until = frozen_until(&st, &row).await;
            }
            return (StatusCode::OK, Json(a)).into_response();
        }
        let next = (now + st.gate_wait_poll).min(deadline);
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The internal delivery asking the worker to evaluate the requests for a new wait.
#[allow(clippy::too_many_arguments)]
async fn enqueue(
    st: &AppState,
    installation: i64,
    repository_id: i64,
    repository: &str,
    run_id: i64,
    run_attempt: i64,
    environment: &str,
    sha: &str,
    git_ref: &str,
    now: i64,
) -> Result<(), Response> {
    let wait_id = format!("{repository_id}-{run_id}-{run_attempt}-{now}-{:08x}", fastrand::u32(..));
    let body = GateWaitBody {
        wait_id: wait_id.clone(),
        installation: InstallationRef { id: installation },
        repository: RepositoryRef {
            id: repository_id,
            full_name: repository.to_string(),
            default_branch: None,
            master_branch: None,
        },
        run_id,
        run_attempt,
        environment: environment.to_string(),
        sha: sha.to_string(),
        git_ref: git_ref.to_string(),
    };
    let text = serde_json::to_string(&body).unwrap_or_default();
    let delivery = NewDelivery {
        id: format!("gate-wait-{wait_id}"),
        event: GATE_WAIT_EVENT.into(),
        action: Some("wait".into()),
        installation_id: Some(installation),
        repository: Some(repository.to_string()),
        subject: format!("repo:{repository_id}"),
        received_at: now,
        body_key: deliveries::body_key(&text),
        body: text,
        body_lz4: None,
    };
    match st.ingest.ingest(delivery).await {
        Ok(_) => Ok(()),
        Err(e) => Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "db_error", format!("not stored, try again later: {e}"))),
    }
}

/// The end of the freeze window the job's environment is in now, if it is in one (from the
/// repository's policy as last read).
async fn frozen_until(st: &AppState, row: &GateWait) -> Option<String> {
    let policy = crate::handlers::repo::cached_policy(&st.db, row.installation_id, row.repository_id).await.ok()?;
    let active = policy.environment(&row.environment)?.freeze.active_at(st.clock.now_ms())?;
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(active.until_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn answer(row: &GateWait) -> WaitAnswer {
    let state = match row.state.as_str() {
        "approved" => "open",
        "rejected" => "denied",
        _ => "waiting",
    };
    let missing: Vec<String> =
        if state == "waiting" { serde_json::from_str(&row.missing).unwrap_or_default() } else { Vec::new() };
    let missing = if state == "waiting" && missing.is_empty() {
        vec!["a decision: the App has not evaluated the requests for this commit yet".to_string()]
    } else {
        missing
    };
    WaitAnswer {
        state,
        repository: row.repository.clone(),
        environment: row.environment.clone(),
        sha: row.sha.clone(),
        request: row.issue,
        missing,
        message: row.report.clone(),
        until: None,
    }
}
