//! Every message the App writes, in one place, snapshot-tested: the request's sticky comment,
//! the deploy gate check run, and the replies to commands.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::gate::{Evaluation, GateState, RoleStatus};
use super::request::{ChangeRequest, Problem};
use super::state::DeployState;

/// The request's sticky comment marker.
pub const REQUEST_MARKER: &str = "request";

/// The checklist items that are a person's to tick (the App ticks the others). A box a person
/// ticks in the sticky comment stays ticked when the App edits it.
pub const PERSON_ITEMS: &[&str] = &[
    "Release notes prepared",
    "Monitoring dashboards checked",
    "Monitor application logs and metrics",
    "Smoke tests passing",
    "No errors in monitoring",
    "Document any issues",
    "Verify all services healthy (Prometheus)",
    "Check key metrics (response time, error rate)",
    // A person's, unless the App really sent the request's `deployed` notification (then it is
    // ticked by the App, naming where it went).
    "Notify team",
    "Plan post-mortem if any issues",
];

/// The person's items ticked in a version of the sticky comment.
pub fn ticked_items(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.trim_start().strip_prefix("- [x] ").or_else(|| l.trim_start().strip_prefix("- [X] ")))
        .map(str::trim)
        .filter(|item| PERSON_ITEMS.contains(item))
        .map(str::to_string)
        .collect()
}

/// Whether a comment body is the App's sticky request comment (by its hidden marker).
pub fn is_request_comment(body: &str) -> bool {
    body.contains(&format!("<!-- shipgate:{REQUEST_MARKER} -->"))
}
pub const CHECK_NAME_PREFIX: &str = "shipgate / deploy gate";

pub fn check_name(environment: &str) -> String {
    format!("{CHECK_NAME_PREFIX} ({environment})")
}

fn icon(s: GateState) -> &'static str {
    match s {
        GateState::Pass => "✅",
        GateState::Pending => "⏳",
        GateState::Fail => "⛔",
    }
}

/// What the sticky comment shows besides the evaluation.
pub struct RequestView<'a> {
    pub request: &'a ChangeRequest,
    pub environment: Option<&'a str>,
    pub eval: &'a Evaluation,
    /// (login, why) of approvals that no longer count.
    pub stale: &'a [(String, String)],
    pub config_errors: &'a [String],
    /// What is missing or invalid in the request.
    pub problems: &'a [Problem],
    /// Checklist facts the App can verify.
    pub review_approved: bool,
    /// The person's items someone ticked in the comment.
    pub ticked: &'a [String],
    pub staging_ok: bool,
    /// The request's current deployment, if any.
    pub deploy: Option<&'a DeployView>,
    /// When the request was made (durations without an in_progress status start here).
    pub created_at: i64,
    /// What else people should know (a login that now belongs to another account, a PR with
    /// more files than GitHub lists).
    pub notes: &'a [String],
    /// The channels the request's `deployed` notification really reached.
    pub notified: &'a [String],
}

/// A request's deployment, for the sticky comment and the summaries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeployView {
    pub state: DeployState,
    pub sha: String,
    pub environment: String,
    pub deployment_id: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// A deployment made by `/rollback`.
    pub rollback: bool,
    /// When the request's gate opened (the start of the time to deploy).
    pub gate_opened_at: Option<i64>,
    /// The log of the run that deployed.
    pub log_url: Option<String>,
}

impl DeployView {
    pub fn started(&self) -> bool {
        self.started_at.is_some() || self.state == DeployState::InProgress || self.state.is_final()
    }
    pub fn succeeded(&self) -> bool {
        self.state == DeployState::Success
    }
    pub fn failed(&self) -> bool {
        self.state.failed()
    }
    /// The time to deploy (the seed's MTTD): from the gate opening to the success.
    pub fn time_to_deploy_ms(&self) -> Option<i64> {
        Some(self.finished_at? - self.gate_opened_at?).filter(|d| *d >= 0)
    }

    /// The deployment's own duration: from its start (or creation) to its end.
    pub fn duration_ms(&self, created_at: i64) -> Option<i64> {
        Some(self.finished_at? - self.started_at.unwrap_or(created_at)).filter(|d| *d >= 0)
    }
}

/// `4m 12s`, `1h 3m`, `12s`.
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// The first seven characters of a hex SHA; anything else whole (never cut inside a character).
pub fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// The line under the verdict while a deployment exists.
pub fn deploy_line(d: &DeployView, created_at: i64) -> String {
    let what = if d.rollback { "ROLLBACK" } else { "DEPLOY" };
    let sha = short(&d.sha);
    match d.state {
        DeployState::Success => {
            let took = d.duration_ms(created_at).map(|ms| format!(" in {}", duration(ms))).unwrap_or_default();
            if d.rollback {
                format!("↩️ **ROLLED BACK** {} to `{sha}`{took}", d.environment)
            } else {
                let after = d.time_to_deploy_ms().map(|ms| format!(", {} after the gate opened", duration(ms)));
                format!("✅ **DEPLOYED** `{sha}` to {}{took}{}", d.environment, after.unwrap_or_default())
            }
        }
        DeployState::Failure | DeployState::Error => format!(
            "❌ **{what} FAILED** (`{sha}` to {}, {}): see the rollback plan below; an approver may `/rollback`",
            d.environment,
            d.state.as_str()
        ),
        DeployState::Requested => {
            format!("📦 **{what} REQUESTED**: `{sha}` to {}, waiting for the pipeline", d.environment)
        }
        _ => format!("🚀 **DEPLOYING** `{sha}` to {} ({})", d.environment, d.state.as_str().replace('_', " ")),
    }
}

