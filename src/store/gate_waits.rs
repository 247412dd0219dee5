//! Jobs waiting at `POST /gate/wait` (deploy mode `workflow`): one row per (run, environment),
//! answered by the request that covers the run's commit, read back by the waiting HTTP call.

use sqlx::{Any, Transaction};

use super::{Db, Result};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct GateWait {
    pub installation_id: i64,
    pub repository_id: i64,
    pub repository: String,
    pub run_id: i64,
    pub environment: String,
    pub sha: String,
    pub git_ref: String,
    /// pending | approved | rejected
    pub state: String,
    pub issue: Option<i64>,
    /// JSON list of what the gate waits for.
    pub missing: String,
    pub report: Option<String>,
    pub received_at: i64,
    pub answered_at: Option<i64>,
}

const COLUMNS: &str = "installation_id, repository_id, repository, run_id, environment, sha, git_ref, state, issue, \
    missing, report, received_at, answered_at";

/// A new wait of the run (or the same run waiting again): pending until a request decides, for
/// this commit and ref (a re-run of the run waits afresh; an earlier answer never carries over,
/// though what it last waited for is kept until the next report).
pub async fn begin(db: &Db, w: &GateWait) -> Result<()> {
    sqlx::query(
        "INSERT INTO gate_waits (installation_id, repository_id, repository, run_id, environment, sha, git_ref, state, \
         missing, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', '[]', $8) \
         ON CONFLICT (installation_id, repository_id, run_id, environment) DO UPDATE SET state = 'pending', \
         sha = excluded.sha, git_ref = excluded.git_ref, received_at = excluded.received_at, answered_at = NULL",
    )
    .bind(w.installation_id)
    .bind(w.repository_id)
    .bind(&w.repository)
    .bind(w.run_id)
    .bind(&w.environment)
    .bind(&w.sha)
    .bind(&w.git_ref)
    .bind(w.received_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn get(
    db: &Db,
    installation: i64,
    repository_id: i64,
    run_id: i64,
    environment: &str,
) -> Result<Option<GateWait>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM gate_waits WHERE installation_id = $1 AND repository_id = $2 AND run_id = $3 \
         AND environment = $4"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(installation)
        .bind(repository_id)
        .bind(run_id)
        .bind(environment)
        .fetch_optional(db.pool())
        .await?)
}

/// The waits still pending in an environment (the policy's name for it, compared ignoring case).
pub async fn pending(db: &Db, installation: i64, repository_id: i64, environment: &str) -> Result<Vec<GateWait>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM gate_waits WHERE installation_id = $1 AND repository_id = $2 \
         AND LOWER(environment) = LOWER($3) AND state = 'pending' ORDER BY run_id"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(installation)
        .bind(repository_id)
        .bind(environment)
        .fetch_all(db.pool())
        .await?)
}

/// Decides a pending wait (approved or rejected) for request `issue`; false if it was not pending.
#[allow(clippy::too_many_arguments)]
pub async fn answer(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    repository_id: i64,
    run_id: i64,
    environment: &str,
    state: &str,
    issue: i64,
    text: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE gate_waits SET state = $1, issue = $2, answered_at = $3, report = $8, missing = '[]' \
         WHERE installation_id = $4 AND repository_id = $5 AND run_id = $6 AND environment = $7 AND state = 'pending'",
    )
    .bind(state)
    .bind(issue)
    .bind(now)
    .bind(installation)
    .bind(repository_id)
    .bind(run_id)
    .bind(environment)
    .bind(text)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// What a pending wait is waiting for (said to the job while it waits).
#[allow(clippy::too_many_arguments)]
pub async fn report(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    repository_id: i64,
    run_id: i64,
    environment: &str,
    issue: Option<i64>,
    missing: &[String],
    text: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE gate_waits SET missing = $1, report = $2, issue = COALESCE($3, issue) WHERE installation_id = $4 \
         AND repository_id = $5 AND run_id = $6 AND environment = $7 AND state = 'pending'",
    )
    .bind(serde_json::to_string(missing).unwrap_or_else(|_| "[]".into()))
    .bind(text)
    .bind(issue)
    .bind(installation)
    .bind(repository_id)
    .bind(run_id)
    .bind(environment)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The request a deployment belongs to when the workflow run that made it was answered `open`
/// for that commit and environment (SPEC §3.5: a deployment the App approved).
pub async fn approved_run(
    db: &Db,
    installation: i64,
    repository_id: i64,
    run_id: i64,
    environment: &str,
    sha: &str,
) -> Result<Option<i64>> {
    let row: Option<(Option<i64>,)> = sqlx::query_as(
        "SELECT issue FROM gate_waits WHERE installation_id = $1 AND repository_id = $2 AND run_id = $3 \
         AND LOWER(environment) = LOWER($4) AND LOWER(sha) = LOWER($5) AND state = 'approved' LIMIT 1",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(run_id)
    .bind(environment)
    .bind(sha)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.and_then(|r| r.0))
}

/// Wakes the HTTP calls waiting in this process when a wait may have been decided (they read
/// their row again; a call on another replica finds out at its next poll).
pub static DECIDED: tokio::sync::Notify = tokio::sync::Notify::const_new();
