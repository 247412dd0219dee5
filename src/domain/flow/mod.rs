//! A deployment request's whole evaluation, as pure functions (ENGINEERING.md, "The shape").
//!
//! The handler reads the request as stored ([`Prev`]) and the event ([`Trigger`]), asks [`plan`]
//! what to read from GitHub and the database, gathers it, asks [`plan_more`] what else the first
//! facts call for (the roles the changed files need, the people whose roles count, the
//! permissions and pushers the commands need), gathers that, and calls [`decide`], which returns
//! the request's new state and everything to do about it ([`Decision`]): the handler applies it
//! and decides nothing. Every rule of the gate, staleness, commands, deployments, labels and the
//! audit log is therefore a unit test over a [`Facts`] value (see the tests below, and
//! `command.rs` for the rules of each command).

pub mod command;
pub mod signal;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use self::command::{CommandFacts, CommandWants, Outcome, Refusal, RequestState, decide_command, plan_command};
use super::action::Action;
use super::breakglass::{self, BreakGlass};
use super::commands::{self, Command, CommandError};
use super::gate::{self, ApprovalFact, Evaluation, GateInput, PrFacts, User};
use super::ids::{InstallationId, IssueNumber, RepoId, UserId};
use super::messages::{self, DeployView, RequestView};
use super::notify::{self, NotifyEvent, RequestNotice};
use super::policy::{ConfigError, DeployMode, Permission, Policy, TeamRef};
use super::request::{self, ChangeRequest, Problem};
use super::state::{ApprovalChange, ApprovalState, DeployState, Link, RequestRow, RequestStatus, StatusFacts};

/// The state labels the App manages.
pub const STATE_LABELS: &[&str] =
    &["incomplete", "awaiting-approval", "blocked", "approved", "on-hold", "deploying", "deployed", "deploy-failed"];

/// How long a deployment the App asked for, with no status from GitHub yet, blocks another `/deploy`.
pub const REQUESTED_BLOCKS_MS: i64 = 15 * 60 * 1000;

/// How many edited or deleted comment ids a request remembers.
const DEAD_COMMENTS: usize = 200;

/// The repository and issue an evaluation is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub installation: InstallationId,
    pub repo_id: RepoId,
    pub repo: String,
    pub issue: IssueNumber,
}

/// What triggered an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    Issue {
        action: String,
    },
    /// A new comment, on the request itself (`on_pr` None) or on linked PR `on_pr`.
    Comment {
        id: i64,
        user: User,
        bot: bool,
        body: String,
        /// When GitHub says it was written (Unix ms), if the payload says.
        created_at: Option<i64>,
        on_pr: Option<i64>,
        /// For a comment on a PR: whether this request is the only open one that links it
        /// (commands without a `#N` apply only then).
        sole: bool,
    },
    /// Comment `id` (written by `author`) was edited, by anyone, to `body`; `before` is its old
    /// text when the payload says. An edit never carries a command.
    CommentEdited {
        id: i64,
        author: User,
        /// Who edited it (anyone with write access may edit anyone's comment).
        editor: User,
        body: String,
        before: Option<String>,
        on_pr: Option<i64>,
        /// The comment is this App's own (verified by the App's id), edited by a person: only
        /// such an edit of the sticky comment carries a person's ticks.
        by_app: bool,
    },
    CommentDeleted {
        id: i64,
    },
    /// Evaluate again; `checks_only` when a check run or status caused it (only checks changed).
    Recheck {
        checks_only: bool,
    },
    /// A status of deployment `id` (recorded in the deployments table).
    Deployment {
        id: i64,
    },
    /// A notification of `event` about the request was really sent to `channel`.
    Notified {
        event: String,
        channel: String,
    },
}

impl Trigger {
    fn on_pr(&self) -> Option<i64> {
        match self {
            Trigger::Comment { on_pr, .. } => *on_pr,
            _ => None,
        }
    }
}

/// Facts remembered between evaluations (the request row's `facts`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Remembered {
    pub prs: Vec<PrFacts>,
    pub missing_prs: Vec<i64>,
    pub review_approved: bool,
    /// The full commit SHA a request without pull requests names (found like a PR head when a
    /// run or a deployment of it arrives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// A digest of what was last shown (comment and check runs): unchanged, nothing is sent.
    #[serde(default)]
    pub shown: String,
    /// The timer last set (see [`Out::Timer`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<i64>,
    /// What was last shown, as a tree: the details page renders it (never evaluates again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<messages::Shown>,
    /// When the issue last became a request (GitHub's time, Unix ms): comments written before
    /// never carry commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_since: Option<i64>,
    /// Why the revision last changed (said of the approvals it made stale).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revised: String,
    /// Logins of the policy seen on another account than the one they were pinned to: said on
    /// the request for as long as it lives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_updated_at: Option<i64>,
    /// Comments seen edited or deleted (newest last, at most `DEAD_COMMENTS`): a creation
    /// delivered after them carries no command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dead_comments: Vec<i64>,
    /// The person's checklist items someone ticked in the sticky comment (kept when the App edits
    /// it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ticked: Vec<String>,
    /// Check events were folded into `prs` since they were read ([`signal::absorb`]): what they
    /// say is not taken for a fact, so the next evaluation reads the checks again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absorbed: bool,
    /// The workflow runs that were waiting on this request to deploy (their unfinished jobs are
    /// not tests), for [`signal::absorb`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deploying_runs: Vec<i64>,
    /// The channels a `deployed` notification of this request really reached (the checklist's
    /// "Notify team").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notified: Vec<String>,
    /// Every use of break-glass on this request, oldest first; only the last can be live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakglass: Vec<BreakGlass>,
}

/// The role whose holders may break the glass (SPEC §3.7).
pub const BREAK_GLASS_ROLE: &str = "break_glass";

/// Whether an evaluation needs to know who holds `break_glass`: the policy defines the role, and
/// a command may need it (`/breakglass`, `/rollback`) or a break-glass not ended yet is checked
/// against its holder again (one who left the role ends it).
fn breakglass_lookup(policy: &Policy, cmds: &[CommentCommand], remembered: &Remembered) -> bool {
    policy.roles.contains_key(BREAK_GLASS_ROLE)
        && (cmds.iter().any(|c| matches!(c.parsed, Ok(Command::BreakGlass { .. } | Command::Rollback)))
            || unended_breakglass(remembered).is_some())
}

/// The last break-glass, if it has not ended (it may have lapsed by the clock).
fn unended_breakglass(remembered: &Remembered) -> Option<&BreakGlass> {
    remembered.breakglass.last().filter(|b| b.ended.is_none())
}

/// The issue, as the event (or a fresh read) shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IssueSnapshot {
    pub author: User,
    pub open: bool,
    pub body: String,
    pub labels: Vec<String>,
    /// GitHub's `updated_at` (Unix ms).
    pub updated_at: Option<i64>,
}

/// An approval as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApprovalRecord {
    pub comment_id: i64,
    pub user: User,
    /// The roles it was given for (JSON list, as stored).
    pub roles: String,
    pub environment: String,
    pub head_shas: Vec<String>,
    pub revision: i64,
    /// None: a state this version does not know (it counts for nothing).
    pub state: Option<ApprovalState>,
    pub note: Option<String>,
    pub created_at: i64,
}

/// A deployment as recorded from its statuses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentFact {
    pub deployment_id: i64,
    /// The request it belongs to (created or approved by the App for it).
    pub issue: Option<i64>,
    pub sha: String,
    pub environment: String,
    pub state: DeployState,
    /// app | approved | actions | manual
    pub origin: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The log of the run that deployed (its newest status's link).
    pub log_url: Option<String>,
}

/// A workflow run waiting on the gate: on the App's protection rule, or (deploy mode `workflow`)
/// a job at `POST /gate/wait`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaitingRun {
    pub run_id: i64,
    pub environment: String,
    pub sha: String,
    /// A job at `/gate/wait` (answered there, not on GitHub).
    pub workflow: bool,
    /// The run's attempt (a job at `/gate/wait`; 0 for a protection rule).
    pub run_attempt: i64,
    /// The request the wait was routed to (it says why it does not cover the commit, if so).
    pub candidate: Option<i64>,
    /// The ref the run is on (`refs/heads/main`), as its OIDC token says.
    pub git_ref: Option<String>,
}

/// The request as stored before this evaluation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prev {
    pub row: Option<RequestRow>,
    pub approvals: Vec<ApprovalRecord>,
    /// The row's `facts`, read once.
    memory: Remembered,
}

impl Prev {
    pub fn new(row: Option<RequestRow>, approvals: Vec<ApprovalRecord>) -> Prev {
        let memory = row.as_ref().and_then(|r| serde_json::from_str(&r.facts).ok()).unwrap_or_default();
        Prev { row, approvals, memory }
    }

    /// The request as the next evaluation finds it once `d` is stored (approvals created or
    /// changed at `now`): what the store would read back, for the simulator and the tests.
    pub fn after(&self, d: &Decision, now: i64) -> Prev {
        let mut approvals = self.approvals.clone();
        for out in &d.effects {
            let Out::SaveApproval(a) = out else { continue };
            match approvals.iter_mut().find(|x| x.comment_id == a.comment_id) {
                Some(x) => {
                    x.state = Some(a.state);
                    x.note = a.note.clone();
                }
                None => approvals.push(ApprovalRecord {
                    comment_id: a.comment_id,
                    user: User { id: UserId(a.user_id), login: a.login.clone() },
                    roles: a.roles.clone(),
                    environment: a.environment.clone(),
                    head_shas: a.head_shas.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                    revision: a.revision,
                    state: Some(a.state),
                    note: a.note.clone(),
                    created_at: now,
                }),
            }
        }
        Prev::new(Some(d.row.clone()), approvals)
    }

    /// What the last evaluation remembered.
    pub fn remembered(&self) -> &Remembered {
        &self.memory
    }
}

/// Whether a copy of the issue is its current state: one older than a copy already seen (a late
/// or redelivered event) is not, and must be read afresh, so a stale copy never reopens a closed
/// request.
pub fn snapshot_is_current(prev: &Prev, updated_at: Option<i64>) -> bool {
    updated_at.zip(prev.remembered().issue_updated_at).is_none_or(|(at, known)| at >= known)
}

/// Whether the issue is (or was) a deployment request at all.
pub fn concerns(prev: &Prev, policy: &Policy, issue: &IssueSnapshot) -> bool {
    prev.row.is_some() || issue.labels.iter().any(|l| policy.label_matches(l))
}

/// What the request says, read under the policy.
struct Reading {
    req: ChangeRequest,
    /// The policy's own name for the environment (aliases and case resolved); with a broken
    /// policy, the request's own word.
    environment: Option<String>,
    numbers: Vec<i64>,
    labelled: bool,
    open: bool,
    problems: Vec<Problem>,
}

fn read(t: &Target, policy: &Policy, config_errors: &[ConfigError], issue: &IssueSnapshot) -> Reading {
    let req = request::parse(&issue.body);
    let known: Vec<&str> = policy.environments.keys().map(String::as_str).collect();
    let mut problems: Vec<Problem> =
        req.problems(&known, |e| policy.environment(e).and_then(|env| env.max_rollback_minutes));
    if !config_errors.is_empty() {
        // The environments are unknown while the policy is broken: that is the policy's fault.
        problems.retain(|p| p.field != "environment");
    }
    problems.extend(req.pr_problems(&t.repo));
    let environment = req.environment_key(&known).map(str::to_string).or_else(|| {
        // A broken policy defines no environment: the request's own word names the check run,
        // which stays closed.
        req.environment
            .as_deref()
            .filter(|_| !config_errors.is_empty())
            .map(request::normalize_environment)
            .filter(|e| !e.is_empty())
    });
    let numbers = req.pr_numbers(&t.repo);
    Reading {
        labelled: issue.labels.iter().any(|l| policy.label_matches(l)),
        open: issue.open,
        req,
        environment,
        numbers,
        problems,
    }
}

