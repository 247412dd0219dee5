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
    /// The body as text; empty when `body_lz4` holds it.
    pub body: String,
    /// The body compressed ([`compress`]), or None to store `body` as it is.
    pub body_lz4: Option<Vec<u8>>,
    /// The body's [`body_key`]: one body, one key, so a replay under another id is refused.
    pub body_key: String,
}

/// The key a body is stored under (column `body_sha256`, which is unique): the latest
/// `YYYY-MM-DDTHH:MM:SS` written in it as 14 digits (zeros if none), `:`, and its SHA-256 in hex.
///
/// A function of the bytes alone, so the same body always has the same key, and a replay under
/// another delivery id conflicts with the stored one whatever its time. The time comes first for
/// the index's sake: GitHub's bodies carry their event's time (`updated_at`, `completed_at`,
/// ...), so new keys land at the end of the unique index, in a few pages a cache keeps, instead of
/// on a random page of an index that grows with the whole history (a year of it is 200 MB of
/// keys: with the bare hash, each stored delivery read a page from disk and wrote it back, and
/// SQLite's intake lost about twice as much to a year's history as with the time first;
/// docs/benchmarks.md). Where a body's latest time comes from does not matter to what is
/// refused, only to where its key lands.
///
/// Rows stored before keys had times keep the bare hash (not rewritten: their bodies may be gone),
/// so the intake looks each new body's bare hash up too ([`legacy_hash`]); once the history period
/// (`SHIPGATE_HISTORY_DAYS`) has pruned those rows, that lookup finds nothing, at the cost of an
/// index probe that mostly ends at the index's edge (a bare hash starts with a hex digit, a timed
/// key with the year). Migration 0030 marks the database so that an older shipgate, which knows
/// only bare hashes and would store a replay under one, refuses it (docs/threat-model.md §5).
pub fn body_key(text: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:014}:{}", latest_time(text.as_bytes()), hex::encode(Sha256::digest(text.as_bytes())))
}

/// The bare SHA-256 in a [`body_key`] (what rows stored before it hold), or the key itself.
pub fn legacy_hash(key: &str) -> &str {
    key.split_once(':').map_or(key, |(_, hash)| hash)
}

/// The latest `YYYY-MM-DDTHH:MM:SS` in `text` as the number YYYYMMDDHHMMSS, or 0.
fn latest_time(text: &[u8]) -> u64 {
    // Positions of the digits in `YYYY-MM-DDTHH:MM:SS`, counted from the year.
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    let mut latest = 0;
    for t in memchr::memchr_iter(b'T', text) {
        let Some(s) = t.checked_sub(10).and_then(|start| text.get(start..start + 19)) else { continue };
        if s[4] != b'-'
            || s[7] != b'-'
            || s[13] != b':'
            || s[16] != b':'
            || !DIGITS.iter().all(|&i| s[i].is_ascii_digit())
        {
            continue;
        }
        latest = latest.max(DIGITS.iter().fold(0u64, |v, &i| v * 10 + u64::from(s[i] - b'0')));
    }
    latest
}

/// LZ4 block of `text` with its length prepended, as stored in `body_lz4`.
pub fn compress(text: &str) -> Vec<u8> {
    lz4_flex::compress_prepend_size(text.as_bytes())
}

