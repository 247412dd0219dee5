//! What the read-only API answers (SPEC.md §6): types designed for the people who call it, not
//! the tables behind them. Ids and numbers as integers, states as enums, lists as arrays, times
//! as RFC 3339 text; none of the App's internal columns (a request's remembered facts and their
//! digest, its deployment key, a delivery's subject, an incident's marker). The OpenAPI document
//! at `/api/openapi.json` is generated from these same types (utoipa), and the tests check every
//! answer against it.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::state::{ApprovalState, DeployState, RequestStatus};
use crate::store::audit::{AuditRow, rfc3339};
use crate::store::deliveries::{AttemptRow, DeliveryRow};
use crate::store::incidents::IncidentRow;
use crate::store::requests::{ApprovalRow, RequestRow};

fn time(ms: i64) -> String {
    rfc3339(ms)
}

/// A GitHub account. `id` is absent for a few records written before the App kept ids.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Account {
    pub id: Option<i64>,
    pub login: String,
}

/// A repository: GitHub's id and its `owner/name` when the record was made.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Repository {
    pub id: i64,
    pub full_name: String,
}

/// A pull request a deployment request links, as last seen.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LinkedPull {
    pub number: i64,
    pub head_sha: String,
    /// open | closed | merged
    pub state: String,
}

/// Who holds the gate with `/hold`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Hold {
    pub by: Account,
}

/// Who denied the request with `/deny`, and why.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Denial {
    pub by: Account,
    pub reason: Option<String>,
}

/// The request's current deployment.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RequestDeployment {
    /// GitHub's deployment id, once GitHub has reported one.
    pub id: Option<i64>,
    pub state: DeployState,
    pub sha: Option<String>,
    /// When `/deploy` or `/rollback` asked for it.
    #[schema(format = DateTime)]
    pub requested_at: Option<String>,
}

/// A deployment request: an issue labelled `DEPLOYMENT_REQUEST`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Request {
    pub installation_id: i64,
    pub repository: Repository,
    /// The issue's number.
    pub issue: i64,
    pub author: Account,
    pub state: RequestStatus,
    /// The issue is open.
    pub open: bool,
    /// The issue carries the `DEPLOYMENT_REQUEST` label.
    pub labelled: bool,
    /// The environment it asks to deploy to.
    pub environment: Option<String>,
    /// Counts the request's material changes; approvals are given for one revision.
    pub revision: i64,
    /// Whether the deploy gate is open.
    pub gate_open: bool,
    /// When the gate last opened.
    #[schema(format = DateTime)]
    pub approved_at: Option<String>,
    pub hold: Option<Hold>,
    pub denial: Option<Denial>,
    pub pull_requests: Vec<LinkedPull>,
    /// The commit a request without pull requests names.
    pub commit: Option<String>,
    pub deployment: Option<RequestDeployment>,
    /// The issue's labels.
    pub labels: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// An approval: one `/approve` comment, bound to the request's revision and its pull requests'
/// head commits.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Approval {
    pub id: i64,
    /// The approving comment.
    pub comment_id: i64,
    pub user: Account,
    /// The roles it counted for.
    pub roles: Vec<String>,
    pub environment: String,
    /// The pull requests' head commits it was given for.
    pub head_shas: Vec<String>,
    pub revision: i64,
    pub state: ApprovalState,
    /// Why it was withdrawn or went stale.
    pub note: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A request with its approvals (`GET /api/requests/{owner}/{repo}/{issue}`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RequestDetail {
    #[serde(flatten)]
    pub request: Request,
    /// Every approval ever given on it, oldest first, withdrawn and stale ones included.
    pub approvals: Vec<Approval>,
}

/// One entry of the audit log.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Append order across installations (the `after` cursor).
    pub seq: i64,
    pub installation_id: i64,
    /// 1, 2, 3, … within the installation's chain.
    pub position: i64,
    #[schema(format = DateTime)]
    pub time: String,
    pub repository_id: Option<i64>,
    /// `owner/name` at the time.
    pub repository: Option<String>,
    pub issue: Option<i64>,
    /// What happened: `request.parsed`, `approval.given`, `gate.opened`, `policy.changed`, …
    pub kind: String,
    /// Who caused it; absent for the App itself.
    pub actor: Option<Account>,
    /// The delivery that caused it.
    pub delivery_id: Option<String>,
    /// Anything else recorded, as JSON.
    pub detail: Value,
    /// The previous entry's seal, and this entry's (HMAC-SHA256 under the audit key).
    pub prev_hash: String,
    pub hash: String,
}

