//! Inputs the fuzz targets (`fuzz/`, see fuzz/README.md) found, minimised, each held as a plain
//! test of the library function the target calls: it failed before its fix.

use shipgate::domain::commands::{Command, parse};

/// `commands`: an escaped backslash (`\\`) at the end of a command line is text, not a hard line
/// break; the parser stripped one of its backslashes, so `/deny a\\` read as the reason `a\`, and
/// that reason written back (`/deny a\`) read as `a`.
#[test]
fn commands_an_escaped_backslash_at_the_end_of_a_line_is_kept() {
    assert_eq!(parse("/deny a\\\\"), vec![Ok(Command::Deny { reason: "a\\\\".into() })]);
    // An odd count ends with a hard line break: one backslash goes, as before.
    assert_eq!(parse("/deny a\\\\\\\nmore"), vec![Ok(Command::Deny { reason: "a\\\\".into() })]);
    assert_eq!(parse("/deny a\\\nmore"), vec![Ok(Command::Deny { reason: "a".into() })]);
    assert_eq!(parse("/hold\\\nthanks"), vec![Ok(Command::Hold)]);
    // The second run's input, minimised: only the last backslash is the break; the one before
    // the spaces is text (the target's writer, not the parser, was wrong there).
    assert_eq!(parse("/deny a\\  \\\nmore"), vec![Ok(Command::Deny { reason: "a\\".into() })]);
}

/// `webhook` (seen reading `messages`, then confirmed through the target): a commit SHA whose
/// seventh byte falls inside a character (`abcdefé`) made the messages that show it short panic
/// on a byte slice. GitHub sends hex, but the SHA is the payload's, and is shown whole instead.
#[test]
fn webhook_a_sha_that_is_not_ascii_is_shown_without_a_panic() {
    use shipgate::domain::messages::{self, DeployView};
    use shipgate::domain::state::DeployState;
    let sha = "abcdef\u{e9}";
    assert!(messages::rule_uncovered("production", sha).contains(sha));
    assert!(messages::rule_approved(7, "production", sha, &["alice".into()]).contains(sha));
    let view = DeployView {
        state: DeployState::Failure,
        sha: sha.into(),
        environment: "production".into(),
        deployment_id: Some(1),
        started_at: Some(0),
        finished_at: Some(1_000),
        rollback: false,
        gate_opened_at: None,
        log_url: None,
    };
    assert!(messages::deploy_line(&view, 0).contains(sha));
    assert!(messages::deploy_failed(&view, Some("revert"), Some(sha)).contains(sha));
    // A hex SHA is still cut to seven characters.
    let text = messages::rule_uncovered("production", "0123456789abcdef");
    assert!(text.contains("0123456") && !text.contains("01234567"), "{text}");
}

/// `webhook`: the envelope parses a body whose ignored fields hold bytes that are not UTF-8
/// (serde_json skips their strings unchecked), so that a body parsed as JSON is not yet known to
/// be UTF-8: the intake checks it (and refuses such a body, 400) before it stores it as text.
#[test]
fn webhook_an_envelope_can_parse_from_bytes_that_are_not_utf8() {
    use shipgate::github::envelope::Envelope;
    let body = b"{\"action\":\"opened\",\"other\":\"\xff\"}";
    let envelope = Envelope::parse(body).expect("the fields read are fine");
    assert_eq!(envelope.action.as_deref(), Some("opened")); // though `\xff` is no UTF-8
}
