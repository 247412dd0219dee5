//! `installation` and `installation_repositories`: the tenancy table every later issue scopes by.

use std::sync::Arc;

use serde::Deserialize;

use super::{Ctx, Effect, Handled, HandlerError};
use crate::store::tenancy::{InstallationRecord, RepositoryRecord};

#[derive(Debug, Deserialize)]
struct Account {
    id: i64,
    login: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Installation {
    id: i64,
    account: Account,
    #[serde(default)]
    repository_selection: Option<String>,
    #[serde(default)]
    permissions: serde_json::Value,
    #[serde(default)]
    events: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct Repo {
    id: i64,
    full_name: String,
    #[serde(default)]
    private: bool,
}

#[derive(Debug, Deserialize)]
struct InstallationEvent {
    action: String,
    installation: Installation,
    #[serde(default)]
    repositories: Option<Vec<Repo>>,
}

#[derive(Debug, Deserialize)]
struct RepositoriesEvent {
    action: String,
    installation: Installation,
    #[serde(default)]
    repository_selection: Option<String>,
    #[serde(default)]
    repositories_added: Vec<Repo>,
    #[serde(default)]
    repositories_removed: Vec<Repo>,
}

fn record(i: &Installation, selection: Option<&str>) -> InstallationRecord {
    let json = |v: &serde_json::Value, empty: &str| {
        if v.is_null() { empty.to_string() } else { v.to_string() }
    };
    InstallationRecord {
        id: i.id,
        account_id: i.account.id,
        account_login: i.account.login.clone(),
        account_type: i.account.kind.clone(),
        repository_selection: selection.map(str::to_string).or_else(|| i.repository_selection.clone()),
        permissions: json(&i.permissions, "{}"),
        events: json(&i.events, "[]"),
    }
}

fn repos(list: &[Repo]) -> Vec<RepositoryRecord> {
    list.iter().map(|r| RepositoryRecord { id: r.id, full_name: r.full_name.clone(), private: r.private }).collect()
}

pub async fn on_installation(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let ev: InstallationEvent = ctx.payload()?;
    let id = ev.installation.id;
    let mut effects = vec![Effect::UpsertInstallation(record(&ev.installation, None))];
    match ev.action.as_str() {
        "created" => {
            if let Some(list) = &ev.repositories {
                effects.push(Effect::UpsertRepositories { installation_id: id, repositories: repos(list) });
            }
        }
        "deleted" => effects = vec![Effect::DeleteInstallation { id }],
        "suspend" => effects.push(Effect::SuspendInstallation { id, suspended: true }),
        "unsuspend" => effects.push(Effect::SuspendInstallation { id, suspended: false }),
        // new_permissions_accepted and anything newer: the record above carries the change.
        _ => {}
    }
    Ok(Handled::ok(effects))
}

pub async fn on_installation_repositories(ctx: Arc<Ctx>) -> Result<Handled, HandlerError> {
    let ev: RepositoriesEvent = ctx.payload()?;
    let id = ev.installation.id;
    let mut effects = vec![Effect::UpsertInstallation(record(&ev.installation, ev.repository_selection.as_deref()))];
    match ev.action.as_str() {
        "added" | "removed" => {
            if !ev.repositories_added.is_empty() {
                effects.push(Effect::UpsertRepositories {
                    installation_id: id,
                    repositories: repos(&ev.repositories_added),
                });
            }
            if !ev.repositories_removed.is_empty() {
                effects.push(Effect::RemoveRepositories {
                    installation_id: id,
                    repository_ids: ev.repositories_removed.iter().map(|r| r.id).collect(),
                });
            }
        }
        _ => return Ok(Handled::ignored()),
    }
    Ok(Handled::ok(effects))
}
