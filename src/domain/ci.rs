//! Failed CI (SPEC §4), as plain data: which workflow-run conclusions count, which runs may open
//! an incident, how failed jobs and steps are sorted (Lint, Type-check, Test, Build, Deploy,
//! Other), and every text the App writes about CI: the PR comment, the incident issue, its
//! recovery and its escalation, and security-alert incidents.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::policy::{CiPolicy, Policy};

/// The comment marker of a workflow's failure comment on a PR.
pub fn pr_marker(workflow_id: i64) -> String {
    format!("ci-failure:{workflow_id}")
}

/// The marker of the `seq`-th incident issue of a workflow on a branch.
pub fn incident_marker(workflow_id: i64, branch: &str, seq: i64) -> String {
    format!("ci-incident:{workflow_id}:{branch}:{seq}")
}

/// The marker of the `seq`-th incident issue of a security alert.
pub fn security_marker(event: &str, alert: i64, seq: i64) -> String {
    format!("security:{event}:{alert}:{seq}")
}

/// The comment marker of an incident's escalation.
pub const ESCALATION_MARKER: &str = "ci-escalation";

/// The label of CI incident issues.
pub const CI_LABEL: &str = "ci-failure";
/// The label of security incident issues.
pub const SECURITY_LABEL: &str = "security";

/// Events whose runs on an incident branch may open an incident (not a PR's run).
pub const INCIDENT_EVENTS: [&str; 4] = ["push", "schedule", "merge_group", "workflow_dispatch"];

/// What a completed run means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Success,
    Failure,
    /// Cancelled, skipped… (the policy's `ignore_conclusions`): recorded, nothing else.
    Ignored,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Success => "success",
            RunKind::Failure => "failure",
            RunKind::Ignored => "ignored",
        }
    }
}

/// `success` passes; an ignored conclusion is ignored; anything else (failure, timed_out,
/// startup_failure, and any conclusion the policy does not ignore) fails.
pub fn run_kind(conclusion: &str, ci: &CiPolicy) -> RunKind {
    if conclusion.eq_ignore_ascii_case("success") {
        RunKind::Success
    } else if ci.ignores_conclusion(conclusion) || conclusion.is_empty() {
        RunKind::Ignored
    } else {
        RunKind::Failure
    }
}

/// The branches whose failures open incidents: the policy's, or else the default branch.
pub fn is_incident_branch(ci: &CiPolicy, branch: &str, default_branch: &str) -> bool {
    if ci.incident_branches.is_empty() {
        branch == default_branch
    } else {
        ci.incident_branches.iter().any(|b| b == branch)
    }
}

/// A run may open or close an incident when it ran the repository's own branch (not a fork's
/// branch of the same name) for a push, a schedule, a merge queue or a manual dispatch.
pub fn run_counts_for_incident(
    ci: &CiPolicy,
    event: &str,
    head_repo_id: i64,
    repo_id: i64,
    branch: &str,
    default_branch: &str,
) -> bool {
    head_repo_id == repo_id && INCIDENT_EVENTS.contains(&event) && is_incident_branch(ci, branch, default_branch)
}

