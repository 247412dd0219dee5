//! An alert from the monitoring stack, stored by `POST /alerts/alertmanager` (one delivery per
//! alert, on the subject of its repository and fingerprint), becomes an incident (SPEC §4.2):
//!
//! * firing, no open incident: a new incident issue labelled `alert` and its category, or the
//!   last one reopened with a comment when it resolved less than 24 h before the alert started
//!   again; a `security` alert on a public repository is kept by the App, never put in an issue;
//! * firing, its incident open: the issue is edited only when what it shows changed (a new
//!   severity, summary, links); the same alert again changes nothing;
//! * resolved: the incident closes with the time to restore, the alert's own `startsAt` to
//!   `endsAt`;
//! * escalation: at once for `severity: critical` and for a cost alert above
//!   `alerts.cost_increase_percent`; otherwise when still open `alerts.respond_within` after it
//!   started. The escalation loop ([`super::ci::escalate_due`]) posts the comment.

use std::sync::Arc;

use serde_json::Value;

use super::repo::{load_policy, repo_of};
use super::{Ctx, Effect, Handled, HandlerError};
use crate::domain::alert::{self, AlertDoc, AmAlert};
use crate::domain::links;
use crate::domain::notify::{self, IncidentNotice, NotifyEvent};
use crate::github::actions::Action;
use crate::github::client::parse_rfc3339_ms;
use crate::store::incidents::{self as store, Change, IncidentRow};
use crate::store::objects;

/// The internal event an accepted alert is stored as (GitHub cannot send it: the webhook refuses
/// events with the internal prefix).
pub const ALERT_EVENT: &str = "shipgate_alert";

/// The incidents' `kind` of alert incidents.
pub const KIND: &str = "alert";

fn effect(c: Change) -> Effect {
    Effect::Ci(Box::new(c))
}

/// A time of the payload, or None for none (Alertmanager's zero time, 0001-01-01, included).
fn time(s: &str) -> Option<i64> {
    parse_rfc3339_ms(s).filter(|t| *t > 0)
}

