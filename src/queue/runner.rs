//! Runs a leased queue ([`crate::store::queue::Queue`]): claims rows, processes each on its own
//! task (up to `concurrency` at once), keeps the leases alive, and on shutdown lets work under way
//! finish for a while before giving back what is left. The inbox's worker and the outbox's relay
//! are two jobs run by this.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use sqlx::FromRow;
use sqlx::any::AnyRow;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::WorkerConfig;
use crate::store::Db;
use crate::store::queue::Queue;

/// While rows are in flight, claims are at least this far apart.
const CLAIM_COALESCE: Duration = Duration::from_millis(2);

/// What a runner runs.
pub trait Job: Send + Sync + 'static {
    type Item: for<'r> FromRow<'r, AnyRow> + Send + Unpin + 'static;
    /// The queue's table.
    fn queue(&self) -> &'static Queue;
    /// "worker", "relay": for logs.
    fn name(&self) -> &'static str;
    /// The claimed row's `seq` (its lease is renewed while it is processed).
    fn seq(item: &Self::Item) -> i64;
    /// Processes one claimed row and records the result (done, retry, parked).
    fn process(&self, runner: &RunnerInfo, item: Self::Item) -> impl Future<Output = ()> + Send;
    /// Claims up to `limit` rows: the queue's own claim, unless the job routes it elsewhere.
    fn claim(
        &self,
        db: &Db,
        worker: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> impl Future<Output = crate::store::Result<Vec<Self::Item>>> + Send {
        let queue = self.queue();
        async move { queue.claim::<Self::Item>(db, worker, now, lease_ms, limit).await }
    }
}

/// What a job knows of the runner it runs in.
#[derive(Clone, Debug)]
pub struct RunnerInfo {
    pub id: String,
    pub cfg: WorkerConfig,
}

pub struct Runner<J: Job> {
    pub info: RunnerInfo,
    db: Db,
    job: Arc<J>,
    clock: Clock,
    wake: Arc<Notify>,
    /// The rows being processed now: the heartbeat renews their leases, and only theirs.
    in_flight: Arc<std::sync::Mutex<HashSet<i64>>>,
}

