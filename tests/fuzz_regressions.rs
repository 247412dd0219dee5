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
}
