//! DEPLOYMENT_REQUEST issues: read the request, apply commands, evaluate the gate, and show the
//! result (sticky comment, check runs on the linked PR heads, state labels). Everything about one
//! request runs under its issue's subject, so one request is never evaluated twice at once;
//! events about PRs and checks ask for a recheck of the requests they touch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Ctx, Effect, Handled, HandlerError};
use crate::domain::commands::{self, Command};
use crate::domain::gate::{self, ApprovalFact, CheckFact, Evaluation, GateInput, PrFacts, User};
use crate::domain::messages::{self, RequestView};
use crate::domain::policy::{self, ConfigError, Policy};
use crate::domain::request::{self, Problem};
use crate::github::actions::Action;
use crate::github::client::GhError;
use crate::github::facts;
use crate::store::requests::{self as store, ApprovalChange, RequestRow};

/// The state labels the App manages.
pub const STATE_LABELS: &[&str] =
    &["awaiting-approval", "approved", "on-hold", "deploying", "deployed", "deploy-failed"];

/// The internal event asking for a request to be evaluated again.
pub const RECHECK_EVENT: &str = "shipgate_recheck";

fn gh_err(e: GhError) -> HandlerError {
    match e {
        GhError::Status { status, .. } if (400..500).contains(&status) && status != 429 => {
            HandlerError::Retry(e.to_string())
        }
        other => HandlerError::Retry(other.to_string()),
    }
}

/// Facts remembered between evaluations.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Remembered {
    prs: Vec<PrFacts>,
    missing_prs: Vec<i64>,
    review_approved: bool,
    /// A digest of what was last shown (comment and check runs): unchanged, nothing is sent.
    #[serde(default)]
    shown: String,
}

/// What triggered an evaluation.
pub enum Trigger {
    Issue { action: String },
    Comment { id: i64, user: User, bot: bool, body: String },
    CommentDeleted { id: i64 },
    Recheck,
}

/// The repository and issue an event is about.
pub struct Target {
    pub installation: i64,
    pub repo_id: i64,
    pub repo: String,
    pub issue: i64,
}

