//! DEPLOYMENT_REQUEST issues: read the request, apply commands, evaluate the gate, and show the
//! result (sticky comment, check runs on the linked PR heads, state labels). Everything about one
//! request runs under its issue's subject, so one request is never evaluated twice at once;
//! events about PRs and checks ask for a recheck of the requests they touch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::repo::{gh_err, load_policy, repo_of};
use super::{Ctx, Effect, Handled, HandlerError};
use crate::domain::commands::{self, Command};
use crate::domain::flow::{self, Refusal};
use crate::domain::gate::{self, ApprovalFact, CheckFact, Evaluation, GateInput, PrFacts, User};
use crate::domain::messages::{self, DeployView, RequestView};
use crate::domain::policy::{self, DeployMode, Permission, Policy};
use crate::domain::request::{self, Problem};
use crate::domain::state::{ApprovalState, RequestStatus, StatusFacts};
use crate::github::actions::Action;
use crate::github::client::{GhError, parse_rfc3339_ms};
use crate::github::facts;
use crate::store::audit::AuditEntry;
use crate::store::deploys::{self, DeploymentRow, RuleRow};
use crate::store::requests::{self as store, ApprovalChange, Link, RequestRow};

/// The state labels the App manages.
pub const STATE_LABELS: &[&str] =
    &["awaiting-approval", "approved", "on-hold", "deploying", "deployed", "deploy-failed"];

/// The internal event asking for a request to be evaluated again.
pub const RECHECK_EVENT: &str = "shipgate_recheck";

/// Facts remembered between evaluations.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Remembered {
    prs: Vec<PrFacts>,
    missing_prs: Vec<i64>,
    review_approved: bool,
    /// The full commit SHA a request without pull requests names (found like a PR head when a
    /// run or a deployment of it arrives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    commit: Option<String>,
    /// A digest of what was last shown (comment and check runs): unchanged, nothing is sent.
    #[serde(default)]
    shown: String,
    /// When the issue last became a request (GitHub's time, Unix ms): comments written before
    /// never carry commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active_since: Option<i64>,
    /// Why the revision last changed (said of the approvals it made stale).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    revised: String,
    /// Logins of the policy seen on another account than the one they were pinned to: said on
    /// the request for as long as it lives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    identity_notes: Vec<String>,
    /// The newest `updated_at` of the issue seen (GitHub's time, Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issue_updated_at: Option<i64>,
    /// Comments seen edited or deleted (newest last, at most `DEAD_COMMENTS`): a creation
    /// delivered after them carries no command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dead_comments: Vec<i64>,
}

/// How many edited or deleted comment ids a request remembers.
const DEAD_COMMENTS: usize = 200;

/// What triggered an evaluation.
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
}

/// The repository and issue an event is about.
pub struct Target {
    pub installation: i64,
    pub repo_id: i64,
    pub repo: String,
    pub issue: i64,
}