/// A job of a run attempt, as GitHub lists it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct JobFact {
    pub id: i64,
    pub name: String,
    pub html_url: String,
    pub conclusion: Option<String>,
    /// (number, name, conclusion)
    pub steps: Vec<(i64, String, Option<String>)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedStep {
    pub number: i64,
    pub name: String,
    pub category: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedJob {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub conclusion: String,
    pub category: String,
    pub steps: Vec<FailedStep>,
}

fn failed(conclusion: Option<&str>) -> bool {
    matches!(conclusion, Some("failure" | "timed_out" | "startup_failure"))
}

fn category_of(ci: &CiPolicy, name: &str) -> Option<String> {
    ci.categorize(name).map(str::to_string)
}

/// The failed jobs of an attempt and their failed steps, each sorted into a category: a step by
/// its name, else by its job's name; a job by its first failed step that has a category, else by
/// its own name; "Other" when nothing matches.
pub fn failed_jobs(jobs: &[JobFact], ci: &CiPolicy) -> Vec<FailedJob> {
    jobs.iter()
        .filter(|j| failed(j.conclusion.as_deref()))
        .map(|j| {
            let own = category_of(ci, &j.name);
            let steps: Vec<FailedStep> = j
                .steps
                .iter()
                .filter(|(_, _, c)| failed(c.as_deref()))
                .map(|(number, name, _)| FailedStep {
                    number: *number,
                    name: name.clone(),
                    category: category_of(ci, name).or_else(|| own.clone()).unwrap_or_else(|| "Other".into()),
                })
                .collect();
            let category = j
                .steps
                .iter()
                .filter(|(_, _, c)| failed(c.as_deref()))
                .find_map(|(_, name, _)| category_of(ci, name))
                .or(own)
                .unwrap_or_else(|| "Other".into());
            FailedJob {
                id: j.id,
                name: j.name.clone(),
                url: j.html_url.clone(),
                conclusion: j.conclusion.clone().unwrap_or_default(),
                category,
                steps,
            }
        })
        .collect()
}

/// A completed run, as the texts show it.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: i64,
    pub run_number: i64,
    pub attempt: i64,
    pub url: String,
    pub head_sha: String,
    pub branch: String,
    pub event: String,
    pub conclusion: String,
    /// `run_started_at` and `updated_at` of the payload (Unix ms).
    pub started_at: i64,
    pub completed_at: i64,
    /// The head commit's author (a name, not a login) and who triggered the run (a login).
    pub author: String,
    pub actor: String,
    pub jobs: Vec<FailedJob>,
    /// The jobs were not read (dry-run): said as such, never as "the workflow could not start".
    #[serde(default)]
    pub jobs_unread: bool,
}

use super::messages::short;

/// `2020-10-05 16:33 UTC` (clamped to the times chrono represents, ±262,000 years).
pub fn format_time(ms: i64) -> String {
    let t = DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `1 h 12 min`, `45 min`, `30 s`, `2 d 3 h`.
pub fn format_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

fn jobs_table(jobs: &[FailedJob], unread: bool) -> String {
    if jobs.is_empty() && unread {
        return "The run's jobs were not read (dry-run: no GitHub credentials).\n".into();
    }
    if jobs.is_empty() {
        return "No failed job was found: the workflow could not start (check its YAML, its permissions and \
                the runners), or the run is gone.\n"
            .into();
    }
    let mut out = String::from("| Job | Category | Failed steps |\n|---|---|---|\n");
    for j in jobs {
        let steps = if j.steps.is_empty() {
            format!("— ({})", j.conclusion)
        } else {
            j.steps.iter().map(|s| format!("`{}` ({})", s.name, s.category)).collect::<Vec<_>>().join(", ")
        };
        let name = if j.url.is_empty() { format!("`{}`", j.name) } else { format!("[`{}`]({})", j.name, j.url) };
        out.push_str(&format!("| {name} | {} | {steps} |\n", j.category));
    }
    out
}

/// The debugging checklist of SPEC §4, with the categories that failed pointed out.
fn checklist(jobs: &[FailedJob]) -> String {
    let items: [(&str, &str, &str); 6] = [
        ("Lint", "Lint", "formatting or lint errors? Run the linter locally and fix what it reports."),
        ("Type-check", "Type-check", "type errors? Run the type checker locally."),
        ("Test", "Tests", "a failing test? Reproduce it locally; a test that passes on a re-run is flaky."),
        ("Build", "Build", "does it compile and package? Look for a missing dependency or a changed toolchain."),
        ("Deploy", "Deploy", "did a deploy step fail? Check credentials, the target environment and its health."),
        ("Other", "Other", "setup, runners, secrets or permissions? Read the failed step's log."),
    ];
    let mut out = String::from("### Debugging checklist\n");
    for (category, label, hint) in items {
        let hit: Vec<String> = jobs
            .iter()
            .filter(|j| j.category == category || j.steps.iter().any(|s| s.category == category))
            .map(|j| format!("`{}`", j.name))
            .collect();
        if category == "Other" && hit.is_empty() {
            continue;
        }
        let mark = if hit.is_empty() { String::new() } else { format!(" — **failed here:** {}", hit.join(", ")) };
        out.push_str(&format!("- [ ] **{label}?** {hint}{mark}\n"));
    }
    out.push_str("- [ ] Fixed? Push the fix (or re-run the failed jobs) and tell the team.\n");
    out
}

fn run_link(workflow: &str, r: &RunInfo) -> String {
    format!("[`{workflow}` run #{}, attempt {}]({})", r.run_number, r.attempt, r.url)
}

/// The sticky comment on a PR whose workflow failed.
pub fn pr_failure_comment(workflow: &str, run: &RunInfo) -> String {
    format!(
        "## 🔴 CI/CD FAILED: `{workflow}`\n\n{} failed on `{}` (`{}`, conclusion `{}`).\n\n{}\n{}\n\
         <sub>shipgate updates this comment on each failure of `{workflow}` here, and turns it green when it passes.</sub>",
        run_link(workflow, run),
        run.branch,
        short(&run.head_sha),
        run.conclusion,
        jobs_table(&run.jobs, run.jobs_unread),
        checklist(&run.jobs),
    )
}

/// The same comment once the workflow passes on the PR's new head.
pub fn pr_green_comment(workflow: &str, run: &RunInfo, failed_run: Option<i64>, flaky_jobs: &[String]) -> String {
    let mut out = format!(
        "## ✅ CI/CD passing again: `{workflow}`\n\n{} passed on `{}` (`{}`).",
        run_link(workflow, run),
        run.branch,
        short(&run.head_sha)
    );
    if let Some(n) = failed_run {
        out.push_str(&format!(" The failure reported here before (run #{n}) is resolved."));
    }
    if !flaky_jobs.is_empty() {
        out.push_str(&format!("\n\n{}", flaky_note(flaky_jobs)));
    }
    out
}

fn flaky_note(jobs: &[String]) -> String {
    let names: Vec<String> = jobs.iter().map(|j| format!("`{j}`")).collect();
    format!(
        "⚠️ **Flaky:** the same commit failed and then passed on a re-run ({}). shipgate recorded it as flaky.",
        names.join(", ")
    )
}

/// What an incident issue shows.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Incident {
    pub repo: String,
    pub workflow: String,
    pub workflow_url: String,
    pub branch: String,
    /// The first failing run after the last success, and the latest failing run.
    pub first: RunInfo,
    pub latest: RunInfo,
    pub failures: i64,
    pub debug_within_minutes: u32,
    pub deadline: i64,
    pub escalate_to: Option<String>,
    pub mentions: Vec<String>,
}

