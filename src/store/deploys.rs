//! Deployments the App has seen or made, and workflow runs waiting on its deployment protection
//! rule (SPEC.md §3.5), scoped by installation and repository.

use sqlx::{Any, Transaction};

use super::{Db, Result};

/// A deployment and one of its statuses, as a `deployment_status` event tells it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct DeploymentRow {
    pub installation_id: i64,
    pub repository_id: i64,
    pub deployment_id: i64,
    pub environment: String,
    pub sha: String,
    pub git_ref: Option<String>,
    pub issue: Option<i64>,
    pub state: String,
    pub status_at: i64,
    /// GitHub's id of that status: statuses made in the same second are ordered by it.
    pub status_id: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Who made it: `app` (created by the App), `approved` (approved through its protection
    /// rule), `actions` (a GitHub Actions workflow) or `manual` (anyone else's token).
    pub origin: String,
    /// The newest status's link to its log (the run that deployed), when it gives one.
    pub log_url: Option<String>,
    /// 1: a `/rollback` (its request was rolling back to this commit when it was seen).
    pub rollback: i64,
}

/// Origins whose deployments count as a request's own, and as the commit to roll back to.
pub const APP_ORIGINS: &str = "('app', 'approved')";

/// Is `state` the end of a deployment?
pub fn is_final(state: &str) -> bool {
    matches!(state, "success" | "failure" | "error")
}

/// Records a status. Statuses can arrive out of order: an older one (by time, then by GitHub's
/// status id, since times have one-second precision) never replaces a newer one; the start is the
/// earliest `in_progress`, the end belongs to the newest final status, and a success is
/// remembered even after GitHub marks the deployment `inactive` (as it does to an environment's
/// earlier deployments).
pub async fn record(tx: &mut Transaction<'_, Any>, d: &DeploymentRow) -> Result<()> {
    const NEWER: &str = "(excluded.status_at > deployments.status_at OR (excluded.status_at = deployments.status_at \
        AND excluded.status_id >= deployments.status_id))";
    let sql = format!(
        "INSERT INTO deployments (installation_id, repository_id, deployment_id, environment, sha, ref, issue, state, \
         status_at, status_id, created_at, started_at, finished_at, succeeded_at, origin, log_url, rollback) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (installation_id, repository_id, deployment_id) DO UPDATE SET \
         issue = COALESCE(deployments.issue, excluded.issue), \
         origin = CASE WHEN deployments.origin IN ('app', 'approved') THEN deployments.origin ELSE excluded.origin END, \
         state = CASE WHEN {NEWER} THEN excluded.state ELSE deployments.state END, \
         finished_at = CASE WHEN {NEWER} \
             THEN COALESCE(excluded.finished_at, deployments.finished_at) \
             ELSE COALESCE(deployments.finished_at, excluded.finished_at) END, \
         status_at = CASE WHEN {NEWER} THEN excluded.status_at ELSE deployments.status_at END, \
         status_id = CASE WHEN {NEWER} THEN excluded.status_id ELSE deployments.status_id END, \
         started_at = CASE WHEN deployments.started_at IS NULL THEN excluded.started_at \
             WHEN excluded.started_at IS NULL THEN deployments.started_at \
             WHEN excluded.started_at < deployments.started_at THEN excluded.started_at ELSE deployments.started_at END, \
         succeeded_at = COALESCE(deployments.succeeded_at, excluded.succeeded_at), \
         rollback = CASE WHEN deployments.rollback = 1 THEN 1 ELSE excluded.rollback END, \
         log_url = CASE WHEN {NEWER} THEN COALESCE(excluded.log_url, deployments.log_url) \
             ELSE COALESCE(deployments.log_url, excluded.log_url) END"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(d.installation_id)
        .bind(d.repository_id)
        .bind(d.deployment_id)
        .bind(&d.environment)
        .bind(&d.sha)
        .bind(&d.git_ref)
        .bind(d.issue)
        .bind(&d.state)
        .bind(d.status_at)
        .bind(d.status_id)
        .bind(d.created_at)
        .bind(d.started_at)
        .bind(d.finished_at)
        .bind((d.state == "success").then_some(d.status_at))
        .bind(&d.origin)
        .bind(&d.log_url)
        .bind(d.rollback)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const DEPLOYMENT_COLUMNS: &str = "installation_id, repository_id, deployment_id, environment, sha, ref AS git_ref, \
    issue, state, status_at, status_id, created_at, started_at, finished_at, origin, log_url, rollback";

/// A request's deployments (the ones the App tied to its issue), oldest first, at most 200.
pub async fn for_request(db: &Db, installation: i64, repository_id: i64, issue: i64) -> Result<Vec<DeploymentRow>> {
    let sql = format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE installation_id = $1 AND repository_id = $2 AND issue = $3 \
         ORDER BY created_at, deployment_id LIMIT 200"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(installation)
        .bind(repository_id)
        .bind(issue)
        .fetch_all(db.pool())
        .await?)
}

pub async fn get(db: &Db, installation: i64, repository_id: i64, deployment_id: i64) -> Result<Option<DeploymentRow>> {
    let sql = format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE installation_id = $1 AND repository_id = $2 \
         AND deployment_id = $3"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(installation)
        .bind(repository_id)
        .bind(deployment_id)
        .fetch_optional(db.pool())
        .await?)
}