/// Evaluates one request. `issue` is the issue payload when the event carried it.
pub async fn evaluate(
    ctx: Arc<Ctx>,
    t: Target,
    issue: Option<Value>,
    trigger: Trigger,
) -> Result<Handled, HandlerError> {
    let now = ctx.clock.now_ms();
    let mut effects = Vec::new();
    let (policy, config_errors) = load_policy(&ctx, t.installation, t.repo_id, &t.repo, &mut effects).await?;
    let existing = store::get(&ctx.db, t.installation, t.repo_id, t.issue).await?;
    // Facts remembered between evaluations (read once).
    let mut remembered: Remembered =
        existing.as_ref().and_then(|r| serde_json::from_str(&r.facts).ok()).unwrap_or_default();
    let known_at = remembered.issue_updated_at;
    let snapshot_at = |i: &Value| i["updated_at"].as_str().and_then(parse_rfc3339_ms);
    // An event's copy of the issue older than one already seen (a late or redelivered event) is
    // not the issue's state: read it afresh, so a stale copy never reopens a closed request.
    let issue = match issue.filter(|i| snapshot_at(i).zip(known_at).is_none_or(|(at, known)| at >= known)) {
        Some(i) => i,
        None => match facts::issue(&ctx.github, t.installation, &t.repo, t.issue).await {
            Ok(Some(i)) => i,
            Ok(None) => return Ok(Handled::ignored()),
            Err(GhError::DryRun) => return Ok(Handled::ignored()),
            Err(e) => return Err(gh_err(e)),
        },
    };
    let issue_updated_at = snapshot_at(&issue).max(known_at);
    if issue.get("pull_request").is_some_and(|p| !p.is_null()) {
        return Ok(Handled::ignored()); // a PR, not an issue
    }
    let labels: Vec<String> = issue["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["name"].as_str().map(str::to_string))
        .collect();
    let labelled = labels.iter().any(|l| policy.label_matches(l));
    if !labelled && existing.is_none() {
        return Ok(Handled::ignored());
    }
    let author = User::of(&issue["user"]);
    let open = issue["state"].as_str() != Some("closed");
    let body = issue["body"].as_str().unwrap_or_default();

    // The request and what is wrong with it.
    let req = request::parse(body);
    let known: Vec<&str> = policy.environments.keys().map(String::as_str).collect();
    let mut problems: Vec<Problem> =
        req.problems(&known, |e| policy.environment(e).and_then(|env| env.max_rollback_minutes));
    if !config_errors.is_empty() {
        // The environments are unknown while the policy is broken: that is the policy's fault.
        problems.retain(|p| p.field != "environment");
    }
    problems.extend(req.pr_problems(&t.repo));
    // The policy's own name for the environment (aliases and case resolved).
    let environment = req.environment_key(&known).map(str::to_string).or_else(|| {
        // A broken policy defines no environment: the request's own word names the check run,
        // which stays closed.
        req.environment
            .as_deref()
            .filter(|_| !config_errors.is_empty())
            .map(request::normalize_environment)
            .filter(|e| !e.is_empty())
    });
    let env_policy = environment.as_deref().and_then(|e| policy.environment(e));

    // Linked pull requests, their heads, files and checks.
    let numbers = req.pr_numbers(&t.repo);
    let need_files = env_policy.is_some_and(|e| e.approvals.iter().any(|a| !a.when_paths.is_empty()));
    let mut prs = Vec::new();
    let mut missing_prs = Vec::new();
    let mut review_approved = !numbers.is_empty();
    // A comment changes approvals, not PRs or checks: those facts come with their own events
    // (which ask for a recheck), so a comment reuses what was last read, unless it says /recheck.
    let remembered_numbers: BTreeSet<i64> =
        remembered.prs.iter().map(|p| p.number).chain(remembered.missing_prs.iter().copied()).collect();
    let reuse = match &trigger {
        Trigger::Comment { body, .. } => !commands::parse(body).iter().any(|c| matches!(c, Ok(Command::Recheck))),
        Trigger::CommentDeleted { .. } | Trigger::CommentEdited { .. } | Trigger::Deployment { .. } => true,
        _ => false,
    } && existing.is_some()
        && remembered_numbers == numbers.iter().copied().collect::<BTreeSet<i64>>();
    if reuse {
        prs = remembered.prs.clone();
        missing_prs = remembered.missing_prs.clone();
        review_approved = remembered.review_approved;
    }
    // A recheck caused by a check or status changes only the checks: the PRs, their files and
    // reviews are what was read last (their own events recheck them), the checks are read again.
    let checks_only = matches!(trigger, Trigger::Recheck { checks_only: true })
        && !reuse
        && existing.is_some()
        && remembered.missing_prs.is_empty()
        && remembered.prs.iter().map(|p| p.number).collect::<BTreeSet<i64>>()
            == numbers.iter().copied().collect::<BTreeSet<i64>>();
    if checks_only {
        review_approved = remembered.review_approved;
        for p in &remembered.prs {
            let checks = facts::checks(&ctx.github, t.installation, &t.repo, &p.head_sha).await.map_err(gh_err)?;
            prs.push(PrFacts { checks, ..p.clone() });
        }
    }
    for n in numbers.iter().filter(|_| !reuse && !checks_only) {
        match facts::pull_request(&ctx.github, t.installation, &t.repo, *n).await {
            Ok(Some(pr)) => {
                let before = remembered.prs.iter().find(|p| p.number == *n && p.head_sha == pr.head_sha);
                let pushers = before.and_then(|b| b.pushers.clone());
                let files_truncated = pr.changed_files.is_some_and(|n| n > facts::MAX_LISTED_FILES);
                let files = match (need_files, before.and_then(|b| b.files.clone())) {
                    (false, _) => None,
                    (true, Some(f)) => Some(f),
                    (true, None) => {
                        Some(facts::changed_files(&ctx.github, t.installation, &t.repo, *n).await.map_err(gh_err)?)
                    }
                };
                let checks: Vec<CheckFact> =
                    facts::checks(&ctx.github, t.installation, &t.repo, &pr.head_sha).await.map_err(gh_err)?;
                review_approved &=
                    facts::review_approved(&ctx.github, t.installation, &t.repo, *n).await.map_err(gh_err)?;
                prs.push(PrFacts {
                    number: *n,
                    head_sha: pr.head_sha,
                    author: pr.author,
                    state: pr.state,
                    files,
                    checks,
                    files_truncated,
                    pushers,
                });
            }
            Ok(None) => missing_prs.push(*n),
            Err(GhError::DryRun) => {
                review_approved = false;
            }
            Err(e) => return Err(gh_err(e)),
        }
    }
    for n in &missing_prs {
        problems.push(Problem { field: "pull_requests", message: format!("#{n} is not a pull request of {}", t.repo) });
    }
    let shown_before = std::mem::take(&mut remembered.shown);
    let commit = req.commit.clone().filter(|c| numbers.is_empty() && is_full_sha(c)).map(|c| c.to_ascii_lowercase());
    let links: Vec<(Link, String)> = numbers
        .iter()
        .map(|n| (Link::Pr, n.to_string()))
        .chain(prs.iter().filter(|p| !p.head_sha.is_empty()).map(|p| (Link::Sha, p.head_sha.clone())))
        .chain(commit.iter().map(|c| (Link::Sha, c.clone())))
        .collect();
    let active = open && labelled;
    let was_active = existing.as_ref().map(|r| r.open == 1 && r.labelled == 1);
    let mut active_since = remembered.active_since;
    if active && was_active != Some(true) {
        // GitHub's time of the event that made it a request, when the payload says.
        active_since = issue["updated_at"].as_str().and_then(parse_rfc3339_ms);
    }
    let revised_before = std::mem::take(&mut remembered.revised);
    let identity_notes = std::mem::take(&mut remembered.identity_notes);
    let mut dead_comments = std::mem::take(&mut remembered.dead_comments);
    if let Trigger::CommentEdited { id, .. } | Trigger::CommentDeleted { id } = &trigger
        && !dead_comments.contains(id)
    {
        dead_comments.push(*id);
        if dead_comments.len() > DEAD_COMMENTS {
            dead_comments.remove(0);
        }
    }
    remembered = Remembered {
        prs: prs.clone(),
        missing_prs,
        review_approved,
        commit,
        shown: String::new(),
        active_since,
        revised: revised_before,
        identity_notes,
        issue_updated_at,
        dead_comments,
    };

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
    let mut row = existing.clone().unwrap_or(RequestRow {
        installation_id: t.installation,
        repository_id: t.repo_id,
        repository: t.repo.clone(),
        issue: t.issue,
        author_id: author.id,
        author_login: author.login.clone(),
        labelled: 1,
        open: 1,
        fingerprint: fingerprint.clone(),
        revision: 1,
        state: "awaiting-approval".into(),
        facts: "{}".into(),
        labels: "[]".into(),
        created_at: now,
        updated_at: now,
        ..RequestRow::default()
    });
    let before = existing.clone();
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
    let stored = store::approvals(&ctx.db, t.installation, t.repo_id, t.issue).await?;
    let prev_states: BTreeMap<i64, Option<ApprovalState>> =
        stored.iter().map(|a| (a.comment_id, ApprovalState::parse(&a.state))).collect();
    // Who approved and when, for a closing summary: (login, roles, at).
    let given: Vec<(String, String, i64)> = stored
        .iter()
        .filter(|a| ApprovalState::parse(&a.state) == Some(ApprovalState::Active))
        .map(|a| {
            let roles: Vec<String> = serde_json::from_str(&a.roles).unwrap_or_default();
            (a.login.clone(), roles.join(", "), a.created_at)
        })
        .collect();
    // An approval once stale stays stale (a head pushed back, or content edited back, never
    // revives it): it must be given again.
    let was_stale: BTreeMap<i64, String> = stored
        .iter()
        .filter(|a| ApprovalState::parse(&a.state) == Some(ApprovalState::Stale))
        .map(|a| (a.comment_id, a.note.clone().unwrap_or_else(|| "it no longer counts".into())))
        .collect();
    let mut approvals: Vec<(ApprovalFact, String)> = stored
        .into_iter()
        .filter(|a| ApprovalState::parse(&a.state) != Some(ApprovalState::Withdrawn))
        .map(|a| {
            let fact = ApprovalFact {
                comment_id: a.comment_id,
                user: User { id: a.user_id, login: a.login.clone() },
                environment: a.environment.clone(),
                head_shas: a.head_shas.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                revision: a.revision,
            };
            (fact, a.roles)
        })
        .collect();
    let heads: Vec<String> = prs.iter().map(|p| p.head_sha.clone()).collect();

    // The commands of a new comment (never of an edited one, never of one written before the
    // issue became a request).
    let mut replies: Vec<Effect> = Vec::new();
    let mut comment_commands: Vec<CommentCommand> = Vec::new();
    if let Trigger::Comment { id, user, bot: false, body, created_at, on_pr, sole } = &trigger
        && !remembered.dead_comments.contains(id)
    {
        let before_request =
            on_pr.is_some() && created_at.zip(remembered.active_since).is_some_and(|(at, since)| at < since);
        // A comment on a PR this request no longer links applies nothing here.
        let unlinked = on_pr.is_some_and(|pr| !numbers.contains(&pr));
        for (target, parsed) in commands::parse_targeted(body) {
            // On a PR: only what is meant for this request (named, or the only one linking it).
            let meant = match (on_pr, target) {
                (None, _) => true,
                (Some(_), Some(n)) => n == t.issue,
                (Some(_), None) => *sole,
            };
            if !meant {
                continue;
            }
            let refused = |message: &str| commands::CommandError {
                line: 0,
                text: String::new(),
                message: message.into(),
                suggestion: None,
            };
            let parsed = match parsed {
                Ok(_) if before_request => Err(refused("it was written before the issue became a deployment request")),
                Ok(_) if unlinked => Err(refused(&format!("#{} no longer links this pull request", t.issue))),
                other => other,
            };
            comment_commands.push((*id, user.clone(), target, parsed));
        }
    }

    // Who holds which role: users by pinned account id, teams by member id, permission levels.
    let mut people: Vec<User> = approvals.iter().map(|(a, _)| a.user.clone()).collect();
    people.extend(comment_commands.iter().map(|c| c.1.clone()));
    // Only the roles this request needs (its environment's rules that apply to the changed
    // files): no team is read for nothing.
    let env_roles: BTreeSet<&str> = env_policy
        .map(|e| e.approvals.iter().filter(|a| gate::rule_applies(a, &prs)).map(|a| a.role.as_str()).collect())
        .unwrap_or_default();
    let mut notes: Vec<String> = Vec::new();
    for p in prs.iter().filter(|p| p.files_truncated) {
        notes.push(format!(
            "#{} changes more files than GitHub lists: every role with `when_paths` is required",
            p.number
        ));
    }
    let mut perms = Perms::default();
    let mut identity = std::mem::take(&mut remembered.identity_notes);
    let holders = role_holders(&ctx, &t, &policy, &env_roles, &people, &mut perms, &mut effects, &mut identity).await?;
    notes.extend(identity.iter().cloned());
    remembered.identity_notes = identity;
    let holds = |u: &User, role: &str| holders.get(role).is_some_and(|ids| ids.contains(&u.id));

    // Commands.
    // `/deploy` and `/rollback` need the gate's verdict: answered after the evaluation.
    let mut deploy_asks: Vec<(i64, User, Command)> = Vec::new();
    let on_pr = match &trigger {
        Trigger::Comment { on_pr, .. } => *on_pr,
        _ => None,
    };
    let allow_self = env_policy.is_some_and(|e| e.allow_self_approval);
    for (comment_id, sender, target, parsed) in comment_commands {
        let cmd = match parsed {
            Ok(cmd) => cmd,
            Err(e) => {
                answer(&mut replies, &t, on_pr, comment_id, &sender, false, Some(e.message.clone()));
                continue;
            }
        };
        // The facts this command is decided on (read only when it needs them), then the rules.
        let wanted = flow::plan(&cmd, allow_self);
        let permission = if wanted.permission { perms.of(&ctx, &t, &sender).await? } else { None };
        let mut pushers = Vec::new();
        if wanted.pushers && active {
            for p in prs.iter_mut() {
                if p.pushers.is_none() {
                    match facts::pushers(&ctx.github, t.installation, &t.repo, p.number).await {
                        Ok(ids) => p.pushers = Some(ids),
                        Err(GhError::DryRun) => {}
                        Err(e) => return Err(gh_err(e)),
                    }
                }
                let mut ids = p.pushers.clone().unwrap_or_default();
                ids.extend(store::pushers(&ctx.db, t.installation, t.repo_id, p.number).await?);
                pushers.push((p.number, ids));
            }
        }
        let state = flow::RequestState {
            active,
            labelled,
            issue: t.issue,
            environment: env_policy.and(environment.clone()),
            requester: row.author_id,
            hold: row.hold_by.clone().map(|by| (row.hold_by_id, by)),
            denial: row.denied_by.clone().map(|by| (row.denied_by_id, by)),
        };
        let command_facts = flow::CommandFacts {
            sender: sender.clone(),
            target,
            needed_roles: env_roles.iter().map(|r| r.to_string()).collect(),
            held_roles: env_roles.iter().filter(|r| holds(&sender, r)).map(|r| r.to_string()).collect(),
            allow_self_approval: allow_self,
            pr_authors: prs.iter().map(|p| p.author.id).chain([author.id]).collect(),
            pushers,
            permission,
            has_approved: approvals.iter().any(|(a, _)| a.user.id == sender.id),
        };
        let (accepted, reply) = match flow::decide(&cmd, &state, &command_facts) {
            Err(refusal) => (false, Some(messages::refusal_text(&format!("/{}", cmd.name()), &refusal))),
            Ok(flow::Outcome::DeployAsk) => {
                deploy_asks.push((comment_id, sender.clone(), cmd));
                continue;
            }
            Ok(outcome) => {
                apply_outcome(
                    &t,
                    outcome,
                    comment_id,
                    &sender,
                    environment.as_deref(),
                    &heads,
                    &mut row,
                    &mut approvals,
                    &mut effects,
                );
                (true, None)
            }
        };
        answer(&mut replies, &t, on_pr, comment_id, &sender, accepted, reply);
    }
    // Deleting the approving comment, or editing `/approve` out of it, withdraws the approval.
    let approves = |text: &str| commands::parse(text).iter().any(|c| matches!(c, Ok(Command::Approve { .. })));
    let withdrawn = match &trigger {
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
        effects.push(Effect::SaveApproval(approval_change(&t, &a, &roles, ApprovalState::Withdrawn, Some(why))));
    }
    if let Trigger::CommentEdited { id, editor, body, before, on_pr, .. } = &trigger {
        // A command edited in is answered (on the request; a PR's edits are answered there).
        let was: Vec<String> = before.as_deref().map(command_names).unwrap_or_default();
        let added = command_names(body).into_iter().any(|c| !was.contains(&c));
        if added && on_pr.is_none() && active {
            answer(&mut replies, &t, None, *id, editor, false, Some(messages::edited_command()));
        }
    }
    remembered.prs = prs.clone();

    // Stale approvals: marked, and said in the comment.
    let mut stale = Vec::new();
    let mut current = Vec::new();
    for (a, roles) in &approvals {
        if let Some(why) = was_stale.get(&a.comment_id) {
            stale.push((a.user.clone(), why.clone()));
            continue;
        }
        let why = env_policy.and_then(|_| gate::approval_is_current(a, &heads, row.revision)).map(|why| {
            if a.revision != row.revision && !remembered.revised.is_empty() { remembered.revised.clone() } else { why }
        });
        match why {
            Some(why) => {
                stale.push((a.user.clone(), why.clone()));
                effects.push(Effect::SaveApproval(approval_change(&t, a, roles, ApprovalState::Stale, Some(&why))));
            }
            None => current.push(a.clone()),
        }
    }
    // A note about a stale approval goes once its author has approved again.
    let stale: Vec<(String, String)> = stale
        .into_iter()
        .filter(|(u, _)| !current.iter().any(|c| c.user.id == u.id))
        .map(|(u, why)| (u.login, why))
        .collect();

    // Staging first: the same heads deployed successfully to the staging environment.
    let mut staging_ok = None;
    if let Some(env) = env_policy.filter(|e| e.require_staging_first)
        && !prs.is_empty()
    {
        let mut all = true;
        for p in &prs {
            if deploys::succeeded(&ctx.db, t.installation, t.repo_id, &env.staging_environment, &p.head_sha).await? {
                continue; // seen in a deployment_status event
            }
            let app_id = ctx.github.own_app_id().await;
            match facts::deployed_ok(
                &ctx.github,
                t.installation,
                &t.repo,
                &p.head_sha,
                &env.staging_environment,
                app_id,
            )
            .await
            {
                Ok(ok) => all &= ok,
                Err(GhError::DryRun) => all = false,
                Err(e) => return Err(gh_err(e)),
            }
        }
        staging_ok = Some(all);
    }

    let requester = User { id: row.author_id, login: row.author_login.clone() };
    // CI red on the branch the environment deploys from (its `branch`, else the default branch).
    let ci_red = match env_policy.filter(|_| policy.ci.block_deploys_while_red) {
        Some(env) => super::repo::red_on(&ctx.db, t.repo_id, env.branch.as_deref()).await?,
        None => None,
    };
    let eval = gate::evaluate(&GateInput {
        policy: &policy,
        policy_errors: &config_errors,
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
        ci_red: ci_red.as_deref(),
    });

    // A deployment status forwarded to this request.
    let mut deployment = None;
    let forwarded = match &trigger {
        Trigger::Deployment { id } => deploys::get(&ctx.db, t.installation, t.repo_id, *id).await?,
        _ => None,
    };
    // Someone else's deployment of a commit this request covers: never its own, never a success
    // of the request; while the gate was closed it is reported loudly.
    if let Some(d) = forwarded.as_ref().filter(|d| d.issue != Some(t.issue)) {
        let gate_was_open = before.as_ref().is_some_and(|b| b.gate_open == 1);
        if !gate_was_open {
            effects.push(Effect::Act(Action::UpsertComment {
                repo: t.repo.clone(),
                issue: t.issue,
                marker: format!("ungated-{}", d.deployment_id),
                body: messages::ungated_deployment(
                    d.deployment_id,
                    &d.sha,
                    &d.environment,
                    &d.state,
                    &d.origin,
                    d.issue,
                ),
            }));
            effects.push(audit_entry(
                &t,
                "deployment.ungated",
                None,
                json!({ "deployment_id": d.deployment_id, "state": d.state, "sha": d.sha,
                        "environment": d.environment, "origin": d.origin }),
            ));
        }
    }
    if let Some(d) = forwarded.filter(|d| d.issue == Some(t.issue))
        && row.deployment_id.is_none_or(|cur| d.deployment_id >= cur)
    {
        let id = &d.deployment_id;
        if row.deployment_id != Some(*id) || row.deploy_state.as_deref() != Some(d.state.as_str()) {
            effects.push(audit_entry(
                &t,
                "deployment.status",
                None,
                json!({ "deployment_id": id, "state": d.state, "sha": d.sha, "environment": d.environment }),
            ));
        }
        row.deployment_id = Some(*id);
        row.deploy_sha = Some(d.sha.clone());
        row.deploy_state = Some(d.state.clone());
        deployment = Some(d);
    }
    let deployment = match (deployment, row.deployment_id) {
        (Some(d), _) => Some(d),
        (None, Some(id)) => deploys::get(&ctx.db, t.installation, t.repo_id, id).await?,
        (None, None) => None,
    };
    let deploy_view = row.deploy_state.as_ref().map(|state| DeployView {
        state: state.clone(),
        sha: row.deploy_sha.clone().unwrap_or_default(),
        environment: deployment.as_ref().map(|d| d.environment.clone()).or(environment.clone()).unwrap_or_default(),
        deployment_id: row.deployment_id,
        started_at: deployment.as_ref().and_then(|d| d.started_at),
        finished_at: deployment.as_ref().and_then(|d| d.finished_at),
        rollback: row.deploy_key.as_deref().is_some_and(|k| k.starts_with("rollback-")),
    });
    let deploy_created = deployment.as_ref().map(|d| d.created_at).unwrap_or(row.created_at);

    // `/deploy` and `/rollback`.
    for (comment_id, sender, cmd) in &deploy_asks {
        let (accepted, reply) = deploy_command(
            &ctx,
            &t,
            env_policy.map(|e| e.deploy),
            environment.as_deref(),
            &env_roles,
            &holds,
            sender,
            cmd,
            *comment_id,
            &eval,
            open && labelled,
            &prs,
            &req,
            &mut row,
            &mut effects,
        )
        .await?;
        answer(&mut replies, &t, on_pr, *comment_id, sender, accepted, reply);
    }

    // Runs waiting on the App's protection rule for this environment and these commits.
    // Full SHAs only: a short prefix is cheap to collide with.
    let approved_shas: Vec<String> =
        if prs.is_empty() { req.commit.iter().filter(|c| is_full_sha(c)).cloned().collect() } else { heads.clone() };
    let covers = |sha: &str| approved_shas.iter().any(|a| sha.eq_ignore_ascii_case(a));
    if let Some(env) = environment.as_deref()
        && open
        && labelled
    {
        for rule in deploys::pending_rules(&ctx.db, t.installation, t.repo_id, env).await? {
            if !covers(&rule.sha) {
                continue;
            }
            // Approvals count for a run only if they were given for its commit.
            let given_for_sha = prs.is_empty() || current.iter().all(|a| a.head_shas.iter().any(|h| h == &rule.sha));
            let review = |state: Option<&str>, comment: String| Action::ReviewProtectionRule {
                repo: t.repo.clone(),
                run_id: rule.run_id,
                environment_name: rule.environment.clone(),
                state: state.map(str::to_string),
                comment,
            };
            let answer_rule = |state: &str, comment: String| Effect::AnswerRule {
                installation: t.installation,
                repository_id: t.repo_id,
                run_id: rule.run_id,
                environment: rule.environment.clone(),
                state: state.into(),
                issue: t.issue,
                action: review(Some(state), comment),
            };
            let detail = json!({ "run_id": rule.run_id, "sha": rule.sha, "environment": rule.environment });
            if let Some(by) = row.denied_by.as_deref() {
                let reason = row.deny_reason.clone().unwrap_or_default();
                effects.push(answer_rule("rejected", messages::rule_rejected(t.issue, by, &reason)));
                effects.push(audit_entry(&t, "protection_rule.rejected", None, detail));
            } else if eval.open && given_for_sha {
                let approvers: Vec<String> = current.iter().map(|a| a.user.login.clone()).collect();
                effects.push(answer_rule(
                    "approved",
                    messages::rule_approved(t.issue, &rule.environment, &rule.sha, &approvers),
                ));
                effects.push(audit_entry(&t, "protection_rule.approved", None, detail));
            } else {
                let mut missing = eval.missing();
                if eval.open {
                    missing.push(format!("Approvals: given for other commits than {}", &rule.sha));
                }
                let comment = messages::rule_waiting(t.issue, &missing);
                let digest = {
                    use sha2::{Digest, Sha256};
                    hex::encode(Sha256::digest(comment.as_bytes()))
                };
                effects.push(Effect::ReportRule {
                    installation: t.installation,
                    repository_id: t.repo_id,
                    run_id: rule.run_id,
                    environment: rule.environment.clone(),
                    digest,
                    action: review(None, comment),
                });
            }
        }
    }

    // State and labels.
    row.gate_open = eval.open as i64;
    if eval.open && before.as_ref().is_none_or(|b| b.gate_open == 0) {
        row.approved_at = Some(now);
    }
    let rollback = deploy_view.as_ref().is_some_and(|d| d.rollback);
    let status = RequestStatus::of(&StatusFacts {
        active,
        denied: row.denied_by.is_some(),
        on_hold: row.hold_by.is_some(),
        gate_open: eval.open,
        deploy_state: row.deploy_state.as_deref(),
        rollback,
    });
    row.state = status.as_str().into();
    let want: Vec<&str> = status.label().into_iter().collect();
    let add: Vec<String> = want.iter().filter(|l| !labels.iter().any(|x| x == *l)).map(|l| l.to_string()).collect();
    let remove: Vec<String> = STATE_LABELS
        .iter()
        .filter(|l| !want.contains(l) && labels.iter().any(|x| x == *l))
        .filter(|l| status != RequestStatus::Closed || !matches!(**l, "deployed" | "deploy-failed"))
        .map(|l| l.to_string())
        .collect();

    // A deployment that just ended: the summary (closing a finished request), or the rollback plan.
    let state_changed = before.as_ref().and_then(|b| b.deploy_state.clone()) != row.deploy_state
        || before.as_ref().and_then(|b| b.deployment_id) != row.deployment_id;
    if let (Some(d), Trigger::Deployment { id }, true) = (&deploy_view, &trigger, state_changed) {
        if d.succeeded() && !d.rollback && open {
            let unticked = body
                .lines()
                .filter(|l| {
                    let l = l.trim_start();
                    l.starts_with("- [ ]") || l.starts_with("* [ ]")
                })
                .count();
            let mut text =
                messages::closing_summary(t.issue, d, &given, row.created_at, deploy_created, row.approved_at);
            if unticked > 0 {
                text.push_str(&format!(
                    "\n{unticked} item(s) of the request's own checklist are not ticked: tick them and close the issue."
                ));
            }
            effects.push(Effect::Act(Action::UpsertComment {
                repo: t.repo.clone(),
                issue: t.issue,
                marker: format!("summary-{id}"),
                body: text,
            }));
            if unticked == 0 {
                effects.push(Effect::Act(Action::UpdateIssue {
                    repo: t.repo.clone(),
                    marker: None,
                    number: Some(t.issue),
                    title: None,
                    body: None,
                    state: Some("closed".into()),
                    state_reason: Some("completed".into()),
                }));
                effects.push(audit_entry(
                    &t,
                    "request.closed",
                    None,
                    json!({ "by": "shipgate", "deployment_id": id, "time_to_deploy_ms": d.duration_ms(deploy_created) }),
                ));
            }
        } else if d.failed() {
            let last_good = deploys::last_success(&ctx.db, t.installation, t.repo_id, &d.environment, &d.sha).await?;
            effects.push(Effect::Act(Action::UpsertComment {
                repo: t.repo.clone(),
                issue: t.issue,
                marker: format!("deploy-failed-{id}"),
                body: messages::deploy_failed(d, req.rollback_plan.as_deref(), last_good.as_deref()),
            }));
        }
    }

    // The audit log: what changed.
    let actor = match &trigger {
        Trigger::Comment { user, .. } => Some(user.clone()),
        _ => None,
    };
    match &before {
        None => effects.push(audit_entry(
            &t,
            "request.parsed",
            Some(&author),
            json!({ "environment": environment, "pull_requests": numbers, "problems": problems.len(), "revision": row.revision }),
        )),
        Some(b) => {
            if b.revision != row.revision {
                effects.push(audit_entry(&t, "request.revised", None, json!({ "revision": row.revision })));
            }
            if b.open != row.open || b.labelled != row.labelled {
                let kind = if open && labelled { "request.reopened" } else { "request.closed" };
                effects.push(audit_entry(&t, kind, None, json!({ "open": open, "labelled": labelled })));
            }
        }
    }
    let was = before.as_ref();
    if was.and_then(|b| b.hold_by.clone()) != row.hold_by {
        let kind = if row.hold_by.is_some() { "request.held" } else { "request.unheld" };
        effects.push(audit_entry(&t, kind, actor.as_ref(), json!({})));
    }
    if was.and_then(|b| b.denied_by.clone()) != row.denied_by && row.denied_by.is_some() {
        effects.push(audit_entry(&t, "request.denied", actor.as_ref(), json!({ "reason": row.deny_reason })));
    }
    if was.map(|b| b.gate_open).unwrap_or(0) != row.gate_open {
        let kind = if eval.open { "gate.opened" } else { "gate.closed" };
        effects.push(audit_entry(&t, kind, None, json!({ "missing": eval.missing(), "heads": heads })));
    }
    let approval_audit: Vec<Effect> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::SaveApproval(a) if prev_states.get(&a.comment_id) != Some(&Some(a.state)) => {
                let kind = a.state.audit_kind();
                let who = User { id: a.user_id, login: a.login.clone() };
                let by = if a.state == ApprovalState::Stale { None } else { actor.as_ref().or(Some(&who)) };
                Some(audit_entry(
                    &t,
                    kind,
                    by,
                    json!({ "approver": a.login, "approver_id": a.user_id, "roles": a.roles, "environment": a.environment,
                            "head_shas": a.head_shas, "revision": a.revision, "note": a.note, "comment_id": a.comment_id }),
                ))
            }
            _ => None,
        })
        .collect();
    effects.extend(approval_audit);

    let config_lines: Vec<String> = config_errors.iter().map(|e| e.to_string()).collect();
    let body = messages::request_comment(&RequestView {
        request: &req,
        environment: environment.as_deref(),
        eval: &eval,
        stale: &stale,
        config_errors: &config_lines,
        problems: &problems,
        review_approved,
        staging_ok: staging_ok.unwrap_or(false),
        deploy: deploy_view.as_ref(),
        created_at: deploy_created,
        notes: &notes,
    });
    let (conclusion, _, summary) = messages::check_run(&eval, t.issue);
    let digest = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            body.as_str(),
            conclusion.as_str(),
            summary.as_str(),
            &heads.join(","),
            environment.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    };
    remembered.shown = digest.clone();
    row.facts = serde_json::to_string(&remembered).unwrap_or_else(|_| "{}".into());
    // Nothing new to show (a recheck that changed nothing): no call to GitHub.
    if digest != shown_before {
        effects.push(Effect::Act(Action::UpsertComment {
            repo: t.repo.clone(),
            issue: t.issue,
            marker: messages::REQUEST_MARKER.into(),
            body,
        }));
        if let Some(env) = environment.as_deref() {
            effects.extend(check_runs(&t, env, &prs, &eval));
        }
        if !add.is_empty() || !remove.is_empty() {
            effects.push(Effect::Act(Action::SetLabels { repo: t.repo.clone(), issue: t.issue, add, remove }));
        }
    }
    effects.push(Effect::SaveRequest(Box::new(row)));
    effects.push(Effect::SaveLinks { installation: t.installation, repository_id: t.repo_id, issue: t.issue, links });
    effects.extend(replies);
    Ok(Handled::ok(effects))
}

