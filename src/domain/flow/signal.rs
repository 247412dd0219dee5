//! Check events between evaluations (issue 14). A CI run completes dozens of check runs within a
//! minute; evaluating the request for each one cost about 7 GitHub calls per event. Instead, each
//! check run or status event is folded into what the request last read (`absorb`), which says
//! whether it can change the verdict, only what the request shows, or nothing; and the
//! evaluations it asks for are coalesced (`schedule`): one per request once the burst has been
//! quiet, and no later than a deadline after the first event that can change the verdict.
//!
//! What was folded in is never taken for a fact: a request that absorbed events is read afresh
//! (its checks at least) by its next evaluation, whatever triggered it (`Remembered::absorbed`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Remembered;
use crate::domain::gate::{self, CheckFact, GateState};
use crate::domain::policy::RequireChecks;

/// What a check event says, as far as the request's gate is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    /// A check run completed on `sha`.
    CheckRun {
        sha: String,
        name: String,
        conclusion: Option<String>,
        /// The GitHub Actions run it belongs to (only for one GitHub Actions made).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<i64>,
    },
    /// A commit status on `sha` (`pending`, `success`, `failure` or `error`).
    Status { sha: String, context: String, state: String },
    /// A check suite or workflow run completed on `sha`: its check runs come with events of their
    /// own, but it may say something they do not (a run the App never heard of).
    Suite {
        sha: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conclusion: Option<String>,
    },
}

impl Signal {
    pub fn sha(&self) -> &str {
        match self {
            Signal::CheckRun { sha, .. } | Signal::Status { sha, .. } | Signal::Suite { sha, .. } => sha,
        }
    }

    /// The check it reports, as the gate reads checks (statuses as GitHub's combined status does).
    fn fact(&self) -> Option<CheckFact> {
        match self {
            Signal::CheckRun { name, conclusion, run_id, .. } => Some(CheckFact {
                name: name.clone(),
                status: "completed".into(),
                conclusion: conclusion.clone(),
                run_id: *run_id,
            }),
            Signal::Status { context, state, .. } => Some(CheckFact {
                name: context.clone(),
                status: if state == "pending" { "in_progress".into() } else { "completed".into() },
                conclusion: match state.as_str() {
                    "success" => Some("success".into()),
                    "pending" => None,
                    _ => Some("failure".into()),
                },
                run_id: None,
            }),
            Signal::Suite { .. } => None,
        }
    }
}

/// What an event can change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Significance {
    /// Neither the verdict nor what the request shows: no evaluation, no call.
    Nothing,
    /// What the request shows (a check's line in the Tests gate), not whether it passes.
    Display,
    /// Whether the Tests gate passes: evaluated within `Coalesce::verdict_within`.
    Verdict,
    /// It closes a passing Tests gate: evaluated at once.
    Closes,
}

/// The request's Tests gate over `rem`'s PRs (the state and the words shown).
fn tests_gate(rem: &Remembered, require: Option<&RequireChecks>) -> (GateState, String) {
    let g = gate::tests_gate(&rem.prs, require, &rem.deploying_runs);
    (g.state, g.detail)
}