/// The text of a stored body: `body`, or `body_lz4` decompressed.
pub fn inflate(body: &str, body_lz4: Option<&[u8]>) -> std::result::Result<String, String> {
    match body_lz4 {
        None => Ok(body.to_string()),
        Some(z) => {
            let bytes = lz4_flex::decompress_size_prepended(z).map_err(|e| format!("stored body is corrupt: {e}"))?;
            String::from_utf8(bytes).map_err(|_| "stored body is not UTF-8".to_string())
        }
    }
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
    /// The body as the handlers read it (see [`Claimed::inflate`]).
    pub body: String,
    /// As stored: the compressed body, until `inflate` turns it into `body`.
    pub body_lz4: Option<Vec<u8>>,
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

/// Parameters per row of the intake's INSERT.
const PARAMS_PER_ROW: usize = 8;

/// Rows per INSERT statement. Not more: SQLite finds a numbered parameter's name by a linear walk
/// of the statement's parameters (`sqlite3_bind_parameter_name`, which the driver calls for each
/// one), so binding a statement costs the square of its parameters: at 256 rows (2,560
/// parameters) that walk was most of a row's cost in the history generator's profile. A burst at
/// the intake rarely gathers more than the connections sending it.
const ROWS_PER_STATEMENT: usize = 64;

/// Stores a batch of deliveries in one transaction (one commit, one fsync): the group commit of
/// the intake. Outcomes are in the order of `batch`.
///
/// One multi-row `INSERT` per batch rather than one per delivery: on SQLite every statement is a
/// round trip to the connection's thread, and the writer is serial, so per-statement costs were
/// what limited the intake. A delivery waits (`blocked`) when its subject already has an open
/// delivery, stored before or earlier in the batch.
pub async fn insert_batch(db: &Db, batch: &[&NewDelivery]) -> Result<Vec<InsertOutcome>> {
    let mut tx = db.begin_write().await?;
    let out = insert_batch_ready(&mut tx, batch).await?;
    tx.commit().await?;
    settle(db, &out.waiting).await?;
    Ok(out.outcomes)
}

/// What a batch insert did.
#[derive(Debug)]
pub struct Inserted {
    /// In the order of the batch.
    pub outcomes: Vec<InsertOutcome>,
    /// Whether the batch may have made a row ready to claim ([`insert_batch_ready`]).
    pub ready: bool,
    /// The subjects of rows stored waiting behind an open row of their subject.
    pub waiting: Vec<String>,
}

/// After a commit that stored rows waiting behind their subjects' heads (`waiting`, their
/// subjects): readies a waiting row whose subject's head finished while the rows were being
/// committed ([`Queue::ready_headless`]). True when it readied one.
pub async fn settle(db: &Db, waiting: &[String]) -> Result<bool> {
    let subjects: Vec<&str> = waiting.iter().map(String::as_str).collect();
    QUEUE.ready_headless(db, &subjects).await
}

/// [`insert_batch`] inside a transaction the caller commits (the SQLite group commit, which also
/// carries the worker's claims and completions).
pub async fn insert_batch_in(tx: &mut Transaction<'_, Any>, batch: &[&NewDelivery]) -> Result<Vec<InsertOutcome>> {
    Ok(insert_batch_ready(tx, batch).await?.outcomes)
}

/// [`insert_batch_in`], and whether the batch may have made a row ready to claim: a row stored
/// as its subject's head, or a skipped row whose subject's next row was readied in its place.
/// Rows stored behind an open row of their subject are not: only that row's completion can
/// make them claimable, and it wakes the worker itself. The intake wakes the worker only when
/// this is true, instead of after every commit (a claim per commit that found nothing, while
/// one busy subject's deliveries queued up).
pub async fn insert_batch_ready(tx: &mut Transaction<'_, Any>, batch: &[&NewDelivery]) -> Result<Inserted> {
    let mut all = Inserted { outcomes: Vec::with_capacity(batch.len()), ready: false, waiting: Vec::new() };
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let (outcomes, r) = insert_chunk(tx, chunk, &mut all.waiting).await?;
        all.outcomes.extend(outcomes);
        all.ready |= r;
    }
    Ok(all)
}

