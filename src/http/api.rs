//! The read-only JSON API: `GET /api/...` with `Authorization: Bearer <token>`.
//!
//! * A per-installation token (`shipgate api-token create`) reads only rows of its installation;
//!   anything else answers 404, as if it did not exist, whether listed or asked for by id.
//! * The admin token (`SHIPGATE_ADMIN_TOKEN`, compared in constant time) reads everything.
//! * No token, or one we do not know: 401 with a JSON error.
//!
//! Routes: `/api/requests?repo=&state=`, `/api/requests/{owner}/{repo}/{issue}` (with its
//! approvals), `/api/audit?repo=&since=`, `/api/deliveries?status=`, `/api/deliveries/{id}`,
//! `/api/incidents?repo=&state=&kind=`, `/api/reports/{owner}/{repo}?week=&since=&format=`.
//! Lists take `?limit=` (1–500, default 100) and `?after=` (the `next` cursor of the previous
//! page) and answer `{"items": [...], "next": cursor or null}` in ascending order.
//! What they answer is typed in `api_types`; `/api/openapi.json` (no token needed) describes it
//! all, generated from those types and the `#[utoipa::path]`s here. docs/api.md shows examples.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::OpenApi;

use super::AppState;
use super::api_types::{
    Approval, AuditEntry, AuditPage, Delivery, DeliveryDetail, DeliveryPage, DeliveryState, Incident, IncidentPage,
    Request, RequestDetail, RequestPage,
};
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
        .route("/api/reports/{owner}/{repo}", get(get_report))
        .route("/api/openapi.json", get(openapi_json))
}

/// The API's OpenAPI document, generated from the types the handlers answer with.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "shipgate read-only API",
        description = "Deployment requests, approvals, the audit log, webhook deliveries and incidents, read with \
                       `Authorization: Bearer <token>`: an installation's token (`shipgate api-token create`) reads \
                       only its installation, the admin token (SHIPGATE_ADMIN_TOKEN) everything. Lists are oldest \
                       first; pass a page's `next` as `after` for the following page."
    ),
    paths(list_requests, get_request, list_audit, list_deliveries, get_delivery, list_incidents, get_report),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

impl ApiDoc {
    /// The document as JSON text (made once).
    pub fn openapi_json() -> &'static str {
        static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes"))
    }
}

/// The OpenAPI document, as JSON. Public: it describes the API, and holds no data.
async fn openapi_json() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], ApiDoc::openapi_json()).into_response()
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
        match api_tokens::lookup(&st.db, token, api_tokens::TokenScope::Read).await? {
            api_tokens::Lookup::Valid { installation, suspended: false } => {
                Ok(Caller(Scope::Installation(installation)))
            }
            api_tokens::Lookup::Valid { installation, suspended: true } => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("installation {installation} is suspended: its tokens answer again once it is unsuspended"),
            )),
            api_tokens::Lookup::WrongScope(have) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this token's scope is `{have}`: the API reads with a `read` token"),
            )),
            api_tokens::Lookup::Unknown => Err(unauthorized("unknown token")),
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

/// A page: `next` is the last item's cursor when the page is full (there may be more).
fn next_cursor<T>(items: &[T], limit: i64, cursor: impl FnOnce(&T) -> String) -> Option<String> {
    if items.len() as i64 == limit { items.last().map(cursor) } else { None }
}

/// Every column of a request row (shared with the store, so the API never falls behind it).
const REQUEST_COLUMNS: &str = crate::store::requests::COLUMNS;

