//! Commands in comments (SPEC §3.4): `/approve [environment]`, `/approve cancel`,
//! `/deny <reason>`, `/undeny`, `/hold`, `/unhold` (or `/hold cancel`), `/deploy`, `/rollback`,
//! `/recheck`, `/breakglass <reason>`; on a pull request that several requests link, a `#N` word names the request
//! (`/approve #45`).
//!
//! A command is a line whose first non-space character is `/`, in ordinary text of the comment
//! (a paragraph, a list item's text, a setext heading). The comment is read with pulldown-cmark,
//! as GitHub renders it, so that code blocks (fenced or indented), inline code, block quotes,
//! HTML blocks and comments, tables, struck-out text and link texts and URLs never carry a
//! command: quoting someone's `/approve` does not approve. Each text event is mapped back to its
//! source line, and the command is read from the raw source line.
//!
//! Like rust-lang/bors, parsing is pure and returns one result per command line, in order: a
//! near miss (`/aprove`) is an error with a "did you mean" suggestion, so the App can answer it;
//! a `/word` far from any command (`/usr/bin/env`, `/s`) is not a command at all.

use pulldown_cmark::{Event, Options, Parser, Tag};
use serde::Serialize;

use super::request::normalize_environment;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Command {
    /// `/approve`, or `/approve production` (normalised like the request's environment).
    Approve {
        environment: Option<String>,
    },
    /// `/approve cancel`: withdraws the commenter's approval.
    ApproveCancel,
    Deny {
        reason: String,
    },
    /// `/undeny`: lifts a denial (its author or a repository admin).
    Undeny,
    Hold,
    Unhold,
    Deploy,
    Rollback,
    Recheck,
    /// `/breakglass <reason>`: an emergency opening of the gate for one deployment (SPEC §3.7).
    BreakGlass {
        reason: String,
    },
}

impl Command {
    /// The command as users type it, without the slash: `"approve"`, `"approve cancel"`, `"deny"`,
    /// `"hold"`, `"unhold"`, `"deploy"`, `"rollback"`, `"recheck"`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Approve { .. } => "approve",
            Command::ApproveCancel => "approve cancel",
            Command::Deny { .. } => "deny",
            Command::Undeny => "undeny",
            Command::Hold => "hold",
            Command::Unhold => "unhold",
            Command::Deploy => "deploy",
            Command::Rollback => "rollback",
            Command::Recheck => "recheck",
            Command::BreakGlass { .. } => "breakglass",
        }
    }
}

/// A command line that is wrong: `line` is 1-based, `text` the command as written,
/// `message` what to tell the user, `suggestion` the command they probably meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CommandError {
    pub line: usize,
    pub text: String,
    pub message: String,
    pub suggestion: Option<String>,
}

/// The command names, in the order used to break ties between suggestions.
const NAMES: [&str; 9] = ["approve", "deny", "undeny", "hold", "unhold", "deploy", "rollback", "recheck", "breakglass"];

/// The commands in a comment, in order: one result per command line. Lines that are not commands
/// (including `/words` far from any command name) produce nothing. Never panics.
pub fn parse(comment: &str) -> Vec<Result<Command, CommandError>> {
    parse_targeted(comment).into_iter().map(|(_, c)| c).collect()
}

/// Like [`parse`], with the request each command names (`/approve #45`: a `#N` word among its
/// arguments), for commands written on a pull request that several requests link.
pub fn parse_targeted(comment: &str) -> Vec<(Option<i64>, Result<Command, CommandError>)> {
    let lines = LineIndex::new(comment);
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_GFM;
    let mut out = Vec::new();
    // For each open element, whether text inside it is ordinary text that may carry a command.
    let mut open: Vec<bool> = Vec::new();
    let mut last_line = None;
    for (event, range) in Parser::new_ext(comment, options).into_offset_iter() {
        match event {
            Event::Start(tag) => open.push(is_ordinary(&tag)),
            Event::End(_) => {
                open.pop();
            }
            // Only text: `Code`, `Html`, `InlineHtml`, math and footnote references never count.
            Event::Text(_) => {
                if open.is_empty() || !open.iter().all(|ordinary| *ordinary) {
                    continue;
                }
                let Some((number, text)) = lines.command_line(comment, range.start) else { continue };
                if last_line == Some(number) {
                    continue;
                }
                last_line = Some(number);
                let (text, target) = split_target(text);
                if let Some(result) = parse_command(number, &text) {
                    out.push((target, result));
                }
            }
            _ => {}
        }
    }
    out
}