/// A command of a comment: (comment id, its author, the request it names, the command).
type CommentCommand = (i64, User, Option<i64>, Result<Command, commands::CommandError>);

/// The names of the commands a comment carries (errors included), to tell what an edit added.
fn command_names(text: &str) -> Vec<String> {
    commands::parse_targeted(text)
        .into_iter()
        .map(|(target, c)| match c {
            Ok(c) => format!("{}{:?}", c.name(), target),
            Err(e) => e.text,
        })
        .collect()
}

/// Repository permissions read during one evaluation, by lowercase login (None: no access, or
/// not readable, as in dry-run).
#[derive(Default)]
struct Perms(BTreeMap<String, Option<Permission>>);

impl Perms {
    async fn of(&mut self, ctx: &Ctx, t: &Target, user: &User) -> Result<Option<Permission>, HandlerError> {
        let key = user.login.to_ascii_lowercase();
        if let Some(p) = self.0.get(&key) {
            return Ok(*p);
        }
        let p = match facts::permission(&ctx.github, t.installation, &t.repo, &user.login).await {
            Ok(p) => Permission::parse(&p),
            // Dry-run reads nothing: never assume access.
            Err(GhError::DryRun) => None,
            Err(e) => return Err(gh_err(e)),
        };
        self.0.insert(key, p);
        Ok(p)
    }
}

