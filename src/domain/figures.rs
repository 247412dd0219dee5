//! The team's figures, defined once (issue 17, SPEC §5; `docs/figures.md` states each definition
//! and compares it with fourkeys' and DevLake's). Pure: the store reads the facts of a repository,
//! this computes the figures of a time window `[from, to)` from them, so every definition is a
//! unit test on a hand-built history.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// A change failure must show within this long after the deployment it is blamed on.
pub const CHANGE_FAILURE_WITHIN_MS: i64 = 24 * 3_600_000;

/// An open request not touched for this long is stale.
pub const STALE_AFTER_MS: i64 = 7 * 24 * 3_600_000;

/// The environment DORA's figures are about.
pub const PRODUCTION: &str = "production";

/// A deployment the App saw (`deployments`) with what the figures need of its request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeploymentFact {
    pub environment: String,
    /// When it reached a final state (success, failure or error); None while under way.
    pub finished_at: Option<i64>,
    pub succeeded: bool,
    /// When its request's gate opened (time to deploy starts there), if it has a request.
    pub approved_at: Option<i64>,
    /// The first commit of its request's linked PRs (lead time for changes starts there).
    pub first_commit_at: Option<i64>,
    /// A rollback (`/rollback`): a deployment of its own that makes the one it replaces a change
    /// failure.
    pub rollback: bool,
}

/// A completed workflow run attempt (`ci_runs`).
#[derive(Clone, Debug, PartialEq)]
pub struct RunFact {
    pub run_id: i64,
    pub attempt: i64,
    /// Whether it ran on an incident branch (only those count for the green rate).
    pub incident_branch: bool,
    /// success | failure | ignored
    pub kind: String,
    pub completed_at: i64,
}

/// An incident (`incidents`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncidentFact {
    /// Its title (as the issue shows it; attacker-influenced: escape it in texts).
    pub title: String,
    /// When it escalates (or escalated) if still open.
    pub deadline: i64,
    /// ci | alert | security
    pub kind: String,
    /// For alerts: app | infra | performance | cost | security.
    pub category: Option<String>,
    /// For alerts: labelled `slo: availability` (its firing time is downtime).
    pub availability: bool,
    /// For security incidents: critical.
    pub critical: bool,
    /// When the failure began (the first failure, the alert's start).
    pub started_at: i64,
    pub opened_at: i64,
    /// When it recovered (resolved, fixed), if it has.
    pub recovered_at: Option<i64>,
    /// For alerts reopened after resolving: their earlier firings, (start, end) (downtime too).
    pub earlier_firings: Vec<(i64, i64)>,
    /// For a break-glass's review (kind `review`): who broke the glass.
    pub actor: Option<String>,
}

/// A use of break-glass, as the report lists it (its review is a `review` incident).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BreakGlassUse {
    /// The review's title (names the request, service and environment; escape it in texts).
    pub title: String,
    pub by: Option<String>,
    pub at: i64,
    /// The review is done (its issue closed) by the window's end.
    pub reviewed: bool,
    /// The review is overdue at the window's end.
    pub overdue: bool,
}

/// A deployment request (`requests`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestFact {
    pub issue: i64,
    pub open: bool,
    pub updated_at: i64,
}

/// A flaky re-run (`ci_flaky`).
#[derive(Clone, Debug, PartialEq)]
pub struct FlakyFact {
    pub workflow: String,
    pub job: String,
    pub at: i64,
}

/// Everything the figures of one repository are computed from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub deployments: Vec<DeploymentFact>,
    pub runs: Vec<RunFact>,
    pub incidents: Vec<IncidentFact>,
    pub requests: Vec<RequestFact>,
    pub flaky: Vec<FlakyFact>,
}

/// A set of durations: how many, their mean and 95th percentile (nearest rank), in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Durations {
    pub count: usize,
    pub mean_seconds: Option<f64>,
    pub median_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
}

