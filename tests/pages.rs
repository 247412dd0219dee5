//! The details pages (SPEC.md §6, issue 18): the signed link the App writes into the sticky
//! comment and the check run opens a page showing the same result tree; a forged, expired, or
//! other-installation link shows nothing; what requesters write is shown as text. Over HTTP here,
//! and in real headless Chromium (`tests/browser`), on both backends.

mod browser;
mod common;
mod fake_github;
mod world;

use common::TestDb;
use shipgate::domain::links::{Link, LinkKey, Page};
use world::*;

const PUBLIC: &str = "https://shipgate.example";

/// The key the App signs links with under the tests' audit key (as `shipgate link` derives it).
fn key() -> LinkKey {
    LinkKey::new(shipgate::store::audit::AuditKey::new(shipgate::config::TEST_AUDIT_KEY).derive("details-links"))
}

async fn world(db: &TestDb, policy: &str) -> World {
    World::with_config(db, policy, |c| c.public_url = Some(PUBLIC.into())).await
}

/// The details link in the sticky comment, pointed at the test's App.
fn link_in(comment: &str, app: &str) -> String {
    let start =
        comment.find(&format!("{PUBLIC}/requests/")).unwrap_or_else(|| panic!("no details link in:\n{comment}"));
    let end = start + comment[start..].find(')').expect("the link's end");
    comment[start..end].replace(PUBLIC, app)
}

/// The gate check run's details_url on `sha`.
fn details_url(w: &World, sha: &str) -> Option<String> {
    let m = w.gh.model();
    let run = m
        .check_runs
        .iter()
        .find(|r| r.head_sha == sha && r.body["name"].as_str().is_some_and(|n| n.starts_with("shipgate /")))
        .expect("a gate check run");
    run.body["details_url"].as_str().map(str::to_string)
}

async fn get(w: &World, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = w.app.http.get(url).send().await.expect("GET");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.expect("body"))
}

/// A request whose gate is closed (a failing check), then open (green, both approvals): the page
/// says so each time, with the names; the comment and the check run link the same page.
async fn the_page_shows_what_the_comment_shows(db: &TestDb) {
    let w = world(db, POLICY).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("failure"));
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("The gate is closed"), "{c}");
    assert!(!c.contains("shipgate:details-link"), "the placeholder is replaced:\n{c}");
    let link = link_in(&c, &w.app.url);
    let from_check = details_url(&w, SHA).expect("the check run links the details page");
    assert!(from_check.starts_with(&format!("{PUBLIC}/requests/{INST}/{REPO_ID}/5?expires=")), "{from_check}");

    let (status, headers, page) = get(&w, &link).await;
    assert_eq!(status, 200, "{page}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers.get("set-cookie").is_none(), "the page sets no cookie");
    assert!(page.contains("The gate is closed"), "{page}");
    assert!(
        page.contains("✗ fails") && page.contains("<code>build</code> failure on #12"),
        "the failing check is named:\n{page}"
    );
    assert!(page.contains("backend-lead") && page.contains("@acme/backend-leads"), "who may approve:\n{page}");
    assert!(page.contains("acme/app #5") && page.contains("request.parsed"), "the audit entries:\n{page}");
    // The check run's link opens the same page.
    let (status, _, same) = get(&w, &from_check.replace(PUBLIC, &w.app.url)).await;
    assert_eq!(status, 200);
    assert!(same.contains("The gate is closed"));

    // Green, then both approvals: open.
    w.check_completed(SHA, "build", "success").await;
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    let c = w.sticky();
    assert!(c.contains("The gate is open"), "{c}");
    let (status, _, page) = get(&w, &link_in(&c, &w.app.url)).await;
    assert_eq!(status, 200);
    assert!(page.contains("The gate is open") && !page.contains("✗ fails"), "{page}");
    assert!(page.contains("✓ @bob") && page.contains("✓ @alice"), "the approvers:\n{page}");
    assert!(page.contains(&SHA[..7]) && page.contains("counts"), "each approval's commit and standing:\n{page}");
    assert!(page.contains("approval.given") && page.contains("gate.opened"), "{page}");
    // An older link still shows the page as it is now, until it expires.
    let (_, _, old) = get(&w, &link).await;
    assert!(old.contains("The gate is open"));
    w.done().await;
}
both_backends!(the_page_shows_what_the_comment_shows);