pub async fn on_alert(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let v: Value = ctx.payload()?;
    let Some((installation, repo_id, repo)) = repo_of(&ctx, &v) else { return Ok(Handled::ignored()) };
    let a: AmAlert = serde_json::from_value(v["alert"].clone())
        .map_err(|e| HandlerError::Permanent(format!("the stored alert does not fit: {e}")))?;
    let external_url = v["external_url"].as_str().unwrap_or_default();
    let now = ctx.clock.now_ms();
    let Some(starts_at) = time(&a.starts_at) else {
        return Err(HandlerError::Permanent("the stored alert has no startsAt".into()));
    };
    let fingerprint = a.fingerprint();
    let subject = format!("alert:{fingerprint}");
    let newest = store::newest(&ctx.db, repo_id, KIND, &subject).await?;
    let open = newest.clone().filter(|i| i.state == "open");
    // A firing, or the end of one, that started before the last incident closed is that
    // incident's, delivered late: it changes nothing.
    if open.is_none()
        && let Some(r) = newest.as_ref().and_then(|n| n.recovered_at)
        && starts_at < r
    {
        return Ok(Handled::ignored());
    }
    let mut effects = Vec::new();
    let policy = load_policy(&ctx, installation, repo_id, &repo, &mut effects).await?.0;
    let category = alert::category(a.labels.get("category").map(String::as_str));
    let severity = a.labels.get("severity").cloned().unwrap_or_else(|| "none".into());
    let increase =
        a.annotations.get("increase_percent").and_then(|p| p.trim().trim_end_matches('%').parse::<f64>().ok());
    let (role, at_once) = alert::escalation(&policy, &category, &severity, increase);
    let annotation = |k: &str| a.annotations.get(k).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let mut doc = AlertDoc {
        alertname: a.alertname().to_string(),
        category: category.clone(),
        severity,
        summary: annotation("summary").unwrap_or_default(),
        description: annotation("description").unwrap_or_default(),
        dashboard_url: annotation("dashboard_url")
            .or_else(|| Some(a.dashboard_url.trim().to_string()).filter(|u| !u.is_empty())),
        runbook_url: annotation("runbook_url"),
        generator_url: Some(a.generator_url.clone()).filter(|u| !u.is_empty()),
        starts_at,
        ends_at: None,
        escalate_role: role.clone(),
        at_once: at_once.clone(),
        respond_by: if at_once.is_some() {
            now
        } else {
            starts_at + i64::from(policy.alerts.respond_within_minutes) * 60_000
        },
        firings: 1,
        slo: a.labels.get("slo").map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()),
        last_starts_at: starts_at,
        kept: false,
        earlier: Vec::new(),
    };

    if a.status == "resolved" {
        let Some(mut row) = open else {
            // The end of a firing the App never heard of (its firing notification comes late, or
            // never): recorded as a closed incident kept by the App, so that the firing, if it
            // comes, finds it ended; no issue is opened for an alert that is over.
            let ends_at = time(&a.ends_at).unwrap_or(now).max(starts_at);
            doc.ends_at = Some(ends_at);
            doc.kept = true;
            let seq = newest.map_or(1, |n| n.seq + 1);
            let marker = alert::marker(&fingerprint, seq);
            tracing::info!(repository = %repo, alert = %doc.alertname, "an alert resolved before the App heard it fire: recorded, no issue");
            let mut row = new_row(installation, repo_id, &repo, subject, seq, marker, now, &doc);
            row.state = "closed".into();
            row.escalated_at = Some(now);
            row.recovered_at = Some(ends_at);
            row.ttr_ms = Some(ends_at - starts_at);
            effects.push(effect(Change::Incident(row)));
            return Ok(Handled::ok(effects));
        };
        let mut doc: AlertDoc = serde_json::from_str(&row.details).unwrap_or_default();
        if starts_at < doc.last_start() {
            return Ok(Handled::ignored()); // the end of an earlier firing, delivered late
        }
        let ends_at = time(&a.ends_at).unwrap_or(now).max(doc.starts_at);
        let ttr = ends_at - doc.starts_at;
        doc.ends_at = Some(ends_at);
        row.state = "closed".into();
        row.recovered_at = Some(ends_at);
        row.ttr_ms = Some(ttr);
        row.details = serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into());
        if !doc.kept {
            effects.push(Effect::Act(Action::UpdateIssue {
                repo: repo.clone(),
                marker: Some(row.marker.clone()),
                number: None,
                title: None,
                body: Some(links::tagged(&alert::resolved_body(&doc, ttr), repo_id)),
                state: Some("closed".into()),
                state_reason: Some("completed".into()),
            }));
            if let Some(escalated_at) = row.escalated_at
                && let Some(issue) = issue_of(&ctx, &row).await?
            {
                effects.push(Effect::Act(Action::UpsertComment {
                    repo: repo.clone(),
                    issue,
                    marker: crate::domain::ci::ESCALATION_MARKER.into(),
                    body: crate::domain::ci::escalation_resolved(&row.title, escalated_at, ends_at),
                }));
            }
        }
        let url = doc.kept.then(|| kept_link(&doc, external_url)).filter(|u| !u.is_empty());
        let n =
            IncidentNotice { repo: &repo, title: &row.title, issue: None, marker: &row.marker, url: url.as_deref() };
        let mut notice = n.recovered("the alert resolved", ttr);
        notice.cause = format!("{}-{}", notice.cause, doc.firings);
        effects.extend(notices(&policy, &repo, NotifyEvent::Recovered, &notice));
        tracing::info!(repository = %repo, alert = %doc.alertname, ttr_ms = ttr, "alert resolved: incident closed");
        effects.push(effect(Change::Incident(row)));
        return Ok(Handled::ok(effects));
    }

    // Firing.
    if let Some(mut row) = open {
        // Already open: edit what it shows if that changed; the same alert again changes nothing.
        let old: AlertDoc = serde_json::from_str(&row.details).unwrap_or_default();
        doc.starts_at = old.starts_at.min(starts_at);
        doc.last_starts_at = old.last_start().max(starts_at);
        doc.firings = old.firings.max(1);
        doc.kept = old.kept; // decided when it opened, whatever the category says now
        doc.earlier = old.earlier.clone();
        // Escalation only ever comes sooner: once due at once, it stays so.
        let newly_at_once = doc.at_once.is_some() && old.at_once.is_none();
        doc.at_once = doc.at_once.or(old.at_once.clone());
        doc.respond_by = if newly_at_once { old.respond_by.min(now) } else { old.respond_by };
        if row.escalated_at.is_some() {
            doc.escalate_role = old.escalate_role.clone();
        }
        if doc == old {
            return Ok(Handled::ignored());
        }
        let (title, body) = doc.shown();
        if !doc.kept && (title.clone(), body.clone()) != old.shown() {
            effects.push(Effect::Act(Action::UpdateIssue {
                repo: repo.clone(),
                marker: Some(row.marker.clone()),
                number: None,
                title: Some(title.clone()),
                body: Some(links::tagged(&body, repo_id)),
                state: None,
                state_reason: None,
            }));
        }
        row.title = title;
        if row.escalated_at.is_none() {
            row.deadline = doc.respond_by;
            // Who is mentioned is read again only when the role changed (a listing of a
            // permission role's holders costs GitHub calls: not once per repeat).
            if doc.escalate_role != old.escalate_role {
                row.mentions =
                    super::repo::role_mentions(&ctx, installation, &repo, &policy, role.as_deref()).await.join(" ");
            }
        }
        row.details = serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into());
        effects.push(effect(Change::Incident(row)));
        return Ok(Handled::ok(effects));
    }

    // Opens (or reopens): a security alert goes in an issue only while GitHub says the
    // repository is private (SPEC §4.1): asked now, not taken from what the App was told once.
    doc.kept = category == "security" && !private_now(&ctx, installation, &repo).await?;
    let next_seq = newest.as_ref().map_or(1, |n| n.seq + 1);
    let reopen = newest.filter(|n| n.recovered_at.is_some_and(|r| starts_at - r < alert::REOPEN_WITHIN_MS));
    let mentions = super::repo::role_mentions(&ctx, installation, &repo, &policy, role.as_deref()).await.join(" ");
    let mut row = match reopen {
        Some(mut row) => {
            let old: AlertDoc = serde_json::from_str(&row.details).unwrap_or_default();
            doc.firings = old.firings.max(1) + 1;
            let resolved_at = row.recovered_at.unwrap_or(starts_at);
            // The firing that ended is downtime too (uptime), not only the one starting now.
            doc.earlier = old.earlier.clone();
            doc.earlier.push((row.first_failure_at, resolved_at));
            let extra = doc.earlier.len().saturating_sub(alert::MAX_EARLIER_FIRINGS);
            doc.earlier.drain(..extra);
            if !doc.kept && old.kept {
                // Its first firing had no issue (heard of only once over): one now.
                effects.push(Effect::Act(Action::CreateIssue {
                    repo: repo.clone(),
                    marker: row.marker.clone(),
                    title: alert::alert_title(&doc),
                    body: links::tagged(&alert::alert_body(&doc), repo_id),
                    labels: vec![alert::ALERT_LABEL.into(), category.clone()],
                    assignees: Vec::new(),
                }));
            } else if !doc.kept {
                effects.push(Effect::Act(Action::UpdateIssue {
                    repo: repo.clone(),
                    marker: Some(row.marker.clone()),
                    number: None,
                    title: Some(alert::alert_title(&doc)),
                    body: Some(links::tagged(&alert::alert_body(&doc), repo_id)),
                    state: Some("open".into()),
                    state_reason: Some("reopened".into()),
                }));
                if let Some(n) = issue_of(&ctx, &row).await? {
                    effects.push(Effect::Act(Action::UpsertComment {
                        repo: repo.clone(),
                        issue: n,
                        marker: format!("alert-refired-{}", doc.firings),
                        body: alert::refired_comment(&doc, resolved_at),
                    }));
                }
            } else if !old.kept {
                // Its issue is public and the alert is now one not to disclose: the issue stays
                // closed, the incident is kept by the App.
                tracing::info!(repository = %repo, alert = %doc.alertname, "alert firing again: kept by the App, its issue left closed");
            }
            tracing::info!(repository = %repo, alert = %doc.alertname, "alert firing again within 24 h: incident reopened");
            row.state = "open".into();
            row.first_failure_at = starts_at;
            row.failures += 1;
            row.recovered_at = None;
            row.ttr_ms = None;
            row.escalated_at = doc.kept.then_some(now);
            row
        }
        None => {
            let seq = next_seq;
            let marker = alert::marker(&fingerprint, seq);
            if doc.kept {
                tracing::info!(repository = %repo, alert = %doc.alertname, "security alert on a repository that is not private: kept, not disclosed in an issue");
            } else {
                effects.push(Effect::Act(Action::CreateIssue {
                    repo: repo.clone(),
                    marker: marker.clone(),
                    title: alert::alert_title(&doc),
                    body: links::tagged(&alert::alert_body(&doc), repo_id),
                    labels: vec![alert::ALERT_LABEL.into(), category.clone()],
                    assignees: Vec::new(),
                }));
            }
            tracing::info!(repository = %repo, alert = %doc.alertname, category = %category, "alert firing: incident opened");
            let mut row = new_row(installation, repo_id, &repo, subject, seq, marker, now, &doc);
            // Kept by the App (no issue to comment on): it counts as escalated at once.
            row.escalated_at = doc.kept.then_some(now);
            row
        }
    };
    row.title = alert::alert_title(&doc);
    row.deadline = doc.respond_by;
    row.mentions = mentions;
    row.details = serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into());
    let (event, notice) = opened_notice(&repo, &row, &doc, external_url);
    effects.extend(notices(&policy, &repo, event, &notice));
    effects.push(effect(Change::Incident(row)));
    Ok(Handled::ok(effects))
}

