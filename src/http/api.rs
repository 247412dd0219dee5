//! The read-only JSON API: `GET /api/...` with `Authorization: Bearer <token>`.
//!
//! * A per-installation token (`shipgate api-token create`) reads only rows of its installation;
//!   anything else answers 404, as if it did not exist, whether listed or asked for by id.
//! * The admin token (`SHIPGATE_ADMIN_TOKEN`, compared in constant time) reads everything.
//! * No token, or one we do not know: 401 with a JSON error.
//!
//! Routes: `/api/requests?repo=&state=`, `/api/requests/{owner}/{repo}/{issue}` (with its
//! approvals), `/api/audit?repo=&since=`, `/api/deliveries?status=`, `/api/deliveries/{id}`,
//! `/api/incidents?repo=&state=&kind=`.
//! Lists take `?limit=` (1–500, default 100) and `?after=` (the `next` cursor of the previous
//! page) and answer `{"items": [...], "next": cursor or null}` in ascending order.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::store::deliveries::DeliveryRow;
use crate::store::filter::{self, Filter};
use crate::store::requests::{self, RequestRow};
use crate::store::{StoreError, api_tokens, audit, deliveries};

pub const MAX_LIMIT: i64 = 500;
pub const DEFAULT_LIMIT: i64 = 100;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/requests", get(list_requests))
        .route("/api/requests/{owner}/{repo}/{issue}", get(get_request))
        .route("/api/audit", get(list_audit))
        .route("/api/deliveries", get(list_deliveries))
        .route("/api/deliveries/{id}", get(get_delivery))
        .route("/api/incidents", get(list_incidents))
}

/// What a caller may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Installation(i64),
}

impl Scope {
    /// The installation filter of a query: None reads all.
    fn installation(self) -> Option<i64> {
        match self {
            Scope::Admin => None,
            Scope::Installation(id) => Some(id),
        }
    }

    fn may_read(self, installation: Option<i64>) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Installation(id) => installation == Some(id),
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "api: database error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [("www-authenticate", "Bearer")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

/// The caller, from `Authorization: Bearer <token>`.
pub struct Caller(pub Scope);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
        if !parts.headers.contains_key("authorization") {
            return Err(unauthorized("missing Authorization: Bearer <token>"));
        }
        let token = super::bearer(&parts.headers)
            .ok_or_else(|| unauthorized("the Authorization header must be: Bearer <token>"))?;
        if let Some(admin) = &st.admin_token
            && constant_time_eq(token, admin.expose())
        {
            return Ok(Caller(Scope::Admin));
        }
        match api_tokens::lookup(&st.db, token).await? {
            Some((installation, false)) => Ok(Caller(Scope::Installation(installation))),
            Some((installation, true)) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("installation {installation} is suspended: its tokens answer again once it is unsuspended"),
            )),
            None => Err(unauthorized("unknown token")),
        }
    }
}

/// Compares the SHA-256 digests of both (equal length) without an early exit.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q)) == 0
}

/// Query parameters, refusing any this route does not know (a misspelt filter must not widen a
/// list silently).
struct Params(HashMap<String, String>);

impl Params {
    fn new(q: HashMap<String, String>, known: &[&str]) -> Result<Params, ApiError> {
        if let Some(k) = q.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!("unknown parameter {k:?} (known: {})", known.join(", "))));
        }
        Ok(Params(q))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn limit(&self) -> Result<i64, ApiError> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(format!("limit must be a whole number from 1 to {MAX_LIMIT}"))),
            },
        }
    }

    fn repo(&self) -> Result<Option<&str>, ApiError> {
        match self.get("repo") {
            None => Ok(None),
            Some(r) if valid_repo(r) => Ok(Some(r)),
            Some(_) => Err(ApiError::bad_request("repo must be OWNER/NAME")),
        }
    }

    fn seq_cursor(&self) -> Result<i64, ApiError> {
        match self.get("after") {
            None => Ok(0),
            Some(v) => v.parse::<i64>().map_err(|_| ApiError::bad_request("after must be the next cursor of a page")),
        }
    }
}

fn valid_repo(r: &str) -> bool {
    match r.split_once('/') {
        Some((o, n)) => !o.is_empty() && !n.is_empty() && !n.contains('/'),
        None => false,
    }
}