/// Deployment requests, by installation, repository and issue.
#[utoipa::path(
    get,
    path = "/api/requests",
    tag = "requests",
    params(
        ("repo" = Option<String>, Query, description = "Only this repository: OWNER/NAME"),
        ("state" = Option<crate::domain::state::RequestStatus>, Query, description = "Only requests in this state"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Items per page (100)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of requests", body = RequestPage),
        (status = 400, description = "A parameter the route does not know, or a value it does not accept", body = super::api_types::Error),
        (status = 401, description = "No token, or one the App does not know", body = super::api_types::Error),
        (status = 403, description = "The token's installation is suspended", body = super::api_types::Error),
    )
)]
async fn list_requests(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<RequestPage>, ApiError> {
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
                std::cmp::Ordering::Greater => return Ok(Json(RequestPage { items: Vec::new(), next: None })),
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
    let next = next_cursor(&rows, limit, |r| format!("{}-{}-{}", r.installation_id, r.repository_id, r.issue));
    Ok(Json(RequestPage { items: rows.iter().map(Request::from).collect(), next }))
}

/// One request, with every approval given on it.
#[utoipa::path(
    get,
    path = "/api/requests/{owner}/{repo}/{issue}",
    tag = "requests",
    params(
        ("owner" = String, Path, description = "The repository's owner"),
        ("repo" = String, Path, description = "The repository's name"),
        ("issue" = i64, Path, description = "The request's issue number"),
    ),
    responses(
        (status = 200, description = "The request and its approvals", body = RequestDetail),
        (status = 400, description = "A parameter the route does not know, or a value it does not accept", body = super::api_types::Error),
        (status = 401, description = "No token, or one the App does not know", body = super::api_types::Error),
        (status = 403, description = "The token's installation is suspended", body = super::api_types::Error),
        (status = 404, description = "No such request (or not this token's installation)", body = super::api_types::Error),
    )
)]
async fn get_request(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Path((owner, repo, issue)): Path<(String, String, String)>,
) -> Result<Json<RequestDetail>, ApiError> {
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
    Ok(Json(RequestDetail { request: Request::from(&row), approvals: approvals.iter().map(Approval::from).collect() }))
}

/// The audit log, in append order.
#[utoipa::path(
    get,
    path = "/api/audit",
    tag = "audit",
    params(
        ("repo" = Option<String>, Query, description = "Only this repository: OWNER/NAME"),
        ("since" = Option<String>, Query, description = "Only entries since: a duration back from now (`7d`, `24h`) or an RFC 3339 time"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Items per page (100)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of audit entries", body = AuditPage),
        (status = 400, description = "A parameter the route does not know, or a value it does not accept", body = super::api_types::Error),
        (status = 401, description = "No token, or one the App does not know", body = super::api_types::Error),
        (status = 403, description = "The token's installation is suspended", body = super::api_types::Error),
    )
)]
async fn list_audit(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<AuditPage>, ApiError> {
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
    let next = next_cursor(&rows, limit, |r| r.seq.to_string());
    Ok(Json(AuditPage { items: rows.iter().map(AuditEntry::from).collect(), next }))
}

const DELIVERY_COLUMNS: &str = "seq, id, event, action, installation_id, repository, subject, received_at, state, \
    outcome, attempts, next_attempt_at, last_error, finished_at";

/// Webhook deliveries, in the order they were stored. Bodies are never returned.
#[utoipa::path(
    get,
    path = "/api/deliveries",
    tag = "deliveries",
    params(
        ("status" = Option<DeliveryState>, Query, description = "Only deliveries in this state"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Items per page (100)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "A parameter the route does not know, or a value it does not accept", body = super::api_types::Error),
        (status = 401, description = "No token, or one the App does not know", body = super::api_types::Error),
        (status = 403, description = "The token's installation is suspended", body = super::api_types::Error),
    )
)]
async fn list_deliveries(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let p = Params::new(q, &["status", "limit", "after"])?;
    let limit = p.limit()?;
    let status = p.get("status");
    if let Some(s) = status
        && !DeliveryState::ALL.iter().any(|d| d.as_str() == s)
    {
        let all: Vec<&str> = DeliveryState::ALL.iter().map(|d| d.as_str()).collect();
        return Err(ApiError::bad_request(format!("status must be one of: {}", all.join(", "))));
    }
    let mut f = Filter::new();
    f.eq("installation_id", scope.installation()).eq("state", status).and("seq > ?", p.seq_cursor()?);
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {} ORDER BY seq LIMIT {}", f.sql(), f.next());
    let rows: Vec<DeliveryRow> = filter::query_as(sql, &f, &[limit.into()]).fetch_all(st.db.pool()).await?;
    let next = next_cursor(&rows, limit, |r| r.seq.to_string());
    Ok(Json(DeliveryPage { items: rows.iter().map(Delivery::from).collect(), next }))
}

/// One delivery, with its attempts.
#[utoipa::path(
    get,
    path = "/api/deliveries/{id}",
    tag = "deliveries",
    params(("id" = String, Path, description = "GitHub's delivery id (X-GitHub-Delivery)")),
    responses(
        (status = 200, description = "The delivery and its attempts", body = DeliveryDetail),
        (status = 400, description = "A parameter the route does not know, or a value it does not accept", body = super::api_types::Error),
        (status = 401, description = "No token, or one the App does not know", body = super::api_types::Error),
        (status = 403, description = "The token's installation is suspended", body = super::api_types::Error),
        (status = 404, description = "No such delivery (or not this token's installation)", body = super::api_types::Error),
    )
)]
async fn get_delivery(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let Some(row) = deliveries::find(&st.db, &id).await?.filter(|r| scope.may_read(r.installation_id)) else {
        return Err(ApiError::not_found());
    };
    let attempts = deliveries::attempts(&st.db, row.seq).await?;
    Ok(Json(DeliveryDetail {
        delivery: Delivery::from(&row),
        attempt_history: attempts.iter().map(super::api_types::Attempt::from).collect(),
    }))
}

