//! `shipgate simulate`: the what-if a team runs before adopting a policy. A policy file, a request
//! body and a facts file (the linked PRs, their files and checks, team members, permissions, who
//! approves) go in; the sticky comment and the check run the App would write come out. It runs the
//! App's own decision (`domain::flow::decide`), one event at a time, exactly as the App would: the
//! issue labelled, then each approval as a new `/approve` comment. No database, no GitHub.

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
    pub approvals: Vec<Account>,
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
            .chain(file.requester.iter())
            .find(|a| a.login.eq_ignore_ascii_case(login))
            .map(|a| a.id)
            .or_else(|| file.logins.get(&login.to_ascii_lowercase()).copied())
            .ok_or_else(|| {
                format!("the facts file: permission of `{login}`, who neither approves nor has a login id")
            })?;
        permissions.insert(UserId(id), Some(level));
    }
    let facts = Facts {
        policy,
        config_errors,
        issue: IssueSnapshot {
            author: requester,
            open: true,
            body: request_body.to_string(),
            labels: Vec::new(),
            updated_at: Some(0),
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
    let mut triggers = vec![Trigger::Issue { action: "labeled".into() }];
    for (i, a) in file.approvals.iter().enumerate() {
        triggers.push(Trigger::Comment {
            id: 1_000 + i as i64,
            user: a.user(),
            bot: false,
            body: "/approve".into(),
            created_at: Some(1),
            on_pr: None,
            sole: true,
        });
    }
    for (step, trigger) in triggers.iter().enumerate() {
        let now = 1_000 * (step as i64 + 1);
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
