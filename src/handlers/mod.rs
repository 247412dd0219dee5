//! Handlers, registered per (event, action). A handler reads the delivery (and, later, facts from
//! GitHub) and returns its effects as data; the worker applies them in the same transaction that
//! marks the delivery done, so each delivery's effects happen once even when it is retried.

pub mod alerts;
pub mod ci;
pub mod installation;
pub mod repo;
pub mod report;
pub mod requests;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use sqlx::{Any, Transaction};

use crate::clock::Clock;

use crate::github::actions::Action;
use crate::github::client::GitHub;
use crate::github::facts::TeamCache;
use crate::store::audit::{self, AuditEntry};
use crate::store::deliveries::Claimed;
use crate::store::deliveries::{self, NewDelivery};
use crate::store::deploys::{self, DeploymentRow, RuleRow};
use crate::store::outbox;
use crate::store::requests::{self as store_requests, ApprovalChange, RequestRow};
use crate::store::tenancy::{self, InstallationRecord, RepositoryRecord};
use crate::store::{Db, Result as StoreResult};

/// The App's own event names start with this; `POST /webhook` refuses them.
pub const INTERNAL_EVENT_PREFIX: &str = "shipgate_";

/// What a handler is given.
pub struct Ctx {
    pub db: Db,
    pub clock: Clock,
    pub delivery: Claimed,
    /// Read-only calls for facts (changes to GitHub go through actions and the outbox).
    pub github: Arc<GitHub>,
    pub teams: Arc<TeamCache>,
    /// How check events' evaluations are coalesced.
    pub coalesce: crate::domain::flow::signal::Coalesce,
    /// The notification channels the App was given (names only: never a URL).
    pub channels: Arc<crate::domain::notify::Directory>,
}

impl Ctx {
    /// The body as `T`; a body that does not fit is a permanent error (retrying cannot help).
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_str(&self.delivery.body)
            .map_err(|e| HandlerError::Permanent(format!("the {} payload does not fit: {e}", self.delivery.event)))
    }
}

/// A handler's result: an outcome word for the inbox (`ok`, `ignored`, …) and the effects.
#[derive(Debug, Default)]
pub struct Handled {
    pub outcome: &'static str,
    pub effects: Vec<Effect>,
}