pub fn incident_title(workflow: &str, branch: &str) -> String {
    format!("🔴 CI failing: {workflow} on {branch}")
}

/// The body of an open CI incident issue.
pub fn incident_body(i: &Incident) -> String {
    let escalate = match &i.escalate_to {
        Some(role) => format!(", then escalated to {role}"),
        None => String::new(),
    };
    let actor = if i.first.actor.is_empty() { String::new() } else { format!(" (run by @{})", i.first.actor) };
    let author = if i.first.author.is_empty() { "an unknown author".to_string() } else { i.first.author.clone() };
    let workflow = if i.workflow_url.is_empty() {
        format!("`{}`", i.workflow)
    } else {
        format!("[`{}`]({})", i.workflow, i.workflow_url)
    };
    format!(
        "## 🔴 CI incident: `{}` failing on `{}`\n\n{}\n\n\
         | | |\n|---|---|\n\
         | Workflow | {workflow} |\n\
         | Branch | `{}` |\n\
         | First failing commit | [`{}`](https://github.com/{}/commit/{}) by {author}{actor} |\n\
         | First failure | {} in {} |\n\
         | Debug within | {} min: by **{}**{escalate} |\n\
         | Failures so far | {} (latest: {}) |\n\n\
         ### Failing jobs (latest run)\n{}\n{}\n\
         <sub>shipgate updates this issue on each failure and closes it when `{}` passes on `{}`.</sub>",
        i.workflow,
        i.branch,
        super::links::DETAILS_LINE,
        i.branch,
        short(&i.first.head_sha),
        i.repo,
        i.first.head_sha,
        format_time(i.first.completed_at),
        run_link(&i.workflow, &i.first),
        i.debug_within_minutes,
        format_time(i.deadline),
        i.failures,
        run_link(&i.workflow, &i.latest),
        jobs_table(&i.latest.jobs, i.latest.jobs_unread),
        checklist(&i.latest.jobs),
        i.workflow,
        i.branch,
    )
}

