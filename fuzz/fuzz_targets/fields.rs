//! Fuzzes the small parsers of text that comes from outside, each fed the whole input: times in
//! payloads and API answers, the API's `?since=`, the contents API's base64, team references,
//! deployment states, URLs that name an Actions run, and API paths made into metric labels. None
//! may panic; each that can be written back reads back the same.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use shipgate::domain::policy::{Permission, TeamRef};
use shipgate::domain::state::{ApprovalState, DeployState};
use shipgate::github::client::{decode_base64, parse_rfc3339_ms, route_label};

/// 2027-01-15, about when these run.
const NOW: i64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    // The contents API's base64: the bytes of any file read back from their encoding.
    let standard = base64::engine::general_purpose::STANDARD.encode(data);
    assert_eq!(decode_base64(&standard).as_deref(), Some(data));
    let wrapped: String =
        standard.as_bytes().chunks(60).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\n");
    let _ = decode_base64(&wrapped);

    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = decode_base64(s);

    // Payload and API times, then shown in comments.
    if let Some(ms) = parse_rfc3339_ms(s) {
        let _ = shipgate::domain::ci::format_time(ms);
        let _ = shipgate::domain::messages::timestamp(ms);
        let _ = shipgate::domain::ci::format_duration(NOW.saturating_sub(ms));
        let _ = shipgate::domain::messages::duration(NOW.saturating_sub(ms));
        if let Some(t) = chrono::DateTime::from_timestamp_millis(ms) {
            let text = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            assert_eq!(parse_rfc3339_ms(&text), Some(ms), "{s:?} → {text}");
        }
    }
    // `GET /api/audit?since=`.
    for now in [NOW, 0] {
        if let Ok(at) = shipgate::store::audit::parse_since(s, now) {
            if s.trim().ends_with(['d', 'h', 'm', 's']) && now == NOW {
                assert!(at <= NOW, "{s:?} is in the future");
            }
        }
    }

    // `org/team-slug` in a policy.
    if let Ok(team) = TeamRef::parse(s) {
        assert_eq!(TeamRef::parse(&team.to_string()), Ok(team.clone()));
    }
    if let Some(p) = Permission::parse(s) {
        assert_eq!(Permission::parse(p.as_str()), Some(p));
    }
    if let Some(d) = DeployState::parse(s) {
        assert_eq!(d.as_str(), s);
    }
    if let Some(a) = ApprovalState::parse(s) {
        assert_eq!(a.as_str(), s);
    }

    // A check run's details URL, a protection rule's callback URL.
    if let Some(id) = shipgate::github::facts::actions_run_id(Some(s), Some("github-actions")) {
        assert!(s.contains(&format!(
            "/actions/runs/{}",
            s.split("/actions/runs/").nth(1).unwrap().split('/').next().unwrap()
        )));
        let _ = id;
    }
    assert_eq!(shipgate::github::facts::actions_run_id(Some(s), Some("someone-else")), None);

    // Metric labels of API paths: identifiers are replaced, so labels stay few.
    let label = route_label(s);
    assert!(!label.split('/').any(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit())), "{s:?} → {label}");
});