impl Durations {
    pub fn of(mut ms: Vec<i64>) -> Durations {
        if ms.is_empty() {
            return Durations::default();
        }
        ms.sort_unstable();
        let n = ms.len();
        let rank = |q: f64| ms[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1000.0;
        Durations {
            count: n,
            mean_seconds: Some(ms.iter().sum::<i64>() as f64 / n as f64 / 1000.0),
            median_seconds: Some(rank(0.5)),
            p95_seconds: Some(rank(0.95)),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EnvironmentDeployments {
    /// Deployments that finished in the window (rollbacks included).
    pub count: usize,
    pub succeeded: usize,
    /// `succeeded / count`, None without deployments.
    pub success_rate: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IncidentFigures {
    /// Incidents opened in the window.
    pub count: usize,
    /// Of those recovered in the window.
    pub time_to_recovery: Durations,
    /// Still open at the window's end.
    pub open: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Dora {
    /// Successful production deployments per day of the window.
    pub deployment_frequency_per_day: f64,
    /// First commit of the linked PRs → successful production deployment.
    pub lead_time: Durations,
    /// Production deployments that failed, or were followed within 24 h by a rollback or an
    /// app, infra or performance alert incident, over all production deployments. None without
    /// deployments.
    pub change_failure_rate: Option<f64>,
    /// Per incident kind (`ci`, `alert`): of the incidents recovered in the window.
    pub time_to_restore: BTreeMap<String, Durations>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    pub from: i64,
    pub to: i64,
    pub deployments: BTreeMap<String, EnvironmentDeployments>,
    /// Request approved (its gate opened) → its deployment succeeded.
    pub time_to_deploy: Durations,
    /// Successful runs over completed runs (the last attempt of each) on incident branches; None
    /// without runs.
    pub ci_green_rate: Option<f64>,
    /// Per kind: ci, alert, security.
    pub incidents: BTreeMap<String, IncidentFigures>,
    /// Flaky re-runs per `workflow / job`.
    pub flaky: BTreeMap<String, usize>,
    pub open_requests: usize,
    pub stale_requests: usize,
    /// Critical security incidents open at the window's end.
    pub open_critical_security: usize,
    /// The share of the window without a firing `slo: availability` alert; None when no such
    /// alert was ever seen (no availability signal).
    pub uptime: Option<f64>,
    pub dora: Dora,
    /// Break-glass uses in the window (SPEC §3.7), oldest first.
    pub breakglass: Vec<BreakGlassUse>,
}

fn within(t: i64, from: i64, to: i64) -> bool {
    t >= from && t < to
}

fn ratio(part: usize, all: usize) -> Option<f64> {
    (all > 0).then(|| part as f64 / all as f64)
}

/// The figures of `[from, to)`.
pub fn compute(f: &Facts, from: i64, to: i64) -> Figures {
    let mut out = Figures { from, to, ..Figures::default() };
    let finished: Vec<&DeploymentFact> =
        f.deployments.iter().filter(|d| d.finished_at.is_some_and(|t| within(t, from, to))).collect();
    for d in &finished {
        let e = out.deployments.entry(d.environment.clone()).or_default();
        e.count += 1;
        e.succeeded += usize::from(d.succeeded);
    }
    for e in out.deployments.values_mut() {
        e.success_rate = ratio(e.succeeded, e.count);
    }
    out.time_to_deploy = Durations::of(
        finished
            .iter()
            // A rollback deploys an older commit: the approved change never got there.
            .filter(|d| d.succeeded && !d.rollback)
            .filter_map(|d| Some(d.finished_at? - d.approved_at?))
            .filter(|ms| *ms >= 0)
            .collect(),
    );

    // CI: the last attempt of each run.
    let mut last: HashMap<i64, &RunFact> = HashMap::new();
    for r in f.runs.iter().filter(|r| r.incident_branch && r.kind != "ignored") {
        let e = last.entry(r.run_id).or_insert(r);
        if r.attempt > e.attempt {
            *e = r;
        }
    }
    let counted: Vec<&&RunFact> = last.values().filter(|r| within(r.completed_at, from, to)).collect();
    out.ci_green_rate = ratio(counted.iter().filter(|r| r.kind == "success").count(), counted.len());

    out.breakglass = f
        .incidents
        .iter()
        .filter(|i| i.kind == super::breakglass::REVIEW_KIND && within(i.opened_at, from, to))
        .map(|i| BreakGlassUse {
            title: i.title.clone(),
            by: i.actor.clone(),
            at: i.opened_at,
            reviewed: i.recovered_at.is_some_and(|r| r < to),
            overdue: i.recovered_at.is_none_or(|r| r >= to) && i.deadline < to,
        })
        .collect();
    out.breakglass.sort_by_key(|b| b.at);
    for kind in ["ci", "alert", "security"] {
        let of_kind: Vec<&IncidentFact> = f.incidents.iter().filter(|i| i.kind == kind).collect();
        let fig = IncidentFigures {
            count: of_kind.iter().filter(|i| within(i.opened_at, from, to)).count(),
            time_to_recovery: Durations::of(
                of_kind
                    .iter()
                    .filter_map(|i| Some((i.recovered_at?, i.started_at)))
                    .filter(|(r, _)| within(*r, from, to))
                    .map(|(r, s)| (r - s).max(0))
                    .collect(),
            ),
            open: of_kind.iter().filter(|i| i.opened_at < to && i.recovered_at.is_none_or(|r| r >= to)).count(),
        };
        out.incidents.insert(kind.to_string(), fig);
    }
    out.open_critical_security = f
        .incidents
        .iter()
        .filter(|i| i.kind == "security" && i.critical && i.opened_at < to && i.recovered_at.is_none_or(|r| r >= to))
        .count();
    for x in f.flaky.iter().filter(|x| within(x.at, from, to)) {
        *out.flaky.entry(format!("{} / {}", x.workflow, x.job)).or_default() += 1;
    }
    out.open_requests = f.requests.iter().filter(|r| r.open).count();
    out.stale_requests = f.requests.iter().filter(|r| r.open && to - r.updated_at > STALE_AFTER_MS).count();
    out.uptime = uptime(&f.incidents, from, to);
    out.dora = dora(f, &finished, from, to);
    out
}

/// The share of `[from, to)` no `slo: availability` alert was firing in (overlapping firings
/// counted once).
fn uptime(incidents: &[IncidentFact], from: i64, to: i64) -> Option<f64> {
    let slo: Vec<&IncidentFact> = incidents.iter().filter(|i| i.kind == "alert" && i.availability).collect();
    if slo.is_empty() || to <= from {
        return None;
    }
    let mut spans: Vec<(i64, i64)> = slo
        .iter()
        .flat_map(|i| i.earlier_firings.iter().copied().chain([(i.started_at, i.recovered_at.unwrap_or(to))]))
        .map(|(s, e)| (s.max(from), e.min(to)))
        .filter(|(s, e)| s < e)
        .collect();
    spans.sort_unstable();
    let (mut down, mut reach) = (0i64, from);
    for (s, e) in spans {
        let s = s.max(reach);
        if e > s {
            down += e - s;
            reach = e;
        }
    }
    Some(1.0 - down as f64 / (to - from) as f64)
}

fn dora(f: &Facts, finished: &[&DeploymentFact], from: i64, to: i64) -> Dora {
    let prod: Vec<&&DeploymentFact> =
        finished.iter().filter(|d| d.environment.eq_ignore_ascii_case(PRODUCTION)).collect();
    let succeeded: Vec<&&&DeploymentFact> = prod.iter().filter(|d| d.succeeded).collect();
    let days = (to - from) as f64 / 86_400_000.0;
    // Every production deployment of the history, in order: what came after one may be outside
    // the window.
    let mut all_prod: Vec<&DeploymentFact> = f
        .deployments
        .iter()
        .filter(|d| d.environment.eq_ignore_ascii_case(PRODUCTION) && d.finished_at.is_some())
        .collect();
    all_prod.sort_by_key(|d| d.finished_at);
    // When the alerts that make a change failure started, in order (searched, not scanned, per
    // deployment: a busy year has tens of thousands of both).
    let mut alert_starts: Vec<i64> = f
        .incidents
        .iter()
        .filter(|i| i.kind == "alert" && matches!(i.category.as_deref(), Some("app" | "infra" | "performance")))
        .map(|i| i.started_at)
        .collect();
    alert_starts.sort_unstable();
    let failed_change = |d: &DeploymentFact| -> bool {
        if !d.succeeded {
            return true;
        }
        let Some(at) = d.finished_at else { return false };
        let soon = |t: i64| t > at && t - at <= CHANGE_FAILURE_WITHIN_MS;
        // The next production deployment is a rollback: it replaced this one.
        let next = all_prod.get(all_prod.partition_point(|n| n.finished_at <= Some(at)));
        let rolled_back = next.is_some_and(|n| n.rollback && n.finished_at.is_some_and(soon));
        let alerted = alert_starts.get(alert_starts.partition_point(|t| *t <= at)).is_some_and(|t| soon(*t));
        rolled_back || alerted
    };
    let mut time_to_restore = BTreeMap::new();
    for kind in ["ci", "alert"] {
        time_to_restore.insert(
            kind.to_string(),
            Durations::of(
                f.incidents
                    .iter()
                    .filter(|i| i.kind == kind)
                    .filter_map(|i| Some((i.recovered_at?, i.started_at)))
                    .filter(|(r, _)| within(*r, from, to))
                    .map(|(r, s)| (r - s).max(0))
                    .collect(),
            ),
        );
    }
    Dora {
        deployment_frequency_per_day: if days > 0.0 { succeeded.len() as f64 / days } else { 0.0 },
        lead_time: Durations::of(
            succeeded
                .iter()
                .filter(|d| !d.rollback) // an older commit: the linked PRs' change is not in it
                .filter_map(|d| Some(d.finished_at? - d.first_commit_at?))
                .filter(|ms| *ms >= 0)
                .collect(),
        ),
        change_failure_rate: ratio(prod.iter().filter(|d| failed_change(d)).count(), prod.len()),
        time_to_restore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const DAY: i64 = 24 * H;
    const WEEK: i64 = 7 * DAY;
    /// Monday 2026-11-30 00:00 UTC.
    const MON: i64 = 1_795_996_800_000;

    fn deploy(env: &str, finished: i64, ok: bool) -> DeploymentFact {
        DeploymentFact { environment: env.into(), finished_at: Some(finished), succeeded: ok, ..Default::default() }
    }

    fn alert(category: &str, started: i64, recovered: Option<i64>) -> IncidentFact {
        IncidentFact {
            kind: "alert".into(),
            category: Some(category.into()),
            availability: false,
            critical: false,
            started_at: started,
            opened_at: started,
            recovered_at: recovered,
            ..IncidentFact::default()
        }
    }

    fn run(id: i64, attempt: i64, kind: &str, at: i64) -> RunFact {
        RunFact { run_id: id, attempt, incident_branch: true, kind: kind.into(), completed_at: at }
    }

    #[test]
    fn an_empty_week_has_no_rates() {
        let f = compute(&Facts::default(), MON, MON + WEEK);
        assert!(f.deployments.is_empty());
        assert_eq!((f.ci_green_rate, f.uptime, f.dora.change_failure_rate), (None, None, None));
        assert_eq!(f.dora.deployment_frequency_per_day, 0.0);
        assert_eq!(f.time_to_deploy, Durations::default());
        assert_eq!(f.incidents["ci"], IncidentFigures::default());
    }

    #[test]
    fn deployments_success_rate_and_time_to_deploy() {
        let mut a = deploy("production", MON + H, true);
        a.approved_at = Some(MON + H - 10 * 60_000);
        let mut b = deploy("production", MON + 2 * H, true);
        b.approved_at = Some(MON + 2 * H - 30 * 60_000);
        let c = deploy("production", MON + 3 * H, false);
        let s = deploy("staging", MON + H, true);
        let before = deploy("production", MON - H, true); // last week
        let under_way = DeploymentFact { environment: "production".into(), ..Default::default() };
        let facts = Facts { deployments: vec![a, b, c, s, before, under_way], ..Facts::default() };
        let f = compute(&facts, MON, MON + WEEK);
        assert_eq!(
            f.deployments["production"],
            EnvironmentDeployments { count: 3, succeeded: 2, success_rate: Some(2.0 / 3.0) }
        );
        assert_eq!(f.deployments["staging"].success_rate, Some(1.0));
        assert_eq!(f.time_to_deploy.count, 2);
        assert_eq!(f.time_to_deploy.mean_seconds, Some(20.0 * 60.0));
        assert_eq!(f.time_to_deploy.p95_seconds, Some(30.0 * 60.0));
        assert_eq!(f.dora.deployment_frequency_per_day, 2.0 / 7.0);
    }

    /// A `/rollback` belongs to the request whose deployment failed, but it deploys an older
    /// commit: the request's change never reached production, so neither its time to deploy nor
    /// its lead time for changes ends there.
    #[test]
    fn a_rollback_delivers_no_change() {
        let mut failed = deploy("production", MON + H, false);
        failed.approved_at = Some(MON);
        failed.first_commit_at = Some(MON - DAY);
        let mut rollback = deploy("production", MON + 2 * H, true);
        rollback.approved_at = Some(MON);
        rollback.first_commit_at = Some(MON - DAY);
        rollback.rollback = true;
        let f = compute(&Facts { deployments: vec![failed, rollback], ..Facts::default() }, MON, MON + WEEK);
        assert_eq!(f.deployments["production"].count, 2, "a rollback is a deployment of its own");
        assert_eq!(f.dora.deployment_frequency_per_day, 1.0 / 7.0);
        assert_eq!(f.time_to_deploy, Durations::default());
        assert_eq!(f.dora.lead_time, Durations::default());
    }

    /// The change failure rate of a busy year (what `GET /api/reports/...?since=366d` reads, and
    /// what anyone who can create deployments can make) is computed in a moment, not once per pair
    /// of deployments and incidents.
    #[test]
    fn change_failures_of_a_busy_year_are_quick() {
        let n = 20_000;
        let deployments = (0..n).map(|i| deploy("production", MON + i * 60_000, true)).collect();
        let incidents = (0..n).map(|i| alert("infra", MON - WEEK - i * 60_000, Some(MON - WEEK))).collect();
        let facts = Facts { deployments, incidents, ..Facts::default() };
        let started = std::time::Instant::now();
        let f = compute(&facts, MON, MON + 30 * DAY);
        assert_eq!(f.dora.change_failure_rate, Some(0.0));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn ci_green_rate_counts_the_last_attempt_of_each_run_on_incident_branches() {
        let mut off = run(9, 1, "failure", MON + H);
        off.incident_branch = false;
        let runs = vec![
            run(1, 1, "failure", MON + H),
            run(1, 2, "success", MON + 2 * H), // a re-run that passed: green
            run(2, 1, "failure", MON + H),
            run(3, 1, "success", MON + H),
            run(4, 1, "ignored", MON + H),
            run(5, 1, "success", MON - H), // last week
            off,
        ];
        let f = compute(&Facts { runs, ..Facts::default() }, MON, MON + WEEK);
        assert_eq!(f.ci_green_rate, Some(2.0 / 3.0));
    }

    #[test]
    fn incidents_time_to_recovery_and_those_still_open() {
        let ci = |started, recovered| IncidentFact {
            kind: "ci".into(),
            category: None,
            availability: false,
            critical: false,
            started_at: started,
            opened_at: started,
            recovered_at: recovered,
            ..IncidentFact::default()
        };
        let incidents = vec![
            ci(MON + H, Some(MON + H + 4 * 60_000)),
            ci(MON + 2 * H, Some(MON + 2 * H + 10 * 60_000)),
            ci(MON + WEEK - H, None),                 // still open at the end
            ci(MON - DAY, Some(MON + 6 * 60_000)),    // opened last week, recovered this week
            ci(MON + WEEK - H, Some(MON + WEEK + H)), // recovers next week: open at the end
        ];
        let f = compute(&Facts { incidents, ..Facts::default() }, MON, MON + WEEK);
        let c = &f.incidents["ci"];
        assert_eq!((c.count, c.open), (4, 2));
        assert_eq!(c.time_to_recovery.count, 3);
        assert_eq!(
            c.time_to_recovery.mean_seconds,
            Some((DAY + 6 * 60_000 + 4 * 60_000 + 10 * 60_000) as f64 / 3000.0)
        );
        assert_eq!(c.time_to_recovery.median_seconds, Some(600.0));
        assert_eq!(f.dora.time_to_restore["ci"], c.time_to_recovery);
    }

    #[test]
    fn uptime_counts_overlapping_availability_alerts_once() {
        let mut a = alert("infra", MON + DAY, Some(MON + DAY + 2 * H));
        a.availability = true;
        let mut b = alert("infra", MON + DAY + H, Some(MON + DAY + 3 * H));
        b.availability = true;
        let mut c = alert("infra", MON + WEEK - H, None); // firing at the end
        c.availability = true;
        let other = alert("app", MON, Some(MON + DAY)); // not an availability alert
        let f = compute(&Facts { incidents: vec![a, b, c, other], ..Facts::default() }, MON, MON + WEEK);
        assert_eq!(f.uptime, Some(1.0 - (4 * H) as f64 / WEEK as f64));
    }

    #[test]
    fn change_failures_are_failed_deployments_rollbacks_and_alerts_within_a_day() {
        let ok1 = deploy("production", MON + H, true); // followed by a rollback: a failure
        let mut rb = deploy("production", MON + 2 * H, true);
        rb.rollback = true; // itself fine
        let ok2 = deploy("production", MON + 3 * DAY, true); // an app alert 3 h later: a failure
        let ok3 = deploy("production", MON + 5 * DAY, true); // a CI incident after: not a change failure
        let bad = deploy("production", MON + 6 * DAY, false);
        let incidents = vec![
            alert("app", MON + 3 * DAY + 3 * H, None),
            alert("cost", MON + 5 * DAY + H, None),
            IncidentFact { kind: "ci".into(), ..alert("app", MON + 5 * DAY + H, None) },
        ];
        let facts = Facts { deployments: vec![ok1, rb, ok2, ok3, bad], incidents, ..Facts::default() };
        let f = compute(&facts, MON, MON + WEEK);
        assert_eq!(f.dora.change_failure_rate, Some(3.0 / 5.0));
        assert_eq!(f.deployments["production"].count, 5, "a rollback is a deployment of its own");
    }

    #[test]
    fn production_is_named_in_any_case() {
        // Environments are matched case-insensitively everywhere else (the policy, the gate).
        let f = compute(
            &Facts { deployments: vec![deploy("Production", MON + DAY, true)], ..Facts::default() },
            MON,
            MON + WEEK,
        );
        assert_eq!(f.dora.change_failure_rate, Some(0.0));
        assert!((f.dora.deployment_frequency_per_day - 1.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn lead_time_from_the_first_commit() {
        let mut d = deploy("production", MON + DAY, true);
        d.first_commit_at = Some(MON - DAY);
        let mut e = deploy("production", MON + 2 * DAY, true);
        e.first_commit_at = Some(MON + DAY);
        let f = compute(&Facts { deployments: vec![d, e], ..Facts::default() }, MON, MON + WEEK);
        assert_eq!(f.dora.lead_time.count, 2);
        assert_eq!(f.dora.lead_time.mean_seconds, Some(1.5 * DAY as f64 / 1000.0));
    }

    #[test]
    fn stale_requests_and_open_critical_security_alerts() {
        let requests = vec![
            RequestFact { issue: 1, open: true, updated_at: MON + WEEK - DAY },
            RequestFact { issue: 2, open: true, updated_at: MON - 2 * DAY },
            RequestFact { issue: 3, open: false, updated_at: MON - 30 * DAY },
        ];
        let sec = |critical, recovered| IncidentFact {
            kind: "security".into(),
            category: None,
            availability: false,
            critical,
            started_at: MON,
            opened_at: MON,
            recovered_at: recovered,
            ..IncidentFact::default()
        };
        let incidents = vec![sec(true, None), sec(false, None), sec(true, Some(MON + DAY))];
        let f = compute(&Facts { requests, incidents, ..Facts::default() }, MON, MON + WEEK);
        assert_eq!((f.open_requests, f.stale_requests, f.open_critical_security), (2, 1, 1));
    }
}
