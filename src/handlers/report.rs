//! The weekly infrastructure report (SPEC §5): per repository whose policy has `report.weekly`,
//! once across replicas, for the latest week due (also when the App was down at that moment: one
//! report for the latest missed week, never one per missed week). The issue is created through
//! the outbox like every other action; once GitHub has numbered it, the previous report issue is
//! closed with a link to it.

use crate::domain::notify::{self, NotifyEvent};
use crate::domain::policy::{self, Policy};
use crate::domain::report::{self, Report, Window};
use crate::domain::zone::Zone;
use crate::github::actions::Action;
use crate::store::figures::{self as store, Reporting};
use crate::store::{Db, Result, objects, outbox, scheduler};

/// The report of `window` for a repository, from the store (the same for the issue, `shipgate
/// report` and the API).
#[allow(clippy::too_many_arguments)]
pub async fn build(
    db: &Db,
    installation: i64,
    repository_id: i64,
    repository: &str,
    window: Window,
    timezone: &str,
    targets: &policy::Targets,
) -> Result<Report> {
    let facts = store::facts(db, installation, repository_id, window.from - report::LOOKBACK_MS).await?;
    let label = window.label(&Zone::named(timezone));
    let previous = match window.week {
        Some(_) => store::previous_report(db, installation, repository, &label).await?.map(|(_, n)| n),
        None => None,
    };
    Ok(report::build(repository, &facts, window, timezone, targets, previous))
}

/// The report of `repository` (`owner/name`, any case) for `period`, in its policy's time zone
/// and against its targets (UTC and the built-in targets without them). None: no such repository
/// (or not `installation`'s, when given).
pub async fn for_repository(
    db: &Db,
    repository: &str,
    installation: Option<i64>,
    period: report::Period,
    now: i64,
) -> Result<Option<Report>> {
    let row: Option<(i64, i64, String)> = sqlx::query_as(
        "SELECT installation_id, id, full_name FROM repositories WHERE LOWER(full_name) = LOWER($1) \
         AND removed_at IS NULL AND ($2 IS NULL OR installation_id = $2) ORDER BY updated_at DESC LIMIT 1",
    )
    .bind(repository)
    .bind(installation)
    .fetch_optional(db.pool())
    .await?;
    let Some((installation, id, name)) = row else { return Ok(None) };
    let policy = super::repo::cached_policy(db, installation, id).await?;
    let timezone = policy.report.weekly.as_ref().map_or("UTC".to_string(), |w| w.timezone.clone());
    let window = period.window(&Zone::named(&timezone), now);
    Ok(Some(build(db, installation, id, &name, window, &timezone, &policy.report.targets).await?))
}

/// The policy's report settings, from the stored file (None: no `report.weekly`). A broken file
/// reports nothing: its errors are the check run's to show.
fn weekly(r: &Reporting) -> Option<(Policy, policy::WeeklySchedule)> {
    let p = policy::parse(&r.yaml).ok()?;
    let w = p.report.weekly.clone()?;
    Some((p, w))
}

/// Opens the weekly report issues that are due, and closes the previous ones once the new ones
/// exist. Returns how many reports were opened.
pub async fn run_due(db: &Db, now: i64, worker: &str) -> Result<usize> {
    let mut opened = 0;
    for r in store::reporting(db).await? {
        // One repository failing (a database hiccup) delays nobody else's report: it is tried
        // again at the next round (its claim, if taken, is taken over after a minute).
        match run_one(db, &r, now, worker).await {
            Ok(n) => opened += n,
            Err(e) => tracing::warn!(repository = %r.repository, error = %e, "weekly report failed; tried again"),
        }
    }
    Ok(opened)
}