/// The comment that answers a run waiting on the protection rule, when it is approved.
pub fn rule_approved(issue: i64, environment: &str, sha: &str, approvers: &[String]) -> String {
    let by = if approvers.is_empty() {
        "no approval required".to_string()
    } else {
        approvers.iter().map(|a| format!("@{a}")).collect::<Vec<_>>().join(", ")
    };
    format!("Approved by shipgate: deployment request #{issue} covers {} to {environment} ({by}).", short(sha))
}

pub fn rule_rejected(issue: i64, by: &str, reason: &str) -> String {
    format!("Rejected by shipgate: deployment request #{issue} was denied by @{by}: {reason}")
}

pub fn rule_waiting(issue: i64, missing: &[String]) -> String {
    // "Not approved" only when approvals are what it waits for (tests or a red branch may hold an
    // approved request).
    let what = if missing.iter().any(|m| m.starts_with("Approvals")) {
        "is not approved yet"
    } else {
        "is approved, but its gate is still closed"
    };
    let mut s = format!("shipgate: deployment request #{issue} {what}. Waiting for:");
    for m in missing {
        let _ = write!(s, "\n- {m}");
    }
    s
}

pub fn rule_uncovered(environment: &str, sha: &str) -> String {
    format!(
        "shipgate: no open deployment request covers {} to {environment}. Open a DEPLOYMENT_REQUEST issue \
         linking the pull request (or naming the commit); this run is approved once its gate opens.",
        short(sha)
    )
}

/// Posted when a deployment fails: the rollback plan from the request, and `/rollback`.
pub fn deploy_failed(d: &DeployView, plan: Option<&str>, last_good: Option<&str>) -> String {
    let mut s = format!(
        "## ❌ Deployment failed\n\n`{}` to {} ended in **{}**.\n",
        short(&d.sha),
        d.environment,
        d.state.as_str()
    );
    if let Some(url) = d.log_url.as_deref().filter(|u| u.starts_with("https://")) {
        let _ = writeln!(s, "\n[The failing run's log]({url})");
    }
    let _ = writeln!(s, "\n### Rollback plan (from the request)\n");
    let _ = writeln!(s, "{}", plan.unwrap_or("*The request has no rollback plan.*").trim());
    let _ = match last_good {
        Some(sha) => writeln!(
            s,
            "\nAn approver can comment `/rollback` to deploy `{}`, the last commit that deployed successfully to {}.",
            short(sha),
            d.environment
        ),
        None => writeln!(
            s,
            "\nAn approver can comment `/rollback` to deploy the last commit that deployed successfully to {}.",
            d.environment
        ),
    };
    s
}

/// Stands in a comment for the audit log's anchor: the relay writes the anchor there when it
/// sends the comment (store::anchor), from the log as it stands then.
pub const AUDIT_ANCHOR: &str = "<!-- shipgate:audit-anchor -->";

/// What every anchor line carries (signed or not, or withheld): a comment holding one is never
/// edited once posted.
pub const ANCHOR_TAG: &str = "Audit log anchor";

/// The summary posted when a request is done: who approved what and when, and how long it took.
pub fn closing_summary(
    issue: i64,
    d: &DeployView,
    approvals: &[(String, String, i64)],
    created_at: i64,
    deploy_created: i64,
    approved_at: Option<i64>,
) -> String {
    let mut s = format!("## ✅ Deployment request #{issue} is done\n\n");
    let _ = writeln!(s, "`{}` deployed to {}.\n", short(&d.sha), d.environment);
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| Requested | {} |", timestamp(created_at));
    if !approvals.is_empty() {
        let list: Vec<String> =
            approvals.iter().map(|(who, roles, at)| format!("@{who} ({roles}) at {}", timestamp(*at))).collect();
        let _ = writeln!(s, "| Approved by | {} |", list.join("; "));
    }
    if let Some(at) = approved_at {
        let _ = writeln!(s, "| Gate opened | {} |", timestamp(at));
    }
    if let Some(at) = d.started_at {
        let _ = writeln!(s, "| Deployment started | {} |", timestamp(at));
    }
    if let Some(at) = d.finished_at {
        let _ = writeln!(s, "| Deployment finished | {} |", timestamp(at));
    }
    if let Some(ms) = d.finished_at.zip(approved_at).map(|(f, a)| f - a).filter(|ms| *ms >= 0) {
        let _ = writeln!(s, "| Time to deploy (gate opened → success) | {} |", duration(ms));
    }
    if let Some(ms) = d.duration_ms(deploy_created) {
        let _ = writeln!(s, "| The deployment itself (start → success) | {} |", duration(ms));
    }
    if let Some(ms) = d.finished_at.map(|f| f - created_at) {
        let _ = writeln!(s, "| From request to production | {} |", duration(ms));
    }
    let _ = writeln!(s, "\n{AUDIT_ANCHOR}");
    s
}