/// Where a delivery is in the inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Running,
    Done,
    Parked,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 4] =
        [DeliveryState::Pending, DeliveryState::Running, DeliveryState::Done, DeliveryState::Parked];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Running => "running",
            DeliveryState::Done => "done",
            DeliveryState::Parked => "parked",
        }
    }

    fn parse(s: &str) -> DeliveryState {
        DeliveryState::ALL.into_iter().find(|d| d.as_str() == s).unwrap_or(DeliveryState::Pending)
    }
}

/// A webhook delivery the App received. Its body is never returned.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Delivery {
    /// GitHub's delivery id (`X-GitHub-Delivery`).
    pub id: String,
    /// `X-GitHub-Event`, and the payload's `action`.
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub repository: Option<String>,
    #[schema(format = DateTime)]
    pub received_at: String,
    pub state: DeliveryState,
    /// What processing it led to (`ok`, `ignored`, …), once done.
    pub outcome: Option<String>,
    /// Attempts so far.
    pub attempts: i64,
    /// When a pending delivery is tried next.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
}

/// One attempt at processing a delivery.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Attempt {
    pub attempt: i64,
    /// The worker (replica) that made it.
    pub worker: String,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub finished_at: String,
    pub outcome: String,
    pub error: Option<String>,
}

/// A delivery with its attempts (`GET /api/deliveries/{id}`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: Delivery,
    /// Each attempt so far, oldest first (`attempts` counts them).
    pub attempt_history: Vec<Attempt>,
}

/// What an incident is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// A failed CI run.
    Ci,
    /// A security alert.
    Security,
    /// An alert from the monitoring stack (Alertmanager).
    Alert,
    /// The post-incident review that follows a break-glass deployment (due within two working
    /// days; escalated when still open then).
    Review,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Closed,
}

/// A CI or security incident.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Incident {
    /// `{repository id}:{what it is about}` (the `after` cursor).
    pub id: String,
    pub installation_id: i64,
    pub repository: Repository,
    pub kind: IncidentKind,
    pub title: String,
    pub branch: String,
    /// The branch is the repository's default branch.
    pub on_default_branch: bool,
    pub state: IncidentState,
    #[schema(format = DateTime)]
    pub opened_at: String,
    #[schema(format = DateTime)]
    pub first_failure_at: String,
    /// Failed runs counted.
    pub failures: i64,
    /// When the SLA runs out.
    #[schema(format = DateTime)]
    pub due_at: String,
    #[schema(format = DateTime)]
    pub escalated_at: Option<String>,
    #[schema(format = DateTime)]
    pub recovered_at: Option<String>,
    /// From the first failure to recovery, in milliseconds.
    pub time_to_recovery_ms: Option<i64>,
    /// It passed again without a change (a re-run): probably flaky.
    pub flaky: bool,
    /// Whom it notified.
    pub mentions: Vec<String>,
    /// What it is about, as recorded (failed jobs, the alert), as JSON.
    pub details: Value,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// An error: what was wrong, in a sentence.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Error {
    pub error: String,
}

macro_rules! page {
    ($name:ident, $item:ty, $what:literal) => {
        #[doc = concat!("A page of ", $what, ", oldest first. `next` is the `after` cursor of the next page (null on the last).")]
        #[derive(Clone, Debug, Serialize, ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            pub next: Option<String>,
        }
    };
}
page!(RequestPage, Request, "deployment requests");
page!(AuditPage, AuditEntry, "audit entries");
page!(DeliveryPage, Delivery, "deliveries");
page!(IncidentPage, Incident, "incidents");

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(text).unwrap_or_default()
}

impl From<&RequestRow> for Request {
    fn from(r: &RequestRow) -> Request {
        let memory: crate::domain::flow::Remembered = serde_json::from_str(&r.facts).unwrap_or_default();
        let account = |login: &Option<String>, id: Option<i64>| login.clone().map(|login| Account { id, login });
        Request {
            installation_id: r.installation_id,
            repository: Repository { id: r.repository_id, full_name: r.repository.clone() },
            issue: r.issue,
            author: Account { id: Some(r.author_id), login: r.author_login.clone() },
            state: RequestStatus::ALL.into_iter().find(|s| s.as_str() == r.state).unwrap_or(RequestStatus::Incomplete),
            open: r.open != 0,
            labelled: r.labelled != 0,
            environment: r.environment.clone(),
            revision: r.revision,
            gate_open: r.gate_open != 0,
            approved_at: r.approved_at.map(time),
            hold: account(&r.hold_by, r.hold_by_id).map(|by| Hold { by }),
            denial: account(&r.denied_by, r.denied_by_id).map(|by| Denial { by, reason: r.deny_reason.clone() }),
            pull_requests: memory
                .prs
                .iter()
                .map(|p| LinkedPull { number: p.number, head_sha: p.head_sha.clone(), state: p.state.clone() })
                .collect(),
            commit: memory.commit.clone(),
            deployment: match (&r.deploy_state, r.deployment_id, r.deploy_requested_at) {
                (None, None, None) => None,
                _ => Some(RequestDeployment {
                    id: r.deployment_id,
                    state: r.deploy_state.as_deref().and_then(DeployState::parse).unwrap_or_default(),
                    sha: r.deploy_sha.clone(),
                    requested_at: r.deploy_requested_at.map(time),
                }),
            },
            labels: json_list(&r.labels),
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
        }
    }
}

