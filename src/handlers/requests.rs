//! DEPLOYMENT_REQUEST issues: read the request, apply commands, evaluate the gate, and show the
//! result (sticky comment, check runs on the linked PR heads, state labels). Everything about one
//! request runs under its issue's subject, so one request is never evaluated twice at once;
//! events about PRs and checks ask for a recheck of the requests they touch.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::repo::{gh_err, load_policy, load_policy_read};
use super::{Ctx, Effect, Handled, HandlerError};
use crate::domain::breakglass;
use crate::domain::commands;
use crate::domain::flow::signal::{self, Signal, Significance};
use crate::domain::flow::{
    self, ApprovalRecord, Decision, DeploymentFact, Facts, FactsWanted, MoreWanted, Out, PrReads, Prev, WaitingRun,
    command_names,
};
use crate::domain::gate::{self, PrFacts, User};
use crate::domain::ids::{InstallationId, IssueNumber, RepoId, UserId};
use crate::domain::messages;
use crate::domain::policy::{self, Permission};
use crate::domain::state::{ApprovalState, DeployState};
use crate::github::actions::Action;
use crate::github::client::{GhError, parse_rfc3339_ms};
use crate::github::events::{
    Account, Comment, DeploymentStatusEvent, InstallationRef, Issue, IssueCommentEvent, IssuesEvent,
    ProtectionRuleEvent, PushEvent, RelatedEvent, RepositoryRef, Subject,
};
use crate::github::facts;
use crate::store::audit::AuditEntry;
use crate::store::deploys::{self, DeploymentRow, RuleRow};
use crate::store::gate_waits;
use crate::store::incidents::{Change, IncidentRow};
use crate::store::requests::{self as store, ApprovalRow, Link};

/// The internal event asking for a request to be evaluated again.
pub const RECHECK_EVENT: &str = "shipgate_recheck";

pub use crate::domain::flow::{STATE_LABELS, Target, Trigger};

/// Evaluates one request: reads it as stored and the issue as it is, gathers the facts
/// `flow::plan` and `flow::plan_more` ask for, and applies what `flow::decide` decides. Nothing is
/// decided here. `issue` is the issue payload when the event carried it.
pub async fn evaluate(
    ctx: Arc<Ctx>,
    t: Target,
    issue: Option<Issue>,
    trigger: Trigger,
) -> Result<Handled, HandlerError> {
    let now = ctx.clock.now_ms();
    let mut effects = Vec::new();
    let (policy, config_errors, policy_unread) =
        load_policy_read(&ctx, t.installation.get(), t.repo_id.get(), &t.repo, &mut effects).await?;
    // The approvals are read only once the issue turns out to be a request (below).
    let mut prev = Prev::new(store::get(&ctx.db, t.installation.get(), t.repo_id.get(), t.issue.get()).await?, vec![]);
    let issue = match issue.filter(|i| flow::snapshot_is_current(&prev, i.updated_at())) {
        Some(i) => i,
        None => match facts::issue(&ctx.github, t.installation.get(), &t.repo, t.issue.get()).await {
            Ok(Some(i)) => match Issue::read(i) {
                Some(i) => i,
                None => {
                    return Err(HandlerError::Permanent(format!(
                        "issue #{} as GitHub returned it is unreadable",
                        t.issue.get()
                    )));
                }
            },
            Ok(None) => return Ok(Handled::ignored()),
            Err(GhError::DryRun) => return Ok(Handled::ignored()),
            Err(e) => return Err(gh_err(e)),
        },
    };
    if issue.is_pull_request() {
        return Ok(Handled::ignored()); // a PR, not an issue
    }
    let issue = issue.snapshot();
    if !flow::concerns(&prev, &policy, &issue) {
        return Ok(Handled::ignored());
    }
    prev.approvals = store::approvals(&ctx.db, t.installation.get(), t.repo_id.get(), t.issue.get())
        .await?
        .into_iter()
        .map(approval_record)
        .collect();
    let wanted = flow::plan(&t, &prev, &trigger, &policy, &config_errors, &issue);
    let dry_run = ctx.github.dry_run();
    let mut f = Facts { policy, config_errors, issue, dry_run, policy_unread, ..Facts::default() };
    gather_prs(&ctx, &t, &prev, &wanted, &mut f).await?;
    if let Some(id) = wanted.deployment {
        f.deployment =
            deploys::get(&ctx.db, t.installation.get(), t.repo_id.get(), id).await?.and_then(deployment_fact);
    }
    if let Some(id) = wanted.current_deployment {
        f.current_deployment =
            deploys::get(&ctx.db, t.installation.get(), t.repo_id.get(), id).await?.and_then(deployment_fact);
    }
    if let Some(env) = &wanted.waiting_runs {
        f.waiting_runs = deploys::pending_rules(&ctx.db, t.installation.get(), t.repo_id.get(), env)
            .await?
            .into_iter()
            .map(|r| WaitingRun {
                run_id: r.run_id,
                environment: r.environment,
                sha: r.sha,
                workflow: false,
                git_ref: r.git_ref,
                run_attempt: 0,
                candidate: None,
            })
            .collect();
        // Jobs at /gate/wait: the environment matched as the policy matches names (the same on
        // every database).
        let waits = gate_waits::pending(&ctx.db, t.installation.get(), t.repo_id.get()).await?;
        f.waiting_runs.extend(waits.into_iter().filter(|w| policy::eq_fold(&w.environment, env)).map(|w| WaitingRun {
            run_id: w.run_id,
            environment: w.environment,
            sha: w.sha,
            workflow: true,
            git_ref: Some(w.git_ref),
            run_attempt: w.run_attempt,
            candidate: w.issue,
        }));
    }
    if prev.row.is_some() {
        f.approved_runs = deploys::approved_runs(&ctx.db, t.installation.get(), t.repo_id.get(), t.issue.get()).await?;
    }
    if let Some(branch) = &wanted.ci_red {
        f.ci_red = super::repo::red_on(&ctx.db, t.repo_id.get(), branch.as_deref()).await?;
    }
    let more = flow::plan_more(&t, &prev, &trigger, &f);
    gather_more(&ctx, &t, &more, now, &mut f).await?;
    let decision = flow::decide(&t, &prev, &trigger, &f, now);
    // A break-glass's review escalates to `ci.escalate_to`: whom to mention, read now.
    let mut mentions = Vec::new();
    for out in &decision.effects {
        if let Out::OpenReview { escalate_to, .. } = out {
            mentions =
                super::repo::role_mentions(&ctx, t.installation.get(), &t.repo, &f.policy, escalate_to.as_deref())
                    .await;
        }
    }
    Ok(apply(&t, decision, effects, &mentions, now))
}

