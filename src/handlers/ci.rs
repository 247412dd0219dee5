//! Failed CI becomes a tracked incident (SPEC §4): `workflow_run` completed → the PR's sticky
//! failure comment, the incident issue of a workflow on an incident branch, recovery with its time
//! to recovery, flaky re-runs; security alerts open incidents too; and the escalation of
//! incidents still open at their deadline (run by a loop in `server.rs`).
//!
//! Runs are ordered per workflow and lane (head repository and branch) by (run number, attempt):
//! a run older than the newest one seen is recorded (and may show a flaky re-run) but changes no
//! comment and no incident. Times to recovery come from the payloads' timestamps.

use std::sync::Arc;

use serde_json::Value;

use super::repo::{gh_err, repo_of};
use super::{Ctx, Effect, Handled, HandlerError};
use crate::domain::ci::{self, Alert, Incident, RunInfo, RunKind};
use crate::domain::links;
use crate::domain::notify::{self, IncidentNotice, NotifyEvent};
use crate::domain::policy::Policy;
use crate::github::actions::Action;
use crate::github::client::{GhError, parse_rfc3339_ms};
use crate::github::facts;
use crate::store::incidents::{self as store, Change, FlakyRow, IncidentRow, PrCommentRow, RunRow};
use crate::store::{Db, objects, outbox, scheduler};

fn ci_effect(c: Change) -> Effect {
    Effect::Ci(Box::new(c))
}

/// The notifications `policy` asks for about an incident, as effects.
fn notices(policy: &Policy, repo: &str, event: NotifyEvent, n: &notify::Notice) -> Vec<Effect> {
    notify::notifications(policy, notify::account_of(repo), event, n).into_iter().map(Effect::Act).collect()
}

/// A payload time: RFC 3339 text or Unix seconds.
fn time_of(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => parse_rfc3339_ms(s),
        Value::Number(n) => n.as_i64().and_then(|s| s.checked_mul(1000)),
        _ => None,
    }
}

/// The repository's policy (the requests' loader, cached by blob SHA); a broken or missing file
/// means the built-in policy.
async fn load_policy(
    ctx: &Ctx,
    installation: i64,
    repo_id: i64,
    repo: &str,
    effects: &mut Vec<Effect>,
) -> Result<Policy, HandlerError> {
    Ok(super::repo::load_policy(ctx, installation, repo_id, repo, effects).await?.0)
}

/// Rechecks of the repository's open deployment requests (their CI gate may change).
async fn recheck_requests(ctx: &Ctx, installation: i64, repo_id: i64) -> Result<Vec<Effect>, HandlerError> {
    Ok(crate::store::requests::open_in_installation(&ctx.db, installation)
        .await?
        .into_iter()
        .filter(|(id, _, _)| *id == repo_id)
        .map(|(repository_id, repository, issue)| {
            Effect::recheck(installation, repository_id, &repository, issue, true)
        })
        .collect())
}

/// `workflow_run`: the CI incident work (the deployment requests' recheck is registered beside
/// it, in `Registry::standard`).
pub async fn on_workflow_run(ctx: Arc<Ctx>) -> Result<Vec<Effect>, HandlerError> {
    let v: Value = ctx.payload()?;
    workflow_run(&ctx, &v).await
}

