//! Fuzzes the change-request parser: it must never panic, whatever the issue body, nor must
//! judging what it read; and what it returns keeps its documented shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shipgate::domain::request::{self, PrRef};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let r = request::parse(s);
    assert_eq!(request::parse(s), r, "parsing is a function of the body");
    assert_eq!(r.fingerprint(Some("production")), r.clone().fingerprint(Some("production")));
    let _ = r.problems(&["production", "staging"], |env| (env == "production").then_some(5));
    let _ = r.problems(&[], |_| None);
    let _ = r.environment_key(&["Prod", "stage"]);
    let prs = r.pr_numbers("acme/shop");
    assert!(prs.iter().enumerate().all(|(i, n)| !prs[..i].contains(n)), "pr_numbers without duplicates");
    let _ = r.pr_problems("acme/shop");
    // "In the order written, without duplicates."
    for (i, pr) in r.pull_requests.iter().enumerate() {
        assert!(!r.pull_requests[..i].contains(pr), "duplicate {pr}");
        let _ = pr.to_string();
        if let PrRef::Url { owner, repo, .. } = pr {
            assert!(!owner.is_empty() && !repo.is_empty());
        }
    }
    // "A 7–40 hex SHA (lower case)."
    if let Some(sha) = &r.commit {
        assert!((7..=40).contains(&sha.len()), "{sha:?}");
        assert!(sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{sha:?}");
    }
    if let Some(minutes) = r.rollback_minutes {
        assert!(r.rollback_time.is_some());
        assert!(minutes.is_finite() && minutes >= 0.0, "{minutes}");
    }
    if let Some(env) = &r.environment {
        assert!(!env.is_empty());
    }
    // The environment and rollback time of a request, on their own.
    let env = request::normalize_environment(s);
    assert_eq!(request::normalize_environment(&env), env, "normalising twice changes {s:?}");
    if let Some(minutes) = request::parse_duration_minutes(s) {
        assert!(minutes.is_finite() && minutes >= 0.0, "{s:?}: {minutes}");
    }
    // The sticky comment's ticks and marker, read from any comment.
    let _ = shipgate::domain::messages::ticked_items(s);
    let _ = shipgate::domain::messages::is_request_comment(s);
});
