//! The web pages (SPEC.md §6): server-rendered HTML, readable without JavaScript and on a phone.
//! Every page carries a strict Content-Security-Policy (no script at all, its one stylesheet by
//! hash), asks browsers not to send its address on (signed links live in it), and sets no cookie
//! but `/setup`'s state. maud escapes every interpolated string.

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::{Digest, Sha256};

use crate::domain::links::LinkKey;

/// What the pages need besides the database.
pub struct Pages {
    /// Signs and checks the details pages' links.
    pub link_key: LinkKey,
    /// `SHIPGATE_PUBLIC_URL`.
    pub public_url: Option<String>,
    /// Where people see GitHub (links to issues, commits, accounts).
    pub github_web_url: String,
    /// How long a minted link stays valid.
    pub link_ttl: std::time::Duration,
}

/// The pages' one stylesheet, inline and allowed by its hash: small-screen first, no web fonts.
pub const CSS: &str = "\
body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328;background:#fff}\
main{max-width:60rem;margin:0 auto;padding:1rem}\
h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.15rem;margin:1.6rem 0 .5rem;border-bottom:1px solid #d0d7de}\
table{border-collapse:collapse;width:100%;margin:.5rem 0;display:block;overflow-x:auto}\
th,td{text-align:left;vertical-align:top;padding:.35rem .5rem;border-bottom:1px solid #d0d7de}\
th{background:#f6f8fa;font-weight:600}\
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85em;word-break:break-all}\
.verdict{padding:.6rem .8rem;border-radius:6px;margin:.5rem 0 1rem;font-weight:600}\
.open{background:#dafbe1;color:#116329}.closed{background:#ffebe9;color:#82071e}.waiting{background:#fff8c5;color:#4d2d00}\
.pass{color:#116329}.fail{color:#82071e}.pending{color:#7d4e00}.pass,.fail,.pending{white-space:nowrap}\
.muted{color:#59636e;font-size:.9em}.pre{white-space:pre-wrap;overflow-wrap:anywhere}\
form{margin:.8rem 0}button,input[type=submit]{font:inherit;padding:.5rem 1rem;border-radius:6px;border:1px solid #1f883d;background:#1f883d;color:#fff}\
input[type=text]{font:inherit;padding:.4rem;border:1px solid #d0d7de;border-radius:6px;max-width:100%}\
footer{margin-top:2rem;color:#59636e;font-size:.85em}";

static STYLE_HASH: LazyLock<String> =
    LazyLock::new(|| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS.as_bytes())));

/// The Content-Security-Policy of every page: nothing loads or runs but the inline stylesheet;
/// forms may post only to `form_action` (GitHub's App registration page for `/setup`).
pub fn csp(form_action: Option<&str>) -> String {
    let form = form_action.map(|o| format!("form-action {o}")).unwrap_or_else(|| "form-action 'self'".into());
    format!(
        "default-src 'none'; style-src 'sha256-{}'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; {form}",
        *STYLE_HASH
    )
}

/// A whole page.
pub fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                // No icon to fetch (a browser asks for /favicon.ico otherwise).
                link rel="icon" href="data:,";
                title { (title) " · shipgate" }
                style { (PreEscaped(CSS)) }
            }
            body {
                main {
                    (body)
                    footer { "shipgate" }
                }
            }
        }
    }
}

/// A page as a response, with the headers every page carries.
pub fn respond(status: StatusCode, title: &str, body: Markup, form_action: Option<&str>) -> Response {
    let mut r = (status, document(title, body).into_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&csp(form_action)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// A refused link: 403, and nothing about what it named.
pub fn forbidden() -> Response {
    respond(
        StatusCode::FORBIDDEN,
        "Link not valid",
        html! {
            h1 { "This link is not valid" }
            p { "It was changed, it has expired, or its page is not this link's to show. "
                "Open the page again from the issue's comment or the check run on GitHub: each update writes a fresh link." }
        },
        None,
    )
}

/// 404 for a page that is not served here.
pub fn not_found(why: &str) -> Response {
    respond(StatusCode::NOT_FOUND, "Not found", html! { h1 { "Not found" } p { (why) } }, None)
}

// ---- The details pages ------------------------------------------------------------------------

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};

use super::AppState;
use crate::domain::flow::Remembered;
use crate::domain::gate::GateState;
use crate::domain::links::{Link, Page};
use crate::domain::messages::{Shown, Verdict, short, timestamp};
use crate::store::{audit, deploys, incidents, requests, tenancy};

/// At most this many audit entries on a page (the rest through `shipgate audit export`).
const AUDIT_ROWS: i64 = 500;

/// The link's identity from the path and query, if it is well formed and its signature and expiry
/// hold, and its repository is still served by the installation it names. Anything else is the
/// same 403.
async fn checked(
    st: &AppState,
    installation: &str,
    repository: &str,
    page: Page,
    q: &HashMap<String, String>,
) -> Option<Link> {
    if q.keys().any(|k| k != "expires" && k != "sig") {
        return None;
    }
    let installation: i64 = installation.parse().ok()?;
    let repository_id: i64 = repository.parse().ok()?;
    let expires: i64 = q.get("expires")?.parse().ok()?;
    let link = Link { installation, repository_id, page, expires };
    let now_s = st.clock.now_ms().div_euclid(1000);
    if let Err(why) = st.pages.link_key.verify(&link, q.get("sig")?, now_s) {
        tracing::info!(installation, repository_id, ?why, "details link refused");
        return None;
    }
    // A repository moved to another installation, removed, or an installation suspended or
    // deleted: its pages are no longer this link's to show.
    match tenancy::serving(&st.db, repository_id).await {
        Ok(Some((serving, _))) if serving == installation => Some(link),
        Ok(_) => {
            tracing::info!(
                installation,
                repository_id,
                "details link for a repository its installation does not serve"
            );
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "details page: database unreachable");
            None
        }
    }
}

