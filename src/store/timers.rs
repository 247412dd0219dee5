//! When a request must be evaluated again with no event (issue 19): an approval expiring, a
//! freeze window starting or ending, a break-glass lapsing. One row per request, set by the
//! request's own evaluation (in its completion transaction); `queue::coalescer` fires a due row as
//! one internal recheck delivery and deletes it in the same transaction, so across replicas a row
//! fires once.

use sqlx::{Any, Transaction};

use super::{Db, Result};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct TimerRow {
    pub installation_id: i64,
    pub repository_id: i64,
    pub issue: i64,
    pub repository: String,
    pub due_at: i64,
}

const COLUMNS: &str = "installation_id, repository_id, issue, repository, due_at";

/// Sets (or, with `None`, clears) the request's timer.
pub async fn set(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    repository_id: i64,
    repository: &str,
    issue: i64,
    due_at: Option<i64>,
) -> Result<()> {
    match due_at {
        Some(at) => {
            sqlx::query(
                "INSERT INTO request_timers (installation_id, repository_id, issue, repository, due_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (installation_id, repository_id, issue) DO UPDATE SET \
                 repository = excluded.repository, due_at = excluded.due_at",
            )
            .bind(installation)
            .bind(repository_id)
            .bind(issue)
            .bind(repository)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM request_timers WHERE installation_id = $1 AND repository_id = $2 AND issue = $3")
                .bind(installation)
                .bind(repository_id)
                .bind(issue)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// Rows due at `now`, oldest first (at most `limit`).
pub async fn due(db: &Db, now: i64, limit: i64) -> Result<Vec<TimerRow>> {
    let sql = format!("SELECT {COLUMNS} FROM request_timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(now).bind(limit).fetch_all(db.pool()).await?)
}

/// Takes `row` for firing, inside `tx`: false when it moved or another replica took it.
pub async fn take(tx: &mut Transaction<'_, Any>, row: &TimerRow) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM request_timers WHERE installation_id = $1 AND repository_id = $2 AND issue = $3 AND due_at = $4",
    )
    .bind(row.installation_id)
    .bind(row.repository_id)
    .bind(row.issue)
    .bind(row.due_at)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// When the next timer is due, if any.
pub async fn next_due(db: &Db) -> Result<Option<i64>> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT due_at FROM request_timers ORDER BY due_at LIMIT 1").fetch_optional(db.pool()).await?;
    Ok(row.map(|r| r.0))
}

/// One request's timer (tests, and `shipgate` status).
pub async fn get(db: &Db, installation: i64, repository_id: i64, issue: i64) -> Result<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT due_at FROM request_timers WHERE installation_id = $1 AND repository_id = $2 AND issue = $3",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(issue)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.0))
}
