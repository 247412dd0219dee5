//! A leased work queue over a table, shared by the inbox (`deliveries`) and the outbox
//! (`outbox`). Rows have `seq` (order), `subject`, `state` (pending | running | done | parked, plus
//! table-specific final states), `attempts`, `next_attempt_at`, `lease_owner`, `lease_until`,
//! `last_error`, `finished_at`.
//!
//! * Only the oldest unfinished row of a subject is claimable, so a subject's rows run one at a
//!   time and in order; different subjects run in parallel.
//! * A claim is a lease: renewed by `heartbeat`, given back by `release`, and claimable by anyone
//!   once it has run out (a crashed worker). Completion checks the lease, so a worker that lost
//!   its lease cannot complete a row another worker now holds.

use sqlx::{Any, FromRow, Transaction, any::AnyRow};

use super::{Backend, Db, Result};

#[derive(Clone, Copy, Debug)]
pub struct Queue {
    pub table: &'static str,
    /// Columns returned by `claim`.
    pub returning: &'static str,
}

/// The lease a worker holds on a row: which row, which claim.
#[derive(Clone, Copy, Debug)]
pub struct Lease<'a> {
    pub seq: i64,
    pub worker: &'a str,
    pub attempts: i64,
}

/// Whether the claim may run as a prepared statement that keeps its plan. Not on PostgreSQL: a
/// plan made while the table was small (a new database) stays cached on the connection until
/// something analyzes the table (autovacuum within a minute or so when it is on; never when it is
/// off, as on the benchmark machine), and the claim's UPDATE then found its few rows by a
/// sequential scan of the whole inbox, 4-8 ms per claim at 34,000 rows (auto_explain,
/// docs/benchmarks.md). Planned afresh each time it finds them through the primary key, for a
/// fraction of a millisecond of planning; SQLite plans by its rules, not by the table's size.
fn keeps_plan(backend: Backend) -> bool {
    backend == Backend::Sqlite
}

/// `INDEXED BY {table}_{index}` on SQLite, which has no statistics to choose a partial index by;
/// nothing on PostgreSQL, whose planner does.
pub(super) fn index_hint(backend: Backend, table: &str, index: &str) -> String {
    match backend {
        Backend::Sqlite => format!("INDEXED BY {table}_{index}"),
        Backend::Postgres => String::new(),
    }
}

impl Queue {
    /// Claims up to `limit` rows for `worker` until `now + lease_ms`.
    pub async fn claim<T>(&self, db: &Db, worker: &str, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        if db.backend() == Backend::Postgres {
            let mut tx = db.begin_write().await?;
            let rows = self.claim_in(&mut tx, Backend::Postgres, worker, now, lease_ms, limit).await?;
            tx.commit().await?;
            return Ok(rows);
        }
        let sql = self.claim_sql(db.backend());
        let rows: Vec<T> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .persistent(keeps_plan(db.backend()))
            .bind(worker)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(db.writer())
            .await?;
        Ok(rows)
    }

