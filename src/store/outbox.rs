//! The outbox: actions waiting to be sent to GitHub, worked off by the relay.

use serde::Serialize;
use sqlx::{Any, Transaction};

use super::queue::{Lease, Queue, QueueStats};
use super::{Db, Result};
use crate::github::actions::Action;

pub const QUEUE: Queue =
    Queue { table: "outbox", returning: "seq, key, installation_id, kind, target, action, delivery_id, attempts" };

/// A claimed outbox row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Claimed {
    pub seq: i64,
    pub key: String,
    pub installation_id: i64,
    pub kind: String,
    pub target: Option<String>,
    pub action: String,
    pub delivery_id: Option<String>,
    pub attempts: i64,
}

impl Claimed {
    pub fn lease<'a>(&self, worker: &'a str) -> Lease<'a> {
        Lease { seq: self.seq, worker, attempts: self.attempts }
    }
}

#[derive(Clone, Debug, sqlx::FromRow, Serialize)]
pub struct ActionRow {
    pub seq: i64,
    pub key: String,
    pub installation_id: i64,
    pub kind: String,
    pub action: String,
    pub delivery_id: Option<String>,
    pub created_at: i64,
    pub state: String,
    pub outcome: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub finished_at: Option<i64>,
}

/// Adds an action inside the transaction of the state change that caused it. A key already
/// enqueued is ignored (the same cause enqueued twice).
pub async fn enqueue(
    tx: &mut Transaction<'_, Any>,
    installation: i64,
    key: &str,
    action: &Action,
    delivery_id: Option<&str>,
    now: i64,
) -> Result<()> {
    let json = serde_json::to_string(action).map_err(|e| super::StoreError::Invalid(e.to_string()))?;
    sqlx::query(
        "INSERT INTO outbox (key, installation_id, subject, kind, target, action, delivery_id, created_at, \
         next_attempt_at, blocked) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, \
         CASE WHEN EXISTS (SELECT 1 FROM outbox WHERE subject = $3 AND state IN ('pending', 'running')) THEN 1 ELSE 0 END) \
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind(installation)
    .bind(format!("{installation}:{}", action.subject()))
    .bind(action.kind())
    .bind(action.target().map(|t| format!("{installation}:{t}")))
    .bind(json)
    .bind(delivery_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// True when a newer action on the same target is waiting: this one need not be sent.
pub async fn superseded(db: &Db, c: &Claimed) -> Result<bool> {
    let Some(target) = &c.target else { return Ok(false) };
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT seq FROM outbox WHERE target = $1 AND seq > $2 AND state IN ('pending', 'running') LIMIT 1",
    )
    .bind(target)
    .bind(c.seq)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.is_some())
}

/// After a commit (at `created_at`) that enqueued actions: readies one stored waiting behind its
/// subject's head while that head finished ([`Queue::ready_headless`], PostgreSQL only). True
/// when it readied one.
pub async fn settle(db: &Db, created_at: i64) -> Result<bool> {
    if db.backend() != super::Backend::Postgres {
        return Ok(false);
    }
    let subjects: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT subject FROM outbox WHERE state = 'pending' AND blocked = 1 AND created_at = $1 LIMIT 256",
    )
    .bind(created_at)
    .fetch_all(db.pool())
    .await?;
    let subjects: Vec<&str> = subjects.iter().map(|s| s.0.as_str()).collect();
    QUEUE.ready_headless(db, &subjects).await
}

/// Ends a claimed action in `state` (done, dry_run, superseded, cancelled).
pub async fn finish(db: &Db, c: &Claimed, worker: &str, state: &str, outcome: &str, now: i64) -> Result<bool> {
    finish_with(db, c, worker, state, outcome, now, None).await
}

/// As [`finish`], and, in the same transaction, `then`: a delivery the App makes itself about
/// what was sent (a `deployed` notification ticks its request's checklist).
pub async fn finish_with(
    db: &Db,
    c: &Claimed,
    worker: &str,
    state: &str,
    outcome: &str,
    now: i64,
    then: Option<&super::deliveries::NewDelivery>,
) -> Result<bool> {
    let mut tx = db.begin_write().await?;
    let ok = QUEUE.finish(&mut tx, c.lease(worker), state, outcome, now).await?;
    if !ok {
        tx.rollback().await?;
        return Ok(false);
    }
    if let Some(d) = then {
        super::deliveries::insert_internal(&mut tx, d).await?;
    }
    tx.commit().await?;
    Ok(ok)
}

/// Whether an action of `subject` (as stored: `{installation}:{subject}`) is still waiting or
/// being sent.
pub async fn subject_open(db: &Db, subject: &str) -> Result<bool> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT seq FROM outbox WHERE subject = $1 AND state IN ('pending', 'running') LIMIT 1")
            .bind(subject)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.is_some())
}

pub async fn fail(
    db: &Db,
    c: &Claimed,
    worker: &str,
    error: &str,
    retry_at: i64,
    park: bool,
    now: i64,
) -> Result<bool> {
    let mut tx = db.begin_write().await?;
    let ok = QUEUE.fail(&mut tx, c.lease(worker), error, retry_at, park, now).await?;
    tx.commit().await?;
    Ok(ok)
}

pub async fn list(db: &Db, state: Option<&str>, limit: i64) -> Result<Vec<ActionRow>> {
    let mut f = super::filter::Filter::new();
    f.eq("state", state);
    let sql = format!(
        "SELECT seq, key, installation_id, kind, action, delivery_id, created_at, state, outcome, attempts, last_error, \
         finished_at FROM outbox WHERE {} ORDER BY seq DESC LIMIT {}",
        f.sql(),
        f.next()
    );
    Ok(super::filter::query_as(sql, &f, &[limit.into()]).fetch_all(db.pool()).await?)
}

/// One action, by its sequence number.
pub async fn get(db: &Db, seq: i64) -> Result<Option<ActionRow>> {
    Ok(sqlx::query_as(
        "SELECT seq, key, installation_id, kind, action, delivery_id, created_at, state, outcome, attempts, last_error, \
         finished_at FROM outbox WHERE seq = $1",
    )
    .bind(seq)
    .fetch_optional(db.pool())
    .await?)
}

pub async fn stats(db: &Db) -> Result<QueueStats> {
    QUEUE.stats(db, "created_at").await
}
