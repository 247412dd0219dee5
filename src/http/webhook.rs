//! `POST /webhook`: verify, validate, store durably, then answer. Nothing else happens here;
//! processing is the worker's, from the inbox.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use super::serve::{Charge, body_timeout};
use crate::github::envelope::Envelope;
use crate::queue::ingest::IngestError;
use crate::store::deliveries::{self, InsertOutcome, NewDelivery};
use http_body_util::BodyExt;

/// A refusal: status, a short reason for the caller, and the metric outcome label.
struct Refusal(StatusCode, &'static str, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.2)).into_response()
    }
}

fn refuse(status: StatusCode, outcome: &'static str, msg: impl Into<String>) -> Refusal {
    Refusal(status, outcome, msg.into())
}

pub async fn receive(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let delivery_id = header_str(&parts.headers, "x-github-delivery").unwrap_or("").to_string();
    let span = tracing::info_span!("webhook", delivery_id = %delivery_id);
    let result = accept(&st, &parts.headers, body, &delivery_id).instrument(span.clone()).await;
    let elapsed = started.elapsed().as_secs_f64();
    link_trace(&span, &delivery_id, &result);
    let _enter = span.enter();
    match result {
        Ok((event, status, outcome)) => {
            metrics::counter!("shipgate_webhook_deliveries_total", "event" => event.clone(), "outcome" => outcome)
                .increment(1);
            metrics::histogram!("shipgate_webhook_ingest_seconds").record(elapsed);
            tracing::debug!(event = %event, outcome, "delivery accepted");
            (status, format!("{outcome}\n")).into_response()
        }
        Err(Refusal(status, outcome, msg)) => {
            metrics::counter!("shipgate_webhook_deliveries_total", "event" => "unknown", "outcome" => outcome)
                .increment(1);
            if status.is_server_error() {
                tracing::error!(status = status.as_u16(), reason = %msg, "delivery not stored");
            } else {
                tracing::warn!(status = status.as_u16(), reason = %msg, "delivery refused");
            }
            Refusal(status, outcome, msg).into_response()
        }
    }
}