async fn workflow_run(ctx: &Ctx, v: &Value) -> Result<Vec<Effect>, HandlerError> {
    if v["action"].as_str() != Some("completed") {
        return Ok(vec![]);
    }
    let Some((installation, repo_id, repo)) = repo_of(ctx, v) else { return Ok(vec![]) };
    let repo = repo.as_str();
    let wr = &v["workflow_run"];
    let (Some(conclusion), Some(run_id)) = (wr["conclusion"].as_str(), wr["id"].as_i64()) else {
        return Ok(vec![]); // not completed after all
    };
    let now = ctx.clock.now_ms();
    let db = &ctx.db;
    let attempt = wr["run_attempt"].as_i64().unwrap_or(1);
    let workflow_id = wr["workflow_id"].as_i64().or(v["workflow"]["id"].as_i64()).unwrap_or_default();
    let workflow = v["workflow"]["name"]
        .as_str()
        .or(wr["name"].as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("workflow")
        .to_string();
    let branch = wr["head_branch"].as_str().unwrap_or_default().to_string();
    let default_branch = v["repository"]["default_branch"].as_str().unwrap_or("main").to_string();
    let head_repo_id = wr["head_repository"]["id"].as_i64().unwrap_or(repo_id);
    let lane = format!("{head_repo_id}:{branch}");
    if store::run(db, repo_id, run_id, attempt).await?.is_some() {
        return Ok(vec![]); // the same run attempt delivered again
    }
    let mut effects = Vec::new();
    let policy = load_policy(ctx, installation, repo_id, repo, &mut effects).await?;
    let kind = ci::run_kind(conclusion, &policy.ci);
    let mut run = RunInfo {
        run_id,
        run_number: wr["run_number"].as_i64().unwrap_or_default(),
        attempt,
        url: wr["html_url"].as_str().unwrap_or_default().to_string(),
        head_sha: wr["head_sha"].as_str().unwrap_or_default().to_string(),
        branch: branch.clone(),
        event: wr["event"].as_str().unwrap_or_default().to_string(),
        conclusion: conclusion.to_string(),
        started_at: time_of(&wr["run_started_at"]).or(time_of(&wr["created_at"])).unwrap_or(now),
        completed_at: time_of(&wr["updated_at"]).unwrap_or(now),
        author: wr["head_commit"]["author"]["name"].as_str().unwrap_or_default().to_string(),
        actor: wr["triggering_actor"]["login"]
            .as_str()
            .or(wr["actor"]["login"].as_str())
            .unwrap_or_default()
            .to_string(),
        jobs: vec![],
        jobs_unread: false,
    };
    // One jobs listing per failed run; none for a pass or an ignored conclusion.
    if kind == RunKind::Failure {
        match facts::run_attempt_jobs(&ctx.github, installation, repo, run_id, attempt).await {
            Ok(jobs) => run.jobs = ci::failed_jobs(&jobs, &policy.ci),
            Err(GhError::DryRun) => run.jobs_unread = true,
            // The run was deleted meanwhile: report it without its jobs rather than retry forever.
            Err(e) if e.status() == Some(404) => tracing::warn!(run_id, "the run's jobs are gone (404)"),
            Err(e) => return Err(gh_err(e)),
        }
    }
    let latest = store::latest(db, repo_id, workflow_id, &lane).await?;
    let is_latest = latest.as_ref().is_none_or(|l| (run.run_number, attempt) > (l.run_number, l.attempt));
    effects.push(ci_effect(Change::Run(RunRow {
        installation_id: installation,
        repository_id: repo_id,
        run_id,
        attempt,
        run_number: run.run_number,
        workflow_id,
        workflow: workflow.clone(),
        lane: lane.clone(),
        branch: branch.clone(),
        head_sha: run.head_sha.clone(),
        event: run.event.clone(),
        conclusion: conclusion.to_string(),
        kind: kind.as_str().into(),
        started_at: run.started_at,
        completed_at: run.completed_at,
        failed_jobs: serde_json::to_string(&run.jobs).unwrap_or_else(|_| "[]".into()),
        incident_branch: i64::from(ci::run_counts_for_incident(
            &policy.ci,
            &run.event,
            head_repo_id,
            repo_id,
            &branch,
            &default_branch,
        )),
    })));
    if kind == RunKind::Ignored {
        return Ok(effects);
    }

    // Flaky: a failed attempt and a passing re-run of the same run (same commit), in either
    // order of arrival.
    let attempts = store::attempts(db, repo_id, run_id).await?;
    let mut flaky_jobs: Vec<String> = Vec::new();
    let mut flaky_at = run.completed_at;
    match kind {
        RunKind::Success => {
            for a in
                attempts.iter().filter(|a| a.attempt < attempt && a.kind == "failure" && a.head_sha == run.head_sha)
            {
                flaky_jobs.extend(job_names(&a.failed_jobs));
            }
        }
        _ => {
            if let Some(pass) = attempts.iter().find(|a| a.attempt > attempt && a.kind == "success") {
                flaky_jobs.extend(job_names(&serde_json::to_string(&run.jobs).unwrap_or_default()));
                flaky_at = pass.completed_at;
            }
        }
    }
    flaky_jobs.dedup();
    for job in &flaky_jobs {
        effects.push(ci_effect(Change::Flaky(FlakyRow {
            installation_id: installation,
            repository_id: repo_id,
            workflow_id,
            workflow: workflow.clone(),
            job: job.clone(),
            head_sha: run.head_sha.clone(),
            run_id,
            at: flaky_at,
        })));
    }
    let counts = ci::run_counts_for_incident(&policy.ci, &run.event, head_repo_id, repo_id, &branch, &default_branch);
    if !is_latest {
        // A late delivery of an older run changes nothing shown, except a failure that came after
        // the last success: it belongs to the open incident (and may be its first failure).
        if kind == RunKind::Failure && counts {
            effects.extend(earlier_failure(ctx, &policy, repo, repo_id, workflow_id, &lane, &run).await?);
        }
        return Ok(effects);
    }

    // The PR's failure comment.
    let marker = ci::pr_marker(workflow_id);
    match kind {
        RunKind::Failure => {
            for pr in pulls_of(ctx, v, installation, repo, repo_id, &run.head_sha).await? {
                effects.push(Effect::Act(Action::UpsertComment {
                    repo: repo.to_string(),
                    issue: pr,
                    marker: marker.clone(),
                    body: ci::pr_failure_comment(&workflow, &run),
                }));
                effects.push(ci_effect(Change::PrComment(PrCommentRow {
                    installation_id: installation,
                    repository_id: repo_id,
                    pr,
                    workflow_id,
                    lane: lane.clone(),
                    state: "red".into(),
                    run_id,
                    head_sha: run.head_sha.clone(),
                })));
            }
        }
        _ => {
            let mut red = store::red_comments(db, repo_id, workflow_id, &lane).await?;
            for pr in payload_pulls(wr, &run.head_sha) {
                if !red.iter().any(|c| c.pr == pr)
                    && let Some(c) = store::pr_comment(db, repo_id, pr, workflow_id).await?.filter(|c| c.state == "red")
                {
                    red.push(c);
                }
            }
            for c in red {
                let failed_run = store::attempts(db, repo_id, c.run_id).await?.first().map(|a| a.run_number);
                let flaky = if c.run_id == run_id { flaky_jobs.as_slice() } else { &[] };
                effects.push(Effect::Act(Action::UpsertComment {
                    repo: repo.to_string(),
                    issue: c.pr,
                    marker: marker.clone(),
                    body: ci::pr_green_comment(&workflow, &run, failed_run, flaky),
                }));
                effects.push(ci_effect(Change::PrComment(PrCommentRow {
                    state: "green".into(),
                    run_id,
                    head_sha: run.head_sha.clone(),
                    lane: lane.clone(),
                    ..c
                })));
            }
        }
    }

    // The incident of this workflow on an incident branch.
    if !counts {
        return Ok(effects);
    }
    let subject = format!("{workflow_id}:{branch}");
    let newest = store::newest(db, repo_id, "ci", &subject).await?;
    let open = newest.clone().filter(|i| i.state == "open");
    let changed = match (kind, open) {
        (RunKind::Failure, None) => {
            let seq = newest.map_or(1, |n| n.seq + 1);
            let marker = ci::incident_marker(workflow_id, &branch, seq);
            let minutes = policy.ci.debug_within_minutes;
            let doc = Incident {
                repo: repo.to_string(),
                workflow: workflow.clone(),
                workflow_url: v["workflow"]["html_url"].as_str().unwrap_or_default().to_string(),
                branch: branch.clone(),
                first: run.clone(),
                latest: run.clone(),
                failures: 1,
                debug_within_minutes: minutes,
                deadline: run.completed_at + i64::from(minutes) * 60_000,
                escalate_to: policy.ci.escalate_to.clone(),
                mentions: super::repo::role_mentions(
                    ctx,
                    installation,
                    repo,
                    &policy,
                    policy.ci.escalate_to.as_deref(),
                )
                .await,
            };
            let title = ci::incident_title(&workflow, &branch);
            effects.push(Effect::Act(Action::CreateIssue {
                repo: repo.to_string(),
                marker: marker.clone(),
                title: title.clone(),
                body: links::tagged(&ci::incident_body(&doc), repo_id),
                labels: vec![ci::CI_LABEL.into()],
                assignees: Vec::new(),
            }));
            let n = IncidentNotice { repo, title: &title, issue: None, marker: &marker, url: None };
            let jobs: Vec<String> = run.jobs.iter().map(|j| j.name.clone()).collect();
            let notice = n.opened(&workflow, &branch, &run.url, &jobs, &ci::format_time(doc.deadline));
            effects.extend(notices(&policy, repo, NotifyEvent::IncidentOpened, &notice));
            effects.push(ci_effect(Change::Incident(IncidentRow {
                id: IncidentRow::id_for(repo_id, &marker),
                installation_id: installation,
                repository_id: repo_id,
                repository: repo.to_string(),
                kind: "ci".into(),
                subject,
                seq,
                marker,
                title,
                branch: branch.clone(),
                on_default: (branch == default_branch) as i64,
                state: "open".into(),
                opened_at: now,
                first_failure_at: run.completed_at,
                last_run_number: run.run_number,
                last_attempt: attempt,
                failures: 1,
                deadline: doc.deadline,
                mentions: doc.mentions.join(" "),
                escalated_at: None,
                recovered_at: None,
                ttr_ms: None,
                flaky: 0,
                details: serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into()),
                updated_at: now,
            })));
            true
        }
        (RunKind::Failure, Some(mut row)) => {
            let mut doc: Incident = serde_json::from_str(&row.details).unwrap_or_default();
            doc.latest = run.clone();
            doc.failures += 1;
            row.failures = doc.failures;
            row.last_run_number = run.run_number;
            row.last_attempt = attempt;
            row.details = serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into());
            effects.push(Effect::Act(Action::UpdateIssue {
                repo: repo.to_string(),
                marker: Some(row.marker.clone()),
                number: None,
                title: None,
                body: Some(links::tagged(&ci::incident_body(&doc), repo_id)),
                state: None,
                state_reason: None,
            }));
            effects.push(ci_effect(Change::Incident(row)));
            false
        }
        (RunKind::Success, Some(mut row)) => {
            let doc: Incident = serde_json::from_str(&row.details).unwrap_or_default();
            let ttr = (run.completed_at - row.first_failure_at).max(0);
            row.state = "closed".into();
            row.recovered_at = Some(run.completed_at);
            row.ttr_ms = Some(ttr);
            row.flaky = (!flaky_jobs.is_empty()) as i64;
            row.last_run_number = run.run_number;
            row.last_attempt = attempt;
            effects.push(Effect::Act(Action::UpdateIssue {
                repo: repo.to_string(),
                marker: Some(row.marker.clone()),
                number: None,
                title: None,
                body: Some(ci::recovered_body(&doc, &run, ttr, &flaky_jobs)),
                state: Some("closed".into()),
                state_reason: Some("completed".into()),
            }));
            effects.extend(escalation_resolved(ctx, &row, run.completed_at).await?);
            let n = IncidentNotice { repo, title: &row.title, issue: None, marker: &row.marker, url: None };
            effects.extend(notices(&policy, repo, NotifyEvent::Recovered, &n.recovered("a passing run", ttr)));
            effects.push(ci_effect(Change::Incident(row)));
            true
        }
        _ => false,
    };
    if changed {
        effects.extend(recheck_requests(ctx, installation, repo_id).await?);
    }
    Ok(effects)
}

