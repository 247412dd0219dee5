//! Facts the gate needs, read from GitHub (GET only; nothing here changes GitHub): the policy
//! file, pull requests, their changed files, checks and statuses on a SHA, reviews, team members
//! (cached for a few minutes) and collaborator permissions.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use http::Method;
use serde_json::Value;

use super::actions::encode;
use super::client::{Auth, GhError, GitHub};
use crate::domain::gate::{CheckFact, User};

/// Team members are cached this long (SPEC §1: "cached for a short time").
const TEAM_TTL_MS: i64 = 5 * 60 * 1000;

/// (installation, org, slug) → (fetched at, member ids)
type Teams = HashMap<(i64, String, String), (i64, BTreeSet<i64>)>;

#[derive(Default)]
pub struct TeamCache {
    teams: Mutex<Teams>,
}

impl TeamCache {
    /// Member ids of `org/slug`, cached per installation.
    pub async fn members(
        &self,
        gh: &GitHub,
        installation: i64,
        org: &str,
        slug: &str,
        now: i64,
    ) -> Result<BTreeSet<i64>, GhError> {
        let key = (installation, org.to_ascii_lowercase(), slug.to_ascii_lowercase());
        if let Some((at, ids)) = self.teams.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && now - at < TEAM_TTL_MS
        {
            return Ok(ids.clone());
        }
        let path = format!("/orgs/{}/teams/{}/members", encode(org), encode(slug));
        let ids: BTreeSet<i64> = match gh.get_all(Auth::Installation(installation), &path, None).await {
            Ok(list) => list.iter().filter_map(|m| m["id"].as_i64()).collect(),
            Err(e) if e.status() == Some(404) => BTreeSet::new(), // no such team (or not visible): nobody
            Err(e) => return Err(e),
        };
        self.teams.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (now, ids.clone()));
        Ok(ids)
    }

    /// Forgets an installation's teams (a `membership` or `team` event).
    pub fn forget(&self, installation: i64) {
        self.teams.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| k.0 != installation);
    }
}

/// `.github/shipgate.yml` on the default branch: Some((blob sha, text)) or None when absent.
pub async fn policy_file(gh: &GitHub, installation: i64, repo: &str) -> Result<Option<(String, String)>, GhError> {
    Ok(match policy_file_if_changed(gh, installation, repo, None).await? {
        PolicyFile::Found { blob, text, .. } => Some((blob, text)),
        PolicyFile::Missing | PolicyFile::Unchanged => None,
    })
}

/// `.github/shipgate.yml` on the default branch, read conditionally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyFile {
    /// The same as when it had entity tag `etag` (a 304: no rate limit spent).
    Unchanged,
    Missing,
    Found {
        blob: String,
        text: String,
        /// Its entity tag, for the next conditional read.
        etag: Option<String>,
    },
}