/// How the linked PRs are known in this evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrReads {
    /// As last read: a comment changes approvals, not PRs or checks (those come with their own
    /// events, which ask for a recheck), unless it says `/recheck`.
    Reuse,
    /// As last read, with their checks read again: a check or status caused the recheck.
    ChecksOnly,
    /// Read again: each PR, its files (when a path rule needs them), checks and reviews.
    Fetch,
}

/// What to read before deciding (first round).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FactsWanted {
    pub prs: PrReads,
    /// The PRs the request links.
    pub numbers: Vec<i64>,
    /// Changed files (only when one of the environment's rules is bound to paths).
    pub files: bool,
    /// The deployment whose status triggered this.
    pub deployment: Option<i64>,
    /// The request's current deployment.
    pub current_deployment: Option<i64>,
    /// Runs waiting on the protection rule in this environment.
    pub waiting_runs: Option<String>,
    /// Whether CI is red on this branch (None inside: the default branch).
    pub ci_red: Option<Option<String>>,
}

/// What to read first.
pub fn plan(
    t: &Target,
    prev: &Prev,
    trigger: &Trigger,
    policy: &Policy,
    config_errors: &[ConfigError],
    issue: &IssueSnapshot,
) -> FactsWanted {
    let r = read(t, policy, config_errors, issue);
    let remembered = prev.remembered();
    let env_policy = r.environment.as_deref().and_then(|e| policy.environment(e));
    let linked: BTreeSet<i64> = r.numbers.iter().copied().collect();
    let known: BTreeSet<i64> =
        remembered.prs.iter().map(|p| p.number).chain(remembered.missing_prs.iter().copied()).collect();
    // A command that can open the gate or start a deployment reads the checks again: a check
    // event handled between the read of a new head's checks and the commit of the links that make
    // the request findable by that commit is lost to the request (check events run per commit,
    // beside the request's own deliveries), and folded events never stand in for a read.
    let said = match trigger {
        Trigger::Comment { body, .. } => commands::parse(body),
        _ => Vec::new(),
    };
    let opens = said.iter().any(|c| {
        matches!(
            c,
            Ok(Command::Approve { .. } | Command::Undeny | Command::Unhold | Command::Deploy | Command::Rollback)
        )
    });
    let reuse = match trigger {
        Trigger::Comment { .. } => !opens && !said.iter().any(|c| matches!(c, Ok(Command::Recheck))),
        Trigger::CommentDeleted { .. }
        | Trigger::CommentEdited { .. }
        | Trigger::Deployment { .. }
        | Trigger::Notified { .. } => true,
        _ => false,
    } && prev.row.is_some()
        && known == linked;
    // Check events folded in since the last read are not facts: the checks are read again.
    let (reuse, absorbed) = (reuse && !remembered.absorbed, reuse && remembered.absorbed);
    let checks_only = (matches!(trigger, Trigger::Recheck { checks_only: true }) || absorbed || opens)
        && !reuse
        && prev.row.is_some()
        && remembered.missing_prs.is_empty()
        && remembered.prs.iter().map(|p| p.number).collect::<BTreeSet<i64>>() == linked;
    FactsWanted {
        prs: if reuse {
            PrReads::Reuse
        } else if checks_only {
            PrReads::ChecksOnly
        } else {
            PrReads::Fetch
        },
        files: env_policy.is_some_and(|e| e.approvals.iter().any(|a| !a.when_paths.is_empty())),
        numbers: r.numbers,
        deployment: match trigger {
            Trigger::Deployment { id } => Some(*id),
            _ => None,
        },
        current_deployment: prev.row.as_ref().and_then(|r| r.deployment_id),
        waiting_runs: r
            .environment
            .clone()
            .filter(|_| r.labelled && (r.open || prev.row.as_ref().is_some_and(|row| row.rollback_run_id.is_some()))),
        ci_red: env_policy.filter(|_| policy.ci.block_deploys_while_red).map(|e| e.branch.clone()),
    }
}

/// What to read once the PRs and deployments are known (second round).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MoreWanted {
    /// The roles the request needs (its environment's rules that apply to the changed files).
    pub roles: BTreeSet<String>,
    /// Logins those roles name, to resolve to account ids (pinned the first time).
    pub logins: Vec<String>,
    /// Whose roles count here (approvers so far and the commenter): their teams' members are read
    /// only if there is anyone.
    pub people: Vec<User>,
    /// The teams whose members to read (none when there is no one to look for).
    pub teams: Vec<TeamRef>,
    /// Whose repository permission is needed.
    pub permissions: Vec<User>,
    /// Who pushed to the linked PRs.
    pub pushers: bool,
    /// The staging environment whose deployments of the heads are the staging evidence.
    pub staging: Option<String>,
    /// The branch the environment deploys from (None: the default branch): a merge commit counts
    /// as staging evidence only for a merge into it.
    pub branch: Option<String>,
    /// (environment, commit) pairs whose last successful deployment before them is needed.
    pub last_good: Vec<(String, String)>,
}

/// What to read next, given the first facts.
pub fn plan_more(t: &Target, prev: &Prev, trigger: &Trigger, facts: &Facts) -> MoreWanted {
    let policy = &facts.policy;
    let r = read(t, policy, &facts.config_errors, &facts.issue);
    let remembered = prev.remembered();
    let env_policy = r.environment.as_deref().and_then(|e| policy.environment(e));
    let active = r.open && r.labelled;
    let roles = needed_roles(policy, r.environment.as_deref(), &facts.prs);
    let cmds = comment_commands(t, trigger, remembered, &r.numbers);
    // The roles whose holders are looked up: the needed ones, and `break_glass` when it matters.
    let mut lookup = roles.clone();
    if breakglass_lookup(policy, &cmds, remembered) {
        lookup.insert(BREAK_GLASS_ROLE);
    }
    let mut logins: Vec<String> = policy
        .roles
        .iter()
        .filter(|(n, _)| lookup.contains(n.as_str()))
        .flat_map(|(_, r)| r.users.iter())
        .map(|u| u.to_ascii_lowercase())
        .collect();
    logins.sort();
    logins.dedup();
    let mut people: Vec<User> = prev
        .approvals
        .iter()
        .filter(|a| a.state.is_some_and(|s| s != ApprovalState::Withdrawn))
        .map(|a| a.user.clone())
        .collect();
    people.extend(cmds.iter().map(|c| c.sender.clone()));
    if lookup.contains(BREAK_GLASS_ROLE) {
        people.extend(unended_breakglass(remembered).map(|b| b.by.clone()));
    }
    let permission_roles = policy.roles.iter().any(|(n, r)| lookup.contains(n.as_str()) && r.permission.is_some());
    let mut permissions: Vec<User> = if permission_roles { people.clone() } else { Vec::new() };
    let allow_self = env_policy.is_some_and(|e| e.allow_self_approval);
    let mut pushers = false;
    let mut last_good = Vec::new();
    for c in &cmds {
        let Ok(cmd) = &c.parsed else { continue };
        let wanted = plan_command(cmd, allow_self);
        let deploy_approver = matches!(cmd, Command::Deploy | Command::Rollback) && roles.is_empty();
        if wanted.permission || deploy_approver {
            permissions.push(c.sender.clone());
        }
        pushers |= wanted.pushers && active;
        if matches!(cmd, Command::Rollback)
            && let (Some(env), Some(row)) = (r.environment.as_ref(), prev.row.as_ref())
            && let Some(sha) = row.deploy_sha.as_ref().filter(|_| row.deploy_state.is_some())
        {
            last_good.push((env.clone(), sha.clone()));
        }
    }
    if let Some(d) = facts.deployment.as_ref().filter(|d| d.state.failed()) {
        last_good.push((d.environment.clone(), d.sha.clone()));
    }
    dedup_users(&mut people);
    dedup_users(&mut permissions);
    let mut teams: Vec<TeamRef> = policy
        .roles
        .iter()
        .filter(|(n, _)| lookup.contains(n.as_str()) && !people.is_empty())
        .flat_map(|(_, r)| r.teams.iter().cloned())
        .collect();
    teams.sort_by(|a, b| (&a.org, &a.slug).cmp(&(&b.org, &b.slug)));
    teams.dedup();
    MoreWanted {
        branch: env_policy.and_then(|e| e.branch.clone()),
        teams,
        staging: env_policy
            .filter(|e| e.require_staging_first && !facts.prs.is_empty())
            .map(|e| e.staging_environment.clone()),
        roles: roles.into_iter().map(str::to_string).collect(),
        logins,
        people,
        permissions,
        pushers,
        last_good,
    }
}

fn dedup_users(users: &mut Vec<User>) {
    let mut seen = BTreeSet::new();
    users.retain(|u| seen.insert(u.id));
}

/// The roles a request needs: its environment's rules that apply to the changed files.
fn needed_roles<'a>(policy: &'a Policy, environment: Option<&str>, prs: &[PrFacts]) -> BTreeSet<&'a str> {
    environment
        .and_then(|e| policy.environment(e))
        .map(|e| e.approvals.iter().filter(|a| gate::rule_applies(a, prs)).map(|a| a.role.as_str()).collect())
        .unwrap_or_default()
}

/// Everything the decision is made on.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub policy: Policy,
    pub config_errors: Vec<ConfigError>,
    pub issue: IssueSnapshot,
    /// The linked PRs (as read, or as remembered: see [`PrReads`]), with who pushed to them when
    /// that was read.
    pub prs: Vec<PrFacts>,
    /// Linked numbers that are not PRs of the repository.
    pub missing_prs: Vec<i64>,
    /// Every linked PR has an approving review.
    pub review_approved: bool,
    /// The account each login of the needed roles is pinned to (lowercase login).
    pub pinned: BTreeMap<String, UserId>,
    /// Of those, the ones pinned just now (recorded and audited).
    pub new_pins: Vec<(String, UserId)>,
    /// Members (account ids) of the teams the needed roles name, by `org/slug`.
    pub team_members: BTreeMap<String, BTreeSet<UserId>>,
    /// Repository permissions, by account id (None: none, or not readable as in dry-run).
    pub permissions: BTreeMap<UserId, Option<Permission>>,
    /// Who pushed to each linked PR, from its `pull_request` events (by PR number).
    pub recorded_pushers: BTreeMap<i64, Vec<UserId>>,
    /// The heads were deployed successfully to the staging environment (by the App or Actions).
    pub staging_ok: Option<bool>,
    /// The failing CI run on the environment's branch, if CI is red there.
    pub ci_red: Option<String>,
    /// The deployment whose status triggered this.
    pub deployment: Option<DeploymentFact>,
    /// The request's current deployment.
    pub current_deployment: Option<DeploymentFact>,
    /// The last commit the App deployed or approved successfully before (environment, commit).
    pub last_good: BTreeMap<(String, String), Option<String>>,
    /// The workflow run that deployed each of those commits through the gate (what `/rollback`
    /// re-runs in deploy modes `protection_rule` and `workflow`).
    pub last_good_run: BTreeMap<String, Option<i64>>,
    pub waiting_runs: Vec<WaitingRun>,
    /// The workflow runs this request let deploy (their jobs are deploys, not tests).
    pub approved_runs: Vec<i64>,
    /// Dry-run (no GitHub credentials): nothing was read from GitHub.
    pub dry_run: bool,
    /// The policy file was never read (dry-run, nothing cached): the built-in policy applies.
    pub policy_unread: bool,
}