/// The linked PRs, as `plan` says: reused, with their checks read again, or read afresh.
async fn gather_prs(
    ctx: &Ctx,
    t: &Target,
    prev: &Prev,
    wanted: &FactsWanted,
    f: &mut Facts,
) -> Result<(), HandlerError> {
    let remembered = prev.remembered().clone();
    match wanted.prs {
        PrReads::Reuse => {
            f.prs = remembered.prs;
            f.missing_prs = remembered.missing_prs;
            f.review_approved = remembered.review_approved;
        }
        PrReads::ChecksOnly => {
            f.review_approved = remembered.review_approved;
            for p in remembered.prs {
                let checks =
                    facts::checks(&ctx.github, t.installation.get(), &t.repo, &p.head_sha).await.map_err(gh_err)?;
                f.prs.push(PrFacts { checks, ..p });
            }
        }
        PrReads::Fetch => {
            f.review_approved = !wanted.numbers.is_empty();
            for n in &wanted.numbers {
                match facts::pull_request(&ctx.github, t.installation.get(), &t.repo, *n).await {
                    Ok(Some(pr)) => {
                        let before = remembered.prs.iter().find(|p| p.number == *n && p.head_sha == pr.head_sha);
                        let files_truncated = pr.changed_files.is_some_and(|n| n > facts::MAX_LISTED_FILES);
                        let files = match (wanted.files, before.and_then(|b| b.files.clone())) {
                            (false, _) => None,
                            (true, Some(files)) => Some(files),
                            (true, None) => Some(
                                facts::changed_files(&ctx.github, t.installation.get(), &t.repo, *n)
                                    .await
                                    .map_err(gh_err)?,
                            ),
                        };
                        let checks = facts::checks(&ctx.github, t.installation.get(), &t.repo, &pr.head_sha)
                            .await
                            .map_err(gh_err)?;
                        f.review_approved &= facts::review_approved(&ctx.github, t.installation.get(), &t.repo, *n)
                            .await
                            .map_err(gh_err)?;
                        f.prs.push(PrFacts {
                            number: *n,
                            pushers: before.and_then(|b| b.pushers.clone()),
                            first_commit_at: before.and_then(|b| b.first_commit_at),
                            head_sha: pr.head_sha,
                            author: pr.author,
                            state: pr.state,
                            files,
                            checks,
                            files_truncated,
                            merge_commit: pr.merge_commit,
                            merged_at: pr.merged_at,
                            base_ref: pr.base_ref,
                            default_branch: pr.default_branch,
                        });
                    }
                    Ok(None) => f.missing_prs.push(*n),
                    Err(GhError::DryRun) => f.review_approved = false,
                    Err(e) => return Err(gh_err(e)),
                }
            }
        }
    }
    Ok(())
}

/// The second round: role holders (pinned logins, team members, permissions), pushers, staging
/// evidence and last good deployments, as `plan_more` says.
async fn gather_more(ctx: &Ctx, t: &Target, more: &MoreWanted, now: i64, f: &mut Facts) -> Result<(), HandlerError> {
    // Every login the needed roles name is resolved and pinned the first time a request needs
    // it, whoever comments: a login renamed and registered again later fills no role.
    f.pinned = store::pinned_logins(&ctx.db, t.installation.get(), &more.logins)
        .await?
        .into_iter()
        .map(|(login, id)| (login, UserId(id)))
        .collect();
    let unpinned: Vec<&String> = more.logins.iter().filter(|l| !f.pinned.contains_key(*l)).collect();
    for login in unpinned {
        match facts::user_id(&ctx.github, t.installation.get(), login).await {
            Ok(Some(id)) => {
                f.new_pins.push((login.clone(), UserId(id)));
                f.pinned.insert(login.clone(), UserId(id));
            }
            Ok(None) | Err(GhError::DryRun) => {}
            Err(e) => return Err(gh_err(e)),
        }
    }
    for team in &more.teams {
        match ctx.teams.members(&ctx.github, t.installation.get(), &team.org, &team.slug, now).await {
            Ok(members) => {
                f.team_members.insert(format!("{}/{}", team.org, team.slug), members.into_iter().map(UserId).collect());
            }
            Err(GhError::DryRun) => {}
            Err(e) => return Err(gh_err(e)),
        }
    }
    for user in &more.permissions {
        let p = match facts::permission(&ctx.github, t.installation.get(), &t.repo, &user.login).await {
            Ok(p) => Permission::parse(&p),
            // Dry-run reads nothing: never assume access.
            Err(GhError::DryRun) => None,
            Err(e) => return Err(gh_err(e)),
        };
        f.permissions.insert(user.id, p);
    }
    if more.pushers {
        for p in f.prs.iter_mut() {
            if p.pushers.is_none() {
                match facts::pushers(&ctx.github, t.installation.get(), &t.repo, p.number).await {
                    Ok((ids, first)) => {
                        p.pushers = Some(ids.into_iter().map(UserId).collect());
                        p.first_commit_at = first;
                    }
                    Err(GhError::DryRun) => {}
                    Err(e) => return Err(gh_err(e)),
                }
            }
            let recorded = store::pushers(&ctx.db, t.installation.get(), t.repo_id.get(), p.number).await?;
            f.recorded_pushers.insert(p.number, recorded.into_iter().map(UserId).collect());
        }
    }
    if let Some(staging) = &more.staging {
        let mut all = true;
        // A trusted staging deployment of the approved heads, or of the merge commit that
        // contains them.
        let merged = flow::merge_commit(&f.prs, more.branch.as_deref()).map(str::to_string);
        let mut commits: Vec<&str> = f.prs.iter().map(|p| p.head_sha.as_str()).collect();
        if let Some(m) = merged.as_deref() {
            let app_id = ctx.github.own_app_id().await;
            if deploys::succeeded(&ctx.db, t.installation.get(), t.repo_id.get(), staging, m).await?
                || facts::deployed_ok(&ctx.github, t.installation.get(), &t.repo, m, staging, app_id)
                    .await
                    .or_else(|e| if matches!(e, GhError::DryRun) { Ok(false) } else { Err(e) })
                    .map_err(gh_err)?
            {
                commits.clear();
            }
        }
        for sha in commits {
            if deploys::succeeded(&ctx.db, t.installation.get(), t.repo_id.get(), staging, sha).await? {
                continue; // seen in a deployment_status event
            }
            let app_id = ctx.github.own_app_id().await;
            match facts::deployed_ok(&ctx.github, t.installation.get(), &t.repo, sha, staging, app_id).await {
                Ok(ok) => all &= ok,
                Err(GhError::DryRun) => all = false,
                Err(e) => return Err(gh_err(e)),
            }
        }
        f.staging_ok = Some(all);
    }
    for (env, sha) in &more.last_good {
        let found = deploys::last_success(&ctx.db, t.installation.get(), t.repo_id.get(), env, sha).await?;
        if let Some(good) = &found {
            let run = deploys::run_of_success(&ctx.db, t.installation.get(), t.repo_id.get(), env, good).await?;
            f.last_good_run.insert(good.clone(), run);
        }
        f.last_good.insert((env.clone(), sha.clone()), found);
    }
    Ok(())
}

