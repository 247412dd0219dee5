//! The outbox's job: send each action to GitHub (or, in dry-run, record and log it), retrying
//! failures with backoff, waiting out rate limits without counting them as failures, and parking
//! an action that keeps failing. Actions of a deleted or suspended installation are cancelled.

use std::sync::Arc;

use tracing::Instrument;

use super::runner::{Job, Runner, RunnerInfo, backoff_ms};
use crate::clock::Clock;
use crate::domain::links::{self, Minter, Page};
use crate::github::actions::{Action, ActionError};
use crate::github::client::GitHub;
use crate::handlers::requests;
use crate::notify::Notifier;
use crate::store::anchor::{self, SigningKey};
use crate::store::audit::AuditKeys;
use crate::store::deliveries::NewDelivery;
use crate::store::outbox::{self, Claimed};
use crate::store::queue::Queue;
use crate::store::{Db, requests as request_rows, tenancy};

pub type Relay = Runner<Actions>;

pub struct Actions {
    pub db: Db,
    pub github: Arc<GitHub>,
    pub clock: Clock,
    /// To check the audit log's head before anchoring it in a comment.
    pub audit_keys: AuditKeys,
    /// Signs the anchors (`SHIPGATE_SIGNING_KEY`); without it they go unsigned.
    pub signing: Option<SigningKey>,
    /// Sends notifications (Slack, e-mail).
    pub notifier: Arc<Notifier>,
    /// Writes the details pages' signed links into comments and check runs (none without
    /// `SHIPGATE_PUBLIC_URL`).
    pub links: Option<Minter>,
}

/// How an action ended: its final state, what it did, and a delivery to queue with it.
struct Finished {
    state: &'static str,
    outcome: String,
    then: Option<NewDelivery>,
}

impl Finished {
    fn new(state: &'static str, outcome: impl Into<String>) -> Finished {
        Finished { state, outcome: outcome.into(), then: None }
    }
}

impl Job for Actions {
    type Item = Claimed;

    fn queue(&self) -> &'static Queue {
        &outbox::QUEUE
    }

    fn name(&self) -> &'static str {
        "relay"
    }

    fn seq(item: &Claimed) -> i64 {
        item.seq
    }

    async fn process(&self, runner: &RunnerInfo, c: Claimed) {
        let span = tracing::info_span!(
            "action",
            delivery_id = c.delivery_id.as_deref().unwrap_or(""),
            installation = c.installation_id,
            kind = %c.kind,
            key = %c.key,
            attempt = c.attempts,
        );
        // In the trace of the delivery that caused it (under its intake's span).
        if let Some(d) = &c.delivery_id {
            crate::telemetry::continue_delivery(&span, d);
        }
        self.process_inner(runner, c).instrument(span).await
    }
}

impl Actions {
    async fn process_inner(&self, runner: &RunnerInfo, c: Claimed) {
        let worker = runner.id.as_str();
        let now = self.clock.now_ms();
        let result = self.decide(&c, now).await;
        let (label, recorded) = match result {
            Ok(Finished { state, outcome, then }) => {
                if state == "dry_run" {
                    tracing::info!(action = %c.action, "dry-run: would send to GitHub");
                } else {
                    tracing::info!(state, outcome = %outcome, "action finished");
                }
                let now = self.clock.now_ms();
                (state, outbox::finish_with(&self.db, &c, worker, state, &outcome, now, then.as_ref()).await)
            }
            Err(ActionError::RateLimited(until)) => {
                tracing::warn!(until, "rate limited; action deferred");
                ("deferred", outbox::QUEUE.defer(&self.db, c.lease(worker), until, "rate limited").await)
            }
            Err(ActionError::Wait { until, why }) => {
                tracing::debug!(until, why = %why, "action not ready; deferred");
                ("deferred", outbox::QUEUE.defer(&self.db, c.lease(worker), until, &why).await)
            }
            Err(e) => {
                let park = matches!(e, ActionError::Permanent(_)) || c.attempts >= runner.cfg.max_attempts;
                let retry_at = now + backoff_ms(&runner.cfg, c.attempts);
                if park {
                    tracing::error!(error = %e, "action parked; see `shipgate actions list --status parked`");
                } else {
                    tracing::warn!(error = %e, retry_in_ms = retry_at - now, "action failed; will retry");
                }
                let label = if park { "parked" } else { "retry" };
                (label, outbox::fail(&self.db, &c, worker, &e.to_string(), retry_at, park, self.clock.now_ms()).await)
            }
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => tracing::warn!("lease lost before the action's result was recorded"),
            // The lease runs out and the action is claimed again; sending it again is safe.
            Err(e) => tracing::error!(error = %e, "recording the action's result failed"),
        }
        metrics::counter!("shipgate_actions_total", "kind" => c.kind.clone(), "result" => label).increment(1);
    }

