//! The timer of coalesced evaluations (issue 14): when a request's burst of check events is due
//! (`store::rechecks`), one internal recheck delivery goes into the request's own order, and the
//! row goes, in one transaction. Across replicas a row is taken once (the delete decides), and a
//! row that moved meanwhile (another event came) waits for its new time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::handlers::internal_delivery;
use crate::handlers::requests::{Internal, internal_body};
use crate::store::rechecks::{self, DueRow};
use crate::store::timers::{self, TimerRow};
use crate::store::{Db, Result, deliveries};

/// Rows fired per round.
const BATCH: i64 = 200;

/// Fires what is due at `now`: the evaluations queued, and the rows that failed (each row on its
/// own: one that cannot be written does not hold back the others).
pub async fn fire_due(db: &Db, now: i64) -> Result<(usize, usize)> {
    let (mut fired, mut failed) = (0, 0);
    for row in rechecks::due(db, now, BATCH).await? {
        match fire(db, &row, now).await {
            Ok(true) => {
                fired += 1;
                tracing::debug!(
                    repository = %row.repository,
                    issue = row.issue,
                    events = row.events,
                    waited_ms = now - row.first_at,
                    "coalesced evaluation queued"
                );
            }
            Ok(false) => {} // moved, or another replica took it
            Err(e) => {
                failed += 1;
                tracing::warn!(repository = %row.repository, issue = row.issue, error = %e, "queueing a coalesced evaluation failed");
            }
        }
    }
    // The requests whose verdict changes with time (an approval expiring, a freeze window, a
    // break-glass lapsing): one evaluation each when it is due.
    for row in timers::due(db, now, BATCH).await? {
        match fire_timer(db, &row, now).await {
            Ok(true) => {
                fired += 1;
                tracing::info!(repository = %row.repository, issue = row.issue, due_at = row.due_at, "timed evaluation queued");
            }
            Ok(false) => {}
            Err(e) => {
                failed += 1;
                tracing::warn!(repository = %row.repository, issue = row.issue, error = %e, "queueing a timed evaluation failed");
            }
        }
    }
    Ok((fired, failed))
}

async fn fire_timer(db: &Db, row: &TimerRow, now: i64) -> Result<bool> {
    let mut tx = db.begin_write().await?;
    if !timers::take(&mut tx, row).await? {
        return Ok(false);
    }
    deliveries::insert_internal(&mut tx, &timer_delivery(row, now)).await?;
    tx.commit().await?;
    Ok(true)
}

async fn fire(db: &Db, row: &DueRow, now: i64) -> Result<bool> {
    let mut tx = db.begin_write().await?;
    if !rechecks::take(&mut tx, row).await? {
        return Ok(false);
    }
    deliveries::insert_internal(&mut tx, &delivery(row, now)).await?;
    tx.commit().await?;
    Ok(true)
}

/// The internal delivery of `row`'s evaluation: unique per burst (its first event's time and
/// its count, and a random part for two bursts of one millisecond).
fn delivery(row: &DueRow, now: i64) -> deliveries::NewDelivery {
    let cause = format!("burst-{}-{}-{:08x}", row.first_at, row.events, fastrand::u32(..));
    let id = format!("coalesced-{cause}");
    let trigger = Internal::Recheck { cause, checks_only: true, signal: None, coalesced: true };
    recheck(row.installation_id, row.repository_id, &row.repository, row.issue, &id, "coalesced", &trigger, now)
}

/// The internal delivery of a timer's evaluation: unique per request and due time.
fn timer_delivery(row: &TimerRow, now: i64) -> deliveries::NewDelivery {
    let cause = format!("timer-{}", row.due_at);
    let id = format!("{cause}-{}-{}-{}", row.installation_id, row.repository_id, row.issue);
    let trigger = Internal::Recheck { cause, checks_only: false, signal: None, coalesced: false };
    recheck(row.installation_id, row.repository_id, &row.repository, row.issue, &id, "timer", &trigger, now)
}

/// One request's internal recheck delivery.
#[allow(clippy::too_many_arguments)]
fn recheck(
    installation: i64,
    repository_id: i64,
    repository: &str,
    issue: i64,
    id: &str,
    kind: &str,
    trigger: &Internal,
    now: i64,
) -> deliveries::NewDelivery {
    let body = internal_body(installation, repository_id, repository, issue, trigger);
    internal_delivery(id, trigger.event(), kind, installation, repository_id, repository, issue, body, now)
}

/// Runs until `stop`: fires what is due, then sleeps until the next row is due, something is
/// scheduled in this process, or `poll` has passed (rows another replica scheduled). After a
/// failure it backs off (from `poll`, at least 500 ms, doubling up to a minute) instead of trying
/// the same rows again at once.
pub async fn run(db: Db, clock: Clock, worker: Arc<Notify>, poll: Duration, mut stop: watch::Receiver<bool>) {
    let mut backoff: Option<Duration> = None;
    loop {
        // Registered before reading, so that a row scheduled meanwhile wakes this round.
        let scheduled = rechecks::SCHEDULED.notified();
        tokio::pin!(scheduled);
        scheduled.as_mut().enable();
        let failed = match fire_due(&db, clock.now_ms()).await {
            Ok((fired, failed)) => {
                if fired > 0 {
                    metrics::counter!("shipgate_coalesced_evaluations_total").increment(fired as u64);
                    worker.notify_one();
                }
                failed > 0
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the coalesced evaluations due failed");
                true
            }
        };
        let wait = if failed {
            let next = backoff.map_or(poll.max(Duration::from_millis(500)), |b| (b * 2).min(Duration::from_secs(60)));
            backoff = Some(next);
            next
        } else {
            backoff = None;
            let next = match (rechecks::next_due(&db).await, timers::next_due(&db).await) {
                (Ok(a), Ok(b)) => Ok(a.into_iter().chain(b).min()),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            match next {
                Ok(Some(at)) => Duration::from_millis((at - clock.now_ms()).max(0) as u64).min(poll),
                Ok(None) => poll,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the next coalesced evaluation failed");
                    poll.max(Duration::from_millis(500))
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // A new row is worth a look, unless the last round failed.
            _ = &mut scheduled, if !failed => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