/// The effects of a decision, for the completion transaction (in the decision's order; the
/// request's row and links, then the replies).
fn apply(t: &Target, d: Decision, mut effects: Vec<Effect>, mentions: &[String], now: i64) -> Handled {
    for out in d.effects {
        let effect = match out {
            // The review issue, then its row (kept as an incident of kind `review`).
            Out::OpenReview { marker, title, body, assignee, due_at, escalate_to: _, detail } => {
                effects.push(Effect::Act(Action::CreateIssue {
                    repo: t.repo.clone(),
                    marker: marker.clone(),
                    title: title.clone(),
                    body,
                    labels: vec![breakglass::REVIEW_LABEL.into()],
                    assignees: vec![assignee],
                }));
                review_row(t, marker, title, due_at, mentions, detail, now)
            }
            Out::Act(action) => Effect::Act(action),
            Out::Audit { kind, actor, detail } => audit_entry(t, &kind, actor.as_ref(), detail),
            Out::SaveApproval(a) => Effect::SaveApproval(a),
            Out::Timer { due_at } => Effect::SetTimer {
                installation: t.installation.get(),
                repository_id: t.repo_id.get(),
                repository: t.repo.clone(),
                issue: t.issue.get(),
                due_at,
            },
            Out::PinLogin { login, user_id } => {
                Effect::PinLogin { installation: t.installation.get(), login, user_id: user_id.get() }
            }
            Out::AnswerRule { run_id, run_attempt, environment, state, workflow: true, action } => Effect::AnswerWait {
                installation: t.installation.get(),
                repository_id: t.repo_id.get(),
                run_id,
                run_attempt,
                environment,
                state,
                issue: t.issue.get(),
                text: match action {
                    Action::ReviewProtectionRule { comment, .. } => comment,
                    _ => String::new(),
                },
            },
            Out::ReportRule { run_id, run_attempt, environment, workflow: true, missing, action, .. } => {
                Effect::ReportWait {
                    installation: t.installation.get(),
                    repository_id: t.repo_id.get(),
                    run_id,
                    run_attempt,
                    environment,
                    issue: Some(t.issue.get()),
                    missing,
                    text: match action {
                        Action::ReviewProtectionRule { comment, .. } => comment,
                        _ => String::new(),
                    },
                }
            }
            Out::AnswerRule { run_id, environment, state, action, .. } => Effect::AnswerRule {
                installation: t.installation.get(),
                repository_id: t.repo_id.get(),
                run_id,
                environment,
                state,
                issue: t.issue.get(),
                action,
            },
            Out::ReportRule { run_id, environment, digest, action, .. } => Effect::ReportRule {
                installation: t.installation.get(),
                repository_id: t.repo_id.get(),
                run_id,
                environment,
                digest,
                action,
            },
        };
        effects.push(effect);
    }
    effects.push(Effect::SaveRequest(Box::new(d.row)));
    effects.push(Effect::SaveLinks {
        installation: t.installation.get(),
        repository_id: t.repo_id.get(),
        issue: t.issue.get(),
        links: d.links,
    });
    effects.extend(d.replies.into_iter().map(Effect::Act));
    Handled::ok(effects)
}

/// The follow-up review of a break-glass, kept as an incident of kind `review`: it escalates when
/// still open at `due_at`, and closes when its issue is closed.
fn review_row(
    t: &Target,
    marker: String,
    title: String,
    due_at: i64,
    mentions: &[String],
    detail: Value,
    now: i64,
) -> Effect {
    Effect::Ci(Box::new(Change::Incident(IncidentRow {
        id: IncidentRow::id_for(t.repo_id.get(), &marker),
        installation_id: t.installation.get(),
        repository_id: t.repo_id.get(),
        repository: t.repo.clone(),
        kind: breakglass::REVIEW_KIND.into(),
        subject: format!("request:{}", t.issue.get()),
        seq: 1,
        marker,
        title,
        branch: String::new(),
        on_default: 0,
        state: "open".into(),
        opened_at: now,
        first_failure_at: now,
        last_run_number: 0,
        last_attempt: 0,
        failures: 0,
        deadline: due_at,
        mentions: mentions.join(" "),
        escalated_at: None,
        recovered_at: None,
        ttr_ms: None,
        flaky: 0,
        details: detail.to_string(),
        updated_at: now,
    })))
}

/// A stored approval, typed.
fn approval_record(a: ApprovalRow) -> ApprovalRecord {
    ApprovalRecord {
        comment_id: a.comment_id,
        user: User { id: UserId(a.user_id), login: a.login },
        roles: a.roles,
        environment: a.environment,
        head_shas: a.head_shas.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        revision: a.revision,
        state: ApprovalState::parse(&a.state),
        note: a.note,
        created_at: a.created_at,
    }
}

/// A recorded deployment, typed (one in a state this version does not know is no fact).
fn deployment_fact(d: DeploymentRow) -> Option<DeploymentFact> {
    Some(DeploymentFact {
        state: DeployState::parse(&d.state)?,
        deployment_id: d.deployment_id,
        issue: d.issue,
        sha: d.sha,
        environment: d.environment,
        origin: d.origin,
        created_at: d.created_at,
        started_at: d.started_at,
        finished_at: d.finished_at,
        log_url: d.log_url,
    })
}

/// The repository and issue of an event payload.
pub fn target(ctx: &Ctx, v: &Value) -> Option<Target> {
    Some(Target {
        installation: InstallationId(ctx.delivery.installation_id.or_else(|| v["installation"]["id"].as_i64())?),
        repo_id: RepoId(v["repository"]["id"].as_i64()?),
        repo: v["repository"]["full_name"].as_str()?.to_string(),
        issue: IssueNumber(v["issue"]["number"].as_i64()?),
    })
}

/// The request an event is about, from its repository, installation and issue number.
fn target_of(ctx: &Ctx, repo: &RepositoryRef, installation: Option<&InstallationRef>, issue: i64) -> Option<Target> {
    Some(Target {
        installation: InstallationId(ctx.delivery.installation_id.or(installation.map(|i| i.id))?),
        repo_id: RepoId(repo.id),
        repo: repo.full_name.clone(),
        issue: IssueNumber(issue),
    })
}

/// Only the action: an `issues` action the gate ignores is never parsed further (nor refused).
#[derive(Deserialize)]
struct ActionOnly {
    #[serde(default)]
    action: String,
}