    /// The final state and outcome of an action, or why it must be tried again.
    async fn decide(&self, c: &Claimed, now: i64) -> Result<Finished, ActionError> {
        if tenancy::blocked(&self.db, c.installation_id).await? {
            return Ok(Finished::new("cancelled", "the installation is deleted or suspended"));
        }
        if outbox::superseded(&self.db, c).await? {
            return Ok(Finished::new("superseded", "a newer action on the same target is queued"));
        }
        if self.github.dry_run() {
            return Ok(Finished::new("dry_run", "recorded, not sent (dry-run)"));
        }
        let mut action: Action = serde_json::from_str(&c.action)
            .map_err(|e| ActionError::Permanent(format!("stored action does not parse: {e}")))?;
        if let Action::Notify { .. } = &action {
            return self.notify(c, &action, now).await;
        }
        if let Action::UpsertComment { body, .. } = &mut action
            && body.contains(anchor::PLACEHOLDER)
        {
            let line =
                anchor::render_current(&self.db, c.installation_id, &self.audit_keys, self.signing.as_ref()).await?;
            *body = body.replace(anchor::PLACEHOLDER, &line);
        }
        self.write_links(c.installation_id, &mut action, now).await?;
        let outcome = action.execute(&self.github, &self.db, c.installation_id, now).await?;
        Ok(Finished::new("done", outcome))
    }

    /// Writes a fresh signed link to the details page into a request's sticky comment and check
    /// runs and into an incident's issue, each time it is sent. The page is always the text's own
    /// (its repository and issue, or its incident's marker, as stored for this installation),
    /// never one a placeholder names; without a public address or such a page the placeholder
    /// goes.
    async fn write_links(&self, installation: i64, action: &mut Action, now: i64) -> Result<(), ActionError> {
        match action {
            Action::UpsertComment { repo, issue, marker, body } if body.contains(links::DETAILS_LINE) => {
                let page = match (&self.links, marker.as_str()) {
                    (Some(_), crate::domain::messages::REQUEST_MARKER) => {
                        request_rows::repository_id_of(&self.db, installation, repo, *issue)
                            .await?
                            .map(|id| (installation, id, Page::Request { issue: *issue }))
                    }
                    _ => None,
                };
                *body = self.fill(body, page, now);
            }
            Action::CreateIssue { repo, marker, body, .. } if body.contains(links::DETAILS_LINE) => {
                let page = self.incident_page(installation, repo, Some(marker.as_str())).await?;
                *body = self.fill(body, page, now);
            }
            Action::UpdateIssue { repo, marker, body: Some(body), .. } if body.contains(links::DETAILS_LINE) => {
                let page = self.incident_page(installation, repo, marker.as_deref()).await?;
                *body = self.fill(body, page, now);
            }
            Action::UpsertCheckRun { repo, external_id, details_url, .. }
                if details_url.as_deref() == Some(links::DETAILS_URL) =>
            {
                // `gate:{issue}:{environment}:{sha}`
                let issue = external_id.strip_prefix("gate:").and_then(|r| r.split(':').next()?.parse::<i64>().ok());
                *details_url = match (&self.links, issue) {
                    (Some(m), Some(issue)) => request_rows::repository_id_of(&self.db, installation, repo, issue)
                        .await?
                        .map(|id| m.url(installation, id, Page::Request { issue }, now).0),
                    _ => None,
                };
            }
            _ => {}
        }
        Ok(())
    }

    async fn incident_page(
        &self,
        installation: i64,
        repo: &str,
        marker: Option<&str>,
    ) -> Result<Option<(i64, i64, Page)>, ActionError> {
        let (Some(_), Some(marker)) = (&self.links, marker) else { return Ok(None) };
        Ok(crate::store::incidents::repository_id_of(&self.db, installation, repo, marker)
            .await?
            .map(|id| (installation, id, Page::Incident { marker: marker.to_string() })))
    }

    fn fill(&self, body: &str, page: Option<(i64, i64, Page)>, now: i64) -> String {
        match &self.links {
            Some(m) => m.fill(body, page, now),
            None => links::fill_details(body, None),
        }
    }

    /// Sends a notification. A `deployed` notice that reached someone asks its request, in the
    /// same transaction as the row's completion, to tick "Notify team" in its checklist.
    async fn notify(&self, c: &Claimed, action: &Action, now: i64) -> Result<Finished, ActionError> {
        let sent = self.notifier.send(&self.github, &self.db, c.installation_id, action, now).await?;
        let Action::Notify { repo, channel, event, request: Some(r), .. } = action else {
            return Ok(Finished::new("done", sent.outcome));
        };
        let then = (sent.delivered && event == crate::domain::notify::NotifyEvent::Deployed.as_str()).then(|| {
            let trigger = requests::Internal::Notified { event: event.clone(), channel: channel.to_string() };
            let body = requests::internal_body(c.installation_id, r.repository_id, repo, r.issue, &trigger);
            crate::handlers::internal_delivery(
                &format!("notified-{}", c.seq),
                trigger.event(),
                "notified",
                c.installation_id,
                r.repository_id,
                repo,
                r.issue,
                body,
                now,
            )
        });
        Ok(Finished { state: "done", outcome: sent.outcome, then })
    }
}