/// A failed run delivered after a newer one: when no success came between it and the open
/// incident, it is one of the incident's failures, and its first one if it is earlier (the time
/// to recovery counts from there; the deadline too, unless it was escalated already).
async fn earlier_failure(
    ctx: &Ctx,
    policy: &Policy,
    repo: &str,
    repo_id: i64,
    workflow_id: i64,
    lane: &str,
    run: &RunInfo,
) -> Result<Vec<Effect>, HandlerError> {
    let subject = format!("{workflow_id}:{}", run.branch);
    let Some(mut row) = store::newest(&ctx.db, repo_id, "ci", &subject).await?.filter(|i| i.state == "open") else {
        return Ok(vec![]);
    };
    if store::passed_after(&ctx.db, repo_id, workflow_id, lane, run.run_number, run.attempt).await? {
        return Ok(vec![]);
    }
    let mut doc: Incident = serde_json::from_str(&row.details).unwrap_or_default();
    if run.completed_at < row.first_failure_at {
        doc.first = run.clone();
        row.first_failure_at = run.completed_at;
        if row.escalated_at.is_none() {
            doc.deadline = run.completed_at + i64::from(policy.ci.debug_within_minutes) * 60_000;
            row.deadline = doc.deadline;
        }
    }
    doc.failures += 1;
    row.failures = doc.failures;
    row.details = serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into());
    Ok(vec![
        Effect::Act(Action::UpdateIssue {
            repo: repo.to_string(),
            marker: Some(row.marker.clone()),
            number: None,
            title: None,
            body: Some(links::tagged(&ci::incident_body(&doc), repo_id)),
            state: None,
            state_reason: None,
        }),
        ci_effect(Change::Incident(row)),
    ])
}