/// The policy file, unless it still has entity tag `etag`.
pub async fn policy_file_if_changed(
    gh: &GitHub,
    installation: i64,
    repo: &str,
    etag: Option<&str>,
) -> Result<PolicyFile, GhError> {
    let r = gh
        .get_if_changed(Auth::Installation(installation), &format!("/repos/{repo}/contents/.github/shipgate.yml"), etag)
        .await?;
    match r.status {
        304 if etag.is_some() => return Ok(PolicyFile::Unchanged),
        404 => return Ok(PolicyFile::Missing),
        _ => {}
    }
    let etag = r.headers.get(http::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
    let v: Value = r.ok(&Method::GET)?.json()?;
    let blob = v["sha"].as_str().unwrap_or_default().to_string();
    let b64: String = v["content"].as_str().unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = super::client::decode_base64(&b64)
        .ok_or_else(|| GhError::Decode { route: "contents".into(), message: "content is not base64".into() })?;
    Ok(PolicyFile::Found { blob, text: String::from_utf8_lossy(&bytes).into_owned(), etag })
}

/// The numbers of the pull requests GitHub associates with a commit (for a merge commit on the
/// base branch: the PR merged into it). A hint of where to look, never proof of coverage.
pub async fn pulls_of_commit(gh: &GitHub, installation: i64, repo: &str, sha: &str) -> Result<Vec<i64>, GhError> {
    let list = gh
        .get_all(Auth::Installation(installation), &format!("/repos/{repo}/commits/{}/pulls", encode(sha)), None)
        .await?;
    Ok(list.iter().filter_map(|p| p["number"].as_i64()).collect())
}

/// A pull request: None when it does not exist.
pub struct PullRequest {
    pub number: i64,
    pub head_sha: String,
    pub author: User,
    pub state: String,
    /// How many files GitHub says the PR changes (it lists at most 3,000).
    pub changed_files: Option<u64>,
    /// Once merged: the commit the merge produced on the base branch (merge, squash or rebase).
    /// GitHub also fills `merge_commit_sha` for an open PR (a test merge): that one is never read.
    pub merge_commit: Option<String>,
    /// When it was merged (Unix ms).
    pub merged_at: Option<i64>,
    /// The branch it merges into, and the repository's default branch.
    pub base_ref: Option<String>,
    pub default_branch: Option<String>,
}

/// The most files GitHub's files API lists for a pull request.
pub const MAX_LISTED_FILES: u64 = 3000;

pub async fn pull_request(
    gh: &GitHub,
    installation: i64,
    repo: &str,
    number: i64,
) -> Result<Option<PullRequest>, GhError> {
    let r = gh
        .request(Auth::Installation(installation), Method::GET, &format!("/repos/{repo}/pulls/{number}"), None)
        .await?;
    if r.status == 404 {
        return Ok(None);
    }
    let v: Value = r.ok(&Method::GET)?.json()?;
    let merged = v["merged"].as_bool().unwrap_or(false);
    Ok(Some(PullRequest {
        number,
        head_sha: v["head"]["sha"].as_str().unwrap_or_default().to_string(),
        author: User::of(&v["user"]),
        state: if merged { "merged".into() } else { v["state"].as_str().unwrap_or("open").to_string() },
        changed_files: v["changed_files"].as_u64(),
        merge_commit: v["merge_commit_sha"]
            .as_str()
            .filter(|s| merged && s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase),
        merged_at: v["merged_at"].as_str().and_then(super::client::parse_rfc3339_ms).filter(|_| merged),
        base_ref: v["base"]["ref"].as_str().map(str::to_string),
        default_branch: v["base"]["repo"]["default_branch"].as_str().map(str::to_string),
    }))
}

/// The files a PR changes, a renamed file under both its new and its previous name.
pub async fn changed_files(gh: &GitHub, installation: i64, repo: &str, number: i64) -> Result<Vec<String>, GhError> {
    let list =
        gh.get_all(Auth::Installation(installation), &format!("/repos/{repo}/pulls/{number}/files"), None).await?;
    Ok(list
        .iter()
        .flat_map(|f| [f["filename"].as_str(), f["previous_filename"].as_str()])
        .flatten()
        .map(str::to_string)
        .collect())
}

/// Ids of everyone who authored or committed a commit of the PR (GitHub lists up to 250), and
/// when the earliest of them was authored (Unix ms; the lead time for changes starts there).
pub async fn pushers(
    gh: &GitHub,
    installation: i64,
    repo: &str,
    number: i64,
) -> Result<(Vec<i64>, Option<i64>), GhError> {
    let list =
        gh.get_all(Auth::Installation(installation), &format!("/repos/{repo}/pulls/{number}/commits"), None).await?;
    let mut ids: Vec<i64> =
        list.iter().flat_map(|c| [c["author"]["id"].as_i64(), c["committer"]["id"].as_i64()]).flatten().collect();
    ids.sort_unstable();
    ids.dedup();
    let first = list
        .iter()
        .filter_map(|c| c["commit"]["author"]["date"].as_str())
        .filter_map(super::client::parse_rfc3339_ms)
        .min();
    Ok((ids, first))
}

/// The account id a login belongs to now (None: no such account).
pub async fn user_id(gh: &GitHub, installation: i64, login: &str) -> Result<Option<i64>, GhError> {
    let r =
        gh.request(Auth::Installation(installation), Method::GET, &format!("/users/{}", encode(login)), None).await?;
    if r.status == 404 {
        return Ok(None);
    }
    let v: Value = r.ok(&Method::GET)?.json()?;
    Ok(v["id"].as_i64())
}

/// The logins of a team's members (a team GitHub does not show us: nobody).
pub async fn team_member_logins(gh: &GitHub, installation: i64, org: &str, slug: &str) -> Result<Vec<String>, GhError> {
    let path = format!("/orgs/{}/teams/{}/members", encode(org), encode(slug));
    match gh.get_all(Auth::Installation(installation), &path, None).await {
        Ok(list) => Ok(list.iter().filter_map(|m| m["login"].as_str().map(str::to_string)).collect()),
        Err(e) if e.status() == Some(404) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The public e-mail a user shows on their profile (None: none shown, or no such user).
pub async fn public_email(gh: &GitHub, installation: i64, login: &str) -> Result<Option<String>, GhError> {
    let r =
        gh.request(Auth::Installation(installation), Method::GET, &format!("/users/{}", encode(login)), None).await?;
    if r.status == 404 {
        return Ok(None);
    }
    let v: Value = r.ok(&Method::GET)?.json()?;
    Ok(v["email"].as_str().map(str::trim).filter(|e| !e.is_empty()).map(str::to_string))
}

/// Was this deployment (an API or webhook `deployment` object) made by GitHub Actions?
pub fn made_by_actions(d: &Value) -> bool {
    d["performed_via_github_app"]["slug"].as_str() == Some("github-actions")
}

/// True when the latest review of some reviewer approves and none requests changes.
pub async fn review_approved(gh: &GitHub, installation: i64, repo: &str, number: i64) -> Result<bool, GhError> {
    let list =
        gh.get_all(Auth::Installation(installation), &format!("/repos/{repo}/pulls/{number}/reviews"), None).await?;
    let mut latest: HashMap<i64, String> = HashMap::new();
    for r in &list {
        let state = r["state"].as_str().unwrap_or_default();
        if matches!(state, "APPROVED" | "CHANGES_REQUESTED" | "DISMISSED") {
            latest.insert(r["user"]["id"].as_i64().unwrap_or_default(), state.to_string());
        }
    }
    Ok(latest.values().any(|s| s == "APPROVED") && !latest.values().any(|s| s == "CHANGES_REQUESTED"))
}

/// Check runs and commit statuses on `sha` (statuses as completed/pending checks).
/// The GitHub Actions run a check run is a job of (`…/actions/runs/{run_id}/job/{job_id}`): only
/// a check run GitHub Actions made (`app_slug`) says which run it belongs to.
pub fn actions_run_id(details_url: Option<&str>, app_slug: Option<&str>) -> Option<i64> {
    details_url
        .filter(|_| app_slug == Some("github-actions"))
        .and_then(|u| u.split("/actions/runs/").nth(1))
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| id.parse().ok())
}

pub async fn checks(gh: &GitHub, installation: i64, repo: &str, sha: &str) -> Result<Vec<CheckFact>, GhError> {
    let auth = Auth::Installation(installation);
    let runs = gh.get_all(auth, &format!("/repos/{repo}/commits/{sha}/check-runs"), Some("check_runs")).await?;
    let mut out: Vec<CheckFact> = runs
        .iter()
        .map(|r| CheckFact {
            name: r["name"].as_str().unwrap_or_default().to_string(),
            status: r["status"].as_str().unwrap_or("queued").to_string(),
            conclusion: r["conclusion"].as_str().map(str::to_string),
            run_id: actions_run_id(r["details_url"].as_str(), r["app"]["slug"].as_str()),
        })
        .collect();
    let r =
        gh.request(auth, Method::GET, &format!("/repos/{repo}/commits/{sha}/status"), None).await?.ok(&Method::GET)?;
    let v: Value = r.json()?;
    for s in v["statuses"].as_array().into_iter().flatten() {
        let state = s["state"].as_str().unwrap_or("pending");
        out.push(CheckFact {
            name: s["context"].as_str().unwrap_or_default().to_string(),
            status: if state == "pending" { "in_progress".into() } else { "completed".into() },
            conclusion: match state {
                "success" => Some("success".into()),
                "pending" => None,
                _ => Some("failure".into()),
            },
            run_id: None,
        });
    }
    Ok(out)
}

/// Has `sha` deployed successfully to `environment` in a deployment GitHub Actions or this App
/// (`app_id`) made? (The deployments API, when no `deployment_status` event told the App.) One a
/// person made with their own token is no evidence.
pub async fn deployed_ok(
    gh: &GitHub,
    installation: i64,
    repo: &str,
    sha: &str,
    environment: &str,
    app_id: Option<i64>,
) -> Result<bool, GhError> {
    let auth = Auth::Installation(installation);
    let list = gh
        .get_all(auth, &format!("/repos/{repo}/deployments?sha={sha}&environment={}", encode(environment)), None)
        .await?;
    let trusted = |d: &&Value| {
        made_by_actions(d) || app_id.is_some_and(|id| d["performed_via_github_app"]["id"].as_i64() == Some(id))
    };
    for d in list.iter().filter(trusted).take(10) {
        let Some(id) = d["id"].as_i64() else { continue };
        let statuses = gh.get_all(auth, &format!("/repos/{repo}/deployments/{id}/statuses"), None).await?;
        // Newest first: the latest status decides.
        if statuses.first().and_then(|s| s["state"].as_str()) == Some("success") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The logins of the repository's collaborators with at least `at_least` (a permission role's
/// members, whom an escalation mentions), in GitHub's order.
pub async fn collaborators_with(
    gh: &GitHub,
    installation: i64,
    repo: &str,
    at_least: crate::domain::policy::Permission,
) -> Result<Vec<String>, GhError> {
    use crate::domain::policy::Permission;
    let list = gh.get_all(Auth::Installation(installation), &format!("/repos/{repo}/collaborators"), None).await?;
    Ok(list
        .iter()
        .filter(|c| {
            let level = c["role_name"].as_str().and_then(Permission::parse).or_else(|| {
                let p = &c["permissions"];
                [("admin", Permission::Admin), ("maintain", Permission::Maintain), ("push", Permission::Write)]
                    .into_iter()
                    .chain([("triage", Permission::Triage), ("pull", Permission::Read)])
                    .find(|(k, _)| p[*k].as_bool() == Some(true))
                    .map(|(_, level)| level)
            });
            level.is_some_and(|l| l >= at_least)
        })
        .filter_map(|c| c["login"].as_str().map(str::to_string))
        .collect())
}

/// Whether the repository is private or internal now (`GET /repos/{repo}`). A repository GitHub
/// does not show is not.
pub async fn repository_private(gh: &GitHub, installation: i64, repo: &str) -> Result<bool, GhError> {
    let r = gh.request(Auth::Installation(installation), Method::GET, &format!("/repos/{repo}"), None).await?;
    if r.status == 404 {
        return Ok(false);
    }
    let v: Value = r.ok(&Method::GET)?.json()?;
    Ok(v["private"].as_bool() == Some(true) || matches!(v["visibility"].as_str(), Some("private" | "internal")))
}

/// admin | maintain | write | triage | read | none
pub async fn permission(gh: &GitHub, installation: i64, repo: &str, login: &str) -> Result<String, GhError> {
    let path = format!("/repos/{repo}/collaborators/{}/permission", encode(login));
    let r = gh.request(Auth::Installation(installation), Method::GET, &path, None).await?;
    if r.status == 404 {
        return Ok("none".into());
    }
    let v: Value = r.ok(&Method::GET)?.json()?;
    // `role_name` is the finer level (maintain, triage); a custom role falls back to `permission`.
    let role = v["role_name"].as_str().filter(|r| crate::domain::policy::Permission::parse(r).is_some());
    Ok(role.or(v["permission"].as_str()).unwrap_or("none").to_string())
}

/// The bodies of the comments this App wrote on issue `number`, oldest first (the closing
/// summaries carry the audit anchors; a person's comment never counts as the App's).
pub async fn app_comment_bodies(
    gh: &GitHub,
    installation: i64,
    repo: &str,
    number: i64,
) -> Result<Vec<String>, GhError> {
    let comments =
        gh.get_all(Auth::Installation(installation), &format!("/repos/{repo}/issues/{number}/comments"), None).await?;
    let app_id = gh.own_app_id().await;
    Ok(comments
        .iter()
        .filter(|c| crate::github::actions::by_this_app(c, app_id))
        .filter_map(|c| c["body"].as_str().map(str::to_string))
        .collect())
}

/// The issue itself (for a recheck that carries no issue payload).
pub async fn issue(gh: &GitHub, installation: i64, repo: &str, number: i64) -> Result<Option<Value>, GhError> {
    let r = gh
        .request(Auth::Installation(installation), Method::GET, &format!("/repos/{repo}/issues/{number}"), None)
        .await?;
    if r.status == 404 {
        return Ok(None);
    }
    Ok(Some(r.ok(&Method::GET)?.json()?))
}

/// The jobs of one attempt of a workflow run, with their steps (all pages).
pub async fn run_attempt_jobs(
    gh: &GitHub,
    installation: i64,
    repo: &str,
    run_id: i64,
    attempt: i64,
) -> Result<Vec<crate::domain::ci::JobFact>, GhError> {
    let path = format!("/repos/{repo}/actions/runs/{run_id}/attempts/{attempt}/jobs");
    let list = gh.get_all(Auth::Installation(installation), &path, Some("jobs")).await?;
    Ok(list
        .iter()
        .map(|j| crate::domain::ci::JobFact {
            id: j["id"].as_i64().unwrap_or_default(),
            name: j["name"].as_str().unwrap_or_default().to_string(),
            html_url: j["html_url"].as_str().unwrap_or_default().to_string(),
            conclusion: j["conclusion"].as_str().map(str::to_string),
            steps: j["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    (
                        s["number"].as_i64().unwrap_or_default(),
                        s["name"].as_str().unwrap_or_default().to_string(),
                        s["conclusion"].as_str().map(str::to_string),
                    )
                })
                .collect(),
        })
        .collect())
}

/// Open pull requests whose head is `owner:branch` (a fork's PR is found this way: its
/// `workflow_run.pull_requests` is empty): (number, head SHA).
pub async fn pulls_with_head(
    gh: &GitHub,
    installation: i64,
    repo: &str,
    owner: &str,
    branch: &str,
) -> Result<Vec<(i64, String)>, GhError> {
    let path = format!("/repos/{repo}/pulls?state=open&head={}", encode(&format!("{owner}:{branch}")));
    let list = gh.get_all(Auth::Installation(installation), &path, None).await?;
    Ok(list
        .iter()
        .filter_map(|p| Some((p["number"].as_i64()?, p["head"]["sha"].as_str().unwrap_or_default().to_string())))
        .collect())
}
