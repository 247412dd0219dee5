//! The states of a request and of an approval, as enums: they become text only where they are
//! stored (`store/`) or shown.

use serde::{Deserialize, Serialize};

/// Where a deployment request stands (the `state` column, and its label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RequestStatus {
    /// The request itself is incomplete or invalid (a field missing, a PR that is not one).
    Incomplete,
    AwaitingApproval,
    /// Every approval is in, but something else holds the gate (tests, a red branch, staging).
    Blocked,
    Approved,
    OnHold,
    Denied,
    Deploying,
    Deployed,
    DeployFailed,
    RolledBack,
    /// Closed, or no longer labelled.
    Closed,
}

/// Where a request's deployment stands: `requested` (asked for by `/deploy` or `/rollback`, no
/// status from GitHub yet), then GitHub's deployment status states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployState {
    #[default]
    Requested,
    Queued,
    Pending,
    InProgress,
    Success,
    Failure,
    Error,
    Inactive,
}

impl DeployState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Requested => "requested",
            DeployState::Queued => "queued",
            DeployState::Pending => "pending",
            DeployState::InProgress => "in_progress",
            DeployState::Success => "success",
            DeployState::Failure => "failure",
            DeployState::Error => "error",
            DeployState::Inactive => "inactive",
        }
    }

    /// None for a state GitHub may add later (treated as no deployment news).
    pub fn parse(s: &str) -> Option<DeployState> {
        Some(match s {
            "requested" => DeployState::Requested,
            "queued" => DeployState::Queued,
            "pending" => DeployState::Pending,
            "in_progress" => DeployState::InProgress,
            "success" => DeployState::Success,
            "failure" => DeployState::Failure,
            "error" => DeployState::Error,
            "inactive" => DeployState::Inactive,
            _ => return None,
        })
    }

    /// Under way: queued, pending or in progress.
    pub fn running(self) -> bool {
        matches!(self, DeployState::Queued | DeployState::Pending | DeployState::InProgress)
    }

    /// Ended badly.
    pub fn failed(self) -> bool {
        matches!(self, DeployState::Failure | DeployState::Error)
    }

    /// Ended (well or badly).
    pub fn is_final(self) -> bool {
        self == DeployState::Success || self.failed()
    }
}

/// What decides a request's status, most important first.
pub struct StatusFacts {
    pub active: bool,
    pub denied: bool,
    pub on_hold: bool,
    pub gate_open: bool,
    /// The request itself is incomplete or invalid.
    pub incomplete: bool,
    /// Every approval it needs is in.
    pub approvals_complete: bool,
    /// The latest status of its deployment, if any.
    pub deploy_state: Option<DeployState>,
    /// That deployment was a rollback.
    pub rollback: bool,
}

impl RequestStatus {
    pub fn of(f: &StatusFacts) -> RequestStatus {
        let deploy = f.deploy_state;
        if !f.active {
            RequestStatus::Closed
        } else if f.denied {
            RequestStatus::Denied
        } else if deploy.is_some_and(DeployState::running) {
            RequestStatus::Deploying
        } else if deploy == Some(DeployState::Success) {
            if f.rollback { RequestStatus::RolledBack } else { RequestStatus::Deployed }
        } else if deploy.is_some_and(DeployState::failed) {
            RequestStatus::DeployFailed
        } else if f.on_hold {
            RequestStatus::OnHold
        } else if f.gate_open {
            RequestStatus::Approved
        } else if f.incomplete {
            RequestStatus::Incomplete
        } else if f.approvals_complete {
            RequestStatus::Blocked
        } else {
            RequestStatus::AwaitingApproval
        }
    }

    /// Every state, in the order a request usually passes through them.
    pub const ALL: [RequestStatus; 11] = [
        RequestStatus::Incomplete,
        RequestStatus::AwaitingApproval,
        RequestStatus::Blocked,
        RequestStatus::Approved,
        RequestStatus::OnHold,
        RequestStatus::Denied,
        RequestStatus::Deploying,
        RequestStatus::Deployed,
        RequestStatus::DeployFailed,
        RequestStatus::RolledBack,
        RequestStatus::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Incomplete => "incomplete",
            RequestStatus::AwaitingApproval => "awaiting-approval",
            RequestStatus::Blocked => "blocked",
            RequestStatus::Approved => "approved",
            RequestStatus::OnHold => "on-hold",
            RequestStatus::Denied => "denied",
            RequestStatus::Deploying => "deploying",
            RequestStatus::Deployed => "deployed",
            RequestStatus::DeployFailed => "deploy-failed",
            RequestStatus::RolledBack => "rolled-back",
            RequestStatus::Closed => "closed",
        }
    }

    /// The state label the issue carries (none when closed or denied).
    pub fn label(self) -> Option<&'static str> {
        match self {
            RequestStatus::Closed | RequestStatus::Denied => None,
            RequestStatus::RolledBack => Some("deploy-failed"),
            other => Some(other.as_str()),
        }
    }
}

/// An approval's state (the `state` column of `approvals`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// It counts while it is current (same heads, same revision, a role still held).
    Active,
    /// Taken back: `/approve cancel`, the comment deleted or edited.
    Withdrawn,
    /// Given for other commits or another revision: must be given again.
    Stale,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Active => "active",
            ApprovalState::Withdrawn => "withdrawn",
            ApprovalState::Stale => "stale",
        }
    }

    pub fn parse(s: &str) -> Option<ApprovalState> {
        Some(match s {
            "active" => ApprovalState::Active,
            "withdrawn" => ApprovalState::Withdrawn,
            "stale" => ApprovalState::Stale,
            _ => return None,
        })
    }

    /// The audit entry of a change to this state.
    pub fn audit_kind(self) -> &'static str {
        match self {
            ApprovalState::Active => "approval.given",
            ApprovalState::Withdrawn => "approval.withdrawn",
            ApprovalState::Stale => "approval.stale",
        }
    }
}