/// What the App does about the request, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Out {
    Act(Action),
    Audit {
        kind: String,
        actor: Option<User>,
        detail: Value,
    },
    SaveApproval(ApprovalChange),
    /// When to evaluate the request again with no event (an approval expiring, a freeze window,
    /// a break-glass lapsing); None: never. Said only when it changes.
    Timer {
        due_at: Option<i64>,
    },
    /// A break-glass was accepted: its follow-up review issue, assigned to `assignee`, due at
    /// `due_at` and escalated to `escalate_to` when still open then (kept as an incident of kind
    /// `review`).
    OpenReview {
        marker: String,
        title: String,
        body: String,
        assignee: String,
        due_at: i64,
        escalate_to: Option<String>,
        detail: Value,
    },
    /// A policy login pinned to its account.
    PinLogin {
        login: String,
        user_id: UserId,
    },
    /// Approve or reject a waiting run (sent only if it is still pending; a job at `/gate/wait`
    /// reads the answer there, and `action` is not sent).
    AnswerRule {
        run_id: i64,
        run_attempt: i64,
        environment: String,
        state: String,
        workflow: bool,
        action: Action,
    },
    /// A status report on a waiting run (sent only when it says something new).
    ReportRule {
        run_id: i64,
        run_attempt: i64,
        environment: String,
        digest: String,
        workflow: bool,
        /// What the gate waits for, line by line.
        missing: Vec<String>,
        action: Action,
    },
}

/// The request's new state and what to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub row: RequestRow,
    /// What the request links now (replacing what it linked).
    pub links: Vec<(Link, String)>,
    pub effects: Vec<Out>,
    /// Reactions and replies to commands (after everything else).
    pub replies: Vec<Action>,
}

fn audit(kind: &str, actor: Option<&User>, detail: Value) -> Out {
    Out::Audit { kind: kind.into(), actor: actor.cloned(), detail }
}

/// A command of a new comment, meant for this request.
struct CommentCommand {
    comment_id: i64,
    sender: User,
    /// The request it names (`/approve #45`).
    target: Option<i64>,
    parsed: Result<Command, CommandError>,
}

/// The commands of a new comment (never of an edited one, never of a bot's, never of one written
/// before the issue became a request, never of one meant for another request).
fn comment_commands(t: &Target, trigger: &Trigger, remembered: &Remembered, numbers: &[i64]) -> Vec<CommentCommand> {
    let Trigger::Comment { id, user, bot: false, body, created_at, on_pr, sole } = trigger else { return Vec::new() };
    if remembered.dead_comments.contains(id) {
        return Vec::new();
    }
    // On the request and on a linked PR alike: a comment written before the issue became a request
    // (its delivery handled after the label's: out of order, or asked for again) carries nothing.
    let before_request = created_at.zip(remembered.active_since).is_some_and(|(at, since)| at < since);
    // A comment on a PR this request no longer links applies nothing here.
    let unlinked = on_pr.is_some_and(|pr| !numbers.contains(&pr));
    let refused =
        |message: &str| CommandError { line: 0, text: String::new(), message: message.into(), suggestion: None };
    commands::parse_targeted(body)
        .into_iter()
        .filter(|(target, _)| match (on_pr, target) {
            // On a PR: only what is meant for this request (named, or the only one linking it).
            (None, _) => true,
            (Some(_), Some(n)) => *n == t.issue.get(),
            (Some(_), None) => *sole,
        })
        .map(|(target, parsed)| {
            let parsed = match parsed {
                Ok(_) if before_request => Err(refused("it was written before the issue became a deployment request")),
                Ok(_) if unlinked => Err(refused(&format!("#{} no longer links this pull request", t.issue.get()))),
                other => other,
            };
            CommentCommand { comment_id: *id, sender: user.clone(), target, parsed }
        })
        .collect()
}

/// The names of the commands a comment carries (errors included), to tell what an edit added.
pub fn command_names(text: &str) -> Vec<String> {
    commands::parse_targeted(text)
        .into_iter()
        .map(|(target, c)| match c {
            Ok(c) => format!("{}{:?}", c.name(), target),
            Err(e) => e.text,
        })
        .collect()
}

/// For each needed role, the ids of `people` who hold it now: a login named in the policy counts
/// only for the account it was pinned to, a team by member id, a permission level by the
/// repository's answer. A login that now belongs to another account is said in `notes`.
fn role_holders(
    policy: &Policy,
    roles: &BTreeSet<&str>,
    people: &[User],
    facts: &Facts,
    notes: &mut Vec<String>,
) -> BTreeMap<String, BTreeSet<UserId>> {
    let mut out: BTreeMap<String, BTreeSet<UserId>> = BTreeMap::new();
    if people.is_empty() {
        return out;
    }
    for (name, role) in policy.roles.iter().filter(|(n, _)| roles.contains(n.as_str())) {
        let mut ids = BTreeSet::new();
        for p in people {
            let Some(login) = role.users.iter().find(|u| u.eq_ignore_ascii_case(&p.login)) else { continue };
            match facts.pinned.get(&login.to_ascii_lowercase()) {
                Some(id) if *id == p.id => {
                    ids.insert(p.id);
                }
                Some(id) => {
                    let note = format!(
                        "`{login}` now belongs to another account (id {}) than the one the policy's `{login}` was \
                         pinned to (id {id}): it fills no role. Update `.github/shipgate.yml` if the person renamed.",
                        p.id
                    );
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
                None => {}
            }
        }
        for team in &role.teams {
            if let Some(members) = facts.team_members.get(&format!("{}/{}", team.org, team.slug)) {
                ids.extend(people.iter().filter(|p| members.contains(&p.id)).map(|p| p.id));
            }
        }
        if let Some(level) = role.permission {
            for p in people {
                if facts.permissions.get(&p.id).copied().flatten().is_some_and(|have| have >= level) {
                    ids.insert(p.id);
                }
            }
        }
        out.insert(name.clone(), ids);
    }
    out
}

fn approval_change(
    t: &Target,
    a: &ApprovalFact,
    roles: &str,
    state: ApprovalState,
    note: Option<&str>,
) -> ApprovalChange {
    ApprovalChange {
        installation_id: t.installation.get(),
        repository_id: t.repo_id.get(),
        issue: t.issue.get(),
        comment_id: a.comment_id,
        user_id: a.user.id.get(),
        login: a.user.login.clone(),
        roles: roles.to_string(),
        environment: a.environment.clone(),
        head_shas: a.head_shas.join(","),
        revision: a.revision,
        state,
        note: note.map(str::to_string),
        given_at: None,
    }
}

/// The reaction to an accepted command, or a reply saying why it was refused (one reply per
/// comment: a comment with several commands gets every answer in it). A comment on linked PR
/// `on_pr` is answered there.
pub fn answer(
    replies: &mut Vec<Action>,
    t: &Target,
    on_pr: Option<i64>,
    comment_id: i64,
    sender: &User,
    accepted: bool,
    reply: Option<String>,
) {
    if accepted {
        replies.push(Action::AddReaction { repo: t.repo.clone(), comment_id, content: "+1".into() });
    }
    if let Some(why) = reply {
        let marker = format!("reply-{comment_id}");
        for r in replies.iter_mut() {
            if let Action::UpsertComment { marker: m, body, .. } = r
                && *m == marker
            {
                body.push_str(&format!("\n\n{why}"));
                return;
            }
        }
        replies.push(Action::UpsertComment {
            repo: t.repo.clone(),
            issue: on_pr.unwrap_or(t.issue.get()),
            marker,
            body: format!("@{} {why}", sender.login),
        });
    }
}

/// The branch an environment deploys from: its `branch`, else the repository's default branch (as
/// the linked PRs tell it; unknown without one).
fn deploy_branch(branch: Option<&str>, prs: &[PrFacts]) -> Option<String> {
    branch.map(str::to_string).or_else(|| prs.iter().find_map(|p| p.default_branch.clone()))
}

/// The merge commit a request covers once its linked PRs are merged (SPEC §3.5): with every
/// linked PR merged, the commit the last merge produced, which contains them all. None while one
/// is open (or was closed unmerged).
///
/// Only a merge into the branch the environment deploys from (`branch`, else the repository's
/// default branch): a PR retargeted to another branch and merged there brings that branch's other
/// commits into its merge commit, which nobody approved.
pub fn merge_commit<'a>(prs: &'a [PrFacts], branch: Option<&str>) -> Option<&'a str> {
    if prs.is_empty() || prs.iter().any(|p| p.merge_commit.is_none()) {
        return None;
    }
    let target = deploy_branch(branch, prs)?;
    if prs.iter().any(|p| p.base_ref.as_deref() != Some(target.as_str())) {
        return None;
    }
    prs.iter().enumerate().max_by_key(|(i, p)| (p.merged_at, *i)).and_then(|(_, p)| p.merge_commit.as_deref())
}

fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// How long a `/rollback`'s re-run may take to come and wait on the gate: after that, its run is
/// no longer approved (a re-run GitHub refused, or one cancelled before it deployed).
pub const ROLLBACK_WAITS_MS: i64 = 60 * 60 * 1000;

/// A `/rollback` of this request waits for the run it re-ran (`rollback_run_id`): asked for, not
/// answered yet, and not too long ago.
fn rolling_back(row: &RequestRow, now: i64) -> bool {
    row.rollback_run_id.is_some()
        && row.deploy_key.as_deref().is_some_and(|k| k.starts_with("rollback-"))
        && deploy_state(row) == Some(DeployState::Requested)
        && row.deploy_requested_at.is_some_and(|at| now - at < ROLLBACK_WAITS_MS)
}

fn deploy_state(row: &RequestRow) -> Option<DeployState> {
    row.deploy_state.as_deref().and_then(DeployState::parse)
}

fn sha256_hex(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// What a `/deploy` or `/rollback` needs to know besides the request.
struct DeployAsk<'a> {
    t: &'a Target,
    mode: Option<DeployMode>,
    environment: Option<&'a str>,
    /// The sender may deploy: holds a role the request needs (or, where it needs none, has write
    /// access).
    approver: bool,
    roles: &'a BTreeSet<&'a str>,
    eval: &'a Evaluation,
    active: bool,
    prs: &'a [PrFacts],
    /// The branch the environment deploys from (None: the default branch).
    branch: Option<&'a str>,
    req: &'a ChangeRequest,
    facts: &'a Facts,
    now: i64,
}