/// Is deployment `deployment_id` of `repository` the App's own? `("app", issue)` when the App
/// created it for request `issue` (the id GitHub answered, kept in `github_objects`), or
/// `("approved", issue)` when request `issue` approved it through the App's protection rule.
pub async fn own_deployment(
    db: &Db,
    installation: i64,
    repository_id: i64,
    repository: &str,
    deployment_id: i64,
) -> Result<Option<(String, i64)>> {
    let approved: Option<(Option<i64>,)> = sqlx::query_as(
        "SELECT issue FROM protection_rules WHERE installation_id = $1 AND repository_id = $2 \
         AND deployment_id = $3 AND state = 'approved' LIMIT 1",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(deployment_id)
    .fetch_optional(db.pool())
    .await?;
    if let Some((Some(issue),)) = approved {
        return Ok(Some(("approved".into(), issue)));
    }
    let created: Vec<(String,)> = sqlx::query_as(
        "SELECT key FROM github_objects WHERE installation_id = $1 AND kind = 'deployment' AND github_id = $2",
    )
    .bind(installation)
    .bind(deployment_id)
    .fetch_all(db.pool())
    .await?;
    // Keys are `{owner/name}:{request|rollback}-{issue}-{comment id}`.
    let prefix = format!("{repository}:");
    for (key,) in created {
        let Some(rest) = key.strip_prefix(&prefix) else { continue };
        let mut parts = rest.split('-');
        if let (Some("request" | "rollback"), Some(Ok(issue))) = (parts.next(), parts.next().map(str::parse::<i64>)) {
            return Ok(Some(("app".into(), issue)));
        }
    }
    Ok(None)
}

/// Has `sha` deployed successfully to `environment` (as far as the App has seen), in a deployment
/// made by the App or by GitHub Actions? One a person made with their own token is no evidence.
pub async fn succeeded(db: &Db, installation: i64, repository_id: i64, environment: &str, sha: &str) -> Result<bool> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT deployment_id FROM deployments WHERE installation_id = $1 AND repository_id = $2 \
         AND LOWER(environment) = LOWER($3) AND sha = $4 AND succeeded_at IS NOT NULL \
         AND origin IN ('app', 'approved', 'actions') LIMIT 1",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(environment)
    .bind(sha)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.is_some())
}

/// The SHA of the newest successful deployment to `environment` other than `except` that the App
/// created or approved (never one only a hand-made deployment vouches for).
pub async fn last_success(
    db: &Db,
    installation: i64,
    repository_id: i64,
    environment: &str,
    except: &str,
) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT sha FROM deployments WHERE installation_id = $1 AND repository_id = $2 \
         AND LOWER(environment) = LOWER($3) AND succeeded_at IS NOT NULL AND sha <> $4 \
         AND origin IN ('app', 'approved') \
         ORDER BY succeeded_at DESC, deployment_id DESC LIMIT 1",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(environment)
    .bind(except)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.0))
}