pub async fn on_issue(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let a: ActionOnly = ctx.payload()?;
    if !matches!(a.action.as_str(), "opened" | "edited" | "labeled" | "unlabeled" | "closed" | "reopened") {
        return Ok(Handled::ignored());
    }
    let e: IssuesEvent = ctx.payload()?;
    let Some(t) = target_of(&ctx, &e.repository, e.installation.as_ref(), e.issue.number) else {
        return Ok(Handled::ignored());
    };
    if !matches!(e.action.as_str(), "opened" | "edited" | "labeled" | "unlabeled" | "closed" | "reopened") {
        return Ok(Handled::ignored());
    }
    if matches!(e.action.as_str(), "closed" | "reopened")
        && let Some(handled) = review_issue(&ctx, &t, &e, &e.action).await?
    {
        return Ok(handled);
    }
    evaluate(ctx, t, Some(e.issue), Trigger::Issue { action: e.action }).await
}

/// A break-glass's follow-up review closed (done: it is not escalated) or reopened. Only the
/// issue the App created for that review counts (its marker maps to this very issue number): a
/// marker copied into another issue closes nothing.
async fn review_issue(ctx: &Ctx, t: &Target, e: &IssuesEvent, action: &str) -> Result<Option<Handled>, HandlerError> {
    let issue = &e.issue;
    if !issue.labels.iter().any(|l| l.name == breakglass::REVIEW_LABEL) {
        return Ok(None);
    }
    let body = issue.body.as_deref().unwrap_or_default();
    let Some(marker) = body
        .split("<!-- shipgate:")
        .skip(1)
        .filter_map(|rest| rest.split_once(" -->").map(|(m, _)| m))
        .find(|m| m.starts_with("breakglass-review-"))
    else {
        return Ok(None);
    };
    let key = format!("{}:{marker}", t.repo);
    let created = crate::store::objects::get(&ctx.db, t.installation.get(), "issue", &key).await?;
    if created != Some(t.issue.get()) {
        return Ok(None);
    }
    let Some(mut row) = crate::store::incidents::get(&ctx.db, t.installation.get(), t.repo_id.get(), marker).await?
    else {
        return Ok(None);
    };
    let now = ctx.clock.now_ms();
    let closing = action == "closed";
    // Closed as not planned (or as a duplicate): the review was not done. It stays due, and is
    // escalated when overdue; the issue says so.
    if closing && matches!(issue.state_reason.as_deref(), Some("not_planned" | "duplicate")) {
        let detail = json!({ "marker": row.marker, "issue": t.issue.get(), "request": row.subject,
                             "state_reason": issue.state_reason });
        return Ok(Some(Handled::ok(vec![
            Effect::Act(Action::UpsertComment {
                repo: t.repo.clone(),
                issue: t.issue.get(),
                marker: "review-not-done".into(),
                body: breakglass::not_done_comment(row.deadline),
            }),
            repo_audit(
                t.installation.get(),
                t.repo_id.get(),
                &t.repo,
                "breakglass.review_dismissed",
                e.sender.as_ref(),
                detail,
            ),
        ])));
    }
    if (row.state == "closed") == closing {
        return Ok(Some(Handled::ignored()));
    }
    row.state = if closing { "closed" } else { "open" }.into();
    row.recovered_at = closing.then_some(now);
    row.ttr_ms = closing.then_some(now - row.opened_at);
    let detail = json!({ "marker": row.marker, "issue": t.issue.get(), "request": row.subject, "state": row.state });
    let kind = if closing { "breakglass.review_done" } else { "breakglass.review_reopened" };
    let mut effects = Vec::new();
    // An escalated review, done: its escalation comment no longer says it is overdue.
    if let Some(escalated_at) = row.escalated_at.filter(|_| closing) {
        effects.push(Effect::Act(Action::UpsertComment {
            repo: t.repo.clone(),
            issue: t.issue.get(),
            marker: crate::domain::ci::ESCALATION_MARKER.into(),
            body: crate::domain::ci::escalation_resolved(&row.title, escalated_at, now),
        }));
    }
    effects.push(Effect::Ci(Box::new(Change::Incident(row))));
    effects.push(repo_audit(t.installation.get(), t.repo_id.get(), &t.repo, kind, e.sender.as_ref(), detail));
    Ok(Some(Handled::ok(effects)))
}

pub async fn on_comment(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let e: IssueCommentEvent = ctx.payload()?;
    let Some(t) = target_of(&ctx, &e.repository, e.installation.as_ref(), e.issue.number) else {
        return Ok(Handled::ignored());
    };
    let bot = e.comment.user.is_bot() || e.sender.kind.as_deref() == Some("Bot");
    let on_pr = e.issue.is_pull_request().then_some(t.issue.get());
    let editor = e.sender.user();
    // An edit of this App's own comment (verified by the App's id), by a person.
    let own = ctx.github.own_app_id().await;
    let by_app = e.comment.user.is_bot()
        && own.is_some_and(|id| e.comment.performed_via_github_app.as_ref().and_then(|a| a.id) == Some(id))
        && !e.sender.is_bot();
    let Some(trigger) = comment_trigger(&e.action, &e.comment, bot, on_pr, true, e.before(), editor.clone(), by_app)
    else {
        return Ok(Handled::ignored());
    };
    if let Some(pr) = on_pr {
        return on_pr_comment(&ctx, &t, pr, &e.comment, &editor, trigger).await;
    }
    if store::get(&ctx.db, t.installation.get(), t.repo_id.get(), t.issue.get()).await?.is_none()
        && !matches!(trigger, Trigger::Comment { .. })
    {
        return Ok(Handled::ignored());
    }
    evaluate(ctx, t, Some(e.issue), trigger).await
}

