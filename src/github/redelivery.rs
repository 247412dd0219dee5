//! Deliveries GitHub could not hand over are asked for again: list the App's recent webhook
//! deliveries (`GET /app/hook/deliveries`, paged back to the last checkpoint) and ask GitHub to
//! redeliver (`POST /app/hook/deliveries/{id}/attempts`) every delivery GUID that never got a 2xx
//! and is not in the inbox. A GUID is asked for at most `MAX_REQUESTS` times.

use std::collections::{BTreeMap, HashSet};

use http::Method;
use serde::Deserialize;

use super::client::{Auth, GhError, GitHub};
use crate::store::{Db, scheduler};

const CHECKPOINT: &str = "redelivery.last_hook_delivery_id";
const MAX_REQUESTS: i64 = 3;
/// How far back the first run looks (pages of 100).
const MAX_PAGES: usize = 20;

#[derive(Debug, Deserialize)]
struct HookDelivery {
    id: i64,
    guid: String,
    #[serde(default)]
    status_code: i64,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub seen: usize,
    pub requested: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RedeliveryError {
    #[error(transparent)]
    GitHub(#[from] GhError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

pub async fn run_once(gh: &GitHub, db: &Db, now: i64) -> Result<Report, RedeliveryError> {
    let checkpoint: i64 = scheduler::checkpoint(db, CHECKPOINT).await?.and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut attempts: Vec<HookDelivery> = Vec::new();
    let mut next = Some("/app/hook/deliveries?per_page=100".to_string());
    let mut pages = 0;
    'pages: while let Some(path) = next.take() {
        let r = gh.request(Auth::App, Method::GET, &path, None).await?.ok(&Method::GET)?;
        let page: Vec<HookDelivery> = r.json()?;
        pages += 1;
        for d in page {
            if d.id <= checkpoint {
                break 'pages; // newest first: the rest was seen by an earlier run
            }
            attempts.push(d);
        }
        if pages < MAX_PAGES {
            next = r.next_link().map(|u| gh_relative(gh, &u));
        }
    }
    let newest = attempts.iter().map(|d| d.id).max();
    // Per GUID: did any attempt succeed, and which is the latest attempt.
    let mut by_guid: BTreeMap<&str, (bool, i64)> = BTreeMap::new();
    for d in &attempts {
        let e = by_guid.entry(d.guid.as_str()).or_insert((false, d.id));
        e.0 |= (200..300).contains(&d.status_code);
        e.1 = e.1.max(d.id);
    }
    let failed: Vec<(&str, i64)> = by_guid.iter().filter(|(_, (ok, _))| !ok).map(|(g, (_, id))| (*g, *id)).collect();
    let in_inbox = known_guids(db, failed.iter().map(|(g, _)| *g)).await?;
    let mut report = Report { seen: attempts.len(), requested: Vec::new() };
    for (guid, id) in failed {
        if in_inbox.contains(guid) || requests_so_far(db, guid).await? >= MAX_REQUESTS {
            continue;
        }
        let path = format!("/app/hook/deliveries/{id}/attempts");
        gh.request(Auth::App, Method::POST, &path, None).await?.ok(&Method::POST)?;
        note_request(db, guid, id, now).await?;
        tracing::info!(delivery_id = guid, hook_delivery = id, "asked GitHub to redeliver");
        report.requested.push(guid.to_string());
    }
    if let Some(newest) = newest {
        scheduler::set_checkpoint(db, CHECKPOINT, &newest.to_string(), now).await?;
    }
    Ok(report)
}

fn gh_relative(gh: &GitHub, url: &str) -> String {
    url.strip_prefix(&gh.config().api_url).unwrap_or(url).to_string()
}

async fn known_guids<'a>(db: &Db, guids: impl Iterator<Item = &'a str>) -> Result<HashSet<String>, RedeliveryError> {
    let mut known = HashSet::new();
    for g in guids {
        let row: Option<(String,)> = sqlx::query_as("SELECT id FROM deliveries WHERE id = $1")
            .bind(g)
            .fetch_optional(db.pool())
            .await
            .map_err(crate::store::StoreError::from)?;
        if let Some((id,)) = row {
            known.insert(id);
        }
    }
    Ok(known)
}

async fn requests_so_far(db: &Db, guid: &str) -> Result<i64, RedeliveryError> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT requests FROM redelivery_requests WHERE guid = $1")
        .bind(guid)
        .fetch_optional(db.pool())
        .await
        .map_err(crate::store::StoreError::from)?;
    Ok(row.map(|r| r.0).unwrap_or(0))
}

async fn note_request(db: &Db, guid: &str, id: i64, now: i64) -> Result<(), RedeliveryError> {
    sqlx::query(
        "INSERT INTO redelivery_requests (guid, hook_delivery_id, requested_at, requests) VALUES ($1, $2, $3, 1) \
         ON CONFLICT (guid) DO UPDATE SET hook_delivery_id = excluded.hook_delivery_id, \
         requested_at = excluded.requested_at, requests = redelivery_requests.requests + 1",
    )
    .bind(guid)
    .bind(id)
    .bind(now)
    .execute(db.writer())
    .await
    .map_err(crate::store::StoreError::from)?;
    Ok(())
}