fn unavailable() -> Response {
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        html! { h1 { "Unavailable" } p { "The App cannot read its database just now; try again in a moment." } },
        None,
    )
}

/// Text with its `code spans` as <code>, everything escaped: what the App writes in markdown
/// (gate details name checks and files that way) reads the same here.
fn inline(text: &str) -> Markup {
    let parts: Vec<&str> = text.split('`').collect();
    // An odd count of backticks: the last one opens nothing.
    let closed = parts.len() % 2 == 1;
    html! {
        @for (i, part) in parts.iter().enumerate() {
            @if i % 2 == 1 && (closed || i + 1 < parts.len()) { code { (part) } }
            @else if i % 2 == 1 { "`" (part) }
            @else { (part) }
        }
    }
}

fn state_cell(s: GateState) -> Markup {
    match s {
        GateState::Pass => html! { span.pass { "✓ passes" } },
        GateState::Pending => html! { span.pending { "◷ waiting" } },
        GateState::Fail => html! { span.fail { "✗ fails" } },
    }
}

fn when(ms: Option<i64>) -> String {
    ms.map(timestamp).unwrap_or_else(|| "—".into())
}

/// A link only to an http(s) address (a status's log URL is whatever its creator wrote).
fn safe_href(url: &str) -> Option<&str> {
    (url.starts_with("https://") || url.starts_with("http://")).then_some(url)
}

/// A path or query axum cannot read (bad percent-encoding, not UTF-8): the same 403 as a bad link,
/// with the pages' headers.
type Segments = Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>;
type Params = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