/// Folds `signal` into `rem`, the facts the request's last evaluation read (and what it absorbed
/// since): the facts to remember now and what the event can change. `require` is what the
/// request's environment requires of checks (None: no environment).
///
/// The classification errs towards reading: while the Tests gate passes, any news of a head's
/// checks is read at once, as every event was before events were folded (a check that started
/// sends no event the App hears, and a passing gate must not stand on a stale list); a check
/// name the head has twice (a check run and a commit status) is not folded by name; a suite or
/// workflow run that did not succeed can change the verdict.
pub fn absorb(rem: &Remembered, require: Option<&RequireChecks>, signal: &Signal) -> (Remembered, Significance) {
    let sha = signal.sha();
    let on_a_head = rem.prs.iter().any(|p| p.head_sha.eq_ignore_ascii_case(sha));
    let before = tests_gate(rem, require);
    let mut after = rem.clone();
    // The news folded into the head's checks, by name.
    let mut twice = false;
    if let Some(fact) = signal.fact().filter(|_| on_a_head) {
        for pr in after.prs.iter_mut().filter(|p| p.head_sha.eq_ignore_ascii_case(sha)) {
            twice |= pr.checks.iter().filter(|c| c.name == fact.name).count() > 1;
            match pr.checks.iter_mut().find(|c| c.name == fact.name) {
                Some(c) => {
                    c.status = fact.status.clone();
                    c.conclusion = fact.conclusion.clone();
                    c.run_id = fact.run_id.or(c.run_id);
                }
                None => pr.checks.push(fact.clone()),
            }
        }
    }
    let now = tests_gate(&after, require);
    let significance = match signal {
        // Checks on a commit that is no linked PR's head (a merge commit, a covered commit) are
        // no test the gate waits for; a suite there neither, unless the request has no PR read.
        _ if !on_a_head && (signal.fact().is_some() || !rem.prs.is_empty()) => Significance::Nothing,
        // The gate passed as last read: read at once. Passing only as folded, an evaluation is
        // due already (within the verdict's deadline, or at once): this keeps it so.
        _ if before.0 == GateState::Pass => {
            if rem.absorbed {
                Significance::Verdict
            } else {
                Significance::Closes
            }
        }
        Signal::Suite { conclusion: Some(c), .. } if !passed(c) => Significance::Verdict,
        Signal::Suite { .. } => Significance::Display,
        _ if before.0 != now.0 || twice => Significance::Verdict,
        _ if before.1 != now.1 => Significance::Display,
        _ => Significance::Nothing,
    };
    if significance == Significance::Nothing {
        return (rem.clone(), significance);
    }
    after.absorbed = true;
    (after, significance)
}

/// A conclusion the Tests gate counts as green.
fn passed(conclusion: &str) -> bool {
    matches!(conclusion, "success" | "neutral" | "skipped")
}

/// How evaluations asked for by check events are coalesced (settings; see `Config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coalesce {
    /// Once an event that can change the verdict has come, evaluate when no event has come for
    /// this long (`SHIPGATE_COALESCE_QUIET_MS`, 2 s) ...
    pub quiet: Duration,
    /// ... and no later than this after it (`SHIPGATE_COALESCE_VERDICT_MS`, 10 s).
    pub verdict_within: Duration,
    /// Events that change only what the request shows are shown this long after the first of
    /// them at the latest (`SHIPGATE_COALESCE_REFRESH_MS`, 60 s), with whatever came meanwhile.
    pub refresh_within: Duration,
}

impl Default for Coalesce {
    fn default() -> Self {
        Coalesce {
            quiet: Duration::from_secs(2),
            verdict_within: Duration::from_secs(10),
            refresh_within: Duration::from_secs(60),
        }
    }
}

/// A request's coming evaluation, while events keep arriving (Unix ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// The first event of the burst.
    pub first_at: i64,
    /// The latest the evaluation may come, whatever else arrives.
    pub deadline: i64,
    /// When it comes if nothing else arrives.
    pub due_at: i64,
    /// The events folded in.
    pub events: i64,
    /// One of them can change the verdict: the burst's end is waited for (quiet), no longer.
    pub verdict: bool,
}

