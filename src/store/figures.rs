//! The facts the team's figures are computed from (`domain::figures`), read for one repository:
//! its deployments, completed runs, incidents, open requests and flaky re-runs since a moment.
//! Every query is bounded by the repository's key and a time, on indexes the tables have.

use serde_json::Value;

use super::{Db, Result};
use crate::domain::figures::{DeploymentFact, Facts, FlakyFact, IncidentFact, RequestFact, RunFact};

/// A repository whose policy asks for a weekly report (or may: its file mentions `report`).
#[derive(Clone, Debug, PartialEq)]
pub struct Reporting {
    pub installation_id: i64,
    pub repository_id: i64,
    pub repository: String,
    pub yaml: String,
}

/// Repositories of active installations whose stored policy mentions `report` (the caller parses
/// it): the weekly report's candidates.
pub async fn reporting(db: &Db) -> Result<Vec<Reporting>> {
    let rows: Vec<(i64, i64, String, String)> = sqlx::query_as(
        "SELECT p.installation_id, p.repository_id, r.full_name, p.yaml FROM policies p \
         JOIN repositories r ON r.id = p.repository_id AND r.installation_id = p.installation_id \
         LEFT JOIN installations i ON i.id = p.installation_id \
         WHERE p.yaml IS NOT NULL AND p.yaml LIKE '%report%' AND r.removed_at IS NULL \
         AND i.suspended_at IS NULL AND i.deleted_at IS NULL ORDER BY p.repository_id",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(installation_id, repository_id, repository, yaml)| Reporting {
            installation_id,
            repository_id,
            repository,
            yaml,
        })
        .collect())
}

/// Repositories of active installations with anything the figures count (a request, a run, an
/// incident or a deployment), for the `/metrics` gauges: (installation, repository id, name).
pub async fn active_repositories(db: &Db) -> Result<Vec<(i64, i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT r.installation_id, r.id, r.full_name FROM repositories r \
         LEFT JOIN installations i ON i.id = r.installation_id \
         WHERE r.removed_at IS NULL AND i.suspended_at IS NULL AND i.deleted_at IS NULL \
         AND (EXISTS (SELECT 1 FROM requests q WHERE q.installation_id = r.installation_id AND q.repository_id = r.id) \
           OR EXISTS (SELECT 1 FROM incidents n WHERE n.repository_id = r.id) \
           OR EXISTS (SELECT 1 FROM deployments d WHERE d.installation_id = r.installation_id AND d.repository_id = r.id)) \
         ORDER BY r.id",
    )
    .fetch_all(db.pool())
    .await?)
}

/// The earliest first commit of the request's linked PRs, from the facts it stored.
fn first_commit_at(facts: Option<&str>) -> Option<i64> {
    let v: Value = serde_json::from_str(facts?).ok()?;
    v["prs"].as_array()?.iter().filter_map(|p| p["first_commit_at"].as_i64()).min()
}

