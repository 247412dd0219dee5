//! CI incidents: completed runs, flaky re-runs, the App's failure comment per PR and workflow,
//! and incidents (a failing workflow on an incident branch, or a security alert) with their
//! escalation. Handlers read here and write through [`Change`] effects; the escalation loop
//! marks an incident escalated in the transaction that enqueues its comment.

use serde::Serialize;
use sqlx::{Any, Transaction};

use super::{Db, Result};

/// A completed workflow run attempt.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub struct RunRow {
    pub installation_id: i64,
    pub repository_id: i64,
    pub run_id: i64,
    pub attempt: i64,
    pub run_number: i64,
    pub workflow_id: i64,
    pub workflow: String,
    pub lane: String,
    pub branch: String,
    pub head_sha: String,
    pub event: String,
    pub conclusion: String,
    /// success | failure | ignored
    pub kind: String,
    pub started_at: i64,
    pub completed_at: i64,
    /// The failed jobs and steps (JSON of `domain::ci::FailedJob`s).
    pub failed_jobs: String,
    /// 1: it counts for the CI green rate (the policy's incident branch, this repository's push).
    pub incident_branch: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub struct FlakyRow {
    pub installation_id: i64,
    pub repository_id: i64,
    pub workflow_id: i64,
    pub workflow: String,
    pub job: String,
    pub head_sha: String,
    pub run_id: i64,
    pub at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub struct PrCommentRow {
    pub installation_id: i64,
    pub repository_id: i64,
    pub pr: i64,
    pub workflow_id: i64,
    pub lane: String,
    /// red | green
    pub state: String,
    pub run_id: i64,
    pub head_sha: String,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub struct IncidentRow {
    pub id: String,
    pub installation_id: i64,
    pub repository_id: i64,
    pub repository: String,
    /// ci | security
    pub kind: String,
    pub subject: String,
    pub seq: i64,
    pub marker: String,
    pub title: String,
    pub branch: String,
    pub on_default: i64,
    /// open | closed
    pub state: String,
    pub opened_at: i64,
    pub first_failure_at: i64,
    pub last_run_number: i64,
    pub last_attempt: i64,
    pub failures: i64,
    pub deadline: i64,
    pub mentions: String,
    /// Set only by the escalation (never overwritten by a handler's save).
    pub escalated_at: Option<i64>,
    pub recovered_at: Option<i64>,
    pub ttr_ms: Option<i64>,
    pub flaky: i64,
    pub details: String,
    pub updated_at: i64,
}

impl IncidentRow {
    /// `{repository id}:{marker}`
    pub fn id_for(repository_id: i64, marker: &str) -> String {
        format!("{repository_id}:{marker}")
    }
}

/// A state change, applied in the delivery's completion transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Run(RunRow),
    Flaky(FlakyRow),
    PrComment(PrCommentRow),
    Incident(IncidentRow),
}

pub async fn apply(tx: &mut Transaction<'_, Any>, change: &Change, now: i64) -> Result<()> {
    match change {
        Change::Run(r) => {
            sqlx::query(
                "INSERT INTO ci_runs (installation_id, repository_id, run_id, attempt, run_number, workflow_id, workflow, \
                 lane, branch, head_sha, event, conclusion, kind, started_at, completed_at, failed_jobs, recorded_at, incident_branch) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
                 ON CONFLICT (repository_id, run_id, attempt) DO NOTHING",
            )
            .bind(r.installation_id)
            .bind(r.repository_id)
            .bind(r.run_id)
            .bind(r.attempt)
            .bind(r.run_number)
            .bind(r.workflow_id)
            .bind(&r.workflow)
            .bind(&r.lane)
            .bind(&r.branch)
            .bind(&r.head_sha)
            .bind(&r.event)
            .bind(&r.conclusion)
            .bind(&r.kind)
            .bind(r.started_at)
            .bind(r.completed_at)
            .bind(&r.failed_jobs)
            .bind(now)
            .bind(r.incident_branch)
            .execute(&mut **tx)
            .await?;
        }
        Change::Flaky(f) => {
            sqlx::query(
                "INSERT INTO ci_flaky (installation_id, repository_id, workflow_id, workflow, job, head_sha, run_id, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (repository_id, workflow_id, job, head_sha) DO NOTHING",
            )
            .bind(f.installation_id)
            .bind(f.repository_id)
            .bind(f.workflow_id)
            .bind(&f.workflow)
            .bind(&f.job)
            .bind(&f.head_sha)
            .bind(f.run_id)
            .bind(f.at)
            .execute(&mut **tx)
            .await?;
        }
        Change::PrComment(c) => {
            sqlx::query(
                "INSERT INTO ci_pr_comments (installation_id, repository_id, pr, workflow_id, lane, state, run_id, head_sha, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repository_id, pr, workflow_id) \
                 DO UPDATE SET lane = excluded.lane, state = excluded.state, run_id = excluded.run_id, \
                 head_sha = excluded.head_sha, updated_at = excluded.updated_at",
            )
            .bind(c.installation_id)
            .bind(c.repository_id)
            .bind(c.pr)
            .bind(c.workflow_id)
            .bind(&c.lane)
            .bind(&c.state)
            .bind(c.run_id)
            .bind(&c.head_sha)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Change::Incident(i) => {
            sqlx::query(
                "INSERT INTO incidents (id, installation_id, repository_id, repository, kind, subject, seq, marker, title, \
                 branch, on_default, state, opened_at, first_failure_at, last_run_number, last_attempt, failures, deadline, \
                 mentions, recovered_at, ttr_ms, flaky, details, updated_at, escalated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, \
                 $23, $24, $25) ON CONFLICT (id) DO UPDATE SET repository = excluded.repository, title = excluded.title, \
                 state = excluded.state, first_failure_at = excluded.first_failure_at, \
                 last_run_number = excluded.last_run_number, last_attempt = excluded.last_attempt, \
                 failures = excluded.failures, deadline = excluded.deadline, mentions = excluded.mentions, \
                 recovered_at = excluded.recovered_at, ttr_ms = excluded.ttr_ms, flaky = excluded.flaky, \
                 details = excluded.details, updated_at = excluded.updated_at, \
                 escalated_at = CASE WHEN incidents.state = 'closed' AND excluded.state = 'open' \
                 THEN excluded.escalated_at ELSE incidents.escalated_at END",
            )
            .bind(&i.id)
            .bind(i.installation_id)
            .bind(i.repository_id)
            .bind(&i.repository)
            .bind(&i.kind)
            .bind(&i.subject)
            .bind(i.seq)
            .bind(&i.marker)
            .bind(&i.title)
            .bind(&i.branch)
            .bind(i.on_default)
            .bind(&i.state)
            .bind(i.opened_at)
            .bind(i.first_failure_at)
            .bind(i.last_run_number)
            .bind(i.last_attempt)
            .bind(i.failures)
            .bind(i.deadline)
            .bind(&i.mentions)
            .bind(i.recovered_at)
            .bind(i.ttr_ms)
            .bind(i.flaky)
            .bind(&i.details)
            .bind(now)
            // Set only by a new incident that needs no escalation round (one kept by the App),
            // or reset by one reopened (an alert firing again); otherwise only escalation sets it.
            .bind(i.escalated_at)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

const RUN_COLUMNS: &str = "installation_id, repository_id, run_id, attempt, run_number, workflow_id, workflow, lane, \
    branch, head_sha, event, conclusion, kind, started_at, completed_at, failed_jobs, incident_branch";

/// The run attempt, when it was recorded already (a duplicate delivery).
pub async fn run(db: &Db, repository_id: i64, run_id: i64, attempt: i64) -> Result<Option<RunRow>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM ci_runs WHERE repository_id = $1 AND run_id = $2 AND attempt = $3");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(repository_id)
        .bind(run_id)
        .bind(attempt)
        .fetch_optional(db.pool())
        .await?)
}

/// Every recorded attempt of a run, oldest attempt first.
pub async fn attempts(db: &Db, repository_id: i64, run_id: i64) -> Result<Vec<RunRow>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM ci_runs WHERE repository_id = $1 AND run_id = $2 ORDER BY attempt");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(repository_id).bind(run_id).fetch_all(db.pool()).await?)
}

/// The newest counted (passed or failed) run of a workflow on a lane, by (run number, attempt).
pub async fn latest(db: &Db, repository_id: i64, workflow_id: i64, lane: &str) -> Result<Option<RunRow>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM ci_runs WHERE repository_id = $1 AND workflow_id = $2 AND lane = $3 \
         AND kind IN ('success', 'failure') ORDER BY run_number DESC, attempt DESC LIMIT 1"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(repository_id)
        .bind(workflow_id)
        .bind(lane)
        .fetch_optional(db.pool())
        .await?)
}