/// When the evaluation comes once an event of `significance` arrives at `now` (None: the event
/// asks for none). An event that can change the verdict is evaluated once the burst has been
/// quiet, within `verdict_within`; one that closes a passing gate, at once; one that changes only
/// what is shown waits for the refresh deadline (a burst of them costs one evaluation a minute,
/// not one per pause), unless the burst also changes the verdict.
pub fn schedule(existing: Option<Due>, now: i64, significance: Significance, cfg: &Coalesce) -> Option<Due> {
    let ms = |d: Duration| d.as_millis().min(i64::MAX as u128) as i64;
    let within = match significance {
        Significance::Nothing => return existing,
        Significance::Closes => 0,
        Significance::Verdict => ms(cfg.verdict_within),
        Significance::Display => ms(cfg.refresh_within),
    };
    let deadline = existing.map_or(i64::MAX, |d| d.deadline).min(now.saturating_add(within));
    let verdict = significance != Significance::Display || existing.is_some_and(|d| d.verdict);
    Some(Due {
        first_at: existing.map_or(now, |d| d.first_at),
        deadline,
        due_at: if verdict { now.saturating_add(ms(cfg.quiet)).min(deadline) } else { deadline },
        events: existing.map_or(0, |d| d.events) + 1,
        verdict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::gate::{PrFacts, User};

    const HEAD: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";

    fn check(name: &str, status: &str, conclusion: Option<&str>) -> CheckFact {
        CheckFact { name: name.into(), status: status.into(), conclusion: conclusion.map(str::to_string), run_id: None }
    }

    fn remembered(checks: Vec<CheckFact>) -> Remembered {
        Remembered {
            prs: vec![PrFacts {
                number: 12,
                head_sha: HEAD.into(),
                author: User::default(),
                state: "open".into(),
                files: None,
                checks,
                files_truncated: false,
                pushers: None,
                first_commit_at: None,
                merge_commit: None,
                merged_at: None,
                base_ref: None,
                default_branch: None,
            }],
            ..Remembered::default()
        }
    }

    fn run(name: &str, conclusion: &str) -> Signal {
        Signal::CheckRun { sha: HEAD.into(), name: name.into(), conclusion: Some(conclusion.into()), run_id: None }
    }

    #[test]
    fn the_last_green_check_is_the_one_that_can_open_the_gate() {
        let mut rem = remembered((0..3).map(|i| check(&format!("job-{i}"), "queued", None)).collect());
        for (i, want) in [(0, Significance::Display), (1, Significance::Display), (2, Significance::Verdict)] {
            let (next, s) = absorb(&rem, Some(&RequireChecks::All), &run(&format!("job-{i}"), "success"));
            assert_eq!(s, want, "job-{i}");
            assert!(next.absorbed);
            rem = next;
        }
        assert_eq!(tests_gate(&rem, Some(&RequireChecks::All)).0, GateState::Pass);
        // Passing only as folded: the evaluation it asked for is due already, news keeps it so
        // (not one evaluation per late suite event).
        let suite = Signal::Suite { sha: HEAD.into(), conclusion: Some("success".into()) };
        assert_eq!(absorb(&rem, Some(&RequireChecks::All), &suite).1, Significance::Verdict);
    }

    #[test]
    fn a_failure_changes_the_verdict_once_and_closes_an_open_gate_at_once() {
        let rem = remembered(vec![check("a", "queued", None), check("b", "queued", None)]);
        let (rem, s) = absorb(&rem, None, &run("a", "failure"));
        assert_eq!(s, Significance::Verdict);
        let (_, s) = absorb(&rem, None, &run("b", "failure"));
        assert_eq!(s, Significance::Display, "a second failure changes the words, not the verdict");

        let green = remembered(vec![check("a", "completed", Some("success"))]);
        let (_, s) = absorb(&green, None, &run("a", "failure"));
        assert_eq!(s, Significance::Closes);
        let (_, s) = absorb(&green, None, &run("b", "failure"));
        assert_eq!(s, Significance::Closes, "a check the App has not seen counts too");
        // While the gate passes, any news of the head is read at once: a green check the App has
        // not seen may come with others that started without an event.
        let (_, s) = absorb(&green, None, &run("lint", "success"));
        assert_eq!(s, Significance::Closes);
        let (_, s) = absorb(&green, None, &Signal::Suite { sha: HEAD.into(), conclusion: Some("success".into()) });
        assert_eq!(s, Significance::Closes);
        let (_, s) = absorb(
            &green,
            None,
            &Signal::Status { sha: HEAD.into(), context: "ci/legacy".into(), state: "pending".into() },
        );
        assert_eq!(s, Significance::Closes, "a new pending status closes a passing gate");
    }

    #[test]
    fn what_the_gate_does_not_read_costs_nothing() {
        let rem = remembered(vec![check("build", "queued", None)]);
        // Not a required check.
        let named = RequireChecks::Named(vec!["build".into()]);
        let (next, s) = absorb(&rem, Some(&named), &run("lint", "failure"));
        assert_eq!((s, next.absorbed), (Significance::Nothing, false));
        assert_eq!(next, rem, "nothing is remembered of it");
        // Not a head.
        let other = Signal::CheckRun { sha: "b".repeat(40), name: "build".into(), conclusion: None, run_id: None };
        assert_eq!(absorb(&rem, None, &other).1, Significance::Nothing);
        // The same news twice (a redelivery).
        let (rem, _) = absorb(&rem, None, &run("build", "failure"));
        assert_eq!(absorb(&rem, None, &run("build", "failure")).1, Significance::Nothing);
        // A suite on the head may bring news, a failed one about the verdict; elsewhere it does
        // not.
        let suite = |c: &str, sha: &str| Signal::Suite { sha: sha.into(), conclusion: Some(c.into()) };
        assert_eq!(absorb(&rem, None, &suite("success", HEAD)).1, Significance::Display);
        assert_eq!(absorb(&rem, None, &suite("failure", HEAD)).1, Significance::Verdict);
        assert_eq!(absorb(&rem, None, &suite("failure", &"c".repeat(40))).1, Significance::Nothing);
    }

    #[test]
    fn a_name_the_head_has_twice_is_not_folded_by_name() {
        // A check run `ci` (green) and a commit status `ci` (pending): the status's news.
        let rem = remembered(vec![check("ci", "completed", Some("success")), check("ci", "in_progress", None)]);
        let status = Signal::Status { sha: HEAD.into(), context: "ci".into(), state: "success".into() };
        assert_eq!(absorb(&rem, None, &status).1, Significance::Verdict);
    }

    #[test]
    fn the_deploying_runs_own_jobs_are_not_waited_for() {
        let mut rem = remembered(vec![
            check("test", "in_progress", None),
            CheckFact { run_id: Some(7), ..check("deploy", "in_progress", None) },
        ]);
        rem.deploying_runs = vec![7];
        assert_eq!(absorb(&rem, None, &run("test", "success")).1, Significance::Verdict);
    }

    #[test]
    fn coalescing_waits_for_quiet_within_a_deadline() {
        let cfg = Coalesce::default();
        // A steady burst, one event a second, the sixth can change the verdict: from then on due
        // 2 s after each event, never past 10 s after it.
        let mut due = None;
        for t in 0..30 {
            let s = if t == 5 { Significance::Verdict } else { Significance::Display };
            due = schedule(due, t * 1000, s, &cfg);
            let d = due.unwrap();
            assert_eq!(d.first_at, 0);
            let want = if t < 5 { 60_000 } else { (t * 1000 + 2000).min(15_000) };
            assert_eq!(d.due_at, want, "at {t}s");
        }
        assert_eq!(due.unwrap().events, 30);
        // Only what is shown changes: once, 60 s after the first, however the events come.
        let mut due = None;
        for t in [0, 1, 5, 9, 30, 59, 100] {
            due = schedule(due, t * 1000, Significance::Display, &cfg);
            assert_eq!(due.unwrap().due_at, 60_000);
        }
        // Closing: at once, and later news keeps it so; nothing: as it was.
        let d = schedule(None, 500, Significance::Display, &cfg);
        assert_eq!(schedule(d, 700, Significance::Nothing, &cfg), d);
        let closed = schedule(d, 700, Significance::Closes, &cfg);
        assert_eq!(closed.unwrap().due_at, 700);
        assert_eq!(schedule(closed, 800, Significance::Display, &cfg).unwrap().due_at, 700);
        assert_eq!(schedule(None, 700, Significance::Nothing, &cfg), None);
    }
}