async fn insert_chunk(
    tx: &mut Transaction<'_, Any>,
    batch: &[&NewDelivery],
    waiting: &mut Vec<String>,
) -> Result<(Vec<InsertOutcome>, bool)> {
    use std::collections::{HashMap, HashSet};
    // The statements below are written for this batch: their text changes with its size and with
    // which of its subjects repeat, so hundreds of variants went through the connection's
    // statement cache (100 entries), each prepared once and kept with its parameters' types: 3 MB
    // of the SQLite writer's heap and 7 MB over PostgreSQL's connections at the ingest
    // benchmark's peak. Not cached: on SQLite preparing one is a function call; on PostgreSQL a
    // round trip more per statement, which the intake's own connections (`Db::acquire_writer`)
    // more than paid for (docs/benchmarks.md). A one-row batch (a quiet intake, and every insert
    // of the worker's own: rechecks, the outbox) has one text of each, and is cached.
    let cache = batch.len() == 1;
    // Rows stored before keys had times hold a body's bare hash (see `body_key`): a body found
    // so is a replay, left out of the INSERT like a conflict. One statement for the batch, not an
    // EXISTS per row inside the INSERT: PostgreSQL plans each such subquery, and its intake lost
    // 12% to that (docs/benchmarks.md). On a database with only timed keys most
    // probes end at the index's edge.
    let bare = {
        let sql = format!("SELECT body_sha256 FROM deliveries WHERE body_sha256 IN ({})", placeholders(1, batch.len()));
        let mut q = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql)).persistent(cache);
        for d in batch {
            q = q.bind(legacy_hash(&d.body_key));
        }
        q.fetch_all(&mut **tx).await?.into_iter().map(|r| r.0).collect::<HashSet<String>>()
    };
    let keep: Vec<&NewDelivery> = batch.iter().copied().filter(|d| !bare.contains(legacy_hash(&d.body_key))).collect();
    let mut sql = String::from(
        "INSERT INTO deliveries (id, event, action, installation_id, repository, subject, received_at, \
         body_sha256, blocked, state, attempts, next_attempt_at) VALUES ",
    );
    // A row waits when its subject already has an open delivery: for a subject's first row in
    // the batch an EXISTS (stopping at the first open row), for its later rows simply yes.
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, d) in keep.iter().enumerate() {
        let b = i * PARAMS_PER_ROW;
        if i > 0 {
            sql.push_str(", ");
        }
        let blocked = if seen.insert(d.subject.as_str()) {
            format!(
                "CASE WHEN EXISTS (SELECT 1 FROM deliveries WHERE subject = ${} AND state IN ('pending', 'running')) \
                 THEN 1 ELSE 0 END",
                b + 6
            )
        } else {
            "1".to_string()
        };
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, {blocked}, 'pending', 0, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8,
            b + 7
        ));
    }
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING id, seq, blocked, body_sha256");
    let mut q = sqlx::query_as::<_, (String, i64, i64, String)>(sqlx::AssertSqlSafe(sql)).persistent(cache);
    for d in &keep {
        q = q
            .bind(&d.id)
            .bind(&d.event)
            .bind(&d.action)
            .bind(d.installation_id)
            .bind(&d.repository)
            .bind(&d.subject)
            .bind(d.received_at)
            .bind(&d.body_key);
    }
    let returned = if keep.is_empty() { Vec::new() } else { q.fetch_all(&mut **tx).await? };
    let mut ready = returned.iter().any(|r| r.2 == 0);
    let subject_of: HashMap<&str, &str> = batch.iter().map(|d| (d.id.as_str(), d.subject.as_str())).collect();
    waiting.extend(
        returned.iter().filter(|r| r.2 != 0).filter_map(|r| subject_of.get(r.0.as_str())).map(|s| s.to_string()),
    );
    // The bodies of the rows stored, in their own table (see migration 0018): each row's is the
    // batch entry with its id and its body's hash (two copies of an id in one batch may differ,
    // and the first may have been the one refused, as a replay).
    let rows: HashMap<(&str, &str), i64> = returned.iter().map(|r| ((r.0.as_str(), r.3.as_str()), r.1)).collect();
    let mut bodied: HashSet<i64> = HashSet::new();
    let with_body: Vec<(i64, &NewDelivery)> = batch
        .iter()
        .filter_map(|d| rows.get(&(d.id.as_str(), d.body_key.as_str())).map(|seq| (*seq, *d)))
        .filter(|(seq, _)| bodied.insert(*seq))
        .collect();
    let mut stored: HashMap<String, i64> = returned.iter().map(|r| (r.0.clone(), r.1)).collect();
    if !with_body.is_empty() {
        let rows = (0..with_body.len())
            .map(|i| format!("(${}, ${}, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("INSERT INTO delivery_bodies (seq, body, body_lz4) VALUES {rows}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(cache);
        for (seq, d) in &with_body {
            q = q.bind(*seq).bind(&d.body).bind(&d.body_lz4);
        }
        q.execute(&mut **tx).await?;
    }

    // What was not stored is a duplicate id or a replayed body (possibly within this batch).
    let missing: Vec<&str> = batch.iter().filter(|d| !stored.contains_key(&d.id)).map(|d| d.id.as_str()).collect();
    let mut known_ids: HashSet<String> = HashSet::new();
    if !missing.is_empty() {
        let sql = format!("SELECT id FROM deliveries WHERE id IN ({})", placeholders(1, missing.len()));
        let mut q = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql)).persistent(cache);
        for id in &missing {
            q = q.bind(*id);
        }
        known_ids = q.fetch_all(&mut **tx).await?.into_iter().map(|r| r.0).collect();
    }
    let mut out = Vec::with_capacity(batch.len());
    let mut skipped_subjects: Vec<&str> = Vec::new();
    for d in batch {
        out.push(match stored.remove(&d.id) {
            Some(seq) => {
                known_ids.insert(d.id.clone()); // a second copy in this batch is a duplicate
                InsertOutcome::Stored(seq)
            }
            None => {
                skipped_subjects.push(&d.subject);
                if known_ids.contains(&d.id) { InsertOutcome::Duplicate } else { InsertOutcome::Replay }
            }
        });
    }
    // A row of the batch that was not stored may have been counted as its subject's head: ready
    // the subject's oldest waiting row if it has no ready one.
    skipped_subjects.sort_unstable();
    skipped_subjects.dedup();
    for subject in skipped_subjects {
        let r = sqlx::query(
            "UPDATE deliveries SET blocked = 0 WHERE seq = (SELECT MIN(seq) FROM deliveries WHERE subject = $1 \
             AND state = 'pending' AND blocked = 1) AND NOT EXISTS (SELECT 1 FROM deliveries WHERE subject = $1 \
             AND state IN ('pending', 'running') AND blocked = 0)",
        )
        .bind(subject)
        .execute(&mut **tx)
        .await?;
        ready |= r.rows_affected() > 0;
    }
    Ok((out, ready))
}