/// The intake's place in its delivery's trace (traces only; the logs do not change): a stored
/// delivery's intake is the root of the delivery's trace, a copy GitHub sent again (`duplicate`)
/// is a child of that root, and a refused request, unverified or a replay under another id, stays
/// in a trace of its own (one cannot add spans to another delivery's trace by naming its id).
fn link_trace(span: &tracing::Span, delivery_id: &str, result: &Result<(String, StatusCode, &'static str), Refusal>) {
    let outcome = match result {
        Ok((_, _, outcome)) => *outcome,
        Err(Refusal(_, outcome, _)) => outcome,
    };
    match outcome {
        "stored" => crate::telemetry::mark_root(span, delivery_id),
        "duplicate" => crate::telemetry::continue_delivery(span, delivery_id),
        _ => {}
    }
    let status = match result {
        Ok((_, status, _)) | Err(Refusal(status, ..)) => *status,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    span.set_attribute("shipgate.outcome", outcome);
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
}

async fn accept(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
    delivery_id: &str,
) -> Result<(String, StatusCode, &'static str), Refusal> {
    // Cheap header checks first: nothing is read or hashed for a request that cannot be valid.
    let declared = header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > st.max_body_bytes) {
        return Err(too_large(st.max_body_bytes));
    }
    let is_json = header_str(headers, header::CONTENT_TYPE.as_str())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json (set the webhook's content type to application/json)",
        ));
    }
    let event = header_str(headers, "x-github-event").unwrap_or("");
    if !valid_event(event) {
        return Err(refuse(StatusCode::BAD_REQUEST, "bad_request", "missing or invalid X-GitHub-Event header"));
    }
    // The App's own events (rechecks, forwarded commands and deployments) never come from outside,
    // signed or not: only the worker makes them.
    if event.starts_with(crate::handlers::INTERNAL_EVENT_PREFIX) {
        return Err(refuse(StatusCode::BAD_REQUEST, "bad_request", format!("`{event}` is not a GitHub event")));
    }
    if !valid_delivery_id(delivery_id) {
        return Err(refuse(StatusCode::BAD_REQUEST, "bad_request", "missing or invalid X-GitHub-Delivery header"));
    }
    if st.no_webhook_secret {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "no webhook secret is set (GITHUB_WEBHOOK_SECRET): deliveries are refused on this address",
        ));
    }
    let Some(signature) = header_str(headers, "x-hub-signature-256") else {
        return Err(refuse(StatusCode::UNAUTHORIZED, "bad_signature", "missing X-Hub-Signature-256 header"));
    };

    // A malformed signature is refused before a byte of the body is read.
    if crate::github::signature::parse(signature).is_none() {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "X-Hub-Signature-256 must be sha256=<64 hex digits>",
        ));
    }
    let (parts, charge) = read_body(st, declared, body).await?;
    let slices: Vec<&[u8]> = parts.iter().map(|p| p.as_ref()).collect();
    if !st.verifier.verify_parts(signature, &slices) {
        return Err(refuse(StatusCode::UNAUTHORIZED, "bad_signature", "signature does not match"));
    }
    // Verified: the bytes no longer count against the budget of unverified ones.
    drop(charge);
    let bytes: bytes::Bytes = match parts.len() {
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => parts.concat().into(),
    };
    let envelope =
        Envelope::parse(&bytes).map_err(|e| refuse(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    // Parsed as JSON is not yet UTF-8: serde_json skips the strings of fields it ignores without
    // checking them (tests/fuzz_regressions.rs). Checked, not copied: it is stored compressed.
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| refuse(StatusCode::BAD_REQUEST, "bad_request", "the body is not UTF-8"))?;

    let delivery = NewDelivery {
        id: delivery_id.to_string(),
        event: event.to_string(),
        subject: envelope.subject(event),
        action: envelope.action,
        installation_id: envelope.installation.map(|i| i.id),
        repository: envelope.repository.map(|r| r.full_name),
        received_at: st.clock.now_ms(),
        body_key: deliveries::body_key(text),
        // Compressed here, on the request's own task, so that the one writer writes fewer bytes.
        body_lz4: Some(deliveries::compress(text)),
        body: String::new(),
    };
    match st.ingest.ingest(delivery).await {
        Ok(InsertOutcome::Stored(_)) => Ok((event.to_string(), StatusCode::ACCEPTED, "stored")),
        Ok(InsertOutcome::Duplicate) => Ok((event.to_string(), StatusCode::OK, "duplicate")),
        Ok(InsertOutcome::Replay) => Ok((event.to_string(), StatusCode::OK, "replay")),
        Err(e @ IngestError::Store(_)) | Err(e @ IngestError::Closed) => {
            Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "db_error", format!("not stored, try again later: {e}")))
        }
    }
}

/// Reads the body as the parts it arrives in (hyper's own buffers, not copied), each charged to
/// the budget of unverified bytes, exactly, before it is kept; waits at most `budget_wait` for
/// room, then refuses (503), never holding more. The announced length (GitHub always sends one)
/// makes a body small or large; a body without one (chunked, from some proxies) counts as large
/// and is cut at the largest size.
async fn read_body(st: &AppState, declared: Option<usize>, body: Body) -> Result<(Vec<bytes::Bytes>, Charge), Refusal> {
    let announced = declared.unwrap_or(st.max_body_bytes);
    let mut charge = st.budget.empty();
    let mut parts = Vec::new();
    let mut received = 0usize;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match body_timeout(&e) {
            Some(t) => refuse(StatusCode::REQUEST_TIMEOUT, "body_timeout", t.to_string()),
            None => refuse(StatusCode::BAD_REQUEST, "bad_request", format!("could not read the body: {e}")),
        })?;
        let Ok(data) = frame.into_data() else { continue };
        received += data.len();
        if received > announced {
            return Err(match declared {
                Some(_) => refuse(StatusCode::BAD_REQUEST, "bad_request", "the body is longer than its Content-Length"),
                None => too_large(st.max_body_bytes),
            });
        }
        // Each part also costs its bookkeeping: a body trickled a byte at a time pays for it.
        if !st.budget.grow(&mut charge, data.len() + PART_OVERHEAD, announced, st.budget_wait).await {
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many unverified bodies are being received: try again later",
            ));
        }
        parts.push(data);
    }
    Ok((parts, charge))
}

/// What one received part costs beyond its bytes (its handle and the list's slot, rounded up).
const PART_OVERHEAD: usize = 64;

fn too_large(max: usize) -> Refusal {
    refuse(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("body larger than {max} bytes"))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// GitHub event names: lower-case letters and underscores.
fn valid_event(e: &str) -> bool {
    !e.is_empty() && e.len() <= 64 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Delivery ids are GUIDs; accept any short printable token.
fn valid_delivery_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
