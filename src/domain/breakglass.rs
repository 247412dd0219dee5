//! Break-glass (SPEC §3.7): `/breakglass <reason>` from a holder of the `break_glass` role opens
//! a request's gate for one deployment of the commits it covers, whatever else is missing
//! (approvals, tests, a red branch, a freeze, a hold), never past a `/deny` or an invalid policy.
//! The first deployment through the gate spends it (a protection rule approved, an `open` answer
//! to a job at `/gate/wait`, a `/deploy`); unspent, it lapses after [`LASTS_MS`]. Each use opens
//! a follow-up issue, a post-incident review due within two working days, which escalates to
//! `ci.escalate_to` like an incident when it is still open then.
//!
//! Pure: the state lives in the request's remembered facts, the review in the incidents table
//! (kind [`REVIEW_KIND`]), both written by the handler from the flow's decision.

use chrono::{Datelike, Duration, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

use super::gate::User;
use super::zone::Zone;

/// How long an unspent break-glass lasts.
pub const LASTS_MS: i64 = 2 * 3600 * 1000;

/// How many working days (Monday to Friday) the follow-up review is due within.
pub const REVIEW_WORKING_DAYS: u32 = 2;

/// The label a request that used break-glass carries (kept: it is the request's history).
pub const LABEL: &str = "break-glass";

/// The label of the follow-up issue.
pub const REVIEW_LABEL: &str = "post-incident-review";

/// The follow-up reviews' kind in the incidents table.
pub const REVIEW_KIND: &str = "review";

/// One use of break-glass on a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlass {
    /// The comment that said `/breakglass` (a redelivery of it is the same use).
    pub comment_id: i64,
    pub by: User,
    pub reason: String,
    /// When it was accepted (Unix ms).
    pub at: i64,
    pub environment: String,
    /// The commits the request covered then (its linked PRs' heads, or the commit it names):
    /// a new head pushed since ends it, like it makes an approval stale. The merge commit of
    /// those very heads is covered too, as approvals carry to it.
    pub heads: Vec<String>,
    /// When it lapses unspent.
    pub until: i64,
    /// The follow-up review's issue marker.
    pub review: String,
    /// How it ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub at: i64,
    /// `spent` | `lapsed` | `superseded` (new heads) | `closed` (the request was closed or
    /// unlabelled).
    pub how: String,
    /// What spent it, or why it ended, in words.
    pub detail: String,
}

impl BreakGlass {
    /// Unspent, not lapsed, not ended otherwise.
    pub fn live(&self, now: i64) -> bool {
        self.ended.is_none() && now < self.until
    }

    /// How the gate names it: "by @sre at 02:14 UTC: checkout is down".
    pub fn text(&self) -> String {
        format!("by @{} at {}: {}", self.by.login, super::messages::timestamp(self.at), one_line(&self.reason))
    }

    /// A line for the request's notes.
    pub fn note(&self) -> String {
        let head = format!(
            "🚨 Break-glass {} (covering {}).",
            self.text(),
            self.heads.iter().map(|h| super::messages::short(h)).collect::<Vec<_>>().join(", ")
        );
        match &self.ended {
            None => format!(
                "{head} Unspent: it opens the gate for one deployment until {}.",
                super::messages::timestamp(self.until)
            ),
            Some(e) => format!("{head} {} at {}: {}.", capitalised(&e.how), super::messages::timestamp(e.at), e.detail),
        }
    }

