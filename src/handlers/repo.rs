//! What the request and CI handlers share about a repository: its policy, the repository an
//! event names, and whether CI is red on a branch. Both depend on this module, never on each
//! other.

use crate::domain::ci;
use crate::domain::policy::{self, ConfigError, Policy};
use crate::github::client::GhError;
use crate::github::facts;
use crate::store::Db;
use crate::store::incidents as store;
use serde_json::Value;

use super::{Ctx, Effect, HandlerError};

/// A GitHub error as a handler error (worth retrying: a 4xx other than 429 too, since the
/// delivery may be retried after the cause is fixed, and is parked after N failures).
pub(crate) fn gh_err(e: GhError) -> HandlerError {
    HandlerError::Retry(e.to_string())
}

/// At most this many holders of a permission role are mentioned by an escalation.
const MAX_PERMISSION_MENTIONS: usize = 10;

/// Who an escalation to `role` mentions: its users (@login), its teams (@org/slug) and, for a
/// permission role, the repository's collaborators holding at least that permission (the first
/// ten GitHub lists). A listing GitHub refuses mentions nobody more (and says so in the log): an
/// escalation is never held back by it.
pub(crate) async fn role_mentions(
    ctx: &Ctx,
    installation: i64,
    repo: &str,
    policy: &Policy,
    role: Option<&str>,
) -> Vec<String> {
    let Some(r) = role.and_then(|r| policy.roles.get(r)) else { return vec![] };
    let mut out = crate::domain::alert::mentions(policy, role);
    if let Some(level) = r.permission {
        match crate::github::facts::collaborators_with(&ctx.github, installation, repo, level).await {
            Ok(logins) => {
                for login in logins.into_iter().take(MAX_PERMISSION_MENTIONS) {
                    let m = format!("@{login}");
                    if !out.iter().any(|o| o.eq_ignore_ascii_case(&m)) {
                        out.push(m);
                    }
                }
            }
            Err(GhError::DryRun) => {}
            Err(e) => {
                tracing::warn!(repository = repo, role = ?role, error = %e, "the holders of a permission role could not be listed: not mentioned")
            }
        }
    }
    out
}

/// The policy for a repository: from the cache, or fetched (and cached by blob SHA).
pub(crate) async fn load_policy(
    ctx: &Ctx,
    installation: i64,
    repo_id: i64,
    repo: &str,
    effects: &mut Vec<Effect>,
) -> Result<(Policy, Vec<ConfigError>), HandlerError> {
    let (policy, errors, _) = load_policy_read(ctx, installation, repo_id, repo, effects).await?;
    Ok((policy, errors))
}

/// As [`load_policy`], and whether the file was never read (dry-run, nothing cached: the built-in
/// policy applies without anyone having looked).
pub(crate) async fn load_policy_read(
    ctx: &Ctx,
    installation: i64,
    repo_id: i64,
    repo: &str,
    effects: &mut Vec<Effect>,
) -> Result<(Policy, Vec<ConfigError>, bool), HandlerError> {
    let cached = crate::store::requests::policy(&ctx.db, installation, repo_id).await?;
    let mut unread = false;
    let yaml = match cached {
        Some((_, yaml)) => yaml,
        None => match facts::policy_file_if_changed(&ctx.github, installation, repo, None).await {
            Ok(facts::PolicyFile::Found { blob, text, etag }) => {
                effects.push(Effect::SavePolicy {
                    installation,
                    repository_id: repo_id,
                    repository: repo.to_string(),
                    blob,
                    yaml: Some(text.clone()),
                    etag,
                    by: None,
                    commit: None,
                });
                Some(text)
            }
            // (Unchanged never comes back from a read without an entity tag.)
            Ok(facts::PolicyFile::Missing | facts::PolicyFile::Unchanged) => {
                effects.push(Effect::SavePolicy {
                    installation,
                    repository_id: repo_id,
                    repository: repo.to_string(),
                    blob: String::new(),
                    yaml: None,
                    etag: None,
                    by: None,
                    commit: None,
                });
                None
            }
            Err(GhError::DryRun) => {
                unread = true;
                None
            }
            Err(e) => return Err(gh_err(e)),
        },
    };
    Ok(match yaml {
        None => (policy::default_policy(), vec![], unread),
        Some(text) => match policy::parse(&text) {
            Ok(p) => (p, vec![], false),
            // A broken file never falls back: the label still works, every gate stays closed.
            // No roles or environments from any other policy either: nobody is shown as an approver.
            Err(errors) => (Policy::default(), errors, false),
        },
    })
}

/// The repository of an event: (installation, repository id, owner/name).
pub(crate) fn repo_of(ctx: &Ctx, v: &Value) -> Option<(i64, i64, String)> {
    Some((
        ctx.delivery.installation_id.or_else(|| v["installation"]["id"].as_i64())?,
        v["repository"]["id"].as_i64()?,
        v["repository"]["full_name"].as_str()?.to_string(),
    ))
}

/// For `block_deploys_while_red`: the open CI incident on `branch` (None: the default branch),
/// as the gate table names it.
/// The incident's issue is named (`#N`, which GitHub links) once it exists.
pub async fn red_on(db: &Db, repository_id: i64, branch: Option<&str>) -> Result<Option<String>, HandlerError> {
    let Some(i) = store::open_ci_on(db, repository_id, branch).await? else { return Ok(None) };
    let key = format!("{}:{}", i.repository, i.marker);
    let issue = crate::store::objects::get(db, i.installation_id, "issue", &key).await?.filter(|n| *n > 0);
    let since = ci::format_time(i.first_failure_at);
    Ok(Some(match issue {
        Some(n) => format!("{} (#{n}, since {since})", i.title),
        None => format!("{} (since {since})", i.title),
    }))
}

/// The repository's policy as last read (cached by the requests' loader), for work that reads no
/// GitHub (the escalation and report loops, `shipgate report`). No file, or a broken one: the
/// empty policy (no `notify:` rules, no `report:`, the default targets).
pub async fn cached_policy(
    db: &crate::store::Db,
    installation: i64,
    repository_id: i64,
) -> crate::store::Result<crate::domain::policy::Policy> {
    Ok(match crate::store::requests::policy(db, installation, repository_id).await? {
        Some((_, Some(yaml))) => crate::domain::policy::parse(&yaml).unwrap_or_default(),
        _ => crate::domain::policy::Policy::default(),
    })
}