fn check_runs(t: &Target, env: &str, prs: &[PrFacts], eval: &Evaluation) -> Vec<Effect> {
    let (conclusion, title, summary) = messages::check_run(eval, t.issue);
    prs.iter()
        .filter(|p| !p.head_sha.is_empty())
        .map(|p| {
            Effect::Act(Action::UpsertCheckRun {
                repo: t.repo.clone(),
                head_sha: p.head_sha.clone(),
                name: messages::check_name(env),
                external_id: format!("gate:{}:{env}:{}", t.issue, p.head_sha),
                status: "completed".into(),
                conclusion: Some(conclusion.clone()),
                title: title.clone(),
                summary: summary.clone(),
                text: None,
                details_url: None,
            })
        })
        .collect()
}

fn approval_change(
    t: &Target,
    a: &ApprovalFact,
    roles: &str,
    state: ApprovalState,
    note: Option<&str>,
) -> ApprovalChange {
    ApprovalChange {
        installation_id: t.installation,
        repository_id: t.repo_id,
        issue: t.issue,
        comment_id: a.comment_id,
        user_id: a.user.id,
        login: a.user.login.clone(),
        roles: roles.to_string(),
        environment: a.environment.clone(),
        head_shas: a.head_shas.join(","),
        revision: a.revision,
        state,
        note: note.map(str::to_string),
    }
}