/// The workflow run that deployed `sha` successfully to `environment` through the gate (the App
/// approved its protection rule, or answered its job at `/gate/wait`), newest first: what
/// `/rollback` re-runs in deploy modes `protection_rule` and `workflow`.
pub async fn run_of_success(
    db: &Db,
    installation: i64,
    repository_id: i64,
    environment: &str,
    sha: &str,
) -> Result<Option<i64>> {
    let by_rule: Option<(i64,)> = sqlx::query_as(
        "SELECT p.run_id FROM protection_rules p JOIN deployments d ON d.installation_id = p.installation_id \
         AND d.repository_id = p.repository_id AND d.deployment_id = p.deployment_id \
         WHERE p.installation_id = $1 AND p.repository_id = $2 AND p.state = 'approved' AND d.sha = $3 \
         AND LOWER(d.environment) = LOWER($4) AND d.succeeded_at IS NOT NULL \
         ORDER BY d.succeeded_at DESC LIMIT 1",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(sha)
    .bind(environment)
    .fetch_optional(db.pool())
    .await?;
    if let Some((run,)) = by_rule {
        return Ok(Some(run));
    }
    let by_wait: Option<(i64,)> = sqlx::query_as(
        "SELECT g.run_id FROM gate_waits g WHERE g.installation_id = $1 AND g.repository_id = $2 \
         AND g.state = 'approved' AND LOWER(g.sha) = LOWER($3) AND LOWER(g.environment) = LOWER($4) \
         AND EXISTS (SELECT 1 FROM deployments d WHERE d.installation_id = g.installation_id \
         AND d.repository_id = g.repository_id AND d.sha = $3 AND LOWER(d.environment) = LOWER($4) \
         AND d.succeeded_at IS NOT NULL AND d.origin = 'approved') \
         ORDER BY g.answered_at DESC LIMIT 1",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(sha)
    .bind(environment)
    .fetch_optional(db.pool())
    .await?;
    Ok(by_wait.map(|r| r.0))
}

/// The workflow runs request `issue` let deploy (its protection rule answers and `/gate/wait`
/// answers): their own jobs are deploys, not tests.
pub async fn approved_runs(db: &Db, installation: i64, repository_id: i64, issue: i64) -> Result<Vec<i64>> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT run_id FROM protection_rules WHERE installation_id = $1 AND repository_id = $2 AND issue = $3 \
         AND state = 'approved' UNION SELECT run_id FROM gate_waits WHERE installation_id = $1 \
         AND repository_id = $2 AND issue = $3 AND state = 'approved'",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(issue)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// A workflow run waiting on the App's protection rule.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct RuleRow {
    pub installation_id: i64,
    pub repository_id: i64,
    pub repository: String,
    pub run_id: i64,
    pub environment: String,
    pub sha: String,
    pub git_ref: Option<String>,
    /// The deployment GitHub made for this attempt of the run (a re-run of the run is a new one).
    pub deployment_id: i64,
    pub state: String,
    pub issue: Option<i64>,
    pub report: Option<String>,
    pub received_at: i64,
}

/// Keeps a callback. The same run, environment and deployment again changes nothing; a re-run of
/// the run (same run id, a new deployment) waits again, even if an earlier attempt was answered.
pub async fn save_rule(tx: &mut Transaction<'_, Any>, r: &RuleRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO protection_rules (installation_id, repository_id, repository, run_id, environment, sha, ref, \
         deployment_id, state, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9) \
         ON CONFLICT (installation_id, repository_id, run_id, environment) DO UPDATE SET state = 'pending', \
         sha = excluded.sha, ref = excluded.ref, deployment_id = excluded.deployment_id, issue = NULL, report = NULL, \
         answered_at = NULL, received_at = excluded.received_at \
         WHERE protection_rules.deployment_id <> excluded.deployment_id",
    )
    .bind(r.installation_id)
    .bind(r.repository_id)
    .bind(&r.repository)
    .bind(r.run_id)
    .bind(&r.environment)
    .bind(&r.sha)
    .bind(&r.git_ref)
    .bind(r.deployment_id)
    .bind(r.received_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The runs of a repository still waiting for `environment` (case-insensitive), oldest first.
pub async fn pending_rules(db: &Db, installation: i64, repository_id: i64, environment: &str) -> Result<Vec<RuleRow>> {
    Ok(sqlx::query_as(
        "SELECT installation_id, repository_id, repository, run_id, environment, sha, ref AS git_ref, deployment_id, \
         state, issue, report, received_at FROM protection_rules WHERE installation_id = $1 AND repository_id = $2 \
         AND state = 'pending' AND LOWER(environment) = LOWER($3) ORDER BY received_at, run_id",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(environment)
    .fetch_all(db.pool())
    .await?)
}

/// Answers a pending run (`approved` or `rejected`); false when it was answered already.
#[allow(clippy::too_many_arguments)]
pub async fn answer_rule(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    repository_id: i64,
    run_id: i64,
    environment: &str,
    state: &str,
    issue: i64,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE protection_rules SET state = $1, issue = $2, answered_at = $3 WHERE installation_id = $4 \
         AND repository_id = $5 AND run_id = $6 AND environment = $7 AND state = 'pending'",
    )
    .bind(state)
    .bind(issue)
    .bind(now)
    .bind(installation)
    .bind(repository_id)
    .bind(run_id)
    .bind(environment)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Remembers what the last status report on a pending run said.
pub async fn set_rule_report(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    repository_id: i64,
    run_id: i64,
    environment: &str,
    report: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE protection_rules SET report = $1 WHERE installation_id = $2 AND repository_id = $3 AND run_id = $4 \
         AND environment = $5 AND state = 'pending' AND (report IS NULL OR report <> $1)",
    )
    .bind(report)
    .bind(installation)
    .bind(repository_id)
    .bind(run_id)
    .bind(environment)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}
