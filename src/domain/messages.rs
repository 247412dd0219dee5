//! Every message the App writes, in one place, snapshot-tested: the request's sticky comment,
//! the deploy gate check run, and the replies to commands.

use std::fmt::Write as _;

use super::gate::{Evaluation, GateState};
use super::request::{ChangeRequest, Problem};

/// The request's sticky comment marker.
pub const REQUEST_MARKER: &str = "request";
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
    pub staging_ok: bool,
}

pub fn request_comment(v: &RequestView<'_>) -> String {
    let mut s = String::new();
    let service = v.request.service.as_deref().unwrap_or("(service?)");
    let env = v.environment.or(v.request.environment.as_deref()).unwrap_or("(environment?)");
    let _ = writeln!(s, "## 🚦 Deployment request: {service} → {env}\n");
    let verdict = if v.eval.open {
        "✅ **The gate is open**: every condition is met."
    } else if v.eval.gates.iter().any(|g| g.state == GateState::Fail) {
        "⛔ **The gate is closed.**"
    } else {
        "⏳ **Waiting** for what is listed below."
    };
    let _ = writeln!(s, "{verdict}\n");
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
    let prs: Vec<String> = r
        .pull_requests
        .iter()
        .map(|p| match p {
            super::request::PrRef::Number(n) => format!("#{n}"),
            super::request::PrRef::Url { owner, repo, number } => format!("{owner}/{repo}#{number}"),
        })
        .collect();
    let rows: [(&str, Option<String>); 7] = [
        ("Service", r.service.clone()),
        ("Environment", v.environment.map(str::to_string).or(r.environment.clone())),
        ("Reason", r.reason.clone()),
        ("Pull requests", (!prs.is_empty()).then(|| prs.join(", ")).or(r.commit.clone())),
        ("Downtime", r.downtime.clone()),
        ("Rollback time", r.rollback_time.clone()),
        ("Rollback plan", r.rollback_plan.as_ref().map(|p| p.lines().next().unwrap_or("").to_string())),
    ];
    for (k, val) in rows {
        let _ = writeln!(s, "| {k} | {} |", val.map(|x| escape(&x)).unwrap_or_else(|| "— *missing*".into()));
    }
    let tests_green = v.eval.gates.iter().any(|g| g.name == "Tests" && g.state == GateState::Pass);
    let tick = |b: bool| if b { "x" } else { " " };
    let _ = writeln!(s, "\n### Checklist\n\n*Items marked (shipgate) are ticked by the App; the rest are yours.*\n");
    let _ = writeln!(s, "**Pre-deployment**");
    let _ = writeln!(s, "- [{}] All tests passing (lint, unit, integration, E2E) (shipgate)", tick(tests_green));
    let _ = writeln!(s, "- [{}] Code review approved (shipgate)", tick(v.review_approved));
    let _ = writeln!(s, "- [ ] Release notes prepared");
    let _ = writeln!(s, "- [{}] Rollback plan documented (shipgate)", tick(r.rollback_plan.is_some()));
    let _ = writeln!(s, "- [{}] Staging deployment successful (shipgate)", tick(v.staging_ok));
    let _ = writeln!(s, "- [ ] Monitoring dashboards checked");
    let _ = writeln!(s, "\n**Deployment**");
    for item in [
        "Create deployment ticket (record start time) (shipgate)",
        "Start deployment (rolling, zero-downtime if possible)",
        "Monitor application logs and metrics",
        "Smoke tests passing",
        "No errors in monitoring",
        "Document any issues",
    ] {
        let _ = writeln!(s, "- [ ] {item}");
    }
    let _ = writeln!(s, "\n**Post-deployment**");
    for item in [
        "Verify all services healthy (Prometheus)",
        "Check key metrics (response time, error rate)",
        "Notify team",
        "Close deployment ticket (record end time) (shipgate)",
        "Plan post-mortem if any issues",
    ] {
        let _ = writeln!(s, "- [ ] {item}");
    }
    let _ = write!(
        s,
        "\n<sub>Commands, on a line of their own: `/approve`, `/approve cancel`, `/deny REASON`, `/hold`, `/unhold`, `/recheck`. This comment is kept up to date by shipgate.</sub>"
    );
    s
}

/// The check run's title and summary.
pub fn check_run(eval: &Evaluation, issue: i64) -> (String, String, String) {
    if eval.open {
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

fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
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
        }
    }

    #[test]
    fn waiting_request_comment() {
        let e = eval(false);
        let stale = vec![("carol".to_string(), "given for aaaaaaa, the head is now bbbbbbb".to_string())];
        let v = RequestView {
            request: &request(),
            environment: Some("production"),
            eval: &e,
            stale: &stale,
            config_errors: &[],
            problems: &[],
            review_approved: false,
            staging_ok: false,
        };
        insta::assert_snapshot!(request_comment(&v));
    }

    #[test]
    fn open_request_comment_and_check_run() {
        let e = eval(true);
        let v = RequestView {
            request: &request(),
            environment: Some("production"),
            eval: &e,
            stale: &[],
            config_errors: &[],
            problems: &[],
            review_approved: true,
            staging_ok: true,
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
            request: &req,
            environment: Some("production"),
            eval: &e,
            stale: &[],
            config_errors: &errors,
            problems: &problems,
            review_approved: false,
            staging_ok: false,
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
}
