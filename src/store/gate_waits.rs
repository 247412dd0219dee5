//! Jobs waiting at `POST /gate/wait` (deploy mode `workflow`): one row per (run, attempt,
//! environment), answered by the request that covers the run's commit, read back by the waiting
//! HTTP calls. An answer, once given, is the attempt's for good (like a protection rule's): a
//! later call of the same attempt (a matrix sibling, a poll, a replayed token) reads it, and
//! never sets it back to pending; a re-run attempt waits afresh.

use sqlx::{Any, Transaction};

use super::{Db, Result};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct GateWait {
    pub installation_id: i64,
    pub repository_id: i64,
    pub repository: String,
    pub run_id: i64,
    pub run_attempt: i64,
    pub environment: String,
    pub sha: String,
    pub git_ref: String,
    /// pending | approved | rejected
    pub state: String,
    /// The request that answered, or that is evaluating it.
    pub issue: Option<i64>,
    /// JSON list of what the gate waits for.
    pub missing: String,
    pub report: Option<String>,
    pub received_at: i64,
    pub answered_at: Option<i64>,
}

const COLUMNS: &str = "installation_id, repository_id, repository, run_id, run_attempt, environment, sha, git_ref, \
    state, issue, missing, report, received_at, answered_at";

/// The attempt's first wait: stored pending. False when the attempt waits already (or was
/// answered): nothing changes, and nothing needs evaluating again.
pub async fn begin(db: &Db, w: &GateWait) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO gate_waits (installation_id, repository_id, repository, run_id, run_attempt, environment, sha, \
         git_ref, state, missing, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', '[]', $9) \
         ON CONFLICT (installation_id, repository_id, run_id, run_attempt, environment) DO NOTHING",
    )
    .bind(w.installation_id)
    .bind(w.repository_id)
    .bind(&w.repository)
    .bind(w.run_id)
    .bind(w.run_attempt)
    .bind(&w.environment)
    .bind(&w.sha)
    .bind(&w.git_ref)
    .bind(w.received_at)
    .execute(db.writer())
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn get(
    db: &Db,
    installation: i64,
    repository_id: i64,
    run_id: i64,
    run_attempt: i64,
    environment: &str,
) -> Result<Option<GateWait>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM gate_waits WHERE installation_id = $1 AND repository_id = $2 AND run_id = $3 \
         AND run_attempt = $4 AND environment = $5"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(installation)
        .bind(repository_id)
        .bind(run_id)
        .bind(run_attempt)
        .bind(environment)
        .fetch_optional(db.pool())
        .await?)
}

/// The waits of a repository still pending (the caller matches environments, with the policy's
/// rule for names: the same on every database).
pub async fn pending(db: &Db, installation: i64, repository_id: i64) -> Result<Vec<GateWait>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM gate_waits WHERE installation_id = $1 AND repository_id = $2 AND state = 'pending' \
         ORDER BY run_id, run_attempt"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(installation).bind(repository_id).fetch_all(db.pool()).await?)
}

/// Which wait an answer or a report is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitKey<'a> {
    pub installation: i64,
    pub repository_id: i64,
    pub run_id: i64,
    pub run_attempt: i64,
    pub environment: &'a str,
}

/// Decides a pending wait (approved or rejected) for request `issue`; false if it was not pending.
pub async fn answer(
    tx: &mut Transaction<'_, Any>,
    k: &WaitKey<'_>,
    state: &str,
    issue: i64,
    text: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE gate_waits SET state = $1, issue = $2, answered_at = $3, report = $4, missing = '[]' \
         WHERE installation_id = $5 AND repository_id = $6 AND run_id = $7 AND run_attempt = $8 \
         AND environment = $9 AND state = 'pending'",
    )
    .bind(state)
    .bind(issue)
    .bind(now)
    .bind(text)
    .bind(k.installation)
    .bind(k.repository_id)
    .bind(k.run_id)
    .bind(k.run_attempt)
    .bind(k.environment)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// What a pending wait is waiting for (said to the job while it waits), and the request that
/// evaluates it.
pub async fn report(
    tx: &mut Transaction<'_, Any>,
    k: &WaitKey<'_>,
    issue: Option<i64>,
    missing: &[String],
    text: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE gate_waits SET missing = $1, report = $2, issue = COALESCE($3, issue) WHERE installation_id = $4 \
         AND repository_id = $5 AND run_id = $6 AND run_attempt = $7 AND environment = $8 AND state = 'pending'",
    )
    .bind(serde_json::to_string(missing).unwrap_or_else(|_| "[]".into()))
    .bind(text)
    .bind(issue)
    .bind(k.installation)
    .bind(k.repository_id)
    .bind(k.run_id)
    .bind(k.run_attempt)
    .bind(k.environment)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The request a deployment belongs to when an attempt of the workflow run that made it was
/// answered `open` for that commit before the deployment was created (SPEC §3.5: a deployment the
/// App approved). A deployment made before the answer (a job that skipped the gate) is not.
pub async fn approved_run(
    db: &Db,
    installation: i64,
    repository_id: i64,
    run_id: i64,
    environment: &str,
    sha: &str,
    deployment_created_at: i64,
) -> Result<Option<i64>> {
    let rows: Vec<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT environment, issue, answered_at FROM gate_waits WHERE installation_id = $1 AND repository_id = $2 \
         AND run_id = $3 AND LOWER(sha) = LOWER($4) AND state = 'approved' ORDER BY run_attempt DESC",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(run_id)
    .bind(sha)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().find_map(|(env, issue, answered_at)| {
        let same_env = crate::domain::policy::eq_fold(&env, environment);
        // GitHub's times have one-second precision, and clocks differ a little.
        (same_env && answered_at.is_some_and(|at| at <= deployment_created_at + CLOCK_SLACK_MS))
            .then_some(issue)
            .flatten()
    }))
}

/// How far a deployment's creation (GitHub's clock, whole seconds) may precede the answer (ours).
const CLOCK_SLACK_MS: i64 = 2_000;

/// Wakes the HTTP calls waiting in this process once a decision about a wait is committed (they
/// read their row again; a call on another replica finds out at its next poll).
pub static DECIDED: tokio::sync::Notify = tokio::sync::Notify::const_new();