#[derive(Serialize)]
struct Page {
    items: Vec<Value>,
    next: Option<String>,
}

fn page(items: Vec<Value>, limit: i64, next: impl FnOnce() -> Option<String>) -> Json<Page> {
    let next = if items.len() as i64 == limit { next() } else { None };
    Json(Page { items, next })
}

/// A row as JSON, with the columns that hold JSON text turned into JSON.
fn with_json_columns(row: &impl Serialize, columns: &[&str]) -> Value {
    let mut v = serde_json::to_value(row).unwrap_or(Value::Null);
    for c in columns {
        if let Some(Value::String(text)) = v.get(*c)
            && let Ok(parsed) = serde_json::from_str::<Value>(text)
        {
            v[*c] = parsed;
        }
    }
    v
}

/// Every column of a request row (shared with the store, so the API never falls behind it).
const REQUEST_COLUMNS: &str = crate::store::requests::COLUMNS;

async fn list_requests(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Page>, ApiError> {
    let p = Params::new(q, &["repo", "state", "limit", "after"])?;
    let limit = p.limit()?;
    use crate::domain::state::RequestStatus;
    if let Some(s) = p.get("state")
        && !RequestStatus::ALL.iter().any(|k| k.as_str() == s)
    {
        let all: Vec<&str> = RequestStatus::ALL.iter().map(|k| k.as_str()).collect();
        return Err(ApiError::bad_request(format!("state must be one of: {}", all.join(", "))));
    }
    // The cursor is the last row's key: installation-repository_id-issue.
    let after = match p.get("after") {
        None => (i64::MIN, i64::MIN, i64::MIN),
        Some(c) => {
            let parts: Vec<i64> = c.split('-').filter_map(|x| x.parse().ok()).collect();
            match parts[..] {
                [a, b, c] => (a, b, c),
                _ => return Err(ApiError::bad_request("after must be the next cursor of a page")),
            }
        }
    };
    let mut f = Filter::new();
    // Row values over the primary key: both backends seek to the cursor and walk from there (for
    // one installation, within its rows: after an equality on the key's first column, SQLite
    // seeks only on a row value of the columns that follow it).
    match scope.installation() {
        Some(installation) => {
            f.eq("installation_id", Some(installation));
            match after.0.cmp(&installation) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    f.and_all("(repository_id, issue) > (?, ?)", [after.1.into(), after.2.into()]);
                }
                std::cmp::Ordering::Greater => return Ok(page(Vec::new(), limit, || None)),
            }
        }
        None => {
            f.and_all(
                "(installation_id, repository_id, issue) > (?, ?, ?)",
                [after.0.into(), after.1.into(), after.2.into()],
            );
        }
    }
    f.eq("repository", p.repo()?).eq("state", p.get("state"));
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE {} ORDER BY installation_id, repository_id, issue LIMIT {}",
        f.sql(),
        f.next()
    );
    let rows: Vec<RequestRow> = filter::query_as(sql, &f, &[limit.into()]).fetch_all(st.db.pool()).await?;
    let last = rows.last().map(|r| format!("{}-{}-{}", r.installation_id, r.repository_id, r.issue));
    let items = rows.iter().map(|r| with_json_columns(r, &["facts", "labels"])).collect();
    Ok(page(items, limit, || last))
}

async fn get_request(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Path((owner, repo, issue)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let issue: i64 = issue.parse().map_err(|_| ApiError::bad_request("the issue must be a number"))?;
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE repository = $1 AND issue = $2 \
         AND ($3 IS NULL OR installation_id = $3) ORDER BY updated_at DESC LIMIT 1"
    );
    let row: Option<RequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(format!("{owner}/{repo}"))
        .bind(issue)
        .bind(scope.installation())
        .fetch_optional(st.db.pool())
        .await?;
    let Some(row) = row.filter(|r| scope.may_read(Some(r.installation_id))) else {
        return Err(ApiError::not_found());
    };
    let approvals = requests::approvals(&st.db, row.installation_id, row.repository_id, row.issue).await?;
    let mut v = with_json_columns(&row, &["facts", "labels"]);
    v["approvals"] = Value::Array(approvals.iter().map(|a| with_json_columns(a, &["roles"])).collect());
    Ok(Json(v))
}

