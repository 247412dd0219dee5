//! The inbox: deliveries as GitHub sent them, and the queue that works them off.

use sqlx::{Any, Transaction};

pub use super::queue::QueueStats;
use super::queue::{Lease, Queue};
use super::{Db, Result};

/// A verified delivery, ready to be stored.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub repository: Option<String>,
    pub subject: String,
    pub received_at: i64,
    pub body: String,
    pub body_sha256: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    Stored(i64),
    /// The delivery id is already stored.
    Duplicate,
    /// The same body is already stored under another delivery id.
    Replay,
}

/// A delivery held by one worker until it is completed or its lease runs out.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Claimed {
    pub seq: i64,
    pub id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub repository: Option<String>,
    pub subject: String,
    pub received_at: i64,
    pub body: String,
    pub attempts: i64,
}

#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize)]
pub struct DeliveryRow {
    pub seq: i64,
    pub id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub repository: Option<String>,
    pub subject: String,
    pub received_at: i64,
    pub state: String,
    pub outcome: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub finished_at: Option<i64>,
}

#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize)]
pub struct AttemptRow {
    pub attempt: i64,
    pub worker: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub outcome: String,
    pub error: Option<String>,
}

const INSERT: &str = "INSERT INTO deliveries \
    (id, event, action, installation_id, repository, subject, received_at, body, body_sha256, state, attempts, next_attempt_at, \
     blocked) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $7, \
     CASE WHEN EXISTS (SELECT 1 FROM deliveries WHERE subject = $6 AND state IN ('pending', 'running')) THEN 1 ELSE 0 END) \
    ON CONFLICT DO NOTHING RETURNING seq";

/// Stores a batch of deliveries in one transaction (one commit, one fsync): the group commit of
/// the intake. Outcomes are in the order of `batch`.
pub async fn insert_batch(db: &Db, batch: &[&NewDelivery]) -> Result<Vec<InsertOutcome>> {
    let mut tx = db.begin_write().await?;
    let mut out = Vec::with_capacity(batch.len());
    for d in batch {
        let seq = insert_one(&mut tx, d).await?;
        out.push(match seq {
            Some((seq,)) => InsertOutcome::Stored(seq),
            None => {
                let same_id: Option<(i64,)> = sqlx::query_as("SELECT seq FROM deliveries WHERE id = $1")
                    .bind(&d.id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if same_id.is_some() { InsertOutcome::Duplicate } else { InsertOutcome::Replay }
            }
        });
    }
    tx.commit().await?;
    Ok(out)
}

pub const QUEUE: Queue = Queue {
    table: "deliveries",
    returning: "seq, id, event, action, installation_id, repository, subject, received_at, body, attempts",
};

impl Claimed {
    pub fn lease<'a>(&self, worker: &'a str) -> Lease<'a> {
        Lease { seq: self.seq, worker, attempts: self.attempts }
    }
}

