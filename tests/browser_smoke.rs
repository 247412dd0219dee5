//! The browser harness (tests/browser/) against two tiny local servers: a form that POSTs across
//! origins and comes back through a 303, cookies, the console, screenshots, two sessions at once,
//! and the browser enforcing a page's Content-Security-Policy (an inline script on a
//! `default-src 'none'` page does not run; the same page without the header runs it).
//!
//! Needs Debian's chromium and chromium-driver (`.ci/run` installs them); fails without them
//! unless SHIPGATE_SKIP_BROWSER_TESTS=1 (see tests/browser/mod.rs).

mod browser;

use std::collections::HashMap;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use browser::{Browser, Viewport};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::json;

const VIEWPORT_META: &str = r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#;

/// A listener on 127.0.0.1, on a port of the system's choosing, and its base URL.
async fn listen() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

fn serve(listener: tokio::net::TcpListener, app: Router) {
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `a=1&b=x+y` as a browser encodes a form.
fn parse_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let d = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (d(k), d(v))
        })
        .collect()
}

/// The site (`a`: the form, the thank-you page, the script pages) and the form's target on
/// another origin (`b`), which answers 303 back to `a` with the name in the query string.
async fn sites() -> (String, String) {
    let ((la, a), (lb, b)) = (listen().await, listen().await);
    let back = a.clone();
    serve(
        lb,
        Router::new().route(
            "/submit",
            post(move |body: String| {
                let form = parse_form(&body);
                let name = form.get("name").map(String::as_str).unwrap_or_default();
                let to = format!("{back}/done?name={}&via=b", utf8_percent_encode(name, NON_ALPHANUMERIC));
                async move { (StatusCode::SEE_OTHER, [(header::LOCATION, to)]) }
            }),
        ),
    );
    let form_page = format!(
        "<!doctype html><html><head>{VIEWPORT_META}<title>Smoke form</title></head><body>\
         <h1>Who are you?</h1>\
         <form id=\"f\" method=\"post\" action=\"{b}/submit\">\
         <label>Name <input id=\"name\" name=\"name\" required></label>\
         <button id=\"go\" type=\"submit\">Send</button></form></body></html>"
    );
    let app = Router::new()
        .route(
            "/form",
            get(move || {
                let cookie = HeaderValue::from_static("seen=1; Path=/; HttpOnly; SameSite=Lax");
                let page = Html(form_page.clone());
                async move { ([(header::SET_COOKIE, cookie)], page) }
            }),
        )
        .route(
            "/done",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let name = escape(q.get("name").map(String::as_str).unwrap_or_default());
                Html(format!(
                    "<!doctype html><html><head>{VIEWPORT_META}<title>Done</title></head>\
                     <body><p id=\"thanks\">Thanks, {name}</p></body></html>"
                ))
            }),
        )
        .route("/csp", get(|| async { script_page(true) }))
        .route("/nocsp", get(|| async { script_page(false) }));
    serve(la, app);
    (a, b)
}

/// A page with an inline script that marks the window, with or without a CSP forbidding it.
fn script_page(csp: bool) -> Response {
    let page = format!(
        "<!doctype html><html><head>{VIEWPORT_META}<title>Script</title></head><body>\
         <p>csp={csp}</p><script>window.__pwned = 1;</script></body></html>"
    );
    let mut r = Html(page).into_response();
    if csp {
        r.headers_mut().insert("content-security-policy", HeaderValue::from_static("default-src 'none'"));
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_post_across_origins_csp_and_screenshot() {
    let Some(br) = Browser::start_or_skip().await else { return };
    let (a, b) = sites().await;

    // The form: a cookie with its attributes, then a POST to b, whose 303 lands back on a.
    br.goto(&format!("{a}/form")).await;
    assert_eq!(br.title().await, "Smoke form");
    let seen = br.cookie("seen").await.expect("the form page's cookie");
    assert_eq!((seen.value.as_str(), seen.http_only, seen.same_site.as_deref()), ("1", true, Some("Lax")));
    assert!(br.text().await.contains("Who are you?"));
    assert!(br.source().await.contains(&format!("action=\"{b}/submit\"")));
    br.fill("#name", "Ada & <Grace>").await;
    br.click_and_wait("#go").await;
    let url = br.current_url().await;
    assert!(url.starts_with(&format!("{a}/done?name=Ada%20%26%20%3CGrace%3E")), "{url}");
    assert!(url.ends_with("&via=b"), "{url}");
    assert_eq!(br.text().await, "Thanks, Ada & <Grace>");
    assert_eq!(br.text_of("#thanks").await, "Thanks, Ada & <Grace>");

    // The same form through submit() (requestSubmit: the `required` field is checked).
    br.goto(&format!("{a}/form")).await;
    br.fill("#name", "Linus").await;
    br.submit("#name").await;
    br.wait_for_text("Thanks, Linus").await;
    assert!(br.current_url().await.starts_with(&format!("{a}/done?name=Linus")));

    // The control: without a CSP the inline script runs, so the check below can fail.
    br.goto(&format!("{a}/nocsp")).await;
    assert_eq!(br.eval("window.__pwned").await, json!(1));
    let _ = br.console().await;

    // With `default-src 'none'` the browser refuses to run it, and says so on the console.
    br.goto(&format!("{a}/csp")).await;
    assert_eq!(br.text().await, "csp=true");
    assert_eq!(br.eval("typeof window.__pwned").await, json!("undefined"));
    assert_eq!(br.eval("window.__pwned").await, json!(null));
    let errors = br.js_errors().await;
    assert!(errors.iter().any(|e| e.contains("Content Security Policy")), "{errors:?}");

    let png = br.screenshot("browser_smoke").await;
    let bytes = std::fs::read(&png).expect("the screenshot");
    assert!(png.ends_with("test-artifacts/browser_smoke.png"), "{}", png.display());
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {}", png.display());
    br.close().await;
}

/// Two sessions at once, each with its own chromedriver, profile and viewport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_separate_and_sized() {
    let (Some(phone), Some(desk)) =
        tokio::join!(Browser::start_or_skip(), Browser::start_or_skip_with(Viewport::DESKTOP))
    else {
        return;
    };
    let (a, _) = sites().await;
    let (form, nocsp) = (format!("{a}/form"), format!("{a}/nocsp"));
    tokio::join!(phone.goto(&form), desk.goto(&nocsp));
    assert_eq!(phone.eval("[innerWidth, innerHeight]").await, json!([390, 844]));
    assert_eq!(desk.eval("[innerWidth, innerHeight]").await, json!([1280, 800]));
    assert!(phone.cookie("seen").await.is_some());
    assert!(desk.cookies().await.is_empty(), "the desktop session saw the phone's cookie");

    // A phone turned into a desktop stays one across navigations.
    phone.set_viewport(Viewport::DESKTOP).await;
    phone.goto(&nocsp).await;
    assert_eq!(phone.eval("innerWidth").await, json!(1280));
    phone.close().await;
    drop(desk); // killed rather than closed: the drop path
}
