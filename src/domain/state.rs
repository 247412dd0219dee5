//! The states of a request and of an approval, as enums: they become text only where they are
//! stored (`store/`) or shown.

use serde::{Deserialize, Serialize};

/// Where a deployment request stands (the `state` column, and its label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestStatus {
    AwaitingApproval,
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

/// What decides a request's status, most important first.
pub struct StatusFacts<'a> {
    pub active: bool,
    pub denied: bool,
    pub on_hold: bool,
    pub gate_open: bool,
    /// The latest status of its deployment, if any.
    pub deploy_state: Option<&'a str>,
    /// That deployment was a rollback.
    pub rollback: bool,
}

impl RequestStatus {
    pub fn of(f: &StatusFacts<'_>) -> RequestStatus {
        let deploy = f.deploy_state.unwrap_or("");
        if !f.active {
            RequestStatus::Closed
        } else if f.denied {
            RequestStatus::Denied
        } else if matches!(deploy, "queued" | "pending" | "in_progress") {
            RequestStatus::Deploying
        } else if deploy == "success" {
            if f.rollback { RequestStatus::RolledBack } else { RequestStatus::Deployed }
        } else if matches!(deploy, "failure" | "error") {
            RequestStatus::DeployFailed
        } else if f.on_hold {
            RequestStatus::OnHold
        } else if f.gate_open {
            RequestStatus::Approved
        } else {
            RequestStatus::AwaitingApproval
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::AwaitingApproval => "awaiting-approval",
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> StatusFacts<'static> {
        StatusFacts {
            active: true,
            denied: false,
            on_hold: false,
            gate_open: false,
            deploy_state: None,
            rollback: false,
        }
    }

    #[test]
    fn a_request_status_in_order_of_importance() {
        assert_eq!(RequestStatus::of(&facts()), RequestStatus::AwaitingApproval);
        assert_eq!(RequestStatus::of(&StatusFacts { gate_open: true, ..facts() }), RequestStatus::Approved);
        assert_eq!(
            RequestStatus::of(&StatusFacts { gate_open: true, on_hold: true, ..facts() }),
            RequestStatus::OnHold
        );
        let deploying = StatusFacts { on_hold: true, deploy_state: Some("in_progress"), ..facts() };
        assert_eq!(RequestStatus::of(&deploying), RequestStatus::Deploying);
        assert_eq!(
            RequestStatus::of(&StatusFacts { deploy_state: Some("success"), ..facts() }),
            RequestStatus::Deployed
        );
        let rolled = StatusFacts { deploy_state: Some("success"), rollback: true, ..facts() };
        assert_eq!(RequestStatus::of(&rolled), RequestStatus::RolledBack);
        assert_eq!(
            RequestStatus::of(&StatusFacts { deploy_state: Some("error"), ..facts() }),
            RequestStatus::DeployFailed
        );
        let denied = StatusFacts { denied: true, deploy_state: Some("in_progress"), ..facts() };
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