/// CI and security incidents, by id.
#[utoipa::path(
    get,
    path = "/api/incidents",
    tag = "incidents",
    params(
        ("repo" = Option<String>, Query, description = "Only this repository: OWNER/NAME"),
        ("state" = Option<super::api_types::IncidentState>, Query, description = "Only open or only closed incidents"),
        ("kind" = Option<super::api_types::IncidentKind>, Query, description = "Only CI or only security incidents"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Items per page (100)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of incidents", body = IncidentPage),
        (status = 400, description = "A parameter the route does not know, or a value it does not accept", body = super::api_types::Error),
        (status = 401, description = "No token, or one the App does not know", body = super::api_types::Error),
        (status = 403, description = "The token's installation is suspended", body = super::api_types::Error),
    )
)]
async fn list_incidents(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<IncidentPage>, ApiError> {
    use crate::store::incidents::{INCIDENT_COLUMNS, IncidentRow};
    let p = Params::new(q, &["repo", "state", "kind", "limit", "after"])?;
    let limit = p.limit()?;
    if let Some(s) = p.get("state")
        && !["open", "closed"].contains(&s)
    {
        return Err(ApiError::bad_request("state must be one of: open, closed"));
    }
    if let Some(k) = p.get("kind")
        && !["ci", "security", "alert", "review"].contains(&k)
    {
        return Err(ApiError::bad_request("kind must be one of: ci, security, alert, review"));
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
    let next = next_cursor(&rows, limit, |r| r.id.clone());
    Ok(Json(IncidentPage { items: rows.iter().map(Incident::from).collect(), next }))
}

/// A repository's figures: the weekly report (docs/figures.md documents the JSON).
#[utoipa::path(
    get,
    path = "/api/reports/{owner}/{repo}",
    tag = "reports",
    params(
        ("owner" = String, Path, description = "The repository's owner"),
        ("repo" = String, Path, description = "The repository's name"),
        ("week" = Option<String>, Query, description = "An ISO week, `2026-W49` (default: the last complete week in the policy's time zone)"),
        ("since" = Option<String>, Query, description = "Instead of a week: a window up to now, `7d`, `24h`"),
        ("format" = Option<String>, Query, description = "`json` (default) or `markdown` (the issue's body, as text/markdown)"),
    ),
    responses(
        (status = 200, description = "The report: figures, targets met or not, the previous week, the last 8 weeks (with `format=markdown`: the issue's body as text/markdown)", body = super::api_types::Report),
        (status = 400, description = "A parameter the route does not know, or a value it does not accept", body = super::api_types::Error),
        (status = 401, description = "No token, or one the App does not know", body = super::api_types::Error),
        (status = 403, description = "The token's installation is suspended", body = super::api_types::Error),
        (status = 404, description = "No such repository (or not this token's installation)", body = super::api_types::Error),
    )
)]
async fn get_report(
    State(st): State<Arc<AppState>>,
    Caller(scope): Caller,
    Path((owner, repo)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    use crate::domain::report;
    let p = Params::new(q, &["week", "since", "format"])?;
    let full = format!("{owner}/{repo}");
    if !valid_repo(&full) {
        return Err(ApiError::bad_request("the repository must be OWNER/NAME"));
    }
    let format = p.get("format").unwrap_or("json");
    if !["json", "markdown"].contains(&format) {
        return Err(ApiError::bad_request("format must be one of: json, markdown"));
    }
    let period = report::Period::parse(p.get("week"), p.get("since")).map_err(|e| ApiError::bad_request(&e))?;
    let now = st.clock.now_ms();
    let found = crate::handlers::report::for_repository(&st.db, &full, scope.installation(), period, now).await?;
    // A token of another installation finds nothing (the query is scoped to its installation).
    let Some(r) = found else {
        return Err(ApiError::not_found());
    };
    Ok(match format {
        "markdown" => {
            ([(axum::http::header::CONTENT_TYPE, "text/markdown; charset=utf-8")], report::markdown(&r)).into_response()
        }
        _ => Json(report::json(&r)).into_response(),
    })
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