/// Claims up to `limit` deliveries for `worker` (see [`Queue::claim`]).
pub async fn claim(db: &Db, worker: &str, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Claimed>> {
    QUEUE.claim(db, worker, now, lease_ms, limit).await
}

/// Marks a claimed delivery done inside `tx` (the caller adds the handler's effects to the same
/// transaction) and records the attempt. False, and the caller must roll back, when the claim
/// was lost.
pub async fn complete(
    tx: &mut Transaction<'static, Any>,
    c: &Claimed,
    worker: &str,
    started_at: i64,
    now: i64,
    outcome: &str,
) -> Result<bool> {
    if !QUEUE.finish(tx, c.lease(worker), "done", outcome, now).await? {
        return Ok(false);
    }
    record_attempt(tx, c, worker, started_at, now, outcome, None).await?;
    Ok(true)
}

/// Records a failed attempt: back to `pending` at `retry_at`, or `parked` when `park`.
/// Returns false when the claim was lost.
#[allow(clippy::too_many_arguments)]
pub async fn fail(
    db: &Db,
    c: &Claimed,
    worker: &str,
    started_at: i64,
    now: i64,
    error: &str,
    retry_at: i64,
    park: bool,
) -> Result<bool> {
    let mut tx = db.begin_write().await?;
    if !QUEUE.fail(&mut tx, c.lease(worker), error, retry_at, park, now).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    record_attempt(&mut tx, c, worker, started_at, now, "error", Some(error)).await?;
    tx.commit().await?;
    Ok(true)
}

async fn record_attempt(
    tx: &mut Transaction<'static, Any>,
    c: &Claimed,
    worker: &str,
    started_at: i64,
    now: i64,
    outcome: &str,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_seq, attempt, worker, started_at, finished_at, outcome, error) \
         VALUES ($1, (SELECT COALESCE(MAX(attempt), 0) + 1 FROM delivery_attempts WHERE delivery_seq = $1), \
         $2, $3, $4, $5, $6)",
    )
    .bind(c.seq)
    .bind(worker)
    .bind(started_at)
    .bind(now)
    .bind(outcome)
    .bind(error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts one delivery; its seq, or None when the id or the body is already stored.
async fn insert_one(tx: &mut Transaction<'static, Any>, d: &NewDelivery) -> Result<Option<(i64,)>> {
    Ok(sqlx::query_as(INSERT)
        .bind(&d.id)
        .bind(&d.event)
        .bind(&d.action)
        .bind(d.installation_id)
        .bind(&d.repository)
        .bind(&d.subject)
        .bind(d.received_at)
        .bind(&d.body)
        .bind(&d.body_sha256)
        .fetch_optional(&mut **tx)
        .await?)
}

/// Adds a delivery the App made itself (a recheck) inside a transaction; an id already there is
/// ignored.
pub async fn insert_internal(tx: &mut Transaction<'static, Any>, d: &NewDelivery) -> Result<()> {
    insert_one(tx, d).await?;
    Ok(())
}

const ROW_COLUMNS: &str = "seq, id, event, action, installation_id, repository, subject, received_at, state, \
    outcome, attempts, next_attempt_at, last_error, finished_at";

pub async fn list(db: &Db, state: Option<&str>, limit: i64) -> Result<Vec<DeliveryRow>> {
    let sql =
        format!("SELECT {ROW_COLUMNS} FROM deliveries WHERE ($1 IS NULL OR state = $1) ORDER BY seq DESC LIMIT $2");
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(state).bind(limit).fetch_all(db.pool()).await?;
    Ok(rows)
}

/// Finds a delivery by its GitHub delivery id, or by its sequence number.
pub async fn find(db: &Db, key: &str) -> Result<Option<DeliveryRow>> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM deliveries WHERE id = $1 OR seq = $2");
    let seq = key.parse::<i64>().unwrap_or(-1);
    let row = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(key).bind(seq).fetch_optional(db.pool()).await?;
    Ok(row)
}

pub async fn body(db: &Db, seq: i64) -> Result<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT body FROM deliveries WHERE seq = $1").bind(seq).fetch_optional(db.pool()).await?;
    Ok(row.map(|r| r.0))
}

pub async fn attempts(db: &Db, seq: i64) -> Result<Vec<AttemptRow>> {
    let rows = sqlx::query_as(
        "SELECT attempt, worker, started_at, finished_at, outcome, error FROM delivery_attempts \
         WHERE delivery_seq = $1 ORDER BY attempt",
    )
    .bind(seq)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

/// Makes a parked (or done) delivery pending again with a fresh set of attempts.
/// Refuses one that is pending or running.
pub async fn retry(db: &Db, seq: i64, now: i64) -> Result<bool> {
    QUEUE.retry(db, seq, now).await
}

pub async fn stats(db: &Db) -> Result<QueueStats> {
    QUEUE.stats(db, "received_at").await
}

/// Deletes done deliveries finished before `cutoff`, a batch at a time. Parked ones stay.
pub async fn prune(db: &Db, cutoff: i64, batch: i64) -> Result<u64> {
    let mut total = 0;
    loop {
        let mut tx = db.begin_write().await?;
        let r = sqlx::query(
            "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries \
             WHERE state = 'done' AND finished_at < $1 ORDER BY finished_at LIMIT $2)",
        )
        .bind(cutoff)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        total += r.rows_affected();
        if r.rows_affected() < batch as u64 {
            return Ok(total);
        }
    }
}