/// For each role, the ids of `people` who hold it now: a login named in the policy counts only
/// for the account it was pinned to (resolved and pinned the first time it is seen), a team by
/// member id, a permission level by the repository's answer. A login that now belongs to another
/// account is said in `notes`.
#[allow(clippy::too_many_arguments)]
async fn role_holders(
    ctx: &Ctx,
    t: &Target,
    policy: &Policy,
    roles: &BTreeSet<&str>,
    people: &[User],
    perms: &mut Perms,
    effects: &mut Vec<Effect>,
    notes: &mut Vec<String>,
) -> Result<BTreeMap<String, BTreeSet<i64>>, HandlerError> {
    let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    // Every login the needed roles name is resolved and pinned the first time a request needs
    // it, whoever comments: a login renamed and registered again later fills no role.
    let mut wanted: Vec<String> = policy
        .roles
        .iter()
        .filter(|(n, _)| roles.contains(n.as_str()))
        .flat_map(|(_, r)| r.users.iter())
        .map(|u| u.to_ascii_lowercase())
        .collect();
    wanted.sort();
    wanted.dedup();
    let mut pinned = store::pinned_logins(&ctx.db, t.installation, &wanted).await?;
    for login in wanted.iter().filter(|l| !pinned.contains_key(*l)).cloned().collect::<Vec<_>>() {
        match facts::user_id(&ctx.github, t.installation, &login).await {
            Ok(Some(id)) => {
                effects.push(Effect::PinLogin { installation: t.installation, login: login.clone(), user_id: id });
                effects.push(audit_entry(t, "login.pinned", None, json!({ "login": login, "user_id": id })));
                pinned.insert(login, id);
            }
            Ok(None) | Err(GhError::DryRun) => {}
            Err(e) => return Err(gh_err(e)),
        }
    }
    if people.is_empty() {
        return Ok(out);
    }
    let now = ctx.clock.now_ms();
    for (name, role) in policy.roles.iter().filter(|(n, _)| roles.contains(n.as_str())) {
        let mut ids = BTreeSet::new();
        for p in people {
            let Some(login) = role.users.iter().find(|u| u.eq_ignore_ascii_case(&p.login)) else { continue };
            match pinned.get(&login.to_ascii_lowercase()) {
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
            match ctx.teams.members(&ctx.github, t.installation, &team.org, &team.slug, now).await {
                Ok(members) => ids.extend(people.iter().filter(|p| members.contains(&p.id)).map(|p| p.id)),
                Err(GhError::DryRun) => {}
                Err(e) => return Err(gh_err(e)),
            }
        }
        if let Some(level) = role.permission {
            for p in people {
                if perms.of(ctx, t, p).await?.is_some_and(|have| have >= level) {
                    ids.insert(p.id);
                }
            }
        }
        out.insert(name.clone(), ids);
    }
    Ok(out)
}

/// Applies what an accepted command does (see `flow::decide`) to the request and its approvals.
#[allow(clippy::too_many_arguments)]
fn apply_outcome(
    t: &Target,
    outcome: flow::Outcome,
    comment_id: i64,
    sender: &User,
    environment: Option<&str>,
    heads: &[String],
    row: &mut RequestRow,
    approvals: &mut Vec<(ApprovalFact, String)>,
    effects: &mut Vec<Effect>,
) {
    match outcome {
        flow::Outcome::Approve { roles } => {
            let fact = ApprovalFact {
                comment_id,
                user: sender.clone(),
                environment: environment.unwrap_or_default().to_string(),
                head_shas: heads.to_vec(),
                revision: row.revision,
            };
            let roles = serde_json::to_string(&roles).unwrap_or_else(|_| "[]".into());
            effects.push(Effect::SaveApproval(approval_change(t, &fact, &roles, ApprovalState::Active, None)));
            approvals.push((fact, roles));
        }
        flow::Outcome::CancelApprovals => {
            let mine: Vec<usize> =
                approvals.iter().enumerate().filter(|(_, (a, _))| a.user.id == sender.id).map(|(i, _)| i).collect();
            for i in mine.into_iter().rev() {
                let (a, roles) = approvals.remove(i);
                effects.push(Effect::SaveApproval(approval_change(
                    t,
                    &a,
                    &roles,
                    ApprovalState::Withdrawn,
                    Some("cancelled with /approve cancel"),
                )));
            }
        }
        flow::Outcome::Deny { reason } => {
            row.denied_by = Some(sender.login.clone());
            row.denied_by_id = Some(sender.id);
            row.deny_reason = Some(reason);
        }
        flow::Outcome::Undeny => {
            row.denied_by = None;
            row.denied_by_id = None;
            row.deny_reason = None;
        }
        flow::Outcome::Hold => {
            row.hold_by = Some(sender.login.clone());
            row.hold_by_id = Some(sender.id);
        }
        flow::Outcome::Unhold => {
            row.hold_by = None;
            row.hold_by_id = None;
        }
        flow::Outcome::Recheck | flow::Outcome::DeployAsk => {}
    }
}

/// The repository and issue of an event payload.
pub fn target(ctx: &Ctx, v: &Value) -> Option<Target> {
    Some(Target {
        installation: ctx.delivery.installation_id.or_else(|| v["installation"]["id"].as_i64())?,
        repo_id: v["repository"]["id"].as_i64()?,
        repo: v["repository"]["full_name"].as_str()?.to_string(),
        issue: v["issue"]["number"].as_i64()?,
    })
}

pub async fn on_issue(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    let Some(t) = target(&ctx, &v) else { return Ok(Handled::ignored()) };
    let action = v["action"].as_str().unwrap_or_default().to_string();
    if !matches!(action.as_str(), "opened" | "edited" | "labeled" | "unlabeled" | "closed" | "reopened") {
        return Ok(Handled::ignored());
    }
    let issue = v["issue"].clone();
    evaluate(ctx, t, Some(issue), Trigger::Issue { action }).await
}

pub async fn on_comment(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    let Some(t) = target(&ctx, &v) else { return Ok(Handled::ignored()) };
    let c = &v["comment"];
    let user = User::of(&c["user"]);
    let bot = c["user"]["type"].as_str() == Some("Bot")
        || user.login.ends_with("[bot]")
        || v["sender"]["type"].as_str() == Some("Bot");
    let on_pr = v["issue"]["pull_request"].is_object().then_some(t.issue);
    let action = v["action"].as_str().unwrap_or_default();
    let trigger = comment_trigger(action, c, bot, on_pr, true, v["changes"]["body"]["from"].as_str(), editor_of(&v));
    let Some(trigger) = trigger else { return Ok(Handled::ignored()) };
    if let Some(pr) = on_pr {
        return on_pr_comment(&ctx, &t, pr, c, &editor_of(&v), trigger).await;
    }
    if store::get(&ctx.db, t.installation, t.repo_id, t.issue).await?.is_none()
        && !matches!(trigger, Trigger::Comment { .. })
    {
        return Ok(Handled::ignored());
    }
    let issue = v["issue"].clone();
    evaluate(ctx, t, Some(issue), trigger).await
}

/// The trigger of an `issue_comment` action: new comments carry commands (never a bot's), edits
/// and deletions can only take an approval back.
fn comment_trigger(
    action: &str,
    c: &Value,
    bot: bool,
    on_pr: Option<i64>,
    sole: bool,
    before: Option<&str>,
    editor: User,
) -> Option<Trigger> {
    let id = c["id"].as_i64().unwrap_or_default();
    let body = c["body"].as_str().unwrap_or_default().to_string();
    let user = User::of(&c["user"]);
    match action {
        "created" if bot => None,
        "created" => Some(Trigger::Comment {
            id,
            user,
            bot,
            body,
            created_at: c["created_at"].as_str().and_then(parse_rfc3339_ms),
            on_pr,
            sole,
        }),
        "edited" => {
            Some(Trigger::CommentEdited { id, author: user, editor, body, before: before.map(str::to_string), on_pr })
        }
        "deleted" => Some(Trigger::CommentDeleted { id }),
        _ => None,
    }
}

/// A comment on pull request `pr`. A command goes to the request it is meant for, in that
/// request's own order: the only open request that links the PR, or the one it names
/// (`/approve #45`); when several link it and it names none, the App asks which and applies
/// nothing. An edit or a deletion goes to every request the comment approved.
async fn on_pr_comment(
    ctx: &Ctx,
    t: &Target,
    pr: i64,
    c: &Value,
    editor: &User,
    trigger: Trigger,
) -> Result<Handled, HandlerError> {
    let forward = |issue: i64, action: &str, sole: bool, before: Option<&str>| Effect::ForwardComment {
        installation: t.installation,
        repository_id: t.repo_id,
        repository: t.repo.clone(),
        issue,
        trigger: Internal::PrComment {
            action: action.into(),
            pr,
            sole,
            comment: c.clone(),
            before: before.map(str::to_string),
            editor: Some(editor.clone()),
        },
    };
    let mut effects = Vec::new();
    match &trigger {
        Trigger::Comment { id, user, body, .. } => {
            let parsed = commands::parse_targeted(body);
            if parsed.is_empty() {
                return Ok(Handled::ignored());
            }
            let linking = store::open_linking(&ctx.db, t.installation, t.repo_id, Link::Pr, &pr.to_string()).await?;
            if linking.is_empty() {
                return Ok(Handled::ignored());
            }
            let sole = linking.len() == 1;
            let mut to: BTreeSet<i64> = BTreeSet::new();
            let mut unnamed = false;
            let mut strangers = BTreeSet::new();
            for (target, _) in &parsed {
                match target {
                    Some(n) if linking.contains(n) => {
                        to.insert(*n);
                    }
                    Some(n) => {
                        strangers.insert(*n);
                    }
                    None if sole => {
                        to.insert(linking[0]);
                    }
                    None => unnamed = true,
                }
            }
            if unnamed || !strangers.is_empty() {
                answer(
                    &mut effects,
                    t,
                    Some(pr),
                    *id,
                    user,
                    false,
                    Some(messages::which_request(&linking, &strangers)),
                );
            }
            effects.extend(to.into_iter().map(|issue| forward(issue, "created", sole, None)));
        }
        Trigger::CommentEdited { id, editor, body, before, .. } => {
            // To the requests it approved, and those that link the PR (which remember that it
            // was edited, should its creation be delivered later).
            let linking = store::open_linking(&ctx.db, t.installation, t.repo_id, Link::Pr, &pr.to_string()).await?;
            for issue in affected(ctx, t, *id, &linking).await? {
                effects.push(forward(issue, "edited", false, before.as_deref()));
            }
            let was: Vec<String> = before.as_deref().map(command_names).unwrap_or_default();
            if command_names(body).into_iter().any(|n| !was.contains(&n)) && !linking.is_empty() {
                answer(&mut effects, t, Some(pr), *id, editor, false, Some(messages::edited_command()));
            }
        }
        Trigger::CommentDeleted { id } => {
            let linking = store::open_linking(&ctx.db, t.installation, t.repo_id, Link::Pr, &pr.to_string()).await?;
            for issue in affected(ctx, t, *id, &linking).await? {
                effects.push(forward(issue, "deleted", false, None));
            }
        }
        _ => {}
    }
    Ok(if effects.is_empty() { Handled::ignored() } else { Handled::ok(effects) })
}

/// The requests an edit or deletion of comment `id` on a PR concerns: those it approved, and the
/// open ones linking the PR (`linking`).
async fn affected(ctx: &Ctx, t: &Target, id: i64, linking: &[i64]) -> Result<BTreeSet<i64>, HandlerError> {
    let mut out: BTreeSet<i64> =
        store::approved_by_comment(&ctx.db, t.installation, t.repo_id, id).await?.into_iter().collect();
    out.extend(linking.iter().copied());
    Ok(out)
}

/// Who sent a comment event (the editor, for an edit).
fn editor_of(v: &Value) -> User {
    User::of(&v["sender"])
}

/// The internal event carrying a command from a linked PR to its request.
pub const FORWARDED_COMMENT_EVENT: &str = "shipgate_pr_command";

/// Events about PRs, checks and teams: ask the requests they touch to be evaluated again.
pub async fn on_related(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    let Some(installation) = ctx.delivery.installation_id.or_else(|| v["installation"]["id"].as_i64()) else {
        return Ok(Handled::ignored());
    };
    let event = ctx.delivery.event.as_str();
    let action = v["action"].as_str().unwrap_or_default();
    let mut targets: Vec<(i64, String, i64)> = Vec::new();
    if matches!(event, "membership" | "team") {
        ctx.teams.forget(installation);
        targets = store::open_in_installation(&ctx.db, installation).await?;
    } else if let (Some(repo_id), Some(repo)) = (v["repository"]["id"].as_i64(), v["repository"]["full_name"].as_str())
    {
        let sha = |v: &Value| (Link::Sha, v.as_str().unwrap_or("-").to_string());
        let pr = |n: Option<i64>| (Link::Pr, n.unwrap_or(-1).to_string());
        let needles: Vec<(Link, String)> = match event {
            "pull_request" if matches!(action, "synchronize" | "closed" | "reopened" | "edited") => {
                vec![pr(v["number"].as_i64().or(v["pull_request"]["number"].as_i64()))]
            }
            "check_run" if action == "completed" => vec![sha(&v["check_run"]["head_sha"])],
            "check_suite" if action == "completed" => vec![sha(&v["check_suite"]["head_sha"])],
            "workflow_run" if action == "completed" => vec![sha(&v["workflow_run"]["head_sha"])],
            "status" => vec![sha(&v["sha"])],
            "pull_request_review" => vec![pr(v["pull_request"]["number"].as_i64())],
            _ => vec![],
        };
        // The App's own check runs do not change any gate.
        if event == "check_run" && v["check_run"]["name"].as_str().is_some_and(gate::is_own_check) {
            return Ok(Handled::ignored());
        }
        for (kind, value) in needles {
            for issue in store::open_linking(&ctx.db, installation, repo_id, kind, &value).await? {
                if !targets.iter().any(|t| t.0 == repo_id && t.2 == issue) {
                    targets.push((repo_id, repo.to_string(), issue));
                }
            }
        }
    }
    // Who pushes to a PR (the event's sender, not the commits' claimed authors) cannot approve it.
    let mut effects: Vec<Effect> = Vec::new();
    if event == "pull_request"
        && matches!(action, "opened" | "synchronize" | "reopened")
        && let (Some(repository_id), Some(pr), Some(user_id)) = (
            v["repository"]["id"].as_i64(),
            v["number"].as_i64().or(v["pull_request"]["number"].as_i64()),
            v["sender"]["id"].as_i64(),
        )
    {
        effects.push(Effect::RecordPusher { installation, repository_id, pr, user_id });
    }
    if targets.is_empty() && effects.is_empty() {
        return Ok(Handled::ignored());
    }
    let checks_only = matches!(event, "check_run" | "check_suite" | "status" | "workflow_run");
    effects.extend(targets.into_iter().map(|(repository_id, repository, issue)| {
        Effect::recheck(installation, repository_id, &repository, issue, checks_only)
    }));
    Ok(Handled::ok(effects))
}

/// What the App asks of a request's own subject, as data (never a made-up webhook): the body of
/// its internal deliveries, under `trigger`, beside the repository and issue it is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Internal {
    /// Evaluate the request again; `cause` is the delivery that asked (each cause its own body).
    Recheck {
        cause: String,
        /// Only checks or statuses changed.
        #[serde(default)]
        checks_only: bool,
    },
    /// A comment on linked PR `pr` was created, edited or deleted (`action`).
    PrComment {
        action: String,
        pr: i64,
        /// This request is the only open one linking the PR.
        sole: bool,
        comment: Value,
        /// An edited comment's old text.
        #[serde(default)]
        before: Option<String>,
        /// Who edited it.
        #[serde(default)]
        editor: Option<User>,
    },
    /// A status of deployment `deployment_id` (recorded in the deployments table).
    Deployment { deployment_id: i64, cause: String },
}

