//! Group commit for the worker: deliveries finished at about the same time are recorded — each
//! marked done with its handler's effects — in one transaction, so one commit (one fsync) serves
//! many. Each delivery runs inside its own savepoint: one whose effects fail to apply is rolled
//! back alone and reported to its worker, the others commit.

use std::sync::Arc;

use sqlx::{Any, Transaction};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::clock::Clock;
use crate::handlers::{Effect, Handled};
use crate::store::deliveries::{self, Claimed};
use crate::store::{Backend, Db};

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

struct Job {
    completion: Completion,
    reply: oneshot::Sender<Recorded>,
}

#[derive(Clone)]
pub struct Completer {
    tx: mpsc::Sender<Job>,
}

impl Completer {
    /// Starts the committing tasks: one on SQLite (one writer anyway), two on PostgreSQL.
    /// `relay_wake` is notified after a commit that queued actions.
    pub fn start(db: Db, clock: Clock, relay_wake: Arc<Notify>) -> Completer {
        let (tx, rx) = mpsc::channel::<Job>(1024);
        let tasks = match db.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 2,
        };
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..tasks {
            let (db, clock, rx, wake) = (db.clone(), clock.clone(), rx.clone(), relay_wake.clone());
            tokio::spawn(async move { committer(db, clock, rx, wake).await });
        }
        Completer { tx }
    }

    /// Records one delivery's completion; returns once it is committed (or failed).
    pub async fn record(&self, completion: Completion) -> Recorded {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job { completion, reply }).await.map_err(|_| "the worker is shutting down".to_string())?;
        rx.await.map_err(|_| "the worker is shutting down".to_string())?
    }
}

async fn committer(db: Db, clock: Clock, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>, relay_wake: Arc<Notify>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        metrics::histogram!("shipgate_completion_batch_size").record(batch.len() as f64);
        let now = clock.now_ms();
        let results = match commit_batch(&db, &batch, now).await {
            Ok(results) => results,
            Err(e) => {
                tracing::error!(error = %e, batch = batch.len(), "recording completions failed");
                batch.iter().map(|_| Err(format!("recording the result failed: {e}"))).collect()
            }
        };
        let acted = batch.iter().zip(&results).any(|(j, r)| {
            matches!(r, Ok(true)) && j.completion.handled.effects.iter().any(|e| matches!(e, Effect::Act(_)))
        });
        for (job, result) in batch.drain(..).zip(results) {
            let _ = job.reply.send(result);
        }
        if acted {
            relay_wake.notify_one();
        }
    }
}

async fn commit_batch(db: &Db, batch: &[Job], now: i64) -> crate::store::Result<Vec<Recorded>> {
    let mut tx = db.begin_write().await?;
    let mut results = Vec::with_capacity(batch.len());
    if let [job] = batch {
        // Alone: no savepoint needed (a failure rolls back the whole transaction, which is its own).
        let result = match record_one(&mut tx, &job.completion, now).await {
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
    for job in batch {
        sqlx::query("SAVEPOINT completion").execute(&mut *tx).await?;
        let result = match record_one(&mut tx, &job.completion, now).await {
            Ok(true) => {
                sqlx::query("RELEASE SAVEPOINT completion").execute(&mut *tx).await?;
                Ok(true)
            }
            Ok(false) => {
                sqlx::query("ROLLBACK TO SAVEPOINT completion").execute(&mut *tx).await?;
                sqlx::query("RELEASE SAVEPOINT completion").execute(&mut *tx).await?;
                Ok(false)
            }
            Err(e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT completion").execute(&mut *tx).await?;
                sqlx::query("RELEASE SAVEPOINT completion").execute(&mut *tx).await?;
                Err(format!("recording the result failed: {e}"))
            }
        };
        results.push(result);
    }
    tx.commit().await?;
    Ok(results)
}

/// Marks the delivery done and applies the handler's effects; false when the lease was lost.
async fn record_one(tx: &mut Transaction<'static, Any>, c: &Completion, now: i64) -> crate::store::Result<bool> {
    let claimed = &c.claimed;
    if !deliveries::complete(tx, claimed, &c.worker, c.started_at, now, c.handled.outcome).await? {
        return Ok(false);
    }
    for (i, effect) in c.handled.effects.iter().enumerate() {
        effect.apply(tx, claimed, i, now).await?;
    }
    Ok(true)
}
