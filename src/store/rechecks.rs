//! The evaluations check events asked for, coalesced (issue 14): one row per request while a
//! burst lasts, turned into one internal recheck delivery when it is due (see
//! `domain::flow::signal` for when, and `queue::coalescer` for the timer).

use sqlx::{Any, Transaction};

use super::{Db, Result};
use crate::domain::flow::signal::{self, Coalesce, Due, Significance};

/// A request, as the rows name it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DueRow {
    pub installation_id: i64,
    pub repository_id: i64,
    pub issue: i64,
    pub repository: String,
    pub first_at: i64,
    pub deadline: i64,
    pub due_at: i64,
    pub events: i64,
    pub verdict: i64,
}

impl DueRow {
    fn due(&self) -> Due {
        Due {
            first_at: self.first_at,
            deadline: self.deadline,
            due_at: self.due_at,
            events: self.events,
            verdict: self.verdict != 0,
        }
    }
}

const COLUMNS: &str = "installation_id, repository_id, issue, repository, first_at, deadline, due_at, events, verdict";

/// An event of `significance` for request `issue` at `now`: its evaluation is scheduled, or the
/// one already scheduled moves (later while the burst goes on, never past its deadline). Runs in
/// the request's own order, so only the timer (which deletes due rows) writes beside it.
#[allow(clippy::too_many_arguments)]
pub async fn schedule(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    repository_id: i64,
    repository: &str,
    issue: i64,
    significance: Significance,
    cfg: &Coalesce,
    now: i64,
) -> Result<()> {
    let sql =
        format!("SELECT {COLUMNS} FROM rechecks_due WHERE installation_id = $1 AND repository_id = $2 AND issue = $3");
    let existing: Option<DueRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(installation)
        .bind(repository_id)
        .bind(issue)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(due) = signal::schedule(existing.as_ref().map(DueRow::due), now, significance, cfg) else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO rechecks_due (installation_id, repository_id, issue, repository, first_at, deadline, due_at, events, \
         verdict) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (installation_id, repository_id, issue) DO UPDATE SET \
         repository = excluded.repository, first_at = excluded.first_at, deadline = excluded.deadline, \
         due_at = excluded.due_at, events = excluded.events, verdict = excluded.verdict",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(issue)
    .bind(repository)
    .bind(due.first_at)
    .bind(due.deadline)
    .bind(due.due_at)
    .bind(due.events)
    .bind(i64::from(due.verdict))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Rows due at `now`, oldest first (at most `limit`).
pub async fn due(db: &Db, now: i64, limit: i64) -> Result<Vec<DueRow>> {
    let sql = format!("SELECT {COLUMNS} FROM rechecks_due WHERE due_at <= $1 ORDER BY due_at LIMIT $2");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(now).bind(limit).fetch_all(db.pool()).await?)
}

/// Takes `row` for firing, inside `tx`: false when it moved (another event came) or another
/// replica took it.
pub async fn take(tx: &mut Transaction<'_, Any>, row: &DueRow) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM rechecks_due WHERE installation_id = $1 AND repository_id = $2 AND issue = $3 AND due_at = $4 \
         AND events = $5",
    )
    .bind(row.installation_id)
    .bind(row.repository_id)
    .bind(row.issue)
    .bind(row.due_at)
    .bind(row.events)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// When the next row is due, if any.
pub async fn next_due(db: &Db) -> Result<Option<i64>> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT due_at FROM rechecks_due ORDER BY due_at LIMIT 1").fetch_optional(db.pool()).await?;
    Ok(row.map(|r| r.0))
}

/// Rows waiting (for `shipgate` status and the tests' "settled").
pub async fn count(db: &Db) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM rechecks_due").fetch_one(db.pool()).await?;
    Ok(n)
}

/// Wakes this process's timer when a row is scheduled (other replicas find it by polling).
pub static SCHEDULED: tokio::sync::Notify = tokio::sync::Notify::const_new();
