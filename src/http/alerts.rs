//! `POST /alerts/alertmanager`: Prometheus Alertmanager's webhook (payload version 4; Grafana's
//! Alertmanager-compatible contact point sends the same), authenticated with an installation's
//! `alerts` token (SPEC §4.2).
//!
//! Each alert of the group is checked against the token's installation (its `repository` label
//! must name one of the installation's repositories) and stored as a delivery of its own, on the
//! subject of its repository and fingerprint, before the request is answered: the worker opens,
//! updates or closes the alert's incident like any webhook's work. An alert's delivery id is the
//! hash of what is stored, so the same notification sent again (Alertmanager re-sends every
//! `repeat_interval`) is a duplicate at the intake and changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::AppState;
use crate::domain::alert::AmAlert;
use crate::handlers::alerts::ALERT_EVENT;
use crate::queue::ingest::IngestError;
use crate::store::api_tokens::{self, Lookup, TokenScope};
use crate::store::deliveries::{self, InsertOutcome, NewDelivery};
use crate::store::tenancy;

/// Alertmanager's notification (`notify/webhook`'s `Message`). Unknown fields are ignored (newer
/// versions add some); the ones read here are required, so a body of another shape is refused.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub version: String,
    #[serde(default)]
    pub group_key: String,
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<AmAlert>,
    /// Grafana's contact point (which sends payload version 1 of the same shape) says its
    /// organisation.
    #[serde(default, rename = "orgId")]
    pub org_id: Option<serde_json::Value>,
}

/// What the answer says of an alert that was not taken.
#[derive(Debug, Serialize)]
struct Skipped {
    fingerprint: String,
    alertname: String,
    repository: Option<String>,
    reason: &'static str,
}

#[derive(Debug, Serialize)]
struct Answer {
    /// Alerts stored for processing.
    accepted: usize,
    /// Alerts stored before (the same notification again).
    duplicates: usize,
    skipped: Vec<Skipped>,
}