/// `$from, $from+1, …` (`n` of them).
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

pub const QUEUE: Queue = Queue {
    table: "deliveries",
    returning: "seq, id, event, action, installation_id, repository, subject, received_at, \
        COALESCE((SELECT b.body FROM delivery_bodies b WHERE b.seq = deliveries.seq), '') AS body, \
        (SELECT b.body_lz4 FROM delivery_bodies b WHERE b.seq = deliveries.seq) AS body_lz4, attempts",
};

impl Claimed {
    /// Decompresses a compressed body into `body` (once, after the claim).
    pub fn inflate(&mut self) -> std::result::Result<(), String> {
        if let Some(z) = self.body_lz4.take() {
            self.body = inflate("", Some(&z))?;
        }
        Ok(())
    }

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
    tx: &mut Transaction<'_, Any>,
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
    tx: &mut Transaction<'_, Any>,
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

/// Adds a delivery the App made itself (a recheck) inside a transaction; an id already there is
/// ignored.
pub async fn insert_internal(tx: &mut Transaction<'_, Any>, d: &NewDelivery) -> Result<()> {
    match insert_batch_in(tx, &[d]).await?.first() {
        Some(InsertOutcome::Duplicate) | Some(InsertOutcome::Replay) => {
            // Each internal delivery's id names its cause and kind: a second one is a bug, and
            // its work would be lost without a trace.
            tracing::error!(id = %d.id, event = %d.event, "an internal delivery with this id or body exists: not queued");
            Err(super::StoreError::Invalid(format!("internal delivery {} is not unique", d.id)))
        }
        _ => Ok(()),
    }
}

const ROW_COLUMNS: &str = "seq, id, event, action, installation_id, repository, subject, received_at, state, \
    outcome, attempts, next_attempt_at, last_error, finished_at";

pub async fn list(db: &Db, state: Option<&str>, limit: i64) -> Result<Vec<DeliveryRow>> {
    let mut f = super::filter::Filter::new();
    f.eq("state", state);
    let sql = format!("SELECT {ROW_COLUMNS} FROM deliveries WHERE {} ORDER BY seq DESC LIMIT {}", f.sql(), f.next());
    Ok(super::filter::query_as(sql, &f, &[limit.into()]).fetch_all(db.pool()).await?)
}

/// Finds a delivery by its GitHub delivery id, or by its sequence number.
pub async fn find(db: &Db, key: &str) -> Result<Option<DeliveryRow>> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM deliveries WHERE id = $1 OR seq = $2");
    let seq = key.parse::<i64>().unwrap_or(-1);
    let row = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(key).bind(seq).fetch_optional(db.pool()).await?;
    Ok(row)
}

