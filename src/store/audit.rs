//! The audit log (SPEC.md §3.6): every state change of a request, appended in the transaction
//! that makes the change. Append-only and tamper-evident: each entry carries the SHA-256 of the
//! previous entry of its installation and of its own canonical content.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Any, Transaction};

use super::Result;

/// One state change, as a handler describes it. The delivery id and time are added on append.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub installation_id: i64,
    pub repository_id: Option<i64>,
    /// owner/name
    pub repository: Option<String>,
    /// The request's issue number, when the change is about a request.
    pub issue: Option<i64>,
    /// What happened: `request.parsed`, `approval.given`, `approval.withdrawn`, `approval.stale`,
    /// `gate.opened`, `gate.closed`, `request.held`, `request.unheld`, `request.denied`,
    /// `protection_rule.answered`, `deployment.created`, `deployment.status`, `request.closed`, …
    pub kind: String,
    /// Who caused it (a GitHub user id and login); None for the App itself.
    pub actor_id: Option<i64>,
    pub actor_login: Option<String>,
    /// Anything else worth keeping, as JSON.
    pub detail: Value,
}

/// Appends `entry` inside `tx`, caused by delivery `delivery_id` at `now` (Unix ms).
///
/// Placeholder: the chained implementation lands with the audit branch.
pub async fn append(
    _tx: &mut Transaction<'static, Any>,
    _entry: &AuditEntry,
    _delivery_id: Option<&str>,
    _now: i64,
) -> Result<()> {
    Ok(())
}
