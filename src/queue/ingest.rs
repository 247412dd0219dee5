//! Group commit for the intake: concurrent webhook requests hand their delivery to a writer task,
//! which stores everything that has arrived meanwhile in one transaction and answers each request
//! once that commit is durable. One fsync serves many deliveries.
//!
//! On SQLite, which has one writer, the worker's claims and completions go through the same task
//! and the same transactions (`claim`, `complete`): instead of taking turns with the intake on the
//! one connection, each commit carries the deliveries that arrived, the results of those that were
//! processed, and the claim of the next ones.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use super::completer::{self, Completion, Recorded};
use crate::clock::Clock;
use crate::store::deliveries::{self, Claimed, InsertOutcome, NewDelivery};
use crate::store::{Backend, Db};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection};

const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the inbox could not store the delivery: {0}")]
    Store(String),
    #[error("the intake is shutting down")]
    Closed,
}

/// A claim asked of the writer: (worker, now, lease in ms, at most this many rows).
struct ClaimAsk {
    worker: String,
    now: i64,
    lease_ms: i64,
    limit: i64,
}

enum Job {
    Insert { delivery: NewDelivery, reply: oneshot::Sender<Result<InsertOutcome, IngestError>> },
    Complete { completion: Completion, reply: oneshot::Sender<Recorded> },
    Claim { ask: ClaimAsk, reply: oneshot::Sender<Result<Vec<Claimed>, String>> },
}

impl Job {
    /// The bytes a job's rows carry (for the batch limit).
    fn bytes(&self) -> usize {
        match self {
            Job::Insert { delivery: d, .. } => d.body.len() + d.body_lz4.as_ref().map_or(0, Vec::len),
            _ => 0,
        }
    }
}

impl completer::CompletionSink for Ingestor {
    fn complete(
        &self,
        completion: Completion,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Recorded> + Send + '_>> {
        Box::pin(Ingestor::complete(self, completion))
    }
}

#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Job>,
    backend: Backend,
}

/// Whom a commit wakes: the worker (`stored`: something new to claim) and the relay
/// (`relay`: a completion queued actions).
#[derive(Clone)]
pub struct Wakes {
    pub stored: Arc<Notify>,
    pub relay: Arc<Notify>,
}

impl Ingestor {
    /// Starts the writer tasks: one on SQLite (it has one writer anyway), a few on PostgreSQL so
    /// that commits overlap.
    pub fn start(db: Db, clock: Clock, wakes: Wakes) -> Ingestor {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let backend = db.backend();
        let writers = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => crate::store::PG_INTAKE_CONNECTIONS,
        };
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let committed = match backend {
            Backend::Sqlite => Some(checkpointer(db.clone())),
            Backend::Postgres => None,
        };
        for _ in 0..writers {
            let (db, clock, rx, wakes, committed) =
                (db.clone(), clock.clone(), rx.clone(), wakes.clone(), committed.clone());
            tokio::spawn(async move { writer(db, clock, rx, wakes, committed).await });
        }
        Ingestor { tx, backend }
    }

    /// Whether the worker's claims and completions should go through this writer (SQLite).
    pub fn carries_worker(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// Stores one delivery durably; returns once it is committed (or known to be a duplicate).
    pub async fn ingest(&self, delivery: NewDelivery) -> Result<InsertOutcome, IngestError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job::Insert { delivery, reply }).await.map_err(|_| IngestError::Closed)?;
        rx.await.map_err(|_| IngestError::Closed)?
    }

    /// Records a processed delivery in the next commit.
    pub async fn complete(&self, completion: Completion) -> Recorded {
        let (reply, rx) = oneshot::channel();
        let closed = || "the worker is shutting down".to_string();
        self.tx.send(Job::Complete { completion, reply }).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Claims deliveries in the next commit (see [`crate::store::queue::Queue::claim`]).
    pub async fn claim(&self, worker: &str, now: i64, lease_ms: i64, limit: i64) -> Result<Vec<Claimed>, String> {
        let (reply, rx) = oneshot::channel();
        let ask = ClaimAsk { worker: worker.to_string(), now, lease_ms, limit };
        let closed = || "the intake is shutting down".to_string();
        self.tx.send(Job::Claim { ask, reply }).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

/// What one commit did, in the order of the jobs of each kind.
struct Done {
    stored: Vec<InsertOutcome>,
    /// A stored row may be claimable ([`deliveries::insert_batch_ready`]).
    ready: bool,
    /// What the inserts did, for settling their waiting rows after the commit.
    inserted: Option<deliveries::Inserted>,
    recorded: Vec<Recorded>,
    claimed: Vec<Result<Vec<Claimed>, String>>,
}

/// How long a writer keeps its connection while work keeps coming before giving it back. On
/// SQLite the pool has one writer connection, so this bounds what the other writers (the relay,
/// the scheduler, lease renewals) wait under a steady intake: up to this plus one batch, against
/// one batch before. On PostgreSQL each writer has an intake connection of its own
/// (`store::PG_INTAKE_CONNECTIONS`) and this only recycles it; it is also how long a PostgreSQL
/// writer waits, connection in hand, for the receiver another writer is collecting a batch from.
const HOLD: std::time::Duration = std::time::Duration::from_millis(10);

/// How often, at most, the checkpointer copies committed pages from SQLite's WAL into the
/// database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// SQLite: copies the WAL's committed pages into the database file beside the intake's writer,
/// on a reader connection, so that the writer's commits do not do it ([`Db::checkpoint`]). Woken
/// by the intake's commits (the sender, one per writer); ends when the writers do, or when the
/// database is closed. Other writers' commits (relay, scheduler, pruning) do not wake it: their
/// pages are copied at the intake's next commit, or by SQLite's own checkpoint past 20,000 pages.
fn checkpointer(db: Db) -> mpsc::Sender<()> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            let pause = match db.checkpoint().await {
                Ok(()) => CHECKPOINT_EVERY,
                Err(_) if db.pool().is_closed() => return, // shutting down
                Err(e) => {
                    // At most one warning a second while it keeps failing (a full disk, say).
                    tracing::warn!(error = %e, "WAL checkpoint failed; commits past 20,000 WAL pages checkpoint instead");
                    std::time::Duration::from_secs(1)
                }
            };
            tokio::time::sleep(pause).await;
        }
    });
    tx
}

