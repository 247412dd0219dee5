//! The inbox's job: run each delivery's handler and record the result. The handler's effects are
//! committed in the same transaction as the completion, so they happen once per delivery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::completer::{Completer, Completion};
use super::ingest::Ingestor;
use super::runner::{Job, Runner, RunnerInfo, backoff_ms};
use crate::clock::Clock;
use crate::github::client::GitHub;
use crate::github::facts::TeamCache;
use crate::handlers::{Ctx, Handled, HandlerError, Registry};
use crate::store::Db;
use crate::store::deliveries::{self, Claimed};
use crate::store::queue::Queue;

/// How long a handler may run before the attempt counts as failed.
const HANDLER_TIMEOUT: Duration = Duration::from_secs(300);

pub type Worker = Runner<Deliveries>;

pub struct Deliveries {
    pub db: Db,
    pub registry: Arc<Registry>,
    pub clock: Clock,
    pub github: Arc<GitHub>,
    pub teams: Arc<TeamCache>,
    /// How check events' evaluations are coalesced.
    pub coalesce: crate::domain::flow::signal::Coalesce,
    /// Records results, many deliveries per commit.
    pub completer: Completer,
    /// SQLite: claims go through the intake's group commit too (None: the queue's own claim).
    pub shared_claims: Option<Ingestor>,
    /// The notification channels the App was given (names only), for the config check run.
    pub channels: Arc<crate::domain::notify::Directory>,
}

impl Job for Deliveries {
    type Item = Claimed;

    fn queue(&self) -> &'static Queue {
        &deliveries::QUEUE
    }

    fn name(&self) -> &'static str {
        "worker"
    }

    fn seq(item: &Claimed) -> i64 {
        item.seq
    }

    async fn claim(
        &self,
        db: &Db,
        worker: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> crate::store::Result<Vec<Claimed>> {
        match &self.shared_claims {
            Some(ingest) => ingest.claim(worker, now, lease_ms, limit).await.map_err(crate::store::StoreError::Invalid),
            None => deliveries::claim(db, worker, now, lease_ms, limit).await,
        }
    }

    async fn process(&self, runner: &RunnerInfo, c: Claimed) {
        let span = tracing::info_span!(
            "delivery",
            delivery_id = %c.id,
            event = %c.event,
            action = c.action.as_deref().unwrap_or(""),
            attempt = c.attempts,
        );
        // In the delivery's trace: under its intake's span; a delivery the App made itself has no
        // intake, so its first attempt is the trace's root.
        if c.event.starts_with(crate::handlers::INTERNAL_EVENT_PREFIX) && c.attempts <= 1 {
            crate::telemetry::mark_root(&span, &c.id);
        } else {
            crate::telemetry::continue_delivery(&span, &c.id);
        }
        self.process_inner(runner, c).instrument(span).await
    }
}

impl Deliveries {
    async fn process_inner(&self, runner: &RunnerInfo, mut c: Claimed) {
        let started_at = self.clock.now_ms();
        let timer = Instant::now();
        let event = c.event.clone();
        let inflated = c.inflate();
        let result = match self.registry.lookup(&c.event, c.action.as_deref()) {
            _ if inflated.is_err() => Err(HandlerError::Permanent(inflated.clone().unwrap_err())),
            None => Ok(Handled::no_handler()),
            Some(h) => {
                let ctx = Arc::new(Ctx {
                    db: self.db.clone(),
                    clock: self.clock.clone(),
                    delivery: c.clone(),
                    github: self.github.clone(),
                    teams: self.teams.clone(),
                    coalesce: self.coalesce,
                    channels: self.channels.clone(),
                });
                match tokio::time::timeout(HANDLER_TIMEOUT, h(ctx)).await {
                    Ok(r) => r,
                    Err(_) => Err(HandlerError::Retry(format!("handler timed out after {HANDLER_TIMEOUT:?}"))),
                }
            }
        };
        let result = match result {
            Ok(handled) => {
                let outcome = handled.outcome;
                let done = Completion { claimed: c.clone(), worker: runner.id.clone(), started_at, handled };
                match self.completer.record(done).await {
                    Ok(true) => Ok(outcome),
                    Ok(false) => Ok("lease_lost"),
                    Err(e) => Err(HandlerError::Retry(e)),
                }
            }
            Err(e) => Err(e),
        };
        let label = match result {
            Ok("lease_lost") => {
                tracing::warn!("lease lost before completion; another worker has this delivery");
                "lease_lost"
            }
            Ok(outcome) => {
                tracing::info!(outcome, "delivery processed");
                outcome
            }
            Err(e) => self.record_failure(runner, &c, started_at, e).await,
        };
        metrics::counter!("shipgate_deliveries_processed_total", "event" => event, "result" => label).increment(1);
        metrics::histogram!("shipgate_delivery_processing_seconds").record(timer.elapsed().as_secs_f64());
    }

    async fn record_failure(&self, runner: &RunnerInfo, c: &Claimed, started_at: i64, e: HandlerError) -> &'static str {
        let now = self.clock.now_ms();
        let park = matches!(e, HandlerError::Permanent(_)) || c.attempts >= runner.cfg.max_attempts;
        let retry_at = now + backoff_ms(&runner.cfg, c.attempts);
        let msg = e.to_string();
        match deliveries::fail(&self.db, c, &runner.id, started_at, now, &msg, retry_at, park).await {
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