/// The trigger of an `issue_comment` action: new comments carry commands (never a bot's), edits
/// and deletions can only take an approval back.
#[allow(clippy::too_many_arguments)]
fn comment_trigger(
    action: &str,
    c: &Comment,
    bot: bool,
    on_pr: Option<i64>,
    sole: bool,
    before: Option<&str>,
    editor: User,
    by_app: bool,
) -> Option<Trigger> {
    let (id, user) = (c.id, c.user.user());
    let body = c.body.clone().unwrap_or_default();
    match action {
        "created" if bot => None,
        "created" => Some(Trigger::Comment { id, user, bot, body, created_at: c.created_at(), on_pr, sole }),
        "edited" => Some(Trigger::CommentEdited {
            id,
            author: user,
            editor,
            body,
            before: before.map(str::to_string),
            on_pr,
            by_app,
        }),
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
    c: &Comment,
    editor: &User,
    trigger: Trigger,
) -> Result<Handled, HandlerError> {
    let c = serde_json::to_value(c).unwrap_or_default();
    let forward = |issue: i64, action: &str, sole: bool, before: Option<&str>| Effect::ForwardComment {
        installation: t.installation.get(),
        repository_id: t.repo_id.get(),
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
            let linking =
                store::open_linking(&ctx.db, t.installation.get(), t.repo_id.get(), Link::Pr, &pr.to_string()).await?;
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
                reply(&mut effects, t, pr, *id, user, messages::which_request(&linking, &strangers));
            }
            effects.extend(to.into_iter().map(|issue| forward(issue, "created", sole, None)));
        }
        Trigger::CommentEdited { id, editor, body, before, .. } => {
            // To the requests it approved, and those that link the PR (which remember that it
            // was edited, should its creation be delivered later).
            let linking =
                store::open_linking(&ctx.db, t.installation.get(), t.repo_id.get(), Link::Pr, &pr.to_string()).await?;
            for issue in affected(ctx, t, *id, &linking).await? {
                effects.push(forward(issue, "edited", false, before.as_deref()));
            }
            let was: Vec<String> = before.as_deref().map(command_names).unwrap_or_default();
            if command_names(body).into_iter().any(|n| !was.contains(&n)) && !linking.is_empty() {
                reply(&mut effects, t, pr, *id, editor, messages::edited_command());
            }
        }
        Trigger::CommentDeleted { id } => {
            let linking =
                store::open_linking(&ctx.db, t.installation.get(), t.repo_id.get(), Link::Pr, &pr.to_string()).await?;
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
        store::approved_by_comment(&ctx.db, t.installation.get(), t.repo_id.get(), id).await?.into_iter().collect();
    out.extend(linking.iter().copied());
    Ok(out)
}

/// The internal event carrying a command from a linked PR to its request.
pub const FORWARDED_COMMENT_EVENT: &str = "shipgate_pr_command";

/// Events about PRs, checks and teams: ask the requests they touch to be evaluated again.
pub async fn on_related(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: RelatedEvent = ctx.payload()?;
    let Some(installation) = ctx.delivery.installation_id.or(v.installation.as_ref().map(|i| i.id)) else {
        return Ok(Handled::ignored());
    };
    let event = ctx.delivery.event.as_str();
    let action = v.action.as_deref().unwrap_or_default();
    let mut targets: Vec<(i64, String, i64)> = Vec::new();
    if matches!(event, "membership" | "team") {
        ctx.teams.forget(installation);
        targets = store::open_in_installation(&ctx.db, installation).await?;
    } else if let Some(repository) = &v.repository {
        let (repo_id, repo) = (repository.id, repository.full_name.as_str());
        let sha = |s: Option<&Subject>| (Link::Sha, s.and_then(|s| s.head_sha.clone()).unwrap_or_else(|| "-".into()));
        let pr = |n: Option<i64>| (Link::Pr, n.unwrap_or(-1).to_string());
        let needles: Vec<(Link, String)> = match event {
            "pull_request" if matches!(action, "synchronize" | "closed" | "reopened" | "edited") => {
                vec![pr(v.pr_number())]
            }
            "check_run" if action == "completed" => vec![sha(v.check_run.as_ref())],
            "check_suite" if action == "completed" => vec![sha(v.check_suite.as_ref())],
            "workflow_run" if action == "completed" => vec![sha(v.workflow_run.as_ref())],
            "status" => vec![(Link::Sha, v.sha.clone().unwrap_or_else(|| "-".into()))],
            "pull_request_review" => vec![pr(v.pr_number())],
            _ => vec![],
        };
        // The App's own check runs do not change any gate.
        if event == "check_run" && v.check_run.as_ref().and_then(|c| c.name.as_deref()).is_some_and(gate::is_own_check)
        {
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
        && let (Some(repository), Some(pr)) = (&v.repository, v.pr_number())
        && v.sender.id != 0
    {
        effects.push(Effect::RecordPusher { installation, repository_id: repository.id, pr, user_id: v.sender.id });
    }
    if targets.is_empty() && effects.is_empty() {
        return Ok(Handled::ignored());
    }
    let checks_only = matches!(event, "check_run" | "check_suite" | "status" | "workflow_run");
    let signal = check_signal(event, &v);
    effects.extend(targets.into_iter().map(|(repository_id, repository, issue)| Effect::Recheck {
        installation,
        repository_id,
        repository,
        issue,
        checks_only,
        signal: signal.clone(),
    }));
    Ok(Handled::ok(effects))
}

/// What a check event says of a commit's checks, to be folded into the requests it touches
/// (None: not a check event, or one too thin to fold in, which is evaluated as it comes).
fn check_signal(event: &str, v: &RelatedEvent) -> Option<Signal> {
    let head = |s: &Option<Subject>| s.as_ref().and_then(|s| s.head_sha.clone()).filter(|h| !h.is_empty());
    match event {
        "check_run" => {
            let run = v.check_run.as_ref()?;
            Some(Signal::CheckRun {
                sha: head(&v.check_run)?,
                name: run.name.clone()?,
                conclusion: run.conclusion.clone(),
                run_id: facts::actions_run_id(run.details_url.as_deref(), run.app.slug.as_deref()),
            })
        }
        "status" => Some(Signal::Status {
            sha: v.sha.clone().filter(|s| !s.is_empty())?,
            context: v.context.clone()?,
            state: v.state.clone()?,
        }),
        "check_suite" => Some(Signal::Suite {
            sha: head(&v.check_suite)?,
            conclusion: v.check_suite.as_ref().and_then(|s| s.conclusion.clone()),
        }),
        "workflow_run" => Some(Signal::Suite {
            sha: head(&v.workflow_run)?,
            conclusion: v.workflow_run.as_ref().and_then(|s| s.conclusion.clone()),
        }),
        _ => None,
    }
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
        /// The check event that caused it: folded in, and evaluated with the rest of its burst.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<Signal>,
        /// The coalesced evaluation of a burst (made by the timer): nothing to do when the
        /// request was read afresh since.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        coalesced: bool,
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
    /// A notification of `event` about the request was really sent to `channel` (the relay asks,
    /// in the transaction that records the send).
    Notified { event: String, channel: String },
}

impl Internal {
    /// The inbox event name it is delivered under (refused on `POST /webhook`).
    pub fn event(&self) -> &'static str {
        match self {
            Internal::Recheck { .. } => RECHECK_EVENT,
            Internal::PrComment { .. } => FORWARDED_COMMENT_EVENT,
            Internal::Deployment { .. } => DEPLOYMENT_EVENT,
            Internal::Notified { .. } => NOTIFIED_EVENT,
        }
    }

    /// The trigger of the evaluation it asks for.
    fn trigger(self) -> Option<Trigger> {
        match self {
            Internal::Recheck { checks_only, .. } => Some(Trigger::Recheck { checks_only }),
            Internal::PrComment { action, pr, sole, comment, before, editor } => {
                let comment: Comment = serde_json::from_value(comment).ok()?;
                comment_trigger(
                    &action,
                    &comment,
                    false,
                    Some(pr),
                    sole,
                    before.as_deref(),
                    editor.unwrap_or_default(),
                    false,
                )
            }
            Internal::Deployment { deployment_id, .. } => Some(Trigger::Deployment { id: deployment_id }),
            Internal::Notified { event, channel } => Some(Trigger::Notified { event, channel }),
        }
    }
}

/// The internal event saying a notification about a request was sent.
pub const NOTIFIED_EVENT: &str = "shipgate_notified";

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
            let comment: Comment = serde_json::from_value(f["comment"].clone()).ok()?;
            comment_trigger(action, &comment, false, Some(pr), sole, f["before"].as_str(), editor, false)
        }
    }
}

