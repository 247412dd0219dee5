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
.pass{color:#116329}.fail{color:#82071e}.pending{color:#7d4e00}\
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
        "default-src 'none'; style-src 'sha256-{}'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'; {form}",
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