/// The policy for a repository: from the cache, or fetched (and cached by blob SHA).
async fn load_policy(
    ctx: &Ctx,
    t: &Target,
    effects: &mut Vec<Effect>,
) -> Result<(Policy, Vec<ConfigError>), HandlerError> {
    let cached = crate::store::requests::policy(&ctx.db, t.installation, t.repo_id).await?;
    let yaml = match cached {
        Some((_, yaml)) => yaml,
        None => match facts::policy_file(&ctx.github, t.installation, &t.repo).await {
            Ok(Some((sha, text))) => {
                effects.push(Effect::SavePolicy {
                    installation: t.installation,
                    repository_id: t.repo_id,
                    blob: sha,
                    yaml: Some(text.clone()),
                });
                Some(text)
            }
            Ok(None) => {
                effects.push(Effect::SavePolicy {
                    installation: t.installation,
                    repository_id: t.repo_id,
                    blob: String::new(),
                    yaml: None,
                });
                None
            }
            Err(GhError::DryRun) => None,
            Err(e) => return Err(gh_err(e)),
        },
    };
    Ok(match yaml {
        None => (policy::default_policy(), vec![]),
        Some(text) => match policy::parse(&text) {
            Ok(p) => (p, vec![]),
            // A broken file never falls back: the label still works, every gate stays closed.
            Err(errors) => (Policy { label: policy::default_policy().label, ..policy::default_policy() }, errors),
        },
    })
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
    let (policy, config_errors) = load_policy(&ctx, &t, &mut effects).await?;
    let existing = store::get(&ctx.db, t.installation, t.repo_id, t.issue).await?;
    let issue = match issue {
        Some(i) => i,
        None => match facts::issue(&ctx.github, t.installation, &t.repo, t.issue).await {
            Ok(Some(i)) => i,
            Ok(None) => return Ok(Handled::ignored()),
            Err(GhError::DryRun) => return Ok(Handled::ignored()),
            Err(e) => return Err(gh_err(e)),
        },
    };
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
    problems.extend(req.pr_problems(&t.repo));
    // The policy's own name for the environment (aliases and case resolved).
    let environment = req.environment_key(&known).map(str::to_string);
    let env_policy = environment.as_deref().and_then(|e| policy.environment(e));

    // Linked pull requests, their heads, files and checks.
    let mut remembered: Remembered =
        existing.as_ref().and_then(|r| serde_json::from_str(&r.facts).ok()).unwrap_or_default();
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
        Trigger::CommentDeleted { .. } => true,
        _ => false,
    } && existing.is_some()
        && remembered_numbers == numbers.iter().copied().collect::<BTreeSet<i64>>();
    if reuse {
        prs = remembered.prs.clone();
        missing_prs = remembered.missing_prs.clone();
        review_approved = remembered.review_approved;
    }
    for n in numbers.iter().filter(|_| !reuse) {
        match facts::pull_request(&ctx.github, t.installation, &t.repo, *n).await {
            Ok(Some(pr)) => {
                let before = remembered.prs.iter().find(|p| p.number == *n && p.head_sha == pr.head_sha);
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
    remembered = Remembered { prs: prs.clone(), missing_prs, review_approved, shown: String::new() };

    // Revision: the environment, the PRs and the rollback plan; a change makes approvals stale.
    let fingerprint = format!(
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
        environment: None,
        fingerprint: fingerprint.clone(),
        revision: 1,
        hold_by: None,
        denied_by: None,
        deny_reason: None,
        gate_open: 0,
        state: "awaiting-approval".into(),
        facts: "{}".into(),
        labels: "[]".into(),
        created_at: now,
        updated_at: now,
    });
    if row.fingerprint != fingerprint {
        row.revision += 1;
        row.fingerprint = fingerprint;
    }
    row.labelled = labelled as i64;
    row.open = open as i64;
    row.environment = environment.clone();
    row.repository = t.repo.clone();
    row.updated_at = now;

    // Approvals so far.
    let mut approvals: Vec<(ApprovalFact, String)> = store::approvals(&ctx.db, t.installation, t.repo_id, t.issue)
        .await?
        .into_iter()
        .filter(|a| a.state != "withdrawn")
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

    // Who holds which role (users by login, teams by member id).
    let mut people: Vec<User> = approvals.iter().map(|(a, _)| a.user.clone()).collect();
    let mut comment_commands: Vec<(i64, User, String)> = Vec::new();
    match &trigger {
        Trigger::Comment { id, user, bot: false, body } => comment_commands.push((*id, user.clone(), body.clone())),
        Trigger::Issue { .. } if existing.is_none() => {
            // A new request: commands written before the label count too (out of order).
            match facts::issue_comments(&ctx.github, t.installation, &t.repo, t.issue).await {
                Ok(list) => comment_commands.extend(list.into_iter().filter(|c| !c.2).map(|(id, u, _, b)| (id, u, b))),
                Err(GhError::DryRun) => {}
                Err(e) => return Err(gh_err(e)),
            }
        }
        _ => {}
    }
    people.extend(comment_commands.iter().map(|c| c.1.clone()));
    // Only the roles this request needs (its environment's rules that apply to the changed
    // files): no team is read for nothing.
    let files: Vec<&str> = prs.iter().flat_map(|p| p.files.iter().flatten()).map(String::as_str).collect();
    let env_roles: BTreeSet<&str> = env_policy
        .map(|e| e.approvals.iter().filter(|a| a.applies_to(files.iter().copied())).map(|a| a.role.as_str()).collect())
        .unwrap_or_default();
    let holders = role_holders(&ctx, t.installation, &policy, &env_roles, &people).await?;
    let holds = |u: &User, role: &str| holders.get(role).is_some_and(|ids| ids.contains(&u.id));

    // Commands.
    let mut replies: Vec<Effect> = Vec::new();
    for (comment_id, sender, text) in &comment_commands {
        for parsed in commands::parse(text) {
            let (accepted, reply) = match parsed {
                Err(e) => (false, Some(e.message.clone())),
                Ok(cmd) => {
                    apply_command(
                        &ctx,
                        &t,
                        &policy,
                        env_policy.is_some(),
                        &env_roles,
                        environment.as_deref(),
                        &cmd,
                        *comment_id,
                        sender,
                        &author,
                        &prs,
                        &heads,
                        &mut row,
                        &mut approvals,
                        &holds,
                        &mut effects,
                    )
                    .await?
                }
            };
            if accepted && matches!(trigger, Trigger::Comment { .. }) {
                replies.push(Effect::Act(Action::AddReaction {
                    repo: t.repo.clone(),
                    comment_id: *comment_id,
                    content: "+1".into(),
                }));
            }
            if let Some(why) = reply
                && matches!(trigger, Trigger::Comment { .. })
            {
                replies.push(Effect::Act(Action::UpsertComment {
                    repo: t.repo.clone(),
                    issue: t.issue,
                    marker: format!("reply-{comment_id}"),
                    body: format!("@{} {why}", sender.login),
                }));
            }
        }
    }
    if let Trigger::CommentDeleted { id } = trigger
        && let Some(pos) = approvals.iter().position(|(a, _)| a.comment_id == id)
    {
        let (a, roles) = approvals.remove(pos);
        effects.push(Effect::SaveApproval(approval_change(
            &t,
            &a,
            &roles,
            "withdrawn",
            Some("the approving comment was deleted"),
        )));
    }

    // Stale approvals: marked, and said in the comment.
    let mut stale = Vec::new();
    let mut current = Vec::new();
    for (a, roles) in &approvals {
        let why = env_policy.and_then(|e| gate::approval_is_current(a, &heads, row.revision, e));
        match why {
            Some(why) => {
                stale.push((a.user.login.clone(), why.clone()));
                effects.push(Effect::SaveApproval(approval_change(&t, a, roles, "stale", Some(&why))));
            }
            None => current.push(a.clone()),
        }
    }

    // Staging first: the same heads deployed successfully to the staging environment.
    let mut staging_ok = None;
    if let Some(env) = env_policy.filter(|e| e.require_staging_first)
        && !prs.is_empty()
    {
        let mut all = true;
        for p in &prs {
            match facts::deployed_ok(&ctx.github, t.installation, &t.repo, &p.head_sha, &env.staging_environment).await
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
        Some(env) => super::ci::red_on(&ctx.db, t.repo_id, env.branch.as_deref()).await?,
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

    // State and labels.
    row.gate_open = eval.open as i64;
    row.state = if !labelled || !open {
        "closed".into()
    } else if row.denied_by.is_some() {
        "denied".into()
    } else if row.hold_by.is_some() {
        "on-hold".into()
    } else if eval.open {
        "approved".into()
    } else {
        "awaiting-approval".into()
    };
    let want: Vec<&str> = match row.state.as_str() {
        "approved" => vec!["approved"],
        "on-hold" => vec!["on-hold"],
        "awaiting-approval" => vec!["awaiting-approval"],
        _ => vec![],
    };
    let add: Vec<String> = want.iter().filter(|l| !labels.iter().any(|x| x == *l)).map(|l| l.to_string()).collect();
    let remove: Vec<String> = STATE_LABELS
        .iter()
        .filter(|l| {
            !want.contains(l)
                && labels.iter().any(|x| x == *l)
                && matches!(**l, "approved" | "on-hold" | "awaiting-approval")
        })
        .map(|l| l.to_string())
        .collect();

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
    effects.extend(replies);
    Ok(Handled::ok(effects))
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

fn approval_change(t: &Target, a: &ApprovalFact, roles: &str, state: &str, note: Option<&str>) -> ApprovalChange {
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
        state: state.into(),
        note: note.map(str::to_string),
    }
}

/// For each role, the ids of `people` who hold it now.
async fn role_holders(
    ctx: &Ctx,
    installation: i64,
    policy: &Policy,
    roles: &BTreeSet<&str>,
    people: &[User],
) -> Result<BTreeMap<String, BTreeSet<i64>>, HandlerError> {
    let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    if people.is_empty() {
        return Ok(out);
    }
    let now = ctx.clock.now_ms();
    for (name, role) in policy.roles.iter().filter(|(n, _)| roles.contains(n.as_str())) {
        let mut ids = BTreeSet::new();
        for p in people {
            if role.users.iter().any(|u| u.eq_ignore_ascii_case(&p.login)) {
                ids.insert(p.id);
            }
        }
        for team in &role.teams {
            match ctx.teams.members(&ctx.github, installation, &team.org, &team.slug, now).await {
                Ok(members) => ids.extend(people.iter().filter(|p| members.contains(&p.id)).map(|p| p.id)),
                Err(GhError::DryRun) => {}
                Err(e) => return Err(gh_err(e)),
            }
        }
        out.insert(name.clone(), ids);
    }
    Ok(out)
}

/// Applies one command; returns (accepted, reply).
#[allow(clippy::too_many_arguments)]
async fn apply_command(
    ctx: &Ctx,
    t: &Target,
    policy: &Policy,
    env_known: bool,
    needed: &BTreeSet<&str>,
    environment: Option<&str>,
    cmd: &Command,
    comment_id: i64,
    sender: &User,
    author: &User,
    prs: &[PrFacts],
    heads: &[String],
    row: &mut RequestRow,
    approvals: &mut Vec<(ApprovalFact, String)>,
    holds: &(dyn Fn(&User, &str) -> bool + Sync),
    effects: &mut Vec<Effect>,
) -> Result<(bool, Option<String>), HandlerError> {
    let env = environment.unwrap_or_default();
    // The roles this request needs (its environment's rules that apply to the changed files).
    let env_roles: Vec<String> = needed.iter().map(|r| r.to_string()).collect();
    let held: Vec<String> = env_roles.iter().filter(|r| holds(sender, r)).cloned().collect();
    let name = format!("/{}", cmd.name());
    let refuse = |why: String, instead: &str| Ok((false, Some(messages::refusal(&name, &why, instead))));
    match cmd {
        Command::Approve { environment: asked } => {
            if !env_known {
                return refuse(
                    "the request names no environment that `.github/shipgate.yml` defines".into(),
                    "Fix the request's Environment first.",
                );
            }
            if let Some(a) = asked
                && !a.eq_ignore_ascii_case(env)
            {
                return refuse(format!("this request deploys to {env}, not {a}"), &format!("Use `/approve {env}`."));
            }
            if held.is_empty() {
                return refuse(
                    format!("you hold none of the roles {env} needs ({})", env_roles.join(", ")),
                    "Ask someone who holds one of them.",
                );
            }
            let allow_self = policy.environment(env).is_some_and(|e| e.allow_self_approval);
            let is_author = sender.id == author.id || prs.iter().any(|p| p.author.id == sender.id);
            if is_author && !allow_self {
                return refuse(
                    "you cannot approve your own request or pull request".into(),
                    "Ask another role holder.",
                );
            }
            let fact = ApprovalFact {
                comment_id,
                user: sender.clone(),
                environment: env.to_string(),
                head_shas: heads.to_vec(),
                revision: row.revision,
            };
            let roles = serde_json::to_string(&held).unwrap_or_else(|_| "[]".into());
            effects.push(Effect::SaveApproval(approval_change(t, &fact, &roles, "active", None)));
            approvals.push((fact, roles));
            Ok((true, None))
        }
        Command::ApproveCancel => {
            let mine: Vec<usize> =
                approvals.iter().enumerate().filter(|(_, (a, _))| a.user.id == sender.id).map(|(i, _)| i).collect();
            if mine.is_empty() {
                return refuse("you have not approved this request".into(), "Nothing to cancel.");
            }
            for i in mine.into_iter().rev() {
                let (a, roles) = approvals.remove(i);
                effects.push(Effect::SaveApproval(approval_change(
                    t,
                    &a,
                    &roles,
                    "withdrawn",
                    Some("cancelled with /approve cancel"),
                )));
            }
            Ok((true, None))
        }
        Command::Deny { reason } => {
            if held.is_empty() {
                return refuse(
                    "only a holder of one of the environment's roles may deny".into(),
                    "Use `/hold` to stop it instead.",
                );
            }
            row.denied_by = Some(sender.login.clone());
            row.deny_reason = Some(reason.clone());
            Ok((true, None))
        }
        Command::Hold | Command::Unhold => {
            let perm = match facts::permission(&ctx.github, t.installation, &t.repo, &sender.login).await {
                Ok(p) => p,
                Err(GhError::DryRun) => "write".into(),
                Err(e) => return Err(gh_err(e)),
            };
            if !matches!(perm.as_str(), "admin" | "maintain" | "write") {
                return refuse("it needs write access to the repository".into(), "Ask a maintainer.");
            }
            if matches!(cmd, Command::Hold) {
                row.hold_by = Some(sender.login.clone());
            } else {
                row.hold_by = None;
            }
            Ok((true, None))
        }
        Command::Recheck => Ok((true, None)),
        Command::Deploy | Command::Rollback => refuse(
            "deploying from a comment is not available yet".into(),
            "Deploy with your pipeline once the gate is open.",
        ),
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
    let trigger = match v["action"].as_str() {
        // Only new comments carry commands; an edit never adds an approval.
        Some("created") if bot => return Ok(Handled::ignored()),
        Some("created") => Trigger::Comment {
            id: c["id"].as_i64().unwrap_or_default(),
            user,
            bot,
            body: c["body"].as_str().unwrap_or_default().to_string(),
        },
        Some("deleted") => Trigger::CommentDeleted { id: c["id"].as_i64().unwrap_or_default() },
        _ => return Ok(Handled::ignored()),
    };
    // A command on a linked PR goes to the requests that link it, in their own order.
    if v["issue"]["pull_request"].is_object() {
        let Trigger::Comment { body, .. } = &trigger else { return Ok(Handled::ignored()) };
        if commands::parse(body).is_empty() {
            return Ok(Handled::ignored());
        }
        let needle = format!("\"number\":{}", t.issue);
        let effects: Vec<Effect> = store::open_mentioning(&ctx.db, t.installation, t.repo_id, &needle)
            .await?
            .into_iter()
            .map(|issue| Effect::ForwardComment {
                installation: t.installation,
                repository_id: t.repo_id,
                repository: t.repo.clone(),
                issue,
                comment: c.clone(),
            })
            .collect();
        return Ok(if effects.is_empty() { Handled::ignored() } else { Handled::ok(effects) });
    }
    if store::get(&ctx.db, t.installation, t.repo_id, t.issue).await?.is_none()
        && !matches!(trigger, Trigger::Comment { .. })
    {
        return Ok(Handled::ignored());
    }
    let issue = v["issue"].clone();
    evaluate(ctx, t, Some(issue), trigger).await
}

/// A command written on a linked PR, forwarded to the request (see `on_comment`).
pub async fn on_forwarded_comment(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    let Some(t) = target(&ctx, &v) else { return Ok(Handled::ignored()) };
    let c = &v["comment"];
    let user = User::of(&c["user"]);
    let trigger = Trigger::Comment {
        id: c["id"].as_i64().unwrap_or_default(),
        user,
        bot: false,
        body: c["body"].as_str().unwrap_or_default().to_string(),
    };
    evaluate(ctx, t, None, trigger).await
}

/// The internal event carrying a command from a linked PR to its request.
pub const FORWARDED_COMMENT_EVENT: &str = "shipgate_pr_command";

pub async fn on_recheck(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    let Some(t) = target(&ctx, &v) else { return Ok(Handled::ignored()) };
    evaluate(ctx, t, None, Trigger::Recheck).await
}

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
        let needles: Vec<String> = match event {
            "pull_request" if matches!(action, "synchronize" | "closed" | "reopened" | "edited") => {
                vec![format!(
                    "\"number\":{}",
                    v["number"].as_i64().or(v["pull_request"]["number"].as_i64()).unwrap_or(-1)
                )]
            }
            "check_run" if action == "completed" => {
                vec![v["check_run"]["head_sha"].as_str().unwrap_or("-").to_string()]
            }
            "check_suite" if action == "completed" => {
                vec![v["check_suite"]["head_sha"].as_str().unwrap_or("-").to_string()]
            }
            "workflow_run" if action == "completed" => {
                vec![v["workflow_run"]["head_sha"].as_str().unwrap_or("-").to_string()]
            }
            "status" => vec![v["sha"].as_str().unwrap_or("-").to_string()],
            "pull_request_review" => {
                vec![format!("\"number\":{}", v["pull_request"]["number"].as_i64().unwrap_or(-1))]
            }
            _ => vec![],
        };
        // The App's own check runs do not change any gate.
        if event == "check_run" && v["check_run"]["name"].as_str().is_some_and(gate::is_own_check) {
            return Ok(Handled::ignored());
        }
        for n in needles {
            for issue in store::open_mentioning(&ctx.db, installation, repo_id, &n).await? {
                if !targets.iter().any(|t| t.0 == repo_id && t.2 == issue) {
                    targets.push((repo_id, repo.to_string(), issue));
                }
            }
        }
    }
    if targets.is_empty() {
        return Ok(Handled::ignored());
    }
    let effects = targets
        .into_iter()
        .map(|(repository_id, repository, issue)| Effect::Recheck { installation, repository_id, repository, issue })
        .collect();
    Ok(Handled::ok(effects))
}

/// The body of a delivery the App makes for a request's own subject: a recheck (with its cause),
/// or a command forwarded from a linked PR (with the comment).
fn internal_body(
    installation: i64,
    repository_id: i64,
    repository: &str,
    issue: i64,
    action: &str,
    extra: (&str, Value),
) -> String {
    let mut v = json!({
        "action": action,
        "installation": { "id": installation },
        "repository": { "id": repository_id, "full_name": repository },
        "issue": { "number": issue },
    });
    v[extra.0] = extra.1;
    v.to_string()
}

pub fn forwarded_body(installation: i64, repository_id: i64, repository: &str, issue: i64, comment: &Value) -> String {
    internal_body(installation, repository_id, repository, issue, "forwarded", ("comment", comment.clone()))
}

pub fn recheck_body(installation: i64, repository_id: i64, repository: &str, issue: i64, cause: &str) -> String {
    internal_body(installation, repository_id, repository, issue, "recheck", ("cause", json!(cause)))
}

const POLICY_PATH: &str = ".github/shipgate.yml";

/// A push to the default branch that touches `.github/shipgate.yml`: re-read it, say whether it
/// is valid on a `shipgate / config` check run, and evaluate the repository's open requests again.
pub async fn on_push(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    let (Some(installation), Some(repo_id), Some(repo)) = (
        ctx.delivery.installation_id.or_else(|| v["installation"]["id"].as_i64()),
        v["repository"]["id"].as_i64(),
        v["repository"]["full_name"].as_str(),
    ) else {
        return Ok(Handled::ignored());
    };
    let default =
        v["repository"]["default_branch"].as_str().or(v["repository"]["master_branch"].as_str()).unwrap_or("main");
    if v["ref"].as_str() != Some(&format!("refs/heads/{default}")) {
        return Ok(Handled::ignored());
    }
    let touched = v["commits"].as_array().into_iter().flatten().any(|c| {
        ["added", "modified", "removed"]
            .iter()
            .any(|k| c[*k].as_array().into_iter().flatten().any(|f| f.as_str() == Some(POLICY_PATH)))
    });
    if !touched {
        return Ok(Handled::ignored());
    }
    let after = v["after"].as_str().unwrap_or_default().to_string();
    let mut effects = Vec::new();
    let file = match facts::policy_file(&ctx.github, installation, repo).await {
        Ok(f) => f,
        Err(GhError::DryRun) => None,
        Err(e) => return Err(gh_err(e)),
    };
    let (blob, yaml) = match &file {
        Some((sha, text)) => (sha.clone(), Some(text.clone())),
        None => (String::new(), None),
    };
    effects.push(Effect::SavePolicy { installation, repository_id: repo_id, blob, yaml: yaml.clone() });
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
            effects.push(Effect::Recheck { installation, repository_id, repository, issue });
        }
    }
    Ok(Handled::ok(effects))
}