    /// The same claim inside a write transaction (SQLite: the intake's group commit; PostgreSQL:
    /// the claim's own, which holds the queue's claim lock until it commits).
    pub async fn claim_in<T>(
        &self,
        tx: &mut Transaction<'_, Any>,
        backend: Backend,
        worker: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        if backend == Backend::Postgres {
            // Claims of one queue take turns, each in a statement begun after the one before it
            // committed. Under PostgreSQL's read committed, a claim's statement sees the table
            // as it was when the statement began: a claim still in flight elsewhere shows its
            // row as pending, not running, so the safety nets below would let an older row of
            // the same subject (committed by a slow intake writer in between) run beside it.
            // The lock is the transaction's: it goes with the commit. Held for one claim
            // statement, a millisecond or so.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("shipgate.claim.{}", self.table))
                .execute(&mut **tx)
                .await?;
        }
        let sql = self.claim_sql(backend);
        let rows: Vec<T> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .persistent(keeps_plan(backend))
            .bind(worker)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut **tx)
            .await?;
        Ok(rows)
    }

    /// The claim: $1 worker, $2 lease until, $3 now, $4 limit. Public so that tests can look at
    /// its plan.
    pub fn claim_sql(&self, backend: Backend) -> String {
        let t = self.table;
        // Ready rows only (the head of each subject), then two cheap safety nets (an index seek
        // each): no older open row of the subject, and no other row of the subject running under
        // a live lease. The second matters on PostgreSQL, where concurrent intake writers can
        // commit a subject's rows out of seq order: a younger row may run first, and the older
        // one, committed a moment later, must wait for it instead of running beside it.
        // SQLite, without statistics, would pick the (state, seq) index and read every open row;
        // the partial index of ready rows keeps a claim proportional to the subjects with work,
        // and the one of running rows keeps the second net a seek however long the subject's
        // backlog.
        let (hint, running_hint) = (index_hint(backend, t, "ready"), index_hint(backend, t, "running"));
        let candidates = format!(
            "SELECT d.seq FROM {t} d {hint} \
             WHERE d.state IN ('pending', 'running') AND d.blocked = 0 \
               AND ((d.state = 'pending' AND d.next_attempt_at <= $3) OR (d.state = 'running' AND d.lease_until <= $3)) \
               AND NOT EXISTS (SELECT 1 FROM {t} e \
                               WHERE e.subject = d.subject AND e.state IN ('pending', 'running') AND e.seq < d.seq) \
               AND NOT EXISTS (SELECT 1 FROM {t} r {running_hint} \
                               WHERE r.subject = d.subject AND r.state = 'running' AND r.seq <> d.seq \
                                 AND r.lease_until > $3) \
             ORDER BY d.seq LIMIT $4"
        );
        let set = "SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1";
        match backend {
            // One statement: SQLite runs writers one at a time, so no two workers claim one row.
            Backend::Sqlite => format!("UPDATE {t} {set} WHERE seq IN ({candidates}) RETURNING {}", self.returning),
            // Rows another worker is claiming are skipped, not waited for.
            Backend::Postgres => format!(
                "UPDATE {t} {set} WHERE seq = ANY(ARRAY({candidates} FOR UPDATE SKIP LOCKED)) RETURNING {}",
                self.returning
            ),
        }
    }

    /// Ends a claimed row in `state` (done, or a table's own final state) with `outcome`, inside
    /// `tx`. False (and the caller rolls back) when the lease was lost.
    pub async fn finish(
        &self,
        tx: &mut Transaction<'_, Any>,
        lease: Lease<'_>,
        state: &str,
        outcome: &str,
        now: i64,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET state = $1, outcome = $2, finished_at = $3, lease_owner = NULL, lease_until = NULL, \
             last_error = NULL WHERE seq = $4 AND state = 'running' AND lease_owner = $5 AND attempts = $6",
            self.table
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state)
            .bind(outcome)
            .bind(now)
            .bind(lease.seq)
            .bind(lease.worker)
            .bind(lease.attempts)
            .execute(&mut **tx)
            .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        self.ready_next(tx, lease.seq).await?;
        Ok(true)
    }

    /// The row `seq` has finished (or parked): the next waiting row of its subject becomes ready.
    async fn ready_next(&self, tx: &mut Transaction<'_, Any>, seq: i64) -> Result<()> {
        let t = self.table;
        let sql = format!(
            "UPDATE {t} SET blocked = 0 WHERE seq = (SELECT MIN(w.seq) FROM {t} w \
             WHERE w.subject = (SELECT subject FROM {t} WHERE seq = $1) AND w.state = 'pending' AND w.blocked = 1)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(seq).execute(&mut **tx).await?;
        Ok(())
    }

    /// Called by a writer after it committed rows that wait behind an open row of their subject
    /// (`subjects`): readies each subject's oldest waiting row if the subject has no open head.
    /// PostgreSQL only (SQLite's one writer runs an insert and a finish one after the other).
    ///
    /// Under read committed an insert and the finish of its subject's head can race: the insert
    /// sees the head running and stores its row waiting; the finish, whose statement began before
    /// that insert committed, readies nothing; and the row waits until `ready_orphans` comes by
    /// (every third of a lease, 10 s by default). Here, after the insert committed, the
    /// subject's open heads are locked (`FOR UPDATE`): a finish in flight holds its head's lock,
    /// so this waits for it to commit and then sees the head done. A finish that begins after
    /// this sees the committed row itself. Either way the row is readied at once. Returns
    /// whether a row was readied.
    pub async fn ready_headless(&self, db: &Db, subjects: &[&str]) -> Result<bool> {
        if db.backend() != Backend::Postgres || subjects.is_empty() {
            return Ok(false);
        }
        let t = self.table;
        let mut subjects = subjects.to_vec();
        subjects.sort_unstable();
        subjects.dedup();
        let mut readied = false;
        for subject in subjects {
            let mut tx = db.begin_write().await?;
            // The heads are locked in the order of their seq, the same for every writer: two
            // batches settling one subject locked its heads in the order the plan met them, and
            // deadlocked once the heads had an index of their own (`{t}_heads`).
            let heads: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT seq FROM {t} WHERE subject = $1 AND state IN ('pending', 'running') AND blocked = 0 ORDER BY seq \
                 FOR UPDATE"
            )))
            .bind(subject)
            .fetch_all(&mut *tx)
            .await?;
            if heads.is_empty() {
                let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {t} SET blocked = 0 WHERE seq = (SELECT MIN(seq) FROM {t} WHERE subject = $1 \
                     AND state = 'pending' AND blocked = 1) AND NOT EXISTS (SELECT 1 FROM {t} WHERE subject = $1 \
                     AND state IN ('pending', 'running') AND blocked = 0)"
                )))
                .bind(subject)
                .execute(&mut *tx)
                .await?;
                readied |= r.rows_affected() > 0;
            }
            tx.commit().await?;
        }
        Ok(readied)
    }

    /// Readies the oldest waiting row of every subject that has no ready row before it. On
    /// PostgreSQL a finish and an insert can race: the finish does not see the insert's waiting
    /// row, and a later insert, seeing nothing open, is ready with a higher seq, so the waiting
    /// row would wait for ever (the claim serves a subject's oldest open row first). The writers
    /// settle their own rows at once ([`Queue::ready_headless`]); this is the backstop for a
    /// settling that failed and for writers that do not settle (the App's own rechecks). Run now
    /// and then. It walks the distinct subjects that have waiting rows (one index seek each, a loose
    /// index scan written as a recursive query) and looks only at each one's oldest waiting row:
    /// reading every waiting row took 109 ms on PostgreSQL, and held SQLite's writer as long,
    /// with one subject's 64,000 deliveries waiting.
    pub async fn ready_orphans(&self, db: &Db) -> Result<u64> {
        let t = self.table;
        let hint = index_hint(db.backend(), t, "waiting");
        let waiting = "w.state = 'pending' AND w.blocked = 1";
        let sql = format!(
            "WITH RECURSIVE subjects (subject) AS ( \
                 SELECT (SELECT MIN(w.subject) FROM {t} w {hint} WHERE {waiting}) \
                 UNION ALL \
                 SELECT (SELECT MIN(w.subject) FROM {t} w {hint} WHERE {waiting} AND w.subject > s.subject) \
                 FROM subjects s WHERE s.subject IS NOT NULL), \
             oldest (subject, seq) AS ( \
                 SELECT s.subject, (SELECT MIN(w.seq) FROM {t} w {hint} WHERE w.subject = s.subject AND {waiting}) \
                 FROM subjects s WHERE s.subject IS NOT NULL) \
             UPDATE {t} SET blocked = 0 WHERE seq IN (SELECT o.seq FROM oldest o WHERE NOT EXISTS ( \
                 SELECT 1 FROM {t} e WHERE e.subject = o.subject AND e.state IN ('pending', 'running') \
                 AND e.blocked = 0 AND e.seq < o.seq))"
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(db.writer()).await?;
        Ok(r.rows_affected())
    }

    /// Records a failed attempt: back to `pending` at `retry_at`, or `parked`. False when the
    /// lease was lost.
    pub async fn fail(
        &self,
        tx: &mut Transaction<'_, Any>,
        lease: Lease<'_>,
        error: &str,
        retry_at: i64,
        park: bool,
        now: i64,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET state = $1, next_attempt_at = $2, last_error = $3, lease_owner = NULL, lease_until = NULL, \
             finished_at = $4 WHERE seq = $5 AND state = 'running' AND lease_owner = $6 AND attempts = $7",
            self.table
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(if park { "parked" } else { "pending" })
            .bind(retry_at)
            .bind(error)
            .bind(if park { Some(now) } else { None })
            .bind(lease.seq)
            .bind(lease.worker)
            .bind(lease.attempts)
            .execute(&mut **tx)
            .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        if park {
            self.ready_next(tx, lease.seq).await?;
        }
        Ok(true)
    }

    /// Puts a claimed row back to pending at `at` without counting the attempt (e.g. waiting for
    /// a rate limit to reset). False when the lease was lost.
    pub async fn defer(&self, db: &Db, lease: Lease<'_>, at: i64, note: &str) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET state = 'pending', next_attempt_at = $1, last_error = $2, attempts = attempts - 1, \
             lease_owner = NULL, lease_until = NULL WHERE seq = $3 AND state = 'running' AND lease_owner = $4 \
             AND attempts = $5",
            self.table
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(at)
            .bind(note)
            .bind(lease.seq)
            .bind(lease.worker)
            .bind(lease.attempts)
            .execute(db.writer())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Extends the leases of rows `seqs`, which `worker` holds and is processing.
    pub async fn heartbeat(&self, db: &Db, worker: &str, seqs: &[i64], lease_until: i64) -> Result<u64> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "UPDATE {} SET lease_until = $1 WHERE state = 'running' AND lease_owner = $2 AND seq IN ({})",
            self.table,
            (3..seqs.len() + 3).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(lease_until).bind(worker);
        for s in seqs {
            q = q.bind(*s);
        }
        let r = q.execute(db.writer()).await?;
        Ok(r.rows_affected())
    }

    /// Gives back the claims `worker` still holds (shutdown): pending at once, and the
    /// interrupted attempt does not count.
    pub async fn release(&self, db: &Db, worker: &str, now: i64) -> Result<u64> {
        let sql = format!(
            "UPDATE {} SET state = 'pending', lease_owner = NULL, lease_until = NULL, attempts = attempts - 1, \
             next_attempt_at = $1 WHERE state = 'running' AND lease_owner = $2",
            self.table
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(worker).execute(db.writer()).await?;
        Ok(r.rows_affected())
    }

    /// Makes a parked (or finished) row pending again with a fresh set of attempts. False for a
    /// row that is pending or running.
    pub async fn retry(&self, db: &Db, seq: i64, now: i64) -> Result<bool> {
        let sql = format!(
            "UPDATE {} SET state = 'pending', blocked = 0, attempts = 0, next_attempt_at = $1, outcome = NULL, \
             finished_at = NULL WHERE seq = $2 AND state NOT IN ('pending', 'running')",
            self.table
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(seq).execute(db.writer()).await?;
        Ok(r.rows_affected() == 1)
    }

    /// Open and parked rows per state, and the oldest open row's creation time (`time_column`).
    /// Finished rows are not counted: there are millions after a year, and a scrape must not read
    /// them all (`shipgate_deliveries_processed_total` counts them as they finish).
    pub async fn stats(&self, db: &Db, time_column: &str) -> Result<QueueStats> {
        let sql = format!(
            "SELECT state, COUNT(*) FROM {} WHERE state IN ('pending', 'running', 'parked') GROUP BY state",
            self.table
        );
        let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db.pool()).await?;
        let mut s = QueueStats::default();
        for (state, n) in rows {
            match state.as_str() {
                "pending" => s.pending = n,
                "running" => s.running = n,
                "parked" => s.parked = n,
                _ => {}
            }
        }
        let sql = format!(
            "SELECT {time_column} FROM {} WHERE state IN ('pending', 'running') ORDER BY seq LIMIT 1",
            self.table
        );
        let oldest: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_optional(db.pool()).await?;
        s.oldest_open_at = oldest.map(|r| r.0);
        Ok(s)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub pending: i64,
    pub running: i64,
    pub parked: i64,
    /// Creation time of the oldest pending or running row.
    pub oldest_open_at: Option<i64>,
}