/// Every way to hold a link the App did not mint for that page gets 403 and nothing of the page.
async fn forged_expired_and_foreign_links_show_nothing(db: &TestDb) {
    let w = world(db, POLICY).await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    let good = link_in(&w.sticky(), &w.app.url);
    assert_eq!(get(&w, &good).await.0, 200);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let signed = |installation: i64, repository_id: i64, issue: i64, expires: i64| {
        let l = Link { installation, repository_id, page: Page::Request { issue }, expires };
        format!("{}{}", w.app.url, key().path(&l))
    };
    let sig = good.split("sig=").nth(1).unwrap().to_string();
    let bad = [
        // The signature changed, or another request's, installation's or expiry's.
        good.replace(&sig, &format!("{}{}", &sig[..63], if sig.ends_with('0') { '1' } else { '0' })),
        good.replace(&sig, &"0".repeat(64)),
        good.replace("/5?", "/6?"),
        good.replace(&format!("/requests/{INST}/"), "/requests/2/"),
        good.replace("expires=", "expires=9"),
        good.split("&sig=").next().unwrap().to_string(),
        format!("{good}&extra=1"),
        // Signed with the App's key but expired.
        signed(INST, REPO_ID, 5, now - 1),
        // Signed with the App's key for another installation: the repository is not its.
        signed(2, REPO_ID, 5, now + 3600),
        // Well signed, but no such request.
        signed(INST, REPO_ID, 99, now + 3600),
        format!("{}/requests/x/y/z?expires=1&sig=00", w.app.url),
    ];
    for url in bad {
        let (status, headers, page) = get(&w, &url).await;
        assert_eq!(status, 403, "{url}");
        assert!(page.contains("This link is not valid"), "{page}");
        assert!(
            !page.contains("api") && !page.contains("alice") && !page.contains("acme/app"),
            "shows nothing:\n{page}"
        );
        assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    }
    // A suspended installation's pages close too.
    let mut tx = w.app.db.begin_write().await.expect("begin");
    shipgate::store::tenancy::set_suspended(&mut tx, INST, true, 1).await.expect("suspend");
    tx.commit().await.expect("commit");
    assert_eq!(get(&w, &good).await.0, 403, "a suspended installation's page");
    w.sticky();
    w.done().await;
}
both_backends!(forged_expired_and_foreign_links_show_nothing);

/// What a requester writes is text on the page: markup in a field is escaped, never rendered.
async fn a_requesters_markup_is_text(db: &TestDb) {
    let w = world(db, POLICY).await;
    let evil = body("production", "#12").replace(
        "- Reason: new endpoint",
        "- Reason: <script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\"> & \"quotes\"",
    );
    w.issue_event("labeled", &evil, true).await;
    w.settle().await;
    let (status, _, page) = get(&w, &link_in(&w.sticky(), &w.app.url)).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<script>window") && !page.contains("<img src=x"), "{page}");
    assert!(page.contains("&lt;script&gt;window.__pwned=1&lt;/script&gt;"), "shown as text:\n{page}");
    assert!(page.contains("&amp; &quot;quotes&quot;") || page.contains("&amp; \"quotes\""), "{page}");
    w.done().await;
}
both_backends!(a_requesters_markup_is_text);

/// Without SHIPGATE_PUBLIC_URL the App writes no link, and no placeholder either.
async fn no_public_url_no_link(db: &TestDb) {
    let w = World::new(db).await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    let c = w.sticky();
    assert!(!c.contains("/requests/") && !c.contains("shipgate:details-link"), "{c}");
    assert_eq!(details_url(&w, SHA), None);
    w.done().await;
}
both_backends!(no_public_url_no_link);

