//! Deployment requests and their approvals, scoped by installation and repository.

use serde::Serialize;
use sqlx::{Any, Transaction};

use super::{Db, Result};
pub use crate::domain::state::{ApprovalChange, Link, RequestRow};

impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for RequestRow {
    fn from_row(r: &'r sqlx::any::AnyRow) -> std::result::Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(RequestRow {
            installation_id: r.try_get("installation_id")?,
            repository_id: r.try_get("repository_id")?,
            repository: r.try_get("repository")?,
            issue: r.try_get("issue")?,
            author_id: r.try_get("author_id")?,
            author_login: r.try_get("author_login")?,
            labelled: r.try_get("labelled")?,
            open: r.try_get("open")?,
            environment: r.try_get("environment")?,
            fingerprint: r.try_get("fingerprint")?,
            revision: r.try_get("revision")?,
            hold_by: r.try_get("hold_by")?,
            denied_by: r.try_get("denied_by")?,
            deny_reason: r.try_get("deny_reason")?,
            gate_open: r.try_get("gate_open")?,
            state: r.try_get("state")?,
            facts: r.try_get("facts")?,
            labels: r.try_get("labels")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            deploy_key: r.try_get("deploy_key")?,
            deployment_id: r.try_get("deployment_id")?,
            deploy_state: r.try_get("deploy_state")?,
            deploy_sha: r.try_get("deploy_sha")?,
            approved_at: r.try_get("approved_at")?,
            deploy_requested_at: r.try_get("deploy_requested_at")?,
            hold_by_id: r.try_get("hold_by_id")?,
            denied_by_id: r.try_get("denied_by_id")?,
            rollback_run_id: r.try_get("rollback_run_id")?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow, Serialize)]
pub struct ApprovalRow {
    pub seq: i64,
    pub comment_id: i64,
    pub user_id: i64,
    pub login: String,
    pub roles: String,
    pub environment: String,
    pub head_shas: String,
    pub revision: i64,
    pub state: String,
    pub note: Option<String>,
    pub created_at: i64,
}

/// Every column of `requests`, in `RequestRow`'s order.
pub const COLUMNS: &str = "installation_id, repository_id, repository, issue, author_id, author_login, labelled, open, \
    environment, fingerprint, revision, hold_by, denied_by, deny_reason, gate_open, state, facts, labels, created_at, updated_at, \
    deploy_key, deployment_id, deploy_state, deploy_sha, approved_at, deploy_requested_at, hold_by_id, denied_by_id, rollback_run_id";

pub async fn get(db: &Db, installation: i64, repository_id: i64, issue: i64) -> Result<Option<RequestRow>> {
    let sql =
        format!("SELECT {COLUMNS} FROM requests WHERE installation_id = $1 AND repository_id = $2 AND issue = $3");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(installation)
        .bind(repository_id)
        .bind(issue)
        .fetch_optional(db.pool())
        .await?)
}