/// An internal delivery (a recheck, a comment on a linked PR, a deployment status), in the
/// request's own order.
pub async fn on_internal(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    let Some(t) = target(&ctx, &v) else { return Ok(Handled::ignored()) };
    match serde_json::from_value::<Internal>(v["trigger"].clone()) {
        Ok(Internal::Recheck { signal: Some(signal), .. }) => return absorb(ctx, t, signal).await,
        Ok(Internal::Recheck { coalesced: true, .. }) => {
            let row = store::get(&ctx.db, t.installation.get(), t.repo_id.get(), t.issue.get()).await?;
            if !Prev::new(row, vec![]).remembered().absorbed {
                // Read afresh since its events came (a comment, a push): nothing left to do.
                return Ok(Handled { outcome: "superseded", effects: vec![] });
            }
        }
        _ => {}
    }
    let Some(trigger) = internal_trigger(&ctx.delivery.event, &v) else { return Ok(Handled::ignored()) };
    evaluate(ctx, t, None, trigger).await
}

/// A check event for request `t`: folded into what it last read; an evaluation is scheduled
/// when the event can change the verdict or what the request shows, at once when it closes a
/// passing Tests gate (`domain::flow::signal`). No call to GitHub.
async fn absorb(ctx: Arc<Ctx>, t: Target, signal: Signal) -> Result<Handled, HandlerError> {
    let (inst, repo_id, issue) = (t.installation.get(), t.repo_id.get(), t.issue.get());
    let Some(row) = store::get(&ctx.db, inst, repo_id, issue).await? else {
        // Never evaluated yet: nothing to fold into.
        return evaluate(ctx, t, None, Trigger::Recheck { checks_only: true }).await;
    };
    if row.open == 0 || row.labelled == 0 {
        return Ok(Handled::ignored());
    }
    let mut effects = Vec::new();
    let (policy, _, _) = load_policy_read(&ctx, inst, repo_id, &t.repo, &mut effects).await?;
    let require = row.environment.as_deref().and_then(|e| policy.environment(e)).map(|e| &e.require_checks);
    let prev = Prev::new(Some(row), vec![]);
    let (remembered, significance) = signal::absorb(prev.remembered(), require, &signal);
    tracing::debug!(?significance, sha = signal.sha(), "check event folded into the request");
    if significance == Significance::Nothing {
        return Ok(if effects.is_empty() { Handled::ignored() } else { Handled::ok(effects) });
    }
    effects.push(Effect::SaveFacts {
        installation: inst,
        repository_id: repo_id,
        issue,
        facts: serde_json::to_string(&remembered).map_err(|e| HandlerError::Permanent(e.to_string()))?,
    });
    effects.push(Effect::ScheduleRecheck {
        installation: inst,
        repository_id: repo_id,
        repository: t.repo.clone(),
        issue,
        significance,
        coalesce: ctx.coalesce,
    });
    Ok(Handled { outcome: "absorbed", effects })
}

const POLICY_PATH: &str = ".github/shipgate.yml";