async fn list_audit(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Page>, ApiError> {
    let p = Params::new(q, &["repo", "since", "limit", "after"])?;
    let limit = p.limit()?;
    let since = match p.get("since") {
        None => None,
        Some(s) => Some(audit::parse_since(s, st.clock.now_ms()).map_err(ApiError::bad_request)?),
    };
    let filter = audit::Filter {
        installation: scope.installation(),
        repository: p.repo()?,
        since,
        after: Some(p.seq_cursor()?),
        limit,
    };
    let rows = audit::list(&st.db, &filter).await?;
    let last = rows.last().map(|r| r.seq.to_string());
    Ok(page(rows.iter().map(audit::to_json).collect(), limit, || last))
}

const DELIVERY_COLUMNS: &str = "seq, id, event, action, installation_id, repository, subject, received_at, state, \
    outcome, attempts, next_attempt_at, last_error, finished_at";

async fn list_deliveries(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Page>, ApiError> {
    let p = Params::new(q, &["status", "limit", "after"])?;
    let limit = p.limit()?;
    let status = p.get("status");
    if let Some(s) = status
        && !["pending", "running", "done", "parked"].contains(&s)
    {
        return Err(ApiError::bad_request("status must be one of: pending, running, done, parked"));
    }
    let mut f = Filter::new();
    f.eq("installation_id", scope.installation()).eq("state", status).and("seq > ?", p.seq_cursor()?);
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {} ORDER BY seq LIMIT {}", f.sql(), f.next());
    let rows: Vec<DeliveryRow> = filter::query_as(sql, &f, &[limit.into()]).fetch_all(st.db.pool()).await?;
    let last = rows.last().map(|r| r.seq.to_string());
    let items = rows.iter().map(|r| serde_json::to_value(r).unwrap_or(Value::Null)).collect();
    Ok(page(items, limit, || last))
}

async fn get_delivery(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some(row) = deliveries::find(&st.db, &id).await?.filter(|r| scope.may_read(r.installation_id)) else {
        return Err(ApiError::not_found());
    };
    let attempts = deliveries::attempts(&st.db, row.seq).await?;
    let mut v = serde_json::to_value(&row).unwrap_or(Value::Null);
    v["attempts"] = serde_json::to_value(attempts).unwrap_or(Value::Null);
    Ok(Json(v))
}

/// CI and security incidents, oldest first.
async fn list_incidents(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Page>, ApiError> {
    use crate::store::incidents::{INCIDENT_COLUMNS, IncidentRow};
    let p = Params::new(q, &["repo", "state", "kind", "limit", "after"])?;
    let limit = p.limit()?;
    if let Some(s) = p.get("state")
        && !["open", "closed"].contains(&s)
    {
        return Err(ApiError::bad_request("state must be one of: open, closed"));
    }
    if let Some(k) = p.get("kind")
        && !["ci", "security"].contains(&k)
    {
        return Err(ApiError::bad_request("kind must be one of: ci, security"));
    }
    // The cursor is the last row's id (incident ids sort as text).
    let mut f = Filter::new();
    f.eq("installation_id", scope.installation())
        .eq("repository", p.repo()?)
        .eq("state", p.get("state"))
        .eq("kind", p.get("kind"))
        .and("id > ?", p.get("after").unwrap_or(""));
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE {} ORDER BY id LIMIT {}", f.sql(), f.next());
    let rows: Vec<IncidentRow> = filter::query_as(sql, &f, &[limit.into()]).fetch_all(st.db.pool()).await?;
    let last = rows.last().map(|r| r.id.clone());
    let items = rows.iter().map(|r| with_json_columns(r, &["details"])).collect();
    Ok(page(items, limit, || last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert!(Scope::Admin.may_read(None));
        assert!(Scope::Admin.may_read(Some(2)));
        assert!(Scope::Installation(1).may_read(Some(1)));
        assert!(!Scope::Installation(1).may_read(Some(2)));
        assert!(!Scope::Installation(1).may_read(None));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }

    #[test]
    fn repos() {
        assert!(valid_repo("acme/app"));
        for bad in ["acme", "/app", "acme/", "a/b/c"] {
            assert!(!valid_repo(bad), "{bad}");
        }
    }
}
