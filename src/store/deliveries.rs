//! The inbox: deliveries as GitHub sent them, and the queue that works them off.

use sqlx::{Any, Transaction};

use super::{Backend, Db, Result};

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
    (id, event, action, installation_id, repository, subject, received_at, body, body_sha256, state, attempts, next_attempt_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $7) \
    ON CONFLICT DO NOTHING RETURNING seq";

/// Stores a batch of deliveries in one transaction (one commit, one fsync): the group commit of
/// the intake. Outcomes are in the order of `batch`.
pub async fn insert_batch(db: &Db, batch: &[&NewDelivery]) -> Result<Vec<InsertOutcome>> {
    let mut tx = db.begin_write().await?;
    let mut out = Vec::with_capacity(batch.len());
    for d in batch {
        let seq: Option<(i64,)> = sqlx::query_as(INSERT)
            .bind(&d.id)
            .bind(&d.event)
            .bind(&d.action)
            .bind(d.installation_id)
            .bind(&d.repository)
            .bind(&d.subject)
            .bind(d.received_at)
            .bind(&d.body)
            .bind(&d.body_sha256)
            .fetch_optional(&mut *tx)
            .await?;
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

const CLAIM_CANDIDATES: &str = "SELECT d.seq FROM deliveries d \
    WHERE d.state IN ('pending', 'running') \
      AND ((d.state = 'pending' AND d.next_attempt_at <= $3) OR (d.state = 'running' AND d.lease_until <= $3)) \
      AND NOT EXISTS (SELECT 1 FROM deliveries e \
                      WHERE e.subject = d.subject AND e.state IN ('pending', 'running') AND e.seq < d.seq) \
    ORDER BY d.seq LIMIT $4";

const CLAIM_RETURNING: &str =
    "RETURNING seq, id, event, action, installation_id, repository, subject, received_at, body, attempts";

/// Claims up to `limit` deliveries for `worker`, at most one per subject and only the oldest
/// unfinished delivery of each subject, so that a subject's deliveries run one at a time and in
/// order. A delivery whose lease has expired (its worker died) is claimable again.
pub async fn claim(db: &Db, worker: &str, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Claimed>> {
    let sql = match db.backend() {
        // One statement: SQLite runs writers one at a time, so no two workers claim one row.
        Backend::Sqlite => format!(
            "UPDATE deliveries SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE seq IN ({CLAIM_CANDIDATES}) {CLAIM_RETURNING}"
        ),
        // Rows another worker is claiming are skipped, not waited for.
        Backend::Postgres => format!(
            "UPDATE deliveries SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE seq = ANY(ARRAY({CLAIM_CANDIDATES} FOR UPDATE SKIP LOCKED)) {CLAIM_RETURNING}"
        ),
    };
    let mut rows: Vec<Claimed> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(worker)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
}

/// Marks a claimed delivery done inside `tx` (the caller adds the handler's effects to the same
/// transaction). Returns false, and the caller must roll back, when the claim was lost.
pub async fn complete(
    tx: &mut Transaction<'static, Any>,
    c: &Claimed,
    worker: &str,
    started_at: i64,
    now: i64,
    outcome: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE deliveries SET state = 'done', outcome = $1, finished_at = $2, lease_owner = NULL, \
         lease_until = NULL, last_error = NULL \
         WHERE seq = $3 AND state = 'running' AND lease_owner = $4 AND attempts = $5",
    )
    .bind(outcome)
    .bind(now)
    .bind(c.seq)
    .bind(worker)
    .bind(c.attempts)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
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
    let state = if park { "parked" } else { "pending" };
    let r = sqlx::query(
        "UPDATE deliveries SET state = $1, next_attempt_at = $2, last_error = $3, lease_owner = NULL, \
         lease_until = NULL, finished_at = CASE WHEN $1 = 'parked' THEN $7 ELSE NULL END \
         WHERE seq = $4 AND state = 'running' AND lease_owner = $5 AND attempts = $6",
    )
    .bind(state)
    .bind(retry_at)
    .bind(error)
    .bind(c.seq)
    .bind(worker)
    .bind(c.attempts)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() != 1 {
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

/// Extends every lease `worker` holds.
pub async fn heartbeat(db: &Db, worker: &str, lease_until: i64) -> Result<u64> {
    let r = sqlx::query("UPDATE deliveries SET lease_until = $1 WHERE state = 'running' AND lease_owner = $2")
        .bind(lease_until)
        .bind(worker)
        .execute(db.pool())
        .await?;
    Ok(r.rows_affected())
}

/// Gives back the claims `worker` still holds (shutdown): they become pending at once and the
/// interrupted attempt does not count.
pub async fn release(db: &Db, worker: &str, now: i64) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE deliveries SET state = 'pending', lease_owner = NULL, lease_until = NULL, \
         attempts = attempts - 1, next_attempt_at = $1 WHERE state = 'running' AND lease_owner = $2",
    )
    .bind(now)
    .bind(worker)
    .execute(db.pool())
    .await?;
    Ok(r.rows_affected())
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
    let r = sqlx::query(
        "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1, outcome = NULL, \
         finished_at = NULL WHERE seq = $2 AND state IN ('parked', 'done')",
    )
    .bind(now)
    .bind(seq)
    .execute(db.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub pending: i64,
    pub running: i64,
    pub done: i64,
    pub parked: i64,
    /// Receive time of the oldest pending or running delivery.
    pub oldest_open_received_at: Option<i64>,
}

pub async fn stats(db: &Db) -> Result<QueueStats> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetch_all(db.pool()).await?;
    let mut s = QueueStats::default();
    for (state, n) in rows {
        match state.as_str() {
            "pending" => s.pending = n,
            "running" => s.running = n,
            "done" => s.done = n,
            "parked" => s.parked = n,
            _ => {}
        }
    }
    let oldest: Option<(i64,)> =
        sqlx::query_as("SELECT received_at FROM deliveries WHERE state IN ('pending', 'running') ORDER BY seq LIMIT 1")
            .fetch_optional(db.pool())
            .await?;
    s.oldest_open_received_at = oldest.map(|r| r.0);
    Ok(s)
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
