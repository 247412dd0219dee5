//! Group commit for the worker: deliveries finished at about the same time are recorded — each
//! marked done with its handler's effects — in one transaction, so one commit (one fsync) serves
//! many. Each delivery runs inside its own savepoint: one whose effects fail to apply is rolled
//! back alone and reported to its worker, the others commit.

use std::sync::Arc;

use sqlx::{Any, Transaction};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::clock::Clock;
use crate::handlers::{Effect, Handled};
use crate::store::Db;
use crate::store::deliveries::{self, Claimed};

const MAX_BATCH: usize = 64;

/// What a worker hands over when its handler is done.
pub struct Completion {
    pub claimed: Claimed,
    pub worker: String,
    pub started_at: i64,
    pub handled: Handled,
}

/// The result for one delivery: Ok(true) recorded, Ok(false) its lease was lost, Err(why) it could
/// not be recorded (the delivery is retried).
pub type Recorded = Result<bool, String>;

/// A completion waiting for its commit (private fields: only this module makes one).
pub struct Job {
    completion: Completion,
    reply: oneshot::Sender<Recorded>,
}

/// Something else that commits completions: the intake's group commit (`queue::ingest`
/// implements it; this module does not depend on the intake).
pub trait CompletionSink: Send + Sync {
    fn complete(
        &self,
        completion: Completion,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Recorded> + Send + '_>>;
}

/// Where completions are committed: a task of their own (PostgreSQL), or the intake's group
/// commit (SQLite, whose one writer the intake and the worker would otherwise take turns on).
#[derive(Clone)]
pub enum Completer {
    Own(mpsc::Sender<Job>),
    Shared(Arc<dyn CompletionSink>),
}

impl Completer {
    /// Starts the committing task. One, on both backends: SQLite has one writer anyway, and on
    /// PostgreSQL two batches taking row locks (an installation's audit head, request rows) in
    /// different orders could deadlock each other. `relay_wake` is notified after a commit that
    /// queued actions.
    pub fn start(db: Db, clock: Clock, relay_wake: Arc<Notify>) -> Completer {
        let (tx, rx) = mpsc::channel::<Job>(1024);
        tokio::spawn(async move { committer(db, clock, rx, relay_wake).await });
        Completer::Own(tx)
    }

    /// Records one delivery's completion; returns once it is committed (or failed).
    pub async fn record(&self, completion: Completion) -> Recorded {
        match self {
            Completer::Own(tx) => {
                let (reply, rx) = oneshot::channel();
                tx.send(Job { completion, reply }).await.map_err(|_| "the worker is shutting down".to_string())?;
                rx.await.map_err(|_| "the worker is shutting down".to_string())?
            }
            Completer::Shared(ingest) => ingest.complete(completion).await,
        }
    }
}

async fn committer(db: Db, clock: Clock, mut rx: mpsc::Receiver<Job>, relay_wake: Arc<Notify>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        match rx.recv().await {
            Some(job) => jobs.push(job),
            None => return,
        }
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        metrics::histogram!("shipgate_completion_batch_size").record(jobs.len() as f64);
        let now = clock.now_ms();
        let (completions, replies): (Vec<Completion>, Vec<_>) = jobs.drain(..).map(|j| (j.completion, j.reply)).unzip();
        let n = completions.len();
        // Its own task: a panic while applying effects fails this batch (each is retried), not the
        // committer and with it every completion after.
        let db2 = db.clone();
        let joined = tokio::spawn(async move {
            let r = commit_batch(&db2, &completions, now).await;
            (r, completions)
        })
        .await;
        let results: Vec<Recorded> = match joined {
            Ok((Ok(results), completions)) => {
                let acted = completions.iter().zip(&results).any(|(c, r)| matches!(r, Ok(true)) && queues_actions(c));
                if acted {
                    relay_wake.notify_one();
                    // Actions stored behind a head that finished meanwhile (PostgreSQL).
                    if db.backend() == crate::store::Backend::Postgres {
                        let (db, wake) = (db.clone(), relay_wake.clone());
                        tokio::spawn(async move {
                            match crate::store::outbox::settle(&db, now).await {
                                Ok(_) => wake.notify_one(),
                                Err(e) => {
                                    tracing::warn!(error = %e, "settling waiting actions failed; the heartbeat will")
                                }
                            }
                        });
                    }
                }
                // Committed: the calls waiting at /gate/wait read their answer now.
                if completions.iter().zip(&results).any(|(c, r)| matches!(r, Ok(true)) && decides_waits(c)) {
                    crate::store::gate_waits::DECIDED.notify_waiters();
                }
                // Committed: the timer looks at the coalesced evaluations again.
                if completions.iter().zip(&results).any(|(c, r)| matches!(r, Ok(true)) && schedules_rechecks(c)) {
                    crate::store::rechecks::SCHEDULED.notify_waiters();
                }
                results
            }
            Ok((Err(e), _)) => {
                tracing::error!(error = %e, batch = n, "recording completions failed");
                (0..n).map(|_| Err(format!("recording the result failed: {e}"))).collect()
            }
            Err(e) => {
                tracing::error!(error = %e, batch = n, "recording completions panicked");
                (0..n).map(|_| Err("recording the result panicked".to_string())).collect()
            }
        };
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// Does the completion answer or report on a job waiting at `/gate/wait`?
pub(crate) fn decides_waits(c: &Completion) -> bool {
    c.handled.effects.iter().any(Effect::decides_a_wait)
}

/// Does the completion schedule a coalesced evaluation?
pub(crate) fn schedules_rechecks(c: &Completion) -> bool {
    c.handled.effects.iter().any(Effect::schedules_a_recheck)
}

/// Does the completion put something in the outbox (for the relay)?
pub(crate) fn queues_actions(c: &Completion) -> bool {
    c.handled
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Act(_) | Effect::AnswerRule { .. } | Effect::ReportRule { .. }))
}