/// The body of delivery `seq`: None when there is no such delivery, empty when the retention
/// dropped it.
pub async fn body(db: &Db, seq: i64) -> Result<Option<String>> {
    let row: Option<(Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT b.body, b.body_lz4 FROM deliveries d LEFT JOIN delivery_bodies b ON b.seq = d.seq WHERE d.seq = $1",
    )
    .bind(seq)
    .fetch_optional(db.pool())
    .await?;
    match row {
        None => Ok(None),
        Some((text, z)) => {
            inflate(text.as_deref().unwrap_or(""), z.as_deref()).map(Some).map_err(super::StoreError::Invalid)
        }
    }
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

/// Drops the bodies of done deliveries finished before `cutoff`, a batch at a time: the rows stay
/// (their event, outcome, times and attempts, and the body's hash, so that a replay is still
/// refused). Parked ones keep theirs (they may be retried).
///
/// Bodies are walked once in `seq` order, oldest first, up to (about) the newest delivery
/// finished before the cutoff (found through `deliveries_finished`), one transaction per window
/// of `batch` bodies: what a prune reads is the bodies it drops and the few still needed below
/// the bound (open or parked deliveries), however long the history of rows.
pub async fn drop_bodies(db: &Db, cutoff: i64, batch: i64) -> Result<u64> {
    // Deliveries finish roughly in seq order, not exactly (a retry finishes late): the bound is
    // the highest seq among the last 1,000 finished before the cutoff, so that a row finished a
    // little earlier with a higher seq is not left for a later prune (which, on an idle App,
    // might not come for a long time).
    let bound: (Option<i64>,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT MAX(seq) FROM (SELECT seq FROM deliveries {} WHERE state = 'done' AND finished_at < $1 \
         ORDER BY finished_at DESC LIMIT 1000) last",
        finished_by(db)
    )))
    .bind(cutoff)
    .fetch_one(db.pool())
    .await?;
    let Some(bound) = bound.0 else { return Ok(0) };
    // The bodies are walked by their key, a window of `batch` at a time, and each one's delivery
    // looked up by a scalar subquery, which neither planner turns into a join. Left to
    // themselves, both drove the walk from the deliveries instead (every done delivery below the
    // bound through `deliveries_state`, or a hash join over every delivery finished before the
    // cutoff): 1.6-3.5 s a batch of 1,000 on a year's inbox, hours for its bodies.
    let mut after = 0;
    let mut total = 0;
    loop {
        let last: (Option<i64>,) = sqlx::query_as(
            "SELECT MAX(seq) FROM (SELECT seq FROM delivery_bodies WHERE seq > $1 AND seq <= $2 \
             ORDER BY seq LIMIT $3) w",
        )
        .bind(after)
        .bind(bound)
        .bind(batch)
        .fetch_one(db.pool())
        .await?;
        let Some(last) = last.0 else { return Ok(total) };
        let mut tx = db.begin_write().await?;
        let r = sqlx::query(
            "DELETE FROM delivery_bodies WHERE seq > $1 AND seq <= $2 AND (SELECT d.state = 'done' \
             AND d.finished_at < $3 FROM deliveries d WHERE d.seq = delivery_bodies.seq)",
        )
        .bind(after)
        .bind(last)
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        total += r.rows_affected();
        after = last;
    }
}

/// Done deliveries in `finished_at` order: SQLite, without statistics, took `deliveries_state`
/// for `state = 'done'`, which on a year's inbox is every row, and sorted them all for a LIMIT
/// (0.5 s for the prune's DELETE, inside the write lock every webhook's commit waits for; 1.2 s
/// for the retention's bound). The partial index of done rows gives them in order.
fn finished_by(db: &Db) -> String {
    super::queue::index_hint(db.backend(), "deliveries", "finished")
}

/// Deletes done deliveries finished before `cutoff`, a batch at a time. Parked ones stay.
pub async fn prune(db: &Db, cutoff: i64, batch: i64) -> Result<u64> {
    let sql = format!(
        "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries {} \
         WHERE state = 'done' AND finished_at < $1 ORDER BY finished_at LIMIT $2)",
        finished_by(db)
    );
    let mut total = 0;
    loop {
        let mut tx = db.begin_write().await?;
        let r = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(cutoff).bind(batch).execute(&mut *tx).await?;
        tx.commit().await?;
        total += r.rows_affected();
        if r.rows_affected() < batch as u64 {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn a_body_key_starts_with_its_latest_time() {
        let body = r#"{"created_at":"2019-05-15T15:20:17Z","updated_at":"2026-12-08T01:02:03+01:00","x":"1999-01-01T00:00:00"}"#;
        let key = body_key(body);
        assert_eq!(key.len(), 14 + 1 + 64);
        assert!(key.starts_with("20261208010203:"), "{key}");
        assert_eq!(legacy_hash(&key), hex::encode(sha2::Sha256::digest(body.as_bytes())));
        assert_eq!(key, body_key(body), "a function of the bytes");
        // Later bodies sort after earlier ones; a body without a time sorts first.
        let later = body_key(r#"{"completed_at":"2026-12-08T01:02:04Z"}"#);
        let none = body_key(r#"{"zen":"T T T 2026-12-08 T12:00:00"}"#);
        assert!(none.starts_with("00000000000000:"), "{none}");
        assert!(none < key && key < later);
        // Near-misses are not times; a time at either end of the text is.
        for (text, want) in [
            ("2026-12-08T01:02:0", 0),
            ("2026-12-08X01:02:03", 0),
            ("2026-12-0aT01:02:03", 0),
            ("2026/12/08T01:02:03", 0),
            ("T2026-12-08T01:02:03", 20261208010203),
            ("2026-12-08T01:02:03", 20261208010203),
            ("x2026-12-08T01:02:03.5Z", 20261208010203),
        ] {
            assert_eq!(latest_time(text.as_bytes()), want, "{text}");
        }
        assert_eq!(legacy_hash("bare"), "bare");
    }
}