/// `GET /requests/{installation}/{repository}/{issue}?expires=…&sig=…`
pub async fn request_page(State(st): State<Arc<AppState>>, path: Segments, query: Params) -> Response {
    let (Ok(Path((installation, repository, issue))), Ok(Query(q))) = (path, query) else { return forbidden() };
    let Ok(issue) = issue.parse::<i64>() else { return forbidden() };
    let Some(link) = checked(&st, &installation, &repository, Page::Request { issue }, &q).await else {
        return forbidden();
    };
    let (inst, repo) = (link.installation, link.repository_id);
    let row = match requests::get(&st.db, inst, repo, issue).await {
        Ok(Some(r)) => r,
        Ok(None) => return forbidden(),
        Err(_) => return unavailable(),
    };
    let (approvals, deployments, (entries, total)) = match tokio::try_join!(
        requests::approvals(&st.db, inst, repo, issue),
        deploys::for_request(&st.db, inst, repo, issue),
        audit::for_issue(&st.db, inst, repo, issue, AUDIT_ROWS),
    ) {
        Ok(x) => x,
        Err(_) => return unavailable(),
    };
    let memory: Remembered = serde_json::from_str(&row.facts).unwrap_or_default();
    let view = memory.view.clone().unwrap_or_default();
    let web = st.pages.github_web_url.trim_end_matches('/');
    let issue_url = format!("{web}/{}/issues/{issue}", row.repository);
    let title = format!(
        "{} → {}",
        view.service.as_deref().unwrap_or("(service?)"),
        view.environment.as_deref().or(row.environment.as_deref()).unwrap_or("(environment?)")
    );
    let body = html! {
        p.muted { a href=(issue_url) { (row.repository) " #" (issue) } " · deployment request by @" (row.author_login) }
        h1 { (title) }
        (verdict(&view, memory.view.is_some()))
        p { "State: " strong { (row.state) } " · revision " (row.revision)
            @if let Some(by) = &row.hold_by { " · on hold by @" (by) }
            @if let Some(by) = &row.denied_by { " · denied by @" (by) @if let Some(r) = &row.deny_reason { ": " (r) } }
        }
        (gates(&view))
        (roles(&view))
        @if !view.stale.is_empty() {
            h2 { "Approvals that no longer count" }
            ul { @for (login, why) in &view.stale { li { "@" (login) ": " (inline(why)) } } }
        }
        @if !view.notes.is_empty() {
            h2 { "Notes" }
            ul { @for n in &view.notes { li.pre { (inline(n)) } } }
        }
        @if !view.problems.is_empty() {
            h2 { "What the request is missing" }
            ul { @for (field, msg) in &view.problems { li { strong { (field) } ": " (inline(msg)) } } }
        }
        @if !view.config_errors.is_empty() {
            h2 { code { ".github/shipgate.yml" } " is invalid" }
            ul { @for e in &view.config_errors { li.pre { (inline(e)) } } }
        }
        h2 { "Approvals given" }
        @if approvals.is_empty() { p.muted { "None yet." } } @else {
            table {
                tr { th { "Who" } th { "Roles" } th { "For commits" } th { "Revision" } th { "State" } th { "When" } }
                @for a in &approvals {
                    @let roles: Vec<String> = serde_json::from_str(&a.roles).unwrap_or_default();
                    tr {
                        td { "@" (a.login) br; span.muted { "id " (a.user_id) } }
                        td { (roles.join(", ")) }
                        td.mono { @for sha in a.head_shas.split(',').filter(|s| !s.is_empty()) { (short(sha)) " " } }
                        td { (a.revision) }
                        td {
                            @match a.state.as_str() {
                                "active" => span.pass { "counts" },
                                "stale" => span.fail { "stale" },
                                other => span.muted { (other) },
                            }
                            @if let Some(n) = &a.note { br; span.muted { (n) } }
                        }
                        td { (timestamp(a.created_at)) }
                    }
                }
            }
        }
        h2 { "Covered commits" }
        @if memory.prs.is_empty() && memory.commit.is_none() { p.muted { "No pull request or commit read yet." } } @else {
            table {
                tr { th { "Pull request" } th { "Head commit" } th { "State" } th { "Checks" } }
                @for p in &memory.prs {
                    tr {
                        td { a href=(format!("{web}/{}/pull/{}", row.repository, p.number)) { "#" (p.number) } }
                        td.mono { (p.head_sha) @if let Some(m) = &p.merge_commit { br; "merged as " (m) } }
                        td { (p.state) }
                        td {
                            @if p.checks.is_empty() { span.muted { "none" } }
                            @for c in &p.checks {
                                (c.name) ": " (c.conclusion.as_deref().unwrap_or(&c.status)) br;
                            }
                        }
                    }
                }
                @if let Some(c) = &memory.commit { tr { td { "(commit)" } td.mono { (c) } td {} td {} } }
            }
        }
        h2 { "Deployments" }
        @if deployments.is_empty() { p.muted { "None yet." } } @else {
            table {
                tr { th { "Deployment" } th { "Commit" } th { "State" } th { "Created" } th { "Started" } th { "Finished" } }
                @for d in &deployments {
                    tr {
                        td { (d.deployment_id) " · " (d.environment) @if d.rollback != 0 { " · rollback" } br; span.muted { (d.origin) } }
                        td.mono { (short(&d.sha)) }
                        td { (d.state)
                            @if let Some(u) = d.log_url.as_deref().and_then(safe_href) { br; a href=(u) { "log" } }
                        }
                        td { (timestamp(d.created_at)) }
                        td { (when(d.started_at)) }
                        td { (when(d.finished_at)) }
                    }
                }
            }
        }
        h2 { "The request as read" }
        table {
            @for (k, v) in &view.fields {
                tr { th { (k) } td.pre { @match v { Some(v) => (v), None => em.muted { "missing" } } } }
            }
        }
        (audit_table(&entries, total))
        p.muted { "Last evaluated " (timestamp(row.updated_at)) ". This link is valid until " (timestamp(link.expires * 1000)) "." }
    };
    respond(StatusCode::OK, &format!("{} #{issue}", row.repository), body, None)
}

fn verdict(view: &Shown, evaluated: bool) -> Markup {
    if !evaluated {
        return html! { p.verdict.waiting { "Not evaluated yet." } };
    }
    match view.verdict {
        Verdict::Open => html! { p.verdict.open { "✓ The gate is open: every condition is met." } },
        Verdict::Closed => html! { p.verdict.closed { "✗ The gate is closed." } },
        Verdict::Waiting => html! { p.verdict.waiting { "◷ Waiting for what is listed below." } },
    }
}