/// A Unix-ms time as `2026-11-29 11:31 UTC`.
pub fn timestamp(ms: i64) -> String {
    super::ci::format_time(ms)
}

/// The gate's verdict as the comment, the check run and the details page say it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Open,
    Closed,
    #[default]
    Waiting,
}

impl Verdict {
    pub fn of(eval: &Evaluation) -> Verdict {
        if eval.open {
            Verdict::Open
        } else if eval.gates.iter().any(|g| g.state == GateState::Fail) {
            Verdict::Closed
        } else {
            Verdict::Waiting
        }
    }
}

/// One gate as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownGate {
    pub name: String,
    pub state: GateState,
    pub detail: String,
}

/// The result tree the sticky comment and the check runs were written from, kept with the request
/// (in its `facts`) so that its details page shows the same thing without a second evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Shown {
    pub service: Option<String>,
    pub environment: Option<String>,
    pub verdict: Verdict,
    pub gates: Vec<ShownGate>,
    pub roles: Vec<RoleStatus>,
    /// (login, why) of approvals that no longer count.
    pub stale: Vec<(String, String)>,
    /// (field, what is wrong) in the request.
    pub problems: Vec<(String, String)>,
    pub config_errors: Vec<String>,
    pub notes: Vec<String>,
    /// The request as read: (field, value), `None` for a missing one.
    pub fields: Vec<(String, Option<String>)>,
    /// The check run's conclusion and title.
    pub check: (String, String),
    /// The pull requests' heads the check runs went to.
    pub heads: Vec<String>,
}

impl Shown {
    pub fn of(v: &RequestView<'_>, heads: &[String]) -> Shown {
        let (conclusion, title, _) = check_run(v.eval, 0);
        Shown {
            service: v.request.service.clone(),
            environment: v.environment.map(str::to_string).or(v.request.environment.clone()),
            verdict: Verdict::of(v.eval),
            gates: v
                .eval
                .gates
                .iter()
                .map(|g| ShownGate { name: g.name.to_string(), state: g.state, detail: g.detail.clone() })
                .collect(),
            roles: v.eval.roles.clone(),
            stale: v.stale.to_vec(),
            problems: v.problems.iter().map(|p| (p.field.to_string(), p.message.clone())).collect(),
            config_errors: v.config_errors.to_vec(),
            notes: v.notes.to_vec(),
            fields: request_fields(v).into_iter().map(|(k, val)| (k.to_string(), val)).collect(),
            check: (conclusion, title),
            heads: heads.to_vec(),
        }
    }
}

/// The request as read, field by field, for the comment's table and the details page: the
/// required fields whether given or not, then the optional ones the request gives.
pub fn request_fields(v: &RequestView<'_>) -> Vec<(&'static str, Option<String>)> {
    let r = v.request;
    let prs: Vec<String> = r
        .pull_requests
        .iter()
        .map(|p| match p {
            super::request::PrRef::Number(n) => format!("#{n}"),
            super::request::PrRef::Url { owner, repo, number } => format!("{owner}/{repo}#{number}"),
        })
        .collect();
    let mut rows: Vec<(&'static str, Option<String>)> = vec![
        ("Service", r.service.clone()),
        ("Environment", v.environment.map(str::to_string).or(r.environment.clone())),
        ("Reason", r.reason.clone()),
        ("Pull requests", (!prs.is_empty()).then(|| prs.join(", ")).or(r.commit.clone())),
        ("Downtime", r.downtime.clone()),
        ("Rollback time", r.rollback_time.clone()),
        ("Rollback plan", r.rollback_plan.clone()),
    ];
    // Shown whole, when the request gives them: what approvers approve.
    for (k, val) in [
        ("Data migration", &r.data_migration),
        ("Deployment steps", &r.deployment_steps),
        ("Verification", &r.verification),
    ] {
        if let Some(val) = val.as_ref().filter(|v| !v.trim().is_empty()) {
            rows.push((k, Some(val.clone())));
        }
    }
    rows
}