impl Handled {
    pub fn ok(effects: Vec<Effect>) -> Handled {
        Handled { outcome: "ok", effects }
    }
    pub fn ignored() -> Handled {
        Handled { outcome: "ignored", effects: vec![] }
    }
    pub fn no_handler() -> Handled {
        Handled { outcome: "no_handler", effects: vec![] }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again later (GitHub or the database had a moment).
    #[error("{0}")]
    Retry(String),
    /// Will fail the same way every time: park at once.
    #[error("{0}")]
    Permanent(String),
}

impl From<crate::store::StoreError> for HandlerError {
    fn from(e: crate::store::StoreError) -> Self {
        HandlerError::Retry(e.to_string())
    }
}

/// State changes a handler asks for, applied atomically with the delivery's completion.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    UpsertInstallation(InstallationRecord),
    SuspendInstallation {
        id: i64,
        suspended: bool,
    },
    DeleteInstallation {
        id: i64,
    },
    UpsertRepositories {
        installation_id: i64,
        repositories: Vec<RepositoryRecord>,
    },
    RemoveRepositories {
        installation_id: i64,
        repository_ids: Vec<i64>,
    },
    /// Something to do on GitHub, for the delivery's installation: written to the outbox.
    Act(Action),
    /// A state change for the audit log.
    Audit(Box<AuditEntry>),
    SaveRequest(Box<RequestRow>),
    /// What a request links (its PRs and the commits it covers), replacing what it linked.
    SaveLinks {
        installation: i64,
        repository_id: i64,
        issue: i64,
        links: Vec<(store_requests::Link, String)>,
    },
    /// A login named in a policy, pinned to the account it belongs to (first time seen only).
    PinLogin {
        installation: i64,
        login: String,
        user_id: i64,
    },
    /// Someone pushed to a pull request (the sender of its push event).
    RecordPusher {
        installation: i64,
        repository_id: i64,
        pr: i64,
        user_id: i64,
    },
    SaveApproval(ApprovalChange),
    /// When the request must be evaluated again with no event (None: never).
    SetTimer {
        installation: i64,
        repository_id: i64,
        repository: String,
        issue: i64,
        due_at: Option<i64>,
    },
    /// The policy file as read (`blob` empty and `yaml` None: there is none). A new blob taking
    /// effect is audited (`policy.changed`, with what changed), by `by` (a push's sender) or by the
    /// App (read when a request first needed it), at `commit` when known.
    SavePolicy {
        installation: i64,
        repository_id: i64,
        repository: String,
        blob: String,
        yaml: Option<String>,
        /// Its entity tag, for the next conditional read.
        etag: Option<String>,
        by: Option<(i64, String)>,
        commit: Option<String>,
    },
    ForgetPolicy {
        installation: i64,
        repository_id: i64,
    },
    /// Evaluate a request again, in its own subject's order.
    Recheck {
        installation: i64,
        repository_id: i64,
        repository: String,
        issue: i64,
        /// Only checks or statuses changed: the PRs and reviews need not be read again.
        checks_only: bool,
        /// The check event that caused it: folded into what the request last read, and evaluated
        /// with the rest of its burst (`domain::flow::signal`).
        signal: Option<crate::domain::flow::signal::Signal>,
    },
    /// What a request remembers, with check events folded in (its row's `facts`).
    SaveFacts {
        installation: i64,
        repository_id: i64,
        issue: i64,
        facts: String,
    },
    /// A coalesced evaluation of request `issue` (scheduled, or moved within its deadline).
    ScheduleRecheck {
        installation: i64,
        repository_id: i64,
        repository: String,
        issue: i64,
        significance: crate::domain::flow::signal::Significance,
        coalesce: crate::domain::flow::signal::Coalesce,
    },
    /// A comment on a linked PR (`created`, `edited` or `deleted`), for the request's own subject.
    ForwardComment {
        installation: i64,
        repository_id: i64,
        repository: String,
        issue: i64,
        /// An `Internal::PrComment`.
        trigger: requests::Internal,
    },
    /// A deployment's status (kept so that staging-first and the report need not ask GitHub).
    RecordDeployment(Box<DeploymentRow>),
    /// A deployment status for a request, handled in the request's own subject.
    ForwardDeployment {
        installation: i64,
        repository_id: i64,
        repository: String,
        issue: i64,
        deployment_id: i64,
    },
    /// A workflow run waiting on the App's protection rule.
    SaveRule(Box<RuleRow>),
    /// Approves or rejects a waiting run: the action is sent only if the run was still pending.
    AnswerRule {
        installation: i64,
        repository_id: i64,
        run_id: i64,
        environment: String,
        state: String,
        issue: i64,
        action: Action,
    },
    /// Decides a job waiting at `/gate/wait` (read there; nothing is sent to GitHub).
    AnswerWait {
        installation: i64,
        repository_id: i64,
        run_id: i64,
        run_attempt: i64,
        environment: String,
        state: String,
        issue: i64,
        /// The App's words (who approved, or who denied and why).
        text: String,
    },
    /// What a job waiting at `/gate/wait` waits for.
    ReportWait {
        installation: i64,
        repository_id: i64,
        run_id: i64,
        run_attempt: i64,
        environment: String,
        issue: Option<i64>,
        missing: Vec<String>,
        text: String,
    },
    /// A status report on a waiting run, sent only when it says something new.
    ReportRule {
        installation: i64,
        repository_id: i64,
        run_id: i64,
        environment: String,
        digest: String,
        action: Action,
    },
    /// CI incident state (runs, flaky records, PR comments, incidents).
    Ci(Box<crate::store::incidents::Change>),
}

impl Effect {
    /// Whether it answers or reports on a job waiting at `/gate/wait` (its HTTP call is woken once
    /// the transaction commits).
    pub fn decides_a_wait(&self) -> bool {
        matches!(self, Effect::AnswerWait { .. } | Effect::ReportWait { .. })
    }

    /// Evaluate request `issue` again (`checks_only`: only checks or statuses changed).
    pub fn recheck(installation: i64, repository_id: i64, repository: &str, issue: i64, checks_only: bool) -> Effect {
        Effect::Recheck {
            installation,
            repository_id,
            repository: repository.to_string(),
            issue,
            checks_only,
            signal: None,
        }
    }

    /// Whether it schedules a coalesced evaluation (the timer is woken once it commits).
    pub fn schedules_a_recheck(&self) -> bool {
        matches!(self, Effect::ScheduleRecheck { .. })
    }