fn refuse(status: StatusCode, msg: impl Into<String>) -> Response {
    let msg = msg.into();
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), reason = %msg, "alert notification not stored");
    } else {
        tracing::warn!(status = status.as_u16(), reason = %msg, "alert notification refused");
    }
    let mut r = (status, axum::Json(serde_json::json!({ "error": msg }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
    }
    r
}

pub async fn alertmanager(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    // Alertmanager sends no id of its own: the span carries the group's key once it is read.
    let span = tracing::info_span!("alerts", source = "alertmanager", installation = tracing::field::Empty);
    receive(&st, &headers, &body).instrument(span).await
}

async fn receive(st: &AppState, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some(token) = super::bearer(headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <token> (an `alerts` token)");
    };
    let installation = match api_tokens::lookup(&st.db, token, TokenScope::Alerts).await {
        Ok(Lookup::Valid { installation, suspended: false }) => installation,
        Ok(Lookup::Valid { installation, suspended: true }) => {
            return refuse(StatusCode::FORBIDDEN, format!("installation {installation} is suspended"));
        }
        Ok(Lookup::WrongScope(have)) => {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "this token's scope is `{have}`: alerts need a token made with \
                     `shipgate api-token create --scope alerts`"
                ),
            );
        }
        Ok(Lookup::Unknown) => return refuse(StatusCode::UNAUTHORIZED, "unknown token"),
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, format!("cannot check the token: {e}")),
    };
    tracing::Span::current().record("installation", installation);
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")),
    };
    let n: Notification = match serde_json::from_value(value) {
        Ok(n) => n,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the body is not an Alertmanager webhook notification (version 4): {e}"),
            );
        }
    };
    // Alertmanager's version 4, or Grafana's webhook contact point (version 1 of the same shape).
    let grafana = n.org_id.is_some() && n.version == "1";
    if n.version != "4" && !grafana {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "Alertmanager webhook payload version `{}` is not supported (version 4 is, and Grafana's version 1)",
                n.version
            ),
        );
    }
    if n.alerts.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "the notification has no alerts");
    }
    if let Some(bad) = n.alerts.iter().find(|a| !matches!(a.status.as_str(), "firing" | "resolved")) {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("alert status `{}` is neither `firing` nor `resolved`", bad.status),
        );
    }
    if let Some(bad) = n.alerts.iter().find(|a| crate::github::client::parse_rfc3339_ms(&a.starts_at).is_none()) {
        return refuse(StatusCode::BAD_REQUEST, format!("alert `{}` has no valid startsAt", bad.alertname()));
    }
    let repos = match tenancy::repositories(&st.db, installation).await {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, format!("cannot read the repositories: {e}")),
    };
    let now = st.clock.now_ms();
    let mut skipped = Vec::new();
    let mut stored = Vec::new();
    for alert in &n.alerts {
        let named = alert.labels.get("repository").map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
        let skip = |reason| Skipped {
            fingerprint: alert.fingerprint(),
            alertname: alert.alertname().to_string(),
            repository: named.clone(),
            reason,
        };
        let Some(name) = &named else {
            skipped.push(skip("no `repository` label"));
            continue;
        };
        let Some(repo) = repos.iter().find(|r| r.removed_at.is_none() && r.full_name.eq_ignore_ascii_case(name)) else {
            skipped.push(skip("not a repository of this token's installation"));
            continue;
        };
        let body = serde_json::json!({
            "installation": { "id": installation },
            "repository": { "id": repo.id, "full_name": repo.full_name, "private": repo.private != 0 },
            "receiver": n.receiver,
            "group_key": n.group_key,
            "external_url": n.external_url,
            "alert": alert,
        })
        .to_string();
        let sha = hex::encode(Sha256::digest(body.as_bytes()));
        stored.push(NewDelivery {
            id: format!("alert-{}", &sha[..40]),
            event: ALERT_EVENT.to_string(),
            action: Some(alert.status.clone()),
            installation_id: Some(installation),
            repository: Some(repo.full_name.clone()),
            subject: format!("alert:{}:{}", repo.id, alert.fingerprint()),
            received_at: now,
            body_sha256: sha,
            body_lz4: Some(deliveries::compress(&body)),
            body: String::new(),
        });
    }
    if stored.is_empty() {
        let reasons: Vec<String> = skipped.iter().map(|s| format!("{}: {}", s.alertname, s.reason)).collect();
        return refuse(
            StatusCode::FORBIDDEN,
            format!("no alert names a repository of this token's installation ({})", reasons.join("; ")),
        );
    }
    let (mut accepted, mut duplicates) = (0, 0);
    for d in stored {
        let id = d.id.clone();
        match st.ingest.ingest(d).await {
            Ok(InsertOutcome::Stored(_)) => accepted += 1,
            Ok(InsertOutcome::Duplicate | InsertOutcome::Replay) => duplicates += 1,
            Err(e @ (IngestError::Store(_) | IngestError::Closed)) => {
                // Those stored before it stay: Alertmanager retries the whole group, and they are
                // duplicates then.
                return refuse(StatusCode::SERVICE_UNAVAILABLE, format!("alert {id} not stored, try again later: {e}"));
            }
        }
    }
    metrics::counter!("shipgate_alerts_received_total", "outcome" => "stored").increment(accepted as u64);
    metrics::counter!("shipgate_alerts_received_total", "outcome" => "duplicate").increment(duplicates as u64);
    metrics::counter!("shipgate_alerts_received_total", "outcome" => "skipped").increment(skipped.len() as u64);
    tracing::info!(group_key = %n.group_key, status = %n.status, accepted, duplicates, skipped = skipped.len(), "alert notification stored");
    let status = if accepted > 0 { StatusCode::ACCEPTED } else { StatusCode::OK };
    (status, axum::Json(Answer { accepted, duplicates, skipped })).into_response()
}