fn gates(view: &Shown) -> Markup {
    html! {
        h2 { "Gates" }
        @if view.gates.is_empty() { p.muted { "None evaluated yet." } } @else {
            table {
                tr { th { "Gate" } th { "" } th { "Why" } }
                @for g in &view.gates {
                    tr.gate { td { (g.name) } td { (state_cell(g.state)) } td.pre { (inline(&g.detail)) } }
                }
            }
        }
        p.muted { "The check run said: " (view.check.1) " (" (view.check.0) ")." }
    }
}

fn roles(view: &Shown) -> Markup {
    html! {
        @if !view.roles.is_empty() {
            h2 { "Approvals needed" }
            table {
                tr { th { "Role" } th { "" } th { "Who may approve" } }
                @for r in &view.roles {
                    tr.role {
                        td { (r.role) @if let Some(b) = &r.because { br; span.muted { "changes under " (b) } } }
                        td { @match &r.approved_by { Some(by) => span.pass { "✓ @" (by) }, None => span.pending { "◷ needed" } } }
                        td { (r.who) }
                    }
                }
            }
        }
    }
}

fn audit_table(entries: &[audit::AuditRow], total: i64) -> Markup {
    html! {
        h2 { "Audit entries" }
        @if entries.is_empty() { p.muted { "None." } } @else {
            p.muted { "From the installation's tamper-evident chain; " code { "shipgate audit verify" } " checks it whole." }
            @if total > entries.len() as i64 {
                p.verdict.waiting {
                    "The newest " (entries.len()) " of " (total) " entries; the " (total - entries.len() as i64)
                    " older ones are left out here (" code { "shipgate audit export --repo" } " has them all)."
                }
            }
            table {
                tr { th { "#" } th { "When" } th { "What" } th { "Who" } th { "Detail" } th { "Hash" } }
                @for e in entries {
                    tr {
                        td { (e.position) }
                        td { (timestamp(e.at)) }
                        td { code { (e.kind) } }
                        td { @if let Some(l) = &e.actor_login { "@" (l) } @else { span.muted { "shipgate" } } }
                        td.mono { (e.detail) }
                        td.mono { (e.hash) }
                    }
                }
            }
        }
    }
}

/// `GET /incidents/{installation}/{repository}/{marker}?expires=…&sig=…`
pub async fn incident_page(State(st): State<Arc<AppState>>, path: Segments, query: Params) -> Response {
    let (Ok(Path((installation, repository, marker))), Ok(Query(q))) = (path, query) else { return forbidden() };
    let Some(link) = checked(&st, &installation, &repository, Page::Incident { marker: marker.clone() }, &q).await
    else {
        return forbidden();
    };
    let i = match incidents::get(&st.db, link.installation, link.repository_id, &marker).await {
        Ok(Some(i)) => i,
        Ok(None) => return forbidden(),
        Err(_) => return unavailable(),
    };
    let details: serde_json::Value = serde_json::from_str(&i.details).unwrap_or_default();
    let web = st.pages.github_web_url.trim_end_matches('/');
    let rows: Vec<(&str, String)> = vec![
        ("Kind", i.kind.clone()),
        ("State", i.state.clone()),
        ("Branch", if i.branch.is_empty() { "—".into() } else { i.branch.clone() }),
        ("Opened", timestamp(i.opened_at)),
        ("First failure", timestamp(i.first_failure_at)),
        ("Failures", i.failures.to_string()),
        ("Respond by", timestamp(i.deadline)),
        (
            "Escalated",
            match i.escalated_at {
                Some(at) => format!("{} to {}", timestamp(at), if i.mentions.is_empty() { "—" } else { &i.mentions }),
                None => "no".into(),
            },
        ),
        ("Recovered", when(i.recovered_at)),
        ("Time to recovery", i.ttr_ms.map(crate::domain::messages::duration).unwrap_or_else(|| "—".into())),
        ("Flaky", if i.flaky != 0 { "yes: closed by a re-run of the failing commit".into() } else { "no".into() }),
    ];
    let body = html! {
        p.muted { a href=(format!("{web}/{}", i.repository)) { (i.repository) } " · incident" }
        h1 { (i.title) }
        @if i.state == "open" { p.verdict.closed { "Open" } } @else { p.verdict.open { "Closed" } }
        table { @for (k, v) in &rows { tr { th { (k) } td { (v) } } } }
        @if let Some(obj) = details.as_object().filter(|o| !o.is_empty()) {
            h2 { "What the issue shows" }
            table {
                @for (k, v) in obj {
                    tr { th { (k) } td.mono { @match v.as_str() { Some(s) => (s), None => (v.to_string()) } } }
                }
            }
        }
        p.muted { "This link is valid until " (timestamp(link.expires * 1000)) "." }
    };
    respond(StatusCode::OK, &i.title, body, None)
}