    /// Applies the effect inside the completion transaction of `cause`; `index` numbers the
    /// delivery's effects (an action's outbox key is the delivery id and this index).
    pub async fn apply(
        &self,
        tx: &mut Transaction<'_, Any>,
        cause: &Claimed,
        index: usize,
        now: i64,
        audit_key: Option<&audit::AuditKey>,
    ) -> StoreResult<()> {
        match self {
            Effect::Act(action) => match cause.installation_id {
                Some(installation) => {
                    let key = format!("{}:{index}", cause.id);
                    outbox::enqueue(tx, installation, &key, action, Some(&cause.id), now).await
                }
                None => {
                    tracing::warn!(kind = action.kind(), "no installation on the delivery: action dropped");
                    Ok(())
                }
            },
            Effect::Audit(entry) => {
                let entry = with_policy(tx, entry).await?;
                audit::append(tx, audit_key, &entry, Some(&cause.id), now).await
            }
            Effect::SaveRequest(r) => store_requests::save(tx, r).await,
            Effect::SaveLinks { installation, repository_id, issue, links } => {
                store_requests::save_links(tx, *installation, *repository_id, *issue, links).await
            }
            Effect::RecordPusher { installation, repository_id, pr, user_id } => {
                store_requests::record_pusher(tx, *installation, *repository_id, *pr, *user_id).await
            }
            Effect::PinLogin { installation, login, user_id } => {
                store_requests::pin_login(tx, *installation, login, *user_id, now).await
            }
            Effect::SaveApproval(a) => store_requests::save_approval(tx, a, now).await,
            Effect::SetTimer { installation, repository_id, repository, issue, due_at } => {
                crate::store::timers::set(tx, *installation, *repository_id, repository, *issue, *due_at).await
            }
            Effect::SavePolicy { installation, repository_id, repository, blob, yaml, etag, by, commit } => {
                tenancy::seen_repository(tx, *installation, *repository_id, repository, now).await?;
                let before = store_requests::save_policy(
                    tx,
                    *installation,
                    *repository_id,
                    blob,
                    yaml.as_deref(),
                    etag.as_deref(),
                    now,
                )
                .await?;
                if before.as_ref().map(|(b, _)| b) == Some(blob) {
                    return Ok(());
                }
                let mut detail = crate::domain::policy::change_summary(
                    before.as_ref().and_then(|(_, y)| y.as_deref()),
                    yaml.as_deref(),
                );
                detail["blob"] = serde_json::json!((!blob.is_empty()).then_some(blob));
                detail["blob_before"] = serde_json::json!(before.as_ref().map(|(b, _)| b).filter(|b| !b.is_empty()));
                detail["commit"] = serde_json::json!(commit);
                detail["first_read"] = serde_json::json!(before.is_none());
                // What `verify` checks the cached text against.
                detail["yaml_sha256"] = serde_json::json!(yaml.as_deref().map(|y| {
                    use sha2::Digest;
                    hex::encode(sha2::Sha256::digest(y.as_bytes()))
                }));
                let entry = audit::AuditEntry {
                    installation_id: *installation,
                    repository_id: Some(*repository_id),
                    repository: Some(repository.clone()),
                    issue: None,
                    kind: "policy.changed".into(),
                    actor_id: by.as_ref().map(|(id, _)| *id),
                    actor_login: by.as_ref().map(|(_, login)| login.clone()),
                    detail,
                };
                audit::append(tx, audit_key, &entry, Some(&cause.id), now).await
            }
            Effect::ForgetPolicy { installation, repository_id } => {
                store_requests::forget_policy(tx, *installation, *repository_id).await
            }
            Effect::Recheck { installation, repository_id, repository, issue, .. }
            | Effect::ForwardComment { installation, repository_id, repository, issue, .. }
            | Effect::ForwardDeployment { installation, repository_id, repository, issue, .. } => {
                let (kind, trigger) = match self {
                    Effect::ForwardComment { trigger, .. } => ("forward", trigger.clone()),
                    // A folded check event and a recheck for one request from one delivery
                    // (`workflow_run`: the request's and the CI incident's) are two deliveries.
                    Effect::Recheck { checks_only, signal, .. } => (
                        if signal.is_some() { "absorb" } else { "recheck" },
                        requests::Internal::Recheck {
                            cause: cause.id.clone(),
                            checks_only: *checks_only,
                            signal: signal.clone(),
                            coalesced: false,
                        },
                    ),
                    Effect::ForwardDeployment { deployment_id, .. } => (
                        "deployment",
                        requests::Internal::Deployment { deployment_id: *deployment_id, cause: cause.id.clone() },
                    ),
                    _ => return Ok(()),
                };
                let body = requests::internal_body(*installation, *repository_id, repository, *issue, &trigger);
                let d = internal_delivery(
                    &format!("{kind}-{}", cause.id),
                    trigger.event(),
                    kind,
                    *installation,
                    *repository_id,
                    repository,
                    *issue,
                    body,
                    now,
                );
                deliveries::insert_internal(tx, &d).await
            }
            Effect::SaveFacts { installation, repository_id, issue, facts } => {
                store_requests::save_facts(tx, *installation, *repository_id, *issue, facts).await
            }
            Effect::ScheduleRecheck { installation, repository_id, repository, issue, significance, coalesce } => {
                crate::store::rechecks::schedule(
                    tx,
                    *installation,
                    *repository_id,
                    repository,
                    *issue,
                    *significance,
                    coalesce,
                    now,
                )
                .await
            }
            Effect::RecordDeployment(d) => deploys::record(tx, d).await,
            Effect::SaveRule(r) => deploys::save_rule(tx, r).await,
            Effect::AnswerRule { installation, repository_id, run_id, environment, state, issue, action } => {
                if deploys::answer_rule(tx, *installation, *repository_id, *run_id, environment, state, *issue, now)
                    .await?
                {
                    outbox::enqueue(tx, *installation, &format!("{}:{index}", cause.id), action, Some(&cause.id), now)
                        .await?;
                }
                Ok(())
            }
            Effect::ReportRule { installation, repository_id, run_id, environment, digest, action } => {
                if deploys::set_rule_report(tx, *installation, *repository_id, *run_id, environment, digest).await? {
                    outbox::enqueue(tx, *installation, &format!("{}:{index}", cause.id), action, Some(&cause.id), now)
                        .await?;
                }
                Ok(())
            }
            Effect::AnswerWait {
                installation,
                repository_id,
                run_id,
                run_attempt,
                environment,
                state,
                issue,
                text,
            } => {
                let k = crate::store::gate_waits::WaitKey {
                    installation: *installation,
                    repository_id: *repository_id,
                    run_id: *run_id,
                    run_attempt: *run_attempt,
                    environment,
                };
                crate::store::gate_waits::answer(tx, &k, state, *issue, text, now).await?;
                Ok(())
            }
            Effect::ReportWait {
                installation,
                repository_id,
                run_id,
                run_attempt,
                environment,
                issue,
                missing,
                text,
            } => {
                let k = crate::store::gate_waits::WaitKey {
                    installation: *installation,
                    repository_id: *repository_id,
                    run_id: *run_id,
                    run_attempt: *run_attempt,
                    environment,
                };
                crate::store::gate_waits::report(tx, &k, *issue, missing, text).await
            }
            Effect::UpsertInstallation(i) => tenancy::upsert_installation(tx, i, now).await,
            Effect::SuspendInstallation { id, suspended } => tenancy::set_suspended(tx, *id, *suspended, now).await,
            Effect::DeleteInstallation { id } => tenancy::mark_deleted(tx, *id, now).await,
            Effect::UpsertRepositories { installation_id, repositories } => {
                tenancy::upsert_repositories(tx, *installation_id, repositories, now).await
            }
            Effect::RemoveRepositories { installation_id, repository_ids } => {
                tenancy::remove_repositories(tx, *installation_id, repository_ids, now).await
            }
            Effect::Ci(change) => crate::store::incidents::apply(tx, change, now).await,
        }
    }
}