/// Open requests of a repository that link `value` as `kind` (a PR number, or a full SHA
/// compared lowercase), by index.
pub async fn open_linking(db: &Db, installation: i64, repository_id: i64, kind: Link, value: &str) -> Result<Vec<i64>> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT r.issue FROM request_links l JOIN requests r ON r.installation_id = l.installation_id \
         AND r.repository_id = l.repository_id AND r.issue = l.issue \
         WHERE l.installation_id = $1 AND l.repository_id = $2 AND l.kind = $3 AND l.value = $4 \
         AND r.open = 1 AND r.labelled = 1 ORDER BY r.issue",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(kind.as_str())
    .bind(value.to_ascii_lowercase())
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Replaces what request `issue` links.
pub async fn save_links(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    repository_id: i64,
    issue: i64,
    links: &[(Link, String)],
) -> Result<()> {
    sqlx::query("DELETE FROM request_links WHERE installation_id = $1 AND repository_id = $2 AND issue = $3")
        .bind(installation)
        .bind(repository_id)
        .bind(issue)
        .execute(&mut **tx)
        .await?;
    let mut seen = std::collections::BTreeSet::new();
    for (kind, value) in links {
        let value = value.to_ascii_lowercase();
        if !seen.insert((*kind, value.clone())) {
            continue;
        }
        sqlx::query(
            "INSERT INTO request_links (installation_id, repository_id, issue, kind, value) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(installation)
        .bind(repository_id)
        .bind(issue)
        .bind(kind.as_str())
        .bind(value)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Requests of a repository holding an approval (current or stale, not withdrawn) given by
/// comment `comment_id` (a comment on a linked PR approves on the request it was applied to).
pub async fn approved_by_comment(db: &Db, installation: i64, repository_id: i64, comment_id: i64) -> Result<Vec<i64>> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT DISTINCT issue FROM approvals WHERE installation_id = $1 AND repository_id = $2 AND comment_id = $3 \
         AND state <> 'withdrawn' ORDER BY issue",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(comment_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// What request `issue` remembers (`facts`), with check events folded in; nothing else of the
/// request changes (not even when it was last updated).
pub async fn save_facts(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    repository_id: i64,
    issue: i64,
    facts: &str,
) -> Result<()> {
    sqlx::query("UPDATE requests SET facts = $1 WHERE installation_id = $2 AND repository_id = $3 AND issue = $4")
        .bind(facts)
        .bind(installation)
        .bind(repository_id)
        .bind(issue)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records that `user_id` pushed to pull request `pr` (the sender of a push event).
pub async fn record_pusher(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    repository_id: i64,
    pr: i64,
    user_id: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO pr_pushers (installation_id, repository_id, pr, user_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (installation_id, repository_id, pr, user_id) DO NOTHING",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(pr)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Everyone recorded as having pushed to pull request `pr`.
pub async fn pushers(db: &Db, installation: i64, repository_id: i64, pr: i64) -> Result<Vec<i64>> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT user_id FROM pr_pushers WHERE installation_id = $1 AND repository_id = $2 AND pr = $3 ORDER BY user_id",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(pr)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// The account ids that policy logins were pinned to: lowercase login -> id.
pub async fn pinned_logins(
    db: &Db,
    installation: i64,
    logins: &[String],
) -> Result<std::collections::BTreeMap<String, i64>> {
    let mut out = std::collections::BTreeMap::new();
    for login in logins {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT user_id FROM pinned_logins WHERE installation_id = $1 AND login = $2")
                .bind(installation)
                .bind(login.to_ascii_lowercase())
                .fetch_optional(db.pool())
                .await?;
        if let Some((id,)) = row {
            out.insert(login.to_ascii_lowercase(), id);
        }
    }
    Ok(out)
}

/// Pins `login` to account `user_id`; a login pinned already keeps its first account.
pub async fn pin_login(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    login: &str,
    user_id: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO pinned_logins (installation_id, login, user_id, pinned_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (installation_id, login) DO NOTHING",
    )
    .bind(installation)
    .bind(login.to_ascii_lowercase())
    .bind(user_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Open requests of an installation: (repository id, repository, issue).
pub async fn open_in_installation(db: &Db, installation: i64) -> Result<Vec<(i64, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT repository_id, repository, issue FROM requests WHERE installation_id = $1 AND open = 1 AND labelled = 1 \
         ORDER BY repository_id, issue",
    )
    .bind(installation)
    .fetch_all(db.pool())
    .await?)
}

pub async fn save(tx: &mut Transaction<'_, Any>, r: &RequestRow) -> Result<()> {
    let sql = format!(
        "INSERT INTO requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29) ON CONFLICT (installation_id, repository_id, issue) DO UPDATE SET repository = excluded.repository, \
         labelled = excluded.labelled, open = excluded.open, environment = excluded.environment, \
         fingerprint = excluded.fingerprint, revision = excluded.revision, hold_by = excluded.hold_by, \
         denied_by = excluded.denied_by, deny_reason = excluded.deny_reason, gate_open = excluded.gate_open, \
         state = excluded.state, facts = excluded.facts, labels = excluded.labels, updated_at = excluded.updated_at, \
         deploy_key = excluded.deploy_key, deployment_id = excluded.deployment_id, deploy_state = excluded.deploy_state, \
         deploy_sha = excluded.deploy_sha, approved_at = excluded.approved_at, \
         deploy_requested_at = excluded.deploy_requested_at, hold_by_id = excluded.hold_by_id, \
         denied_by_id = excluded.denied_by_id, rollback_run_id = excluded.rollback_run_id"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(r.installation_id)
        .bind(r.repository_id)
        .bind(&r.repository)
        .bind(r.issue)
        .bind(r.author_id)
        .bind(&r.author_login)
        .bind(r.labelled)
        .bind(r.open)
        .bind(&r.environment)
        .bind(&r.fingerprint)
        .bind(r.revision)
        .bind(&r.hold_by)
        .bind(&r.denied_by)
        .bind(&r.deny_reason)
        .bind(r.gate_open)
        .bind(&r.state)
        .bind(&r.facts)
        .bind(&r.labels)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(&r.deploy_key)
        .bind(r.deployment_id)
        .bind(&r.deploy_state)
        .bind(&r.deploy_sha)
        .bind(r.approved_at)
        .bind(r.deploy_requested_at)
        .bind(r.hold_by_id)
        .bind(r.denied_by_id)
        .bind(r.rollback_run_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn approvals(db: &Db, installation: i64, repository_id: i64, issue: i64) -> Result<Vec<ApprovalRow>> {
    Ok(sqlx::query_as(
        "SELECT seq, comment_id, user_id, login, roles, environment, head_shas, revision, state, note, created_at \
         FROM approvals WHERE installation_id = $1 AND repository_id = $2 AND issue = $3 ORDER BY seq",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(issue)
    .fetch_all(db.pool())
    .await?)
}

pub async fn save_approval(tx: &mut Transaction<'_, Any>, a: &ApprovalChange, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO approvals (installation_id, repository_id, issue, comment_id, user_id, login, roles, environment, \
         head_shas, revision, state, note, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14) ON CONFLICT (installation_id, repository_id, issue, comment_id) DO UPDATE SET \
         state = excluded.state, note = excluded.note, updated_at = excluded.updated_at",
    )
    .bind(a.installation_id)
    .bind(a.repository_id)
    .bind(a.issue)
    .bind(a.comment_id)
    .bind(a.user_id)
    .bind(&a.login)
    .bind(&a.roles)
    .bind(&a.environment)
    .bind(&a.head_shas)
    .bind(a.revision)
    .bind(a.state.as_str())
    .bind(&a.note)
    .bind(a.given_at.unwrap_or(now).min(now))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The cached policy file of a repository: (blob SHA, YAML); blob "" means no file.
pub async fn policy(db: &Db, installation: i64, repository_id: i64) -> Result<Option<(String, Option<String>)>> {
    Ok(sqlx::query_as("SELECT blob_sha, yaml FROM policies WHERE installation_id = $1 AND repository_id = $2")
        .bind(installation)
        .bind(repository_id)
        .fetch_optional(db.pool())
        .await?)
}

/// The cached policy (blob SHA, text) and the entity tag it was read with (for a conditional read).
pub async fn policy_with_etag(
    db: &Db,
    installation: i64,
    repository_id: i64,
) -> Result<Option<(String, Option<String>, Option<String>)>> {
    Ok(sqlx::query_as("SELECT blob_sha, yaml, etag FROM policies WHERE installation_id = $1 AND repository_id = $2")
        .bind(installation)
        .bind(repository_id)
        .fetch_optional(db.pool())
        .await?)
}

/// Stores the policy as read; returns the one it replaces (blob SHA, text), if any.
pub async fn save_policy(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    repository_id: i64,
    blob: &str,
    yaml: Option<&str>,
    etag: Option<&str>,
    now: i64,
) -> Result<Option<(String, Option<String>)>> {
    let before: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT blob_sha, yaml FROM policies WHERE installation_id = $1 AND repository_id = $2")
            .bind(installation)
            .bind(repository_id)
            .fetch_optional(&mut **tx)
            .await?;
    sqlx::query(
        "INSERT INTO policies (installation_id, repository_id, blob_sha, yaml, fetched_at, etag) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (installation_id, repository_id) DO UPDATE SET blob_sha = excluded.blob_sha, yaml = excluded.yaml, \
         fetched_at = excluded.fetched_at, etag = excluded.etag",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(blob)
    .bind(yaml)
    .bind(now)
    .bind(etag)
    .execute(&mut **tx)
    .await?;
    if let Some(text) = yaml.filter(|_| !blob.is_empty()) {
        keep_policy_text(tx, installation, repository_id, blob, text, now).await?;
    }
    Ok(before)
}

/// Keeps a version of the policy file by its blob SHA (`policy_texts`, append-only: a blob kept
/// already is left as it is), for the evidence pack: `policies` holds only the current one.
pub async fn keep_policy_text(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    repository_id: i64,
    blob: &str,
    yaml: &str,
    now: i64,
) -> Result<()> {
    // Not `ON CONFLICT DO NOTHING` alone: SQLite's trigger refusing replacing inserts fires first.
    sqlx::query(
        "INSERT INTO policy_texts (installation_id, repository_id, blob_sha, yaml, first_seen_at) \
         SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM policy_texts WHERE installation_id = $1 \
         AND repository_id = $2 AND blob_sha = $3) ON CONFLICT DO NOTHING",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(blob)
    .bind(yaml)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A version of the policy file kept by [`keep_policy_text`].
pub async fn policy_text(db: &Db, installation: i64, repository_id: i64, blob: &str) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT yaml FROM policy_texts WHERE installation_id = $1 AND repository_id = $2 AND blob_sha = $3",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(blob)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.0))
}

/// The policy in force for a repository as the transaction sees it: (blob SHA, SHA-256 of the
/// text); None when none was read yet, a blob "" when there is no file.
pub async fn policy_in_force(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    repository_id: i64,
) -> Result<Option<(String, Option<String>)>> {
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT blob_sha, yaml FROM policies WHERE installation_id = $1 AND repository_id = $2")
            .bind(installation)
            .bind(repository_id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(|(blob, yaml)| {
        use sha2::Digest;
        (blob, yaml.map(|y| hex::encode(sha2::Sha256::digest(y.as_bytes()))))
    }))
}

pub async fn forget_policy(tx: &mut Transaction<'_, Any>, installation: i64, repository_id: i64) -> Result<()> {
    sqlx::query("DELETE FROM policies WHERE installation_id = $1 AND repository_id = $2")
        .bind(installation)
        .bind(repository_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Open requests of a repository for `environment` (case-insensitive).
/// Requests (open or closed, still labelled) whose `/rollback` waits for a run deploying `sha` to
/// `environment`: they approve it.
pub async fn rolling_back_to(
    db: &Db,
    installation: i64,
    repository_id: i64,
    environment: &str,
    sha: &str,
    run_id: i64,
) -> Result<Vec<i64>> {
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT issue, deploy_key FROM requests WHERE installation_id = $1 AND repository_id = $2 AND labelled = 1 \
         AND deploy_state = 'requested' AND LOWER(deploy_sha) = LOWER($3) AND rollback_run_id = $5 \
         AND LOWER(environment) = LOWER($4) ORDER BY issue",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(sha)
    .bind(environment)
    .bind(run_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, k)| k.as_deref().is_some_and(|k| k.starts_with("rollback-")))
        .map(|r| r.0)
        .collect())
}

pub async fn open_for_environment(
    db: &Db,
    installation: i64,
    repository_id: i64,
    environment: &str,
) -> Result<Vec<i64>> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT issue FROM requests WHERE installation_id = $1 AND repository_id = $2 AND open = 1 AND labelled = 1 \
         AND LOWER(environment) = LOWER($3) ORDER BY issue",
    )
    .bind(installation)
    .bind(repository_id)
    .bind(environment)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}
