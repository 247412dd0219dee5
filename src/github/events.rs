//! The webhook payloads the request gate handles, typed at the edge: one struct per event, with
//! only the fields the App reads. A payload that does not have this shape is refused with a clear
//! error before anything is decided; a field GitHub may leave out is optional here.
//! (Checked against the real payloads in `tests/fixtures/webhooks`, copied from
//! `../shared/corpora`: see the tests.)

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::client::parse_rfc3339_ms;
use crate::domain::flow::IssueSnapshot;
use crate::domain::gate::User;
use crate::domain::ids::UserId;

/// A field GitHub may send as `null` (a deleted account's comment has `"user": null`): read as
/// its default, like a missing one.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A user or bot in a payload.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Account {
    pub fn user(&self) -> User {
        User { id: UserId(self.id), login: self.login.clone() }
    }

    /// A bot: by its type, or by GitHub's `[bot]` suffix.
    pub fn is_bot(&self) -> bool {
        self.kind.as_deref() == Some("Bot") || self.login.ends_with("[bot]")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepositoryRef {
    pub id: i64,
    pub full_name: String,
    #[serde(default)]
    pub default_branch: Option<String>,
    /// The default branch, in push payloads.
    #[serde(default)]
    pub master_branch: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstallationRef {
    pub id: i64,
}

/// A label: an object with a name in webhooks, possibly a bare string in the REST API.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(from = "LabelRepr")]
pub struct Label {
    pub name: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LabelRepr {
    Name(String),
    Object {
        #[serde(default, deserialize_with = "null_as_default")]
        name: String,
    },
}

impl From<LabelRepr> for Label {
    fn from(r: LabelRepr) -> Label {
        match r {
            LabelRepr::Name(name) | LabelRepr::Object { name } => Label { name },
        }
    }
}

/// An issue (or a pull request seen as an issue).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Issue {
    pub number: i64,
    /// `open` or `closed` (missing: open).
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user: Account,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: Vec<Label>,
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Why it was closed: `completed`, `not_planned`, `duplicate` (null for an open issue, and in
    /// older payloads).
    #[serde(default)]
    pub state_reason: Option<String>,
    /// Present (not null) when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<Value>,
}

impl Issue {
    /// An issue object (of a payload, or as the REST API returns it); None if it is not one.
    pub fn read(v: Value) -> Option<Issue> {
        serde_json::from_value(v).ok()
    }

    pub fn is_pull_request(&self) -> bool {
        self.pull_request.as_ref().is_some_and(|p| !p.is_null())
    }

    /// GitHub's `updated_at`, in Unix ms.
    pub fn updated_at(&self) -> Option<i64> {
        self.updated_at.as_deref().and_then(parse_rfc3339_ms)
    }

    /// What the request gate reads of it.
    pub fn snapshot(&self) -> IssueSnapshot {
        IssueSnapshot {
            author: self.user.user(),
            open: self.state.as_deref() != Some("closed"),
            body: self.body.clone().unwrap_or_default(),
            labels: self.labels.iter().map(|l| l.name.clone()).collect(),
            updated_at: self.updated_at(),
        }
    }
}

/// `issues`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct IssuesEvent {
    pub action: String,
    pub issue: Issue,
    pub repository: RepositoryRef,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    #[serde(default)]
    pub sender: Option<Account>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Comment {
    pub id: i64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user: Account,
    #[serde(default)]
    pub created_at: Option<String>,
    /// The App that wrote it, for a bot's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performed_via_github_app: Option<AppRef>,
}

impl Comment {
    pub fn created_at(&self) -> Option<i64> {
        self.created_at.as_deref().and_then(parse_rfc3339_ms)
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct BodyChange {
    #[serde(default)]
    pub from: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Changes {
    #[serde(default)]
    pub body: Option<BodyChange>,
}

/// `issue_comment`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct IssueCommentEvent {
    pub action: String,
    pub issue: Issue,
    pub comment: Comment,
    #[serde(default)]
    pub changes: Option<Changes>,
    pub repository: RepositoryRef,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub sender: Account,
}

impl IssueCommentEvent {
    /// An edited comment's previous text.
    pub fn before(&self) -> Option<&str> {
        self.changes.as_ref()?.body.as_ref()?.from.as_deref()
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Deployment {
    pub id: i64,
    pub sha: String,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub creator: Option<Account>,
    #[serde(default)]
    pub performed_via_github_app: Option<AppRef>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppRef {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub slug: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct DeploymentStatus {
    #[serde(default)]
    pub id: i64,
    pub state: String,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub creator: Option<Account>,
    #[serde(default)]
    pub performed_via_github_app: Option<AppRef>,
    #[serde(default)]
    pub log_url: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct WorkflowRunRef {
    pub id: i64,
    #[serde(default)]
    pub html_url: Option<String>,
}

/// `deployment_status`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct DeploymentStatusEvent {
    pub deployment: Deployment,
    pub deployment_status: DeploymentStatus,
    pub repository: RepositoryRef,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    #[serde(default)]
    pub workflow_run: Option<WorkflowRunRef>,
}

/// `deployment_protection_rule`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ProtectionRuleEvent {
    pub action: String,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub deployment_callback_url: Option<String>,
    #[serde(default)]
    pub deployment: Option<DeploymentId>,
    pub repository: RepositoryRef,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub sender: Account,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct DeploymentId {
    pub id: i64,
}

impl ProtectionRuleEvent {
    /// The workflow run the callback URL names (`…/actions/runs/{run_id}/deployment_protection_rule`).
    pub fn run_id(&self) -> Option<i64> {
        self.deployment_callback_url.as_deref()?.split("/actions/runs/").nth(1)?.split('/').next()?.parse().ok()
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct PushCommit {
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub modified: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
}

/// `push`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PushEvent {
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(default)]
    pub after: String,
    #[serde(default)]
    pub commits: Vec<PushCommit>,
    pub repository: RepositoryRef,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub sender: Account,
}

impl PushEvent {
    pub fn default_branch(&self) -> &str {
        self.repository.default_branch.as_deref().or(self.repository.master_branch.as_deref()).unwrap_or("main")
    }

    /// Whether a listed commit touches `path` (the list can be cut short: at most 20 commits).
    pub fn touches(&self, path: &str) -> bool {
        self.commits.iter().any(|c| c.added.iter().chain(&c.modified).chain(&c.removed).any(|f| f == path))
    }
}

/// A PR, a check or a run, by the fields a recheck needs.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Subject {
    #[serde(default)]
    pub number: Option<i64>,
    #[serde(default)]
    pub head_sha: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// `check_run`, `check_suite`, `workflow_run`: queued | in_progress | completed …
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    /// `check_run`: where its details are (a GitHub Actions job names its run).
    #[serde(default)]
    pub details_url: Option<String>,
    /// `check_run`: the App that made it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub app: AppRef,
}

/// The events that only ask the requests they touch to be evaluated again: `pull_request`,
/// `pull_request_review`, `check_run`, `check_suite`, `workflow_run`, `status`, `membership` and
/// `team`, by the fields they share (each event fills its own).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct RelatedEvent {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    #[serde(default)]
    pub repository: Option<RepositoryRef>,
    /// `pull_request`: the PR's number.
    #[serde(default)]
    pub number: Option<i64>,
    #[serde(default)]
    pub pull_request: Option<Subject>,
    #[serde(default)]
    pub check_run: Option<Subject>,
    #[serde(default)]
    pub check_suite: Option<Subject>,
    #[serde(default)]
    pub workflow_run: Option<Subject>,
    /// `status`: the commit, the status's context and its state.
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub sender: Account,
}

impl RelatedEvent {
    /// The PR it is about (`pull_request`, `pull_request_review`).
    pub fn pr_number(&self) -> Option<i64> {
        self.number.or(self.pull_request.as_ref().and_then(|p| p.number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("json")
    }

    fn each(prefix: &str) -> Vec<(String, Value)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks");
        let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
            .expect("corpora")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(prefix) && n.ends_with(".json"))
            .map(|n| (n.clone(), corpus(&format!("webhooks/{n}"))))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(!out.is_empty(), "no {prefix} payloads in the corpora");
        out
    }

    #[test]
    fn every_real_payload_of_the_events_we_handle_reads() {
        for (name, v) in each("issues.") {
            let e: IssuesEvent = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(e.issue.number, v["issue"]["number"].as_i64().expect("number"), "{name}");
            assert_eq!(e.issue.snapshot().labels.len(), v["issue"]["labels"].as_array().map_or(0, Vec::len));
        }
        for (name, v) in each("issue_comment.") {
            let e: IssueCommentEvent = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(e.comment.id, v["comment"]["id"].as_i64().expect("id"), "{name}");
            assert_eq!(e.issue.is_pull_request(), v["issue"]["pull_request"].is_object(), "{name}");
            assert_eq!(e.before(), v["changes"]["body"]["from"].as_str(), "{name}");
        }
        for (name, v) in each("deployment_status.") {
            let e: DeploymentStatusEvent = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(e.deployment.id, v["deployment"]["id"].as_i64().expect("id"), "{name}");
        }
        for prefix in
            ["pull_request.", "pull_request_review.", "check_run.", "check_suite.", "workflow_run.", "status."]
        {
            for (name, v) in each(prefix) {
                let e: RelatedEvent = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(e.repository.map(|r| r.id), v["repository"]["id"].as_i64(), "{name}");
            }
        }
        for (name, v) in each("push.") {
            let e: PushEvent = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(e.git_ref, v["ref"].as_str().expect("ref"), "{name}");
        }
        let v = corpus("webhooks/deployment_protection_rule.requested.0.json");
        let e: ProtectionRuleEvent = serde_json::from_value(v).expect("protection rule");
        assert!(e.run_id().is_some() && e.environment.is_some() && e.sha.is_some(), "{e:?}");
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_refused_not_guessed() {
        assert!(serde_json::from_value::<IssueCommentEvent>(serde_json::json!({ "action": "created" })).is_err());
        assert!(Issue::read(serde_json::json!({ "number": "five" })).is_none());
        let closed = Issue::read(serde_json::json!({ "number": 5, "state": "closed" })).expect("issue");
        assert!(!closed.snapshot().open && !closed.is_pull_request());
    }

    /// GitHub's webhook schemas: `comment.user` is `nullable: true` in issue_comment.{created,edited,deleted};
    /// `issue.user` is nullable in issues.{opened,edited,labeled,unlabeled}. The REST issue
    /// (`GET /repos/{o}/{r}/issues/{n}`, read by `Issue::read`) has `user: nullable-simple-user` and
    /// `labels: [string | {name?...}]`. The old handler read all of these with serde_json::Value.
    #[test]
    fn schema_legal_nulls_are_read_not_refused() {
        let mut v = corpus("webhooks/issue_comment.deleted.0.json");
        v["comment"]["user"] = Value::Null;
        assert!(serde_json::from_value::<IssueCommentEvent>(v).is_ok(), "issue_comment with comment.user null");
        let mut v = corpus("webhooks/issues.edited.0.json");
        v["issue"]["user"] = Value::Null;
        assert!(serde_json::from_value::<IssuesEvent>(v).is_ok(), "issues.edited with issue.user null");
        let rest = serde_json::json!({ "number": 5, "state": "open", "user": null, "labels": [{ "name": "DEPLOYMENT_REQUEST" }] });
        assert!(Issue::read(rest).is_some(), "REST issue with user null");
        let rest = serde_json::json!({ "number": 5, "state": "open", "user": { "id": 1, "login": "a" }, "labels": ["DEPLOYMENT_REQUEST"] });
        assert!(Issue::read(rest).is_some(), "REST issue with a label given as a string");
    }
}