/// The entries that say what a request was decided under carry the policy in force when they are
/// written (`policy_blob`, and `policy_sha256` of its text, kept by blob in `policy_texts`), sealed
/// with them: the evidence pack shows the policy each revision and gate decision was made under.
/// It is the policy cached as the entry is written, which the evaluation read just before.
async fn with_policy(tx: &mut Transaction<'_, Any>, entry: &AuditEntry) -> StoreResult<AuditEntry> {
    let mut entry = entry.clone();
    let decided = matches!(entry.kind.as_str(), "request.parsed" | "request.revised" | "gate.opened" | "gate.closed");
    if let (true, Some(repository_id), Some(_), Some(detail)) =
        (decided, entry.repository_id, entry.issue, entry.detail.as_object_mut())
        && let Some((blob, sha256)) = store_requests::policy_in_force(tx, entry.installation_id, repository_id).await?
    {
        detail.insert("policy_blob".into(), serde_json::json!((!blob.is_empty()).then_some(blob)));
        detail.insert("policy_sha256".into(), serde_json::json!(sha256));
    }
    Ok(entry)
}

/// A delivery the App makes for a request's own subject (`repo:{id}#{issue}`), so that it runs
/// in that request's order; `id_prefix` names its cause.
#[allow(clippy::too_many_arguments)]
pub(crate) fn internal_delivery(
    id_prefix: &str,
    event: &str,
    action: &str,
    installation: i64,
    repository_id: i64,
    repository: &str,
    issue: i64,
    body: String,
    now: i64,
) -> NewDelivery {
    NewDelivery {
        id: format!("{id_prefix}-{repository_id}-{issue}"),
        event: event.into(),
        action: Some(action.into()),
        installation_id: Some(installation),
        repository: Some(repository.to_string()),
        subject: format!("repo:{repository_id}#{issue}"),
        received_at: now,
        body_key: deliveries::body_key(&body),
        body,
        body_lz4: None,
    }
}