/// The policy's notifications of `event` for this incident, as effects of the same transaction.
fn notices(policy: &crate::domain::policy::Policy, repo: &str, event: NotifyEvent, n: &notify::Notice) -> Vec<Effect> {
    notify::notifications(policy, notify::account_of(repo), event, n).into_iter().map(Effect::Act).collect()
}

/// Where a notice of an incident kept by the App (no issue) links: the alert's own pages.
fn kept_link(doc: &AlertDoc, external_url: &str) -> String {
    [doc.generator_url.as_deref(), doc.dashboard_url.as_deref(), Some(external_url)]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|u| u.starts_with("https://") || u.starts_with("http://"))
        .unwrap_or_default()
        .to_string()
}

/// The notice of an alert incident that opened (or opened again): `incident_opened`, or
/// `security_alert` for a security alert.
fn opened_notice(repo: &str, row: &IncidentRow, doc: &AlertDoc, external_url: &str) -> (NotifyEvent, notify::Notice) {
    let url = doc.kept.then(|| kept_link(doc, external_url)).filter(|u| !u.is_empty());
    let n = IncidentNotice { repo, title: &row.title, issue: None, marker: &row.marker, url: url.as_deref() };
    let escalation = match (&doc.at_once, &doc.escalate_role) {
        (Some(_), Some(role)) => format!(" Escalated at once to {role}."),
        (Some(_), None) => " Escalated at once.".to_string(),
        (None, _) => format!(" Respond by {}.", crate::domain::ci::format_time(doc.respond_by)),
    };
    if doc.category == "security" {
        let mut notice = n.security_alert("monitoring", &doc.severity, &doc.alertname, doc.escalate_role.as_deref());
        notice.cause = format!("{}-{}", notice.cause, doc.firings);
        return (NotifyEvent::SecurityAlert, notice);
    }
    let mut notice = notify::Notice {
        repo: repo.to_string(),
        title: row.title.clone(),
        summary: format!("{} is firing ({}, {}).{escalation}", doc.alertname, doc.severity, doc.category),
        fields: vec![("Severity".into(), doc.severity.clone()), ("Category".into(), doc.category.clone())],
        link: notify::NoticeLink { issue: None, marker: url.is_none().then(|| row.marker.clone()), url: url.clone() },
        cause: format!("incident-{}-opened-{}", row.marker, doc.firings),
        request: None,
    };
    if !doc.summary.is_empty() {
        notice.fields.push(("Summary".into(), doc.summary.clone()));
    }
    (NotifyEvent::IncidentOpened, notice)
}

