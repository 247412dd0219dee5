//! Fuzzes the comment command parser: it must never panic, whatever the comment; each error
//! points at a real line; and each command it reads, written back as a user types it on a line
//! of its own, reads back as the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shipgate::domain::commands::{Command, parse, parse_targeted};

/// The command as a user writes it.
fn render(c: &Command) -> String {
    match c {
        Command::Approve { environment: None } => "/approve".into(),
        Command::Approve { environment: Some(env) } => format!("/approve {env}"),
        // A reason is the raw text: one that ends in an odd run of backslashes (read from
        // `/deny x\ \`) needs the hard line break after it, or its last backslash would be one.
        Command::Deny { reason } if (reason.len() - reason.trim_end_matches('\\').len()) % 2 == 1 => {
            format!("/deny {reason} \\")
        }
        Command::Deny { reason } => format!("/deny {reason}"),
        other => format!("/{}", other.name()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(comment) = std::str::from_utf8(data) else { return };
    let results = parse(comment);
    let targeted = parse_targeted(comment);
    assert_eq!(results.len(), targeted.len());
    // Source lines as CommonMark counts them (`\n`, `\r\n` or a lone `\r`).
    let lines = 1 + comment
        .bytes()
        .enumerate()
        .filter(|&(i, b)| b == b'\n' || (b == b'\r' && comment.as_bytes().get(i + 1) != Some(&b'\n')))
        .count();
    let mut last_line = 0;
    for ((target, result), plain) in targeted.iter().zip(&results) {
        assert_eq!(result, plain);
        if let Some(n) = target {
            assert!(*n > 0);
        }
        match result {
            Ok(command) => {
                if let Command::Approve { environment: Some(env) } = command {
                    assert!(!env.is_empty());
                    assert_eq!(&shipgate::domain::request::normalize_environment(env), env, "normalised twice");
                }
                if let Command::Deny { reason } = command {
                    assert!(!reason.trim().is_empty() && reason.trim() == reason);
                }
                let text = render(command);
                assert_eq!(parse(&text), vec![Ok(command.clone())], "{text:?} does not read back");
            }
            Err(e) => {
                assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
                assert!(e.line > last_line, "errors in line order, one per line");
                last_line = e.line;
                assert!(e.text.starts_with('/') && !e.message.is_empty());
                if let Some(s) = &e.suggestion {
                    assert!(s.starts_with('/'));
                }
            }
        }
    }
});