/// Everything `domain::figures` needs of `repository_id` from `since` on (open requests and
/// incidents whatever their age).
pub async fn facts(db: &Db, installation: i64, repository_id: i64, since: i64) -> Result<Facts> {
    type Dep = (String, Option<i64>, String, Option<i64>, i64, Option<i64>, Option<String>);
    let deployments: Vec<Dep> = sqlx::query_as(
        "SELECT d.environment, d.finished_at, d.state, d.succeeded_at, d.rollback, r.approved_at, r.facts \
         FROM deployments d LEFT JOIN requests r ON r.installation_id = d.installation_id \
         AND r.repository_id = d.repository_id AND r.issue = d.issue \
         WHERE d.installation_id = $1 AND d.repository_id = $2 AND d.finished_at >= $3",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(since)
    .fetch_all(db.pool())
    .await?;
    let deployments = deployments
        .into_iter()
        .map(|(environment, finished_at, state, succeeded_at, rollback, approved_at, facts)| DeploymentFact {
            environment,
            finished_at,
            // A success GitHub later marked inactive is still a success.
            succeeded: succeeded_at.is_some() && !matches!(state.as_str(), "failure" | "error"),
            approved_at,
            first_commit_at: first_commit_at(facts.as_deref()),
            rollback: rollback == 1,
        })
        .collect();

    let runs: Vec<(i64, i64, i64, String, i64)> = sqlx::query_as(
        "SELECT run_id, attempt, incident_branch, kind, completed_at FROM ci_runs \
         WHERE installation_id = $1 AND completed_at >= $3 AND repository_id = $2",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(since)
    .fetch_all(db.pool())
    .await?;
    let runs = runs
        .into_iter()
        .map(|(run_id, attempt, incident_branch, kind, completed_at)| RunFact {
            run_id,
            attempt,
            incident_branch: incident_branch == 1,
            kind,
            completed_at,
        })
        .collect();

    type Inc = (String, String, String, String, i64, i64, Option<i64>, i64, i64);
    let incidents: Vec<Inc> = sqlx::query_as(
        "SELECT kind, title, details, state, opened_at, first_failure_at, recovered_at, deadline, updated_at \
         FROM incidents WHERE repository_id = $1 AND installation_id = $2 \
         AND (state = 'open' OR opened_at >= $3 OR recovered_at >= $3 OR first_failure_at >= $3)",
    )
    .bind(repository_id)
    .bind(installation)
    .bind(since)
    .fetch_all(db.pool())
    .await?;
    let incidents = incidents
        .into_iter()
        .map(|(kind, title, details, state, opened_at, first_failure_at, recovered_at, deadline, updated_at)| {
            let d: Value = serde_json::from_str(&details).unwrap_or(Value::Null);
            let alert = kind == "alert";
            IncidentFact {
                category: alert.then(|| d["category"].as_str().unwrap_or_default().to_string()),
                availability: alert && d["slo"].as_str() == Some("availability"),
                critical: kind == "security" && d["severity"].as_str() == Some("critical"),
                // The first failure (an alert's latest `startsAt`) to the recovery (its `endsAt`).
                started_at: first_failure_at,
                opened_at,
                recovered_at: match (recovered_at, state.as_str()) {
                    (Some(t), _) => Some(t),
                    (None, "closed") => Some(updated_at),
                    (None, _) => None,
                },
                earlier_firings: if alert {
                    serde_json::from_value(d["earlier"].clone()).unwrap_or_default()
                } else {
                    Vec::new()
                },
                deadline,
                title,
                actor: (kind == crate::domain::breakglass::REVIEW_KIND)
                    .then(|| d["by"].as_str().map(str::to_string))
                    .flatten(),
                kind,
            }
        })
        .collect();

    let requests: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT issue, updated_at FROM requests WHERE installation_id = $1 AND repository_id = $2 \
         AND open = 1 AND labelled = 1",
    )
    .bind(installation)
    .bind(repository_id)
    .fetch_all(db.pool())
    .await?;
    let requests =
        requests.into_iter().map(|(issue, updated_at)| RequestFact { issue, open: true, updated_at }).collect();

    let flaky: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT workflow, job, at FROM ci_flaky WHERE repository_id = $1 AND installation_id = $2 AND at >= $3",
    )
    .bind(repository_id)
    .bind(installation)
    .bind(since)
    .fetch_all(db.pool())
    .await?;
    let flaky = flaky.into_iter().map(|(workflow, job, at)| FlakyFact { workflow, job, at }).collect();
    Ok(Facts { deployments, runs, incidents, requests, flaky })
}

/// The newest weekly report issue of `repository` before `label` (labels sort by week):
/// (label, issue number).
pub async fn previous_report(
    db: &Db,
    installation: i64,
    repository: &str,
    label: &str,
) -> Result<Option<(String, i64)>> {
    let prefix = format!("{repository}:{}", crate::domain::report::marker(""));
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT key, github_id FROM github_objects WHERE installation_id = $1 AND kind = 'issue' \
         AND key >= $2 AND key < $3 AND github_id > 0",
    )
    .bind(installation)
    .bind(&prefix)
    .bind(format!("{prefix}{label}"))
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, n)| Some((k.strip_prefix(&prefix)?.to_string(), n)))
        .max_by(|a, b| a.0.cmp(&b.0)))
}
