//! Handlers, registered per (event, action). A handler reads the delivery (and, later, facts from
//! GitHub) and returns its effects as data; the worker applies them in the same transaction that
//! marks the delivery done, so each delivery's effects happen once even when it is retried.

pub mod installation;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use sqlx::{Any, Transaction};

use crate::clock::Clock;
use crate::github::actions::Action;
use crate::store::deliveries::Claimed;
use crate::store::outbox;
use crate::store::tenancy::{self, InstallationRecord, RepositoryRecord};
use crate::store::{Db, Result as StoreResult};

/// What a handler is given.
pub struct Ctx {
    pub db: Db,
    pub clock: Clock,
    pub delivery: Claimed,
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
}

impl Effect {
    /// Applies the effect inside the completion transaction of `cause`; `index` numbers the
    /// delivery's effects (an action's outbox key is the delivery id and this index).
    pub async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        cause: &Claimed,
        index: usize,
        now: i64,
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
            Effect::UpsertInstallation(i) => tenancy::upsert_installation(tx, i, now).await,
            Effect::SuspendInstallation { id, suspended } => tenancy::set_suspended(tx, *id, *suspended, now).await,
            Effect::DeleteInstallation { id } => tenancy::mark_deleted(tx, *id, now).await,
            Effect::UpsertRepositories { installation_id, repositories } => {
                tenancy::upsert_repositories(tx, *installation_id, repositories, now).await
            }
            Effect::RemoveRepositories { installation_id, repository_ids } => {
                tenancy::remove_repositories(tx, *installation_id, repository_ids, now).await
            }
        }
    }
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
