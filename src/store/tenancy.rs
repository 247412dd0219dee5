//! Installations of the App and the repositories each one serves: every later table is scoped by
//! installation, so one tenant's data never shows in another's.

use serde::Serialize;
use sqlx::{Any, Transaction};

use super::{Db, Result};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstallationRecord {
    pub id: i64,
    pub account_id: i64,
    pub account_login: String,
    pub account_type: Option<String>,
    pub repository_selection: Option<String>,
    pub permissions: String,
    pub events: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RepositoryRecord {
    pub id: i64,
    pub full_name: String,
    pub private: bool,
}

#[derive(Clone, Debug, sqlx::FromRow, Serialize)]
pub struct InstallationRow {
    pub id: i64,
    pub account_id: i64,
    pub account_login: String,
    pub account_type: Option<String>,
    pub repository_selection: Option<String>,
    pub permissions: String,
    pub events: String,
    pub suspended_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

#[derive(Clone, Debug, sqlx::FromRow, Serialize)]
pub struct RepositoryRow {
    pub id: i64,
    pub installation_id: i64,
    pub full_name: String,
    pub private: i64,
    pub removed_at: Option<i64>,
}

pub async fn upsert_installation(tx: &mut Transaction<'_, Any>, i: &InstallationRecord, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO installations (id, account_id, account_login, account_type, repository_selection, permissions, \
         events, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
         ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, account_login = excluded.account_login, \
         account_type = excluded.account_type, repository_selection = excluded.repository_selection, \
         permissions = excluded.permissions, events = excluded.events, deleted_at = NULL, updated_at = excluded.updated_at",
    )
    .bind(i.id)
    .bind(i.account_id)
    .bind(&i.account_login)
    .bind(&i.account_type)
    .bind(&i.repository_selection)
    .bind(&i.permissions)
    .bind(&i.events)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_suspended(tx: &mut Transaction<'_, Any>, id: i64, suspended: bool, now: i64) -> Result<()> {
    sqlx::query("UPDATE installations SET suspended_at = $1, updated_at = $2 WHERE id = $3")
        .bind(if suspended { Some(now) } else { None })
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn mark_deleted(tx: &mut Transaction<'_, Any>, id: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE installations SET deleted_at = $1, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE repositories SET removed_at = $1, updated_at = $1 WHERE installation_id = $2 AND removed_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn upsert_repositories(
    tx: &mut Transaction<'_, Any>,
    installation_id: i64,
    repos: &[RepositoryRecord],
    now: i64,
) -> Result<()> {
    for r in repos {
        sqlx::query(
            "INSERT INTO repositories (id, installation_id, full_name, private, removed_at, updated_at) \
             VALUES ($1, $2, $3, $4, NULL, $5) ON CONFLICT (id) DO UPDATE SET installation_id = excluded.installation_id, \
             full_name = excluded.full_name, private = excluded.private, removed_at = NULL, updated_at = excluded.updated_at",
        )
        .bind(r.id)
        .bind(installation_id)
        .bind(&r.full_name)
        .bind(r.private as i64)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A repository the App has just read a policy of, with this installation's token: known from
/// now on if no installation event listed it (an installation made before the App first ran).
/// Never changes a repository already known (its removal, its installation), nor an installation
/// already known (one first known this way has its account's login and id 0 until its own event
/// says more).
pub async fn seen_repository(
    tx: &mut Transaction<'_, Any>,
    installation_id: i64,
    repository_id: i64,
    full_name: &str,
    now: i64,
) -> Result<()> {
    let owner = full_name.split_once('/').map_or(full_name, |(o, _)| o);
    sqlx::query(
        "INSERT INTO installations (id, account_id, account_login, created_at, updated_at) VALUES ($1, 0, $2, $3, $3) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(installation_id)
    .bind(owner)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO repositories (id, installation_id, full_name, private, removed_at, updated_at) \
         VALUES ($1, $2, $3, 0, NULL, $4) ON CONFLICT (id) DO NOTHING",
    )
    .bind(repository_id)
    .bind(installation_id)
    .bind(full_name)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn remove_repositories(
    tx: &mut Transaction<'_, Any>,
    installation_id: i64,
    repo_ids: &[i64],
    now: i64,
) -> Result<()> {
    for id in repo_ids {
        sqlx::query("UPDATE repositories SET removed_at = $1, updated_at = $1 WHERE id = $2 AND installation_id = $3")
            .bind(now)
            .bind(id)
            .bind(installation_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub async fn installation(db: &Db, id: i64) -> Result<Option<InstallationRow>> {
    Ok(sqlx::query_as(
        "SELECT id, account_id, account_login, account_type, repository_selection, permissions, events, \
         suspended_at, deleted_at FROM installations WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?)
}

/// True when the installation is known to be deleted or suspended: the App must not act for it.
/// An installation the App has not heard of yet (installed before shipgate ran) is not blocked.
pub async fn blocked(db: &Db, id: i64) -> Result<bool> {
    Ok(installation(db, id).await?.is_some_and(|i| i.deleted_at.is_some() || i.suspended_at.is_some()))
}

/// True when the App may act for this installation (known, not deleted, not suspended).
pub async fn is_active(db: &Db, id: i64) -> Result<bool> {
    Ok(installation(db, id).await?.is_some_and(|i| i.deleted_at.is_none() && i.suspended_at.is_none()))
}

pub async fn repositories(db: &Db, installation_id: i64) -> Result<Vec<RepositoryRow>> {
    Ok(sqlx::query_as(
        "SELECT id, installation_id, full_name, private, removed_at FROM repositories \
         WHERE installation_id = $1 ORDER BY full_name",
    )
    .bind(installation_id)
    .fetch_all(db.pool())
    .await?)
}

/// The installation that serves repository `repository_id`, and the repository's name: from the
/// repositories the App was told about, else from the requests or policy it keeps for it (an
/// installation made before shipgate ran is not listed). None when no installation serves it, or
/// the one that did is deleted or suspended.
pub async fn serving(db: &Db, repository_id: i64) -> Result<Option<(i64, String)>> {
    let listed: Option<(i64, String, Option<i64>)> =
        sqlx::query_as("SELECT installation_id, full_name, removed_at FROM repositories WHERE id = $1 LIMIT 1")
            .bind(repository_id)
            .fetch_optional(db.pool())
            .await?;
    let found = match listed {
        // Removed from the installation (or transferred away): served by nobody, whatever the
        // requests kept for it say.
        Some((_, _, Some(_removed))) => return Ok(None),
        Some((installation, name, None)) => Some((installation, name)),
        None => {
            sqlx::query_as(
                "SELECT installation_id, repository FROM requests WHERE repository_id = $1 \
                 ORDER BY updated_at DESC LIMIT 1",
            )
            .bind(repository_id)
            .fetch_optional(db.pool())
            .await?
        }
    };
    match found {
        Some((installation, name)) if !blocked(db, installation).await? => Ok(Some((installation, name))),
        _ => Ok(None),
    }
}

/// The repositories called `full_name` now, as (repository id, installation id): those an
/// installation lists under that name (never an old holder of a name: names move), or, when none
/// does, those the requests name (a repository no installation event listed).
pub async fn named(db: &Db, full_name: &str) -> Result<Vec<(i64, i64)>> {
    let named: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, installation_id FROM repositories WHERE full_name = $1 AND removed_at IS NULL")
            .bind(full_name)
            .fetch_all(db.pool())
            .await?;
    if !named.is_empty() {
        return Ok(named);
    }
    Ok(sqlx::query_as("SELECT DISTINCT repository_id, installation_id FROM requests WHERE repository = $1")
        .bind(full_name)
        .fetch_all(db.pool())
        .await?)
}
