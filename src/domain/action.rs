//! What the App does on GitHub, as data (`github::actions` sends it). The domain decides which
//! actions an event calls for; the outbox stores them; the relay sends them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `owner/name`.
pub type Repo = String;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// One comment per (issue, marker), edited in place.
    UpsertComment {
        repo: Repo,
        issue: i64,
        marker: String,
        body: String,
    },
    /// One check run per `external_id` (which names the head SHA), updated in place.
    UpsertCheckRun {
        repo: Repo,
        head_sha: String,
        name: String,
        external_id: String,
        status: String,
        conclusion: Option<String>,
        title: String,
        summary: String,
        text: Option<String>,
        details_url: Option<String>,
    },
    AddReaction {
        repo: Repo,
        comment_id: i64,
        content: String,
    },
    SetLabels {
        repo: Repo,
        issue: i64,
        add: Vec<String>,
        remove: Vec<String>,
    },
    AddAssignees {
        repo: Repo,
        issue: i64,
        assignees: Vec<String>,
    },
    /// One issue per marker.
    CreateIssue {
        repo: Repo,
        marker: String,
        title: String,
        body: String,
        labels: Vec<String>,
        /// Logins to assign (GitHub drops those without push access).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        assignees: Vec<String>,
    },
    /// Edits the issue made by `CreateIssue` with this marker (or issue `number`).
    UpdateIssue {
        repo: Repo,
        marker: Option<String>,
        number: Option<i64>,
        title: Option<String>,
        body: Option<String>,
        state: Option<String>,
        state_reason: Option<String>,
    },
    /// One deployment per `key` (carried in its payload as `shipgate_key`).
    CreateDeployment {
        repo: Repo,
        key: String,
        git_ref: String,
        environment: String,
        description: String,
        payload: Value,
    },
    CreateDeploymentStatus {
        repo: Repo,
        deployment_id: i64,
        state: String,
        description: String,
        log_url: Option<String>,
        environment_url: Option<String>,
    },
    /// Approves or rejects a run waiting on a custom deployment protection rule; without `state`,
    /// posts a status report on it.
    ReviewProtectionRule {
        repo: Repo,
        run_id: i64,
        environment_name: String,
        state: Option<String>,
        comment: String,
    },
    /// Re-runs a workflow run (`/rollback` in deploy modes `protection_rule` and `workflow`: the
    /// run that last deployed successfully deploys its commit again, and waits on the gate).
    RerunWorkflow {
        repo: Repo,
        run_id: i64,
        /// The rollback it is (request and comment): said in the log, and the subject's key.
        key: String,
    },
    /// A notification (SPEC §5) to a Slack channel or by e-mail, for `event`: the channel is
    /// named, never its URL (the relay looks the URL up when it sends). The texts link back to the
    /// issue through `notify::LINK`, written when sent.
    Notify {
        repo: Repo,
        channel: super::notify::Channel,
        event: String,
        /// What caused it (its own outbox subject with the channel and event).
        key: String,
        /// The e-mail's subject.
        subject: String,
        /// The plain text (the e-mail's body).
        text: String,
        /// The Slack message (`text` fallback and Block Kit `blocks`); null for e-mail.
        slack: Value,
        link: super::notify::NoticeLink,
        /// A `deployed` notice's request: its checklist ticks "Notify team" once really sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<super::notify::RequestRef>,
    },
}