    pub fn end(&mut self, at: i64, how: &str, detail: impl Into<String>) {
        if self.ended.is_none() {
            self.ended = Some(Ended { at, how: how.into(), detail: detail.into() });
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// A reason on one line, at most 300 characters (it is shown in tables and notifications), inert
/// in GitHub's markdown: no mention (`@org/team` would notify a team from the App's issue), no
/// HTML (`<!--` would hide the rest of the App's text). A table escapes its cells' pipes itself
/// (`messages::escape`): escaped here too, a pipe would come out as `\\|` and break the cell.
fn one_line(s: &str) -> String {
    let line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let line =
        if line.chars().count() > 300 { format!("{}…", line.chars().take(299).collect::<String>()) } else { line };
    line.replace('<', "&lt;").replace('>', "&gt;").replace('@', "@\u{200b}")
}

/// The marker of the follow-up review of use `seq` (1-based) on request `issue`.
pub fn review_marker(issue: i64, seq: usize) -> String {
    format!("breakglass-review-{issue}-{seq}")
}

/// When a review of a use at `at` is due: `REVIEW_WORKING_DAYS` working days later, Monday to
/// Friday in `zone`, at the same local time. A use on a weekend counts from Monday 00:00.
pub fn review_due(at: i64, zone: &Zone) -> i64 {
    let mut local = zone.local(at);
    while matches!(local.weekday(), Weekday::Sat | Weekday::Sun) {
        local = (local.date() + Duration::days(1)).and_time(NaiveTime::MIN);
    }
    let mut left = REVIEW_WORKING_DAYS;
    while left > 0 {
        local += Duration::days(1);
        if !matches!(local.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    zone.instant(local)
}

/// What the review issue is made from.
pub struct Review<'a> {
    pub repo: &'a str,
    pub issue: i64,
    pub service: Option<&'a str>,
    pub bg: &'a BreakGlass,
    /// What the gate was missing when the glass was broken (what it overrode).
    pub overridden: &'a [String],
    pub due: i64,
    /// The zone the due time is said in.
    pub zone: &'a Zone,
    pub escalate_to: Option<&'a str>,
}

pub fn review_title(r: &Review<'_>) -> String {
    format!(
        "Post-incident review: break-glass deployment of {} to {} (#{})",
        one_line(r.service.unwrap_or("(service?)")),
        r.bg.environment,
        r.issue
    )
}

/// The follow-up issue: who, when and why, what the gate was missing, and the seed's post-mortem
/// checklist.
pub fn review_body(r: &Review<'_>) -> String {
    use std::fmt::Write as _;
    let bg = r.bg;
    let mut s = format!(
        "## 🚨 Post-incident review: break-glass on #{}\n\n\
         @{} broke the glass on deployment request #{} to deploy to **{}** without the usual gate. \
         This review is due by **{}** (two working days).",
        r.issue,
        bg.by.login,
        r.issue,
        bg.environment,
        r.zone.format(r.due)
    );
    match r.escalate_to {
        Some(role) => {
            let _ = write!(s, " Still open then, it is escalated to `{role}`.");
        }
        None => s.push_str(" Name a role in `ci.escalate_to` to have an overdue review escalated."),
    }
    let _ = write!(
        s,
        "\n\n| | |\n|---|---|\n| Request | #{} |\n| By | @{} (id {}) |\n| At | {} |\n| Reason | {} |\n| Commits | {} |\n",
        r.issue,
        bg.by.login,
        bg.by.id,
        super::messages::timestamp(bg.at),
        super::messages::escape(&one_line(&bg.reason)),
        bg.heads.iter().map(|h| format!("`{}`", super::messages::short(h))).collect::<Vec<_>>().join(", ")
    );
    s.push_str("\n### What the gate was missing\n\n");
    if r.overridden.is_empty() {
        s.push_str("Nothing is recorded.\n");
    }
    for m in r.overridden {
        let _ = writeln!(s, "- {}", super::messages::escape(m));
    }
    s.push_str(
        "\n### Post-mortem checklist\n\n\
         - [ ] Timeline written: detection, the decision to break the glass, the deployment, recovery\n\
         - [ ] Root cause analysis done and the root cause documented\n\
         - [ ] Why the usual gate could not be waited for\n\
         - [ ] The deployed change reviewed after the fact (the approvals the gate asked for)\n\
         - [ ] Tests and CI green on what was deployed\n\
         - [ ] All services verified healthy (Prometheus: response time, error rate)\n\
         - [ ] Follow-up actions filed, each with an owner\n\
         - [ ] Incident response procedures and runbooks updated\n\
         - [ ] PM informed\n\n\
         Close this issue when the review is done.\n",
    );
    s
}

/// Said on a review issue closed as not planned: that is not a review done.
pub fn not_done_comment(due: i64) -> String {
    format!(
        "Closing this review as *not planned* does not mark it done: it stays due ({}) and is escalated if it is \
         still not done then. Close it as *completed* once the review is done.",
        super::messages::timestamp(due)
    )
}

/// The escalation comment of an overdue review.
pub fn escalation_comment(title: &str, due: i64, mentions: &str) -> String {
    let who = super::ci::escalation_who(mentions, "please see that it is done.");
    format!(
        "## 🚨 Escalated: {title}\n\nThis post-incident review of a break-glass deployment is still open after it was \
         due ({}). {who}",
        super::messages::timestamp(due)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::UserId;

    fn at(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).expect("a time").timestamp_millis()
    }

    #[test]
    fn a_review_is_due_two_working_days_later_in_the_report_zone() {
        let utc = Zone::default();
        // Wednesday 02:00 → Friday 02:00; Friday 02:00 → Tuesday 02:00.
        assert_eq!(review_due(at("2026-12-09T02:00:00Z"), &utc), at("2026-12-11T02:00:00Z"));
        assert_eq!(review_due(at("2026-12-11T02:00:00Z"), &utc), at("2026-12-15T02:00:00Z"));
        // Saturday 10:00 → counts from Monday 00:00 → Wednesday 00:00.
        assert_eq!(review_due(at("2026-12-12T10:00:00Z"), &utc), at("2026-12-16T00:00:00Z"));
        // In Berlin, Friday 23:30 UTC is already Saturday: due Wednesday 00:00 local.
        let berlin = Zone::named("Europe/Berlin");
        assert_eq!(review_due(at("2026-12-11T23:30:00Z"), &berlin), at("2026-12-15T23:00:00Z"));
        // Across the change to summer time, the same local time.
        assert_eq!(review_due(at("2027-03-26T08:00:00Z"), &berlin), at("2027-03-30T07:00:00Z"));
    }

    #[test]
    fn it_lives_until_spent_lapsed_or_ended_and_says_so() {
        let mut bg = BreakGlass {
            comment_id: 9,
            by: User { id: UserId(7), login: "sre".into() },
            reason: "checkout\nis down".into(),
            at: 0,
            environment: "production".into(),
            heads: vec!["a".repeat(40)],
            until: LASTS_MS,
            review: review_marker(5, 1),
            ended: None,
        };
        assert!(bg.live(LASTS_MS - 1) && !bg.live(LASTS_MS));
        assert!(bg.text().ends_with(": checkout is down"), "{}", bg.text());
        // A reason is inert markdown: no mention, no HTML.
        let loud = BreakGlass { reason: "ping @acme/everyone <!-- hide".into(), ..bg.clone() };
        assert!(!loud.text().contains("@acme") && !loud.text().contains("<!--"), "{}", loud.text());
        assert!(bg.note().contains("Unspent"), "{}", bg.note());
        bg.end(5, "spent", "run 42 approved");
        bg.end(6, "lapsed", "ignored: it ended already");
        assert!(!bg.live(10));
        assert!(bg.note().contains("Spent at") && bg.note().contains("run 42 approved"), "{}", bg.note());
    }
}
