//! Group commit for the intake: concurrent webhook requests hand their delivery to a writer task,
//! which stores everything that has arrived meanwhile in one transaction and answers each request
//! once that commit is durable. One fsync serves many deliveries.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::store::deliveries::{self, InsertOutcome, NewDelivery};
use crate::store::{Backend, Db};

const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the inbox could not store the delivery: {0}")]
    Store(String),
    #[error("the intake is shutting down")]
    Closed,
}

struct Job {
    delivery: NewDelivery,
    reply: oneshot::Sender<Result<InsertOutcome, IngestError>>,
}

#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Job>,
}

impl Ingestor {
    /// Starts the writer tasks: one on SQLite (it has one writer anyway), a few on PostgreSQL so
    /// that commits overlap. `stored` is notified after each commit that stored something.
    pub fn start(db: Db, stored: Arc<Notify>) -> Ingestor {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let writers = match db.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..writers {
            let (db, rx, stored) = (db.clone(), rx.clone(), stored.clone());
            tokio::spawn(async move { writer(db, rx, stored).await });
        }
        Ingestor { tx }
    }

    /// Stores one delivery durably; returns once it is committed (or known to be a duplicate).
    pub async fn ingest(&self, delivery: NewDelivery) -> Result<InsertOutcome, IngestError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job { delivery, reply }).await.map_err(|_| IngestError::Closed)?;
        rx.await.map_err(|_| IngestError::Closed)?
    }
}

/// The bytes a delivery's row carries.
fn stored_len(d: &NewDelivery) -> usize {
    d.body.len() + d.body_lz4.as_ref().map_or(0, Vec::len)
}

async fn writer(db: Db, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>, stored: Arc<Notify>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            // Take whatever is waiting, up to the batch limits; block only for the first job.
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            let mut bytes = stored_len(&batch[0].delivery);
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(job) => {
                        bytes += stored_len(&job.delivery);
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
        }
        metrics::histogram!("shipgate_ingest_batch_size").record(batch.len() as f64);
        let refs: Vec<&NewDelivery> = batch.iter().map(|j| &j.delivery).collect();
        match deliveries::insert_batch(&db, &refs).await {
            Ok(outcomes) => {
                let any_stored = outcomes.iter().any(|o| matches!(o, InsertOutcome::Stored(_)));
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
                if any_stored {
                    stored.notify_one();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = batch.len(), "group commit failed; answering 503");
                let msg = e.to_string();
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(IngestError::Store(msg.clone())));
                }
            }
        }
    }
}