/// Both results' effects, each once.
fn merge(a: Handled, b: Vec<Effect>) -> Handled {
    let mut effects = a.effects;
    for e in b {
        if !effects.contains(&e) {
            effects.push(e);
        }
    }
    if effects.is_empty() { Handled { outcome: a.outcome, effects } } else { Handled::ok(effects) }
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Handled, HandlerError>> + Send>>;
pub type HandlerFn = Arc<dyn Fn(Arc<Ctx>) -> HandlerFuture + Send + Sync>;

/// Handlers by (event, action); `None` as the action matches any action of that event.
#[derive(Clone, Default)]
pub struct Registry {
    map: HashMap<(String, Option<String>), HandlerFn>,
}

impl Registry {
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// The App's handlers.
    pub fn standard() -> Registry {
        let mut r = Registry::empty();
        r.on("ping", None, |_ctx| async { Ok(Handled::ok(vec![])) });
        r.on("installation", None, installation::on_installation);
        r.on("installation_repositories", None, installation::on_installation_repositories);
        r.on("issues", None, requests::on_issue);
        r.on("issue_comment", None, requests::on_comment);
        r.on(requests::RECHECK_EVENT, None, requests::on_internal);
        r.on(requests::FORWARDED_COMMENT_EVENT, None, requests::on_internal);
        r.on("push", None, requests::on_push);
        r.on("deployment_protection_rule", None, requests::on_protection_rule);
        r.on(requests::GATE_WAIT_EVENT, None, requests::on_gate_wait);
        r.on("deployment_status", None, requests::on_deployment_status);
        r.on(requests::DEPLOYMENT_EVENT, None, requests::on_internal);
        r.on(requests::NOTIFIED_EVENT, None, requests::on_internal);
        for event in [
            "pull_request",
            "pull_request_review",
            "check_run",
            "check_suite",
            "status",
            "workflow_run",
            "membership",
            "team",
        ] {
            r.on(event, None, requests::on_related);
        }
        // Replaces the registration above: the requests' rechecks and the CI incident work.
        r.on("workflow_run", None, |ctx: Arc<Ctx>| async move {
            let related = requests::on_related(ctx.clone()).await?;
            Ok(merge(related, ci::on_workflow_run(ctx).await?))
        });
        for event in ["dependabot_alert", "code_scanning_alert", "secret_scanning_alert"] {
            r.on(event, None, ci::on_security_alert);
        }
        r.on(alerts::ALERT_EVENT, None, alerts::on_alert);
        r
    }

    /// Registers `f` for `event` (and `action`, or every action when None), replacing any other.
    pub fn on<F, Fut>(&mut self, event: &str, action: Option<&str>, f: F)
    where
        F: Fn(Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Handled, HandlerError>> + Send + 'static,
    {
        let f: HandlerFn = Arc::new(move |ctx| Box::pin(f(ctx)));
        self.map.insert((event.to_string(), action.map(str::to_string)), f);
    }

    pub fn lookup(&self, event: &str, action: Option<&str>) -> Option<&HandlerFn> {
        action
            .and_then(|a| self.map.get(&(event.to_string(), Some(a.to_string()))))
            .or_else(|| self.map.get(&(event.to_string(), None)))
    }
}