/// Did a run of the workflow on the lane pass after (run number, attempt)?
pub async fn passed_after(
    db: &Db,
    repository_id: i64,
    workflow_id: i64,
    lane: &str,
    run_number: i64,
    attempt: i64,
) -> Result<bool> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT run_id FROM ci_runs WHERE repository_id = $1 AND workflow_id = $2 AND lane = $3 AND kind = 'success' \
         AND (run_number > $4 OR (run_number = $4 AND attempt > $5)) LIMIT 1",
    )
    .bind(repository_id)
    .bind(workflow_id)
    .bind(lane)
    .bind(run_number)
    .bind(attempt)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.is_some())
}

/// The flaky records of a repository, oldest first.
pub async fn flaky(db: &Db, repository_id: i64) -> Result<Vec<FlakyRow>> {
    Ok(sqlx::query_as(
        "SELECT installation_id, repository_id, workflow_id, workflow, job, head_sha, run_id, at FROM ci_flaky \
         WHERE repository_id = $1 ORDER BY at, job",
    )
    .bind(repository_id)
    .fetch_all(db.pool())
    .await?)
}

/// The App's red failure comments of a workflow on a lane (the PRs of that branch).
pub async fn red_comments(db: &Db, repository_id: i64, workflow_id: i64, lane: &str) -> Result<Vec<PrCommentRow>> {
    Ok(sqlx::query_as(
        "SELECT installation_id, repository_id, pr, workflow_id, lane, state, run_id, head_sha FROM ci_pr_comments \
         WHERE repository_id = $1 AND workflow_id = $2 AND lane = $3 AND state = 'red' ORDER BY pr",
    )
    .bind(repository_id)
    .bind(workflow_id)
    .bind(lane)
    .fetch_all(db.pool())
    .await?)
}

