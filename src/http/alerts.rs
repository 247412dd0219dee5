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
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
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

/// The largest body taken (a group of many alerts; Alertmanager's `max_alerts` bounds it too).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// At most this many alerts of one notification are taken; the rest are skipped, saying so (set
/// Alertmanager's `max_alerts` to this or less).
pub const MAX_ALERTS: usize = 500;

/// An alert's labels and annotations may hold this much; a larger alert is skipped.
pub const MAX_ALERT_BYTES: usize = 8 * 1024;

/// The notification's own fields copied into each alert's stored delivery are cut to this.
const MAX_FIELD_BYTES: usize = 512;

pub async fn alertmanager(State(st): State<Arc<AppState>>, req: axum::extract::Request) -> Response {
    // Alertmanager sends no id of its own: the span carries the group's key once it is read.
    let span = tracing::info_span!("alerts", source = "alertmanager", installation = tracing::field::Empty);
    receive(&st, req).instrument(span).await
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn capped(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

async fn receive(st: &AppState, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    // The token first, from the headers: nobody without one makes the App read (and hold) a body.
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
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            return if too_large {
                refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {MAX_BODY_BYTES} bytes"))
            } else {
                refuse(StatusCode::BAD_REQUEST, format!("the body could not be read: {e}"))
            };
        }
    };
    let value: serde_json::Value = match serde_json::from_slice(&body) {
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
    if let Some(bad) =
        n.alerts.iter().find(|a| crate::github::client::parse_rfc3339_ms(&a.starts_at).is_none_or(|t| t <= 0))
    {
        return refuse(StatusCode::BAD_REQUEST, format!("alert `{}` has no valid startsAt", bad.alertname()));
    }
    let repos = match tenancy::repositories(&st.db, installation).await {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, format!("cannot read the repositories: {e}")),
    };
    let now = st.clock.now_ms();
    let mut skipped = Vec::new();
    let mut stored = Vec::new();
    for (i, alert) in n.alerts.iter().enumerate() {
        let named = alert.labels.get("repository").map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
        let skip = |reason| Skipped {
            fingerprint: alert.fingerprint(),
            alertname: alert.alertname().to_string(),
            repository: named.clone(),
            reason,
        };
        if i >= MAX_ALERTS {
            skipped.push(skip("over the 500 alerts a notification may carry (set Alertmanager's max_alerts)"));
            continue;
        }
        let size: usize = alert.labels.iter().chain(&alert.annotations).map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + alert.generator_url.len()
            + alert.dashboard_url.len();
        if size > MAX_ALERT_BYTES {
            skipped.push(skip("its labels and annotations are larger than 8 KiB"));
            continue;
        }
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
            "receiver": capped(&n.receiver, MAX_FIELD_BYTES),
            "group_key": capped(&n.group_key, MAX_FIELD_BYTES),
            "external_url": capped(&n.external_url, MAX_FIELD_BYTES),
            "alert": alert,
        })
        .to_string();
        let key = deliveries::body_key(&body);
        stored.push(NewDelivery {
            id: format!("alert-{}", &deliveries::legacy_hash(&key)[..40]),
            event: ALERT_EVENT.to_string(),
            action: Some(alert.status.clone()),
            installation_id: Some(installation),
            repository: Some(repo.full_name.clone()),
            subject: format!("alert:{}:{}", repo.id, alert.fingerprint()),
            received_at: now,
            body_key: key,
            body_lz4: Some(deliveries::compress(&body)),
            body: String::new(),
        });
    }
    if stored.is_empty() {
        let mut reasons: Vec<String> =
            skipped.iter().rev().take(10).map(|s| format!("{}: {}", capped(&s.alertname, 100), s.reason)).collect();
        if skipped.len() > 10 {
            reasons.push(format!("and {} more", skipped.len() - 10));
        }
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
    tracing::info!(group_key = %capped(&n.group_key, 200), status = %capped(&n.status, 20), accepted, duplicates, skipped = skipped.len(), "alert notification stored");
    let status = if accepted > 0 { StatusCode::ACCEPTED } else { StatusCode::OK };
    (status, axum::Json(Answer { accepted, duplicates, skipped })).into_response()
}