impl From<&ApprovalRow> for Approval {
    fn from(a: &ApprovalRow) -> Approval {
        Approval {
            id: a.seq,
            comment_id: a.comment_id,
            user: Account { id: Some(a.user_id), login: a.login.clone() },
            roles: json_list(&a.roles),
            environment: a.environment.clone(),
            head_shas: a.head_shas.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            revision: a.revision,
            state: ApprovalState::parse(&a.state).unwrap_or(ApprovalState::Stale),
            note: a.note.clone(),
            created_at: time(a.created_at),
        }
    }
}

impl From<&AuditRow> for AuditEntry {
    fn from(r: &AuditRow) -> AuditEntry {
        AuditEntry {
            seq: r.seq,
            installation_id: r.installation_id,
            position: r.position,
            time: time(r.at),
            repository_id: r.repository_id,
            repository: r.repository.clone(),
            issue: r.issue,
            kind: r.kind.clone(),
            actor: r.actor_login.clone().map(|login| Account { id: r.actor_id, login }),
            delivery_id: r.delivery_id.clone(),
            detail: serde_json::from_str(&r.detail).unwrap_or_else(|_| Value::String(r.detail.clone())),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        }
    }
}

impl From<&DeliveryRow> for Delivery {
    fn from(d: &DeliveryRow) -> Delivery {
        let state = DeliveryState::parse(&d.state);
        Delivery {
            id: d.id.clone(),
            event: d.event.clone(),
            action: d.action.clone(),
            installation_id: d.installation_id,
            repository: d.repository.clone(),
            received_at: time(d.received_at),
            state,
            outcome: d.outcome.clone(),
            attempts: d.attempts,
            next_attempt_at: (state == DeliveryState::Pending).then(|| time(d.next_attempt_at)),
            last_error: d.last_error.clone(),
            finished_at: d.finished_at.map(time),
        }
    }
}

impl From<&AttemptRow> for Attempt {
    fn from(a: &AttemptRow) -> Attempt {
        Attempt {
            attempt: a.attempt,
            worker: a.worker.clone(),
            started_at: time(a.started_at),
            finished_at: time(a.finished_at),
            outcome: a.outcome.clone(),
            error: a.error.clone(),
        }
    }
}

impl From<&IncidentRow> for Incident {
    fn from(i: &IncidentRow) -> Incident {
        Incident {
            id: i.id.clone(),
            installation_id: i.installation_id,
            repository: Repository { id: i.repository_id, full_name: i.repository.clone() },
            kind: match i.kind.as_str() {
                "security" => IncidentKind::Security,
                "alert" => IncidentKind::Alert,
                "review" => IncidentKind::Review,
                _ => IncidentKind::Ci,
            },
            title: i.title.clone(),
            branch: i.branch.clone(),
            on_default_branch: i.on_default != 0,
            state: if i.state == "closed" { IncidentState::Closed } else { IncidentState::Open },
            opened_at: time(i.opened_at),
            first_failure_at: time(i.first_failure_at),
            failures: i.failures,
            due_at: time(i.deadline),
            escalated_at: i.escalated_at.map(time),
            recovered_at: i.recovered_at.map(time),
            time_to_recovery_ms: i.ttr_ms,
            flaky: i.flaky != 0,
            mentions: mentions(&i.mentions),
            details: serde_json::from_str(&i.details).unwrap_or(Value::Null),
            updated_at: time(i.updated_at),
        }
    }
}