async fn run_one(db: &Db, r: &Reporting, now: i64, worker: &str) -> Result<usize> {
    let mut opened = 0;
    let Some((policy, schedule)) = weekly(r) else { return Ok(0) };
    let (at, window) = report::due(&schedule, now);
    if at > now {
        return Ok(0);
    }
    let zone = schedule.zone();
    let label = window.label(&zone);
    let marker = report::marker(&label);
    let job = format!("weekly-report:{}", r.repository_id);
    if scheduler::claim_or_take_over(db, &job, window.from, worker, now).await? {
        let rep = build(
            db,
            r.installation_id,
            r.repository_id,
            &r.repository,
            window.clone(),
            &schedule.timezone,
            &policy.report.targets,
        )
        .await?;
        let action = Action::CreateIssue {
            repo: r.repository.clone(),
            marker: marker.clone(),
            title: report::title(&label),
            body: report::markdown(&rep),
            labels: vec![report::LABEL.into()],
            assignees: Vec::new(),
        };
        let key = format!("{job}:{label}");
        let mut tx = db.begin_write().await?;
        outbox::enqueue(&mut tx, r.installation_id, &key, &action, None, now).await?;
        let notice = report::notice(&rep);
        let account = notify::account_of(&r.repository);
        for (k, a) in notify::notifications(&policy, account, NotifyEvent::WeeklyReport, &notice).iter().enumerate() {
            outbox::enqueue(&mut tx, r.installation_id, &format!("{key}:notify:{k}"), a, None, now).await?;
        }
        tx.commit().await?;
        outbox::settle(db, now).await?;
        scheduler::finished(db, &job, window.from, "opened", now).await?;
        tracing::info!(repository = %r.repository, week = %label, "weekly report opened");
        opened += 1;
    }
    close_previous(db, r, &label, &marker, window.from, worker, now).await?;
    Ok(opened)
}

/// Once this week's report issue has a number: the previous report, if still there, gets a link to
/// it and is closed (once, claimed like the report).
async fn close_previous(
    db: &Db,
    r: &Reporting,
    label: &str,
    marker: &str,
    slot: i64,
    worker: &str,
    now: i64,
) -> Result<()> {
    let job = format!("weekly-report-close:{}", r.repository_id);
    if scheduler::done(db, &job, slot).await? {
        return Ok(());
    }
    let Some(new) = objects::get(db, r.installation_id, "issue", &format!("{}:{marker}", r.repository)).await? else {
        return Ok(());
    };
    if new <= 0 {
        return Ok(()); // being created
    }
    let Some((_, old)) = store::previous_report(db, r.installation_id, &r.repository, label).await? else {
        return Ok(());
    };
    if !scheduler::claim_or_take_over(db, &job, slot, worker, now).await? {
        return Ok(());
    }
    let key = format!("{job}:{label}");
    let mut tx = db.begin_write().await?;
    outbox::enqueue(
        &mut tx,
        r.installation_id,
        &format!("{key}:comment"),
        &Action::UpsertComment {
            repo: r.repository.clone(),
            issue: old,
            marker: "weekly-report:superseded".into(),
            body: format!("Superseded by #{new}, the report for {label}."),
        },
        None,
        now,
    )
    .await?;
    outbox::enqueue(
        &mut tx,
        r.installation_id,
        &format!("{key}:close"),
        &Action::UpdateIssue {
            repo: r.repository.clone(),
            marker: None,
            number: Some(old),
            title: None,
            body: None,
            state: Some("closed".into()),
            state_reason: Some("completed".into()),
        },
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    outbox::settle(db, now).await?;
    scheduler::finished(db, &job, slot, "closed", now).await?;
    Ok(())
}

/// The trailing week's figures of every repository with something to count, for `/metrics`
/// (`docs/metrics.md`); a repository no longer there (removed, its installation suspended or
/// deleted) is forgotten. `shown` holds the names set last time.
pub async fn refresh_gauges(db: &Db, now: i64, shown: &mut std::collections::BTreeSet<String>) -> Result<usize> {
    const DAY: i64 = 86_400_000;
    let repos = store::active_repositories(db).await?;
    let mut now_shown = std::collections::BTreeSet::new();
    for (installation, id, name) in &repos {
        // A day more than the window: a change failure shows within a day of its deployment.
        let facts = store::facts(db, *installation, *id, now - 8 * DAY).await?;
        let figures = crate::domain::figures::compute(&facts, now - 7 * DAY, now);
        crate::metrics::set_figures(name, &figures);
        now_shown.insert(name.clone());
    }
    for gone in shown.difference(&now_shown) {
        crate::metrics::forget_repository(gone);
    }
    *shown = now_shown;
    Ok(repos.len())
}