/// `/deploy` (deploy mode `deployment`: a GitHub Deployment of the approved commit) and
/// `/rollback` (a deployment of the last commit the App deployed or approved successfully there).
/// Returns whether it was accepted, and the refusal.
fn decide_deploy(
    a: &DeployAsk<'_>,
    sender: &User,
    cmd: &Command,
    comment_id: i64,
    row: &mut RequestRow,
    out: &mut Vec<Out>,
) -> Result<(), Refusal> {
    let (Some(env), Some(mode)) = (a.environment, a.mode) else { return Err(Refusal::NoEnvironment) };
    if !a.approver {
        return Err(Refusal::NotAnApprover { roles: a.roles.iter().map(|r| r.to_string()).collect() });
    }
    // The same comment again (a redelivery under a new id): already done, nothing more to do.
    let key_of = |kind: &str| format!("{kind}-{}-{comment_id}", a.t.issue.get());
    if row.deploy_key.as_deref().is_some_and(|k| k == key_of("request") || k == key_of("rollback")) {
        return Ok(());
    }
    // A deployment under way blocks another `/deploy` (not `/rollback`: rolling back is what one
    // does when it hangs). One the App asked for and GitHub never reported on blocks it for
    // REQUESTED_BLOCKS_MS only (a parked creation, or no pipeline listening).
    let state = deploy_state(row);
    let requested_recently = state == Some(DeployState::Requested)
        && row.deploy_requested_at.is_some_and(|at| a.now - at < REQUESTED_BLOCKS_MS);
    let in_flight = requested_recently || state.is_some_and(DeployState::running);
    if in_flight && matches!(cmd, Command::Deploy) {
        return Err(Refusal::DeployUnderWay);
    }
    // A rollback under way is not rolled back one step further by a second `/rollback`.
    let rolling = row.deploy_key.as_deref().is_some_and(|k| k.starts_with("rollback-"));
    if in_flight && rolling && matches!(cmd, Command::Rollback) {
        return Err(Refusal::DeployUnderWay);
    }
    let (sha, key, rollback_of) = match cmd {
        Command::Deploy => {
            if mode != DeployMode::Deployment {
                return Err(Refusal::NotDeployedByTheApp { environment: env.into(), mode: mode.as_str().into() });
            }
            if !a.active {
                return Err(Refusal::DeployClosed);
            }
            if !a.eval.open {
                return Err(Refusal::GateClosed { missing: a.eval.missing() });
            }
            if state == Some(DeployState::Success) {
                return Err(Refusal::AlreadyDeployed);
            }
            let sha = match (merge_commit(a.prs, a.branch), a.prs) {
                // Merged: the commit on the base branch that contains the approved heads.
                (Some(merged), _) => merged.to_string(),
                (None, [one]) => one.head_sha.clone(),
                (None, []) => a.req.commit.clone().filter(|c| is_full_sha(c)).ok_or(Refusal::NoCommit)?,
                (None, _) => return Err(Refusal::SeveralPullRequests),
            };
            (sha, key_of("request"), None)
        }
        _ => {
            if mode == DeployMode::None {
                return Err(Refusal::NoRollbackMode { environment: env.into() });
            }
            let Some(current) = row.deploy_sha.clone().filter(|_| row.deploy_state.is_some()) else {
                return Err(Refusal::NothingDeployed);
            };
            // Only a commit the App itself deployed or approved there; never one that only a
            // deployment someone made by hand vouches for.
            let found = a.facts.last_good.get(&(env.to_string(), current.clone())).cloned().flatten();
            let Some(sha) = found else { return Err(Refusal::NoEarlierCommit { environment: env.into() }) };
            (sha, key_of("rollback"), Some(current))
        }
    };
    let t = a.t;
    if let (Some(current), DeployMode::ProtectionRule | DeployMode::Workflow) = (&rollback_of, mode) {
        // The run that last deployed that commit here deploys it again; its waiting deployment is
        // approved by this request (below, with the waiting runs).
        let Some(run_id) = a.facts.last_good_run.get(&sha).copied().flatten() else {
            return Err(Refusal::NoEarlierCommit { environment: env.into() });
        };
        out.push(Out::Act(Action::RerunWorkflow { repo: t.repo.clone(), run_id, key: key.clone() }));
        row.rollback_run_id = Some(run_id);
        out.push(audit(
            "deployment.rollback_requested",
            Some(sender),
            json!({ "sha": sha, "environment": env, "key": key, "rollback_of": current, "run_id": run_id,
                    "comment_id": comment_id }),
        ));
        row.deploy_key = Some(key);
        row.deploy_sha = Some(sha);
        row.deploy_state = Some(DeployState::Requested.as_str().into());
        row.deploy_requested_at = Some(a.now);
        row.deployment_id = None;
        return Ok(());
    }
    out.push(Out::Act(Action::CreateDeployment {
        repo: t.repo.clone(),
        key: key.clone(),
        git_ref: sha.clone(),
        environment: env.to_string(),
        description: match &rollback_of {
            Some(_) => format!("Rollback for deployment request #{}", t.issue.get()),
            None => format!("Deployment request #{}", t.issue.get()),
        },
        payload: json!({ "shipgate_request": t.issue.get(), "shipgate_rollback_of": rollback_of, "requested_by": sender.login }),
    }));
    out.push(audit(
        if rollback_of.is_some() { "deployment.rollback_requested" } else { "deployment.requested" },
        Some(sender),
        json!({ "sha": sha, "environment": env, "key": key, "rollback_of": rollback_of, "comment_id": comment_id }),
    ));
    row.deploy_key = Some(key);
    row.deploy_sha = Some(sha);
    row.deploy_state = Some(DeployState::Requested.as_str().into());
    row.deploy_requested_at = Some(a.now);
    row.deployment_id = None;
    Ok(())
}