impl Internal {
    /// The inbox event name it is delivered under (refused on `POST /webhook`).
    pub fn event(&self) -> &'static str {
        match self {
            Internal::Recheck { .. } => RECHECK_EVENT,
            Internal::PrComment { .. } => FORWARDED_COMMENT_EVENT,
            Internal::Deployment { .. } => DEPLOYMENT_EVENT,
        }
    }

    /// The trigger of the evaluation it asks for.
    fn trigger(self) -> Option<Trigger> {
        match self {
            Internal::Recheck { checks_only, .. } => Some(Trigger::Recheck { checks_only }),
            Internal::PrComment { action, pr, sole, comment, before, editor } => {
                comment_trigger(&action, &comment, false, Some(pr), sole, before.as_deref(), editor.unwrap_or_default())
            }
            Internal::Deployment { deployment_id, .. } => Some(Trigger::Deployment { id: deployment_id }),
        }
    }
}

/// The body of an internal delivery for request `issue`.
pub fn internal_body(
    installation: i64,
    repository_id: i64,
    repository: &str,
    issue: i64,
    trigger: &Internal,
) -> String {
    json!({
        "installation": { "id": installation },
        "repository": { "id": repository_id, "full_name": repository },
        "issue": { "number": issue },
        "trigger": trigger,
    })
    .to_string()
}

/// The trigger an internal delivery carries. Deliveries queued before `trigger` existed (an
/// upgrade with work in the inbox) are read in their old shape.
fn internal_trigger(event: &str, v: &Value) -> Option<Trigger> {
    if let Ok(internal) = serde_json::from_value::<Internal>(v["trigger"].clone()) {
        return internal.trigger();
    }
    match event {
        RECHECK_EVENT => Some(Trigger::Recheck { checks_only: v["checks_only"].as_bool().unwrap_or(false) }),
        DEPLOYMENT_EVENT => v["deployment"]["id"].as_i64().map(|id| Trigger::Deployment { id }),
        _ => {
            let f = if v["forward"].is_object() {
                v["forward"].clone()
            } else {
                json!({ "comment": v["comment"], "sole": true })
            };
            let action = v["action"].as_str().filter(|a| *a != "forwarded").unwrap_or("created");
            let editor = User::of(&f["editor"]);
            let (pr, sole) = (f["pr"].as_i64().unwrap_or(-1), f["sole"].as_bool().unwrap_or(false));
            comment_trigger(action, &f["comment"], false, Some(pr), sole, f["before"].as_str(), editor)
        }
    }
}

/// An internal delivery (a recheck, a comment on a linked PR, a deployment status), in the
/// request's own order.
pub async fn on_internal(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    let Some(t) = target(&ctx, &v) else { return Ok(Handled::ignored()) };
    let Some(trigger) = internal_trigger(&ctx.delivery.event, &v) else { return Ok(Handled::ignored()) };
    evaluate(ctx, t, None, trigger).await
}

const POLICY_PATH: &str = ".github/shipgate.yml";