/// The body of a CI incident closed by a passing run.
pub fn recovered_body(i: &Incident, success: &RunInfo, ttr_ms: i64, flaky_jobs: &[String]) -> String {
    let mut out = format!(
        "## ✅ Recovered: `{}` passes on `{}` again\n\nTime to recovery: **{}** (first failure {} → success {} in {}).\n",
        i.workflow,
        i.branch,
        format_duration(ttr_ms),
        format_time(i.first.completed_at),
        format_time(success.completed_at),
        run_link(&i.workflow, success),
    );
    if !flaky_jobs.is_empty() {
        out.push_str(&format!("\n{}\n", flaky_note(flaky_jobs)));
    }
    out.push_str("\n---\n\n");
    out.push_str(&incident_body(i).replacen("## 🔴 CI incident:", "## CI incident (closed):", 1));
    out
}

/// Who an escalation mentions: the `escalate_to` role's users (@login) and teams (@org/slug).
pub fn mentions(policy: &Policy) -> Vec<String> {
    super::alert::mentions(policy, policy.ci.escalate_to.as_deref())
}

/// The one comment posted on an incident still open at its deadline.
/// The escalation comment once the incident is closed: it no longer says the incident is open.
pub fn escalation_resolved(title: &str, escalated_at: i64, closed_at: i64) -> String {
    format!(
        "## ✅ Resolved after escalation: {title}\n\nEscalated at {}; resolved at {}.",
        format_time(escalated_at),
        format_time(closed_at)
    )
}

/// Whom an escalation addresses, and what it asks of them; says so when there is nobody.
pub fn escalation_who(mentions: &str, ask: &str) -> String {
    if mentions.trim().is_empty() {
        "Nobody to mention: name a role in `ci.escalate_to` of `.github/shipgate.yml`.".to_string()
    } else {
        format!("{mentions}: {ask}")
    }
}

pub fn escalation_comment(title: &str, deadline: i64, mentions: &str, security: bool) -> String {
    let who = escalation_who(mentions, "please take this over.");
    if security {
        format!("## 🚨 Escalated: {title}\n\nA high or critical security alert is open. {who}")
    } else {
        format!(
            "## 🚨 Escalated: {title}\n\nThis CI incident is still open after its debugging deadline ({}). {who}",
            format_time(deadline)
        )
    }
}

/// A security alert, as its incident shows it.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Alert {
    /// `dependabot_alert`, `code_scanning_alert` or `secret_scanning_alert`.
    pub event: String,
    pub number: i64,
    pub severity: String,
    pub summary: String,
    pub url: String,
    pub created_at: i64,
}

impl Alert {
    pub fn source(&self) -> &'static str {
        match self.event.as_str() {
            "dependabot_alert" => "Dependabot",
            "code_scanning_alert" => "Code scanning",
            "secret_scanning_alert" => "Secret scanning",
            _ => "Security",
        }
    }
}

/// Only high and critical alerts open an incident; a secret scanning alert (which has no
/// severity: a leaked secret) counts as critical.
pub fn alert_counts(severity: &str) -> bool {
    matches!(severity.to_ascii_lowercase().as_str(), "high" | "critical")
}

pub fn security_title(a: &Alert) -> String {
    format!("🔒 {} alert #{} ({}): {}", a.source(), a.number, a.severity, a.summary)
}

pub fn security_body(a: &Alert, escalate_to: Option<&str>) -> String {
    let escalate = match escalate_to {
        Some(role) => format!("Escalated at once to {role}."),
        None => "Escalated at once (no `ci.escalate_to` role is set).".to_string(),
    };
    alert_body(a, "## 🔒 Security incident:", &format!("\n{escalate}\n"))
}

fn alert_body(a: &Alert, heading: &str, extra: &str) -> String {
    format!(
        "{heading} {} alert [#{}]({})\n\n\
         | | |\n|---|---|\n| Severity | **{}** |\n| Alert | {} |\n| Opened | {} |\n{extra}\n\
         ### Checklist\n- [ ] Assess the exposure (is the vulnerable code reachable? was the secret used?)\n\
         - [ ] Fix: upgrade, patch or rotate the secret\n- [ ] Close the alert on GitHub (fixed or dismissed with a reason)\n\n\
         <sub>shipgate closes this issue when the alert is fixed or dismissed.</sub>",
        a.source(),
        a.number,
        a.url,
        a.severity,
        a.summary,
        format_time(a.created_at),
    )
}