/// A push to the default branch that touches `.github/shipgate.yml`: re-read it, say whether it
/// is valid on a `shipgate / config` check run, and evaluate the repository's open requests again.
pub async fn on_push(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let e: PushEvent = ctx.payload()?;
    let Some(installation) = ctx.delivery.installation_id.or(e.installation.as_ref().map(|i| i.id)) else {
        return Ok(Handled::ignored());
    };
    let (repo_id, repo) = (e.repository.id, e.repository.full_name.as_str());
    if e.git_ref != format!("refs/heads/{}", e.default_branch()) {
        return Ok(Handled::ignored());
    }
    // Every move of the default branch re-reads the policy: a push's commit list can be cut
    // short (GitHub lists at most 20 commits) or the push missed, so the file's blob SHA decides
    // whether it changed, not the list.
    let touched = e.touches(POLICY_PATH);
    let after = e.after.clone();
    let mut effects = Vec::new();
    // A conditional read: GitHub answers 304 (no rate limit spent) when the file is as cached.
    let (cached, etag) = match store::policy_with_etag(&ctx.db, installation, repo_id).await? {
        Some((blob, yaml, etag)) => (Some((blob, yaml)), etag),
        None => (None, None),
    };
    let read = match facts::policy_file_if_changed(&ctx.github, installation, repo, etag.as_deref()).await {
        Ok(f) => f,
        Err(GhError::DryRun) => return Ok(Handled::ignored()),
        Err(e) => return Err(gh_err(e)),
    };
    let (blob, yaml, etag) = match (read, &cached) {
        (facts::PolicyFile::Found { blob, text, etag }, _) => (blob, Some(text), etag),
        (facts::PolicyFile::Missing, _) => (String::new(), None, None),
        (facts::PolicyFile::Unchanged, Some((blob, yaml))) => (blob.clone(), yaml.clone(), etag),
        // Never: a conditional read is made only with a cached row.
        (facts::PolicyFile::Unchanged, None) => {
            return Err(HandlerError::Retry("GitHub answered 304 to a read without an entity tag".into()));
        }
    };
    let changed = cached.as_ref().is_none_or(|(b, _)| *b != blob);
    if !changed && !touched {
        return Ok(Handled::ignored());
    }
    // (A new blob is audited as it is saved: `policy.changed`, by the pusher.)
    effects.push(Effect::SavePolicy {
        installation,
        repository_id: repo_id,
        repository: repo.to_string(),
        blob: blob.clone(),
        yaml: yaml.clone(),
        etag,
        by: Some((e.sender.id, e.sender.login.clone())),
        commit: Some(after.clone()),
    });
    let (conclusion, title, summary) = match yaml.as_deref().map(policy::parse) {
        None => ("success", "No .github/shipgate.yml: the built-in policy applies".to_string(), String::new()),
        Some(Ok(p)) => {
            // Channels the App was not given: said, never a reason to fail the policy.
            let warnings = crate::domain::notify::warnings(&p, crate::domain::notify::account_of(repo), &ctx.channels);
            let mut summary = format!(
                "Environments: {}. Roles: {}.",
                p.environments.keys().cloned().collect::<Vec<_>>().join(", "),
                p.roles.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            if !warnings.is_empty() {
                summary.push_str("\n\n**Warnings** (the policy is valid; these notifications are not sent):\n");
                summary.push_str(&warnings.iter().map(|w| format!("- ⚠️ {w}")).collect::<Vec<_>>().join("\n"));
            }
            let title = match warnings.len() {
                0 => format!("{POLICY_PATH} is valid"),
                1 => format!("{POLICY_PATH} is valid, with 1 warning"),
                n => format!("{POLICY_PATH} is valid, with {n} warnings"),
            };
            ("success", title, summary)
        }
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

/// A reply on pull request `pr` to comment `id`.
fn reply(effects: &mut Vec<Effect>, t: &Target, pr: i64, id: i64, to: &User, text: String) {
    let mut replies = Vec::new();
    flow::answer(&mut replies, t, Some(pr), id, to, false, Some(text));
    effects.extend(replies.into_iter().map(Effect::Act));
}

/// An entry for the audit log about a repository (no request), by the event's sender.
fn repo_audit(
    installation: i64,
    repo_id: i64,
    repo: &str,
    kind: &str,
    sender: Option<&Account>,
    detail: Value,
) -> Effect {
    Effect::Audit(Box::new(AuditEntry {
        installation_id: installation,
        repository_id: Some(repo_id),
        repository: Some(repo.to_string()),
        issue: None,
        kind: kind.into(),
        actor_id: sender.map(|s| s.id),
        actor_login: sender.map(|s| s.login.clone()),
        detail,
    }))
}

/// An entry for the audit log about request `t`.
fn audit_entry(t: &Target, kind: &str, actor: Option<&User>, detail: Value) -> Effect {
    Effect::Audit(Box::new(AuditEntry {
        installation_id: t.installation.get(),
        repository_id: Some(t.repo_id.get()),
        repository: Some(t.repo.clone()),
        issue: Some(t.issue.get()),
        kind: kind.into(),
        actor_id: actor.map(|u| u.id.get()),
        actor_login: actor.map(|u| u.login.clone()),
        detail,
    }))
}

/// The internal event carrying a deployment's status to its request.
pub const DEPLOYMENT_EVENT: &str = "shipgate_deployment";

/// `deployment_status`: kept, and handed to the request it belongs to (by the payload the App
/// gave the deployment, or by environment and commit); a success also rechecks the requests whose
/// commits it deployed (staging first).
pub async fn on_deployment_status(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let e: DeploymentStatusEvent = ctx.payload()?;
    let Some(installation) = ctx.delivery.installation_id.or(e.installation.as_ref().map(|i| i.id)) else {
        return Ok(Handled::ignored());
    };
    let (repo_id, repo) = (e.repository.id, e.repository.full_name.clone());
    let (dep, st) = (&e.deployment, &e.deployment_status);
    let (id, sha, state) = (dep.id, dep.sha.as_str(), st.state.as_str());
    let environment = dep.environment.clone().or(st.environment.clone()).unwrap_or_default();
    let now = ctx.clock.now_ms();
    let status_at = st.created_at.as_deref().and_then(parse_rfc3339_ms).unwrap_or(now);
    let created_at = dep.created_at.as_deref().and_then(parse_rfc3339_ms).unwrap_or(status_at);
    // Who posted the status? GitHub Actions, the App itself, or whoever made the deployment. A
    // status anyone else posts (with their own token, on someone else's deployment) says nothing.
    let via = st.performed_via_github_app.clone().unwrap_or_default();
    // An account without an id is nobody: it never matches another.
    let creator = |a: &Option<Account>| a.as_ref().map(|c| c.id).filter(|id| *id != 0);
    let trusted_status = via.slug.as_deref() == Some("github-actions")
        || ctx.github.own_app_id().await.is_some_and(|own| via.id == Some(own))
        || creator(&st.creator).is_some_and(|c| Some(c) == creator(&dep.creator));
    if !trusted_status {
        let detail = json!({ "deployment_id": id, "state": state, "sha": sha, "environment": environment,
                             "why": "posted by neither GitHub Actions, the App, nor the deployment's creator" });
        return Ok(Handled::ok(vec![repo_audit(
            installation,
            repo_id,
            &repo,
            "deployment.status_ignored",
            st.creator.as_ref(),
            detail,
        )]));
    }
    // Whose deployment is it? Known by the id GitHub gave it: one the App created, or one it
    // approved through its protection rule. A key or a request number in a payload is anyone's to
    // write, and never proof.
    let own = deploys::own_deployment(&ctx.db, installation, repo_id, &repo, id).await?;
    let by_actions = dep.performed_via_github_app.as_ref().and_then(|a| a.slug.as_deref()) == Some("github-actions");
    // Made by a workflow run that the gate answered `open` at /gate/wait, for this commit and
    // environment: a deployment the App approved.
    let own = match (own, &e.workflow_run) {
        (None, Some(run)) => {
            gate_waits::approved_run(&ctx.db, installation, repo_id, run.id, &environment, sha, created_at)
                .await?
                .map(|issue| ("approved".to_string(), issue))
        }
        (own, _) => own,
    };
    let origin = match &own {
        Some((origin, _)) => origin.clone(),
        None if by_actions || e.workflow_run.is_some() => "actions".to_string(),
        None => "manual".to_string(),
    };
    let owner = own.map(|(_, issue)| issue);
    // A `/rollback`: its request was rolling back to this very commit (in every deploy mode the
    // request's deploy key says so while it waits for the deployment).
    let rollback = match owner {
        Some(issue) => store::get(&ctx.db, installation, repo_id, issue).await?.is_some_and(|r| {
            r.deploy_key.as_deref().is_some_and(|k| k.starts_with("rollback-"))
                && r.deploy_sha.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(sha))
        }),
        None => false,
    };
    let mut effects = vec![Effect::RecordDeployment(Box::new(DeploymentRow {
        installation_id: installation,
        repository_id: repo_id,
        deployment_id: id,
        environment: environment.clone(),
        sha: sha.to_string(),
        git_ref: dep.git_ref.clone(),
        issue: owner,
        state: state.to_string(),
        status_at,
        status_id: st.id,
        created_at,
        started_at: (state == "in_progress").then_some(status_at),
        finished_at: deploys::is_final(state).then_some(status_at),
        origin,
        // The run's log: only a page of this repository's own Actions runs, whole (a status's link
        // is the workflow's to write; anything else is never put in the App's comment).
        log_url: [
            e.workflow_run.as_ref().and_then(|r| r.html_url.as_deref()),
            st.log_url.as_deref(),
            st.target_url.as_deref(),
        ]
        .into_iter()
        .flatten()
        .find(|u| is_run_page(u, &repo))
        .map(str::to_string),
        rollback: i64::from(rollback),
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
    let e: ProtectionRuleEvent = ctx.payload()?;
    if e.action != "requested" {
        return Ok(Handled::ignored());
    }
    let Some(installation) = ctx.delivery.installation_id.or(e.installation.as_ref().map(|i| i.id)) else {
        return Ok(Handled::ignored());
    };
    let (repo_id, repo) = (e.repository.id, e.repository.full_name.clone());
    let (Some(run_id), Some(environment), Some(sha)) = (e.run_id(), e.environment.as_deref(), e.sha.as_deref()) else {
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
        git_ref: e.git_ref.clone(),
        deployment_id: e.deployment.as_ref().map(|d| d.id).unwrap_or_default(),
        state: "pending".into(),
        issue: None,
        report: None,
        received_at: ctx.clock.now_ms(),
    }))];
    let detail = json!({ "run_id": run_id, "environment": environment, "sha": sha, "ref": e.git_ref });
    effects.push(repo_audit(installation, repo_id, &repo, "protection_rule.requested", Some(&e.sender), detail));
    // The environment's open requests whose commits (linked PR heads, or the commit a request
    // without PRs names) include the run's.
    let covering = covering_requests(&ctx, installation, repo_id, &repo, environment, sha, run_id).await?;
    // Until a request's decision says otherwise, the run is told that none covers its commit yet
    // (a request found only through the commit's PR may not: a partly merged one, say).
    if !covering.direct {
        effects.push(Effect::Act(Action::ReviewProtectionRule {
            repo: repo.clone(),
            run_id,
            environment_name: environment.to_string(),
            state: None,
            comment: messages::rule_uncovered(environment, sha),
        }));
    }
    for issue in covering.requests {
        effects.push(Effect::recheck(installation, repo_id, &repo, issue, false));
    }
    Ok(Handled::ok(effects))
}

/// A page of one of `repo`'s own Actions runs (or one of its jobs), and nothing else:
/// `https://HOST/{repo}/actions/runs/{id}` with an optional `/job/{id}`.
fn is_run_page(url: &str, repo: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else { return false };
    let Some((host, path)) = rest.split_once('/') else { return false };
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let Some(run) = path.strip_prefix(&format!("{repo}/actions/runs/")) else { return false };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    host_ok
        && match run.split_once("/job/") {
            Some((run, job)) => digits(run) && digits(job),
            None => digits(run),
        }
}

/// The requests that may cover a waiting run's commit.
struct Covering {
    requests: Vec<i64>,
    /// Found by their links to the commit itself (not only through its PR).
    direct: bool,
}

/// The open requests for `environment` to evaluate for a run waiting on commit `sha`: those whose
/// links include the commit (linked PR heads, merge commits, or the commit a request without PRs
/// names); with none, perhaps a merge commit whose PR's `closed` event is late or was missed:
/// GitHub's list of PRs associated with the commit says which requests to evaluate again (each
/// reads its PRs, and covers the commit only if a PR's own `merge_commit_sha` is this one).
async fn covering_requests(
    ctx: &Ctx,
    installation: i64,
    repo_id: i64,
    repo: &str,
    environment: &str,
    sha: &str,
    run_id: i64,
) -> Result<Covering, HandlerError> {
    let in_env = store::open_for_environment(&ctx.db, installation, repo_id, environment).await?;
    let covering: Vec<i64> = store::open_linking(&ctx.db, installation, repo_id, Link::Sha, sha)
        .await?
        .into_iter()
        .filter(|n| in_env.contains(n))
        .collect();
    let mut covering = covering;
    // A request whose pending `/rollback` re-ran this very run (for this commit).
    for issue in store::rolling_back_to(&ctx.db, installation, repo_id, environment, sha, run_id).await? {
        if !covering.contains(&issue) {
            covering.push(issue);
        }
    }
    if !covering.is_empty() {
        return Ok(Covering { requests: covering, direct: true });
    }
    let mut merged_into = Vec::new();
    match facts::pulls_of_commit(&ctx.github, installation, repo, sha).await {
        Ok(numbers) => {
            for n in numbers {
                for issue in store::open_linking(&ctx.db, installation, repo_id, Link::Pr, &n.to_string()).await? {
                    if in_env.contains(&issue) && !merged_into.contains(&issue) {
                        merged_into.push(issue);
                    }
                }
            }
        }
        Err(GhError::DryRun) => {}
        Err(e) => return Err(gh_err(e)),
    }
    Ok(Covering { requests: merged_into, direct: false })
}

/// The internal event of a job that began waiting at `POST /gate/wait` (stored by the HTTP call,
/// worked off in the repository's order like a protection rule).
pub const GATE_WAIT_EVENT: &str = "shipgate_gate_wait";

/// What `POST /gate/wait` hands to the worker: the run, from its verified OIDC token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateWaitBody {
    pub installation: InstallationRef,
    pub repository: RepositoryRef,
    pub run_id: i64,
    #[serde(default)]
    pub run_attempt: i64,
    /// As the job's token names it.
    pub environment: String,
    pub sha: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// This wait's own id (each attempt's first call is its own delivery).
    #[serde(default)]
    pub wait_id: String,
}

/// A job began waiting at `/gate/wait`: the requests for its environment that may cover its
/// commit are evaluated again (their decision answers it: the first of them says why it does not,
/// if so); with none, it is told so at once. Either way it is never left unanswered.
pub async fn on_gate_wait(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let w: GateWaitBody = ctx.payload()?;
    let (installation, repo_id, repo) = (w.installation.id, w.repository.id, w.repository.full_name.clone());
    let report = |issue: Option<i64>, line: String| Effect::ReportWait {
        installation,
        repository_id: repo_id,
        run_id: w.run_id,
        run_attempt: w.run_attempt,
        environment: w.environment.clone(),
        issue,
        missing: vec![line.clone()],
        text: line,
    };
    // The policy's own name for the environment (names compare as the policy compares them).
    let mut effects = Vec::new();
    let (policy, _) = load_policy(&ctx, installation, repo_id, &repo, &mut effects).await?;
    let Some((environment, _)) = policy.environment_entry(&w.environment) else {
        effects
            .push(report(None, format!("`{}` is not an environment of {repo}'s .github/shipgate.yml", w.environment)));
        return Ok(Handled::ok(effects));
    };
    let environment = environment.to_string();
    let covering =
        covering_requests(&ctx, installation, repo_id, &repo, &environment, &w.sha, w.run_id).await?.requests;
    match covering.first() {
        None => effects.push(report(None, messages::rule_uncovered(&environment, &w.sha))),
        Some(first) => {
            effects.push(report(Some(*first), format!("a decision: request #{first} is being evaluated")));
            effects.extend(covering.iter().map(|issue| Effect::recheck(installation, repo_id, &repo, *issue, false)));
        }
    }
    Ok(Handled::ok(effects))
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
            editor: Some(User { id: UserId(501), login: "eve".into() }),
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
        let recheck = Internal::Recheck { cause: "d-1".into(), checks_only: true, signal: None, coalesced: false };
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