pub fn request_comment(v: &RequestView<'_>) -> String {
    let mut s = String::new();
    let service = v.request.service.as_deref().unwrap_or("(service?)");
    let env = v.environment.or(v.request.environment.as_deref()).unwrap_or("(environment?)");
    let _ = writeln!(s, "## 🚦 Deployment request: {service} → {env}\n");
    let verdict = match Verdict::of(v.eval) {
        Verdict::Open if v.eval.breakglass.is_some() => {
            "🚨 **The gate is open by break-glass** for one deployment: the gates marked ✗ below are overridden, \
             and a post-incident review follows."
        }
        Verdict::Open => "✅ **The gate is open**: every condition is met.",
        Verdict::Closed => "⛔ **The gate is closed.**",
        Verdict::Waiting => "⏳ **Waiting** for what is listed below.",
    };
    let _ = writeln!(s, "{verdict}\n");
    // The relay writes a fresh signed link to the details page here (or drops the line).
    let _ = writeln!(s, "{}\n", super::links::DETAILS_LINE);
    if let Some(d) = v.deploy {
        let _ = writeln!(s, "{}\n", deploy_line(d, v.created_at));
    }
    let _ = writeln!(s, "| Gate | | Details |\n|---|---|---|");
    for g in &v.eval.gates {
        let _ = writeln!(s, "| {} | {} | {} |", g.name, icon(g.state), escape(&g.detail));
    }
    if !v.eval.roles.is_empty() {
        let _ = writeln!(s, "\n### Approvals\n\n| Role | | Who may approve |\n|---|---|---|");
        for r in &v.eval.roles {
            let status = match &r.approved_by {
                Some(by) => format!("✅ @{by}"),
                None => "⏳ needed".to_string(),
            };
            let why = r.because.as_ref().map(|b| format!(" (changes under {b})")).unwrap_or_default();
            let _ = writeln!(s, "| {}{} | {} | {} |", r.role, escape(&why), status, r.who);
        }
    }
    if !v.stale.is_empty() {
        let _ = writeln!(s, "\n**Approvals that no longer count:**");
        for (login, why) in v.stale {
            let _ = writeln!(s, "- @{login}: {why}; approve again with `/approve`");
        }
    }
    if !v.notes.is_empty() {
        let _ = writeln!(s, "\n**Notes:**");
        for note in v.notes {
            let _ = writeln!(s, "- {note}");
        }
    }
    if !v.problems.is_empty() {
        let _ = writeln!(s, "\n### What the request is missing\n");
        for p in v.problems {
            let _ = writeln!(s, "- **{}**: {}", p.field, p.message);
        }
        let _ = writeln!(s, "\nEdit the issue to fix it; the gate is checked again on every edit.");
    }
    if !v.config_errors.is_empty() {
        let _ = writeln!(s, "\n### `.github/shipgate.yml` is invalid\n");
        for e in v.config_errors {
            let _ = writeln!(s, "- {e}");
        }
        let _ = writeln!(s, "\nThe gate stays closed until the file on the default branch is fixed.");
    }
    let _ = writeln!(s, "\n### Request\n\n| Field | Value |\n|---|---|");
    let r = v.request;
    for (k, val) in request_fields(v) {
        let _ = writeln!(s, "| {k} | {} |", val.map(|x| cell(&x)).unwrap_or_else(|| "— *missing*".into()));
    }
    let tests_green = v.eval.gates.iter().any(|g| g.name == "Tests" && g.state == GateState::Pass);
    let tick = |b: bool| if b { "x" } else { " " };
    let _ = writeln!(s, "\n### Checklist\n\n*Items marked (shipgate) are ticked by the App; the rest are yours.*\n");
    let _ = writeln!(s, "**Pre-deployment**");
    let _ = writeln!(s, "- [{}] All tests passing (lint, unit, integration, E2E) (shipgate)", tick(tests_green));
    let _ = writeln!(s, "- [{}] Code review approved (shipgate)", tick(v.review_approved));
    let mine = |item: &str| tick(v.ticked.iter().any(|t| t == item));
    let _ = writeln!(s, "- [{}] Release notes prepared", mine("Release notes prepared"));
    let _ = writeln!(s, "- [{}] Rollback plan documented (shipgate)", tick(r.rollback_plan.is_some()));
    let _ = writeln!(s, "- [{}] Staging deployment successful (shipgate)", tick(v.staging_ok));
    let _ = writeln!(s, "- [{}] Monitoring dashboards checked", mine("Monitoring dashboards checked"));
    let started = v.deploy.is_some_and(DeployView::started);
    let ended = v.deploy.is_some_and(DeployView::succeeded);
    let _ = writeln!(s, "\n**Deployment**");
    for (item, done) in [
        ("Create deployment ticket (record start time) (shipgate)", started),
        ("Start deployment (rolling, zero-downtime if possible) (shipgate)", started),
        ("Monitor application logs and metrics", false),
        ("Smoke tests passing", false),
        ("No errors in monitoring", false),
        ("Document any issues", false),
    ] {
        let done = if PERSON_ITEMS.contains(&item) { mine(item) } else { tick(done) };
        let _ = writeln!(s, "- [{done}] {item}");
    }
    let _ = writeln!(s, "\n**Post-deployment**");
    for (item, done) in [
        ("Verify all services healthy (Prometheus)", false),
        ("Check key metrics (response time, error rate)", false),
        ("Notify team", false),
        ("Close deployment ticket (record end time) (shipgate)", ended),
        ("Plan post-mortem if any issues", false),
    ] {
        if item == "Notify team" && !v.notified.is_empty() {
            let _ = writeln!(s, "- [x] Notify team (shipgate: sent to {})", v.notified.join(", "));
            continue;
        }
        let done = if PERSON_ITEMS.contains(&item) { mine(item) } else { tick(done) };
        let _ = writeln!(s, "- [{done}] {item}");
    }
    let _ = write!(
        s,
        "\n<sub>Commands, on a line of their own in a new comment (an edited comment carries none): `/approve`, `/approve cancel`, `/deny REASON`, `/undeny`, `/hold`, `/unhold`, `/deploy`, `/rollback`, `/recheck`; on a pull request that several requests link, name one: `/approve #N`. This comment is kept up to date by shipgate.</sub>"
    );
    s
}

