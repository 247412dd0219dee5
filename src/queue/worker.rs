//! The worker: claims deliveries under a lease, runs their handler, and records the result.
//!
//! * A subject's deliveries (one issue or PR, a repository, an installation) run one at a time and
//!   in arrival order; different subjects run in parallel, up to `concurrency`.
//! * Failures are retried with exponential backoff and full jitter, and parked after
//!   `max_attempts`.
//! * Leases are renewed while work is under way; a crashed worker's leases run out and its
//!   deliveries are claimed again. On shutdown the worker gives its leases back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::WorkerConfig;
use crate::handlers::{Ctx, Handled, HandlerError, Registry};
use crate::store::Db;
use crate::store::deliveries::{self, Claimed};

/// How long a handler may run before the attempt counts as failed.
const HANDLER_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct Worker {
    pub id: String,
    db: Db,
    registry: Arc<Registry>,
    cfg: WorkerConfig,
    clock: Clock,
    wake: Arc<Notify>,
}

impl Worker {
    pub fn new(db: Db, registry: Arc<Registry>, cfg: WorkerConfig, clock: Clock, wake: Arc<Notify>) -> Worker {
        let id = format!(
            "{}-{}-{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "shipgate".into()),
            std::process::id(),
            fastrand::u32(..)
        );
        Worker { id, db, registry, cfg, clock, wake }
    }

    /// Runs until `shutdown` turns true, then finishes or releases what it holds.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move { self.run(shutdown).await })
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.cfg.concurrency));
        let heartbeat = tokio::spawn(self.clone().heartbeat());
        tracing::info!(worker = %self.id, concurrency = self.cfg.concurrency, "worker started");
        while !*shutdown.borrow() {
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = permits.acquire() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let lease_ms = self.cfg.lease.as_millis() as i64;
            match deliveries::claim(&self.db, &self.id, self.clock.now_ms(), lease_ms, free as i64).await {
                Ok(claimed) if !claimed.is_empty() => {
                    for c in claimed {
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            break;
                        };
                        let me = self.clone();
                        tokio::spawn(async move {
                            me.process(c).await;
                            drop(permit);
                            me.wake.notify_one(); // the subject's next delivery may be claimable now
                        });
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(worker = %self.id, error = %e, "claiming deliveries failed");
                    tokio::select! {
                        _ = tokio::time::sleep(self.cfg.poll_interval.max(Duration::from_millis(500))) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        // Shutdown: let work under way finish for a while, then give back what is left.
        let all = self.cfg.concurrency as u32;
        let finished = tokio::time::timeout(self.cfg.shutdown_grace, permits.acquire_many(all)).await.is_ok();
        heartbeat.abort();
        match deliveries::release(&self.db, &self.id, self.clock.now_ms()).await {
            Ok(n) => {
                tracing::info!(worker = %self.id, released = n, all_finished = finished, "worker stopped")
            }
            Err(e) => {
                tracing::error!(worker = %self.id, error = %e, "could not release leases on shutdown")
            }
        }
    }

    async fn heartbeat(self) {
        let every = (self.cfg.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            let until = self.clock.now_ms() + self.cfg.lease.as_millis() as i64;
            if let Err(e) = deliveries::heartbeat(&self.db, &self.id, until).await {
                tracing::warn!(worker = %self.id, error = %e, "lease renewal failed");
            }
        }
    }

    async fn process(&self, c: Claimed) {
        let span = tracing::info_span!(
            "delivery",
            delivery_id = %c.id,
            event = %c.event,
            action = c.action.as_deref().unwrap_or(""),
            attempt = c.attempts,
        );
        self.process_inner(c).instrument(span).await
    }

    async fn process_inner(&self, c: Claimed) {
        let started_at = self.clock.now_ms();
        let timer = Instant::now();
        let event = c.event.clone();
        let result = match self.registry.lookup(&c.event, c.action.as_deref()) {
            None => Ok(Handled::no_handler()),
            Some(h) => {
                let ctx = Arc::new(Ctx { db: self.db.clone(), clock: self.clock.clone(), delivery: c.clone() });
                match tokio::time::timeout(HANDLER_TIMEOUT, h(ctx)).await {
                    Ok(r) => r,
                    Err(_) => Err(HandlerError::Retry(format!("handler timed out after {HANDLER_TIMEOUT:?}"))),
                }
            }
        };
        let result = match result {
            Ok(handled) => match self.commit(&c, started_at, &handled).await {
                Ok(true) => Ok(handled.outcome),
                Ok(false) => Ok("lease_lost"),
                Err(e) => Err(HandlerError::Retry(format!("recording the result failed: {e}"))),
            },
            Err(e) => Err(e),
        };
        let label = match result {
            Ok(outcome) => {
                if outcome == "lease_lost" {
                    tracing::warn!("lease lost before completion; another worker has this delivery");
                } else {
                    tracing::info!(outcome, "delivery processed");
                }
                outcome
            }
            Err(e) => self.record_failure(&c, started_at, e).await,
        };
        metrics::counter!("shipgate_deliveries_processed_total", "event" => event, "result" => label).increment(1);
        metrics::histogram!("shipgate_delivery_processing_seconds").record(timer.elapsed().as_secs_f64());
    }

    /// Marks the delivery done and applies the handler's effects, in one transaction.
    async fn commit(&self, c: &Claimed, started_at: i64, handled: &Handled) -> crate::store::Result<bool> {
        let now = self.clock.now_ms();
        let mut tx = self.db.begin_write().await?;
        if !deliveries::complete(&mut tx, c, &self.id, started_at, now, handled.outcome).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        for effect in &handled.effects {
            effect.apply(&mut tx, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn record_failure(&self, c: &Claimed, started_at: i64, e: HandlerError) -> &'static str {
        let now = self.clock.now_ms();
        let park = matches!(e, HandlerError::Permanent(_)) || c.attempts >= self.cfg.max_attempts;
        let retry_at = now + backoff_ms(&self.cfg, c.attempts);
        let msg = e.to_string();
        match deliveries::fail(&self.db, c, &self.id, started_at, now, &msg, retry_at, park).await {
            Ok(true) if park => {
                tracing::error!(error = %msg, attempts = c.attempts, "delivery parked; replay with `shipgate deliveries retry`");
                "parked"
            }
            Ok(true) => {
                tracing::warn!(error = %msg, retry_in_ms = retry_at - now, "delivery failed; will retry");
                "retry"
            }
            Ok(false) => "lease_lost",
            Err(db) => {
                // The lease will run out and the delivery will be claimed again.
                tracing::error!(error = %msg, db_error = %db, "delivery failed and the failure could not be recorded");
                "error"
            }
        }
    }
}

/// Exponential backoff with full jitter: a random delay in [d/2, d], d = base·2^(attempt-1) ≤ max.
pub fn backoff_ms(cfg: &WorkerConfig, attempt: i64) -> i64 {
    let base = cfg.retry_base.as_millis() as i64;
    let max = cfg.retry_max.as_millis() as i64;
    let exp = (attempt - 1).clamp(0, 30) as u32;
    let d = base.saturating_mul(1i64 << exp).min(max).max(1);
    d / 2 + fastrand::i64(0..=d - d / 2)
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