/// Elements whose text is ordinary text. Everything else — block quotes, code blocks, HTML
/// blocks, links, images, tables, strikethrough, footnote definitions, … — hides commands.
fn is_ordinary(tag: &Tag<'_>) -> bool {
    matches!(tag, Tag::Paragraph | Tag::Heading { .. } | Tag::List(_) | Tag::Item | Tag::Emphasis | Tag::Strong)
}

/// Byte offsets where each source line starts (after `\n`, `\r\n` or a lone `\r`, as in CommonMark).
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let bytes = text.as_bytes();
        let mut starts = vec![0];
        for (i, b) in bytes.iter().enumerate() {
            let lone_cr = *b == b'\r' && bytes.get(i + 1) != Some(&b'\n');
            if *b == b'\n' || lone_cr {
                starts.push(i + 1);
            }
        }
        LineIndex { starts }
    }

    /// If the text at `offset` is the first non-space character of its source line and is a `/`,
    /// the 1-based line number and the rest of the line (`/approve production`).
    fn command_line<'a>(&self, source: &'a str, offset: usize) -> Option<(usize, &'a str)> {
        let index = self.starts.partition_point(|&start| start <= offset).checked_sub(1)?;
        let start = *self.starts.get(index)?;
        let prefix = source.get(start..offset)?;
        if !prefix.chars().all(|c| c == ' ' || c == '\t') {
            return None; // text earlier on the line, a `>` quote marker, a `\` escape, a list marker
        }
        let rest = source.get(offset..)?;
        if !rest.starts_with('/') {
            return None;
        }
        let end = rest.find(['\n', '\r']).unwrap_or(rest.len());
        // A trailing `\` is a hard line break, not part of the command; an escaped one (`\\`,
        // an even run) is text.
        let line = rest[..end].trim_end();
        let backslashes = line.len() - line.trim_end_matches('\\').len();
        let line = if backslashes % 2 == 1 { &line[..line.len() - 1] } else { line };
        Some((index + 1, line.trim_end()))
    }
}

/// A command line without its `#N` word (the request it names), and N.
fn split_target(text: &str) -> (String, Option<i64>) {
    // A reason is free text: `/deny breaks #12` names no request. Only a `#N` right after the
    // command does (`/breakglass #45 checkout is down`, on a PR that several requests link).
    let mut words = text.split_whitespace();
    let word = words.next().unwrap_or_default().to_ascii_lowercase();
    if matches!(word.as_str(), "/deny" | "/breakglass" | "/break-glass") {
        let named =
            words.next().and_then(|w| w.strip_prefix('#')).and_then(|n| n.parse::<i64>().ok()).filter(|n| *n > 0);
        return match named {
            Some(n) => {
                let command = text.split_whitespace().next().unwrap_or_default();
                let reason: Vec<&str> = text.split_whitespace().skip(2).collect();
                (format!("{command} {}", reason.join(" ")).trim_end().to_string(), Some(n))
            }
            None => (text.to_string(), None),
        };
    }
    let mut target = None;
    let mut words = Vec::new();
    for (i, word) in text.split_whitespace().enumerate() {
        match word.strip_prefix('#').and_then(|n| n.parse::<i64>().ok()).filter(|n| *n > 0) {
            Some(n) if i > 0 && target.is_none() => target = Some(n),
            _ => words.push(word),
        }
    }
    if target.is_none() {
        return (text.to_string(), None);
    }
    (words.join(" "), target)
}

