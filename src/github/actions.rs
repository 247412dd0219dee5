//! What the App does on GitHub, as data. Each action is written to the outbox in the same
//! transaction as the state change that caused it, then sent by the relay. Sending twice (a retry,
//! or a crash between "sent" and "recorded") never doubles anything: a sticky comment is found
//! again by its hidden marker, a check run by its `external_id`, an issue by its marker, a
//! deployment by the key in its payload; labels, reactions and assignees are idempotent by nature.

use http::Method;
use serde_json::{Value, json};

use super::client::{Auth, GhError, GitHub};
use crate::store::{Db, objects};

pub use crate::domain::action::{Action, Repo};

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// Worth trying again (GitHub failed, or answered something that may change).
    #[error("{0}")]
    Retry(String),
    /// Will fail the same way every time (permissions, a malformed request): park it.
    #[error("{0}")]
    Permanent(String),
    /// Come back once the rate limit resets; not a failed attempt.
    #[error("rate limited until {0}")]
    RateLimited(i64),
    /// Not ready to be sent yet (what it links to is still being made); not a failed attempt.
    #[error("waiting until {until}: {why}")]
    Wait { until: i64, why: String },
}

impl From<GhError> for ActionError {
    fn from(e: GhError) -> Self {
        match e {
            GhError::RateLimited { until_ms } => ActionError::RateLimited(until_ms),
            GhError::Status { status, .. } if (400..500).contains(&status) && status != 409 => {
                ActionError::Permanent(e.to_string())
            }
            other => ActionError::Retry(other.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for ActionError {
    fn from(e: crate::store::StoreError) -> Self {
        ActionError::Retry(e.to_string())
    }
}

pub fn marker_tag(marker: &str) -> String {
    format!("<!-- shipgate:{marker} -->")
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::UpsertComment { .. } => "upsert_comment",
            Action::UpsertCheckRun { .. } => "upsert_check_run",
            Action::AddReaction { .. } => "add_reaction",
            Action::SetLabels { .. } => "set_labels",
            Action::AddAssignees { .. } => "add_assignees",
            Action::CreateIssue { .. } => "create_issue",
            Action::UpdateIssue { .. } => "update_issue",
            Action::CreateDeployment { .. } => "create_deployment",
            Action::CreateDeploymentStatus { .. } => "create_deployment_status",
            Action::ReviewProtectionRule { .. } => "review_protection_rule",
            Action::RerunWorkflow { .. } => "rerun_workflow",
            Action::Notify { .. } => "notify",
        }
    }

    pub fn repo(&self) -> &str {
        match self {
            Action::UpsertComment { repo, .. }
            | Action::UpsertCheckRun { repo, .. }
            | Action::AddReaction { repo, .. }
            | Action::SetLabels { repo, .. }
            | Action::AddAssignees { repo, .. }
            | Action::CreateIssue { repo, .. }
            | Action::UpdateIssue { repo, .. }
            | Action::CreateDeployment { repo, .. }
            | Action::CreateDeploymentStatus { repo, .. }
            | Action::ReviewProtectionRule { repo, .. }
            | Action::RerunWorkflow { repo, .. }
            | Action::Notify { repo, .. } => repo,
        }
    }

    /// Actions on one subject are sent one at a time, in order.
    pub fn subject(&self) -> String {
        match self {
            Action::UpsertComment { repo, issue, .. }
            | Action::SetLabels { repo, issue, .. }
            | Action::AddAssignees { repo, issue, .. } => format!("{repo}#{issue}"),
            Action::CreateIssue { repo, marker, .. } | Action::UpdateIssue { repo, marker: Some(marker), .. } => {
                format!("{repo}:issue:{marker}")
            }
            Action::UpdateIssue { repo, number, .. } => format!("{repo}#{}", number.unwrap_or(0)),
            Action::CreateDeployment { repo, key, .. } => format!("{repo}:deployment:{key}"),
            Action::CreateDeploymentStatus { repo, deployment_id, .. } => format!("{repo}:deployment:{deployment_id}"),
            Action::RerunWorkflow { repo, key, .. } => format!("{repo}:rerun:{key}"),
            // Each notification waits for nothing and holds nothing up: a dead Slack channel never
            // delays a comment, nor another channel's notice.
            Action::Notify { repo, channel, event, key, .. } => format!("{repo}:notify:{channel}:{event}:{key}"),
            // The gate's own calls wait for nothing else of the repository (a reaction, say):
            // each check run and each rule's answer is in order only with itself, and the
            // client's mutation slot sends them ahead of comments and labels.
            Action::UpsertCheckRun { repo, external_id, .. } => format!("{repo}:check_run:{external_id}"),
            Action::ReviewProtectionRule { repo, run_id, environment_name, .. } => {
                format!("{repo}:rule:{run_id}:{environment_name}")
            }
            other => other.repo().to_string(),
        }
    }

    /// Only the newest pending action of one target needs sending (a sticky comment, a check run).
    pub fn target(&self) -> Option<String> {
        match self {
            Action::UpsertComment { repo, issue, marker, .. } => Some(format!("comment:{repo}#{issue}:{marker}")),
            Action::UpsertCheckRun { repo, external_id, .. } => Some(format!("check_run:{repo}:{external_id}")),
            _ => None,
        }
    }

    /// Sends the action. Returns a short description of what was done.
    pub async fn execute(&self, gh: &GitHub, db: &Db, installation: i64, now: i64) -> Result<String, ActionError> {
        let auth = Auth::Installation(installation);
        match self {
            Action::UpsertComment { repo, issue, marker, body } => {
                let tag = marker_tag(marker);
                let full = format!("{body}\n\n{tag}");
                let key = format!("{repo}#{issue}:{marker}");
                let found = match objects::get(db, installation, "comment", &key).await? {
                    Some(id) if id > 0 => Some(id),
                    // Being created when a previous attempt stopped: it may exist already.
                    Some(_) => find_comment(gh, auth, repo, *issue, &tag).await?,
                    None => None,
                };
                // A comment that carries an audit anchor is written once: editing it would let
                // a forged outbox row replace an anchor with one for a log cut short.
                if let Some(id) = found
                    && body.contains(crate::domain::messages::ANCHOR_TAG)
                {
                    return Ok(format!("comment {id} carries an audit anchor: never edited"));
                }
                if let Some(id) = found {
                    let r = gh
                        .request(
                            auth,
                            Method::PATCH,
                            &format!("/repos/{repo}/issues/comments/{id}"),
                            Some(&json!({ "body": full })),
                        )
                        .await?;
                    if r.status != 404 {
                        r.ok(&Method::PATCH)?;
                        objects::put(db, installation, "comment", &key, id, now).await?;
                        return Ok(format!("updated comment {id}"));
                    }
                    // Deleted by someone: write it again.
                }
                objects::put(db, installation, "comment", &key, 0, now).await?;
                let r = gh
                    .request(
                        auth,
                        Method::POST,
                        &format!("/repos/{repo}/issues/{issue}/comments"),
                        Some(&json!({ "body": full })),
                    )
                    .await?
                    .ok(&Method::POST)?;
                let id = id_of(&r.json::<Value>()?, "id")?;
                objects::put(db, installation, "comment", &key, id, now).await?;
                Ok(format!("created comment {id}"))
            }
            Action::UpsertCheckRun {
                repo,
                head_sha,
                name,
                external_id,
                status,
                conclusion,
                title,
                summary,
                text,
                details_url,
            } => {
                let key = format!("{repo}:{external_id}");
                let mut output = json!({ "title": title, "summary": summary });
                if let Some(t) = text {
                    output["text"] = json!(t);
                }
                let mut body = json!({ "name": name, "status": status, "output": output, "external_id": external_id });
                if let Some(c) = conclusion {
                    body["conclusion"] = json!(c);
                }
                if let Some(u) = details_url {
                    body["details_url"] = json!(u);
                }
                let found = match objects::get(db, installation, "check_run", &key).await? {
                    Some(id) if id > 0 => Some(id),
                    Some(_) => {
                        let runs = gh
                            .get_all(
                                auth,
                                &format!("/repos/{repo}/commits/{head_sha}/check-runs?check_name={}", encode(name)),
                                Some("check_runs"),
                            )
                            .await?;
                        runs.iter()
                            .find(|r| r.get("external_id").and_then(Value::as_str) == Some(external_id))
                            .and_then(|r| r.get("id").and_then(Value::as_i64))
                    }
                    None => None,
                };
                if let Some(id) = found {
                    let r =
                        gh.request(auth, Method::PATCH, &format!("/repos/{repo}/check-runs/{id}"), Some(&body)).await?;
                    if r.status != 404 {
                        r.ok(&Method::PATCH)?;
                        objects::put(db, installation, "check_run", &key, id, now).await?;
                        return Ok(format!("updated check run {id}"));
                    }
                }
                objects::put(db, installation, "check_run", &key, 0, now).await?;
                body["head_sha"] = json!(head_sha);
                let r = gh
                    .request(auth, Method::POST, &format!("/repos/{repo}/check-runs"), Some(&body))
                    .await?
                    .ok(&Method::POST)?;
                let id = id_of(&r.json::<Value>()?, "id")?;
                objects::put(db, installation, "check_run", &key, id, now).await?;
                Ok(format!("created check run {id}"))
            }
            Action::AddReaction { repo, comment_id, content } => {
                let path = format!("/repos/{repo}/issues/comments/{comment_id}/reactions");
                let r = gh.request(auth, Method::POST, &path, Some(&json!({ "content": content }))).await?;
                if r.status == 404 {
                    return Ok("comment gone; no reaction".into());
                }
                r.ok(&Method::POST)?;
                Ok(format!("reacted {content}"))
            }
            Action::SetLabels { repo, issue, add, remove } => {
                if !add.is_empty() {
                    gh.request(
                        auth,
                        Method::POST,
                        &format!("/repos/{repo}/issues/{issue}/labels"),
                        Some(&json!({ "labels": add })),
                    )
                    .await?
                    .ok(&Method::POST)?;
                }
                for l in remove {
                    let r = gh
                        .request(
                            auth,
                            Method::DELETE,
                            &format!("/repos/{repo}/issues/{issue}/labels/{}", encode(l)),
                            None,
                        )
                        .await?;
                    if r.status != 404 {
                        r.ok(&Method::DELETE)?;
                    }
                }
                Ok(format!("labels +{add:?} -{remove:?}"))
            }
            Action::AddAssignees { repo, issue, assignees } => {
                gh.request(
                    auth,
                    Method::POST,
                    &format!("/repos/{repo}/issues/{issue}/assignees"),
                    Some(&json!({ "assignees": assignees })),
                )
                .await?
                .ok(&Method::POST)?;
                Ok(format!("assigned {assignees:?}"))
            }
            Action::CreateIssue { repo, marker, title, body, labels, assignees } => {
                let key = format!("{repo}:{marker}");
                let tag = marker_tag(marker);
                match objects::get(db, installation, "issue", &key).await? {
                    Some(n) if n > 0 => return Ok(format!("issue #{n} exists")),
                    Some(_) => {
                        if let Some(n) = find_issue(gh, auth, repo, labels, &tag).await? {
                            objects::put(db, installation, "issue", &key, n, now).await?;
                            return Ok(format!("found issue #{n}"));
                        }
                    }
                    None => {}
                }
                objects::put(db, installation, "issue", &key, 0, now).await?;
                let mut payload = json!({ "title": title, "body": format!("{body}\n\n{tag}"), "labels": labels });
                if !assignees.is_empty() {
                    payload["assignees"] = json!(assignees);
                }
                let r = gh
                    .request(auth, Method::POST, &format!("/repos/{repo}/issues"), Some(&payload))
                    .await?
                    .ok(&Method::POST)?;
                let n = id_of(&r.json::<Value>()?, "number")?;
                objects::put(db, installation, "issue", &key, n, now).await?;
                Ok(format!("created issue #{n}"))
            }
            Action::UpdateIssue { repo, marker, number, title, body, state, state_reason } => {
                let n = match (number, marker) {
                    (Some(n), _) => *n,
                    (None, Some(m)) => match objects::get(db, installation, "issue", &format!("{repo}:{m}")).await? {
                        Some(n) if n > 0 => n,
                        _ => return Err(ActionError::Retry(format!("the issue with marker {m} is not created yet"))),
                    },
                    (None, None) => return Err(ActionError::Permanent("UpdateIssue names no issue".into())),
                };
                let mut patch = json!({});
                if let Some(t) = title {
                    patch["title"] = json!(t);
                }
                if let Some(b) = body {
                    let b = match marker {
                        Some(m) => format!("{b}\n\n{}", marker_tag(m)),
                        None => b.clone(),
                    };
                    patch["body"] = json!(b);
                }
                if let Some(s) = state {
                    patch["state"] = json!(s);
                }
                if let Some(r) = state_reason {
                    patch["state_reason"] = json!(r);
                }
                gh.request(auth, Method::PATCH, &format!("/repos/{repo}/issues/{n}"), Some(&patch))
                    .await?
                    .ok(&Method::PATCH)?;
                Ok(format!("updated issue #{n}"))
            }
            Action::CreateDeployment { repo, key, git_ref, environment, description, payload } => {
                let okey = format!("{repo}:{key}");
                match objects::get(db, installation, "deployment", &okey).await? {
                    Some(id) if id > 0 => return Ok(format!("deployment {id} exists")),
                    Some(_) => {
                        let list = gh
                            .get_all(
                                auth,
                                &format!("/repos/{repo}/deployments?environment={}", encode(environment)),
                                None,
                            )
                            .await?;
                        // Only a deployment this App made, of this commit, to this environment: anyone
                        // can create one with a copied key.
                        let app_id = gh.own_app_id().await;
                        let found = list.iter().find(|d| {
                            d["payload"]["shipgate_key"].as_str() == Some(key.as_str())
                                && app_id.is_some_and(|id| d["performed_via_github_app"]["id"].as_i64() == Some(id))
                                && (d["sha"].as_str() == Some(git_ref.as_str())
                                    || d["ref"].as_str() == Some(git_ref.as_str()))
                                && d["environment"].as_str().is_some_and(|e| e.eq_ignore_ascii_case(environment))
                        });
                        if let Some(id) = found.and_then(|d| d["id"].as_i64()) {
                            objects::put(db, installation, "deployment", &okey, id, now).await?;
                            return Ok(format!("found deployment {id}"));
                        }
                    }
                    None => {}
                }
                objects::put(db, installation, "deployment", &okey, 0, now).await?;
                let mut payload = if payload.is_object() { payload.clone() } else { json!({}) };
                payload["shipgate_key"] = json!(key);
                let body = json!({
                    "ref": git_ref, "environment": environment, "description": description,
                    "payload": payload, "auto_merge": false, "required_contexts": [],
                });
                let r = gh
                    .request(auth, Method::POST, &format!("/repos/{repo}/deployments"), Some(&body))
                    .await?
                    .ok(&Method::POST)?;
                let id = id_of(&r.json::<Value>()?, "id")?;
                objects::put(db, installation, "deployment", &okey, id, now).await?;
                Ok(format!("created deployment {id}"))
            }
            Action::CreateDeploymentStatus { repo, deployment_id, state, description, log_url, environment_url } => {
                let mut body = json!({ "state": state, "description": description });
                if let Some(u) = log_url {
                    body["log_url"] = json!(u);
                }
                if let Some(u) = environment_url {
                    body["environment_url"] = json!(u);
                }
                gh.request(
                    auth,
                    Method::POST,
                    &format!("/repos/{repo}/deployments/{deployment_id}/statuses"),
                    Some(&body),
                )
                .await?
                .ok(&Method::POST)?;
                Ok(format!("deployment {deployment_id} {state}"))
            }
            Action::ReviewProtectionRule { repo, run_id, environment_name, state, comment } => {
                let mut body = json!({ "environment_name": environment_name, "comment": comment });
                if let Some(s) = state {
                    body["state"] = json!(s);
                }
                let path = format!("/repos/{repo}/actions/runs/{run_id}/deployment_protection_rule");
                let r = gh.request(auth, Method::POST, &path, Some(&body)).await?;
                // Already reviewed (a retry after a lost answer): the review stands.
                if r.status == 422 && state.is_some() {
                    return Ok(format!("run {run_id} was already reviewed"));
                }
                r.ok(&Method::POST)?;
                Ok(match state {
                    Some(s) => format!("run {run_id} {s} for {environment_name}"),
                    None => format!("status reported on run {run_id}"),
                })
            }
            Action::RerunWorkflow { repo, run_id, key } => {
                // Once per rollback: a retry after a lost answer finds the re-run recorded.
                let object = format!("{repo}:rerun:{key}");
                if objects::get(db, installation, "rerun", &object).await?.is_some() {
                    return Ok(format!("run {run_id} was re-run already ({key})"));
                }
                let path = format!("/repos/{repo}/actions/runs/{run_id}/rerun");
                let r = gh.request(auth, Method::POST, &path, Some(&json!({}))).await?;
                r.ok(&Method::POST)?;
                objects::put(db, installation, "rerun", &object, *run_id, now).await?;
                Ok(format!("run {run_id} re-run ({key})"))
            }
            // Not GitHub's: the relay sends it (`crate::notify`).
            Action::Notify { .. } => Err(ActionError::Permanent("a notification is not sent to GitHub".into())),
        }
    }
}

/// The App's own comment carrying `tag`: written by a bot through this App. A person's comment
/// that happens to contain the marker is never taken for it (and never edited).
async fn find_comment(gh: &GitHub, auth: Auth, repo: &str, issue: i64, tag: &str) -> Result<Option<i64>, ActionError> {
    let comments = gh.get_all(auth, &format!("/repos/{repo}/issues/{issue}/comments"), None).await?;
    let app_id = gh.own_app_id().await;
    Ok(comments
        .iter()
        .filter(|c| by_this_app(c, app_id))
        .find(|c| c.get("body").and_then(Value::as_str).is_some_and(|b| b.contains(tag)))
        .and_then(|c| c.get("id").and_then(Value::as_i64)))
}

/// Was this comment or issue written by this App (`app_id`)? A bot account, and the App that
/// performed it.
pub fn by_this_app(c: &Value, app_id: Option<i64>) -> bool {
    c["user"]["type"].as_str() == Some("Bot")
        && app_id.is_some_and(|id| c["performed_via_github_app"]["id"].as_i64() == Some(id))
}

async fn find_issue(
    gh: &GitHub,
    auth: Auth,
    repo: &str,
    labels: &[String],
    tag: &str,
) -> Result<Option<i64>, ActionError> {
    let mut path = format!("/repos/{repo}/issues?state=all");
    if let Some(l) = labels.first() {
        path.push_str(&format!("&labels={}", encode(l)));
    }
    let issues = gh.get_all(auth, &path, None).await?;
    let app_id = gh.own_app_id().await;
    Ok(issues
        .iter()
        .filter(|i| by_this_app(i, app_id))
        .find(|i| i.get("body").and_then(Value::as_str).is_some_and(|b| b.contains(tag)))
        .and_then(|i| i.get("number").and_then(Value::as_i64)))
}

fn id_of(v: &Value, field: &str) -> Result<i64, ActionError> {
    v.get(field).and_then(Value::as_i64).ok_or_else(|| ActionError::Retry(format!("GitHub's answer has no {field}")))
}

pub use super::client::encode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_as_json() {
        let a = Action::UpsertComment { repo: "o/r".into(), issue: 3, marker: "gate".into(), body: "hi".into() };
        let s = serde_json::to_string(&a).expect("json");
        assert!(s.contains("\"type\":\"upsert_comment\""), "{s}");
        assert_eq!(serde_json::from_str::<Action>(&s).expect("back"), a);
        assert_eq!(a.subject(), "o/r#3");
        assert_eq!(a.target().as_deref(), Some("comment:o/r#3:gate"));
    }

    #[test]
    fn encodes_labels() {
        assert_eq!(encode("on-hold"), "on-hold");
        assert_eq!(encode("ci failure/x"), "ci%20failure%2Fx");
    }
}
