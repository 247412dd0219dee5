//! `shipgate simulate`: the what-if a team runs before adopting a policy. A policy file, a request
//! body and a facts file (the linked PRs, their files and checks, team members, permissions, who
//! approves) go in; the sticky comment and the check run the App would write come out. It runs the
//! App's own decision (`domain::flow::decide`), one event at a time, exactly as the App would: the
//! issue labelled, then each approval as a new `/approve` comment. No database, no GitHub.
//!
//! With a time ([`simulate_at`], `shipgate simulate --at TIME`) the events happen before that
//! time (an approval at its own `at` when the facts file gives one, else in the seconds before),
//! and the gate is evaluated once more at that time, as the App's scheduled re-evaluation would:
//! that is the `now` the gate judges freeze windows and approval expiry by. Without one, the
//! events happen in the first seconds of 1970, as they always did.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::action::Action;
use crate::domain::flow::{self, Facts, IssueSnapshot, Out, Prev, Target, Trigger};
use crate::domain::gate::{CheckFact, PrFacts, User};
use crate::domain::ids::{InstallationId, IssueNumber, RepoId, UserId};
use crate::domain::messages;
use crate::domain::policy::{self, Permission};

/// An account in the facts file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub id: i64,
    pub login: String,
}

impl Account {
    fn user(&self) -> User {
        User { id: UserId(self.id), login: self.login.clone() }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub name: String,
    /// `completed` (default), `queued` or `in_progress`.
    #[serde(default)]
    pub status: Option<String>,
    /// `success`, `failure`, … (none while it runs).
    #[serde(default)]
    pub conclusion: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    pub number: i64,
    pub head: String,
    pub author: Account,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub checks: Vec<Check>,
}

/// What the App would have read from GitHub. Everything is optional: without it, nothing is known
/// (no PR, no checks, nobody in any team or role).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactsFile {
    /// `owner/name` (default `acme/app`).
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub issue: Option<i64>,
    /// Who wrote the request.
    #[serde(default)]
    pub requester: Option<Account>,
    #[serde(default)]
    pub pull_requests: Vec<PullRequest>,
    /// Every linked PR has an approving review.
    #[serde(default)]
    pub reviews_approved: bool,
    /// The account id of each login the policy names (GitHub's `/users/{login}`).
    #[serde(default)]
    pub logins: BTreeMap<String, i64>,
    /// Members of each team (`org/slug`), by account id.
    #[serde(default)]
    pub teams: BTreeMap<String, Vec<i64>>,
    /// Repository permission of each login (`read`, `triage`, `write`, `maintain`, `admin`).
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    /// The heads were deployed successfully to the staging environment.
    #[serde(default)]
    pub staging_deployed: bool,
    /// Who comments `/approve`, in order.
    #[serde(default)]
    pub approvals: Vec<Approval>,
}

/// An `/approve` comment in the facts file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub id: i64,
    pub login: String,
    /// When it is written (RFC 3339); only with `--at`, at or before it. Default: in the seconds
    /// before `--at`, in order.
    #[serde(default)]
    pub at: Option<String>,
}

impl Approval {
    fn user(&self) -> User {
        User { id: UserId(self.id), login: self.login.clone() }
    }
}

/// An RFC 3339 time (`2026-12-24T10:00:00+01:00`) as Unix ms; the error says what was expected.
pub fn parse_time(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("`{}` is not an RFC 3339 time, like 2026-12-24T10:00:00+01:00", text.trim()))
}

/// When each event happens: the label, then each approval; and the time of the last evaluation
/// (`at`, when given).
fn timeline(approvals: &[Approval], at: Option<i64>) -> Result<(Vec<i64>, Option<i64>), String> {
    let Some(at) = at else {
        if let Some(a) = approvals.iter().find(|a| a.at.is_some()) {
            return Err(format!("the facts file: the approval by `{}` has an `at`, which needs --at", a.login));
        }
        return Ok(((0..=approvals.len() as i64).map(|step| 1_000 * (step + 1)).collect(), None));
    };
    let n = approvals.len() as i64;
    let mut times = Vec::with_capacity(approvals.len() + 1);
    let mut given = Vec::with_capacity(approvals.len());
    for (i, a) in approvals.iter().enumerate() {
        let t = match &a.at {
            Some(text) => {
                parse_time(text).map_err(|e| format!("the facts file: the approval by `{}`: {e}", a.login))?
            }
            None => at - 1_000 * (n - i as i64),
        };
        given.push(t);
    }
    // The issue becomes a request a second before the first event.
    times.push(given.iter().copied().min().unwrap_or(at).min(at) - 1_000);
    times.extend(given);
    for (i, pair) in times.windows(2).enumerate() {
        if pair[1] < pair[0] {
            return Err(format!(
                "the facts file: the approval by `{}` comes before the event before it (give approvals in order)",
                approvals[i].login
            ));
        }
    }
    if let Some(i) = times.iter().skip(1).position(|t| *t > at) {
        return Err(format!("the facts file: the approval by `{}` is after --at", approvals[i].login));
    }
    Ok((times, Some(at)))
}