fn job_names(failed_jobs: &str) -> Vec<String> {
    let jobs: Vec<ci::FailedJob> = serde_json::from_str(failed_jobs).unwrap_or_default();
    if jobs.is_empty() {
        return vec!["(workflow)".into()]; // failed before any job ran
    }
    jobs.into_iter().map(|j| j.name).collect()
}

/// The PRs the payload names whose head is this run's SHA.
fn payload_pulls(wr: &Value, head_sha: &str) -> Vec<i64> {
    wr["pull_requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["head"]["sha"].as_str().is_none_or(|s| s == head_sha))
        .filter_map(|p| p["number"].as_i64())
        .collect()
}

/// The open PRs a failed run ran for: from the payload, or (a fork's PR, which the payload does
/// not name) the open PRs whose head is the run's `owner:branch` at the run's SHA.
async fn pulls_of(
    ctx: &Ctx,
    v: &Value,
    installation: i64,
    repo: &str,
    repo_id: i64,
    head_sha: &str,
) -> Result<Vec<i64>, HandlerError> {
    let wr = &v["workflow_run"];
    let named = payload_pulls(wr, head_sha);
    if !named.is_empty() {
        return Ok(named);
    }
    let event = wr["event"].as_str().unwrap_or_default();
    let fork = wr["head_repository"]["id"].as_i64().is_some_and(|id| id != repo_id);
    if !matches!(event, "pull_request" | "pull_request_target") || !fork {
        return Ok(vec![]);
    }
    let (Some(owner), Some(branch)) = (wr["head_repository"]["owner"]["login"].as_str(), wr["head_branch"].as_str())
    else {
        return Ok(vec![]);
    };
    match facts::pulls_with_head(&ctx.github, installation, repo, owner, branch).await {
        Ok(list) => Ok(list.into_iter().filter(|(_, sha)| sha == head_sha).map(|(n, _)| n).collect()),
        Err(GhError::DryRun) => Ok(vec![]),
        Err(e) => Err(gh_err(e)),
    }
}

/// A security alert that opens or closes an incident.
fn alert_of(event: &str, v: &Value, now: i64) -> Alert {
    let a = &v["alert"];
    let (severity, summary) = match event {
        "dependabot_alert" => (
            a["security_advisory"]["severity"].as_str().or(a["security_vulnerability"]["severity"].as_str()),
            a["security_advisory"]["summary"].as_str().unwrap_or("a vulnerable dependency").to_string(),
        ),
        "code_scanning_alert" => (
            a["rule"]["security_severity_level"].as_str(),
            a["rule"]["description"].as_str().unwrap_or("a code scanning finding").to_string(),
        ),
        _ => (
            Some("critical"),
            format!(
                "a leaked secret ({})",
                a["secret_type_display_name"].as_str().or(a["secret_type"].as_str()).unwrap_or("unknown type")
            ),
        ),
    };
    Alert {
        event: event.to_string(),
        number: a["number"].as_i64().unwrap_or_default(),
        severity: severity.unwrap_or("unknown").to_string(),
        summary,
        url: a["html_url"].as_str().unwrap_or_default().to_string(),
        created_at: time_of(&a["created_at"]).unwrap_or(now),
    }
}

/// `dependabot_alert`, `code_scanning_alert`, `secret_scanning_alert`: a high or critical alert
/// created or reopened opens a `security` incident, escalated at once; fixed or dismissed closes it.
/// As an issue only in a private or internal repository: in a public one (or one whose visibility
/// the payload does not say) the incident is kept by the App and shown in the API, never disclosed
/// in a public issue (SPEC §4.1).
pub async fn on_security_alert(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    let Some((installation, repo_id, repo)) = repo_of(&ctx, &v) else { return Ok(Handled::ignored()) };
    let repo = repo.as_str();
    let event = ctx.delivery.event.as_str();
    let action = v["action"].as_str().unwrap_or_default();
    let now = ctx.clock.now_ms();
    let alert = alert_of(event, &v, now);
    let visibility = v["repository"]["visibility"].as_str();
    let private =
        v["repository"]["private"].as_bool() == Some(true) || matches!(visibility, Some("private" | "internal"));
    let subject = format!("{event}:{}", alert.number);
    let newest = store::newest(&ctx.db, repo_id, "security", &subject).await?;
    let open = newest.clone().filter(|i| i.state == "open");
    let mut effects = Vec::new();
    match action {
        "created" | "reopened" | "reopened_by_user" | "auto_reopened" => {
            if open.is_some() || !ci::alert_counts(&alert.severity) {
                return Ok(Handled::ignored());
            }
            let policy = load_policy(&ctx, installation, repo_id, repo, &mut effects).await?;
            let seq = newest.map_or(1, |n| n.seq + 1);
            let marker = ci::security_marker(event, alert.number, seq);
            let opened =
                if action == "created" { alert.created_at } else { time_of(&v["alert"]["updated_at"]).unwrap_or(now) };
            let title = ci::security_title(&alert);
            if private {
                effects.push(Effect::Act(Action::CreateIssue {
                    repo: repo.to_string(),
                    marker: marker.clone(),
                    title: title.clone(),
                    body: ci::security_body(&alert, policy.ci.escalate_to.as_deref()),
                    labels: vec![ci::SECURITY_LABEL.into()],
                    assignees: Vec::new(),
                }));
            } else {
                tracing::info!(
                    repository = repo,
                    alert = alert.number,
                    "security alert on a public repository: kept, not disclosed in an issue"
                );
            }
            // To the policy's (private) channels either way: linked to the issue, or, in a
            // public repository, to the alert's own page (shown only to those who may see it).
            let n = IncidentNotice {
                repo,
                title: &title,
                issue: None,
                marker: &marker,
                url: (!private).then_some(alert.url.as_str()).filter(|u| !u.is_empty()),
            };
            let notice =
                n.security_alert(alert.source(), &alert.severity, &alert.summary, policy.ci.escalate_to.as_deref());
            effects.extend(notices(&policy, repo, NotifyEvent::SecurityAlert, &notice));
            effects.push(ci_effect(Change::Incident(IncidentRow {
                id: IncidentRow::id_for(repo_id, &marker),
                installation_id: installation,
                repository_id: repo_id,
                repository: repo.to_string(),
                kind: "security".into(),
                subject,
                seq,
                marker,
                title,
                branch: String::new(),
                on_default: 0,
                state: "open".into(),
                opened_at: now,
                first_failure_at: opened,
                last_run_number: 0,
                last_attempt: 0,
                failures: 1,
                deadline: now, // escalated at once
                mentions: super::repo::role_mentions(
                    &ctx,
                    installation,
                    repo,
                    &policy,
                    policy.ci.escalate_to.as_deref(),
                )
                .await
                .join(" "),
                // Public: no issue to comment on, and nothing to disclose; there is no private
                // channel yet, so it counts as escalated at once (shown in the API).
                escalated_at: (!private).then_some(now),
                recovered_at: None,
                ttr_ms: None,
                flaky: 0,
                details: serde_json::to_string(&alert).unwrap_or_else(|_| "{}".into()),
                updated_at: now,
            })));
        }
        "fixed" | "dismissed" | "auto_dismissed" | "closed_by_user" | "resolved" => {
            let Some(mut row) = open else { return Ok(Handled::ignored()) };
            let a = &v["alert"];
            let closed = [&a["fixed_at"], &a["dismissed_at"], &a["resolved_at"], &a["updated_at"]]
                .into_iter()
                .find_map(time_of)
                .unwrap_or(now);
            let ttr = (closed - row.first_failure_at).max(0);
            let how = match action {
                "fixed" => "fixed",
                "resolved" => "resolved",
                _ => "dismissed",
            };
            row.state = "closed".into();
            row.recovered_at = Some(closed);
            row.ttr_ms = Some(ttr);
            let doc: Alert = serde_json::from_str(&row.details).unwrap_or(alert);
            // An incident kept by the App (a public repository) has no issue to close.
            if private {
                effects.push(Effect::Act(Action::UpdateIssue {
                    repo: repo.to_string(),
                    marker: Some(row.marker.clone()),
                    number: None,
                    title: None,
                    body: Some(ci::security_closed_body(&doc, how, ttr)),
                    state: Some("closed".into()),
                    state_reason: Some("completed".into()),
                }));
                effects.extend(escalation_resolved(&ctx, &row, closed).await?);
            }
            let policy = load_policy(&ctx, installation, repo_id, repo, &mut effects).await?;
            let n = IncidentNotice {
                repo,
                title: &row.title,
                issue: None,
                marker: &row.marker,
                url: (!private).then_some(doc.url.as_str()).filter(|u| !u.is_empty()),
            };
            let notice = n.recovered(&format!("the alert was {how}"), ttr);
            effects.extend(notices(&policy, repo, NotifyEvent::Recovered, &notice));
            effects.push(ci_effect(Change::Incident(row)));
        }
        _ => return Ok(Handled::ignored()),
    }
    Ok(Handled::ok(effects))
}

/// The escalation comment of an incident being closed, rewritten so that it no longer says the
/// incident is open (none when it was never escalated, or its issue is not known).
async fn escalation_resolved(ctx: &Ctx, row: &IncidentRow, closed_at: i64) -> Result<Vec<Effect>, HandlerError> {
    let Some(escalated_at) = row.escalated_at else { return Ok(vec![]) };
    let key = format!("{}:{}", row.repository, row.marker);
    let Some(issue) = objects::get(&ctx.db, row.installation_id, "issue", &key).await?.filter(|n| *n > 0) else {
        return Ok(vec![]);
    };
    Ok(vec![Effect::Act(Action::UpsertComment {
        repo: row.repository.clone(),
        issue,
        marker: ci::ESCALATION_MARKER.into(),
        body: ci::escalation_resolved(&row.title, escalated_at, closed_at),
    })])
}

/// Escalates the open incidents past their deadline, once each across replicas: claims the job
/// `escalate:{incident}`, then marks the incident escalated and enqueues the comment in one
/// transaction. An incident whose issue is not created yet waits for the next round. Returns how
/// many were escalated.
pub async fn escalate_due(db: &Db, now: i64, worker: &str) -> crate::store::Result<usize> {
    let mut done = 0;
    for i in store::due(db, now, 100).await? {
        let issue =
            match objects::get(db, i.installation_id, "issue", &format!("{}:{}", i.repository, i.marker)).await? {
                Some(n) if n > 0 => n,
                _ => continue,
            };
        let job = format!("escalate:{}", i.id);
        if !scheduler::claim_or_take_over(db, &job, i.deadline, worker, now).await? {
            continue;
        }
        let policy = super::repo::cached_policy(db, i.installation_id, i.repository_id).await?;
        let mut tx = db.begin_write().await?;
        let escalated = store::mark_escalated(&mut tx, &i.id, now).await?;
        if escalated {
            let action = Action::UpsertComment {
                repo: i.repository.clone(),
                issue,
                marker: ci::ESCALATION_MARKER.into(),
                body: if i.kind == super::alerts::KIND {
                    let doc: crate::domain::alert::AlertDoc = serde_json::from_str(&i.details).unwrap_or_default();
                    crate::domain::alert::escalation_comment(&doc, &i.title, &i.mentions)
                } else if i.kind == crate::domain::breakglass::REVIEW_KIND {
                    crate::domain::breakglass::escalation_comment(&i.title, i.deadline, &i.mentions)
                } else {
                    ci::escalation_comment(&i.title, i.deadline, &i.mentions, i.kind == "security")
                },
            };
            outbox::enqueue(&mut tx, i.installation_id, &job, &action, None, now).await?;
            let n = IncidentNotice {
                repo: &i.repository,
                title: &i.title,
                issue: Some(issue),
                marker: &i.marker,
                url: None,
            };
            let notice = n.escalated(&ci::format_time(i.deadline), &i.mentions);
            let account = notify::account_of(&i.repository);
            for (k, a) in notify::notifications(&policy, account, NotifyEvent::Escalated, &notice).iter().enumerate() {
                outbox::enqueue(&mut tx, i.installation_id, &format!("{job}:notify:{k}"), a, None, now).await?;
            }
        }
        tx.commit().await?;
        scheduler::finished(db, &job, i.deadline, if escalated { "escalated" } else { "closed meanwhile" }, now)
            .await?;
        if escalated {
            tracing::info!(incident = %i.id, repository = %i.repository, "incident escalated");
            done += 1;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found reading the code the `webhook` fuzz target cannot reach: a payload time in Unix
    /// seconds too large for milliseconds overflowed (a panic in debug builds, a wrapped time in
    /// release ones); it is no time at all.
    #[test]
    fn payload_times_in_seconds_do_not_overflow() {
        assert_eq!(time_of(&serde_json::json!(1_700_000_000)), Some(1_700_000_000_000));
        assert_eq!(time_of(&serde_json::json!(i64::MAX)), None);
        assert_eq!(time_of(&serde_json::json!(i64::MIN)), None);
        assert_eq!(time_of(&serde_json::json!("2026-11-29T10:00:00Z")), Some(1_795_946_400_000));
    }
}