/// Whether GitHub says the repository is private (or internal) now. Unknown (dry-run) is not.
async fn private_now(ctx: &Ctx, installation: i64, repo: &str) -> Result<bool, HandlerError> {
    match crate::github::facts::repository_private(&ctx.github, installation, repo).await {
        Ok(private) => Ok(private),
        Err(crate::github::client::GhError::DryRun) => Ok(false),
        Err(e) => Err(super::repo::gh_err(e)),
    }
}

#[allow(clippy::too_many_arguments)]
fn new_row(
    installation: i64,
    repo_id: i64,
    repo: &str,
    subject: String,
    seq: i64,
    marker: String,
    now: i64,
    doc: &AlertDoc,
) -> IncidentRow {
    IncidentRow {
        id: IncidentRow::id_for(repo_id, &marker),
        installation_id: installation,
        repository_id: repo_id,
        repository: repo.to_string(),
        kind: KIND.into(),
        subject,
        seq,
        marker,
        title: alert::alert_title(doc),
        branch: String::new(),
        on_default: 0,
        state: "open".into(),
        opened_at: now,
        first_failure_at: doc.starts_at,
        last_run_number: 0,
        last_attempt: 0,
        failures: 1,
        deadline: doc.respond_by,
        mentions: String::new(),
        escalated_at: None,
        recovered_at: None,
        ttr_ms: None,
        flaky: 0,
        details: serde_json::to_string(doc).unwrap_or_else(|_| "{}".into()),
        updated_at: now,
    }
}

/// The incident's issue number, once the App has created it.
async fn issue_of(ctx: &Ctx, row: &IncidentRow) -> Result<Option<i64>, HandlerError> {
    let key = format!("{}:{}", row.repository, row.marker);
    Ok(objects::get(&ctx.db, row.installation_id, "issue", &key).await?.filter(|n| *n > 0))
}