async fn commit_batch(db: &Db, batch: &[Completion], now: i64) -> crate::store::Result<Vec<Recorded>> {
    let mut tx = db.begin_write().await?;
    if let [one] = batch {
        // Alone: no savepoint needed (a failure rolls back the whole transaction, which is its own).
        let result = match record_one(&mut tx, one, now, db.audit_key()).await {
            Ok(true) => Ok(true),
            Ok(false) => {
                tx.rollback().await?;
                return Ok(vec![Ok(false)]);
            }
            Err(e) => {
                tx.rollback().await?;
                return Ok(vec![Err(format!("recording the result failed: {e}"))]);
            }
        };
        tx.commit().await?;
        return Ok(vec![result]);
    }
    let results = record_each(&mut tx, batch, now, db.audit_key()).await?;
    tx.commit().await?;
    Ok(results)
}

/// Records each completion in its own savepoint inside `tx`: one that fails is rolled back alone.
pub(crate) async fn record_each(
    tx: &mut Transaction<'_, Any>,
    batch: &[Completion],
    now: i64,
    audit_key: Option<&crate::store::audit::AuditKey>,
) -> crate::store::Result<Vec<Recorded>> {
    let mut results = Vec::with_capacity(batch.len());
    for completion in batch {
        sqlx::query("SAVEPOINT completion").execute(&mut **tx).await?;
        let result = match record_one(tx, completion, now, audit_key).await {
            Ok(true) => {
                sqlx::query("RELEASE SAVEPOINT completion").execute(&mut **tx).await?;
                Ok(true)
            }
            Ok(false) => {
                sqlx::query("ROLLBACK TO SAVEPOINT completion").execute(&mut **tx).await?;
                sqlx::query("RELEASE SAVEPOINT completion").execute(&mut **tx).await?;
                Ok(false)
            }
            Err(e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT completion").execute(&mut **tx).await?;
                sqlx::query("RELEASE SAVEPOINT completion").execute(&mut **tx).await?;
                Err(format!("recording the result failed: {e}"))
            }
        };
        results.push(result);
    }
    Ok(results)
}

/// Marks the delivery done and applies the handler's effects; false when the lease was lost.
async fn record_one(
    tx: &mut Transaction<'_, Any>,
    c: &Completion,
    now: i64,
    audit_key: Option<&crate::store::audit::AuditKey>,
) -> crate::store::Result<bool> {
    let claimed = &c.claimed;
    if !deliveries::complete(tx, claimed, &c.worker, c.started_at, now, c.handled.outcome).await? {
        return Ok(false);
    }
    for (i, effect) in c.handled.effects.iter().enumerate() {
        effect.apply(tx, claimed, i, now, audit_key).await?;
    }
    Ok(true)
}