/// The decision: the request's new state, and everything to do about it. Pure: every fact is in
/// `prev`, `trigger` and `facts`; `now` is the clock.
pub fn decide(t: &Target, prev: &Prev, trigger: &Trigger, facts: &Facts, now: i64) -> Decision {
    let policy = &facts.policy;
    let mut out: Vec<Out> = Vec::new();
    let mut replies: Vec<Action> = Vec::new();
    let existing = prev.row.as_ref();
    let mut remembered = prev.remembered().clone();
    let issue = &facts.issue;
    let Reading { req, environment, numbers, labelled, open, mut problems } =
        read(t, policy, &facts.config_errors, issue);
    let env_policy = environment.as_deref().and_then(|e| policy.environment(e));
    let author = issue.author.clone();
    let active = open && labelled;

    // Newly pinned logins, first.
    for (login, id) in &facts.new_pins {
        out.push(Out::PinLogin { login: login.clone(), user_id: *id });
        out.push(audit("login.pinned", None, json!({ "login": login, "user_id": id })));
    }

    let env_branch = env_policy.and_then(|e| e.branch.as_deref());
    // The commands of a new comment (read before this evaluation's memory is rebuilt).
    let comment_cmds = comment_commands(t, trigger, &remembered, &numbers);
    let prs = facts.prs.clone();
    for n in &facts.missing_prs {
        problems.push(Problem { field: "pull_requests", message: format!("#{n} is not a pull request of {}", t.repo) });
    }
    let shown_before = std::mem::take(&mut remembered.shown);
    let commit = req.commit.clone().filter(|c| numbers.is_empty() && is_full_sha(c)).map(|c| c.to_ascii_lowercase());
    let mut links: Vec<(Link, String)> = numbers
        .iter()
        .map(|n| (Link::Pr, n.to_string()))
        .chain(prs.iter().filter(|p| !p.head_sha.is_empty()).map(|p| (Link::Sha, p.head_sha.clone())))
        .chain(merge_commit(&prs, env_branch).map(|m| (Link::Sha, m.to_string())))
        .chain(commit.iter().map(|c| (Link::Sha, c.clone())))
        .collect();
    let was_active = existing.map(|r| r.open == 1 && r.labelled == 1);
    let mut active_since = remembered.active_since;
    if active && was_active != Some(true) {
        // GitHub's time of the event that made it a request, when the payload says.
        active_since = issue.updated_at;
    }
    let mut dead_comments = std::mem::take(&mut remembered.dead_comments);
    if let Trigger::CommentEdited { id, .. } | Trigger::CommentDeleted { id } = trigger
        && !dead_comments.contains(id)
    {
        dead_comments.push(*id);
        if dead_comments.len() > DEAD_COMMENTS {
            dead_comments.remove(0);
        }
    }
    let issue_updated_at = issue.updated_at.max(remembered.issue_updated_at);
    remembered = Remembered {
        prs: prs.clone(),
        missing_prs: facts.missing_prs.clone(),
        review_approved: facts.review_approved,
        commit,
        shown: String::new(),
        view: std::mem::take(&mut remembered.view),
        timer: remembered.timer,
        active_since,
        revised: std::mem::take(&mut remembered.revised),
        identity_notes: std::mem::take(&mut remembered.identity_notes),
        issue_updated_at,
        dead_comments,
        ticked: std::mem::take(&mut remembered.ticked),
        // Whatever was absorbed, this evaluation read the checks again (`plan` saw to it).
        absorbed: false,
        deploying_runs: Vec::new(),
        notified: std::mem::take(&mut remembered.notified),
        breakglass: std::mem::take(&mut remembered.breakglass),
    };
    if let Trigger::Notified { event, channel } = trigger
        && event == NotifyEvent::Deployed.as_str()
        && !remembered.notified.contains(channel)
    {
        remembered.notified.push(channel.clone());
    }
    // Someone ticked (or unticked) their boxes in the App's sticky comment: kept from now on.
    if let Trigger::CommentEdited { body, by_app: true, .. } = trigger
        && messages::is_request_comment(body)
    {
        remembered.ticked = messages::ticked_items(body);
    }

    // Revision: any change of the request's content makes approvals stale (SPEC §3.3), and so
    // does closing or unlabelling it (reopening or labelling it again starts over).
    let fingerprint = req.fingerprint(environment.as_deref());
    let legacy_fingerprint = format!(
        "{}|{:?}|{}|{}",
        environment.clone().unwrap_or_default(),
        numbers,
        req.commit.clone().unwrap_or_default(),
        req.rollback_plan.clone().unwrap_or_default().trim()
    );
    let mut row = existing.cloned().unwrap_or(RequestRow {
        installation_id: t.installation.get(),
        repository_id: t.repo_id.get(),
        repository: t.repo.clone(),
        issue: t.issue.get(),
        author_id: author.id.get(),
        author_login: author.login.clone(),
        labelled: 1,
        open: 1,
        fingerprint: fingerprint.clone(),
        revision: 1,
        state: RequestStatus::AwaitingApproval.as_str().into(),
        facts: "{}".into(),
        labels: "[]".into(),
        created_at: now,
        updated_at: now,
        ..RequestRow::default()
    });
    if row.fingerprint != fingerprint {
        // A request stored before content fingerprints keeps its revision if nothing changed.
        if row.fingerprint != legacy_fingerprint {
            row.revision += 1;
            remembered.revised = "the request changed after it was given".into();
        }
        row.fingerprint = fingerprint;
    }
    if let Some(was) = was_active
        && was != active
    {
        row.revision += 1;
        remembered.revised = if active {
            "the request was closed or unlabelled since; approvals start over".into()
        } else {
            "the request was closed or unlabelled".into()
        };
    }
    row.labelled = labelled as i64;
    row.open = open as i64;
    row.environment = environment.clone();
    row.repository = t.repo.clone();
    row.updated_at = now;

    // Approvals so far.
    let stored = &prev.approvals;
    let prev_states: BTreeMap<i64, Option<ApprovalState>> = stored.iter().map(|a| (a.comment_id, a.state)).collect();
    // Who approved and when, for a closing summary: (login, roles, at).
    let given: Vec<(String, String, i64)> = stored
        .iter()
        .filter(|a| a.state == Some(ApprovalState::Active))
        .map(|a| {
            let roles: Vec<String> = serde_json::from_str(&a.roles).unwrap_or_default();
            (a.user.login.clone(), roles.join(", "), a.created_at)
        })
        .collect();
    // When each stored approval was given; one given now, when its comment was written (never
    // later than now: a late delivery adds nothing to an approval's life).
    let given_at: BTreeMap<i64, i64> = stored.iter().map(|a| (a.comment_id, a.created_at)).collect();
    let comment_at = match trigger {
        Trigger::Comment { created_at: Some(at), .. } => (*at).min(now),
        _ => now,
    };
    // An approval once stale stays stale (a head pushed back, or content edited back, never
    // revives it): it must be given again.
    let was_stale: BTreeMap<i64, String> = stored
        .iter()
        .filter(|a| a.state == Some(ApprovalState::Stale))
        .map(|a| (a.comment_id, a.note.clone().unwrap_or_else(|| "it no longer counts".into())))
        .collect();
    let mut approvals: Vec<(ApprovalFact, String)> = stored
        .iter()
        .filter(|a| a.state.is_some_and(|s| s != ApprovalState::Withdrawn))
        .map(|a| {
            let fact = ApprovalFact {
                comment_id: a.comment_id,
                user: a.user.clone(),
                environment: a.environment.clone(),
                head_shas: a.head_shas.clone(),
                revision: a.revision,
            };
            (fact, a.roles.clone())
        })
        .collect();
    let heads: Vec<String> = prs.iter().map(|p| p.head_sha.clone()).collect();

    // Who holds which role: users by pinned account id, teams by member id, permission levels.
    let mut people: Vec<User> = approvals.iter().map(|(a, _)| a.user.clone()).collect();
    people.extend(comment_cmds.iter().map(|c| c.sender.clone()));
    // Only the roles this request needs (its environment's rules that apply to the changed files).
    let env_roles = needed_roles(policy, environment.as_deref(), &prs);
    // And `break_glass`, when a command or a break-glass not ended yet needs it (as `plan_more`).
    let mut lookup_roles = env_roles.clone();
    if breakglass_lookup(policy, &comment_cmds, prev.remembered()) {
        lookup_roles.insert(BREAK_GLASS_ROLE);
        people.extend(unended_breakglass(prev.remembered()).map(|b| b.by.clone()));
    }
    let mut notes: Vec<String> = Vec::new();
    if let Some(merged) = merge_commit(&prs, env_branch) {
        let which = if prs.len() > 1 { "all linked pull requests are merged; the last merge" } else { "merged as" };
        notes.push(format!(
            "Merged: {which} `{}` is covered too, with the approvals given for the heads it contains (deploying the \
             base branch after the merge).",
            &merged[..merged.len().min(7)]
        ));
    }
    for p in prs.iter().filter(|p| p.files_truncated) {
        notes.push(format!(
            "#{} changes more files than GitHub lists: every role with `when_paths` is required",
            p.number
        ));
    }
    let mut identity = std::mem::take(&mut remembered.identity_notes);
    let holders = role_holders(policy, &lookup_roles, &people, facts, &mut identity);
    notes.extend(identity.iter().cloned());
    remembered.identity_notes = identity;
    let holds = |u: &User, role: &str| holders.get(role).is_some_and(|ids| ids.contains(&u.id));
    let permission_of = |u: &User| facts.permissions.get(&u.id).copied().flatten();

    // Commands. `/deploy` and `/rollback` need the gate's verdict: answered after the evaluation.
    let mut deploy_asks: Vec<(i64, User, Command)> = Vec::new();
    // `/breakglass`: decided once the gate is known (comment id, sender, reason).
    let mut breakglass_asks: Vec<(i64, User, String)> = Vec::new();
    let breakglass_defined = policy.roles.contains_key(BREAK_GLASS_ROLE);
    let on_pr = trigger.on_pr();
    let allow_self = env_policy.is_some_and(|e| e.allow_self_approval);
    for c in comment_cmds {
        let CommentCommand { comment_id, sender, target, parsed } = c;
        let cmd = match parsed {
            Ok(cmd) => cmd,
            Err(e) => {
                answer(&mut replies, t, on_pr, comment_id, &sender, false, Some(e.message.clone()));
                continue;
            }
        };
        let wanted = plan_command(&cmd, allow_self);
        let mut pushers = Vec::new();
        if wanted.pushers && active {
            for p in &prs {
                let mut ids = p.pushers.clone().unwrap_or_default();
                ids.extend(facts.recorded_pushers.get(&p.number).into_iter().flatten());
                pushers.push((p.number, ids));
            }
        }
        let state = RequestState {
            active,
            labelled,
            issue: t.issue.get(),
            environment: env_policy.and(environment.clone()),
            requester: UserId(row.author_id),
            hold: row.hold_by.clone().map(|by| (row.hold_by_id.map(UserId), by)),
            denial: row.denied_by.clone().map(|by| (row.denied_by_id.map(UserId), by)),
        };
        let command_facts = CommandFacts {
            sender: sender.clone(),
            target,
            needed_roles: env_roles.iter().map(|r| r.to_string()).collect(),
            held_roles: env_roles.iter().filter(|r| holds(&sender, r)).map(|r| r.to_string()).collect(),
            allow_self_approval: allow_self,
            pr_authors: prs.iter().map(|p| p.author.id).chain([author.id]).collect(),
            pushers,
            permission: if wanted.permission { permission_of(&sender) } else { None },
            has_approved: approvals.iter().any(|(a, _)| a.user.id == sender.id),
            break_glass: breakglass_defined.then(|| holds(&sender, BREAK_GLASS_ROLE)),
        };
        let (accepted, reply) = match decide_command(&cmd, &state, &command_facts) {
            Err(refusal) => (false, Some(messages::refusal_text(&format!("/{}", cmd.name()), &refusal))),
            Ok(Outcome::DeployAsk) => {
                deploy_asks.push((comment_id, sender.clone(), cmd));
                continue;
            }
            Ok(Outcome::BreakGlassAsk { reason }) => {
                breakglass_asks.push((comment_id, sender.clone(), reason));
                continue;
            }
            Ok(outcome) => {
                apply_outcome(
                    t,
                    outcome,
                    comment_id,
                    &sender,
                    environment.as_deref(),
                    &heads,
                    comment_at,
                    &mut row,
                    &mut approvals,
                    &mut out,
                );
                (true, None)
            }
        };
        answer(&mut replies, t, on_pr, comment_id, &sender, accepted, reply);
    }
    // Deleting the approving comment, or editing `/approve` out of it, withdraws the approval.
    let approves = |text: &str| commands::parse(text).iter().any(|c| matches!(c, Ok(Command::Approve { .. })));
    let withdrawn = match trigger {
        Trigger::CommentDeleted { id } => Some((*id, "the approving comment was deleted")),
        Trigger::CommentEdited { id, body, .. } if !approves(body) => {
            Some((*id, "the approving comment was edited and no longer says `/approve`"))
        }
        _ => None,
    };
    if let Some((id, why)) = withdrawn
        && let Some(pos) = approvals.iter().position(|(a, _)| a.comment_id == id)
    {
        let (a, roles) = approvals.remove(pos);
        out.push(Out::SaveApproval(approval_change(t, &a, &roles, ApprovalState::Withdrawn, Some(why))));
    }
    if let Trigger::CommentEdited { id, editor, body, before, on_pr, .. } = trigger {
        // A command edited in is answered (on the request; a PR's edits are answered there).
        let was: Vec<String> = before.as_deref().map(command_names).unwrap_or_default();
        let added = command_names(body).into_iter().any(|c| !was.contains(&c));
        if added && on_pr.is_none() && active {
            answer(&mut replies, t, None, *id, editor, false, Some(messages::edited_command()));
        }
    }
    // Who pushed, once read, is remembered with the PR's head.
    remembered.prs = prs.clone();

    // Stale approvals: marked, and said in the comment.
    let mut stale = Vec::new();
    let mut newly_stale: Vec<(String, String)> = Vec::new();
    let mut current = Vec::new();
    for (a, roles) in &approvals {
        if let Some(why) = was_stale.get(&a.comment_id) {
            stale.push((a.user.clone(), why.clone()));
            continue;
        }
        let why = env_policy.and_then(|_| gate::approval_is_current(a, &heads, row.revision)).map(|why| {
            if a.revision != row.revision && !remembered.revised.is_empty() { remembered.revised.clone() } else { why }
        });
        // An approval older than `approvals_expire_after` no longer counts (SPEC §3.7): named so.
        let given = given_at.get(&a.comment_id).copied().unwrap_or(comment_at);
        let why = why.or_else(|| {
            let env = env_policy?;
            let after = env.approvals_expire_after?;
            env.approval_expired(given, now).then(|| {
                format!(
                    "expired: given {}, and approvals count for {}",
                    messages::timestamp(given),
                    super::freeze::policy_duration(after.as_millis() as i64)
                )
            })
        });
        match why {
            Some(why) => {
                stale.push((a.user.clone(), why.clone()));
                newly_stale.push((a.user.login.clone(), why.clone()));
                out.push(Out::SaveApproval(approval_change(t, a, roles, ApprovalState::Stale, Some(&why))));
            }
            None => current.push(a.clone()),
        }
    }
    // What the policy's `notify:` rules ask to be told about the request.
    let notice = RequestNotice {
        repo: &t.repo,
        repository_id: t.repo_id.get(),
        issue: t.issue.get(),
        service: req.service.as_deref(),
        environment: environment.as_deref(),
    };
    let account = notify::account_of(&t.repo);
    let notify_out = |out: &mut Vec<Out>, event: NotifyEvent, n: &notify::Notice| {
        out.extend(notify::notifications(policy, account, event, n).into_iter().map(Out::Act));
    };
    if active && !newly_stale.is_empty() {
        notify_out(&mut out, NotifyEvent::ApprovalsStale, &notice.approvals_stale(&newly_stale, row.revision, &heads));
    }
    // A note about a stale approval goes once its author has approved again.
    let stale: Vec<(String, String)> = stale
        .into_iter()
        .filter(|(u, _)| !current.iter().any(|c| c.user.id == u.id))
        .map(|(u, why)| (u.login, why))
        .collect();

    // Staging first: the same heads deployed successfully to the staging environment.
    let staging_ok =
        env_policy.filter(|e| e.require_staging_first && !prs.is_empty()).map(|_| facts.staging_ok == Some(true));

    let requester = User { id: UserId(row.author_id), login: row.author_login.clone() };
    // The runs waiting on this request to deploy to its environment: their own jobs are not tests.
    let deploying_runs: Vec<i64> = environment
        .as_deref()
        .map(|env| {
            facts
                .waiting_runs
                .iter()
                .filter(|r| super::policy::eq_fold(&r.environment, env))
                .map(|r| r.run_id)
                .collect()
        })
        .unwrap_or_default();
    let deploying_runs: Vec<i64> = deploying_runs.into_iter().chain(facts.approved_runs.iter().copied()).collect();
    remembered.deploying_runs = deploying_runs.clone();
    // A freeze window covering now (SPEC §3.7): the gate says until when, and why.
    let frozen = env_policy.and_then(|e| e.freeze.active_at(now)).map(|a| a.text());
    let base = gate::evaluate(&GateInput {
        policy,
        policy_errors: &facts.config_errors,
        problems: &problems,
        environment: environment.as_deref(),
        requester: &requester,
        prs: &prs,
        approvals: &current,
        revision: row.revision,
        holds: &holds,
        staging_ok,
        hold_by: row.hold_by.as_deref(),
        denied: row.denied_by.as_deref().map(|by| (by, row.deny_reason.as_deref().unwrap_or(""))),
        ci_red: env_policy.and(facts.ci_red.as_deref()),
        deploying_runs: &deploying_runs,
        frozen: frozen.as_deref(),
        unread: gate::Unread {
            policy: facts.dry_run && facts.policy_unread,
            prs: if facts.dry_run { &numbers } else { &[] },
        },
    });

    // Break-glass (SPEC §3.7). The last one, if not ended, ends when the request is no longer
    // open, when the commits it covered are no longer the request's, when its holder no longer
    // holds `break_glass`, or when it lapses; a new `/breakglass` is decided on the gate without it.
    let bg_covers: Vec<String> = if prs.is_empty() {
        remembered.commit.iter().cloned().collect()
    } else {
        let mut h = heads.clone();
        h.sort();
        h
    };
    let policy_invalid = !facts.config_errors.is_empty();
    let denied = row.denied_by.is_some();
    let bg_count = remembered.breakglass.len();
    if let Some(bg) = remembered.breakglass.last_mut().filter(|b| b.ended.is_none()) {
        let ending = if !active {
            Some(("closed", "the request was closed or unlabelled".to_string()))
        } else if bg.heads != bg_covers {
            Some(("superseded", "the request covers other commits now".to_string()))
        } else if !environment.as_deref().is_some_and(|e| super::policy::eq_fold(e, &bg.environment)) {
            Some(("superseded", "the request names another environment now".to_string()))
        } else if !holds(&bg.by, BREAK_GLASS_ROLE) {
            Some(("revoked", format!("@{} no longer holds the `break_glass` role", bg.by.login)))
        } else if now >= bg.until {
            Some(("lapsed", "unspent after 2 hours".to_string()))
        } else {
            None
        };
        if let Some((how, detail)) = ending {
            let at = if how == "lapsed" { bg.until } else { now };
            bg.end(at, how, detail.clone());
            out.push(audit(
                &format!("breakglass.{how}"),
                None,
                json!({ "by": bg.by.login, "by_id": bg.by.id, "comment_id": bg.comment_id, "environment": bg.environment,
                        "heads": bg.heads, "detail": detail }),
            ));
        }
    }
    for (comment_id, sender, reason) in &breakglass_asks {
        // The same comment again (a redelivery under a new id): already done.
        if remembered.breakglass.iter().any(|b| b.comment_id == *comment_id) {
            answer(&mut replies, t, on_pr, *comment_id, sender, true, None);
            continue;
        }
        // It lasts from when it was written, not from when the App got round to it: a late
        // delivery adds nothing to its life.
        let at = comment_at;
        let refusal = if policy_invalid {
            Some(Refusal::BreakGlassPolicyInvalid)
        } else if now >= at + breakglass::LASTS_MS {
            Some(Refusal::BreakGlassTooLate { written: messages::timestamp(at) })
        } else if base.open {
            Some(Refusal::BreakGlassNeedless)
        } else if let Some(live) = remembered.breakglass.last().filter(|b| b.live(now)) {
            Some(Refusal::BreakGlassActive { by: live.by.login.clone(), until: messages::timestamp(live.until) })
        } else if bg_covers.is_empty() || environment.is_none() {
            Some(Refusal::BreakGlassNothingCovered)
        } else {
            None
        };
        if let Some(r) = refusal {
            answer(&mut replies, t, on_pr, *comment_id, sender, false, Some(messages::refusal_text("/breakglass", &r)));
            continue;
        }
        let env_name = environment.clone().unwrap_or_default();
        let bg = BreakGlass {
            comment_id: *comment_id,
            by: sender.clone(),
            reason: reason.clone(),
            at,
            environment: env_name.clone(),
            heads: bg_covers.clone(),
            until: at + breakglass::LASTS_MS,
            review: breakglass::review_marker(t.issue.get(), bg_count + 1),
            ended: None,
        };
        let overridden = base.missing();
        out.push(audit(
            "breakglass.used",
            Some(sender),
            json!({ "reason": reason, "environment": env_name, "heads": bg.heads, "until": bg.until,
                    "overridden": overridden, "comment_id": comment_id, "review": bg.review }),
        ));
        out.push(Out::Act(Action::SetLabels {
            repo: t.repo.clone(),
            issue: t.issue.get(),
            add: vec![breakglass::LABEL.into()],
            remove: vec![],
        }));
        notify_out(
            &mut out,
            NotifyEvent::BreakGlass,
            &notice.break_glass(&sender.login, reason, &bg.heads, &overridden, bg.until),
        );
        // The follow-up: a post-incident review due within two working days of the report's zone.
        let zone = policy.report.weekly.as_ref().map(|w| w.zone()).unwrap_or_default();
        let due = breakglass::review_due(now, &zone);
        let review = breakglass::Review {
            repo: &t.repo,
            issue: t.issue.get(),
            service: req.service.as_deref(),
            bg: &bg,
            overridden: &overridden,
            due,
            zone: &zone,
            escalate_to: policy.ci.escalate_to.as_deref(),
        };
        out.push(Out::OpenReview {
            marker: bg.review.clone(),
            title: breakglass::review_title(&review),
            body: breakglass::review_body(&review),
            assignee: sender.login.clone(),
            due_at: due,
            escalate_to: policy.ci.escalate_to.clone(),
            detail: json!({ "request": t.issue.get(), "by": sender.login, "by_id": sender.id, "reason": reason,
                            "environment": env_name, "heads": bg.heads, "at": now, "overridden": overridden }),
        });
        remembered.breakglass.push(bg);
        answer(&mut replies, t, on_pr, *comment_id, sender, true, None);
    }
    let live_bg = remembered.breakglass.last().filter(|b| b.live(now)).map(|b| b.text());
    let mut eval = match &live_bg {
        Some(text) => gate::with_breakglass(base.clone(), text, denied, policy_invalid),
        None => base.clone(),
    };

    // A deployment status forwarded to this request.
    let mut deployment = None;
    let before = existing;
    // Someone else's deployment of a commit this request covers: never its own, never a success
    // of the request; while the gate was closed it is reported loudly.
    if let Some(d) = facts.deployment.as_ref().filter(|d| d.issue != Some(t.issue.get())) {
        let gate_was_open = before.is_some_and(|b| b.gate_open == 1);
        if !gate_was_open {
            out.push(Out::Act(Action::UpsertComment {
                repo: t.repo.clone(),
                issue: t.issue.get(),
                marker: format!("ungated-{}", d.deployment_id),
                body: messages::ungated_deployment(
                    d.deployment_id,
                    &d.sha,
                    &d.environment,
                    d.state.as_str(),
                    &d.origin,
                    d.issue,
                ),
            }));
            out.push(audit(
                "deployment.ungated",
                None,
                json!({ "deployment_id": d.deployment_id, "state": d.state.as_str(), "sha": d.sha,
                        "environment": d.environment, "origin": d.origin }),
            ));
        }
    }
    if let Some(d) = facts.deployment.as_ref().filter(|d| d.issue == Some(t.issue.get()))
        && row.deployment_id.is_none_or(|cur| d.deployment_id >= cur)
    {
        let id = d.deployment_id;
        if row.deployment_id != Some(id) || deploy_state(&row) != Some(d.state) {
            out.push(audit(
                "deployment.status",
                None,
                json!({ "deployment_id": id, "state": d.state.as_str(), "sha": d.sha, "environment": d.environment }),
            ));
        }
        row.deployment_id = Some(id);
        row.deploy_sha = Some(d.sha.clone());
        row.deploy_state = Some(d.state.as_str().into());
        deployment = Some(d.clone());
    }
    let deployment = match (deployment, row.deployment_id) {
        (Some(d), _) => Some(d),
        (None, Some(id)) => facts.current_deployment.clone().filter(|d| d.deployment_id == id),
        (None, None) => None,
    };
    let deploy_view = deploy_state(&row).map(|state| DeployView {
        state,
        sha: row.deploy_sha.clone().unwrap_or_default(),
        environment: deployment.as_ref().map(|d| d.environment.clone()).or(environment.clone()).unwrap_or_default(),
        deployment_id: row.deployment_id,
        started_at: deployment.as_ref().and_then(|d| d.started_at),
        finished_at: deployment.as_ref().and_then(|d| d.finished_at),
        rollback: row.deploy_key.as_deref().is_some_and(|k| k.starts_with("rollback-")),
        gate_opened_at: row.approved_at,
        log_url: deployment.as_ref().and_then(|d| d.log_url.clone()),
    });
    let deploy_created = deployment.as_ref().map(|d| d.created_at).unwrap_or(row.created_at);

    // `/deploy` and `/rollback`.
    for (comment_id, sender, cmd) in &deploy_asks {
        // An approver: a holder of one of the roles the request needs; where it needs none,
        // anyone with write access.
        let approver = if env_roles.is_empty() {
            permission_of(sender).is_some_and(|p| p >= Permission::Write)
        } else {
            env_roles.iter().any(|r| holds(sender, r))
        };
        // A `break_glass` holder may roll back (SPEC §3.5), and the one who broke the glass may
        // `/deploy` with it.
        let approver = approver
            || (matches!(cmd, Command::Rollback) && holds(sender, BREAK_GLASS_ROLE))
            || (matches!(cmd, Command::Deploy)
                && eval.breakglass.is_some()
                && remembered.breakglass.last().is_some_and(|b| b.by.id == sender.id));
        let key_before = row.deploy_key.clone();
        let ask = DeployAsk {
            t,
            mode: env_policy.map(|e| e.deploy),
            environment: environment.as_deref(),
            approver,
            roles: &env_roles,
            eval: &eval,
            active,
            prs: &prs,
            branch: env_branch,
            req: &req,
            facts,
            now,
        };
        let (accepted, reply) = match decide_deploy(&ask, sender, cmd, *comment_id, &mut row, &mut out) {
            Ok(()) => (true, None),
            Err(r) => (false, Some(messages::refusal_text(&format!("/{}", cmd.name()), &r))),
        };
        // A deployment asked for while a break-glass is live spends it, whatever opened the gate.
        if accepted
            && matches!(cmd, Command::Deploy)
            && row.deploy_key != key_before
            && breakglass_live(&remembered, now)
        {
            let what = format!(
                "`/deploy` by @{} (a deployment of {})",
                sender.login,
                messages::short(row.deploy_sha.as_deref().unwrap_or_default())
            );
            spend_breakglass(&mut remembered, &mut row, &mut out, before, now, &what);
            eval = base.clone();
        }
        answer(&mut replies, t, on_pr, *comment_id, sender, accepted, reply);
    }
    // A `/rollback` accepted just now.
    if let Some(key) = row.deploy_key.as_deref().filter(|k| k.starts_with("rollback-"))
        && before.and_then(|b| b.deploy_key.as_deref()) != Some(key)
    {
        let by =
            deploy_asks.iter().find(|(id, _, _)| key.ends_with(&format!("-{id}"))).map(|(_, u, _)| u.login.as_str());
        let d = notify::DeploymentNotice {
            key: key.to_string(),
            sha: row.deploy_sha.as_deref().unwrap_or_default(),
            environment: environment.as_deref().unwrap_or_default(),
            state: DeployState::Requested.as_str(),
            rollback: true,
            by,
            took_ms: None,
            log_url: None,
        };
        notify_out(&mut out, NotifyEvent::Rollback, &notice.deployment(NotifyEvent::Rollback, &d));
    }

    // Runs waiting on the App's protection rule for this environment and these commits.
    // Full SHAs only: a short prefix is cheap to collide with.
    let merged = merge_commit(&prs, env_branch);
    let approved_shas: Vec<String> = if prs.is_empty() {
        req.commit.iter().filter(|c| is_full_sha(c)).cloned().collect()
    } else {
        heads.iter().cloned().chain(merged.map(str::to_string)).collect()
    };
    let covers = |sha: &str| approved_shas.iter().any(|a| sha.eq_ignore_ascii_case(a));
    // A rollback this request asked for: the run it re-ran deploys the last good commit, and is
    // approved whatever the gate says (SPEC §3.5: never blocked by red CI or approvals).
    let rollback = row.rollback_run_id.zip(row.deploy_sha.clone()).filter(|_| rolling_back(&row, now));
    let rollback_sha = rollback.as_ref().map(|(_, sha)| sha.clone());
    if let Some(rollback_sha) = &rollback_sha {
        links.push((Link::Sha, rollback_sha.to_ascii_lowercase()));
    }
    if let Some(env) = environment.as_deref()
        && (active || rollback_sha.is_some())
    {
        for rule in facts.waiting_runs.iter().filter(|r| super::policy::eq_fold(&r.environment, env)) {
            // Only the run the rollback re-ran, of the commit it rolls back to; once.
            if rollback.as_ref().is_some_and(|(run, sha)| *run == rule.run_id && sha.eq_ignore_ascii_case(&rule.sha))
                && row.rollback_run_id.is_some()
            {
                row.rollback_run_id = None;
                let comment = format!(
                    "Approved by shipgate: deployment request #{} rolls {} back to {}.",
                    t.issue,
                    rule.environment,
                    &rule.sha[..rule.sha.len().min(7)]
                );
                out.push(Out::AnswerRule {
                    run_id: rule.run_id,
                    run_attempt: rule.run_attempt,
                    environment: rule.environment.clone(),
                    state: "approved".into(),
                    workflow: rule.workflow,
                    action: Action::ReviewProtectionRule {
                        repo: t.repo.clone(),
                        run_id: rule.run_id,
                        environment_name: rule.environment.clone(),
                        state: Some("approved".into()),
                        comment,
                    },
                });
                let kind = if rule.workflow { "gate_wait.approved" } else { "protection_rule.approved" };
                out.push(audit(
                    kind,
                    None,
                    json!({ "run_id": rule.run_id, "run_attempt": rule.run_attempt, "sha": rule.sha,
                            "environment": rule.environment, "rollback": true }),
                ));
                continue;
            }
            if !active {
                continue;
            }
            if !covers(&rule.sha) {
                // A job routed here (its PR is linked) that this request does not cover is told
                // why, so that it never waits unanswered.
                if rule.workflow && rule.candidate == Some(t.issue.get()) {
                    let why = if !prs.is_empty() && prs.iter().all(|p| p.merge_commit.is_some()) && merged.is_none() {
                        "its pull requests were merged elsewhere than the branch this environment deploys from"
                            .to_string()
                    } else if prs.iter().any(|p| p.merge_commit.is_some()) {
                        "it covers the merge commit only once all its pull requests are merged".to_string()
                    } else {
                        "it covers the heads of its pull requests and, once they are merged, their merge commit"
                            .to_string()
                    };
                    let missing = vec![format!(
                        "Request #{} does not cover {}: {why} ({})",
                        t.issue,
                        &rule.sha[..rule.sha.len().min(7)],
                        approved_shas.iter().map(|s| s[..s.len().min(7)].to_string()).collect::<Vec<_>>().join(", ")
                    )];
                    let comment = messages::rule_waiting(t.issue.get(), &missing);
                    out.push(Out::ReportRule {
                        run_id: rule.run_id,
                        run_attempt: rule.run_attempt,
                        environment: rule.environment.clone(),
                        digest: String::new(),
                        workflow: true,
                        missing,
                        action: Action::ReviewProtectionRule {
                            repo: t.repo.clone(),
                            run_id: rule.run_id,
                            environment_name: rule.environment.clone(),
                            state: None,
                            comment,
                        },
                    });
                }
                continue;
            }
            // Approvals count for a run only if they were given for its commit.
            // Approvals given for the heads that were merged carry to the merge commit.
            let is_merge = merged.is_some_and(|m| m.eq_ignore_ascii_case(&rule.sha));
            let given_for_sha = prs.is_empty()
                || eval.breakglass.is_some()
                || current.iter().all(|a| {
                    a.head_shas.iter().any(|h| h == &rule.sha)
                        || (is_merge && heads.iter().all(|h| a.head_shas.contains(h)))
                });
            let review = |state: Option<&str>, comment: String| Action::ReviewProtectionRule {
                repo: t.repo.clone(),
                run_id: rule.run_id,
                environment_name: rule.environment.clone(),
                state: state.map(str::to_string),
                comment,
            };
            let answer_rule = |state: &str, comment: String| Out::AnswerRule {
                run_id: rule.run_id,
                run_attempt: rule.run_attempt,
                environment: rule.environment.clone(),
                state: state.into(),
                workflow: rule.workflow,
                action: review(Some(state), comment),
            };
            let kind = if rule.workflow { "gate_wait" } else { "protection_rule" };
            let detail = json!({ "run_id": rule.run_id, "run_attempt": rule.run_attempt, "sha": rule.sha,
                                 "environment": rule.environment, "ref": rule.git_ref });
            // A job at /gate/wait deploys only from the branch the environment deploys from (its
            // `branch`, else the default branch; unknown without a PR).
            let wrong_branch = deploy_branch(env_branch, &prs)
                .filter(|b| rule.workflow && rule.git_ref.as_deref() != Some(format!("refs/heads/{b}").as_str()));
            if let Some(by) = row.denied_by.as_deref() {
                let reason = row.deny_reason.clone().unwrap_or_default();
                out.push(answer_rule("rejected", messages::rule_rejected(t.issue.get(), by, &reason)));
                out.push(audit(&format!("{kind}.rejected"), None, detail));
            } else if eval.open && given_for_sha && wrong_branch.is_none() {
                let approvers: Vec<String> = current.iter().map(|a| a.user.login.clone()).collect();
                out.push(answer_rule(
                    "approved",
                    messages::rule_approved(t.issue.get(), &rule.environment, &rule.sha, &approvers),
                ));
                out.push(audit(&format!("{kind}.approved"), None, detail));
                // The first deployment while a break-glass is live spends it, whatever opened the
                // gate (the approvals may have come meanwhile): it is for one deployment.
                if breakglass_live(&remembered, now) {
                    let what = if rule.workflow {
                        format!("the `open` answer to run {} at `/gate/wait`", rule.run_id)
                    } else {
                        format!("the protection rule of run {} approved", rule.run_id)
                    };
                    spend_breakglass(&mut remembered, &mut row, &mut out, before, now, &what);
                    eval = base.clone();
                }
            } else {
                let mut missing = eval.missing();
                if let Some(branch) = wrong_branch {
                    missing.push(format!(
                        "Branch: {env} deploys from `{branch}`; this run is on `{}`",
                        rule.git_ref.as_deref().unwrap_or("an unknown ref")
                    ));
                } else if eval.open {
                    missing.push(format!("Approvals: given for other commits than {}", &rule.sha));
                }
                let comment = messages::rule_waiting(t.issue.get(), &missing);
                out.push(Out::ReportRule {
                    run_id: rule.run_id,
                    run_attempt: rule.run_attempt,
                    environment: rule.environment.clone(),
                    digest: {
                        use sha2::{Digest, Sha256};
                        hex::encode(Sha256::digest(comment.as_bytes()))
                    },
                    workflow: rule.workflow,
                    missing,
                    action: review(None, comment),
                });
            }
        }
    }

    // State and labels.
    row.gate_open = eval.open as i64;
    if eval.open && before.is_none_or(|b| b.gate_open == 0) {
        row.approved_at = Some(now);
        // Opened by break-glass: its own notification said so.
        if eval.breakglass.is_none() {
            let approvers: Vec<String> = current.iter().map(|a| a.user.login.clone()).collect();
            notify_out(&mut out, NotifyEvent::GateOpened, &notice.gate_opened(&approvers, row.revision, &heads));
        }
    }
    let rollback = deploy_view.as_ref().is_some_and(|d| d.rollback);
    let status = RequestStatus::of(&StatusFacts {
        active,
        denied: row.denied_by.is_some(),
        on_hold: row.hold_by.is_some(),
        gate_open: eval.open,
        incomplete: eval.gates.iter().any(|g| g.name == "Request" && g.state == gate::GateState::Fail),
        approvals_complete: eval.gates.iter().any(|g| g.name == "Approvals" && g.state == gate::GateState::Pass),
        deploy_state: deploy_state(&row),
        rollback,
    });
    row.state = status.as_str().into();
    let labels = &issue.labels;
    let want: Vec<&str> = status.label().into_iter().collect();
    let add: Vec<String> = want.iter().filter(|l| !labels.iter().any(|x| x == *l)).map(|l| l.to_string()).collect();
    // The label the last evaluation asked for may not show yet (its action still waits in the
    // outbox, sent in order before this one's): it is taken off too, or it would stay beside this one.
    let asked_before = before
        .and_then(|b| RequestStatus::ALL.into_iter().find(|s| s.as_str() == b.state))
        .and_then(RequestStatus::label);
    let remove: Vec<String> = STATE_LABELS
        .iter()
        .filter(|l| !want.contains(l) && (labels.iter().any(|x| x == *l) || asked_before == Some(**l)))
        .filter(|l| status != RequestStatus::Closed || !matches!(**l, "deployed" | "deploy-failed"))
        .map(|l| l.to_string())
        .collect();

    // A deployment that just ended: the summary (closing a finished request), or the rollback plan.
    let state_changed = before.and_then(|b| b.deploy_state.clone()) != row.deploy_state
        || before.and_then(|b| b.deployment_id) != row.deployment_id;
    if let (Some(d), Trigger::Deployment { id }, true) = (&deploy_view, trigger, state_changed) {
        // Deploying once per deployment (queued → in progress is no news), then how it ended.
        let was_running = before.is_some_and(|b| {
            b.deployment_id == row.deployment_id
                && b.deploy_state.as_deref().and_then(DeployState::parse).is_some_and(DeployState::running)
        });
        let event = match d.state {
            s if s.running() && !d.rollback && !was_running => Some(NotifyEvent::Deploying),
            DeployState::Success if d.rollback => Some(NotifyEvent::Rollback),
            DeployState::Success => Some(NotifyEvent::Deployed),
            s if s.failed() => Some(NotifyEvent::DeployFailed),
            _ => None,
        };
        if let Some(event) = event {
            let n = notify::DeploymentNotice {
                key: format!("deployment-{id}"),
                sha: &d.sha,
                environment: &d.environment,
                state: d.state.as_str(),
                rollback: d.rollback,
                by: None,
                took_ms: d.duration_ms(deploy_created),
                log_url: d.log_url.as_deref(),
            };
            notify_out(&mut out, event, &notice.deployment(event, &n));
        }
        if d.succeeded() && !d.rollback && open {
            let unticked = issue
                .body
                .lines()
                .filter(|l| {
                    let l = l.trim_start();
                    l.starts_with("- [ ]") || l.starts_with("* [ ]")
                })
                .count();
            let mut text =
                messages::closing_summary(t.issue.get(), d, &given, row.created_at, deploy_created, row.approved_at);
            // Said of every break-glass spent on this request (true whichever deployment this is).
            for bg in remembered.breakglass.iter().filter(|b| b.ended.as_ref().is_some_and(|e| e.how == "spent")) {
                text.push_str(&format!(
                    "\n🚨 Break-glass was used on this request {}, spent by {}; its post-incident review is a \
                     follow-up issue.",
                    bg.text(),
                    bg.ended.as_ref().map(|e| e.detail.as_str()).unwrap_or_default()
                ));
            }
            if unticked > 0 {
                text.push_str(&format!(
                    "\n{unticked} item(s) of the request's own checklist are not ticked: tick them and close the issue."
                ));
            }
            out.push(Out::Act(Action::UpsertComment {
                repo: t.repo.clone(),
                issue: t.issue.get(),
                marker: format!("summary-{id}"),
                body: text,
            }));
            if unticked == 0 {
                out.push(Out::Act(Action::UpdateIssue {
                    repo: t.repo.clone(),
                    marker: None,
                    number: Some(t.issue.get()),
                    title: None,
                    body: None,
                    state: Some("closed".into()),
                    state_reason: Some("completed".into()),
                }));
                out.push(audit(
                    "request.closed",
                    None,
                    json!({ "by": "shipgate", "deployment_id": id, "time_to_deploy_ms": d.time_to_deploy_ms(),
                            "deployment_duration_ms": d.duration_ms(deploy_created) }),
                ));
            }
        } else if d.failed() {
            let last_good = facts.last_good.get(&(d.environment.clone(), d.sha.clone())).cloned().flatten();
            out.push(Out::Act(Action::UpsertComment {
                repo: t.repo.clone(),
                issue: t.issue.get(),
                marker: format!("deploy-failed-{id}"),
                body: messages::deploy_failed(d, req.rollback_plan.as_deref(), last_good.as_deref()),
            }));
        }
    }

    // The audit log: what changed.
    let actor = match trigger {
        Trigger::Comment { user, .. } => Some(user.clone()),
        _ => None,
    };
    match before {
        None => out.push(audit(
            "request.parsed",
            Some(&author),
            // The request as read (its parsed fields): what the evidence pack shows for this revision.
            json!({ "environment": environment, "pull_requests": numbers, "problems": problems.len(), "revision": row.revision,
                    "request": req }),
        )),
        Some(b) => {
            if b.revision != row.revision {
                out.push(audit(
                    "request.revised",
                    None,
                    json!({ "revision": row.revision, "environment": environment, "pull_requests": numbers,
                            "problems": problems.len(), "request": req }),
                ));
            }
            if b.open != row.open || b.labelled != row.labelled {
                let kind = if active { "request.reopened" } else { "request.closed" };
                out.push(audit(kind, None, json!({ "open": open, "labelled": labelled })));
            }
        }
    }
    if before.and_then(|b| b.hold_by.clone()) != row.hold_by {
        let kind = if row.hold_by.is_some() { "request.held" } else { "request.unheld" };
        out.push(audit(kind, actor.as_ref(), json!({})));
    }
    if before.and_then(|b| b.denied_by.clone()) != row.denied_by {
        // `lift_audited`: from this version on a lifted deny has its entry too, so `audit verify`
        // may hold a request that is no longer denied to it (older logs never recorded lifts).
        match row.denied_by {
            Some(_) => out.push(audit(
                "request.denied",
                actor.as_ref(),
                json!({ "reason": row.deny_reason, "lift_audited": true }),
            )),
            None => out.push(audit("request.undenied", actor.as_ref(), json!({}))),
        }
    }
    if before.map(|b| b.gate_open).unwrap_or(0) != row.gate_open {
        let kind = if eval.open { "gate.opened" } else { "gate.closed" };
        // The commits it covers and the checks on each, as the gate read them (the evidence pack's).
        let commits: Vec<Value> = prs
            .iter()
            .map(|p| {
                json!({ "pr": p.number, "sha": p.head_sha, "state": p.state, "merge_commit": p.merge_commit,
                             "checks": p.checks })
            })
            .collect();
        out.push(audit(
            kind,
            None,
            json!({ "missing": eval.missing(), "heads": heads, "covers": approved_shas, "commits": commits,
                    "breakglass": eval.breakglass }),
        ));
    }
    let approval_audit: Vec<Out> = out
        .iter()
        .filter_map(|e| match e {
            Out::SaveApproval(a) if prev_states.get(&a.comment_id) != Some(&Some(a.state)) => {
                let who = User { id: UserId(a.user_id), login: a.login.clone() };
                let by = if a.state == ApprovalState::Stale { None } else { actor.as_ref().or(Some(&who)) };
                Some(audit(
                    a.state.audit_kind(),
                    by,
                    json!({ "approver": a.login, "approver_id": a.user_id, "roles": a.roles, "environment": a.environment,
                            "head_shas": a.head_shas, "revision": a.revision, "note": a.note, "comment_id": a.comment_id }),
                ))
            }
            _ => None,
        })
        .collect();
    out.extend(approval_audit);

    let config_lines: Vec<String> = facts.config_errors.iter().map(|e| e.to_string()).collect();
    // Every break-glass of the request, as the comment and the details page say it.
    notes.extend(remembered.breakglass.iter().map(BreakGlass::note));
    let view = RequestView {
        request: &req,
        environment: environment.as_deref(),
        eval: &eval,
        stale: &stale,
        config_errors: &config_lines,
        problems: &problems,
        review_approved: facts.review_approved,
        ticked: &remembered.ticked,
        staging_ok: staging_ok.unwrap_or(false),
        deploy: deploy_view.as_ref(),
        created_at: deploy_created,
        notes: &notes,
        notified: &remembered.notified,
    };
    // Its details link names this repository (the relay links nothing else).
    let body = crate::domain::links::tagged(&messages::request_comment(&view), t.repo_id.get());
    let shown_view = messages::Shown::of(&view, &heads);
    let (conclusion, title, summary) = messages::check_run(&eval, t.issue.get());
    let digest = sha256_hex(&[&body, &conclusion, &summary, &heads.join(","), environment.as_deref().unwrap_or("")]);
    remembered.shown = digest.clone();
    remembered.view = Some(shown_view);
    // The next instant the verdict changes by time alone: an approval expiring, a freeze window
    // starting or ending. A timer evaluates the request again then, with no event.
    let timer = env_policy.filter(|_| active).and_then(|env| {
        let expiries = current
            .iter()
            .filter_map(|a| env.approval_expires_at(given_at.get(&a.comment_id).copied().unwrap_or(comment_at)));
        let lapse = remembered.breakglass.last().filter(|b| b.live(now)).map(|b| b.until);
        expiries.chain(env.freeze.next_change_after(now)).chain(lapse).filter(|at| *at > now).min()
    });
    // Written on every evaluation that has one (cheap: one row by key): the timer deletes its row
    // when it fires, and an evaluation on a replica whose clock is a little behind computes the
    // same instant again; it must put the row back, not trust what it remembered.
    if timer.is_some() || timer != remembered.timer {
        remembered.timer = timer;
        out.push(Out::Timer { due_at: timer });
    }
    row.facts = serde_json::to_string(&remembered).unwrap_or_else(|_| "{}".into());
    // Nothing new to show (a recheck that changed nothing): no call to GitHub.
    if digest != shown_before {
        out.push(Out::Act(Action::UpsertComment {
            repo: t.repo.clone(),
            issue: t.issue.get(),
            marker: messages::REQUEST_MARKER.into(),
            body,
        }));
        if let Some(env) = environment.as_deref() {
            for p in prs.iter().filter(|p| !p.head_sha.is_empty()) {
                out.push(Out::Act(Action::UpsertCheckRun {
                    repo: t.repo.clone(),
                    head_sha: p.head_sha.clone(),
                    name: messages::check_name(env),
                    external_id: format!("gate:{}:{env}:{}", t.issue.get(), p.head_sha),
                    status: "completed".into(),
                    conclusion: Some(conclusion.clone()),
                    title: title.clone(),
                    summary: summary.clone(),
                    text: None,
                    // The relay writes the signed link to the details page (or none).
                    details_url: Some(crate::domain::links::tagged_url(t.repo_id.get())),
                }));
            }
        }
        if !add.is_empty() || !remove.is_empty() {
            out.push(Out::Act(Action::SetLabels { repo: t.repo.clone(), issue: t.issue.get(), add, remove }));
        }
    }
    Decision { row, links, effects: out, replies }
}