pub fn security_closed_body(a: &Alert, how: &str, open_ms: i64) -> String {
    format!(
        "## ✅ Resolved: the alert was {how} after {}\n\n---\n\n{}",
        format_duration(open_ms),
        alert_body(a, "## Security incident (closed):", "")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy;

    fn job(name: &str, conclusion: &str, steps: &[(&str, &str)]) -> JobFact {
        JobFact {
            id: 7,
            name: name.into(),
            html_url: format!("https://github.com/o/r/actions/runs/1/job/{name}"),
            conclusion: Some(conclusion.into()),
            steps: steps
                .iter()
                .enumerate()
                .map(|(i, (n, c))| (i as i64 + 1, n.to_string(), Some(c.to_string())))
                .collect(),
        }
    }

    fn run(jobs: Vec<FailedJob>) -> RunInfo {
        RunInfo {
            run_id: 30433642,
            run_number: 163,
            attempt: 2,
            url: "https://github.com/o/r/actions/runs/30433642".into(),
            head_sha: "3484a3fb816e0859fd6e1cea078d76385ff50625".into(),
            branch: "main".into(),
            event: "push".into(),
            conclusion: "failure".into(),
            started_at: 1_601_915_629_000,
            completed_at: 1_601_915_700_000,
            author: "Matthias Fax".into(),
            actor: "Codertocat".into(),
            jobs,
            jobs_unread: false,
        }
    }

    #[test]
    fn jobs_not_read_in_dry_run_are_said_as_such() {
        let mut r = run(vec![]);
        r.jobs_unread = true;
        assert_eq!(
            jobs_table(&r.jobs, r.jobs_unread),
            "The run's jobs were not read (dry-run: no GitHub credentials).\n"
        );
        assert!(jobs_table(&r.jobs, false).contains("could not start"));
    }

    #[test]
    fn conclusions() {
        let ci = CiPolicy::default();
        assert_eq!(run_kind("success", &ci), RunKind::Success);
        for c in ["failure", "timed_out", "startup_failure"] {
            assert_eq!(run_kind(c, &ci), RunKind::Failure, "{c}");
        }
        for c in ["cancelled", "skipped", "neutral", "action_required", "CANCELLED", ""] {
            assert_eq!(run_kind(c, &ci), RunKind::Ignored, "{c}");
        }
        let strict = CiPolicy { ignore_conclusions: vec!["skipped".into()], ..CiPolicy::default() };
        assert_eq!(run_kind("cancelled", &strict), RunKind::Failure);
    }

    #[test]
    fn incident_runs() {
        let ci = CiPolicy::default();
        assert!(run_counts_for_incident(&ci, "push", 1, 1, "main", "main"));
        assert!(run_counts_for_incident(&ci, "schedule", 1, 1, "main", "main"));
        assert!(!run_counts_for_incident(&ci, "push", 2, 1, "main", "main"), "a fork's main");
        assert!(!run_counts_for_incident(&ci, "pull_request", 1, 1, "main", "main"));
        assert!(!run_counts_for_incident(&ci, "push", 1, 1, "dev", "main"));
        let listed = CiPolicy { incident_branches: vec!["release".into()], ..CiPolicy::default() };
        assert!(run_counts_for_incident(&listed, "push", 1, 1, "release", "main"));
        assert!(!run_counts_for_incident(&listed, "push", 1, 1, "main", "main"));
    }

    #[test]
    fn classification() {
        let ci = CiPolicy::default();
        let jobs = vec![
            job("lint", "failure", &[("Set up job", "success"), ("Run cargo clippy", "failure")]),
            job("unit", "failure", &[("Checkout", "success"), ("Run the suite", "failure")]),
            job("build", "success", &[("Compile", "success")]),
            job("misc", "timed_out", &[("Sleep", "failure")]),
            job("matrix", "cancelled", &[]),
        ];
        let f = failed_jobs(&jobs, &ci);
        let got: Vec<(&str, &str, Vec<&str>)> = f
            .iter()
            .map(|j| (j.name.as_str(), j.category.as_str(), j.steps.iter().map(|s| s.category.as_str()).collect()))
            .collect();
        assert_eq!(
            got,
            vec![("lint", "Lint", vec!["Lint"]), ("unit", "Other", vec!["Other"]), ("misc", "Other", vec!["Other"])]
        );
        // A job's name sorts steps that say nothing; a step's name wins over its job's.
        let f = failed_jobs(&[job("test (ubuntu)", "failure", &[("npm run build", "failure"), ("x", "failure")])], &ci);
        assert_eq!(f[0].category, "Build");
        assert_eq!(f[0].steps.iter().map(|s| s.category.as_str()).collect::<Vec<_>>(), vec!["Build", "Test"]);
        // Categories from the policy.
        let p = policy::parse("ci:\n  categories:\n    Deploy: [ship-it]\n").expect("policy");
        let f = failed_jobs(&[job("ship-it", "failure", &[])], &p.ci);
        assert_eq!(f[0].category, "Deploy");
    }

    #[test]
    fn times() {
        assert_eq!(format_time(1_601_915_629_000), "2020-10-05 16:33 UTC");
        assert_eq!(format_time(-1), "1969-12-31 23:59 UTC");
        assert_eq!(format_time(1_709_251_199_999), "2024-02-29 23:59 UTC");
        assert_eq!(format_duration(30_000), "30 s");
        assert_eq!(format_duration(45 * 60_000), "45 min");
        assert_eq!(format_duration(72 * 60_000), "1 h 12 min");
        assert_eq!(format_duration(2 * 3_600_000), "2 h");
        assert_eq!(format_duration(51 * 3_600_000), "2 d 3 h");
    }

    #[test]
    fn pr_comments() {
        let ci = CiPolicy::default();
        let jobs = failed_jobs(
            &[
                job("lint", "failure", &[("Run eslint", "failure")]),
                job("e2e", "failure", &[("Checkout", "success"), ("Run cypress", "failure")]),
            ],
            &ci,
        );
        insta::assert_snapshot!(pr_failure_comment("test", &run(jobs)));
        let mut ok = run(vec![]);
        ok.conclusion = "success".into();
        ok.attempt = 3;
        insta::assert_snapshot!(pr_green_comment("test", &ok, Some(163), &["e2e".into()]));
        insta::assert_snapshot!(pr_failure_comment(
            "test",
            &RunInfo { conclusion: "startup_failure".into(), ..run(vec![]) }
        ));
    }

    #[test]
    fn incident_texts() {
        let ci = CiPolicy::default();
        let jobs = failed_jobs(&[job("build", "failure", &[("docker build", "failure")])], &ci);
        let first = run(jobs.clone());
        let mut latest = run(jobs);
        latest.run_number = 165;
        latest.attempt = 1;
        let i = Incident {
            repo: "o/r".into(),
            workflow: "test".into(),
            workflow_url: "https://github.com/o/r/blob/main/.github/workflows/test.yml".into(),
            branch: "main".into(),
            first,
            latest,
            failures: 2,
            debug_within_minutes: 60,
            deadline: 1_601_915_700_000 + 3_600_000,
            escalate_to: Some("devops".into()),
            mentions: vec!["@alice".into(), "@acme/sre".into()],
        };
        insta::assert_snapshot!(incident_title("test", "main"));
        insta::assert_snapshot!(incident_body(&i));
        let mut ok = run(vec![]);
        ok.run_number = 166;
        ok.attempt = 1;
        ok.conclusion = "success".into();
        ok.completed_at = i.first.completed_at + 72 * 60_000;
        insta::assert_snapshot!(recovered_body(&i, &ok, 72 * 60_000, &[]));
        insta::assert_snapshot!(escalation_comment(
            &incident_title("test", "main"),
            i.deadline,
            "@alice @acme/sre",
            false
        ));
        insta::assert_snapshot!(escalation_comment("x", 0, "", false));
    }

    #[test]
    fn escalation_mentions() {
        // The built-in policy names nobody to escalate to.
        assert!(mentions(&policy::default_policy()).is_empty());
        let p = policy::parse("roles:\n  ops: { users: [alice], teams: [acme/sre] }\nci:\n  escalate_to: ops\n")
            .expect("ok");
        assert_eq!(mentions(&p), vec!["@alice", "@acme/sre"]);
        assert!(mentions(&policy::parse("label: X\n").expect("ok")).is_empty());
    }

    #[test]
    fn security_texts() {
        assert!(alert_counts("critical") && alert_counts("HIGH"));
        assert!(!alert_counts("medium") && !alert_counts("low") && !alert_counts(""));
        let a = Alert {
            event: "dependabot_alert".into(),
            number: 20,
            severity: "critical".into(),
            summary: "semver vulnerable to Regular Expression Denial of Service".into(),
            url: "https://github.com/o/r/security/dependabot/20".into(),
            created_at: 1_687_615_032_000,
        };
        insta::assert_snapshot!(security_title(&a));
        insta::assert_snapshot!(security_body(&a, Some("devops")));
        insta::assert_snapshot!(security_closed_body(&a, "fixed", 90 * 60_000));
    }
}