/// Reads one command line (`text` starts with `/`). `None` when it is not a command at all.
fn parse_command(line: usize, text: &str) -> Option<Result<Command, CommandError>> {
    let body = text.strip_prefix('/')?;
    let (word, args) = match body.split_once(char::is_whitespace) {
        Some((word, args)) => (word, args.trim()),
        None => (body, ""),
    };
    if word.is_empty() {
        return None; // a lone `/`
    }
    let error = |message: String, suggestion: Option<String>| {
        Some(Err(CommandError { line, text: text.to_string(), message, suggestion }))
    };
    let name = word.to_lowercase();
    let no_args = |command: Command| {
        if args.is_empty() {
            Some(Ok(command))
        } else {
            error(format!("`/{name}` takes no arguments (got `{args}`)"), Some(format!("/{name}")))
        }
    };
    match name.as_str() {
        "approve" => {
            let mut words = args.split_whitespace();
            match (words.next(), words.next()) {
                (None, _) => Some(Ok(Command::Approve { environment: None })),
                (Some(arg), None) if arg.eq_ignore_ascii_case("cancel") => Some(Ok(Command::ApproveCancel)),
                (Some(arg), None) => {
                    let environment = normalize_environment(arg);
                    if environment.is_empty() {
                        error(format!("`{arg}` is not an environment name"), Some("/approve".to_string()))
                    } else {
                        Some(Ok(Command::Approve { environment: Some(environment) }))
                    }
                }
                (Some(_), Some(_)) => error(
                    "`/approve` takes at most one argument: an environment (`/approve production`) or `cancel`"
                        .to_string(),
                    Some("/approve".to_string()),
                ),
            }
        }
        "deny" if args.is_empty() => error("`/deny` needs a reason, e.g. `/deny tests are flaky`".to_string(), None),
        "deny" => Some(Ok(Command::Deny { reason: args.to_string() })),
        "breakglass" | "break-glass" if args.is_empty() => error(
            "`/breakglass` needs a reason, e.g. `/breakglass checkout is down, deploying the fix from #12`".to_string(),
            None,
        ),
        "breakglass" | "break-glass" => Some(Ok(Command::BreakGlass { reason: args.to_string() })),
        "hold" if args.eq_ignore_ascii_case("cancel") => Some(Ok(Command::Unhold)),
        "hold" => no_args(Command::Hold),
        "undeny" => no_args(Command::Undeny),
        "unhold" => no_args(Command::Unhold),
        "deploy" => no_args(Command::Deploy),
        "rollback" => no_args(Command::Rollback),
        "recheck" => no_args(Command::Recheck),
        _ => {
            let suggestion = suggest(&name)?;
            error(format!("unknown command `/{word}`; did you mean `{suggestion}`?"), Some(suggestion))
        }
    }
}