/// A break-glass is live: unspent, not lapsed, not ended.
fn breakglass_live(remembered: &Remembered, now: i64) -> bool {
    remembered.breakglass.last().is_some_and(|b| b.live(now))
}

/// Spends the live break-glass on the deployment `what` lets through: audited, and the time to
/// deploy counts from here when the gate was not open before.
fn spend_breakglass(
    remembered: &mut Remembered,
    row: &mut RequestRow,
    out: &mut Vec<Out>,
    before: Option<&RequestRow>,
    now: i64,
    what: &str,
) {
    let Some(bg) = remembered.breakglass.last_mut().filter(|b| b.live(now)) else { return };
    bg.end(now, "spent", what);
    out.push(audit(
        "breakglass.spent",
        None,
        json!({ "by": bg.by.login, "by_id": bg.by.id, "comment_id": bg.comment_id, "environment": bg.environment,
                "heads": bg.heads, "detail": what }),
    ));
    if before.is_none_or(|b| b.gate_open == 0) && row.approved_at.is_none_or(|at| at < bg.at) {
        row.approved_at = Some(now);
    }
}

/// Applies what an accepted command does (see [`decide_command`]) to the request and its approvals.
#[allow(clippy::too_many_arguments)]
fn apply_outcome(
    t: &Target,
    outcome: Outcome,
    comment_id: i64,
    sender: &User,
    environment: Option<&str>,
    heads: &[String],
    given_at: i64,
    row: &mut RequestRow,
    approvals: &mut Vec<(ApprovalFact, String)>,
    out: &mut Vec<Out>,
) {
    match outcome {
        Outcome::Approve { roles } => {
            let fact = ApprovalFact {
                comment_id,
                user: sender.clone(),
                environment: environment.unwrap_or_default().to_string(),
                head_shas: heads.to_vec(),
                revision: row.revision,
            };
            let roles = serde_json::to_string(&roles).unwrap_or_else(|_| "[]".into());
            let mut change = approval_change(t, &fact, &roles, ApprovalState::Active, None);
            change.given_at = Some(given_at);
            out.push(Out::SaveApproval(change));
            approvals.push((fact, roles));
        }
        Outcome::CancelApprovals => {
            let mine: Vec<usize> =
                approvals.iter().enumerate().filter(|(_, (a, _))| a.user.id == sender.id).map(|(i, _)| i).collect();
            for i in mine.into_iter().rev() {
                let (a, roles) = approvals.remove(i);
                out.push(Out::SaveApproval(approval_change(
                    t,
                    &a,
                    &roles,
                    ApprovalState::Withdrawn,
                    Some("cancelled with /approve cancel"),
                )));
            }
        }
        Outcome::Deny { reason } => {
            row.denied_by = Some(sender.login.clone());
            row.denied_by_id = Some(sender.id.get());
            row.deny_reason = Some(reason);
        }
        Outcome::Undeny => {
            row.denied_by = None;
            row.denied_by_id = None;
            row.deny_reason = None;
        }
        Outcome::Hold => {
            row.hold_by = Some(sender.login.clone());
            row.hold_by_id = Some(sender.id.get());
        }
        Outcome::Unhold => {
            row.hold_by = None;
            row.hold_by_id = None;
        }
        Outcome::Recheck | Outcome::DeployAsk | Outcome::BreakGlassAsk { .. } => {}
    }
}

#[cfg(test)]
mod tests;