async fn writer(
    db: Db,
    clock: Clock,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    wakes: Wakes,
    committed: Option<mpsc::Sender<()>>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    // The connection this writer holds between batches, and since when.
    let mut held: Option<(PoolConnection<Any>, std::time::Instant)> = None;
    loop {
        {
            // Take whatever is waiting, up to the batch limits; block only for the first job.
            // Give the connection back before waiting for the channel, and before waiting longer
            // than the hold for the receiver (PostgreSQL's writers share it): another writer
            // holding it that long is waiting for deliveries too.
            let mut rx = match rx.try_lock() {
                Ok(rx) => rx,
                Err(_) => match tokio::time::timeout(HOLD, rx.lock()).await {
                    // Another writer is collecting a batch: busy, so keep the connection.
                    Ok(rx) => rx,
                    // Another writer is waiting for work: so is this one, without a connection.
                    Err(_) => {
                        held = None;
                        rx.lock().await
                    }
                },
            };
            let first = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(_) => {
                    held = None;
                    rx.recv().await
                }
            };
            match first {
                Some(job) => batch.push(job),
                None => return,
            }
            let mut bytes = batch[0].bytes();
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(job) => {
                        bytes += job.bytes();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
        }
        let mut inserts = Vec::new();
        let mut completions = Vec::new();
        let mut claims = Vec::new();
        for job in batch.drain(..) {
            match job {
                Job::Insert { delivery, reply } => inserts.push((delivery, reply)),
                Job::Complete { completion, reply } => completions.push((completion, reply)),
                Job::Claim { ask, reply } => claims.push((ask, reply)),
            }
        }
        if !inserts.is_empty() {
            metrics::histogram!("shipgate_ingest_batch_size").record(inserts.len() as f64);
        }
        let (deliveries, insert_replies): (Vec<_>, Vec<_>) = inserts.into_iter().unzip();
        let (completions, complete_replies): (Vec<_>, Vec<_>) = completions.into_iter().unzip();
        let (asks, claim_replies): (Vec<_>, Vec<_>) = claims.into_iter().unzip();
        if held.as_ref().is_some_and(|(_, since)| since.elapsed() >= HOLD) {
            held = None; // back to the pool: a writer waiting for it is next
        }
        let conn = match held.take() {
            Some(h) => Ok(h),
            None => db.acquire_writer().await.map(|c| (c, std::time::Instant::now())),
        };
        let now = clock.now_ms();
        // Its own task: a panic while applying a completion's effects fails this commit (every
        // job in it is answered with an error and retried), not the writer. The connection
        // comes back with the result; after a failure it goes back to the pool, which tests it.
        let db2 = db.clone();
        let joined = tokio::spawn(async move {
            let (mut conn, since) = match conn {
                Ok(c) => c,
                Err(e) => return (Err(e), completions, None),
            };
            let r = commit(&db2, &mut conn, &deliveries, &completions, &asks, now).await;
            let keep = r.is_ok().then_some((conn, since));
            (r, completions, keep)
        })
        .await
        .map(|(r, completions, keep)| {
            held = keep;
            (r, completions)
        });
        let n = (insert_replies.len(), complete_replies.len(), claim_replies.len());
        let done = match joined {
            Ok((Ok(done), completions)) => {
                if let Some(c) = &committed {
                    let _ = c.try_send(()); // full: a checkpoint is already due
                }
                let any_recorded = done.recorded.iter().any(|r| matches!(r, Ok(true)));
                if done.ready || any_recorded {
                    wakes.stored.notify_one(); // new heads, or the next rows of finished subjects
                }
                // Rows stored behind a head that may have finished while they were committed
                // (PostgreSQL): settled on the side, not in the way of the next batch.
                if let Some(inserted) = done.inserted.as_ref().filter(|i| !i.waiting.is_empty())
                    && db.backend() == Backend::Postgres
                {
                    let (db, wake) = (db.clone(), wakes.stored.clone());
                    let waiting = inserted.waiting.clone();
                    tokio::spawn(async move {
                        // Woken either way: a claim may have skipped a head this held locked.
                        match deliveries::settle(&db, &waiting).await {
                            Ok(_) => wake.notify_one(),
                            Err(e) => {
                                tracing::warn!(error = %e, "settling waiting deliveries failed; the heartbeat will")
                            }
                        }
                    });
                }
                let acted = completions
                    .iter()
                    .zip(&done.recorded)
                    .any(|(c, r)| matches!(r, Ok(true)) && completer::queues_actions(c));
                if acted {
                    wakes.relay.notify_one();
                }
                Ok(done)
            }
            Ok((Err(e), _)) => {
                tracing::error!(error = %e, inserts = n.0, completions = n.1, "group commit failed; answering 503");
                Err(e.to_string())
            }
            Err(e) => {
                tracing::error!(error = %e, inserts = n.0, completions = n.1, "group commit panicked; answering 503");
                Err("the commit panicked".to_string())
            }
        };
        match done {
            Ok(done) => {
                for (reply, outcome) in insert_replies.into_iter().zip(done.stored) {
                    let _ = reply.send(Ok(outcome));
                }
                for (reply, recorded) in complete_replies.into_iter().zip(done.recorded) {
                    let _ = reply.send(recorded);
                }
                for (reply, claimed) in claim_replies.into_iter().zip(done.claimed) {
                    let _ = reply.send(claimed);
                }
            }
            Err(msg) => {
                for reply in insert_replies {
                    let _ = reply.send(Err(IngestError::Store(msg.clone())));
                }
                for reply in complete_replies {
                    let _ = reply.send(Err(format!("recording the result failed: {msg}")));
                }
                for reply in claim_replies {
                    let _ = reply.send(Err(msg.clone()));
                }
            }
        }
    }
}