pub async fn pr_comment(db: &Db, repository_id: i64, pr: i64, workflow_id: i64) -> Result<Option<PrCommentRow>> {
    Ok(sqlx::query_as(
        "SELECT installation_id, repository_id, pr, workflow_id, lane, state, run_id, head_sha FROM ci_pr_comments \
         WHERE repository_id = $1 AND pr = $2 AND workflow_id = $3",
    )
    .bind(repository_id)
    .bind(pr)
    .bind(workflow_id)
    .fetch_optional(db.pool())
    .await?)
}

/// Every column of `incidents`, in `IncidentRow`'s order.
pub const INCIDENT_COLUMNS: &str = "id, installation_id, repository_id, repository, kind, subject, seq, marker, title, \
    branch, on_default, state, opened_at, first_failure_at, last_run_number, last_attempt, failures, deadline, mentions, \
    escalated_at, recovered_at, ttr_ms, flaky, details, updated_at";

/// The newest incident of a subject (open or closed).
pub async fn newest(db: &Db, repository_id: i64, kind: &str, subject: &str) -> Result<Option<IncidentRow>> {
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE repository_id = $1 AND kind = $2 AND subject = $3 \
         ORDER BY seq DESC LIMIT 1"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(repository_id)
        .bind(kind)
        .bind(subject)
        .fetch_optional(db.pool())
        .await?)
}

/// The repository id of `repository`'s (owner/name) incident with issue marker `marker` in
/// `installation`, if there is one: the relay links only a text's own incident.
pub async fn repository_id_of(db: &Db, installation: i64, repository: &str, marker: &str) -> Result<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT repository_id FROM incidents WHERE installation_id = $1 AND repository = $2 AND marker = $3 \
         ORDER BY opened_at DESC LIMIT 1",
    )
    .bind(installation)
    .bind(repository)
    .bind(marker)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.0))
}

/// One incident of `installation`, by repository and issue marker.
pub async fn get(db: &Db, installation: i64, repository_id: i64, marker: &str) -> Result<Option<IncidentRow>> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1 AND installation_id = $2");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(IncidentRow::id_for(repository_id, marker))
        .bind(installation)
        .fetch_optional(db.pool())
        .await?)
}

/// A repository's incidents, oldest first.
pub async fn list(db: &Db, repository_id: i64) -> Result<Vec<IncidentRow>> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE repository_id = $1 ORDER BY opened_at, id");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(repository_id).fetch_all(db.pool()).await?)
}

/// An open CI incident on `branch` (or, with `None`, on the repository's default branch): what
/// keeps a deployment gate closed under `block_deploys_while_red`.
pub async fn open_ci_on(db: &Db, repository_id: i64, branch: Option<&str>) -> Result<Option<IncidentRow>> {
    let filter = if branch.is_some() { "branch = $2" } else { "on_default = 1" };
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE repository_id = $1 AND kind = 'ci' AND state = 'open' AND {filter} \
         ORDER BY opened_at LIMIT 1"
    );
    let q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(repository_id);
    let q = match branch {
        Some(b) => q.bind(b.to_string()),
        None => q,
    };
    Ok(q.fetch_optional(db.pool()).await?)
}

/// Open incidents whose deadline has passed and that were not escalated yet.
pub async fn due(db: &Db, now: i64, limit: i64) -> Result<Vec<IncidentRow>> {
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE state = 'open' AND escalated_at IS NULL AND deadline <= $1 \
         ORDER BY deadline LIMIT $2"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(now).bind(limit).fetch_all(db.pool()).await?)
}

/// Marks an incident escalated, inside the transaction that enqueues the escalation comment.
/// False when it was closed or escalated meanwhile (by another replica): enqueue nothing then.
pub async fn mark_escalated(tx: &mut Transaction<'_, Any>, id: &str, now: i64) -> Result<bool> {
    let r =
        sqlx::query("UPDATE incidents SET escalated_at = $1 WHERE id = $2 AND state = 'open' AND escalated_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    Ok(r.rows_affected() == 1)
}