/// A push to the default branch that touches `.github/shipgate.yml`: re-read it, say whether it
/// is valid on a `shipgate / config` check run, and evaluate the repository's open requests again.
pub async fn on_push(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    let Some((installation, repo_id, repo)) = repo_of(&ctx, &v) else { return Ok(Handled::ignored()) };
    let repo = repo.as_str();
    let default =
        v["repository"]["default_branch"].as_str().or(v["repository"]["master_branch"].as_str()).unwrap_or("main");
    if v["ref"].as_str() != Some(&format!("refs/heads/{default}")) {
        return Ok(Handled::ignored());
    }
    // Every move of the default branch re-reads the policy: a push's commit list can be cut
    // short (GitHub lists at most 20 commits) or the push missed, so the file's blob SHA decides
    // whether it changed, not the list.
    let touched = v["commits"].as_array().into_iter().flatten().any(|c| {
        ["added", "modified", "removed"]
            .iter()
            .any(|k| c[*k].as_array().into_iter().flatten().any(|f| f.as_str() == Some(POLICY_PATH)))
    });
    let after = v["after"].as_str().unwrap_or_default().to_string();
    let mut effects = Vec::new();
    let file = match facts::policy_file(&ctx.github, installation, repo).await {
        Ok(f) => f,
        Err(GhError::DryRun) => return Ok(Handled::ignored()),
        Err(e) => return Err(gh_err(e)),
    };
    let (blob, yaml) = match &file {
        Some((sha, text)) => (sha.clone(), Some(text.clone())),
        None => (String::new(), None),
    };
    let cached = store::policy(&ctx.db, installation, repo_id).await?;
    let changed = cached.as_ref().is_none_or(|(b, _)| *b != blob);
    if !changed && !touched {
        return Ok(Handled::ignored());
    }
    effects.push(Effect::SavePolicy { installation, repository_id: repo_id, blob, yaml: yaml.clone() });
    if changed {
        let valid = yaml.as_deref().map(|y| policy::parse(y).is_ok());
        let detail = json!({ "blob": file.as_ref().map(|f| f.0.clone()), "commit": after, "valid": valid });
        effects.push(repo_audit(installation, repo_id, repo, "policy.changed", &v["sender"], detail));
    }
    let (conclusion, title, summary) = match yaml.as_deref().map(policy::parse) {
        None => ("success", "No .github/shipgate.yml: the built-in policy applies".to_string(), String::new()),
        Some(Ok(p)) => (
            "success",
            format!("{POLICY_PATH} is valid"),
            format!(
                "Environments: {}. Roles: {}.",
                p.environments.keys().cloned().collect::<Vec<_>>().join(", "),
                p.roles.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ),
        Some(Err(errors)) => (
            "failure",
            format!("{POLICY_PATH} is invalid: deploy gates stay closed"),
            errors.iter().map(|e| format!("- {e}")).collect::<Vec<_>>().join("\n"),
        ),
    };
    if !after.is_empty() && after.chars().any(|c| c != '0') {
        effects.push(Effect::Act(Action::UpsertCheckRun {
            repo: repo.to_string(),
            head_sha: after.clone(),
            name: "shipgate / config".into(),
            external_id: format!("config:{after}"),
            status: "completed".into(),
            conclusion: Some(conclusion.into()),
            title,
            summary,
            text: None,
            details_url: None,
        }));
    }
    for (repository_id, repository, issue) in store::open_in_installation(&ctx.db, installation).await? {
        if repository_id == repo_id {
            effects.push(Effect::recheck(installation, repository_id, &repository, issue, false));
        }
    }
    Ok(Handled::ok(effects))
}

/// The reaction to an accepted command, or a reply saying why it was refused.
/// (A comment on linked PR `on_pr` is answered there.)
fn answer(
    replies: &mut Vec<Effect>,
    t: &Target,
    on_pr: Option<i64>,
    comment_id: i64,
    sender: &User,
    accepted: bool,
    reply: Option<String>,
) {
    if accepted {
        replies.push(Effect::Act(Action::AddReaction { repo: t.repo.clone(), comment_id, content: "+1".into() }));
    }
    if let Some(why) = reply {
        let marker = format!("reply-{comment_id}");
        // One reply per comment: a comment with several commands gets every answer in it.
        for r in replies.iter_mut() {
            if let Effect::Act(Action::UpsertComment { marker: m, body, .. }) = r
                && *m == marker
            {
                body.push_str(&format!("\n\n{why}"));
                return;
            }
        }
        replies.push(Effect::Act(Action::UpsertComment {
            repo: t.repo.clone(),
            issue: on_pr.unwrap_or(t.issue),
            marker,
            body: format!("@{} {why}", sender.login),
        }));
    }
}

/// An entry for the audit log about a repository (no request), by the event's sender.
fn repo_audit(installation: i64, repo_id: i64, repo: &str, kind: &str, sender: &Value, detail: Value) -> Effect {
    Effect::Audit(Box::new(AuditEntry {
        installation_id: installation,
        repository_id: Some(repo_id),
        repository: Some(repo.to_string()),
        issue: None,
        kind: kind.into(),
        actor_id: sender["id"].as_i64(),
        actor_login: sender["login"].as_str().map(str::to_string),
        detail,
    }))
}

/// An entry for the audit log about request `t`.
fn audit_entry(t: &Target, kind: &str, actor: Option<&User>, detail: Value) -> Effect {
    Effect::Audit(Box::new(AuditEntry {
        installation_id: t.installation,
        repository_id: Some(t.repo_id),
        repository: Some(t.repo.clone()),
        issue: Some(t.issue),
        kind: kind.into(),
        actor_id: actor.map(|u| u.id),
        actor_login: actor.map(|u| u.login.clone()),
        detail,
    }))
}

/// `/deploy` (deploy mode `deployment`: a GitHub Deployment of the approved commit) and
/// `/rollback` (a deployment of the last commit that succeeded in the environment). Returns
/// (accepted, reply).
#[allow(clippy::too_many_arguments)]
async fn deploy_command(
    ctx: &Ctx,
    t: &Target,
    mode: Option<DeployMode>,
    environment: Option<&str>,
    env_roles: &BTreeSet<&str>,
    holds: &(dyn Fn(&User, &str) -> bool + Sync),
    sender: &User,
    cmd: &Command,
    comment_id: i64,
    eval: &Evaluation,
    active: bool,
    prs: &[PrFacts],
    req: &request::ChangeRequest,
    row: &mut RequestRow,
    effects: &mut Vec<Effect>,
) -> Result<(bool, Option<String>), HandlerError> {
    let name = format!("/{}", cmd.name());
    let refuse = |r: Refusal| Ok((false, Some(messages::refusal_text(&name, &r))));
    let (Some(env), Some(mode)) = (environment, mode) else {
        return refuse(Refusal::NoEnvironment);
    };
    // An approver: a holder of one of the roles the request needs; where it needs none, anyone
    // with write access.
    let approver = if env_roles.is_empty() {
        match facts::permission(&ctx.github, t.installation, &t.repo, &sender.login).await {
            Ok(p) => matches!(p.as_str(), "admin" | "maintain" | "write"),
            Err(GhError::DryRun) => false,
            Err(e) => return Err(gh_err(e)),
        }
    } else {
        env_roles.iter().any(|r| holds(sender, r))
    };
    if !approver {
        return refuse(Refusal::NotAnApprover { roles: env_roles.iter().map(|r| r.to_string()).collect() });
    }
    // The same comment again (a redelivery under a new id): already done, nothing more to do.
    let key_of = |kind: &str| format!("{kind}-{}-{comment_id}", t.issue);
    if row.deploy_key.as_deref().is_some_and(|k| k == key_of("request") || k == key_of("rollback")) {
        return Ok((true, None));
    }
    // A deployment under way blocks another `/deploy` (not `/rollback`: rolling back is what one
    // does when it hangs). One the App asked for and GitHub never reported on blocks it for
    // REQUESTED_BLOCKS_MS only (a parked creation, or no pipeline listening).
    let requested_recently = row.deploy_state.as_deref() == Some("requested")
        && row.deploy_requested_at.is_some_and(|at| ctx.clock.now_ms() - at < REQUESTED_BLOCKS_MS);
    let in_flight =
        requested_recently || matches!(row.deploy_state.as_deref(), Some("queued" | "pending" | "in_progress"));
    if in_flight && matches!(cmd, Command::Deploy) {
        return refuse(Refusal::DeployUnderWay);
    }
    let (sha, key, rollback_of) = match cmd {
        Command::Deploy => {
            if mode != DeployMode::Deployment {
                return refuse(Refusal::NotDeployedByTheApp { environment: env.into(), mode: mode.as_str().into() });
            }
            if !active {
                return refuse(Refusal::DeployClosed);
            }
            if !eval.open {
                return refuse(Refusal::GateClosed { missing: eval.missing() });
            }
            if row.deploy_state.as_deref() == Some("success") {
                return refuse(Refusal::AlreadyDeployed);
            }
            let sha = match prs {
                [one] => one.head_sha.clone(),
                [] => match req.commit.clone().filter(|c| is_full_sha(c)) {
                    Some(c) => c,
                    None => {
                        return refuse(Refusal::NoCommit);
                    }
                },
                _ => {
                    return refuse(Refusal::SeveralPullRequests);
                }
            };
            (sha, key_of("request"), None)
        }
        _ => {
            if mode == DeployMode::None {
                return refuse(Refusal::NoRollbackMode { environment: env.into() });
            }
            let Some(current) = row.deploy_sha.clone().filter(|_| row.deploy_state.is_some()) else {
                return refuse(Refusal::NothingDeployed);
            };
            // Only a commit the App itself deployed or approved there; never one that only a
            // deployment someone made by hand vouches for.
            let found = deploys::last_success(&ctx.db, t.installation, t.repo_id, env, &current).await?;
            let Some(sha) = found else {
                return refuse(Refusal::NoEarlierCommit { environment: env.into() });
            };
            (sha, key_of("rollback"), Some(current))
        }
    };
    effects.push(Effect::Act(Action::CreateDeployment {
        repo: t.repo.clone(),
        key: key.clone(),
        git_ref: sha.clone(),
        environment: env.to_string(),
        description: match &rollback_of {
            Some(_) => format!("Rollback for deployment request #{}", t.issue),
            None => format!("Deployment request #{}", t.issue),
        },
        payload: json!({ "shipgate_request": t.issue, "shipgate_rollback_of": rollback_of, "requested_by": sender.login }),
    }));
    effects.push(audit_entry(
        t,
        if rollback_of.is_some() { "deployment.rollback_requested" } else { "deployment.requested" },
        Some(sender),
        json!({ "sha": sha, "environment": env, "key": key, "rollback_of": rollback_of, "comment_id": comment_id }),
    ));
    row.deploy_key = Some(key);
    row.deploy_sha = Some(sha);
    row.deploy_state = Some("requested".into());
    row.deploy_requested_at = Some(ctx.clock.now_ms());
    row.deployment_id = None;
    Ok((true, None))
}

/// How long a deployment the App asked for, with no status from GitHub yet, blocks another `/deploy`.
const REQUESTED_BLOCKS_MS: i64 = 15 * 60 * 1000;

/// The internal event carrying a deployment's status to its request.
pub const DEPLOYMENT_EVENT: &str = "shipgate_deployment";

/// `deployment_status`: kept, and handed to the request it belongs to (by the payload the App
/// gave the deployment, or by environment and commit); a success also rechecks the requests whose
/// commits it deployed (staging first).
pub async fn on_deployment_status(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    let Some((installation, repo_id, repo)) = repo_of(&ctx, &v) else { return Ok(Handled::ignored()) };
    let (dep, st) = (&v["deployment"], &v["deployment_status"]);
    let (Some(id), Some(sha), Some(state)) = (dep["id"].as_i64(), dep["sha"].as_str(), st["state"].as_str()) else {
        return Err(HandlerError::Permanent("deployment_status without deployment id, sha or state".into()));
    };
    let environment = dep["environment"].as_str().or(st["environment"].as_str()).unwrap_or_default().to_string();
    let now = ctx.clock.now_ms();
    let status_at = st["created_at"].as_str().and_then(parse_rfc3339_ms).unwrap_or(now);
    let created_at = dep["created_at"].as_str().and_then(parse_rfc3339_ms).unwrap_or(status_at);
    // Who posted the status? GitHub Actions, the App itself, or whoever made the deployment. A
    // status anyone else posts (with their own token, on someone else's deployment) says nothing.
    let via = &st["performed_via_github_app"];
    let trusted_status = via["slug"].as_str() == Some("github-actions")
        || ctx.github.own_app_id().await.is_some_and(|id| via["id"].as_i64() == Some(id))
        || st["creator"]["id"].as_i64().is_some_and(|c| Some(c) == dep["creator"]["id"].as_i64());
    if !trusted_status {
        let detail = json!({ "deployment_id": id, "state": state, "sha": sha, "environment": environment,
                             "why": "posted by neither GitHub Actions, the App, nor the deployment's creator" });
        return Ok(Handled::ok(vec![repo_audit(
            installation,
            repo_id,
            &repo,
            "deployment.status_ignored",
            &st["creator"],
            detail,
        )]));
    }
    // Whose deployment is it? Known by the id GitHub gave it: one the App created, or one it
    // approved through its protection rule. A key or a request number in a payload is anyone's to
    // write, and never proof.
    let own = deploys::own_deployment(&ctx.db, installation, repo_id, &repo, id).await?;
    let origin = match &own {
        Some((origin, _)) => origin.clone(),
        None if facts::made_by_actions(dep) || v["workflow_run"]["id"].is_i64() => "actions".to_string(),
        None => "manual".to_string(),
    };
    let owner = own.map(|(_, issue)| issue);
    let mut effects = vec![Effect::RecordDeployment(Box::new(DeploymentRow {
        installation_id: installation,
        repository_id: repo_id,
        deployment_id: id,
        environment: environment.clone(),
        sha: sha.to_string(),
        git_ref: dep["ref"].as_str().map(str::to_string),
        issue: owner,
        state: state.to_string(),
        status_at,
        status_id: st["id"].as_i64().unwrap_or_default(),
        created_at,
        started_at: (state == "in_progress").then_some(status_at),
        finished_at: deploys::is_final(state).then_some(status_at),
        origin,
    }))];
    let covering = store::open_linking(&ctx.db, installation, repo_id, Link::Sha, sha).await?;
    // The request it belongs to; and the requests for that environment that cover its commit,
    // which report it loudly if it happened while their gate was closed.
    let mut targets: Vec<i64> = owner.into_iter().collect();
    if matches!(state, "in_progress" | "success") {
        let in_env = store::open_for_environment(&ctx.db, installation, repo_id, &environment).await?;
        targets.extend(covering.iter().copied().filter(|n| in_env.contains(n) && Some(*n) != owner));
    }
    for issue in &targets {
        effects.push(Effect::ForwardDeployment {
            installation,
            repository_id: repo_id,
            repository: repo.clone(),
            issue: *issue,
            deployment_id: id,
        });
    }
    // A success may be the staging evidence another request waits for.
    if state == "success" {
        for issue in covering.into_iter().filter(|n| !targets.contains(n)) {
            effects.push(Effect::recheck(installation, repo_id, &repo, issue, false));
        }
    }
    Ok(Handled::ok(effects))
}

/// `deployment_protection_rule` (requested): the run is kept until a request answers it. The
/// requests for its environment that cover its commit are evaluated again (in their own order,
/// where the answer is decided); with none, the run gets a status report saying so.
pub async fn on_protection_rule(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    if v["action"].as_str() != Some("requested") {
        return Ok(Handled::ignored());
    }
    let Some((installation, repo_id, repo)) = repo_of(&ctx, &v) else { return Ok(Handled::ignored()) };
    let run_id = v["deployment_callback_url"]
        .as_str()
        .and_then(|u| u.split("/actions/runs/").nth(1))
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| id.parse::<i64>().ok());
    let (Some(run_id), Some(environment), Some(sha)) = (run_id, v["environment"].as_str(), v["sha"].as_str()) else {
        return Err(HandlerError::Permanent(
            "deployment_protection_rule without a callback URL naming the run, an environment or a sha".into(),
        ));
    };
    let mut effects = vec![Effect::SaveRule(Box::new(RuleRow {
        installation_id: installation,
        repository_id: repo_id,
        repository: repo.clone(),
        run_id,
        environment: environment.to_string(),
        sha: sha.to_string(),
        git_ref: v["ref"].as_str().map(str::to_string),
        deployment_id: v["deployment"]["id"].as_i64().unwrap_or_default(),
        state: "pending".into(),
        issue: None,
        report: None,
        received_at: ctx.clock.now_ms(),
    }))];
    let detail = json!({ "run_id": run_id, "environment": environment, "sha": sha, "ref": v["ref"] });
    effects.push(repo_audit(installation, repo_id, &repo, "protection_rule.requested", &v["sender"], detail));
    // The environment's open requests whose commits (linked PR heads, or the commit a request
    // without PRs names) include the run's.
    let in_env = store::open_for_environment(&ctx.db, installation, repo_id, environment).await?;
    let covering: Vec<i64> = store::open_linking(&ctx.db, installation, repo_id, Link::Sha, sha)
        .await?
        .into_iter()
        .filter(|n| in_env.contains(n))
        .collect();
    if covering.is_empty() {
        effects.push(Effect::Act(Action::ReviewProtectionRule {
            repo: repo.clone(),
            run_id,
            environment_name: environment.to_string(),
            state: None,
            comment: messages::rule_uncovered(environment, sha),
        }));
    }
    for issue in covering {
        effects.push(Effect::recheck(installation, repo_id, &repo, issue, false));
    }
    Ok(Handled::ok(effects))
}

fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_triggers_are_data_and_old_queued_bodies_still_read() {
        let pr = Internal::PrComment {
            action: "edited".into(),
            pr: 12,
            sole: true,
            comment: json!({ "id": 7, "body": "LGTM", "user": { "id": 201, "login": "bob" } }),
            before: Some("/approve".into()),
            editor: Some(User { id: 501, login: "eve".into() }),
        };
        let body: Value = serde_json::from_str(&internal_body(1, 2, "o/r", 5, &pr)).expect("json");
        assert_eq!(body["trigger"]["kind"], "pr_comment");
        assert_eq!(serde_json::from_value::<Internal>(body["trigger"].clone()).expect("round trip"), pr);
        match internal_trigger(FORWARDED_COMMENT_EVENT, &body) {
            Some(Trigger::CommentEdited { id: 7, editor, before: Some(b), on_pr: Some(12), .. }) => {
                assert_eq!((editor.login.as_str(), b.as_str()), ("eve", "/approve"))
            }
            _ => panic!("not the edit"),
        }
        let recheck = Internal::Recheck { cause: "d-1".into(), checks_only: true };
        let body: Value = serde_json::from_str(&internal_body(1, 2, "o/r", 5, &recheck)).expect("json");
        assert!(matches!(internal_trigger(RECHECK_EVENT, &body), Some(Trigger::Recheck { checks_only: true })));
        // Bodies queued by the previous version.
        let old = json!({ "action": "status", "deployment": { "id": 44, "cause": "d-2" }, "issue": { "number": 5 } });
        assert!(matches!(internal_trigger(DEPLOYMENT_EVENT, &old), Some(Trigger::Deployment { id: 44 })));
        let old = json!({ "action": "recheck", "cause": "d-3", "issue": { "number": 5 } });
        assert!(matches!(internal_trigger(RECHECK_EVENT, &old), Some(Trigger::Recheck { checks_only: false })));
        let old = json!({ "action": "forwarded", "comment": { "id": 8, "body": "/approve", "user": { "id": 101, "login": "alice" } } });
        match internal_trigger(FORWARDED_COMMENT_EVENT, &old) {
            Some(Trigger::Comment { id: 8, sole: true, body, .. }) => assert_eq!(body, "/approve"),
            _ => panic!("not the command"),
        }
    }
}