/// The command a near miss probably meant: a prefix of at least three letters (`/app`), or a
/// small edit distance (at most 2; at most 1 for the four-letter `deny` and `hold`, so that
/// `/help` and `/done` are not taken for them). Paths and URLs (`/usr/bin/env`) are never near.
fn suggest(word: &str) -> Option<String> {
    let length = word.chars().count();
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ',' | '!' | '?' | ':');
    if !(2..=20).contains(&length) || !word.chars().all(allowed) {
        return None;
    }
    // `/unapprove` is two edits from `/approve`, but means the opposite.
    if matches!(word, "unapprove" | "approve-cancel" | "approve_cancel" | "cancel") {
        return Some("/approve cancel".to_string());
    }
    let mut best: Option<(usize, &str)> = None;
    for name in NAMES {
        // Optimal string alignment over chars: Levenshtein plus adjacent transpositions, so
        // `/hodl` is one edit from `/hold`.
        let distance = if length >= 3 && name.starts_with(word) { 0 } else { strsim::osa_distance(word, name) };
        let limit = if name.len() <= 4 { 1 } else { 2 };
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, name));
        }
    }
    // Very short words are only ever prefixes (`/ap` is not a command).
    best.filter(|(distance, _)| length >= 3 || *distance == 0).map(|(_, name)| format!("/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testutil::XorShift;

    fn ok(comment: &str) -> Vec<Command> {
        parse(comment).into_iter().map(|r| r.unwrap_or_else(|e| panic!("{comment:?}: {e}"))).collect()
    }

    fn approve(environment: Option<&str>) -> Command {
        Command::Approve { environment: environment.map(str::to_string) }
    }

    #[test]
    fn a_request_is_named_with_a_hash_word() {
        let t = parse_targeted("/approve #45\n/approve production #45\n/hold cancel #7\n/undeny\n/deny breaks #12\n");
        let got: Vec<(Option<i64>, Command)> = t.into_iter().map(|(n, c)| (n, c.expect("a command"))).collect();
        assert_eq!(
            got,
            vec![
                (Some(45), approve(None)),
                (Some(45), approve(Some("production"))),
                (Some(7), Command::Unhold),
                (None, Command::Undeny),
                (None, Command::Deny { reason: "breaks #12".into() }),
            ]
        );
        // `#0`, `#-1` and a `#` word first are no request.
        assert!(parse_targeted("/approve #0").iter().all(|(n, _)| n.is_none()));
        assert_eq!(
            parse("/undeny now"),
            vec![Err(CommandError {
                line: 1,
                text: "/undeny now".into(),
                message: "`/undeny` takes no arguments (got `now`)".into(),
                suggestion: Some("/undeny".into()),
            })]
        );
    }

    #[test]
    fn breakglass_needs_a_reason_and_keeps_it_whole() {
        assert_eq!(
            ok("/breakglass checkout is down, fix in #12\n\n/Break-Glass   db failover  \n"),
            vec![
                Command::BreakGlass { reason: "checkout is down, fix in #12".into() },
                Command::BreakGlass { reason: "db failover".into() },
            ]
        );
        // A `#N` in the reason names no request; right after the command, it does.
        assert!(parse_targeted("/breakglass see #45").iter().all(|(n, _)| n.is_none()));
        let named: Vec<_> = parse_targeted("/breakglass #45 checkout is down\n\n/deny #7 not now\n\n/breakglass #45")
            .into_iter()
            .map(|(n, c)| (n, c.map_err(|e| e.message)))
            .collect();
        assert_eq!(named[0], (Some(45), Ok(Command::BreakGlass { reason: "checkout is down".into() })));
        assert_eq!(named[1], (Some(7), Ok(Command::Deny { reason: "not now".into() })));
        assert!(
            named[2].0 == Some(45) && named[2].1.as_ref().is_err_and(|m| m.contains("needs a reason")),
            "{named:?}"
        );
        let e = parse("/breakglass").remove(0).expect_err("no reason");
        assert!(e.message.contains("needs a reason"), "{e:?}");
        assert_eq!(
            parse("/break_glass now")[0].as_ref().expect_err("a near miss").suggestion.as_deref(),
            Some("/breakglass")
        );
        // Quoted, it is nothing.
        assert!(parse("> /breakglass quoted").is_empty());
    }

    #[test]
    fn every_command() {
        let comment = "/approve\n\n/approve prod\n\n/approve cancel\n\n/deny tests are flaky\n\n\
                       /hold\n\n/unhold\n\n/deploy\n\n/rollback\n\n/recheck\n";
        assert_eq!(
            ok(comment),
            vec![
                approve(None),
                approve(Some("production")),
                Command::ApproveCancel,
                Command::Deny { reason: "tests are flaky".into() },
                Command::Hold,
                Command::Unhold,
                Command::Deploy,
                Command::Rollback,
                Command::Recheck,
            ]
        );
        let names: Vec<_> = ok(comment).iter().map(Command::name).collect();
        assert_eq!(
            names,
            ["approve", "approve", "approve cancel", "deny", "hold", "unhold", "deploy", "rollback", "recheck"]
        );
    }

    #[test]
    fn case_insensitive_and_leading_spaces() {
        assert_eq!(ok("/APPROVE"), vec![approve(None)]);
        assert_eq!(ok("  /approve"), vec![approve(None)]);
        assert_eq!(ok("/Approve STG"), vec![approve(Some("staging"))]);
        assert_eq!(ok("/approve Cancel"), vec![Command::ApproveCancel]);
        assert_eq!(ok("/DeNy Because I Said So"), vec![Command::Deny { reason: "Because I Said So".into() }]);
        assert_eq!(ok("/approve `dev`"), vec![approve(Some("development"))]);
        assert_eq!(ok("/approve prod-EU"), vec![approve(Some("prod-eu"))]);
    }

    #[test]
    fn several_commands_soft_breaks_and_crlf() {
        let comment = "Looks good to me.\r\n/approve\r\n/hold\r\nThanks!\r\n\r\n  /deny wrong SHA\r\n";
        let results = parse(comment);
        assert_eq!(
            results,
            vec![Ok(approve(None)), Ok(Command::Hold), Ok(Command::Deny { reason: "wrong SHA".into() })]
        );
        // Lone CR line endings count as line breaks too.
        assert_eq!(ok("ok\r/approve\r"), vec![approve(None)]);
    }

    #[test]
    fn line_numbers_are_one_based_source_lines() {
        let results = parse("hello\n\n```\n/approve\n```\n/aprove\n");
        assert_eq!(results.len(), 1);
        let error = results[0].clone().expect_err("near miss");
        assert_eq!(error.line, 6);
        assert_eq!(error.text, "/aprove");
    }

    #[test]
    fn code_blocks_never_carry_commands() {
        assert!(parse("```\n/approve\n```").is_empty());
        assert!(parse("```text\n/approve\n```\n").is_empty());
        assert!(parse("~~~\n/approve\n~~~").is_empty());
        assert!(parse("para\n\n    /approve\n").is_empty(), "4-space indented code");
        assert!(parse("\t/approve").is_empty(), "tab-indented code");
        assert!(parse("`/approve`").is_empty());
        assert!(parse("please `\n/approve` thanks").is_empty(), "a code span across lines");
        assert!(parse("inline /approve").is_empty());
        assert!(parse("- item\n\n  ```\n  /approve\n  ```\n").is_empty(), "a fence in a list item");
        // Unclosed fence: everything after it is code.
        assert!(parse("```\n/approve").is_empty());
    }

    #[test]
    fn quotes_never_carry_commands() {
        assert!(parse("> /approve").is_empty());
        assert!(parse("> > /approve").is_empty(), "nested quote");
        assert!(parse(">> /approve").is_empty());
        assert!(parse("> quoted\n> /approve\n").is_empty());
        assert!(parse("> - /approve").is_empty());
        // A line right after a quote, with no blank line, is a lazy continuation of the quote
        // (GitHub shows it inside the quote): it does not count either.
        assert!(parse("> someone said\n/approve").is_empty());
        assert_eq!(ok("> someone said\n\n/approve"), vec![approve(None)]);
        assert!(parse("> [!NOTE]\n> /approve").is_empty(), "an alert");
    }

    #[test]
    fn html_and_comments_never_carry_commands() {
        assert!(parse("<!-- /approve -->").is_empty());
        assert!(parse("<!--\n/approve\n-->").is_empty());
        assert!(parse("text <!--\n/approve\n--> more").is_empty(), "inline comment across lines");
        assert!(parse("<details>\n/approve\n</details>").is_empty());
        assert!(parse("<div>\n/approve\n</div>").is_empty());
        // After a blank line inside <details>, GitHub renders markdown again: that counts.
        assert_eq!(ok("<details>\n\n/approve\n\n</details>"), vec![approve(None)]);
    }

    #[test]
    fn links_never_carry_commands() {
        assert!(parse("[/approve](http://x)").is_empty());
        assert!(parse("[see\n/approve](http://x)").is_empty(), "link text on its own line");
        assert!(parse("[click](/approve)").is_empty());
        assert!(parse("[click](\n/approve)").is_empty(), "link URL on its own line");
        assert!(parse("<http://example.com/approve>").is_empty());
        assert!(parse("https://example.com/approve").is_empty());
        assert!(parse("![/approve](x.png)").is_empty());
        assert!(parse("[ref]: /approve").is_empty(), "a link reference definition");
        assert!(parse("[ref]:\n/approve").is_empty());
    }

    #[test]
    fn other_markup_never_carries_commands() {
        assert!(parse("# /approve").is_empty(), "ATX heading: the line starts with `#`");
        assert!(parse("- /approve").is_empty(), "list marker first");
        assert!(parse("- [ ] /approve").is_empty());
        assert!(parse("**/approve**").is_empty());
        assert!(parse("~~/approve~~").is_empty());
        assert!(parse("\\/approve").is_empty(), "escaped slash");
        assert!(parse("&#47;approve").is_empty(), "entity");
        assert!(parse("| a |\n|---|\n| /approve |").is_empty(), "table");
        assert!(parse("/approve | b\n--|--\n1 | 2").is_empty(), "table header");
        assert!(parse("text[^1]\n\n[^1]: note\n    /approve").is_empty(), "footnote definition");
    }

    #[test]
    fn ordinary_text_carries_commands() {
        // A list item's continuation line, and a setext heading, are ordinary text.
        assert_eq!(ok("- item\n  /hold\n"), vec![Command::Hold]);
        assert_eq!(ok("/approve\n---\nthanks"), vec![approve(None)]);
        assert_eq!(ok("*note*\n/recheck"), vec![Command::Recheck]);
        assert_eq!(ok("text\n    /deploy"), vec![Command::Deploy], "a lazy paragraph continuation is not code");
        assert_eq!(ok("/approve\\\nthanks"), vec![approve(None)], "a hard line break after the command");
        assert_eq!(ok("/approve  \nthanks"), vec![approve(None)], "a two-space hard line break");
        assert_eq!(
            ok("/deny see `ci.yml` — it is red"),
            vec![Command::Deny { reason: "see `ci.yml` — it is red".into() }]
        );
    }

    #[test]
    fn did_you_mean() {
        let cases = [
            ("/aprove", "/approve"),
            ("/app", "/approve"),
            ("/approved", "/approve"),
            ("/Approval", "/approve"),
            ("/approve.", "/approve"),
            ("/hodl", "/hold"),
            ("/dploy", "/deploy"),
            ("/roll", "/rollback"),
            ("/rollbak", "/rollback"),
            ("/rechek", "/recheck"),
            ("/unhol", "/unhold"),
            ("/den", "/deny"),
            ("/unapprove", "/approve cancel"),
        ];
        for (text, want) in cases {
            let results = parse(text);
            let [Err(error)] = results.as_slice() else { panic!("{text}: {results:?}") };
            assert_eq!(error.suggestion.as_deref(), Some(want), "{text}");
            assert_eq!(error.line, 1);
        }
        let results = parse("/aprove");
        let [Err(error)] = results.as_slice() else { panic!("{results:?}") };
        assert_eq!(error.message, "unknown command `/aprove`; did you mean `/approve`?");
    }

    #[test]
    fn far_from_any_command_is_not_a_command() {
        for text in [
            "/usr/bin/env",
            "/s",
            "/",
            "/ approve",
            "/help",
            "/done",
            "/dev",
            "/cc @alice",
            "/me waves",
            "//approve",
            "/ap",
        ] {
            assert!(parse(text).is_empty(), "{text}: {:?}", parse(text));
        }
    }

    #[test]
    fn deny_needs_a_reason() {
        let results = parse("/deny");
        let [Err(error)] = results.as_slice() else { panic!("{results:?}") };
        assert_eq!(error.message, "`/deny` needs a reason, e.g. `/deny tests are flaky`");
        assert_eq!(error.text, "/deny");
        assert!(matches!(parse("/deny   ").as_slice(), [Err(_)]));
    }

    #[test]
    fn extra_words_are_errors() {
        for text in
            ["/hold please", "/deploy production", "/recheck now", "/approve production now", "/approve cancel x"]
        {
            let results = parse(text);
            assert!(matches!(results.as_slice(), [Err(_)]), "{text}: {results:?}");
        }
        let results = parse("/hold please");
        let [Err(error)] = results.as_slice() else { panic!() };
        assert_eq!(error.message, "`/hold` takes no arguments (got `please`)");
    }

    #[test]
    fn errors_and_commands_keep_their_order() {
        let results = parse("/approve\n/aprove\n/usr/local\n/deny\n/hold");
        assert_eq!(results.len(), 4);
        assert_eq!(results[0], Ok(approve(None)));
        assert!(results[1].is_err());
        assert!(results[2].is_err());
        assert_eq!(results[3], Ok(Command::Hold));
        let lines: Vec<usize> = results.iter().filter_map(|r| r.as_ref().err()).map(|e| e.line).collect();
        assert_eq!(lines, [2, 4]);
    }

    #[test]
    fn unicode_and_emoji() {
        assert_eq!(
            ok("🚀 ship it\n/approve production\n/deny ça casse 💥"),
            vec![approve(Some("production")), Command::Deny { reason: "ça casse 💥".into() },]
        );
        assert!(parse("/åpprove").iter().all(|r| r.is_err()));
        assert_eq!(ok("/approve\u{a0}staging"), vec![approve(Some("staging"))], "a no-break space separates");
    }

    #[test]
    fn serialises() {
        let json = serde_json::to_value(parse("/approve prod\n/aprove")).expect("serialise");
        assert_eq!(json[0]["Ok"]["Approve"]["environment"], "production");
        assert_eq!(json[1]["Err"]["suggestion"], "/approve");
    }

    #[test]
    fn never_panics_on_random_mutations() {
        let samples = [
            "LGTM\n/approve production\n\n> /approve\n```\n/deny x\n```\n",
            "<!-- /hold -->\n  /deny flaky tests\r\n/aprove\n[/approve](http://x/approve)\n",
            "- item\n  /recheck\n\n    /deploy\n~~~\n/rollback\n~~~\n| /a | b |\n|---|---|\n",
            "text[^1]\n\n[^1]: /approve\n<details>\n\n/unhold\n\n</details>\n/\n//\n/ü",
        ];
        let fragments = [
            "\n", "\r\n", "\r", "/", "/approve", "/deny", "```", "~~~", "`", "> ", ">", "<!--", "-->", "<div>", "[",
            "](", ")", "    ", "\t", "- ", "1. ", "*", "**", "~~", "|", "\\", "&#47;", "[^1]: ", "é", "🚀", "\u{200b}",
            "\u{a0}", "#", "---", "===",
        ];
        let mut rng = XorShift::new(0x0dd_ba11_cafe_f00d);
        for i in 0..2_000 {
            let mut chars: Vec<char> = samples[i % samples.len()].chars().collect();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(chars.len() + 1);
                match rng.below(4) {
                    0 | 1 => {
                        let fragment = fragments[rng.below(fragments.len())];
                        chars.splice(at..at, fragment.chars());
                    }
                    2 => {
                        let end = (at + rng.below(12)).min(chars.len());
                        chars.drain(at..end);
                    }
                    _ => {
                        let c = char::from_u32(rng.below(0x2_0000) as u32).unwrap_or('\u{fffd}');
                        chars.insert(at, c);
                    }
                }
            }
            let comment: String = chars.into_iter().collect();
            let line_count = comment.split(['\n', '\r']).count();
            for result in parse(&comment) {
                match result {
                    Ok(command) => assert!(!command.name().is_empty()),
                    Err(error) => {
                        assert!(error.line >= 1 && error.line <= line_count, "{comment:?}: {error:?}");
                        assert!(error.text.starts_with('/'));
                    }
                }
            }
        }
    }
}