/// The check run's title and summary.
pub fn check_run(eval: &Evaluation, issue: i64) -> (String, String, String) {
    if let Some(by) = eval.breakglass.as_deref().filter(|_| eval.open) {
        let mut summary = format!("Deployment request #{issue}: break-glass {by}, for one deployment. It overrides:\n");
        for m in eval.overridden() {
            let _ = writeln!(summary, "- {m}");
        }
        ("success".into(), "The deploy gate is open by break-glass".into(), summary)
    } else if eval.open {
        ("success".into(), "The deploy gate is open".into(), format!("Deployment request #{issue}: every gate passes."))
    } else {
        let mut summary = format!("Deployment request #{issue} is waiting for:\n");
        for m in eval.missing() {
            let _ = writeln!(summary, "- {m}");
        }
        ("action_required".into(), "The deploy gate is closed".into(), summary)
    }
}

/// A short reply to a refused command (the caller adds the @mention).
pub fn refusal(command: &str, why: &str, instead: &str) -> String {
    format!("`{command}` was not accepted: {why}. {instead}")
}

/// The reply to a refused command (`/approve`, …): why, and what to do instead.
pub fn refusal_text(command: &str, r: &super::flow::Refusal) -> String {
    use super::flow::Refusal as R;
    let (why, instead) = match r {
        R::NamesAnother { named, this } => {
            (format!("it names #{named}, and this is #{this}"), "Write it on that request.".to_string())
        }
        R::Closed => ("the request is closed".into(), "Reopen it first.".into()),
        R::NotARequest => ("the issue is no longer a deployment request".into(), "Label it again first.".into()),
        R::NoEnvironment => (
            "the request names no environment that `.github/shipgate.yml` defines".into(),
            "Fix the request's Environment first.".into(),
        ),
        R::WrongEnvironment { asked, environment } => {
            (format!("this request deploys to {environment}, not {asked}"), format!("Use `/approve {environment}`."))
        }
        R::NoRole { environment, roles } => (
            format!("you hold none of the roles {environment} needs ({})", roles.join(", ")),
            "Ask someone who holds one of them.".into(),
        ),
        R::SelfApproval => {
            ("you cannot approve your own request or pull request".into(), "Ask another role holder.".into())
        }
        R::Pusher { pr } => (format!("you pushed a commit to #{pr}"), "Ask another role holder.".into()),
        R::NothingToCancel => ("you have not approved this request".into(), "Nothing to cancel.".into()),
        R::DenyNeedsRole => (
            "only a holder of one of the environment's roles may deny".into(),
            "Use `/hold` to stop it instead.".into(),
        ),
        R::AlreadyDenied { by } => {
            (format!("the request is already denied by @{by}"), "It stays denied until lifted.".into())
        }
        R::NotDenied => ("the request is not denied".into(), "Nothing to lift.".into()),
        R::NotDenier { by } => {
            (format!("only @{by} (who denied it) or a repository admin may lift the denial"), "Ask them.".into())
        }
        R::NeedsWrite => (
            "it needs write access to the repository (and the App could not confirm yours)".into(),
            "Ask a maintainer.".into(),
        ),
        R::AlreadyOnHold { by } => {
            (format!("the request is already on hold by @{by}"), "It stays on hold until lifted.".into())
        }
        R::NotOnHold => ("the request is not on hold".into(), "Nothing to lift.".into()),
        R::NotHolder { by, environment } => (
            format!(
                "only @{by} (who placed the hold), a holder of a role {environment} needs, or a repository admin may \
                 lift it"
            ),
            "Ask them.".into(),
        ),
        R::NotAnApprover { roles } => {
            let who = if roles.is_empty() {
                "write access".to_string()
            } else {
                format!("one of the roles {}", roles.join(", "))
            };
            let act = if command == "/rollback" { "roll back" } else { "deploy" };
            (format!("only an approver may {act} ({who})"), "Ask someone who may.".into())
        }
        R::DeployUnderWay => {
            ("a deployment of this request is already under way".into(), "Wait for it to finish.".into())
        }
        R::NotDeployedByTheApp { environment, mode } => (
            format!("{environment} deploys with `deploy: {mode}`, not through the App"),
            "Deploy with your pipeline once the gate is open.".into(),
        ),
        R::DeployClosed => ("the request is closed or no longer labelled".into(), "Reopen it to deploy.".into()),
        R::GateClosed { missing } => {
            (format!("the gate is closed ({})", missing.join("; ")), "Wait until it opens.".into())
        }
        R::AlreadyDeployed => ("this request is deployed already".into(), "Open a new request to deploy again.".into()),
        R::NoCommit => (
            "the request names no pull request and no full commit SHA".into(),
            "Link the pull request to deploy.".into(),
        ),
        R::SeveralPullRequests => (
            "the request links several pull requests, so there is no single commit to deploy".into(),
            "Deploy them with your pipeline, or split the request.".into(),
        ),
        R::NoRollbackMode { environment } => {
            (format!("{environment} has `deploy: none`"), "Roll back with your pipeline.".into())
        }
        R::NothingDeployed => ("nothing of this request has been deployed".into(), "Nothing to roll back.".into()),
        R::NoEarlierCommit { environment } => (
            format!("no earlier commit that this App deployed or approved succeeded in {environment}"),
            "Roll back by hand.".into(),
        ),
        R::NoBreakGlassRole => (
            "`.github/shipgate.yml` defines no `break_glass` role".into(),
            "Define one (`roles: break_glass: { teams: [org/sre] }`) to allow emergency deployments.".into(),
        ),
        R::NotBreakGlassHolder => (
            "you do not hold the `break_glass` role".into(),
            "Ask someone on call who holds it, or get the approvals the gate lists.".into(),
        ),
        R::BreakGlassDenied { by } => (
            format!("the request is denied by @{by}, and break-glass never overrides a `/deny`"),
            format!("Ask @{by} (or an admin) to `/undeny` it first."),
        ),
        R::BreakGlassPolicyInvalid => (
            "`.github/shipgate.yml` is invalid, and break-glass never overrides a broken policy".into(),
            "Fix the file on the default branch first.".into(),
        ),
        R::BreakGlassNeedless => {
            ("the gate is open already".into(), "Deploy as usual: no break-glass is needed.".into())
        }
        R::BreakGlassActive { by, until } => {
            (format!("@{by} broke the glass already, and it is unspent until {until}"), "Deploy with it.".into())
        }
        R::BreakGlassTooLate { written } => (
            format!("it was written at {written}, and a break-glass lasts 2 hours from when it is written"),
            "Write a new `/breakglass` if it is still needed.".into(),
        ),
        R::BreakGlassNothingCovered => (
            "the request covers no commit yet".into(),
            "Link the pull request (or name the full commit SHA) to deploy first.".into(),
        ),
    };
    refusal(command, &why, &instead)
}