/// What the App would show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Simulation {
    pub comment: String,
    /// (conclusion, title, summary) of the check run on each head; None without an environment
    /// or a PR.
    pub check_run: Option<(String, String, String)>,
    /// The App's replies to the approvals it refused.
    pub replies: Vec<String>,
}

/// Runs the decision over the three inputs. An error is bad input (said in words).
pub fn simulate(policy_yaml: &str, request_body: &str, facts_yaml: Option<&str>) -> Result<Simulation, String> {
    simulate_at(policy_yaml, request_body, facts_yaml, None)
}

/// [`simulate`], with the gate evaluated at `at` (Unix ms) when given: see the module docs.
pub fn simulate_at(
    policy_yaml: &str,
    request_body: &str,
    facts_yaml: Option<&str>,
    at: Option<i64>,
) -> Result<Simulation, String> {
    let (policy, config_errors) = match policy::parse(policy_yaml) {
        Ok(p) => (p, vec![]),
        Err(errors) => (policy::Policy::default(), errors),
    };
    let file: FactsFile = match facts_yaml {
        Some(text) => serde_saphyr::from_str(text).map_err(|e| format!("the facts file: {e}"))?,
        None => FactsFile::default(),
    };
    let t = Target {
        installation: InstallationId(1),
        repo_id: RepoId(1),
        repo: file.repository.clone().unwrap_or_else(|| "acme/app".into()),
        issue: IssueNumber(file.issue.unwrap_or(1)),
    };
    let requester =
        file.requester.clone().map(|a| a.user()).unwrap_or(User { id: UserId(1), login: "requester".into() });
    let mut permissions = BTreeMap::new();
    for (login, level) in &file.permissions {
        let level = Permission::parse(level).ok_or_else(|| format!("the facts file: `{level}` is not a permission"))?;
        let id = file
            .approvals
            .iter()
            .map(|a| (&a.login, a.id))
            .chain(file.requester.iter().map(|a| (&a.login, a.id)))
            .find(|(l, _)| l.eq_ignore_ascii_case(login))
            .map(|(_, id)| id)
            .or_else(|| file.logins.get(&login.to_ascii_lowercase()).copied())
            .ok_or_else(|| {
                format!("the facts file: permission of `{login}`, who neither approves nor has a login id")
            })?;
        permissions.insert(UserId(id), Some(level));
    }
    let (times, at) = timeline(&file.approvals, at)?;
    let facts = Facts {
        policy,
        config_errors,
        issue: IssueSnapshot {
            author: requester,
            open: true,
            body: request_body.to_string(),
            labels: Vec::new(),
            updated_at: Some(if at.is_some() { times[0] } else { 0 }),
        },
        prs: file
            .pull_requests
            .iter()
            .map(|p| PrFacts {
                number: p.number,
                head_sha: p.head.clone(),
                author: p.author.user(),
                state: "open".into(),
                files: Some(p.files.clone()),
                checks: p
                    .checks
                    .iter()
                    .map(|c| CheckFact {
                        name: c.name.clone(),
                        status: c.status.clone().unwrap_or_else(|| "completed".into()),
                        conclusion: c.conclusion.clone(),
                        run_id: None,
                    })
                    .collect(),
                files_truncated: false,
                pushers: Some(vec![p.author.user().id]),
                first_commit_at: None,
                merge_commit: None,
                merged_at: None,
                base_ref: None,
                default_branch: None,
            })
            .collect(),
        review_approved: file.reviews_approved,
        pinned: file.logins.iter().map(|(l, id)| (l.to_ascii_lowercase(), UserId(*id))).collect(),
        team_members: file
            .teams
            .iter()
            .map(|(k, ids)| (k.clone(), ids.iter().copied().map(UserId).collect()))
            .collect(),
        permissions,
        staging_ok: Some(file.staging_deployed),
        ..Facts::default()
    };
    let mut facts = facts;
    // The policy's own label, so that the issue is a request under it.
    facts.issue.labels = vec![facts.policy.label.clone()];
    let mut prev = Prev::default();
    let mut out = Simulation { comment: String::new(), check_run: None, replies: Vec::new() };
    let mut triggers = vec![(times[0], Trigger::Issue { action: "labeled".into() })];
    for (i, a) in file.approvals.iter().enumerate() {
        let written = times[i + 1];
        triggers.push((
            written,
            Trigger::Comment {
                id: 1_000 + i as i64,
                user: a.user(),
                bot: false,
                body: "/approve".into(),
                created_at: Some(if at.is_some() { written } else { 1 }),
                on_pr: None,
                sole: true,
            },
        ));
    }
    // The App's scheduled re-evaluation at `at`: what the gate says then.
    if let Some(at) = at {
        triggers.push((at, Trigger::Recheck { checks_only: false }));
    }
    for (now, trigger) in &triggers {
        let now = *now;
        let d = flow::decide(&t, &prev, trigger, &facts, now);
        for o in &d.effects {
            match o {
                Out::Act(Action::UpsertComment { marker, body, .. }) if marker == messages::REQUEST_MARKER => {
                    // As the App writes it without a public address: no details link (offline, there
                    // is no page to link).
                    out.comment = crate::domain::links::fill_details(body, None);
                }
                Out::Act(Action::UpsertCheckRun { conclusion, title, summary, .. }) => {
                    out.check_run = Some((conclusion.clone().unwrap_or_default(), title.clone(), summary.clone()));
                }
                _ => {}
            }
        }
        out.replies.extend(d.replies.iter().filter_map(|a| match a {
            Action::UpsertComment { body, .. } => Some(body.clone()),
            _ => None,
        }));
        // What the App would store: the approvals it accepted, the row.
        prev = prev.after(&d, now);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/simulate").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn the_readme_example_opens_the_gate_after_both_approvals() {
        let s = simulate(&example("shipgate.yml"), &example("request.md"), Some(&example("facts.yml"))).expect("runs");
        assert_eq!(s.check_run.as_ref().map(|c| c.0.as_str()), Some("success"), "{}", s.comment);
        assert!(s.comment.contains("@alice") && s.comment.contains("@bob"), "{}", s.comment);
        assert!(s.replies.is_empty(), "{:?}", s.replies);
    }

    #[test]
    fn without_facts_nothing_is_known_and_the_gate_stays_closed() {
        let s = simulate(&example("shipgate.yml"), &example("request.md"), None).expect("runs");
        assert_eq!(s.check_run, None, "no PR is known: no check run");
        assert!(s.comment.contains("#12"), "{}", s.comment);
    }

    #[test]
    fn at_a_time_the_events_come_just_before_it_and_the_gate_is_evaluated_then() {
        let at = parse_time("2026-12-24T10:00:00+01:00").expect("RFC 3339");
        assert_eq!(at, 1_798_102_800_000);
        let then = simulate_at(&example("shipgate.yml"), &example("request.md"), Some(&example("facts.yml")), Some(at))
            .expect("runs");
        let plain = simulate(&example("shipgate.yml"), &example("request.md"), Some(&example("facts.yml"))).unwrap();
        assert_eq!(then, plain, "nothing in this policy depends on the time");
        let approval = |login: &str, at: Option<&str>| Approval { id: 1, login: login.into(), at: at.map(Into::into) };
        // Labelled, then each approval a second apart, then the gate at `at`.
        let (times, last) = timeline(&[approval("bob", None), approval("alice", None)], Some(at)).unwrap();
        assert_eq!((times, last), (vec![at - 3_000, at - 2_000, at - 1_000], Some(at)));
        // An approval at its own time (a day before): the request became one just before it.
        let day_before = at - 86_400_000;
        let (times, _) =
            timeline(&[approval("bob", Some("2026-12-23T10:00:00+01:00")), approval("alice", None)], Some(at)).unwrap();
        assert_eq!(times, [day_before - 1_000, day_before, at - 1_000]);
        // Without a time: as before.
        assert_eq!(timeline(&[approval("bob", None)], None).unwrap(), (vec![1_000, 2_000], None));
        // Refused: after --at, out of order, `at` without --at, not a time.
        let e = timeline(&[approval("bob", Some("2026-12-25T10:00:00+01:00"))], Some(at)).unwrap_err();
        assert!(e.contains("`bob` is after --at"), "{e}");
        let e =
            timeline(&[approval("bob", None), approval("alice", Some("2026-12-23T10:00:00Z"))], Some(at)).unwrap_err();
        assert!(e.contains("`alice` comes before"), "{e}");
        let e = timeline(&[approval("bob", Some("2026-12-23T10:00:00Z"))], None).unwrap_err();
        assert!(e.contains("needs --at"), "{e}");
        let e = timeline(&[approval("bob", Some("tomorrow"))], Some(at)).unwrap_err();
        assert!(e.contains("`tomorrow` is not an RFC 3339 time"), "{e}");
        let e = simulate_at("", "", Some("approvals: [{ id: 1, login: x, at: yesterday }]"), Some(at)).unwrap_err();
        assert!(e.contains("not an RFC 3339 time"), "{e}");
    }

    #[test]
    fn bad_input_is_said_not_guessed() {
        let e = simulate("", "", Some("pull_requests: [{ number: 1 }]")).expect_err("a PR needs a head");
        assert!(e.starts_with("the facts file:"), "{e}");
        let e = simulate("", "", Some("permissions: { eve: superuser }")).expect_err("not a permission");
        assert!(e.contains("superuser"), "{e}");
        let e = simulate("", "", Some("colour: blue")).expect_err("unknown key");
        assert!(e.contains("colour"), "{e}");
        // A broken policy still evaluates: every gate closed, the errors shown.
        let s = simulate("environments: [", &example("request.md"), None).expect("runs");
        assert!(s.comment.contains("Config"), "{}", s.comment);
    }
}