impl<J: Job> Clone for Runner<J> {
    fn clone(&self) -> Self {
        Runner {
            info: self.info.clone(),
            db: self.db.clone(),
            job: self.job.clone(),
            clock: self.clock.clone(),
            wake: self.wake.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

/// A name for this process's claims: host, pid and a random part.
pub fn worker_id(kind: &str) -> String {
    format!(
        "{}-{}-{}-{:08x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "shipgate".into()),
        std::process::id(),
        kind,
        fastrand::u32(..)
    )
}

impl<J: Job> Runner<J> {
    pub fn new(db: Db, job: J, cfg: WorkerConfig, clock: Clock, wake: Arc<Notify>) -> Runner<J> {
        let info = RunnerInfo { id: worker_id(job.name()), cfg };
        Runner { info, db, job: Arc::new(job), clock, wake, in_flight: Default::default() }
    }

    /// Runs until `shutdown` turns true.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move { self.run(shutdown).await })
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let cfg = &self.info.cfg;
        let (name, id) = (self.job.name(), self.info.id.clone());
        let queue = self.job.queue();
        let permits = Arc::new(Semaphore::new(cfg.concurrency));
        let heartbeat = tokio::spawn(self.clone().heartbeat());
        tracing::info!(runner = name, worker = %id, concurrency = cfg.concurrency, "started");
        let mut last_claim = Instant::now() - CLAIM_COALESCE;
        while !*shutdown.borrow() {
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = permits.acquire() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            // Busy: let a few more finish before claiming again, so that one claim (one commit)
            // takes several rows instead of one each time a row finishes.
            let since = last_claim.elapsed();
            if free < cfg.concurrency && since < CLAIM_COALESCE {
                tokio::select! {
                    _ = tokio::time::sleep(CLAIM_COALESCE - since) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            last_claim = Instant::now();
            let lease_ms = cfg.lease.as_millis() as i64;
            match self.job.claim(&self.db, &id, self.clock.now_ms(), lease_ms, free as i64).await {
                Ok(claimed) if !claimed.is_empty() => {
                    for item in claimed {
                        let Ok(permit) = permits.clone().try_acquire_owned() else { break };
                        let me = self.clone();
                        let seq = J::seq(&item);
                        self.in_flight().insert(seq);
                        tokio::spawn(async move {
                            me.job.process(&me.info, item).await;
                            me.in_flight().remove(&seq);
                            drop(permit);
                            me.wake.notify_one(); // the subject's next row may be claimable now
                        });
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(cfg.poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(runner = name, worker = %id, error = %e, "claiming failed");
                    tokio::select! {
                        _ = tokio::time::sleep(cfg.poll_interval.max(Duration::from_millis(500))) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        // Shutdown: let work under way finish for a while, then give back what is left.
        let all = cfg.concurrency as u32;
        let finished = tokio::time::timeout(cfg.shutdown_grace, permits.acquire_many(all)).await.is_ok();
        heartbeat.abort();
        match queue.release(&self.db, &id, self.clock.now_ms()).await {
            Ok(n) => tracing::info!(runner = name, worker = %id, released = n, all_finished = finished, "stopped"),
            Err(e) => tracing::error!(runner = name, worker = %id, error = %e, "could not release leases"),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renews the leases of the rows being processed. Only theirs: a row this worker holds but is
    /// not working on (a claim that committed while its answer was lost to a database restart, a
    /// failure that could not be recorded) must see its lease run out, as a dead worker's does,
    /// and be claimed again; renewed with the others, it and every later row of its subject would
    /// wait for as long as this process lives.
    async fn heartbeat(self) {
        let cfg = &self.info.cfg;
        let every = (cfg.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            match self.job.queue().ready_orphans(&self.db).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(runner = self.job.name(), readied = n, "readied waiting rows left without a head");
                    self.wake.notify_one();
                }
                Err(e) => tracing::warn!(runner = self.job.name(), error = %e, "readying waiting rows failed"),
            }
            let until = self.clock.now_ms() + cfg.lease.as_millis() as i64;
            let seqs: Vec<i64> = self.in_flight().iter().copied().collect();
            if let Err(e) = self.job.queue().heartbeat(&self.db, &self.info.id, &seqs, until).await {
                tracing::warn!(runner = self.job.name(), error = %e, "lease renewal failed");
            }
        }
    }
}

/// Exponential backoff with jitter: a random delay in [d/2, d], d = base·2^(attempt-1) ≤ max.
pub fn backoff_ms(cfg: &WorkerConfig, attempt: i64) -> i64 {
    let max = cfg.retry_max.max(Duration::from_millis(1));
    // backon's jitter adds up to the delay itself, so it is given the halves.
    let delay = ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(cfg.retry_base.min(max) / 2)
        .with_max_delay(max / 2)
        .without_max_times()
        .build()
        .nth(attempt.clamp(1, 31) as usize - 1)
        .unwrap_or(max);
    // backon computes in f32 seconds: rounding keeps the bounds whole milliseconds.
    (delay.as_secs_f64() * 1000.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = WorkerConfig {
            retry_base: Duration::from_millis(1000),
            retry_max: Duration::from_millis(60_000),
            ..WorkerConfig::default()
        };
        for _ in 0..100 {
            let b1 = backoff_ms(&cfg, 1);
            assert!((500..=1000).contains(&b1), "{b1}");
            let b3 = backoff_ms(&cfg, 3);
            assert!((2000..=4000).contains(&b3), "{b3}");
            let b20 = backoff_ms(&cfg, 20);
            assert!((30_000..=60_000).contains(&b20), "{b20}");
        }
    }
}