/// The reply to a comment edited to carry a command.
pub fn edited_command() -> String {
    "an edited comment carries no command: nothing was applied. Write a new comment to give it.".to_string()
}

/// The reply to a command on a pull request that several open requests link, without naming one
/// of them (or naming requests that do not link it).
pub fn which_request(linking: &[i64], strangers: &std::collections::BTreeSet<i64>) -> String {
    let list: Vec<String> = linking.iter().map(|n| format!("#{n}")).collect();
    let example = linking.first().map(|n| format!("`/approve #{n}`")).unwrap_or_default();
    let mut text = String::new();
    if !strangers.is_empty() {
        let names: Vec<String> = strangers.iter().map(|n| format!("#{n}")).collect();
        text.push_str(&format!("{} does not link this pull request. ", names.join(", ")));
    }
    if linking.len() > 1 {
        text.push_str(&format!(
            "several open deployment requests link this pull request ({}): say which, e.g. {example}. \
             The commands that name none were not applied.",
            list.join(", ")
        ));
    } else {
        text.push_str("Those commands were not applied.");
    }
    text
}

/// A deployment of a commit the request covers that is not the request's own, seen while the
/// request's gate was closed: made by someone else, or by the App for another request (`owner`).
pub fn ungated_deployment(
    id: i64,
    sha: &str,
    environment: &str,
    state: &str,
    origin: &str,
    owner: Option<i64>,
) -> String {
    let short: String = sha.chars().take(7).collect();
    let who = match (origin, owner) {
        ("app", Some(n)) => format!("this App for request #{n}"),
        ("approved", Some(n)) => format!("a workflow run this App approved for request #{n}"),
        ("actions", _) => "a GitHub Actions workflow".to_string(),
        _ => "someone by hand".to_string(),
    };
    format!(
        "⚠️ **Deployment outside this request's gate**: deployment {id} of `{short}` to {environment} ({state}) was \
         made by {who} while this request's gate was closed. It is not this request's deployment and is not counted \
         as its success; it is recorded in the audit log."
    )
}