/// The incident's `mentions` column: a JSON array, or (older rows) logins separated by commas
/// or spaces.
fn mentions(text: &str) -> Vec<String> {
    if let Ok(list) = serde_json::from_str::<Vec<String>>(text) {
        return list;
    }
    text.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

// ----- GET /api/reports/{owner}/{repo} ---------------------------------------------------------
// The schema of the report's JSON (`domain::report::json` writes it; docs/figures.md explains each
// key). Rates are fractions 0–1, durations seconds; a figure without data is null.

/// A set of durations, in seconds.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportDurations {
    pub count: i64,
    pub mean_seconds: Option<f64>,
    pub median_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
}

/// The deployments of one environment that finished in the window.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportEnvironment {
    pub count: i64,
    pub succeeded: i64,
    pub success_rate: Option<f64>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportCi {
    /// Successful last attempts over completed runs on incident branches.
    pub green_rate: Option<f64>,
    /// Flaky re-runs per `workflow / job`.
    pub flaky: std::collections::BTreeMap<String, i64>,
}

/// Incidents of one kind (`ci`, `alert`, `security`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportIncidents {
    /// Opened in the window.
    pub count: i64,
    /// Still open at its end.
    pub open: i64,
    /// Recovered in the window.
    pub recovered: i64,
    pub mean_time_to_recovery_seconds: Option<f64>,
    pub p95_time_to_recovery_seconds: Option<f64>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportRequests {
    pub open: i64,
    pub stale: i64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportSecurity {
    /// Critical security incidents open at the window's end.
    pub open_critical: i64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportDora {
    /// Successful production deployments per day.
    pub deployment_frequency: f64,
    /// The median lead time for changes.
    pub lead_time_seconds: Option<f64>,
    pub lead_time: ReportDurations,
    pub change_failure_rate: Option<f64>,
    /// The median time to restore per incident kind (`ci`, `alert`).
    pub time_to_restore_seconds: std::collections::BTreeMap<String, Option<f64>>,
}

/// The figures of a window (the report's own, and `previous`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportFigures {
    pub deployments: std::collections::BTreeMap<String, ReportEnvironment>,
    /// Every environment together.
    pub deployment_success_rate: Option<f64>,
    pub time_to_deploy: ReportDurations,
    pub ci: ReportCi,
    pub incidents: std::collections::BTreeMap<String, ReportIncidents>,
    pub requests: ReportRequests,
    pub security: ReportSecurity,
    /// The share of the window without a firing `slo: availability` alert.
    pub uptime: Option<f64>,
    pub dora: ReportDora,
    /// The uses of break-glass in the window, oldest first (SPEC.md §3.7).
    pub breakglass: Vec<ReportBreakGlass>,
}

/// One use of break-glass, and where its post-incident review stands.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportBreakGlass {
    /// The review issue's title (names the request, service and environment).
    pub title: String,
    /// Who broke the glass.
    pub by: Option<String>,
    #[schema(format = DateTime)]
    pub at: String,
    /// The review issue was closed by the window's end.
    pub reviewed: bool,
    /// The review is still open past its due time at the window's end.
    pub overdue: bool,
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportComparison {
    AtLeast,
    AtMost,
}

/// One figure against the policy's target (percent, minutes or a count, as the target).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportTarget {
    pub value: Option<f64>,
    pub target: f64,
    pub comparison: ReportComparison,
    /// Null without data.
    pub met: Option<bool>,
    pub previous: Option<f64>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportOverdueIncident {
    pub title: String,
    #[schema(format = DateTime)]
    pub opened_at: String,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportAttention {
    /// Issue numbers of open requests not updated for 7 days.
    pub stale_requests: Vec<i64>,
    pub overdue_incidents: Vec<ReportOverdueIncident>,
}

/// One window of the charts.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportWeek {
    pub week: String,
    pub deployments: i64,
    pub ci_green_rate: Option<f64>,
}

/// The weekly report of a repository (docs/figures.md).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Report {
    pub repository: String,
    /// `2026-W49`; null for a `since` window.
    pub week: Option<String>,
    #[schema(format = DateTime)]
    pub from: String,
    #[schema(format = DateTime)]
    pub to: String,
    pub timezone: String,
    /// The window's figures, at the top level.
    #[serde(flatten)]
    pub figures: ReportFigures,
    /// Keyed `uptime`, `deployment_success`, `ci_green`, `mean_time_to_deploy`,
    /// `mean_time_to_recovery`, `open_critical_security`.
    pub targets: std::collections::BTreeMap<String, ReportTarget>,
    pub attention: ReportAttention,
    /// The window before.
    pub previous: ReportFigures,
    /// The last 8 windows, oldest first.
    pub history: Vec<ReportWeek>,
}
