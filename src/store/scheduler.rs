//! Scheduled work that runs once across replicas: a job's run for a time slot is claimed by
//! inserting (name, slot); whoever inserts first runs it (as triagebot does). Also small
//! checkpoints that jobs keep between runs.

use super::{Db, Result};

/// Claims the run of `name` for `slot`. True: this process runs it; false: another one did.
pub async fn claim(db: &Db, name: &str, slot: i64, worker: &str, now: i64) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO jobs (name, slot, worker, started_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name, slot) DO NOTHING",
    )
    .bind(name)
    .bind(slot)
    .bind(worker)
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A claim older than this, never finished, was left by a replica that stopped: taken over.
pub const STALE_CLAIM_MS: i64 = 60_000;

/// Claims the run of `name` for `slot` as [`claim`] does, or takes over this slot's claim when it
/// was never finished and is older than [`STALE_CLAIM_MS`] (its claimer stopped). A run already
/// finished costs a read, no write. True: this process runs it.
pub async fn claim_or_take_over(db: &Db, name: &str, slot: i64, worker: &str, now: i64) -> Result<bool> {
    if done(db, name, slot).await? {
        return Ok(false);
    }
    if claim(db, name, slot, worker, now).await? {
        return Ok(true);
    }
    let row: Option<(i64, Option<i64>)> =
        sqlx::query_as("SELECT started_at, finished_at FROM jobs WHERE name = $1 AND slot = $2")
            .bind(name)
            .bind(slot)
            .fetch_optional(db.pool())
            .await?;
    Ok(matches!(row, Some((started, None)) if now - started > STALE_CLAIM_MS))
}

/// Has the run of `name` for `slot` finished? A read: a loop that asks every minute writes nothing
/// for a run already done.
pub async fn done(db: &Db, name: &str, slot: i64) -> Result<bool> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT slot FROM jobs WHERE name = $1 AND slot = $2 AND finished_at IS NOT NULL")
            .bind(name)
            .bind(slot)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.is_some())
}

pub async fn finished(db: &Db, name: &str, slot: i64, result: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE jobs SET finished_at = $1, result = $2 WHERE name = $3 AND slot = $4")
        .bind(now)
        .bind(result)
        .bind(name)
        .bind(slot)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// The runs of `name`, newest first: (slot, worker, result).
pub async fn runs(db: &Db, name: &str) -> Result<Vec<(i64, String, Option<String>)>> {
    Ok(sqlx::query_as("SELECT slot, worker, result FROM jobs WHERE name = $1 ORDER BY slot DESC")
        .bind(name)
        .fetch_all(db.pool())
        .await?)
}

pub async fn checkpoint(db: &Db, name: &str) -> Result<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT value FROM checkpoints WHERE name = $1").bind(name).fetch_optional(db.pool()).await?;
    Ok(row.map(|r| r.0))
}

pub async fn set_checkpoint(db: &Db, name: &str, value: &str, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO checkpoints (name, value, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(value)
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok(())
}