/// A deployment request as stored (`store::requests` reads and writes it; states are text there,
/// enums here: [`RequestStatus`], [`DeployState`]). `Default` is an empty row, for building one field by field.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RequestRow {
    pub installation_id: i64,
    pub repository_id: i64,
    pub repository: String,
    pub issue: i64,
    pub author_id: i64,
    pub author_login: String,
    pub labelled: i64,
    pub open: i64,
    pub environment: Option<String>,
    pub fingerprint: String,
    pub revision: i64,
    pub hold_by: Option<String>,
    pub denied_by: Option<String>,
    pub deny_reason: Option<String>,
    pub gate_open: i64,
    pub state: String,
    pub facts: String,
    pub labels: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The key of the deployment the App created for it (`/deploy`, `/rollback`).
    pub deploy_key: Option<String>,
    /// Its current deployment, once GitHub has reported one.
    pub deployment_id: Option<i64>,
    pub deploy_state: Option<String>,
    pub deploy_sha: Option<String>,
    /// When the gate last opened.
    pub approved_at: Option<i64>,
    /// When `/deploy` or `/rollback` asked for the current deployment.
    pub deploy_requested_at: Option<i64>,
    /// The account that placed the hold, and the one that denied (logins are for display).
    pub hold_by_id: Option<i64>,
    pub denied_by_id: Option<i64>,
    /// The workflow run a pending `/rollback` re-ran: only its waiting deployment is approved,
    /// once (then None).
    pub rollback_run_id: Option<i64>,
}

/// What a request links: a pull request (by number) or a commit it covers (a full SHA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Link {
    Pr,
    Sha,
}

impl Link {
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Pr => "pr",
            Link::Sha => "sha",
        }
    }
}

/// A new approval, or a change of state of one (`comment_id` identifies it within the request).
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalChange {
    pub installation_id: i64,
    pub repository_id: i64,
    pub issue: i64,
    pub comment_id: i64,
    pub user_id: i64,
    pub login: String,
    pub roles: String,
    pub environment: String,
    pub head_shas: String,
    pub revision: i64,
    pub state: ApprovalState,
    pub note: Option<String>,
    /// When it was given: the approving comment's time as GitHub wrote it (never later than the
    /// App heard of it), so a late delivery adds nothing to an approval's life. None: now.
    pub given_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> StatusFacts {
        StatusFacts {
            active: true,
            denied: false,
            on_hold: false,
            gate_open: false,
            incomplete: false,
            approvals_complete: false,
            deploy_state: None,
            rollback: false,
        }
    }
    #[test]
    fn incomplete_and_blocked_say_what_holds_the_request() {
        let incomplete = StatusFacts { incomplete: true, ..facts() };
        assert_eq!(RequestStatus::of(&incomplete).label(), Some("incomplete"));
        let blocked = StatusFacts { approvals_complete: true, ..facts() };
        assert_eq!(RequestStatus::of(&blocked).label(), Some("blocked"));
        let open = StatusFacts { approvals_complete: true, gate_open: true, ..facts() };
        assert_eq!(RequestStatus::of(&open).label(), Some("approved"));
        let held = StatusFacts { approvals_complete: true, on_hold: true, ..facts() };
        assert_eq!(RequestStatus::of(&held).label(), Some("on-hold"));
        assert_eq!(RequestStatus::of(&facts()).label(), Some("awaiting-approval"));
    }

    #[test]
    fn a_request_status_in_order_of_importance() {
        assert_eq!(RequestStatus::of(&facts()), RequestStatus::AwaitingApproval);
        assert_eq!(RequestStatus::of(&StatusFacts { gate_open: true, ..facts() }), RequestStatus::Approved);
        assert_eq!(
            RequestStatus::of(&StatusFacts { gate_open: true, on_hold: true, ..facts() }),
            RequestStatus::OnHold
        );
        let deploying = StatusFacts { on_hold: true, deploy_state: Some(DeployState::InProgress), ..facts() };
        assert_eq!(RequestStatus::of(&deploying), RequestStatus::Deploying);
        assert_eq!(
            RequestStatus::of(&StatusFacts { deploy_state: Some(DeployState::Success), ..facts() }),
            RequestStatus::Deployed
        );
        let rolled = StatusFacts { deploy_state: Some(DeployState::Success), rollback: true, ..facts() };
        assert_eq!(RequestStatus::of(&rolled), RequestStatus::RolledBack);
        assert_eq!(
            RequestStatus::of(&StatusFacts { deploy_state: Some(DeployState::Error), ..facts() }),
            RequestStatus::DeployFailed
        );
        let denied = StatusFacts { denied: true, deploy_state: Some(DeployState::InProgress), ..facts() };
        assert_eq!(RequestStatus::of(&denied), RequestStatus::Denied);
        assert_eq!(RequestStatus::of(&StatusFacts { active: false, denied: true, ..facts() }), RequestStatus::Closed);
        assert_eq!(RequestStatus::RolledBack.label(), Some("deploy-failed"));
        assert_eq!(RequestStatus::Closed.label(), None);
        assert_eq!(RequestStatus::AwaitingApproval.label(), Some("awaiting-approval"));
    }

    #[test]
    fn approval_states_round_trip() {
        for s in [ApprovalState::Active, ApprovalState::Withdrawn, ApprovalState::Stale] {
            assert_eq!(ApprovalState::parse(s.as_str()), Some(s));
        }
        assert_eq!(ApprovalState::parse("approved"), None);
        assert_eq!(ApprovalState::Stale.audit_kind(), "approval.stale");
    }
}