pub fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A table cell that keeps every line of a multi-line field.
fn cell(s: &str) -> String {
    s.trim().replace('|', "\\|").lines().map(str::trim_end).collect::<Vec<_>>().join("<br>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_and_reply() {
        use crate::domain::flow::Refusal as R;
        let all = [
            ("/approve", R::NamesAnother { named: 6, this: 5 }),
            ("/approve", R::Closed),
            ("/hold", R::NotARequest),
            ("/approve", R::NoEnvironment),
            ("/approve", R::WrongEnvironment { asked: "staging".into(), environment: "production".into() }),
            ("/approve", R::NoRole { environment: "production".into(), roles: vec!["pm".into(), "qa".into()] }),
            ("/approve", R::SelfApproval),
            ("/approve", R::Pusher { pr: 12 }),
            ("/approve cancel", R::NothingToCancel),
            ("/deny", R::DenyNeedsRole),
            ("/deny", R::AlreadyDenied { by: "alice".into() }),
            ("/undeny", R::NotDenied),
            ("/undeny", R::NotDenier { by: "alice".into() }),
            ("/hold", R::NeedsWrite),
            ("/hold", R::AlreadyOnHold { by: "eve".into() }),
            ("/unhold", R::NotOnHold),
            ("/unhold", R::NotHolder { by: "eve".into(), environment: "production".into() }),
            ("/deploy", R::NotAnApprover { roles: vec!["pm".into()] }),
            ("/rollback", R::NotAnApprover { roles: vec![] }),
            ("/deploy", R::DeployUnderWay),
            ("/deploy", R::NotDeployedByTheApp { environment: "production".into(), mode: "protection_rule".into() }),
            ("/deploy", R::DeployClosed),
            (
                "/deploy",
                R::GateClosed {
                    missing: vec!["Approvals: waiting for pm".into(), "Tests: `build` failure on #12".into()],
                },
            ),
            ("/deploy", R::AlreadyDeployed),
            ("/deploy", R::NoCommit),
            ("/deploy", R::SeveralPullRequests),
            ("/rollback", R::NoRollbackMode { environment: "production".into() }),
            ("/rollback", R::NothingDeployed),
            ("/rollback", R::NoEarlierCommit { environment: "production".into() }),
            ("/breakglass", R::NoBreakGlassRole),
            ("/breakglass", R::NotBreakGlassHolder),
            ("/breakglass", R::BreakGlassDenied { by: "alice".into() }),
            ("/breakglass", R::BreakGlassPolicyInvalid),
            ("/breakglass", R::BreakGlassNeedless),
            ("/breakglass", R::BreakGlassActive { by: "sre".into(), until: "2026-12-07 04:00 UTC".into() }),
            ("/breakglass", R::BreakGlassNothingCovered),
            ("/breakglass", R::BreakGlassTooLate { written: "2026-12-07 02:00 UTC".into() }),
        ];
        let mut text: Vec<String> = all.iter().map(|(c, r)| refusal_text(c, r)).collect();
        text.push(edited_command());
        text.push(which_request(&[5, 6], &std::collections::BTreeSet::new()));
        text.push(which_request(&[5], &std::collections::BTreeSet::from([7])));
        for (origin, owner) in [("app", Some(46)), ("approved", Some(46)), ("actions", None), ("manual", None)] {
            text.push(ungated_deployment(
                900,
                "cccccccccccccccccccccccccccccccccccccc03",
                "production",
                "success",
                origin,
                owner,
            ));
        }
        insta::assert_snapshot!(text.join("\n\n"));
    }
    use crate::domain::gate::{Gate, RoleStatus};
    use crate::domain::request::{ChangeRequest, PrRef};

    fn request() -> ChangeRequest {
        ChangeRequest {
            service: Some("api".into()),
            environment: Some("production".into()),
            reason: Some("new endpoint".into()),
            downtime: Some("none".into()),
            rollback_time: Some("3 min".into()),
            rollback_minutes: Some(3.0),
            pull_requests: vec![PrRef::Number(12)],
            rollback_plan: Some("revert the PR and redeploy".into()),
            ..ChangeRequest::default()
        }
    }

    fn eval(open: bool) -> Evaluation {
        let gate = |name, state, detail: &str| Gate { name, state, detail: detail.into() };
        let (tests, approvals) = if open {
            (
                gate("Tests", GateState::Pass, "all checks green on #12 (aaaaaaa)"),
                gate("Approvals", GateState::Pass, "pm by @alice, backend-lead by @bob"),
            )
        } else {
            (
                gate("Tests", GateState::Pending, "`build` is in progress on #12"),
                gate("Approvals", GateState::Pending, "waiting for pm"),
            )
        };
        Evaluation {
            gates: vec![
                gate("Config", GateState::Pass, "`.github/shipgate.yml` is valid"),
                gate("Request", GateState::Pass, "complete"),
                tests,
                approvals,
                gate("Hold", GateState::Pass, "no hold, no denial"),
            ],
            roles: vec![
                RoleStatus {
                    role: "pm".into(),
                    approved_by: open.then(|| "alice".into()),
                    who: "@alice, @acme/product".into(),
                    because: None,
                },
                RoleStatus {
                    role: "backend-lead".into(),
                    approved_by: Some("bob".into()),
                    who: "@acme/backend-leads".into(),
                    because: Some("apps/backend/**".into()),
                },
            ],
            open,
            breakglass: None,
        }
    }

    #[test]
    fn waiting_request_comment() {
        let e = eval(false);
        let stale = vec![("carol".to_string(), "given for aaaaaaa, the head is now bbbbbbb".to_string())];
        let v = RequestView {
            ticked: &[],
            request: &request(),
            environment: Some("production"),
            eval: &e,
            stale: &stale,
            notes: &[],
            notified: &[],
            config_errors: &[],
            problems: &[],
            review_approved: false,
            staging_ok: false,
            deploy: None,
            created_at: 0,
        };
        insta::assert_snapshot!(request_comment(&v));
    }

    #[test]
    fn open_request_comment_and_check_run() {
        let e = eval(true);
        let v = RequestView {
            ticked: &[],
            request: &request(),
            environment: Some("production"),
            eval: &e,
            stale: &[],
            notes: &[],
            notified: &[],
            config_errors: &[],
            problems: &[],
            review_approved: true,
            staging_ok: true,
            deploy: None,
            created_at: 0,
        };
        insta::assert_snapshot!(request_comment(&v));
        insta::assert_debug_snapshot!(check_run(&e, 5));
    }

    #[test]
    fn incomplete_request_with_a_broken_config() {
        let mut e = eval(false);
        e.gates[0] = Gate {
            name: "Config",
            state: GateState::Fail,
            detail: "`.github/shipgate.yml` is invalid (1 error; first at line 4, column 7: unknown role `qa`)".into(),
        };
        e.gates[1] = Gate {
            name: "Request",
            state: GateState::Fail,
            detail: "missing or invalid: rollback_plan, pull_requests".into(),
        };
        let problems = vec![
            Problem { field: "rollback_plan", message: "a rollback plan is required".into() },
            Problem { field: "pull_requests", message: "name at least one pull request (#12) or a commit SHA".into() },
        ];
        let errors = vec!["line 4, column 7: unknown role `qa` (defined: pm, backend-lead)".to_string()];
        let req = ChangeRequest { rollback_plan: None, pull_requests: vec![], ..request() };
        let v = RequestView {
            ticked: &[],
            request: &req,
            environment: Some("production"),
            eval: &e,
            stale: &[],
            notes: &[],
            notified: &[],
            config_errors: &errors,
            problems: &problems,
            review_approved: false,
            staging_ok: false,
            deploy: None,
            created_at: 0,
        };
        insta::assert_snapshot!(request_comment(&v));
        insta::assert_debug_snapshot!(check_run(&e, 5));
    }

    #[test]
    fn refusals() {
        insta::assert_snapshot!(refusal(
            "/approve",
            "you cannot approve your own request or pull request",
            "Ask another role holder."
        ));
    }

    #[test]
    fn deployment_messages() {
        let d = DeployView {
            state: DeployState::InProgress,
            sha: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1".into(),
            environment: "production".into(),
            deployment_id: Some(7),
            started_at: Some(1_780_000_000_000),
            finished_at: None,
            rollback: false,
            gate_opened_at: Some(1_779_999_500_000),
            log_url: Some("https://github.com/acme/app/actions/runs/7".into()),
        };
        let created = 1_779_999_000_000;
        insta::assert_snapshot!("deploying", deploy_line(&d, created));
        let done = DeployView { state: DeployState::Success, finished_at: Some(1_780_000_252_000), ..d.clone() };
        assert_eq!(
            deploy_line(&done, created),
            "✅ **DEPLOYED** `aaaaaaa` to production in 4m 12s, 12m 32s after the gate opened"
        );
        let approvals = vec![("alice".to_string(), "pm".to_string(), 1_779_999_500_000)];
        insta::assert_snapshot!(
            "closing_summary",
            closing_summary(9, &done, &approvals, created, created, Some(1_779_999_500_000))
        );
        let failed = DeployView { state: DeployState::Failure, finished_at: Some(1_780_000_100_000), ..d.clone() };
        insta::assert_snapshot!(
            "deploy_failed",
            deploy_failed(
                &failed,
                Some("revert the PR and redeploy"),
                Some("cccccccccccccccccccccccccccccccccccccc03")
            )
        );
        assert_eq!(timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(timestamp(1_780_000_252_000), "2026-05-28 20:30 UTC");
        assert_eq!(duration(3_723_000), "1h 2m");
        assert_eq!(duration(12_000), "12s");
    }
}