/// One transaction: the new deliveries, then the finished ones (each in a savepoint, so one whose
/// effects fail is rolled back alone), then the claims (which see both).
async fn commit(
    db: &Db,
    conn: &mut AnyConnection,
    deliveries: &[NewDelivery],
    completions: &[Completion],
    asks: &[ClaimAsk],
    now: i64,
) -> crate::store::Result<Done> {
    let mut tx = db.begin_on(conn).await?;
    let refs: Vec<&NewDelivery> = deliveries.iter().collect();
    let mut inserted = if refs.is_empty() { None } else { Some(deliveries::insert_batch_ready(&mut tx, &refs).await?) };
    let (stored, ready) = match &mut inserted {
        Some(i) => (std::mem::take(&mut i.outcomes), i.ready),
        None => (Vec::new(), false),
    };
    let recorded = if completions.is_empty() {
        Vec::new()
    } else {
        completer::record_each(&mut tx, completions, now, db.audit_key()).await?
    };
    let mut claimed = Vec::with_capacity(asks.len());
    for a in asks {
        let r = deliveries::QUEUE
            .claim_in::<Claimed>(&mut tx, db.backend(), &a.worker, a.now, a.lease_ms, a.limit)
            .await
            .map_err(|e| e.to_string());
        claimed.push(r);
    }
    tx.commit().await?;
    // Committed: the calls waiting at /gate/wait read their answer now.
    if completions.iter().zip(&recorded).any(|(c, r)| matches!(r, Ok(true)) && completer::decides_waits(c)) {
        crate::store::gate_waits::DECIDED.notify_waiters();
    }
    if completions.iter().zip(&recorded).any(|(c, r)| matches!(r, Ok(true)) && completer::schedules_rechecks(c)) {
        crate::store::rechecks::SCHEDULED.notify_waiters();
    }
    Ok(Done { stored, ready, inserted, recorded, claimed })
}