/// In real headless Chromium on a phone: the page for a closed gate and for an open one (the
/// right ✓/✗ and names visible; screenshots under target/test-artifacts), a requester's injected
/// script shown as text and never run, a forged link refused, and nothing wider than the screen.
async fn the_details_page_in_a_real_browser(db: &TestDb) {
    let Some(b) = browser::Browser::start_or_skip().await else { return };
    let w = world(db, POLICY).await;
    w.gh.ci(REPO, SHA, "build", "completed", Some("failure"));
    let evil = body("production", "#12")
        .replace("- Reason: new endpoint", "- Reason: <script>window.__pwned=1</script><b onmouseover=x>bold</b>");
    w.issue_event("labeled", &evil, true).await;
    w.settle().await;
    let link = link_in(&w.sticky(), &w.app.url);
    b.goto(&link).await;
    let text = b.text().await;
    assert!(text.contains("The gate is closed"), "{text}");
    assert!(text.contains("✗ fails") && text.contains("build failure on #12"), "{text}");
    assert!(text.contains("◷ needed") && text.contains("@acme/backend-leads"), "{text}");
    assert!(text.contains("<script>window.__pwned=1</script>"), "the script is shown as text:\n{text}");
    assert_eq!(b.eval("typeof window.__pwned").await, "undefined", "the injected script never ran");
    assert!(!b.exists("main b").await, "no element from the request's text");
    let fits = b.eval("document.documentElement.scrollWidth <= window.innerWidth").await;
    assert_eq!(fits, true, "nothing wider than a phone's screen");
    b.screenshot(&format!("details-closed-{}", db.backend)).await;

    w.check_completed(SHA, "build", "success").await;
    w.comment(BOB, "/approve").await;
    w.comment(ALICE, "/approve").await;
    w.settle().await;
    b.goto(&link_in(&w.sticky(), &w.app.url)).await;
    let text = b.text().await;
    assert!(text.contains("The gate is open"), "{text}");
    assert!(text.contains("✓ @alice") && text.contains("✓ @bob") && !text.contains("✗ fails"), "{text}");
    b.screenshot(&format!("details-open-{}", db.backend)).await;
    assert_eq!(b.js_errors().await, Vec::<String>::new(), "no script error, no CSP violation");

    // Forged, expired (signed with the App's key), and another installation's (well signed).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let signed = |installation: i64, expires: i64| {
        let l = Link { installation, repository_id: REPO_ID, page: Page::Request { issue: 5 }, expires };
        format!("{}{}", w.app.url, key().path(&l))
    };
    for url in [link.replace("/5?", "/6?"), signed(INST, now - 1), signed(INST + 1, now + 3600)] {
        b.goto(&url).await;
        let text = b.text().await;
        assert!(text.contains("This link is not valid") && !text.contains("acme/app"), "{url}: {text}");
        assert!(!text.contains("production") && !text.contains("alice"), "{url}: {text}");
    }
    b.screenshot(&format!("details-refused-{}", db.backend)).await;
    b.close().await;
    w.done().await;
}
both_backends!(the_details_page_in_a_real_browser);

async fn shipgate(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "error")
        .env_remove("SHIPGATE_PUBLIC_URL")
        .env_remove("SHIPGATE_AUDIT_KEY")
        .env_remove("GITHUB_APP_ID")
        .env_remove("GITHUB_PRIVATE_KEY")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run shipgate");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string())
}

/// `shipgate link` mints the link an operator hands on: the running App's page opens with it.
async fn an_operator_mints_a_link(db: &TestDb) {
    let w = world(db, POLICY).await;
    w.issue_event("labeled", &body("production", "#12"), true).await;
    w.settle().await;
    w.sticky();
    let env = [("SHIPGATE_PUBLIC_URL", PUBLIC), ("SHIPGATE_AUDIT_KEY", shipgate::config::TEST_AUDIT_KEY)];
    let (code, out) = shipgate(db, &["link", "--repo", REPO, "--request", "5"], &env).await;
    assert_eq!(code, 0, "{out}");
    let url = out.lines().next().unwrap().replace(PUBLIC, &w.app.url);
    assert!(out.contains("valid until"), "{out}");
    let (status, _, page) = get(&w, &url).await;
    assert_eq!(status, 200);
    assert!(page.contains("api → production"), "{page}");
    // No such request; no public address; no audit key: said, and nothing minted.
    let (code, out) = shipgate(db, &["link", "--repo", REPO, "--request", "6"], &env).await;
    assert_eq!(code, 1, "{out}");
    let (code, out) = shipgate(db, &["link", "--repo", REPO, "--request", "5"], &env[1..]).await;
    assert_eq!((code, out.contains("SHIPGATE_PUBLIC_URL")), (2, true), "{out}");
    let (code, out) = shipgate(db, &["link", "--repo", REPO, "--request", "5"], &env[..1]).await;
    assert_eq!((code, out.contains("SHIPGATE_AUDIT_KEY")), (2, true), "{out}");
    w.done().await;
}
both_backends!(an_operator_mints_a_link);
